// concur/shared_ctypes.hpp
//
// concur::mp::Value<T>, Array<T>, RawValue<T> and RawArray<T>: Python's multiprocessing.Value,
// Array, RawValue and RawArray (its sharedctypes module). Plain data in shared memory, shared
// with the processes forked after it was made, or placed in a named SharedMemory.
//
//   namespace mp = concur::mp;
//   mp::Value<long> counter(0);
//   concur::Process worker([&] {
//     for (int i = 0; i < 1000; ++i) {
//       std::scoped_lock hold(counter.get_lock());   // with counter.get_lock():
//       counter.set_value(counter.value() + 1);      //     counter.value += 1
//     }
//   });
//
// Value and Array carry a lock, as Python's do by default: an mp::RLock in the same block, so
// that value() and set_value(), which each take it, may be called while holding get_lock().
// RawValue and RawArray carry none (Python's lock=False): the program orders its accesses
// itself, with an mp::Lock, or atomics.
//
// T is trivially copyable: its bytes are its value in every process. It should hold no
// pointers, since other processes map memory at other addresses.
//
// A holder that dies. Value and Array's lock is an mp::RLock: when a process dies holding it,
// the next acquire of get_lock() throws concur::OwnerDied (see concur/mp_lock.hpp), and the data
// may be half written. value(), set_value(), Array's operator[], set() and to_vector() release
// the lock before they throw OwnerDied, so the lock is whole again; set_value() and set() have
// stored their new value by then, which repairs a Value.
//
// Errors: std::out_of_range for an index past the end (Python's IndexError);
// std::invalid_argument for place/find misuse as in mp_lock.hpp; std::system_error(ENOSYS)
// where there is no robust futex list (Value and Array only).
//
// Memory ordering: Value and Array's accessors run under the lock, whose acquire and release
// order them across processes. RawValue's value() and set_value() are relaxed atomic loads and
// stores when T fits a lock-free atomic (never torn, ordering nothing), plain copies otherwise.
//
// Linux, as concur/mp_lock.hpp.

#ifndef CONCUR_SHARED_CTYPES_HPP
#define CONCUR_SHARED_CTYPES_HPP

#include <atomic>
#include <bit>
#include <cstddef>
#include <initializer_list>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "concur/detail/shared_block.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

namespace detail_ctypes {

template <class T>
inline constexpr bool shareable =
    std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>;

// Relaxed loads and stores that are never torn, where T is the size and alignment of a
// lock-free atomic. (A T that needs a lock to be atomic would get one from the process's own
// lock table, which other processes cannot see: a plain copy is no worse.) The compilers'
// __atomic built-ins, which every standard library's std::atomic_ref is made of; libc++ 14 has
// no atomic_ref.
template <class T>
inline constexpr bool tear_free = (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 ||
                                   sizeof(T) == 8) &&
                                  alignof(T) >= sizeof(T) &&
                                  __atomic_always_lock_free(sizeof(T), 0);

template <class T>
T load(const T& place) noexcept {
  if constexpr (tear_free<T>) {
    alignas(T) unsigned char bytes[sizeof(T)];
    __atomic_load(&place, reinterpret_cast<T*>(bytes), __ATOMIC_RELAXED);
    return std::bit_cast<T>(bytes);
  } else {
    return place;
  }
}
template <class T>
void store(T& place, const T& value) noexcept {
  if constexpr (tear_free<T>) {
    T copy = value;  // Clang's built-in takes a pointer to non-const
    __atomic_store(&place, &copy, __ATOMIC_RELAXED);
  } else {
    place = value;
  }
}

// The layout of a block of `items` T after a state of the given size: a Value's T is part of its
// state (`items` 0), an Array's follow it.
template <class T>
constexpr concur::detail::SharedLayout layout(concur::detail::SharedKind kind, std::size_t items,
                                              std::size_t state_size, std::size_t state_align) {
  return {.kind = kind,
          .state_size = state_size,
          .state_align = state_align,
          .item_size = sizeof(T),
          .item_align = alignof(T),
          .items = items};
}

// The same, naming T for the header (not constexpr: only for building and finding).
template <class T>
concur::detail::SharedLayout typed_layout(concur::detail::SharedKind kind, std::size_t items,
                                          std::size_t state_size, std::size_t state_align) {
  concur::detail::SharedLayout shape = layout<T>(kind, items, state_size, state_align);
  shape.item_type = concur::detail::type_fingerprint<T>();
  return shape;
}

// The items of a block: built from `init` (or value-initialized) when the block is new.
template <class T>
T* build_items(concur::detail::SharedBlock& block, std::span<const T> init) {
  T* items = static_cast<T*>(block.items());
  for (std::size_t i = 0; i < block.items_count(); ++i) {
    new (items + i) T(i < init.size() ? init[i] : T{});
  }
  return items;
}

// Runs `body` under `lock`; when the previous holder died, runs it still, releases the lock,
// then throws OwnerDied.
template <class Body>
CONCUR_NO_THREAD_SAFETY_ANALYSIS auto under(RLock& lock, Body body) -> decltype(body()) {
  bool owner_died = false;
  try {
    lock.acquire();
  } catch (const OwnerDied&) {
    owner_died = true;
  }
  std::unique_lock<RLock> hold(lock, std::adopt_lock);
  if constexpr (std::is_void_v<decltype(body())>) {
    body();
    if (owner_died) throw OwnerDied();
  } else {
    auto result = body();
    if (owner_died) throw OwnerDied();
    return result;
  }
}

}  // namespace detail_ctypes

// RawValue
//
// Python's multiprocessing.RawValue: one T in shared memory, no lock. Not movable.
template <class T>
class RawValue {
  static_assert(detail_ctypes::shareable<T>, "a shared value's type must be trivially copyable");
  static constexpr auto kind = concur::detail::SharedKind::raw_value;
  static constexpr concur::detail::SharedLayout shape =
      detail_ctypes::layout<T>(kind, 0, sizeof(T), alignof(T));
  static concur::detail::SharedLayout typed() {
    return detail_ctypes::typed_layout<T>(kind, 0, sizeof(T), alignof(T));
  }

 public:
  // RawValue::shared_size, RawValue::shared_alignment
  //
  // The bytes it takes in a SharedMemory, header included, and the alignment its offset needs.
  static constexpr std::size_t shared_size = shape.size();
  static constexpr std::size_t shared_alignment = shape.alignment();

  // RawValue(init), RawValue(mp::place, memory, offset, init), RawValue(mp::find, memory, offset)
  //
  // A new value (in an anonymous shared mapping, or placed in `memory`), or the one another
  // process placed. Throws as mp::Lock's constructors.
  explicit RawValue(T init = T{}) : block_(typed()) { build(init); }
  RawValue(place_t, SharedMemory& memory, std::size_t offset = 0, T init = T{})
      : block_(place, memory, offset, typed()) {
    build(init);
  }
  RawValue(find_t, SharedMemory& memory, std::size_t offset = 0)
      : block_(find, memory, offset, typed()),
        value_(std::launder(static_cast<T*>(block_.state()))) {}

  RawValue(const RawValue&) = delete;
  RawValue& operator=(const RawValue&) = delete;

  // RawValue::value(), RawValue::set_value()
  //
  // Python's `.value`: reads or writes the value, without a lock.
  [[nodiscard]] T value() const noexcept { return detail_ctypes::load(*value_); }
  void set_value(const T& value) noexcept { detail_ctypes::store(*value_, value); }

  // RawValue::get_obj()
  //
  // The value itself, for the program that orders its accesses.
  [[nodiscard]] T& get_obj() const noexcept { return *value_; }

 private:
  void build(const T& init) {
    value_ = new (block_.state()) T(init);
    block_.publish();
  }

  concur::detail::SharedBlock block_;
  T* value_ = nullptr;
};

// Value
//
// Python's multiprocessing.Value with its default lock: one T and an mp::RLock in shared
// memory. Not movable.
template <class T>
class Value {
  static_assert(detail_ctypes::shareable<T>, "a shared value's type must be trivially copyable");
  struct State {
    detail_lock::RecursiveState lock;
    T value;
  };
  static constexpr auto kind = concur::detail::SharedKind::value;
  static constexpr concur::detail::SharedLayout shape =
      detail_ctypes::layout<T>(kind, 0, sizeof(State), alignof(State));
  static concur::detail::SharedLayout typed() {
    return detail_ctypes::typed_layout<T>(kind, 0, sizeof(State), alignof(State));
  }

 public:
  // Value::shared_size, Value::shared_alignment
  //
  // As RawValue's.
  static constexpr std::size_t shared_size = shape.size();
  static constexpr std::size_t shared_alignment = shape.alignment();

  // Value(init), Value(mp::place, memory, offset, init), Value(mp::find, memory, offset)
  //
  // As RawValue's; also std::system_error(ENOSYS) without a robust futex list.
  explicit Value(T init = T{}) : block_(typed()), lock_(detail_lock::borrow_t{}, build(init)) {}
  Value(place_t, SharedMemory& memory, std::size_t offset = 0, T init = T{})
      : block_(place, memory, offset, typed()), lock_(detail_lock::borrow_t{}, build(init)) {}
  Value(find_t, SharedMemory& memory, std::size_t offset = 0)
      : block_(find, memory, offset, typed()), lock_(detail_lock::borrow_t{}, found()) {}

  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

  // Value::value()
  //
  // Python's `.value`: reads the value under the lock (taken once more if the caller holds it).
  // OwnerDied as the header comment says.
  [[nodiscard]] T value() const {
    return detail_ctypes::under(lock_, [&] { return state().value; });
  }

  // Value::set_value()
  //
  // Python's `.value = x`: writes the value under the lock. OwnerDied as the header says.
  void set_value(const T& value) {
    detail_ctypes::under(lock_, [&] { state().value = value; });
  }

  // Value::get_lock()
  //
  // The lock that guards the value, for compound updates (Python's get_lock()).
  [[nodiscard]] RLock& get_lock() const noexcept { return lock_; }

  // Value::get_obj()
  //
  // The value itself, for use while holding get_lock() (Python's get_obj()).
  [[nodiscard]] T& get_obj() const noexcept { return state().value; }

  // Value::acquire(), Value::release(), Value::lock(), Value::unlock()
  //
  // The lock's own members, as Python's synchronized wrapper has them, so that
  // std::scoped_lock hold(value) works.
  bool acquire() CONCUR_NO_THREAD_SAFETY_ANALYSIS { return lock_.acquire(); }
  void release() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.release(); }
  void lock() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.lock(); }
  void unlock() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock(); }

 private:
  State& state() const noexcept { return *std::launder(static_cast<State*>(block_.state())); }

  detail_lock::RecursiveState& build(const T& init) {
    detail_lock::require_robust_list();
    auto* made = new (block_.state()) State{detail_lock::RecursiveState{}, init};
    block_.publish();
    return made->lock;
  }
  detail_lock::RecursiveState& found() {
    detail_lock::require_robust_list();
    return state().lock;
  }

  concur::detail::SharedBlock block_;
  mutable RLock lock_;
};

// RawArray
//
// Python's multiprocessing.RawArray: n items of T in shared memory, no lock. Not movable.
template <class T>
class RawArray {
  static_assert(detail_ctypes::shareable<T>, "a shared array's items must be trivially copyable");
  static constexpr auto kind = concur::detail::SharedKind::raw_array;
  static concur::detail::SharedLayout shape(std::size_t n) {
    return detail_ctypes::typed_layout<T>(kind, n, 1, 1);
  }

 public:
  // RawArray::shared_size(n), RawArray::shared_alignment
  //
  // The bytes an array of `n` takes in a SharedMemory, and the alignment its offset needs.
  static std::size_t shared_size(std::size_t n) { return shape(n).size(); }
  static constexpr std::size_t shared_alignment =
      detail_ctypes::layout<T>(kind, 1, 1, 1).alignment();

  // RawArray(n), RawArray(items), and the place and find forms
  //
  // `n` value-initialized items (Python's RawArray(type, n): zeros), or copies of `items`
  // (Python's RawArray(type, sequence)). Found, the array has the length its placer gave it.
  explicit RawArray(std::size_t n) : block_(shape(n)) { build({}); }
  RawArray(std::initializer_list<T> items) : RawArray(std::span<const T>(items)) {}
  explicit RawArray(std::span<const T> items) : block_(shape(items.size())) { build(items); }
  RawArray(place_t, SharedMemory& memory, std::size_t offset, std::size_t n)
      : block_(place, memory, offset, shape(n)) {
    build({});
  }
  RawArray(find_t, SharedMemory& memory, std::size_t offset = 0)
      : block_(find, memory, offset, shape(0)),
        items_(std::launder(static_cast<T*>(block_.items()))) {}

  RawArray(const RawArray&) = delete;
  RawArray& operator=(const RawArray&) = delete;

  // RawArray::size()
  //
  // Python's len().
  [[nodiscard]] std::size_t size() const noexcept { return block_.items_count(); }

  // RawArray::operator[]
  //
  // The item itself, unchecked, for the program that orders its accesses.
  [[nodiscard]] T& operator[](std::size_t i) const noexcept { return items_[i]; }

  // RawArray::get_obj(), begin(), end()
  //
  // The items as a span, and its iterators.
  [[nodiscard]] std::span<T> get_obj() const noexcept { return {items_, size()}; }
  [[nodiscard]] T* begin() const noexcept { return items_; }
  [[nodiscard]] T* end() const noexcept { return items_ + size(); }

 private:
  void build(std::span<const T> init) {
    items_ = detail_ctypes::build_items(block_, init);
    block_.publish();
  }

  concur::detail::SharedBlock block_;
  T* items_ = nullptr;
};

// Array
//
// Python's multiprocessing.Array with its default lock: n items of T and an mp::RLock in shared
// memory. Not movable.
template <class T>
class Array {
  static_assert(detail_ctypes::shareable<T>, "a shared array's items must be trivially copyable");
  using State = detail_lock::RecursiveState;
  static constexpr auto kind = concur::detail::SharedKind::array;
  static concur::detail::SharedLayout shape(std::size_t n) {
    return detail_ctypes::typed_layout<T>(kind, n, sizeof(State), alignof(State));
  }

 public:
  // Array::shared_size(n), Array::shared_alignment
  //
  // As RawArray's.
  static std::size_t shared_size(std::size_t n) { return shape(n).size(); }
  static constexpr std::size_t shared_alignment =
      detail_ctypes::layout<T>(kind, 1, sizeof(State), alignof(State)).alignment();

  // Array(n), Array(items), and the place and find forms
  //
  // As RawArray's; also std::system_error(ENOSYS) without a robust futex list.
  explicit Array(std::size_t n) : block_(shape(n)), lock_(detail_lock::borrow_t{}, build({})) {}
  Array(std::initializer_list<T> items) : Array(std::span<const T>(items)) {}
  explicit Array(std::span<const T> items)
      : block_(shape(items.size())), lock_(detail_lock::borrow_t{}, build(items)) {}
  Array(place_t, SharedMemory& memory, std::size_t offset, std::size_t n)
      : block_(place, memory, offset, shape(n)), lock_(detail_lock::borrow_t{}, build({})) {}
  Array(find_t, SharedMemory& memory, std::size_t offset = 0)
      : block_(find, memory, offset, shape(0)), lock_(detail_lock::borrow_t{}, found()) {}

  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  // Array::size()
  //
  // Python's len(): fixed, so no lock.
  [[nodiscard]] std::size_t size() const noexcept { return block_.items_count(); }

  // Array::operator[]
  //
  // Python's `a[i]`: reads item `i` under the lock. std::out_of_range past the end; OwnerDied
  // as the header comment says.
  [[nodiscard]] T operator[](std::size_t i) const {
    check(i);
    return detail_ctypes::under(lock_, [&] { return items()[i]; });
  }

  // Array::set()
  //
  // Python's `a[i] = x`: writes item `i` under the lock.
  void set(std::size_t i, const T& value) {
    check(i);
    detail_ctypes::under(lock_, [&] { items()[i] = value; });
  }

  // Array::to_vector()
  //
  // Python's `a[:]`: a copy of every item, taken under the lock.
  [[nodiscard]] std::vector<T> to_vector() const {
    return detail_ctypes::under(lock_, [&] { return std::vector<T>(items(), items() + size()); });
  }

  // Array::get_lock(), Array::get_obj()
  //
  // The lock, and the items as a span for use while holding it.
  [[nodiscard]] RLock& get_lock() const noexcept { return lock_; }
  [[nodiscard]] std::span<T> get_obj() const noexcept { return {items(), size()}; }

  // Array::acquire(), release(), lock(), unlock()
  //
  // The lock's own members, as Value's.
  bool acquire() CONCUR_NO_THREAD_SAFETY_ANALYSIS { return lock_.acquire(); }
  void release() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.release(); }
  void lock() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.lock(); }
  void unlock() CONCUR_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock(); }

 private:
  T* items() const noexcept { return std::launder(static_cast<T*>(block_.items())); }

  void check(std::size_t i) const {
    if (i >= size()) {
      throw std::out_of_range("array index " + std::to_string(i) + " out of range (length " +
                              std::to_string(size()) + ")");
    }
  }

  State& build(std::span<const T> init) {
    detail_lock::require_robust_list();
    auto* state = new (block_.state()) State;
    detail_ctypes::build_items(block_, init);
    block_.publish();
    return *state;
  }
  State& found() {
    detail_lock::require_robust_list();
    return *std::launder(static_cast<State*>(block_.state()));
  }

  concur::detail::SharedBlock block_;
  mutable RLock lock_;
};

}  // namespace concur::mp

#endif  // CONCUR_SHARED_CTYPES_HPP
