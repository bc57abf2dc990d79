// concur/queue.hpp
//
// Python's queue module (3.13): concur::Queue (first in, first out), concur::LifoQueue (last
// in, first out) and concur::PriorityQueue (smallest first), all with Python's members, and
// non-throwing and batch members for hot loops. concur::SimpleQueue is in
// concur/simple_queue.hpp.
//
//   concur::Queue<Job> jobs(100);              // at most 100 waiting; 0 or less: unbounded
//   jobs.put(Job{...});                        // blocks while full
//   jobs.put({...});                           // braces build a Job, in every put member
//   jobs.emplace(args...);                     // or a Job from its constructor's arguments
//   Job job = jobs.get();                      // blocks while empty
//   ...
//   jobs.task_done();                          // for join()
//   jobs.shutdown();                           // puts throw ShutDown; gets drain, then throw
//
//   while (auto job = jobs.next()) { ... }     // until shut down: no ShutDown to catch
//   for (Job& job : concur::drain(jobs)) { ... }   // the same, as a range
//
// Semantics are Python's:
//   put(x) blocks while the queue is full; put(x, false) and put_nowait(x) throw Full instead;
//   put(x, timeout) throws Full when the timeout passes. get() blocks while it is empty;
//   get(false) and get_nowait() throw Empty; get(timeout) throws Empty after the timeout. A
//   negative timeout throws std::invalid_argument. try_put / try_get do the same without Full
//   or Empty: they return false or an empty optional (and leave the item with the caller).
//   task_done() marks a got item as processed (too many throw UsageError); join() waits until
//   every item ever put is done. shutdown() makes every put throw ShutDown and every get throw
//   ShutDown once the queue is empty; shutdown(true) also drops what is queued (each dropped
//   item counts as done) and releases join(). Every blocked caller wakes up. qsize(), empty()
//   and full() are snapshots, as in Python.
//
// Implementation. A bounded Queue of items that move without throwing runs on a lock-free ring
// (concur/detail/mpmc_ring.hpp): a put or get is one compare-and-swap to claim a slot plus a
// store to fill or empty it, and a caller only sleeps (on an event count) after spinning
// briefly on a full or empty queue; an idle waiter uses no CPU. Every other queue (unbounded,
// LIFO, priority, or items whose moves may throw) is a Lock and three Conditions around a
// container, as CPython's queue.py does it. Memory is bounded by maxsize either way.
//
// Exception safety: an item whose move or copy throws is either not added or stays in the
// queue, and the queue stays usable.
//
// Memory ordering: everything a thread did before putting an item is visible to the thread
// that gets it; everything before task_done() is visible after a join() that returns.

#ifndef CONCUR_QUEUE_HPP
#define CONCUR_QUEUE_HPP

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/locked_queue_core.hpp"
#include "concur/detail/queue_core.hpp"
#include "concur/errors.hpp"

namespace concur {

namespace detail {

// A deadline that has always passed: Python's block=False.
inline constexpr steady_time no_blocking{};

template <class Rep, class Period>
steady_time queue_deadline(std::chrono::duration<Rep, Period> timeout) {
  require_non_negative(timeout, "'timeout' must be a non-negative number");
  return deadline_after(timeout);
}

// Queue's core: the ring when the queue is bounded and items move without throwing, the locked
// FIFO otherwise.
template <class T>
class FifoCore {
  static constexpr bool ring_capable =
      std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>;
  using Ring = std::conditional_t<ring_capable, RingCore<T>, LockedCore<T, FifoStore<T>>>;
  using Locked = LockedCore<T, FifoStore<T>>;

 public:
  explicit FifoCore(std::int64_t maxsize) : maxsize_(maxsize) {
    if (ring_capable && maxsize > 0) {
      ring_ = std::make_unique<Ring>(static_cast<std::size_t>(maxsize));
    } else {
      locked_ = std::make_unique<Locked>(maxsize);
    }
  }

  QueueStatus put(T&& item, steady_time deadline) {
    return ring_ ? ring_->put(std::move(item), deadline) : locked_->put(std::move(item), deadline);
  }
  QueueStatus get(std::optional<T>& out, steady_time deadline) {
    return ring_ ? ring_->get(out, deadline) : locked_->get(out, deadline);
  }
  template <class It>
  It put_many(It first, It last, steady_time deadline, QueueStatus& status) {
    return ring_ ? ring_->put_many(first, last, deadline, status)
                 : locked_->put_many(first, last, deadline, status);
  }
  template <class Out>
  std::size_t get_many(Out& out, std::size_t max, steady_time deadline, QueueStatus& status) {
    return ring_ ? ring_->get_many(out, max, deadline, status)
                 : locked_->get_many(out, max, deadline, status);
  }
  std::size_t qsize() { return ring_ ? ring_->qsize() : locked_->qsize(); }
  std::int64_t maxsize() const noexcept { return maxsize_; }
  bool full() { return maxsize_ > 0 && qsize() >= static_cast<std::size_t>(maxsize_); }
  void task_done() { ring_ ? ring_->task_done() : locked_->task_done(); }
  bool join_until(steady_time deadline) {
    return ring_ ? ring_->join_until(deadline) : locked_->join_until(deadline);
  }
  void shutdown(bool immediate) {
    ring_ ? ring_->shutdown(immediate) : locked_->shutdown(immediate);
  }
  bool is_shutdown() { return ring_ ? ring_->is_shutdown() : locked_->is_shutdown(); }

 private:
  const std::int64_t maxsize_;
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<Locked> locked_;
};

// BasicQueue
//
// The members every queue of this header shares, on top of its core.
template <class T, class Core>
class BasicQueue {
  static_assert(std::is_move_constructible_v<T>, "queued items must be movable");

  template <class U>
  static constexpr bool makes_item = std::constructible_from<T, U&&>;

 public:
  using value_type = T;

  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  // put(item)
  //
  // Adds `item` (copied, moved, or built from the argument), waiting while the queue is full.
  // Throws ShutDown after shutdown(). Every member of the put family takes braces as well:
  // `pairs.put({1, 2L})` builds the item in the call, as a T (the argument's type defaults to
  // T, since braces have none of their own).
  template <class U = T>
  requires makes_item<U>
  void put(U&& item) { expect_put(put_until(std::forward<U>(item), never)); }

  // put(item, block)
  //
  // With `block` false, never waits: throws Full when the queue is full (Python's
  // put(item, block=False)). With true, as put(item).
  template <class U = T>
  requires makes_item<U>
  void put(U&& item, bool block) {
    expect_put(put_until(std::forward<U>(item), block ? never : no_blocking));
  }

  // put(item, timeout)
  //
  // Waits at most `timeout` for room; throws Full when it passes, std::invalid_argument for a
  // negative timeout.
  template <class U = T, class Rep, class Period>
  requires makes_item<U>
  void put(U&& item, std::chrono::duration<Rep, Period> timeout) {
    expect_put(put_until(std::forward<U>(item), queue_deadline(timeout)));
  }

  // put_nowait(item)
  //
  // put(item, false).
  template <class U = T>
  requires makes_item<U>
  void put_nowait(U&& item) { put(std::forward<U>(item), false); }

  // try_put(item), try_put(item, timeout)
  //
  // As put(item, false) and put(item, timeout), returning false instead of throwing Full. An
  // item passed as an rvalue is moved from only when it was put. Throws ShutDown after
  // shutdown().
  template <class U = T>
  requires makes_item<U>
  [[nodiscard]] bool try_put(U&& item) {
    return accepted(put_until(std::forward<U>(item), no_blocking));
  }
  template <class U = T, class Rep, class Period>
  requires makes_item<U>
  [[nodiscard]] bool try_put(U&& item, std::chrono::duration<Rep, Period> timeout) {
    return accepted(put_until(std::forward<U>(item), queue_deadline(timeout)));
  }

  // emplace(args...)
  //
  // Builds an item from `args` (any constructor of T, explicit ones included) and puts it,
  // waiting while the queue is full, as put() does. Throws ShutDown after shutdown(), and then
  // the arguments have been used (moved from, for rvalues) all the same. The item is built
  // before the queue is touched, so a throwing constructor leaves the queue as it was. For a
  // non-blocking or timed put of a new item, use braces with put() or try_put():
  // `q.try_put({1, 2L}, 10ms)`.
  template <class... Args>
  requires std::constructible_from<T, Args&&...>
  void emplace(Args&&... args) {
    T made(std::forward<Args>(args)...);
    expect_put(core_.put(std::move(made), never));
  }

  // put_many(first, last)
  //
  // Puts every item of [first, last) in order, waiting for room as put() does, claiming as many
  // free places as are available at a time. Throws ShutDown after shutdown() (the items before
  // the failing one were put).
  template <class It>
  void put_many(It first, It last) {
    QueueStatus status;
    core_.put_many(first, last, never, status);
    expect_put(status);
  }

  // get()
  //
  // Removes and returns the next item, waiting while the queue is empty. After shutdown(),
  // returns what is left and then throws ShutDown.
  T get() { return expect_item(get_until(never)); }

  // get(block)
  //
  // With `block` false, never waits: throws Empty when the queue is empty.
  T get(bool block) { return expect_item(get_until(block ? never : no_blocking)); }

  // get(timeout)
  //
  // Waits at most `timeout` for an item; throws Empty when it passes, std::invalid_argument for
  // a negative timeout.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return expect_item(get_until(queue_deadline(timeout)));
  }

  // get_nowait()
  //
  // get(false).
  T get_nowait() { return get(false); }

  // try_get(), try_get(timeout)
  //
  // As get(false) and get(timeout), returning an empty optional instead of throwing Empty.
  // Throws ShutDown once a shut-down queue is empty.
  [[nodiscard]] std::optional<T> try_get() { return optional_item(get_until(no_blocking)); }
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> try_get(std::chrono::duration<Rep, Period> timeout) {
    return optional_item(get_until(queue_deadline(timeout)));
  }

  // next()
  //
  // Beyond Python: consumes the queue until it is shut down, without exceptions. Waits for an
  // item and returns it, as get() does; where get() would throw ShutDown (the queue is shut
  // down and empty), returns an empty optional instead, at once, on this and every later call.
  //
  //   while (auto job = jobs.next()) {   // ends once jobs.shutdown() was called and
  //     handle(*job);                    // every item before it was taken
  //     jobs.task_done();
  //   }
  //
  // After shutdown(), the items still queued come out first, and the empty optional follows.
  // After shutdown(true), which drops what was queued (counting each item as done), it comes
  // at once. A consumer blocked in next() when the queue is shut down wakes up: with an item
  // when one is left, with an empty optional otherwise. An item from next() is an item got, as
  // from get(): call task_done() for it if anyone join()s the queue. Throws only what moving
  // an item throws. There is no timed next(): an empty optional would then mean either "timed
  // out" or "shut down"; a consumer that must wake up now and then uses try_get(timeout)
  // (empty on a timeout, ShutDown when done) or get(timeout). The range form is drain(queue).
  [[nodiscard]] std::optional<T> next() {
    Got got = get_until(never);
    if (got.status != QueueStatus::ok) return std::nullopt;  // shut down and empty
    return std::move(got.item);
  }

  // get_many(out, max)
  //
  // Waits until the queue has an item, then moves up to `max` items (whatever is there, without
  // waiting again) to the output iterator `out`; returns how many. Throws ShutDown once a
  // shut-down queue is empty. If writing to `out` throws, the item being written is gone with
  // the exception (it was taken, as with `*out = get()`: call task_done() for it if the queue
  // is joined), the items written before it stay written, and every later item stays in the
  // queue.
  template <class Out>
  std::size_t get_many(Out out, std::size_t max) {
    QueueStatus status;
    const std::size_t taken = core_.get_many(out, max, never, status);
    if (status == QueueStatus::shut_down) throw ShutDown();
    return taken;
  }

  // qsize(), empty(), full(), maxsize()
  //
  // The number of items, whether there are none, whether the queue is at maxsize (never, when
  // unbounded), and the maxsize it was built with. Snapshots: other threads may change them at
  // once.
  [[nodiscard]] std::size_t qsize() { return core_.qsize(); }
  [[nodiscard]] bool empty() { return qsize() == 0; }
  [[nodiscard]] bool full() { return core_.full(); }
  [[nodiscard]] std::int64_t maxsize() const noexcept { return core_.maxsize(); }

  // task_done()
  //
  // Tells the queue that an item taken with get() has been processed. Throws UsageError when
  // called more times than items were put.
  void task_done() { core_.task_done(); }

  // join()
  //
  // Blocks until every item ever put has been marked done (or dropped by shutdown(true)).
  void join() { (void)core_.join_until(never); }

  // join(timeout)
  //
  // Beyond Python: as join(), giving up after `timeout`; returns whether every item was done.
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) {
    return core_.join_until(queue_deadline(timeout));
  }

  // shutdown(immediate)
  //
  // Shuts the queue down (Python 3.13): every later put throws ShutDown, gets return what is
  // left and then throw ShutDown. With `immediate`, what is left is dropped at once (each item
  // counting as done, which releases join()). Every blocked caller wakes up.
  void shutdown(bool immediate = false) { core_.shutdown(immediate); }

  // is_shutdown()
  //
  // Whether shutdown() was called.
  [[nodiscard]] bool is_shutdown() { return core_.is_shutdown(); }

 protected:
  template <class... Args>
  explicit BasicQueue(Args&&... args) : core_(std::forward<Args>(args)...) {}

 private:
  // An rvalue T goes in as it is (moved from only on success); anything else is made into a T
  // first, so that a throwing copy happens before the queue is touched.
  template <class U>
  QueueStatus put_until(U&& item, steady_time deadline) {
    if constexpr (std::is_same_v<U, T>) {
      return core_.put(std::move(item), deadline);
    } else {
      T made(std::forward<U>(item));
      return core_.put(std::move(made), deadline);
    }
  }

  struct Got {
    QueueStatus status;
    std::optional<T> item;
  };
  Got get_until(steady_time deadline) {
    Got got;
    got.status = core_.get(got.item, deadline);
    return got;
  }

  static void expect_put(QueueStatus status) {
    if (status == QueueStatus::timed_out) throw Full();
    if (status == QueueStatus::shut_down) throw ShutDown();
  }
  static bool accepted(QueueStatus status) {
    if (status == QueueStatus::shut_down) throw ShutDown();
    return status == QueueStatus::ok;
  }
  static T expect_item(Got&& got) {
    if (got.status == QueueStatus::timed_out) throw Empty();
    if (got.status == QueueStatus::shut_down) throw ShutDown();
    return std::move(*got.item);
  }
  static std::optional<T> optional_item(Got&& got) {
    if (got.status == QueueStatus::shut_down) throw ShutDown();
    return std::move(got.item);
  }

  Core core_;
};

}  // namespace detail

// Queue
//
// Python's queue.Queue: first in, first out.
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoCore<T>> {
 public:
  // Queue::Queue(maxsize)
  //
  // A queue holding at most `maxsize` items; 0 or less (the default) means unbounded.
  explicit Queue(std::int64_t maxsize = 0) : detail::BasicQueue<T, detail::FifoCore<T>>(maxsize) {}
};

// LifoQueue
//
// Python's queue.LifoQueue: last in, first out.
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LockedCore<T, detail::LifoStore<T>>> {
  using Base = detail::BasicQueue<T, detail::LockedCore<T, detail::LifoStore<T>>>;

 public:
  // LifoQueue::LifoQueue(maxsize)
  //
  // A stack holding at most `maxsize` items; 0 or less means unbounded.
  explicit LifoQueue(std::int64_t maxsize = 0) : Base(maxsize) {}
};

// PriorityQueue
//
// Python's queue.PriorityQueue: the smallest item first, "smallest" by `Compare` (a strict
// weak order, std::less by default; std::greater gives the largest first). Equal items come
// out in no particular order, as with Python's heapq.
template <class T, class Compare = std::less<T>>
class PriorityQueue
    : public detail::BasicQueue<T, detail::LockedCore<T, detail::HeapStore<T, Compare>>> {
  using Base = detail::BasicQueue<T, detail::LockedCore<T, detail::HeapStore<T, Compare>>>;

 public:
  // PriorityQueue::PriorityQueue(maxsize, compare)
  //
  // A priority queue holding at most `maxsize` items (0 or less: unbounded), ordered by
  // `compare`.
  explicit PriorityQueue(std::int64_t maxsize = 0, Compare compare = Compare())
      : Base(maxsize, detail::HeapStore<T, Compare>(std::move(compare))) {}
};

namespace detail {

// A queue that next() can consume: Queue, LifoQueue, PriorityQueue (not SimpleQueue, which has
// no shutdown and so no end).
template <class Q>
concept drainable_queue = requires(Q& queue) {
  typename Q::value_type;
  { queue.next() } -> std::same_as<std::optional<typename Q::value_type>>;
};

// The range drain() returns: an input range (and a view) whose iterator calls next(). It holds
// the current item, as std::ranges::istream_view holds the value it read, and lets go of it
// before it waits for the next one.
template <drainable_queue Q>
class DrainRange : public std::ranges::view_base {
 public:
  using item_type = typename Q::value_type;

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = item_type;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    explicit iterator(DrainRange& range) noexcept : range_(&range) {}

    // The current item, which the caller may move from.
    item_type& operator*() const noexcept { return *range_->current_; }
    iterator& operator++() {
      range_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.at_end();
    }

   private:
    bool at_end() const noexcept { return !range_->current_.has_value(); }

    DrainRange* range_ = nullptr;
  };

  explicit DrainRange(Q& queue) noexcept : queue_(&queue) {}

  // Waits for the first item (or the end): a range-for calls it once.
  iterator begin() {
    advance();
    return iterator(*this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() {
    current_.reset();  // the previous item is not kept alive while the next one is awaited
    current_ = queue_->next();
  }

  Q* queue_;
  std::optional<item_type> current_;
};

}  // namespace detail

// drain(queue)
//
// Beyond Python: a range over `queue`'s items until it is shut down, for a range-for loop.
// Each step waits for the next item as get() does; the loop ends where get() would throw
// ShutDown (shut down and empty), without an exception. Exactly the items next() would return,
// in the queue's order:
//
//   for (Job& job : concur::drain(jobs)) {  // `auto&` (or `auto`, for copyable items)
//     handle(std::move(job));               // the item is the loop's to move from
//     jobs.task_done();
//   }
//
// "Drain" as in Python's documentation of shutdown(): the loop takes what is left, then ends;
// it does not end when the queue is merely empty, but waits. After shutdown(true) it ends at
// once. The range is an input range: one pass, begin() once. It refers to `queue`, which must
// outlive it, and holds the current item until the loop moves on. Any number of threads may
// each drain the same queue; each item reaches one of them.
template <detail::drainable_queue Q>
[[nodiscard]] detail::DrainRange<Q> drain(Q& queue) noexcept {
  return detail::DrainRange<Q>(queue);
}

}  // namespace concur

#endif  // CONCUR_QUEUE_HPP
