// concur/barrier.hpp
//
// concur::Barrier, Python's threading.Barrier: `parties` threads wait for each other, then all
// go on together; the barrier is then ready for the next round.
//
//   concur::Barrier round(3, [] { std::puts("all three arrived"); });
//   // in each of three threads:
//   std::size_t index = round.wait();   // 0, 1 or 2: distinct in every round
//
// wait() returns a distinct index from 0 to parties - 1 (the order of arrival). An optional
// action runs once per round, in the thread that arrives last, before any thread is released.
// A timeout (given to wait() or, as a default, to the constructor), abort(), reset() while
// threads wait, or an action that throws breaks the barrier: every waiting thread, and every
// later wait(), throws BrokenBarrierError until reset(). The action's own exception propagates
// from the thread that ran it. parties < 1 (a negative count too) throws std::invalid_argument.
//
// How it works. A small Lock guards the round (its arrivals and their order). Each waiting
// thread puts a node on its own stack in the round's list and waits on the node's word; the
// last arrival (or whoever breaks the barrier) gives every node its outcome and wakes it, then
// starts a fresh round at once. So an outcome can never be confused with a later round's, and
// the barrier is reusable immediately. A waiter spins for a few microseconds before it sleeps
// (detail::SpinWait: bounded in time and by the wait's deadline, never yielding, so a timed
// wait returns on time however busy the machine), so a round between running threads costs no
// system call.
//
// Why no wake-up is lost. The waiter and whoever ends the round meet on the waiter's word with
// one read-modify-write each:
//
//   waiter                                    last arrival (lock held)
//   CAS outcome: waiting -> sleeping          old = exchange(outcome, released)
//   futex_wait(outcome, sleeping)             if (old & sleeping) futex_wake(outcome)
//
// If the waiter's compare-and-swap comes first, the exchange sees `sleeping` and wakes; the
// futex wait, atomic against the wake, finds the word changed or is woken. If the exchange comes
// first, the compare-and-swap fails and the waiter reads its outcome without sleeping.
//
// Memory ordering: everything every party did before wait() is visible to every party after
// its wait() returns (the lock and the release of each node order them).

#ifndef CONCUR_BARRIER_HPP
#define CONCUR_BARRIER_HPP

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"

namespace concur {

// Barrier
//
// Python's threading.Barrier. Not movable: waiting threads refer to it.
class Barrier {
 public:
  // Barrier::Barrier(parties, action, timeout)
  //
  // A barrier for `parties` threads: at least 1, or std::invalid_argument (Python's ValueError,
  // as for Semaphore(-1)). The count is signed, so that Barrier(-1) is refused rather than made
  // into a barrier of 2^64 - 1 parties. `action`, if any, runs once per round in the last
  // thread to arrive. `timeout`, if given, is the default for wait().
  explicit Barrier(std::int64_t parties, std::function<void()> action = {},
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt)
      : parties_(checked(parties)), action_(std::move(action)), timeout_(timeout) {}

  // Barrier::Barrier(parties, timeout)
  //
  // A barrier without an action, with a default timeout for wait().
  template <class Rep, class Period>
  Barrier(std::int64_t parties, std::chrono::duration<Rep, Period> timeout)
      : Barrier(parties, {}, std::chrono::ceil<std::chrono::nanoseconds>(timeout)) {}

  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Barrier::wait()
  //
  // Waits until `parties` threads have called wait() in this round (or, when the barrier has a
  // default timeout, until it passes); returns this thread's index, 0 .. parties - 1. Throws
  // BrokenBarrierError when the barrier is or becomes broken.
  std::size_t wait() {
    return wait_until(timeout_ ? detail::deadline_after(*timeout_) : detail::never);
  }

  // Barrier::wait(timeout)
  //
  // As wait(), giving up after `timeout`: the barrier breaks, and this thread throws
  // BrokenBarrierError like every other waiter. A negative timeout counts as zero.
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_after(timeout));
  }

  // Barrier::reset()
  //
  // Returns the barrier to its initial state. Threads waiting in the current round throw
  // BrokenBarrierError; a broken barrier becomes usable again.
  void reset() {
    Guard hold(lock_);
    finish_round(Waiter::broken);
    broken_ = false;
  }

  // Barrier::abort()
  //
  // Breaks the barrier: threads waiting now and every later wait() throw BrokenBarrierError,
  // until reset(). Useful to free waiting threads when the program gives up.
  void abort() {
    Guard hold(lock_);
    break_barrier();
  }

  // Barrier::parties(), n_waiting(), broken()
  //
  // The number of threads a round needs, the number waiting now, and whether the barrier is
  // broken.
  [[nodiscard]] std::size_t parties() const noexcept { return parties_; }
  [[nodiscard]] std::size_t n_waiting() {
    Guard hold(lock_);
    return arrived_;
  }
  [[nodiscard]] bool broken() {
    Guard hold(lock_);
    return broken_;
  }

 private:
  // A waiting thread's place in the round; lives on its stack.
  struct Waiter {
    static constexpr std::uint32_t waiting = 0;
    static constexpr std::uint32_t released = 1;
    static constexpr std::uint32_t broken = 2;
    static constexpr std::uint32_t sleeping = 4;  // or-ed in by a waiter about to sleep

    Waiter* next = nullptr;
    detail::wait_word outcome{waiting};
    bool slept = false;  // touched only by the waiter
  };

  static std::size_t checked(std::int64_t parties) {
    if (parties < 1) throw std::invalid_argument("parties must be >= 1");
    return static_cast<std::size_t>(parties);
  }

  std::size_t wait_until(detail::steady_time deadline) {
    Waiter me;
    std::size_t index;
    {
      Guard hold(lock_);
      if (broken_) throw BrokenBarrierError();
      index = arrived_++;
      if (arrived_ == parties_) {
        run_action();  // breaks the barrier and rethrows if the action throws
        finish_round(Waiter::released);
        return index;
      }
      me.next = waiters_;
      waiters_ = &me;
    }
    std::uint32_t outcome = await(me, deadline);
    if (outcome == Waiter::waiting) outcome = time_out(me);
    if (outcome != Waiter::released) throw BrokenBarrierError();
    return index;
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
  // Once it has stored a waiter's outcome it no longer touches the waiter (which may leave).
  void finish_round(std::uint32_t outcome) noexcept {
    Waiter* waiter = waiters_;
    waiters_ = nullptr;
    arrived_ = 0;
    while (waiter != nullptr) {
      Waiter* next = waiter->next;
      CONCUR_SCHEDULE_POINT("barrier.round.before_handoff");
      if (waiter->outcome.exchange(outcome, std::memory_order_release) & Waiter::sleeping) {
        CONCUR_SCHEDULE_POINT("barrier.round.before_wake");
        detail::wake_all(waiter->outcome);
      }
      waiter = next;
    }
  }

  void break_barrier() noexcept {
    broken_ = true;
    finish_round(Waiter::broken);
  }

  // Waits for the waiter's outcome until `deadline`; Waiter::waiting if the deadline passed.
  std::uint32_t await(Waiter& me, detail::steady_time deadline) noexcept {
    const std::uint32_t outcome = await_unlocked(me, deadline);
    // A waiter that slept may see its outcome before the thread that stored it has made the
    // wake-up call on its word; the lock, held all through finish_round(), keeps it (and its
    // word, on this stack) here until that call is made.
    if (outcome != Waiter::waiting && me.slept) {
      Guard hold(lock_);
    }
    return outcome;
  }

  static std::uint32_t await_unlocked(Waiter& me, detail::steady_time deadline) noexcept {
    CONCUR_SCHEDULE_POINT("barrier.wait.before_spin");
    if (detail::spin_for(
            [&] { return me.outcome.load(std::memory_order_acquire) != Waiter::waiting; }, deadline,
            spin_budget)) {
      return me.outcome.load(std::memory_order_acquire);
    }
    for (;;) {
      std::uint32_t outcome = Waiter::waiting;
      CONCUR_SCHEDULE_POINT("barrier.wait.before_sleeping_cas");
      if (!me.outcome.compare_exchange_strong(outcome, Waiter::sleeping,
                                              std::memory_order_acquire) &&
          outcome != Waiter::sleeping) {
        return outcome;
      }
      me.slept = true;
      CONCUR_SCHEDULE_POINT("barrier.wait.before_sleep");
      const bool woken = detail::wait_on_until(me.outcome, Waiter::sleeping, deadline);
      CONCUR_SCHEDULE_POINT("barrier.wait.after_wake");
      if (!woken) {
        const std::uint32_t now = me.outcome.load(std::memory_order_acquire);
        return now == Waiter::sleeping ? Waiter::waiting : now;
      }
    }
  }

  // This thread's timeout: it breaks the barrier, unless the round ended just before.
  std::uint32_t time_out(Waiter& me) {
    Guard hold(lock_);
    const std::uint32_t outcome = me.outcome.load(std::memory_order_acquire) & ~Waiter::sleeping;
    if (outcome != Waiter::waiting) return outcome;
    break_barrier();  // gives `me` its outcome too
    return Waiter::broken;
  }

  // How long a waiter spins before it sleeps.
  static constexpr std::chrono::nanoseconds spin_budget = std::chrono::microseconds(20);

  const std::size_t parties_;
  const std::function<void()> action_;
  const std::optional<std::chrono::nanoseconds> timeout_;
  Lock lock_;
  std::size_t arrived_ = 0;    // guarded by lock_
  Waiter* waiters_ = nullptr;  // guarded by lock_: this round's sleepers, newest first
  bool broken_ = false;        // guarded by lock_
};

}  // namespace concur

#endif  // CONCUR_BARRIER_HPP
