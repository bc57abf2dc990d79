// concur/mp_barrier.hpp
//
// concur::mp::Barrier, Python's multiprocessing.Barrier: `parties` threads, of any processes,
// wait for each other, then all go on together.
//
//   namespace mp = concur::mp;
//   mp::Barrier round(4);                  // before the workers start
//   // in each of four processes:
//   std::size_t index = round.wait();      // 0 .. 3: distinct in every round
//
// Semantics are concur::Barrier's, hence Python's: wait() returns the order of arrival; an
// optional action runs once per round in the thread that arrives last, before any is released;
// a timeout (given to wait(), or a default given to the constructor), abort(), reset() while
// threads wait, or an action that throws breaks the barrier, and every waiting thread and every
// later wait() throws BrokenBarrierError until reset(). The action is a per-process function:
// each process's Barrier object has its own (Python pickles it).
//
// How it works. A robust lock (detail/robust_lock.hpp) guards the round; each waiting thread
// takes a slot of the block's waiter table (detail/shared_waiters.hpp) and sleeps on its word.
// The last arrival marks every slot of the round with the outcome and wakes it, then starts the
// next round at once, so an outcome is never confused with a later round's. The table has a few
// more slots than parties; an arrival that finds none free (threads of finished rounds that have
// not yet run to give theirs back) waits for one.
//
// A process that dies. One that dies waiting has arrived: the round still completes without it.
// One that dies inside the barrier's lock (the last arrival, in the action) breaks the barrier:
// its count may be half-changed. The next thread to take the lock, or a waiter at its next look
// (within 200 ms, SharedWaits::recheck_interval), learns of the death from the lock and breaks
// the barrier; every waiter throws BrokenBarrierError. One that dies before it arrives can never be
// told apart from a slow one: give wait() a timeout, or abort() the barrier when a process ends
// (its Process::sentinel()), where a party may die.
//
// Linux with a robust futex list, as mp::Lock (std::system_error with ENOSYS elsewhere).
//
// Memory ordering: everything every party did before wait() is visible to every party after its
// wait() returns, across processes (the lock orders the arrivals and the outcomes).

#ifndef CONCUR_MP_BARRIER_HPP
#define CONCUR_MP_BARRIER_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_lock.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/detail/shared_waiters.hpp"
#include "concur/detail/shared_waits.hpp"
#include "concur/errors.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

namespace detail_barrier {

struct State {
  concur::detail::RobustLock lock;
  std::uint32_t parties = 0;
  std::uint32_t arrived = 0;  // in this round
  std::uint32_t broken = 0;
  std::uint32_t slot_sleepers = 0;           // arrivals waiting for a free slot
  std::atomic<std::uint32_t> slot_freed{0};  // futex word: raised when a slot is given back
  std::int64_t timeout_ns = -1;              // the default timeout of wait(); -1 for none
  concur::detail::SharedWaiterCounts counts;
};

inline constexpr auto kind = concur::detail::SharedKind::barrier;
inline constexpr std::uint32_t released = 1;
inline constexpr std::uint32_t broken = 2;

// Slots beyond parties - 1, so that threads of a finished round rarely hold up the next one.
inline constexpr std::size_t spare_slots = 4;

constexpr concur::detail::SharedLayout layout(std::size_t slots) noexcept {
  return {.kind = kind,
          .state_size = sizeof(State),
          .state_align = alignof(State),
          .item_size = sizeof(concur::detail::SharedWaiterSlot),
          .item_align = alignof(concur::detail::SharedWaiterSlot),
          .items = slots};
}

inline std::size_t slots_for(std::int64_t parties) {
  if (parties < 1) throw std::invalid_argument("parties must be >= 1");
  if (parties > (std::int64_t{1} << 24)) {
    throw std::invalid_argument("Barrier: parties must be at most 2^24");
  }
  return static_cast<std::size_t>(parties) + spare_slots;
}

}  // namespace detail_barrier

// Barrier
//
// Python's multiprocessing.Barrier. Not movable.
class Barrier {
  using State = detail_barrier::State;

 public:
  // Barrier::shared_size(parties), Barrier::shared_alignment
  //
  // The bytes a Barrier of `parties` takes in a SharedMemory (its header included), and the
  // alignment its offset needs.
  static std::size_t shared_size(std::int64_t parties) {
    return detail_barrier::layout(detail_barrier::slots_for(parties)).size();
  }
  static constexpr std::size_t shared_alignment = detail_barrier::layout(1).alignment();

  // Barrier::Barrier(parties, action, timeout)
  //
  // A barrier for `parties` threads (1 to 2^24, or std::invalid_argument), in an anonymous
  // shared block. `action`, if any, runs once per round in the last thread to arrive, if that
  // thread is in this process. `timeout`, if given, is the default for wait() in every process.
  explicit Barrier(std::int64_t parties, std::function<void()> action = {},
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt)
      : block_(std::in_place, detail_barrier::layout(detail_barrier::slots_for(parties))),
        action_(std::move(action)) {
    build(parties, timeout);
  }

  // Barrier::Barrier(parties, timeout)
  //
  // A barrier without an action, with a default timeout for wait().
  template <class Rep, class Period>
  Barrier(std::int64_t parties, std::chrono::duration<Rep, Period> timeout)
      : Barrier(parties, {}, std::chrono::ceil<std::chrono::nanoseconds>(timeout)) {}

  // Barrier::Barrier(mp::place, memory, offset, parties, action, timeout)
  //
  // Builds the barrier at `offset` in `memory` (std::invalid_argument as mp::Lock's).
  Barrier(place_t, SharedMemory& memory, std::size_t offset, std::int64_t parties,
          std::function<void()> action = {},
          std::optional<std::chrono::nanoseconds> timeout = std::nullopt)
      : block_(std::in_place, place, memory, offset,
               detail_barrier::layout(detail_barrier::slots_for(parties))),
        action_(std::move(action)) {
    build(parties, timeout);
  }

  // Barrier::Barrier(mp::find, memory, offset, action)
  //
  // Uses the barrier another process built at `offset` in `memory`, with this process's
  // `action` (run when a thread of this process arrives last).
  Barrier(find_t, SharedMemory& memory, std::size_t offset = 0, std::function<void()> action = {})
      : block_(std::in_place, find, memory, offset, detail_barrier::layout(0)),
        action_(std::move(action)) {
    detail_lock::require_robust_list();
    state_ = std::launder(static_cast<State*>(block_->state()));
  }

  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Barrier::wait()
  //
  // Waits until `parties` threads have called wait() in this round (or the default timeout
  // passes); returns this thread's index, 0 .. parties - 1. Throws BrokenBarrierError when the
  // barrier is or becomes broken, a holder of its lock having died included.
  std::size_t wait() {
    return wait_until(state_->timeout_ns >= 0 ? concur::detail::deadline_after(
                                                    std::chrono::nanoseconds(state_->timeout_ns))
                                              : concur::detail::never);
  }

  // Barrier::wait(timeout)
  //
  // As wait(), giving up after `timeout`: the barrier breaks, and this thread throws
  // BrokenBarrierError like every other waiter. A negative timeout counts as zero.
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(concur::detail::deadline_after(timeout));
  }

  // Barrier::reset()
  //
  // Returns the barrier to its initial state: threads waiting in the current round throw
  // BrokenBarrierError; a broken barrier becomes usable again.
  void reset() {
    Hold hold(*this);
    finish_round(detail_barrier::broken);
    state_->broken = 0;
  }

  // Barrier::abort()
  //
  // Breaks the barrier: threads waiting now and every later wait() throw BrokenBarrierError,
  // until reset().
  void abort() {
    Hold hold(*this);
    break_barrier();
  }

  // Barrier::parties(), n_waiting(), broken()
  //
  // The number of threads a round needs, the number waiting now, and whether it is broken.
  [[nodiscard]] std::size_t parties() const noexcept { return state_->parties; }
  [[nodiscard]] std::size_t n_waiting() {
    Hold hold(*this);
    return state_->arrived;
  }
  [[nodiscard]] bool broken() {
    Hold hold(*this);
    return state_->broken != 0;
  }

 private:
  // The barrier's lock, held for a scope. A holder that died leaves the round in an unknown
  // state: taking the lock then breaks the barrier (`died` says so), which every later wait()
  // and every waiter learns.
  // A thread woken by the end of a round takes it with RobustSpin::dense: the thread that woke
  // it holds the lock and is about to release it.
  class Hold {
   public:
    explicit Hold(Barrier& barrier,
                  concur::detail::RobustSpin spin = concur::detail::RobustSpin::spaced)
        : barrier_(barrier) {
      if (barrier_.state_->lock.acquire_until(concur::detail::never, spin) ==
          concur::detail::RobustAcquired::owner_died) {
        died = true;
        barrier_.break_barrier();
      }
    }
    ~Hold() { barrier_.state_->lock.release(); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

    bool died = false;

   private:
    Barrier& barrier_;
  };

  void build(std::int64_t parties, std::optional<std::chrono::nanoseconds> timeout) {
    detail_lock::require_robust_list();
    state_ = new (block_->state()) State();
    state_->parties = static_cast<std::uint32_t>(parties);
    state_->timeout_ns = timeout ? std::max<std::int64_t>(timeout->count(), 0) : -1;
    for (std::size_t i = 0; i < block_->items_count(); ++i) {
      new (static_cast<concur::detail::SharedWaiterSlot*>(block_->items()) + i)
          concur::detail::SharedWaiterSlot();
    }
    block_->publish();
  }

  concur::detail::SharedWaiterList waiters() const noexcept {
    return {state_->counts,
            std::launder(static_cast<concur::detail::SharedWaiterSlot*>(block_->items())),
            block_->items_count(), /*pass_on=*/false};
  }

  std::size_t wait_until(concur::detail::steady_time deadline) {
    concur::detail::SharedWaiterList list = waiters();
    std::size_t slot = concur::detail::SharedWaiterList::none;
    std::size_t index = 0;
    {
      Hold hold(*this);
      for (;;) {
        if (state_->broken != 0) throw BrokenBarrierError();
        if (state_->arrived + 1 == state_->parties) {
          index = state_->arrived;
          run_action();  // breaks the barrier and rethrows if the action throws
          finish_round(detail_barrier::released);
          return index;
        }
        slot = list.enlist();
        if (slot != concur::detail::SharedWaiterList::none) break;
        wait_for_a_slot(deadline);  // releases the lock meanwhile; breaks it at the deadline
      }
      index = state_->arrived++;
    }
    // A holder of the lock that died (the last arrival, killed in the action) would leave this
    // thread asleep for ever: it looks at the lock at every recheck, and breaks the barrier.
    (void)concur::detail::SharedWaiterList::sleep(list.slot(slot), deadline,
                                                  [&] { return state_->lock.holder_died(); });
    CONCUR_SCHEDULE_POINT("mp_barrier.wait.before_relock");
    Hold hold(*this, concur::detail::RobustSpin::dense);
    const concur::detail::SharedWaiterList::Left left = give_back(list, slot);
    if (!left.notified) {
      break_barrier();  // this thread's timeout: the round cannot complete
      throw BrokenBarrierError();
    }
    if (left.outcome != detail_barrier::released) throw BrokenBarrierError();
    return index;
  }

  // With the lock held and no slot free: sleeps until a slot is given back, with the lock
  // released, and takes the lock again (densely: the giver holds it, about to release it). At
  // the deadline, breaks the barrier.
  void wait_for_a_slot(concur::detail::steady_time deadline) {
    const std::uint32_t seen = state_->slot_freed.load(std::memory_order_relaxed);
    ++state_->slot_sleepers;
    state_->lock.release();
    (void)concur::detail::SharedWaits::wait_until(state_->slot_freed, seen, deadline);
    const bool died =
        state_->lock.acquire_until(concur::detail::never, concur::detail::RobustSpin::dense) ==
        concur::detail::RobustAcquired::owner_died;
    --state_->slot_sleepers;
    if (died || concur::detail::reached(deadline)) break_barrier();
  }

  // Gives this thread's slot back, and wakes an arrival waiting for one.
  concur::detail::SharedWaiterList::Left give_back(concur::detail::SharedWaiterList& list,
                                                   std::size_t slot) noexcept {
    const concur::detail::SharedWaiterList::Left left = list.delist(slot);
    if (state_->slot_sleepers != 0) {
      state_->slot_freed.fetch_add(1, std::memory_order_relaxed);
      concur::detail::SharedWaits::wake_all(state_->slot_freed);
    }
    return left;
  }

  void run_action() {
    if (!action_) return;
    try {
      action_();
    } catch (...) {
      break_barrier();
      throw;
    }
  }

  // With the lock held: gives every waiter of the round `outcome` and starts a fresh round.
  void finish_round(std::uint32_t outcome) noexcept {
    (void)waiters().notify_every(outcome);
    state_->arrived = 0;
  }

  void break_barrier() noexcept {
    state_->broken = 1;
    finish_round(detail_barrier::broken);
  }

  std::optional<concur::detail::SharedBlock> block_;
  State* state_ = nullptr;
  std::function<void()> action_;
};

}  // namespace concur::mp

#endif  // CONCUR_MP_BARRIER_HPP
