// concur/detail/executor/local_deque.hpp
//
// A pool worker's own deque of tasks: the Chase-Lev work-stealing deque (Chase and Lev, 2005;
// in the C11 form of Lê, Pop, Cohen and Zappa Nardelli, 2013), with a fixed ring. The worker
// that owns it pushes and pops at the bottom (newest first: a task that submits children and
// waits for them finds them here, hot in its cache, as a serial program would run them); other
// threads steal at the top (oldest first: the biggest pieces of a fork-join tree). A push to a
// full deque fails and the caller queues the task globally instead.
//
// The owner's push and pop take no lock and no read-modify-write, except when pop and a steal
// compete for the last task (one compare-and-swap on `top_`). Steals compete with a
// compare-and-swap on `top_`; a thief that loses returns nothing and tries elsewhere.
//
// Memory ordering: every operation on `top_` and `bottom_` is seq_cst, in place of the fences
// of the published algorithm (which ThreadSanitizer cannot follow). The ring's slots are
// relaxed atomics: a task written before the push's store of `bottom_` (a release) is read
// after a thief's load of `bottom_` (an acquire) that saw it. The seq_cst store of `bottom_` in
// push() is also the change that the pool's sleepers check for (thread_pool.hpp), as the event
// count's contract asks.
//
//   pop (owner)                              steal (thief)
//   b = bottom - 1; bottom = b  (seq_cst)    t = top   (seq_cst)
//   t = top   (seq_cst)                      b = bottom (seq_cst)
//   t <  b: take slot b, no race             t <  b: read slot t, CAS top t -> t + 1
//   t == b: the last one: CAS top t -> t + 1 (one of the owner and the thieves wins it)
//   t >  b: empty; bottom = b + 1
// Because the owner's store of bottom and its load of top are both seq_cst (as the thief's load
// of top and load of bottom are), they cannot both miss each other: for the last task, either
// the thief sees the lowered bottom (and backs off) or the owner sees the thief's top and both
// compete with the same CAS.

#ifndef CONCUR_DETAIL_EXECUTOR_LOCAL_DEQUE_HPP
#define CONCUR_DETAIL_EXECUTOR_LOCAL_DEQUE_HPP

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "concur/detail/executor/future_state.hpp"
#include "concur/detail/schedule.hpp"

namespace concur::detail {

class LocalDeque {
 public:
  static constexpr std::int64_t capacity = 1024;
  static_assert((capacity & (capacity - 1)) == 0, "the ring's size is a power of two");

  // LocalDeque::push(task)
  //
  // The owner adds its newest task; false when the ring is full (nothing changed).
  bool push(StateBase* task) noexcept {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed);
    const std::int64_t top = top_.load(std::memory_order_acquire);
    if (bottom - top >= capacity) return false;
    slot(bottom).store(task, std::memory_order_relaxed);
    CONCUR_SCHEDULE_POINT("local_deque.push.before_publish");
    bottom_.store(bottom + 1, std::memory_order_seq_cst);
    return true;
  }

  // LocalDeque::push_newest_last(tasks, count)
  //
  // The owner adds tasks[count - 1], ..., tasks[0] as push() would one by one, so that its pops
  // take tasks[0] first, with one store of `bottom_` for them all; returns how many it added
  // (those at the end of `tasks`, fewer than `count` when the ring fills).
  int push_newest_last(StateBase* const* tasks, int count) noexcept {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed);
    const std::int64_t room = capacity - (bottom - top_.load(std::memory_order_acquire));
    const int added = room < count ? static_cast<int>(room) : count;
    for (int i = 0; i < added; ++i) {
      slot(bottom + i).store(tasks[count - 1 - i], std::memory_order_relaxed);
    }
    if (added > 0) {
      CONCUR_SCHEDULE_POINT("local_deque.push.before_publish");
      bottom_.store(bottom + added, std::memory_order_seq_cst);
    }
    return added;
  }

  // LocalDeque::pop()
  //
  // The owner takes its newest task, or nullptr when the deque is empty.
  StateBase* pop() noexcept {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed) - 1;
    bottom_.store(bottom, std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("local_deque.pop.after_reserve");
    std::int64_t top = top_.load(std::memory_order_seq_cst);
    if (top > bottom) {  // empty
      bottom_.store(bottom + 1, std::memory_order_relaxed);
      return nullptr;
    }
    StateBase* task = slot(bottom).load(std::memory_order_relaxed);
    if (top == bottom) {  // the last one: thieves may want it too
      if (!top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        task = nullptr;  // a thief took it
      }
      bottom_.store(bottom + 1, std::memory_order_relaxed);
    }
    return task;
  }

  // LocalDeque::newest()
  //
  // The owner's look at its newest task without taking it: nullptr when the deque looks empty.
  // A hint only (a thief may take that task meanwhile); pop() decides.
  [[nodiscard]] StateBase* newest() noexcept {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed);
    if (top_.load(std::memory_order_relaxed) >= bottom) return nullptr;
    return slot(bottom - 1).load(std::memory_order_relaxed);
  }

  // LocalDeque::steal()
  //
  // Another thread takes the oldest task; nullptr when the deque is empty or another thread won
  // the race for it (maybe_nonempty() tells the two apart).
  StateBase* steal() noexcept {
    std::int64_t top = top_.load(std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("local_deque.steal.after_top");
    const std::int64_t bottom = bottom_.load(std::memory_order_seq_cst);
    if (top >= bottom) return nullptr;
    StateBase* task = slot(top).load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;
    }
    return task;
  }

  // LocalDeque::maybe_nonempty()
  //
  // A seq_cst look for sleepers' checks: true if a task may be there.
  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return top_.load(std::memory_order_seq_cst) < bottom_.load(std::memory_order_seq_cst);
  }

 private:
  std::atomic<StateBase*>& slot(std::int64_t index) noexcept {
    return slots_[static_cast<std::size_t>(index & (capacity - 1))];
  }

  alignas(64) std::atomic<std::int64_t> top_{0};     // thieves
  alignas(64) std::atomic<std::int64_t> bottom_{0};  // the owner
  alignas(64) std::array<std::atomic<StateBase*>, capacity> slots_{};
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_LOCAL_DEQUE_HPP
