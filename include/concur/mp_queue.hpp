// concur/mp_queue.hpp
//
// concur::mp::Queue<T>, mp::JoinableQueue<T> and mp::SimpleQueue<T>, Python's
// multiprocessing.Queue, JoinableQueue and SimpleQueue: first-in, first-out queues between
// processes, whose items live in shared memory.
//
//   namespace mp = concur::mp;
//   mp::Queue<int> jobs(1024);                       // made before the workers start
//   concur::Process worker([&] {
//     for (int job; (job = jobs.get()) >= 0;) handle(job);
//   });
//   worker.start();
//   for (int i = 0; i < 100; ++i) jobs.put(i);
//   jobs.put(-1);
//   worker.join();
//
// Where they live: as mp::Lock, an anonymous shared mapping of their own, shared with the
// processes forked after they were made, or placed in (mp::place) and found in (mp::find) a
// named SharedMemory, behind the header that refuses another kind, layout or item type.
//
// Items. T is trivially copyable: put() copies its bytes into the ring, get() copies them out.
// (Python pickles any object; types that need the codec are not supported yet.)
//
// Size. The ring holds `maxsize` items; Python's maxsize 0 ("unbounded") gets a ring of
// `unbounded_capacity` items (65536), or the capacity given in QueueOptions. Unlike Python's, a
// put() into a full ring of an "unbounded" queue waits for room, and put(timeout) throws Full.
//
// A process that dies. Every change to the ring is published by one store, and its lock is
// robust (detail/mp_queue_core.hpp): a process killed at any point, inside a put() or get()
// included, never leaves the others hanging, and no item whose put() returned is lost or
// duplicated (except the one a get() of the dead process had taken). No error is reported,
// since there is nothing to repair. Python's multiprocessing.Queue can hang after a producer's
// death, and loses what its feeder thread had not yet flushed.
//
// No feeder thread. put() has stored the item in shared memory when it returns, so Python's
// join_thread() and cancel_join_thread() have nothing to do; they are here, as no-ops, for code
// that calls them. close() marks this process's Queue object closed: its put() and get() then
// throw std::invalid_argument, as Python's raise ValueError.
//
// Linux, as mp::Lock.
//
// Memory ordering: everything a process did before put() is visible to the process whose get()
// returns that item.

#ifndef CONCUR_MP_QUEUE_HPP
#define CONCUR_MP_QUEUE_HPP

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "concur/detail/deadline.hpp"
#include "concur/detail/mp_queue_core.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/errors.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

// QueueOptions
//
// Python's Queue(maxsize), and the ring's size when maxsize is 0.
struct QueueOptions {
  // Python's maxsize: put() waits while the queue holds this many; 0: as many as `capacity`.
  std::size_t maxsize = 0;
  // The ring's size when maxsize is 0.
  std::size_t capacity = 65536;
};

namespace detail_queue {

// The queue types' common body: the block, the core, and Python's members.
template <class T>
class QueueBase {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "mp::Queue's items must be trivially copyable: their bytes are copied between "
                "processes");
  using State = concur::detail::MpQueueState;

 public:
  using value_type = T;

  // The ring's size when maxsize is 0.
  static constexpr std::size_t unbounded_capacity = QueueOptions{}.capacity;

  // Bytes the queue takes in a SharedMemory (for a ring of `capacity` items), and the alignment
  // its offset needs.
  static std::size_t shared_size(std::size_t capacity) { return shape(capacity).size(); }
  static constexpr std::size_t shared_alignment = alignof(State) > alignof(T) ? alignof(State)
                                                                              : alignof(T);

  // put(item), put(item, timeout), put_nowait(item), try_put(item)
  //
  // Python's put(): adds `item`, waiting while the queue is full; with a timeout, throws Full
  // when there is still no room once it has passed (a negative timeout throws
  // std::invalid_argument); put_nowait() throws Full at once, try_put() returns false.
  void put(const T& item) { (void)put_until(item, concur::detail::never); }
  template <class Rep, class Period>
  void put(const T& item, std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    if (!put_until(item, concur::detail::deadline_after(timeout))) throw Full();
  }
  void put_nowait(const T& item) {
    if (!try_put(item)) throw Full();
  }
  [[nodiscard]] bool try_put(const T& item) {
    return put_until(item, concur::detail::steady_time::min());
  }

  // get(), get(timeout), get_nowait(), try_get()
  //
  // Python's get(): removes and returns the oldest item, waiting while there is none; with a
  // timeout, throws Empty once it has passed; get_nowait() throws Empty at once, try_get()
  // returns an empty optional.
  [[nodiscard]] T get() { return *get_until(concur::detail::never); }
  template <class Rep, class Period>
  [[nodiscard]] T get(std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    std::optional<T> item = get_until(concur::detail::deadline_after(timeout));
    if (!item) throw Empty();
    return *item;
  }
  [[nodiscard]] T get_nowait() {
    std::optional<T> item = try_get();
    if (!item) throw Empty();
    return *item;
  }
  [[nodiscard]] std::optional<T> try_get() { return get_until(concur::detail::steady_time::min()); }

  // qsize(), empty(), full()
  //
  // Snapshots of the number of items, as Python's (which also say they are approximate).
  [[nodiscard]] std::size_t qsize() const noexcept { return core_.size(); }
  [[nodiscard]] bool empty() const noexcept { return core_.size() == 0; }
  [[nodiscard]] bool full() const noexcept { return core_.size() >= core_.bound(); }

  // maxsize()
  //
  // Python's maxsize: 0 for a queue made without one.
  [[nodiscard]] std::size_t maxsize() const noexcept { return state().maxsize; }

  // close(), join_thread(), cancel_join_thread()
  //
  // close() closes this process's object: its put() and get() throw std::invalid_argument
  // (Python's ValueError); the queue and the other processes' objects go on. The other two are
  // Python's members for its feeder thread, which concur does not need: no-ops, except that
  // join_thread() before close() throws UsageError, as Python's asserts.
  void close() noexcept { closed_ = true; }
  void join_thread() const {
    if (!closed_) throw UsageError("join_thread() before close()");
  }
  void cancel_join_thread() const noexcept {}

 protected:
  static concur::detail::SharedLayout shape(std::size_t capacity) {
    return {.kind = concur::detail::SharedKind::queue,
            .state_size = sizeof(State),
            .state_align = alignof(State),
            .item_size = sizeof(T),
            .item_align = alignof(T),
            .items = capacity,
            .item_type = concur::detail::type_fingerprint<T>()};
  }

  static std::size_t ring_size(const QueueOptions& options) {
    if (options.maxsize == 0 && options.capacity == 0) {
      throw std::invalid_argument("an mp::Queue needs a capacity of at least 1");
    }
    return options.maxsize != 0 ? options.maxsize : options.capacity;
  }

  explicit QueueBase(const QueueOptions& options)
      : block_(shape(ring_size(options))), core_(build(options)) {}
  QueueBase(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options)
      : block_(place, memory, offset, shape(ring_size(options))), core_(build(options)) {}
  QueueBase(find_t, SharedMemory& memory, std::size_t offset)
      : block_(find, memory, offset, shape(0)), core_(found()) {}

  concur::detail::MpQueueCore<T>& core() noexcept { return core_; }
  void check_open() const {
    if (closed_) throw std::invalid_argument("Queue is closed");
  }

 private:
  State& state() const noexcept { return *std::launder(static_cast<State*>(block_.state())); }
  T* items() const noexcept { return static_cast<T*>(block_.items()); }

  concur::detail::MpQueueCore<T> build(const QueueOptions& options) {
    detail_lock::require_robust_list();
    State* made = new (block_.state()) State;
    made->capacity = block_.items_count();
    made->maxsize = options.maxsize;
    block_.publish();
    return {*made, items()};
  }
  concur::detail::MpQueueCore<T> found() {
    detail_lock::require_robust_list();
    return {state(), std::launder(items())};
  }

  bool put_until(const T& item, concur::detail::steady_time deadline) {
    check_open();
    return core_.put(item, deadline);
  }
  std::optional<T> get_until(concur::detail::steady_time deadline) {
    check_open();
    alignas(T) unsigned char bytes[sizeof(T)];
    if (!core_.get(bytes, deadline)) return std::nullopt;
    return std::bit_cast<T>(bytes);
  }

  concur::detail::SharedBlock block_;
  mutable concur::detail::MpQueueCore<T> core_;
  bool closed_ = false;
};

}  // namespace detail_queue

// Queue
//
// Python's multiprocessing.Queue(maxsize). Not movable.
template <class T>
class Queue : public detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  // Queue(maxsize), Queue(options)
  //
  // A queue in an anonymous shared mapping, shared with the processes forked from now on.
  // Throws std::system_error: ENOSYS without a robust futex list, or mmap's error.
  explicit Queue(std::size_t maxsize = 0) : Base(QueueOptions{.maxsize = maxsize}) {}
  explicit Queue(const QueueOptions& options) : Base(options) {}

  // Queue(mp::place, memory, offset, options), Queue(mp::find, memory, offset)
  //
  // Built in, or found in, a named SharedMemory (see mp::Lock's).
  Queue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  Queue(find_t, SharedMemory& memory, std::size_t offset = 0) : Base(find, memory, offset) {}

  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
};

// JoinableQueue
//
// Python's multiprocessing.JoinableQueue(maxsize): a Queue whose consumers mark each item done
// with task_done(), and whose join() waits until every item put has been. Not movable.
template <class T>
class JoinableQueue : public detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  // JoinableQueue(maxsize), JoinableQueue(options), and the place and find forms
  //
  // As Queue's.
  explicit JoinableQueue(std::size_t maxsize = 0) : Base(QueueOptions{.maxsize = maxsize}) {}
  explicit JoinableQueue(const QueueOptions& options) : Base(options) {}
  JoinableQueue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  JoinableQueue(find_t, SharedMemory& memory, std::size_t offset = 0)
      : Base(find, memory, offset) {}

  JoinableQueue(const JoinableQueue&) = delete;
  JoinableQueue& operator=(const JoinableQueue&) = delete;

  // JoinableQueue::task_done()
  //
  // Marks one item done. UsageError when every item put is done already (Python's
  // ValueError, "task_done() called too many times").
  void task_done() {
    if (!this->core().task_done()) throw UsageError("task_done() called too many times");
  }

  // JoinableQueue::join(), join(timeout)
  //
  // Waits until every item put has been marked done; with a timeout, returns whether that
  // happened in time (an addition to Python's).
  void join() { (void)this->core().join(concur::detail::never); }
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    return this->core().join(concur::detail::deadline_after(timeout));
  }

  // JoinableQueue::unfinished_tasks()
  //
  // Items put and not yet marked done (Python's private _unfinished_tasks).
  [[nodiscard]] std::size_t unfinished_tasks() { return this->core().unfinished(); }
};

// SimpleQueue
//
// Python's multiprocessing.SimpleQueue: put(), get(), empty(), close(), over a ring of
// `unbounded_capacity` items (put() waits while it is full). Not movable.
template <class T>
class SimpleQueue : private detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  using value_type = T;
  using Base::close;
  using Base::empty;
  using Base::get;
  using Base::put;
  using Base::shared_alignment;
  using Base::shared_size;

  // SimpleQueue(), SimpleQueue(options), and the place and find forms
  //
  // As Queue's (maxsize is not Python's here: only the ring's capacity counts).
  SimpleQueue() : Base(QueueOptions{}) {}
  explicit SimpleQueue(const QueueOptions& options) : Base(options) {}
  SimpleQueue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  SimpleQueue(find_t, SharedMemory& memory, std::size_t offset = 0) : Base(find, memory, offset) {}

  SimpleQueue(const SimpleQueue&) = delete;
  SimpleQueue& operator=(const SimpleQueue&) = delete;
};

}  // namespace concur::mp

#endif  // CONCUR_MP_QUEUE_HPP
