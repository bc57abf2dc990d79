// concur/local.hpp
//
// concur::local<T>, Python's threading.local: per-object thread-local storage. Each thread sees
// its own T for each local object, built on that thread's first access. (C++'s thread_local
// gives one value per thread per declaration; a local<T> is an object, so a class can hold one
// per instance.)
//
//   class Connections {
//     concur::local<std::optional<Socket>> mine_;   // one socket per thread, per pool
//    public:
//     Socket& socket() {
//       if (!*mine_) mine_->emplace(connect());
//       return **mine_;
//     }
//   };
//
// Each thread's value is built from the constructor's arguments (copies of them), or by a
// factory given with concur::with_factory, on the thread's first get(). It is destroyed when the
// thread exits or when the local is destroyed, whichever comes first, exactly once. Beyond
// Python, for_each() visits every live thread's value and combine() folds them (as
// tbb::enumerable_thread_specific does); both may run while other threads use their values (the
// values' own contents are the caller's to synchronise) and while threads come and go.
//
// Once the value exists, get() is two thread_local loads (the thread's array and its length), a
// bound check and one load from the array (see concur/detail/local_registry.hpp). No thread_local
// with a destructor is involved, so locals work where thread-locals are emulated (MinGW GCC).
//
// Memory ordering: a value is built and used by its own thread; for_each() and combine() see
// every value that was created before they started, through the registry's mutex.

#ifndef CONCUR_LOCAL_HPP
#define CONCUR_LOCAL_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "concur/detail/config.hpp"
#include "concur/detail/local_registry.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// A factory of T: callable with no arguments, returning a T (a prvalue builds even a T that
// cannot move, by guaranteed copy elision; libc++ 14's is_invocable_r says no for such a T)
// or something convertible to one.
template <class Factory, class T>
concept factory_of =
    std::is_same_v<std::invoke_result_t<Factory&>, T> || std::is_invocable_r_v<T, Factory&>;

}  // namespace concur::detail

namespace concur {

// with_factory
//
// The tag for a local<T> whose values a factory builds:
//   concur::local<Buffer> buffers(concur::with_factory, [] { return Buffer(4096); });
struct with_factory_t {
  explicit with_factory_t() = default;
};
inline constexpr with_factory_t with_factory{};

// local
//
// Python's threading.local for one value type. Not copyable or movable.
template <class T>
class local {
 public:
  // local::local()
  //
  // Each thread's value is value-initialised: T().
  local() requires std::is_default_constructible_v<T> : local(with_factory, [] { return T(); }) {}

  // local::local(args...)
  //
  // Each thread's value is T(args...), from copies of `args` kept in the local.
  template <class... Args>
  requires(sizeof...(Args) > 0 &&
           (!std::is_same_v<std::remove_cvref_t<Args>, with_factory_t> && ...) &&
           std::is_constructible_v<T, const std::decay_t<Args>&...>) explicit local(Args&&... args)
      : make_([saved = std::make_tuple(std::forward<Args>(args)...)] {
          return std::apply([](const auto&... a) { return new Node(a...); }, saved);
        }) {
    open();
  }

  // local::local(with_factory, factory)
  //
  // Each thread's value is what `factory()` returns, called on that thread.
  template <class Factory>
  requires detail::factory_of<Factory, T> local(with_factory_t, Factory factory)
      : make_([factory = std::move(factory)]() mutable { return new Node(factory); }) {
    open();
  }

  local(const local&) = delete;
  local& operator=(const local&) = delete;

  // local::~local()
  //
  // Destroys every thread's value (threads that use this local afterwards are in error).
  ~local() {
    detail::LocalNode* node = detail::LocalSlots::instance().close(index_);
    while (node != nullptr) {
      detail::LocalNode* next = node->next;
      delete node;
      node = next;
    }
  }

  // local::get(), operator*, operator->
  //
  // The calling thread's value, built now if this is the thread's first access. Throws what
  // building the value throws (nothing is kept then; the next access tries again), and
  // UsageError when called by the constructor or factory of the very value it would return.
  [[nodiscard]] T& get() {
    if (CONCUR_LIKELY(index_ < detail::local_value_count)) {
      if (void* value = detail::local_values[index_].load(std::memory_order_relaxed)) {
        return *static_cast<T*>(value);
      }
    }
    return create();
  }
  [[nodiscard]] T& operator*() { return get(); }
  [[nodiscard]] T* operator->() { return &get(); }

  // local::for_each(f)
  //
  // Calls `f(value)` for the value of every thread that has one and has not exited (values
  // created meanwhile may be missed). A thread that exits meanwhile waits until `f` has returned
  // for its value. `f` runs with no lock of concur's held, so it may use other locals (or this
  // one, for the calling thread's own value); it must not destroy this local. An exception from
  // `f` ends the walk and propagates.
  template <class F>
  void for_each(F f) {
    detail::LocalSlots::Slot& slot = detail::LocalSlots::instance().slot(index_);
    detail::LocalSlots::visit_each(
        slot, [&](detail::LocalNode* node) { f(static_cast<Node*>(node)->value); });
  }

  // local::combine(op)
  //
  // Folds every live thread's value with `op` (first value, then op(result, next)...); T() when
  // no thread has a value.
  template <class Op>
  [[nodiscard]] T combine(Op op) {
    std::optional<T> result;
    for_each([&](const T& value) {
      if (result) {
        result = op(*result, value);
      } else {
        result = value;
      }
    });
    return result ? std::move(*result) : T();
  }

 private:
  struct Node : detail::LocalNode {
    template <class... Args>
    explicit Node(const Args&... args) : value(args...) {}
    template <class Factory>
    requires detail::factory_of<Factory, T>
    explicit Node(Factory& factory) : value(factory()) {}
    T value;
  };

  void open() { index_ = detail::LocalSlots::instance().open(); }

  // The thread's first access: builds its value (outside any lock: it is user code), links it
  // to the slot and records it in the thread's table.
  //
  // Throws UsageError when the thread is already building its value of this local: the value's
  // constructor (or the factory) used the local it is building.
  CONCUR_NOINLINE T& create() {
    if (detail::LocalBuilding::underway(this)) {
      throw UsageError("concur::local used by its own value's constructor or factory");
    }
    std::unique_ptr<Node> node;
    {
      detail::LocalBuilding building(this);
      node.reset(make_());
    }
    detail::LocalSlots& slots = detail::LocalSlots::instance();
    detail::LocalThreadTable& table = detail::LocalThreadTable::mine();
    std::lock_guard<std::mutex> hold(slots.mutex());
    if (!detail::LocalSlots::link(slots.slots()[index_], node.get())) {
      throw std::logic_error("concur::local used while it is being destroyed");
    }
    table.record(index_, node.get(), &node->value);
    return node.release()->value;
  }

  std::function<Node*()> make_;
  std::size_t index_ = 0;
};

}  // namespace concur

#endif  // CONCUR_LOCAL_HPP
