// concur/detail/mp_queue_core.hpp
//
// The shared ring behind mp::Queue, mp::JoinableQueue and mp::SimpleQueue: a fixed array of
// items in shared memory and a few counters, all guarded by one robust lock
// (detail/robust_lock.hpp).
//
//   put: lock; wait while full; copy the item into slot tail % capacity; tail += 1; unlock;
//        wake a getter if one sleeps
//   get: lock; wait while empty; copy slot head % capacity out; head += 1; unlock;
//        wake a putter if one sleeps
//
// A process killed anywhere: every change a reader could see is one store (tail += 1 publishes
// a fully copied item; head += 1 takes one; task_done's done += 1 finishes one), so the state
// is consistent at every instruction. The robust lock makes sure the death never leaves the
// lock held: the next holder takes it, finds OWNER_DIED, and goes on, since there is nothing to
// repair. What is lost is only what the dead process was holding in its own memory: an item
// it had got (as with Python), or one it was still copying in (never published).
//
// Sleeping. A thread that finds the queue empty (full) spins for up to spin_budget watching
// tail (head) without the lock, then counts itself in sleeping_getters (sleeping_putters),
// reads put_seq (get_seq) under the lock, unlocks and sleeps on that word with a shared futex.
// A put bumps put_seq under the lock when a getter sleeps, and wakes one after unlocking: a
// getter that has not yet slept sees the word changed and does not sleep (no lost wake-up). A
// process killed between its unlock and its wake, or while counted as a sleeper, could leave a
// waiter asleep beside an item, or a count too high: so every sleep is at most recheck_interval
// long, after which the waiter looks again. A death costs a waiter at most that much delay,
// never a hang; a count left too high costs later puts a wake-up call each, nothing more.
//
// Memory ordering: the lock orders everything; tail and head are atomics only so that spinning
// threads may read them without it (relaxed: they look again under the lock).

#ifndef CONCUR_DETAIL_MP_QUEUE_CORE_HPP
#define CONCUR_DETAIL_MP_QUEUE_CORE_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_lock.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait_futex.hpp"

namespace concur::detail {

// MpQueueState
//
// The counters of one queue, in its shared block; the items follow it.
struct MpQueueState {
  RobustLock lock;
  std::uint64_t capacity = 0;                      // slots in the ring
  std::uint64_t maxsize = 0;                       // Python's maxsize; 0: as many as the ring holds
  alignas(64) std::atomic<std::uint64_t> tail{0};  // items put, ever
  std::atomic<std::uint32_t> put_seq{0};           // futex word of sleeping getters
  std::uint32_t sleeping_getters = 0;
  alignas(64) std::atomic<std::uint64_t> head{0};  // items got, ever
  std::atomic<std::uint32_t> get_seq{0};           // futex word of sleeping putters
  std::uint32_t sleeping_putters = 0;
  // JoinableQueue: tasks finished, ever (unfinished = tail - done), and its joiners' word.
  alignas(64) std::uint64_t done = 0;
  std::atomic<std::uint32_t> done_seq{0};
  std::uint32_t sleeping_joiners = 0;
};

// MpQueueCore
//
// The operations on one queue's state and items (T trivially copyable).
template <class T>
class MpQueueCore {
 public:
  static constexpr std::chrono::microseconds spin_budget{20};
  static constexpr std::chrono::milliseconds recheck_interval{200};

  MpQueueCore(MpQueueState& state, T* items) noexcept : state_(state), items_(items) {}

  // Puts `item`, waiting until `deadline` for room; false if there was none by then.
  bool put(const T& item, steady_time deadline) noexcept {
    bool spun = false;
    Held held(state_.lock);
    for (;;) {
      const std::uint64_t tail = state_.tail.load(std::memory_order_relaxed);
      if (tail - state_.head.load(std::memory_order_relaxed) < bound()) {
        std::memcpy(static_cast<void*>(items_ + tail % state_.capacity), &item, sizeof(T));
        CONCUR_SCHEDULE_POINT("mp_queue.put.copied_before_publish");
        state_.tail.store(tail + 1, std::memory_order_relaxed);
        const bool wake = state_.sleeping_getters != 0;
        if (wake) state_.put_seq.fetch_add(1, std::memory_order_relaxed);
        held.release();
        CONCUR_SCHEDULE_POINT("mp_queue.put.released_before_wake");
        if (wake) futex::shared_wake(state_.put_seq, 1);
        return true;
      }
      if (reached(deadline)) return false;
      if (!spun) {
        spun = true;
        held.release();
        spin_for([&] { return has_room(); }, deadline, spin_budget);
        held.acquire();
        continue;
      }
      sleep(held, state_.get_seq, state_.sleeping_putters, deadline);
    }
  }

  // Copies the oldest item's bytes into `out` (sizeof(T) of them) and removes it, waiting until
  // `deadline` for one; false if there was none.
  bool get(void* out, steady_time deadline) noexcept {
    bool spun = false;
    Held held(state_.lock);
    for (;;) {
      const std::uint64_t head = state_.head.load(std::memory_order_relaxed);
      if (state_.tail.load(std::memory_order_relaxed) != head) {
        std::memcpy(out, static_cast<const void*>(items_ + head % state_.capacity), sizeof(T));
        CONCUR_SCHEDULE_POINT("mp_queue.get.copied_before_take");
        state_.head.store(head + 1, std::memory_order_relaxed);
        const bool wake = state_.sleeping_putters != 0;
        if (wake) state_.get_seq.fetch_add(1, std::memory_order_relaxed);
        held.release();
        CONCUR_SCHEDULE_POINT("mp_queue.get.released_before_wake");
        if (wake) futex::shared_wake(state_.get_seq, 1);
        return true;
      }
      if (reached(deadline)) return false;
      if (!spun) {
        spun = true;
        held.release();
        spin_for([&] { return has_item(); }, deadline, spin_budget);
        held.acquire();
        continue;
      }
      sleep(held, state_.put_seq, state_.sleeping_getters, deadline);
    }
  }

  // Items in the queue now (a snapshot).
  [[nodiscard]] std::uint64_t size() const noexcept {
    const std::uint64_t head = state_.head.load(std::memory_order_relaxed);
    const std::uint64_t tail = state_.tail.load(std::memory_order_relaxed);
    return tail >= head ? tail - head : 0;
  }
  [[nodiscard]] std::uint64_t bound() const noexcept {
    return state_.maxsize != 0 ? state_.maxsize : state_.capacity;
  }

  // JoinableQueue::task_done(): false when every item put has been marked done already.
  bool task_done() noexcept {
    Held held(state_.lock);
    if (state_.done == state_.tail.load(std::memory_order_relaxed)) return false;
    ++state_.done;
    const bool all = state_.done == state_.tail.load(std::memory_order_relaxed);
    const bool wake = all && state_.sleeping_joiners != 0;
    if (wake) state_.done_seq.fetch_add(1, std::memory_order_relaxed);
    held.release();
    if (wake) futex::shared_wake(state_.done_seq, INT_MAX);
    return true;
  }

  // JoinableQueue::join(): waits until every item put has been marked done.
  bool join(steady_time deadline) noexcept {
    Held held(state_.lock);
    for (;;) {
      if (state_.done == state_.tail.load(std::memory_order_relaxed)) return true;
      if (reached(deadline)) return false;
      sleep(held, state_.done_seq, state_.sleeping_joiners, deadline);
    }
  }

  // Items put but not yet marked done.
  [[nodiscard]] std::uint64_t unfinished() noexcept {
    Held held(state_.lock);
    return state_.tail.load(std::memory_order_relaxed) - state_.done;
  }

 private:
  // The queue's lock, held for a scope. A previous holder that died left nothing to repair
  // (see the header comment), so OWNER_DIED is simply cleared by taking the lock.
  class Held {
   public:
    explicit Held(RobustLock& lock) noexcept : lock_(lock) { acquire(); }
    ~Held() {
      if (held_) lock_.release();
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    void acquire() noexcept {
      (void)lock_.acquire_until(never);
      held_ = true;
    }
    void release() noexcept {
      lock_.release();
      held_ = false;
    }

   private:
    RobustLock& lock_;
    bool held_ = false;
  };

  bool has_room() const noexcept {
    return state_.tail.load(std::memory_order_relaxed) -
               state_.head.load(std::memory_order_relaxed) <
           bound();
  }
  bool has_item() const noexcept {
    return state_.tail.load(std::memory_order_relaxed) !=
           state_.head.load(std::memory_order_relaxed);
  }

  // Sleeps on `word` (counted in `sleepers`) until woken, the deadline, or recheck_interval;
  // returns holding the lock again.
  static void sleep(Held& held, std::atomic<std::uint32_t>& word, std::uint32_t& sleepers,
                    steady_time deadline) noexcept {
    ++sleepers;
    const std::uint32_t seen = word.load(std::memory_order_relaxed);
    held.release();
    CONCUR_SCHEDULE_POINT("mp_queue.sleep.released_before_sleep");
    const steady_time recheck = deadline_after(recheck_interval);
    (void)futex::shared_wait_until(word, seen, std::min(deadline, recheck));
    held.acquire();
    --sleepers;
  }

  MpQueueState& state_;
  T* items_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_MP_QUEUE_CORE_HPP
