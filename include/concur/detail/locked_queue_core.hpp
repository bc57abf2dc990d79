// concur/detail/locked_queue_core.hpp
//
// LockedCore: Python's queue.Queue as CPython's queue.py writes it, one Lock and three
// Conditions (not_empty, not_full, all_tasks_done) around a container, with the container's
// order left to a store: FifoStore, LifoStore or HeapStore (smallest first, as heapq). It
// serves the queues that the lock-free ring cannot: unbounded ones, LIFO and priority order,
// and items whose moves may throw.
//
// Exception safety: a put constructs its item in the container before anything is counted, and
// a get moves the item out before it is removed, so an item whose move throws is either not
// added or stays where it was; the lock is released either way (Guard). A get_many that fails
// part way keeps the items it already moved out with the caller and still wakes the putters
// for the room they made.

#ifndef CONCUR_DETAIL_LOCKED_QUEUE_CORE_HPP
#define CONCUR_DETAIL_LOCKED_QUEUE_CORE_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/condition.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/queue_core.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"

namespace concur::detail {

// First in, first out.
template <class T>
class FifoStore {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& item) { items_.push_back(std::move(item)); }
  void prepare_pop() noexcept {}
  T& next() noexcept { return items_.front(); }
  void pop() noexcept { items_.pop_front(); }
  void clear() noexcept { items_.clear(); }

 private:
  std::deque<T> items_;  // a deque never moves its items, so push_back is all-or-nothing
};

// Last in, first out.
template <class T>
class LifoStore {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& item) { items_.push_back(std::move(item)); }
  void prepare_pop() noexcept {}
  T& next() noexcept { return items_.back(); }
  void pop() noexcept { items_.pop_back(); }
  void clear() noexcept { items_.clear(); }

 private:
  std::deque<T> items_;
};

// Smallest first by `Compare` (a binary heap, as Python's heapq). Items whose moves may throw
// are kept behind pointers, so that reordering the heap never moves an item.
//
// A comparator may throw (issue 13, item 3). Every comparison of a push or a pop is therefore
// made before anything moves: the walk finds where the new (or the last) item will land, and
// only then are the entries shifted along that path, with moves that cannot throw. A comparison
// that throws leaves the heap exactly as it was: a failed push has not taken the item (the
// caller's object is not even moved from), and a failed pop leaves the item at the front.
// (CPython's heapq appends first and then sifts with swaps, so there the item stays in the
// heap; here the put has simply not happened, which also keeps the queue's counts right.)
template <class T, class Compare>
class HeapStore {
  static constexpr bool by_pointer =
      !std::is_nothrow_move_constructible_v<T> || !std::is_nothrow_move_assignable_v<T>;
  using Entry = std::conditional_t<by_pointer, std::unique_ptr<T>, T>;

 public:
  explicit HeapStore(Compare compare = Compare()) : compare_(std::move(compare)) {}

  std::size_t size() const noexcept { return heap_.size(); }

  void push(T&& item) {
    // 1. Compare only: the place where the item will land (it rises while it comes out before
    //    its parent).
    std::size_t place = heap_.size();
    while (place > 0) {
      const std::size_t parent = (place - 1) / 2;
      if (!compare_(item, value(heap_[parent]))) break;
      place = parent;
    }
    // 2. Room for one more, so that appending cannot fail once the item is taken.
    if (heap_.size() == heap_.capacity())
      heap_.reserve(std::max<std::size_t>(16, 2 * heap_.size()));
    // 3. Take the item (for a pointer entry its move may throw: nothing is changed yet), then
    //    shift the parents on the path down one level each and drop the entry in.
    if constexpr (by_pointer) {
      heap_.push_back(std::make_unique<T>(std::move(item)));
    } else {
      heap_.push_back(std::move(item));
    }
    Entry entry = std::move(heap_.back());
    std::size_t hole = heap_.size() - 1;
    while (hole != place) {
      const std::size_t parent = (hole - 1) / 2;
      heap_[hole] = std::move(heap_[parent]);
      hole = parent;
    }
    heap_[place] = std::move(entry);
  }

  // Before next() and pop(): makes every comparison the pop needs, so that a comparator that
  // throws does so while the front item is still in place.
  void prepare_pop() {
    const std::size_t last = heap_.size() - 1;  // the entry that fills the root's place
    std::size_t hole = 0;
    for (;;) {
      std::size_t child = 2 * hole + 1;
      if (child >= last) break;
      if (child + 1 < last && compare_(value(heap_[child + 1]), value(heap_[child]))) ++child;
      if (!compare_(value(heap_[child]), value(heap_[last]))) break;
      hole = child;
    }
    planned_ = hole;
  }

  T& next() noexcept {
    if constexpr (by_pointer) {
      return *heap_.front();
    } else {
      return heap_.front();
    }
  }

  // Removes the front entry along the path prepare_pop() found: each entry on it moves up one
  // level and the last entry fills the place where the path ends. No comparison, no throw.
  void pop() noexcept {
    const std::size_t last = heap_.size() - 1;
    if (planned_ != 0) {
      // The path from the root to planned_, read from planned_ upwards.
      std::size_t path[64];
      std::size_t depth = 0;
      for (std::size_t at = planned_; at != 0; at = (at - 1) / 2) path[depth++] = at;
      std::size_t hole = 0;
      while (depth > 0) {
        const std::size_t child = path[--depth];
        heap_[hole] = std::move(heap_[child]);
        hole = child;
      }
    }
    if (planned_ != last) heap_[planned_] = std::move(heap_[last]);
    heap_.pop_back();
    planned_ = 0;
  }

  void clear() noexcept { heap_.clear(); }

 private:
  static const T& value(const Entry& entry) noexcept {
    if constexpr (by_pointer) {
      return *entry;
    } else {
      return entry;
    }
  }

  Compare compare_;
  std::vector<Entry> heap_;
  std::size_t planned_ = 0;  // where the last entry lands in the next pop()
};

template <class T, class Store>
class LockedCore {
 public:
  // maxsize <= 0: unbounded, as in Python.
  explicit LockedCore(std::int64_t maxsize, Store store = Store())
      : maxsize_(maxsize), store_(std::move(store)) {}

  QueueStatus put(T&& item, steady_time deadline) {
    Guard hold(mutex_);
    QueueStatus status = wait_for_room(deadline);
    if (status != QueueStatus::ok) return status;
    store_.push(std::move(item));
    ++unfinished_;
    not_empty_.notify();
    return QueueStatus::ok;
  }

  QueueStatus get(std::optional<T>& out, steady_time deadline) {
    Guard hold(mutex_);
    QueueStatus status = wait_for_item(deadline);
    if (status != QueueStatus::ok) return status;
    store_.prepare_pop();
    out.emplace(std::move(store_.next()));
    CONCUR_SCHEDULE_POINT("locked_core.get.between_move_and_pop");
    store_.pop();
    not_full_.notify();
    return QueueStatus::ok;
  }

  template <class It>
  It put_many(It first, It last, steady_time deadline, QueueStatus& status) {
    Guard hold(mutex_);
    status = QueueStatus::ok;
    while (first != last) {
      status = wait_for_room(deadline);
      if (status != QueueStatus::ok) break;
      store_.push(T(std::move(*first)));
      ++first;
      ++unfinished_;
      not_empty_.notify();
    }
    return first;
  }

  template <class Out>
  std::size_t get_many(Out& out, std::size_t max, steady_time deadline, QueueStatus& status) {
    Guard hold(mutex_);
    status = max == 0 ? QueueStatus::ok : wait_for_item(deadline);
    if (status != QueueStatus::ok) return 0;
    // The items taken made room whether or not a later one fails (its move, the output
    // iterator, or a priority comparator may throw): the putters are told on the way out
    // either way, still under the lock (issue 13, item 6).
    struct TellPutters {
      Condition<Lock>& not_full;
      std::size_t taken = 0;
      ~TellPutters() {
        if (taken > 0) not_full.notify(static_cast<long>(taken));
      }
    } tell{not_full_};
    while (tell.taken < max && store_.size() > 0) {
      store_.prepare_pop();
      *out++ = std::move(store_.next());
      CONCUR_SCHEDULE_POINT("locked_core.get_many.between_move_and_pop");
      store_.pop();
      ++tell.taken;
    }
    return tell.taken;
  }

  std::size_t qsize() {
    Guard hold(mutex_);
    return store_.size();
  }

  std::int64_t maxsize() const noexcept { return maxsize_; }

  bool full() {
    Guard hold(mutex_);
    return maxsize_ > 0 && store_.size() >= static_cast<std::size_t>(maxsize_);
  }

  void task_done() {
    Guard hold(mutex_);
    if (unfinished_ == 0) throw UsageError("task_done() called too many times");
    if (--unfinished_ == 0) all_tasks_done_.notify_all();
  }

  bool join_until(steady_time deadline) {
    Guard hold(mutex_);
    while (unfinished_ != 0) {
      if (is_past(deadline)) return false;
      (void)all_tasks_done_.wait_until(deadline);
    }
    return true;
  }

  void shutdown(bool immediate) {
    Guard hold(mutex_);
    shut_down_ = true;
    if (immediate) {
      const std::size_t dropped = store_.size();
      store_.clear();
      unfinished_ -= std::min<std::uint64_t>(unfinished_, dropped);
      all_tasks_done_.notify_all();
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool is_shutdown() {
    Guard hold(mutex_);
    return shut_down_;
  }

 private:
  // With the lock held: waits until there is room for a put. Python checks shutdown first, and
  // again after every wait.
  QueueStatus wait_for_room(steady_time deadline) {
    if (shut_down_) return QueueStatus::shut_down;
    while (maxsize_ > 0 && store_.size() >= static_cast<std::size_t>(maxsize_)) {
      if (is_past(deadline)) return QueueStatus::timed_out;
      (void)not_full_.wait_until(deadline);
      if (shut_down_) return QueueStatus::shut_down;
    }
    return QueueStatus::ok;
  }

  // With the lock held: waits until there is an item; after a shutdown, gets drain what is
  // left and then fail.
  QueueStatus wait_for_item(steady_time deadline) {
    while (store_.size() == 0) {
      if (shut_down_) return QueueStatus::shut_down;
      if (is_past(deadline)) return QueueStatus::timed_out;
      (void)not_empty_.wait_until(deadline);
    }
    return QueueStatus::ok;
  }

  const std::int64_t maxsize_;
  Lock mutex_;
  Condition<Lock> not_empty_{mutex_};
  Condition<Lock> not_full_{mutex_};
  Condition<Lock> all_tasks_done_{mutex_};
  Store store_;                   // guarded by mutex_
  std::uint64_t unfinished_ = 0;  // guarded by mutex_
  bool shut_down_ = false;        // guarded by mutex_
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_LOCKED_QUEUE_CORE_HPP
