// concur/detail/robust_lock.hpp
//
// The lock protocol of concur::mp: a mutual-exclusion lock in shared memory whose holder, if it
// dies holding it, is found out by the kernel. mp::Lock, mp::RLock and the objects guarded by
// them (Value, Array) are built on it.
//
// The word is the kernel's robust futex format: the holder's thread id in the low 30 bits,
// FUTEX_WAITERS ("someone may sleep here: wake on release"), FUTEX_OWNER_DIED. While a thread
// holds the word, the lock's RobustSlot is linked into that thread's robust list
// (robust_list.hpp). When a thread ends, however it ends, the kernel walks its list and, for
// every word that still names it, writes FUTEX_OWNER_DIED in place of its id (keeping
// FUTEX_WAITERS) and wakes one waiter. The next acquirer takes the word as free, learns of the
// death from the bit, and clears it: the lock is whole again once that acquirer releases it.
//
//   acquire: pending = slot; CAS 0 -> tid; link
//   release: pending = slot (if it no longer is); unlink; exchange -> 0; wake if WAITERS;
//            pending = none
//
// What if the thread is killed between two of those steps? `pending` (the list's
// list_op_pending) names the slot the thread is working on, and the kernel treats it as if it
// were on the list (once: an entry that is both is handled as pending):
//   - killed after the CAS, before the link: the word names the dead thread; pending covers it.
//   - killed after the unlink, before the exchange: the same.
//   - killed after the exchange, before the wake (or after being woken, before taking the word):
//     the word is 0 and a waiter may sleep; for a pending slot whose word is 0 the kernel wakes
//     one waiter (Linux 5.5, "futex: Prevent robust futex exit race"). A waiter keeps `pending`
//     on the slot while it sleeps, for that case.
//   - the same, but another thread took the word (without FUTEX_WAITERS) before the death: the
//     kernel wakes nobody, and that thread's release wakes nobody either:
//
//       X and P sleep          H releases: exchange -> 0, wakes X
//       X is killed            D takes the free word: D (no FUTEX_WAITERS)
//                              D releases: nothing to wake; P sleeps beside a free lock
//
//     So no sleep lasts longer than SharedWaits::recheck_interval (200 ms): P looks at the word
//     again, sets FUTEX_WAITERS on a held word or takes a free one. The same bound covers
//     kernels before 5.5. An idle waiter pays one short wake-up per interval.
//
// `pending` stays on the slot while the thread holds the lock, so that the common round of one
// acquire and one release stores to it twice rather than four times (it is a store in the
// thread's own memory, but each must be written out before the next locked instruction). That
// is safe because the kernel handles an entry that is also pending once, and because whatever
// changes `pending` meanwhile (an acquire of another lock, glibc's own robust mutexes) leaves
// this slot on the list, which covers it. Only a fork()ed child would inherit a stale `pending`;
// its fork handler clears it (robust_forget_pending_in_child()). Together with links that skip
// what nobody reads (robust_link()), this took an uncontended mp::Lock round from 1.02x a
// process-shared pthread_mutex_t's time to 0.98x (13.3 ns on a 2-vCPU AMD EPYC VM).
//
// A waiter sets FUTEX_WAITERS before it sleeps, and a thread that has slept takes the word with
// FUTEX_WAITERS set, since others may still sleep: each release then wakes one more. A thread
// that has slept and gives up on its deadline passes its possible wake-up on
// (pass_on_wake_up() below), since the release that woke it cleared the bit. Before it
// sleeps, a thread spins for up to spin_budget, because a holder in another process often
// releases within microseconds. It looks at the word once per look_interval at first, never
// every few pauses (detail::SpacedSpin): each look takes the line from the holder, and a waiter
// that looks often catches the word in the nanoseconds it is free between a holder's release
// and its next acquire, so the lock, and the data it guards, cross between cores every other
// round. Measured with two processes taking one lock in a loop on a VM whose vCPUs are 240 ns
// apart: looks every few pauses, 50 ns a round; spaced by 1 us and more, 20 ns.
//
// No fairness is promised: a running thread may take the word before a woken one.
//
// Memory ordering: taking the word is an acquire, releasing it a release, so what a holder
// wrote in shared memory happens-before what the next holder, in any process, reads. The
// kernel's write of FUTEX_OWNER_DIED orders nothing: the dead holder's writes are in memory, but
// may stop anywhere, which is why the next holder is told.

#ifndef CONCUR_DETAIL_ROBUST_LOCK_HPP
#define CONCUR_DETAIL_ROBUST_LOCK_HPP

#if !defined(__linux__)
#error "concur/detail/robust_lock.hpp is Linux only"
#endif

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_list.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/shared_waits.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait_futex.hpp"

namespace concur::detail {

// The calling thread's id, as the kernel writes it in robust words; cached per thread. A
// fork()ed child's thread has an id of its own: the child's fork handler, which runs in the
// thread that forked (the only one the child has), forgets the cache.
// Its handler also forgets the lock operation in progress (robust_list.hpp).
inline thread_local std::uint32_t cached_tid = 0;
inline void forget_cached_tid() noexcept {
  cached_tid = 0;
  robust_forget_pending_in_child();
}
inline const int cached_tid_registered = at_fork(nullptr, nullptr, &forget_cached_tid);

CONCUR_NOINLINE inline std::uint32_t find_current_tid() noexcept {
  cached_tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
  return cached_tid;
}
CONCUR_ALWAYS_INLINE std::uint32_t current_tid() noexcept {
  const std::uint32_t tid = cached_tid;
  return CONCUR_LIKELY(tid != 0) ? tid : find_current_tid();
}

// How a thread that finds the lock held looks at it while it spins.
enum class RobustSpin {
  // The holder may run on for a long time, or take the lock again and again: look once per
  // look_interval, then less often (the default; see above).
  spaced,
  // The holder is about to release: it has just woken this thread (a notify() or the end of a
  // barrier's round, made under the lock). Look every few pauses (detail::SpinWait), or the
  // release that is already on its way is seen a microsecond late.
  dense,
};

// What an acquire came to.
enum class RobustAcquired {
  taken,       // the lock is the caller's
  owner_died,  // the lock is the caller's, and its previous holder died holding it
  timed_out,   // the deadline passed first
};

// RobustLock
//
// The shared state: one RobustSlot (the size of a pthread_mutex_t). Lives in shared memory,
// built by one process and used by all.
class RobustLock {
 public:
  // How long a thread spins before it sleeps.
  static constexpr std::chrono::microseconds spin_budget{20};
  // How long a spinning thread waits before its first look at the word; then twice as long, up
  // to 8 times (detail::SpacedSpin).
  static constexpr std::chrono::microseconds look_interval{1};

  // RobustLock::acquire_until()
  //
  // Takes the lock, or gives up once `deadline` has passed (a deadline already past: one try).
  // `spin` says how to look at a held lock before sleeping.
  CONCUR_ALWAYS_INLINE RobustAcquired acquire_until(steady_time deadline,
                                                    RobustSpin spin = RobustSpin::spaced) noexcept {
    auto* const head = robust_head();
    const std::uint32_t me = current_tid();
    robust_pending(head, &slot_);
    std::uint32_t free = 0;
    if (CONCUR_LIKELY(slot_.word().compare_exchange_strong(free, me, std::memory_order_acquire,
                                                           std::memory_order_relaxed))) {
      CONCUR_SCHEDULE_POINT("mp_lock.acquire.taken_before_link");
      robust_link(head, slot_);
      return RobustAcquired::taken;  // `pending` stays on the slot while it is held
    }
    return acquire_contended(head, me, deadline, spin);
  }

  // RobustLock::release()
  //
  // Frees the lock, which the calling thread holds, and wakes one sleeper if any.
  CONCUR_ALWAYS_INLINE void release() noexcept {
    std::atomic<std::uint32_t>& word = slot_.word();
    auto* const head = robust_head();
    if (!robust_pending_is(head, slot_)) robust_pending(head, &slot_);
    robust_unlink(head, slot_);
    CONCUR_SCHEDULE_POINT("mp_lock.release.unlinked_before_exchange");
    const std::uint32_t was = word.exchange(0, std::memory_order_release);
    CONCUR_SCHEDULE_POINT("mp_lock.release.before_wake");
    if (CONCUR_UNLIKELY((was & FUTEX_WAITERS) != 0)) wake_one();
    robust_pending(head, nullptr);
  }

  // RobustLock::abandon()
  //
  // For an object destroyed while its lock is held by the calling thread: unlinks the slot (its
  // memory may be unmapped next) and marks the word as the kernel marks a dead holder's, so the
  // other processes still sharing it learn that the holder went away.
  void abandon() noexcept {
    if (!held_by_caller()) return;
    std::atomic<std::uint32_t>& word = slot_.word();
    auto* const head = robust_head();
    robust_pending(head, &slot_);
    robust_unlink(head, slot_);
    const std::uint32_t was = word.exchange(FUTEX_OWNER_DIED, std::memory_order_release);
    if ((was & FUTEX_WAITERS) != 0) futex::shared_wake(word, 1);
    robust_pending(head, nullptr);
  }

  // RobustLock::held_by_caller()
  //
  // Whether the calling thread holds the lock. A relaxed read suffices: only the holder writes
  // its own id and it writes something else before it lets go, so a thread finds its own id
  // exactly while it holds the lock (the argument of concur/rlock.hpp). The kernel writes only
  // the ids of threads that have ended.
  [[nodiscard]] bool held_by_caller() const noexcept {
    return (slot_.word().load(std::memory_order_relaxed) & FUTEX_TID_MASK) == current_tid();
  }

  // RobustLock::holder_died()
  //
  // Whether the last holder died holding the lock and nobody has taken it since; a snapshot, for
  // a thread that sleeps elsewhere and would otherwise never learn of the death.
  [[nodiscard]] bool holder_died() const noexcept {
    const std::uint32_t word = slot_.word().load(std::memory_order_relaxed);
    return (word & FUTEX_OWNER_DIED) != 0 && (word & FUTEX_TID_MASK) == 0;
  }

  // RobustLock::locked()
  //
  // Whether any thread of any process holds the lock right now; a snapshot.
  [[nodiscard]] bool locked() const noexcept {
    return (slot_.word().load(std::memory_order_relaxed) & FUTEX_TID_MASK) != 0;
  }

 private:
  // The rest of acquire_until(), once the word was not simply free: `pending` names the slot.
  CONCUR_NOINLINE RobustAcquired acquire_contended(RobustHead* head, std::uint32_t me,
                                                   steady_time deadline, RobustSpin how) noexcept {
    std::atomic<std::uint32_t>& word = slot_.word();
    std::uint32_t slept = 0;  // FUTEX_WAITERS once this thread has slept
    SpacedSpin spaced(deadline, spin_budget, look_interval);
    SpinWait dense(deadline, spin_budget);
    auto spin = [&] { return how == RobustSpin::dense ? dense.pause() : spaced.pause(); };
    for (;;) {
      std::uint32_t seen = word.load(std::memory_order_relaxed);
      if ((seen & FUTEX_TID_MASK) == 0) {
        CONCUR_SCHEDULE_POINT("mp_lock.acquire.before_take");
        const std::uint32_t mine = me | (seen & FUTEX_WAITERS) | slept;
        if (word.compare_exchange_weak(seen, mine, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
          CONCUR_SCHEDULE_POINT("mp_lock.acquire.taken_before_link");
          robust_link(head, slot_);
          return (seen & FUTEX_OWNER_DIED) != 0 ? RobustAcquired::owner_died
                                                : RobustAcquired::taken;
        }
        continue;
      }
      if (reached(deadline)) {
        if (slept != 0) pass_on_wake_up(word);
        robust_pending(head, nullptr);
        return RobustAcquired::timed_out;
      }
      // Spin while nobody sleeps and the budget lasts: the holder may be about to release.
      if (slept == 0 && (seen & FUTEX_WAITERS) == 0 && spin()) continue;
      if ((seen & FUTEX_WAITERS) == 0 &&
          !word.compare_exchange_weak(seen, seen | FUTEX_WAITERS, std::memory_order_relaxed)) {
        continue;
      }
      // A release between the CAS above and the sleep changes the word: the kernel then
      // returns at once (EAGAIN) and the loop looks again.
      CONCUR_SCHEDULE_POINT("mp_lock.acquire.before_sleep");
      (void)SharedWaits::wait_until(word, seen | FUTEX_WAITERS, deadline);
      CONCUR_SCHEDULE_POINT("mp_lock.acquire.after_sleep");
      slept = FUTEX_WAITERS;
    }
  }

  CONCUR_NOINLINE void wake_one() noexcept { futex::shared_wake(slot_.word(), 1); }

  // For a thread that slept and leaves without the lock (its deadline passed). It may have been
  // sent the wake-up of a release, which cleared FUTEX_WAITERS, while another thread took the
  // free word without the bit:
  //
  //   T (timed) and C sleep      X releases: exchange -> 0, wakes T
  //                              D takes the free word: D (no FUTEX_WAITERS)
  //   T wakes: held by D, deadline passed, T leaves
  //                              D releases: no FUTEX_WAITERS, wakes nobody: C sleeps for ever
  //
  // So before it leaves, T puts FUTEX_WAITERS back on a held word (its holder's release will
  // wake a sleeper), or wakes one sleeper if the word is free (that sleeper then takes it, or
  // sets the bit again before it sleeps). A thread that never slept was sent no wake-up.
  void pass_on_wake_up(std::atomic<std::uint32_t>& word) noexcept {
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    for (;;) {
      if ((seen & FUTEX_TID_MASK) == 0) {
        CONCUR_SCHEDULE_POINT("mp_lock.timeout.before_pass_on_wake");
        futex::shared_wake(word, 1);
        return;
      }
      if ((seen & FUTEX_WAITERS) != 0) return;
      CONCUR_SCHEDULE_POINT("mp_lock.timeout.before_waiters_cas");
      if (word.compare_exchange_weak(seen, seen | FUTEX_WAITERS, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  mutable RobustSlot slot_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_ROBUST_LOCK_HPP
