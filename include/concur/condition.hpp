// concur/condition.hpp
//
// concur::Condition, Python's threading.Condition: a condition variable bound to a lock. It owns
// an RLock by default, or shares a Lock or RLock given to its constructor.
//
//   concur::Condition ready;                 // owns an RLock
//   concur::Lock lock;
//   concur::Condition changed(lock);         // shares `lock` (Condition<Lock>, by CTAD)
//
//   // consumer                              // producer
//   concur::Guard hold(ready);               concur::Guard hold(ready);
//   ready.wait_for([&] { return !items.empty(); });   items.push_back(x);
//   take(items);                             ready.notify();
//
// Semantics are Python's: wait() releases the lock (every level of an RLock) and sleeps until
// notified, then takes the lock back (restoring every level); wait(timeout) returns false when
// it timed out, with the lock held again either way; notify(n) wakes n of the threads waiting
// right now (the longest-waiting first), and a notification with nobody waiting is not
// remembered. Waiting or notifying without holding the lock throws UsageError.
//
// How it works. Each waiter puts a small node, on its own stack, at the tail of a list and
// sleeps on the node's own 32-bit word. notify(n) takes up to n nodes from the head and wakes
// each through its word. A timed-out waiter races a notifier for its own node with one
// compare-and-swap, so a notification is either delivered or goes to the next waiter:
// notify(3) wakes exactly three waiters when three or more wait. A notify with no waiter looks
// at an empty list and makes no system call. The list has a small lock of its own: the user's
// lock would do when callers hold it, but a Condition over a plain Lock cannot check who holds
// that (Python's Lock has no owner), and a caller that wrongly does not must not corrupt it.
//
// Memory ordering: everything before notify() is visible to the woken waiter once it returns
// (the lock orders them, as it orders everything it guards).

#ifndef CONCUR_CONDITION_HPP
#define CONCUR_CONDITION_HPP

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <type_traits>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"
#include "concur/rlock.hpp"

namespace concur {

namespace detail {

// False, but only once a template is instantiated: for a static_assert that fires only when a
// call is made.
template <class>
inline constexpr bool never_true = false;

// ConditionWaits
//
// The waits of Python's Condition, written once over the derived class's
// `bool wait_deadline(steady_time)` (true when notified, the lock held again either way):
// concur::Condition and concur::mp::Condition share them. The names are Python's: wait(timeout)
// is the timed wait and wait_for(predicate[, timeout]) the predicate wait.
template <class Derived>
class ConditionWaits {
 public:
  // Condition::wait()
  //
  // Releases the lock, sleeps until notified, and takes the lock back; returns true.
  bool wait() { return self().wait_deadline(never); }

  // Condition::wait(timeout)
  //
  // As wait(), giving up after `timeout`; returns false when it timed out. The lock is held
  // again either way. A zero or negative timeout only releases and re-takes the lock, as in
  // Python.
  template <class Rep, class Period>
  [[nodiscard]] bool wait(std::chrono::duration<Rep, Period> timeout) {
    return self().wait_deadline(deadline_after(timeout));
  }

  // Condition::wait_until(when)
  //
  // As wait(timeout), with an absolute deadline on any clock (the standard library's spelling);
  // returns false when it timed out.
  template <class Clock, class Duration>
  [[nodiscard]] bool wait_until(std::chrono::time_point<Clock, Duration> when) {
    return self().wait_deadline(to_steady_deadline(when));
  }

  // Condition::wait_for(predicate)
  //
  // Waits until `predicate()` is true (checked first, and after every wake-up, with the lock
  // held); returns true. `predicate` is anything callable with no arguments whose result tests
  // as a bool (std::predicate); anything else does not match. (The predicate runs with the lock
  // held, which Clang's analysis cannot see through the Condition; its check is off here, and a
  // predicate may be annotated as requiring the lock.)
  template <class Predicate>
  requires std::predicate<Predicate&>
  bool wait_for(Predicate predicate) CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    while (!predicate()) (void)self().wait_deadline(never);
    return true;
  }

  // Condition::wait_for(predicate, timeout)
  //
  // As wait_for(predicate), giving up when `timeout` has passed; returns the predicate's last
  // value.
  template <class Predicate, class Rep, class Period>
  requires std::predicate<Predicate&>
  [[nodiscard]] bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout)
      CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    const steady_time deadline = deadline_after(timeout);
    bool result = predicate();
    while (!result) {
      if (expired(deadline)) break;
      (void)self().wait_deadline(deadline);
      result = predicate();
    }
    return result;
  }

  // Condition::wait_for(timeout), wait_for(timeout, predicate): not members
  //
  // Python's names differ from std::condition_variable's: the timed wait is wait(timeout), and
  // wait_for waits for a predicate. These two overloads exist only to say so at the call, in
  // one line, instead of an error deep inside the header; a program that calls them does not
  // compile.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period>) {
    static_assert(never_true<Rep>,
                  "Condition::wait_for(timeout) does not exist: use wait(timeout) for a timed "
                  "wait (Python's name); wait_for(predicate[, timeout]) waits for a predicate");
    return false;
  }
  template <class Rep, class Period, class Predicate>
  bool wait_for(std::chrono::duration<Rep, Period>, Predicate) {
    static_assert(never_true<Rep>,
                  "Condition::wait_for takes the predicate first: wait_for(predicate, timeout), "
                  "as in Python");
    return false;
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

// A waiter's place in a Condition's queue; lives on the waiter's stack.
struct ConditionWaiter {
  static constexpr std::uint32_t waiting = 0;
  static constexpr std::uint32_t notified = 1;
  static constexpr std::uint32_t gave_up = 2;

  ConditionWaiter* prev = nullptr;
  ConditionWaiter* next = nullptr;
  bool linked = false;
  wait_word state{waiting};
};

// The lock-specific parts of waiting: how to check ownership, release every level and restore
// them (Python's _is_owned, _release_save and _acquire_restore).
template <class L>
struct ConditionLockOps;

template <>
struct ConditionLockOps<Lock> {
  using Saved = bool;
  // A Lock has no owner; as Python does, a held Lock counts as held by the caller.
  static bool owned(const Lock& lock) noexcept { return lock.locked(); }
  static Saved release_all(Lock& lock) CONCUR_RELEASE(lock) {
    lock.release();
    return true;
  }
  static void restore(Lock& lock, Saved) noexcept CONCUR_ACQUIRE(lock) { lock.acquire(); }
};

template <>
struct ConditionLockOps<RLock> {
  using Saved = std::uint32_t;
  static bool owned(const RLock& lock) noexcept { return lock.is_owned(); }
  static Saved release_all(RLock& lock) CONCUR_RELEASE(lock) { return lock.release_all(); }
  static void restore(RLock& lock, Saved levels) noexcept CONCUR_ACQUIRE(lock) {
    lock.acquire_restore(levels);
  }
};

}  // namespace detail

// Condition
//
// Python's threading.Condition over a concur::Lock or concur::RLock. Not movable: waiters refer
// to it.
template <class L = RLock>
class CONCUR_CAPABILITY("mutex") Condition : public detail::ConditionWaits<Condition<L>> {
  static_assert(std::is_same_v<L, Lock> || std::is_same_v<L, RLock>,
                "a Condition works with concur::Lock or concur::RLock");
  using Ops = detail::ConditionLockOps<L>;
  friend class detail::ConditionWaits<Condition>;

 public:
  // Condition::Condition()
  //
  // A condition with a lock of its own (an RLock by default, as in Python).
  Condition() noexcept : lock_(&own_lock_) {}

  // Condition::Condition(lock)
  //
  // A condition that shares `lock`, which must outlive it: `concur::Condition c(my_lock);`
  explicit Condition(L& lock) noexcept : lock_(&lock) {}

  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // Condition::lock_ref()
  //
  // The underlying lock.
  [[nodiscard]] L& lock_ref() const noexcept { return *lock_; }

  // Condition::acquire(), acquire(blocking), acquire(timeout), release()
  //
  // Forward to the underlying lock, as Python's Condition does.
  bool acquire() noexcept CONCUR_ACQUIRE() { return lock_->acquire(); }
  [[nodiscard]] bool acquire(bool blocking) noexcept CONCUR_TRY_ACQUIRE(true) {
    return lock_->acquire(blocking);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    return lock_->acquire(timeout);
  }
  void release() CONCUR_RELEASE() { lock_->release(); }

  // Condition::lock(), unlock(), try_lock()
  //
  // The standard Lockable names, so that std::unique_lock<Condition> and friends work.
  void lock() noexcept CONCUR_ACQUIRE() { lock_->lock(); }
  void unlock() CONCUR_RELEASE() { lock_->unlock(); }
  [[nodiscard]] bool try_lock() noexcept CONCUR_TRY_ACQUIRE(true) { return lock_->try_lock(); }

  // Condition::wait(), wait(timeout), wait_until(when), wait_for(predicate[, timeout])
  //
  // See detail::ConditionWaits above. wait() releases the lock, sleeps until notified, and takes
  // the lock back; it throws UsageError when the calling thread does not hold the lock, and then
  // leaves the Condition as it was. A plain Lock has no owner, so over one "holds" means "the
  // lock is held", as in Python: a wait() while another thread holds it releases that thread's
  // hold, and throws only when the lock is, or becomes, free before it is released. Spurious
  // wake-ups do not reach the caller: only a notification (or the timeout) ends the wait.

  // Condition::notify(n)
  //
  // Wakes up to `n` threads waiting on this condition (the longest-waiting first); n <= 0 does
  // nothing. Throws UsageError when the calling thread does not hold the lock. Costs no system
  // call when nobody waits.
  void notify(long n = 1) {
    require_owned("cannot notify on un-acquired lock");
    if (n > 0) wake(n);
  }

  // Condition::notify_all()
  //
  // Wakes every thread waiting on this condition. Throws UsageError when the calling thread
  // does not hold the lock.
  void notify_all() {
    require_owned("cannot notify on un-acquired lock");
    wake(every_waiter);
  }

 private:
  void require_owned(const char* message) const {
    if (!Ops::owned(*lock_)) throw UsageError(message);
  }

  static constexpr long every_waiter = -1;

  // Wakes up to `n` waiters (n > 0), or every_waiter.
  void wake(long n) noexcept {
    if (waiters_.load(std::memory_order_relaxed) == nullptr) return;
    Guard hold(list_lock_);
    while (n != 0 && head_ != nullptr) {
      detail::ConditionWaiter* waiter = head_;
      unlink(*waiter);
      std::uint32_t expected = detail::ConditionWaiter::waiting;
      CONCUR_SCHEDULE_POINT("condition.notify.before_cas");
      if (waiter->state.compare_exchange_strong(expected, detail::ConditionWaiter::notified,
                                                std::memory_order_release,
                                                std::memory_order_relaxed)) {
        // Still under list_lock_: the waiter cannot leave (and free its node) before this.
        CONCUR_SCHEDULE_POINT("condition.notify.before_wake");
        detail::wake_one(waiter->state);
        if (n > 0) --n;
      }
    }
  }

  // Releases every level of the lock, converting the lock's own complaint (a Lock released
  // while nobody holds it, an RLock the caller does not hold) into the Condition's.
  typename Ops::Saved release_all_or_throw() CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    try {
      return Ops::release_all(*lock_);
    } catch (const UsageError&) {
      throw UsageError("cannot wait on un-acquired lock");
    }
  }

  // Releases the caller's hold on the lock and takes it back before returning: the caller holds
  // it on entry and on exit, which the run-time check enforces and the analysis cannot follow.
  //
  // The node is linked and the lock released within one hold of list_lock_. Linking first is
  // what makes a notify() that follows the release find this waiter; doing both under
  // list_lock_ is what makes a failed release harmless. A Condition over a plain Lock cannot
  // tell who holds it, so a caller that does not hold it passes require_owned() while another
  // thread does, and its release fails if that thread releases first:
  //
  //   misuser                                 holder
  //   require_owned(): lock held -> pass
  //                                           release()
  //   link node; release_all() throws
  //
  // Because no notifier can reach the list while list_lock_ is held, the node is unlinked
  // before anyone saw it, and the UsageError leaves the Condition as it was (no notification
  // spent on the node, no pointer to a stack frame that is about to unwind).
  bool wait_deadline(detail::steady_time deadline) CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    require_owned("cannot wait on un-acquired lock");
    if (deadline != detail::never && detail::expired(deadline)) {
      // Python's wait(0): release and re-take the lock, without queueing.
      const typename Ops::Saved saved = release_all_or_throw();
      Ops::restore(*lock_, saved);
      return false;
    }
    detail::ConditionWaiter me;
    CONCUR_SCHEDULE_POINT("condition.wait.before_link");
    typename Ops::Saved saved{};
    {
      Guard hold(list_lock_);
      link_tail(me);
      CONCUR_SCHEDULE_POINT("condition.wait.linked");
      try {
        saved = release_all_or_throw();
      } catch (...) {
        unlink(me);
        throw;
      }
    }
    const bool notified = sleep(me, deadline);
    CONCUR_SCHEDULE_POINT("condition.wait.before_unlink");
    {
      Guard hold(list_lock_);
      if (me.linked) unlink(me);  // gave up before any notifier reached it
    }
    CONCUR_SCHEDULE_POINT("condition.wait.before_restore");
    Ops::restore(*lock_, saved);
    return notified;
  }

  // Sleeps on the waiter's word until notified or the deadline passes; true when notified.
  static bool sleep(detail::ConditionWaiter& me, detail::steady_time deadline) noexcept {
    for (;;) {
      if (me.state.load(std::memory_order_acquire) != detail::ConditionWaiter::waiting) {
        return true;
      }
      CONCUR_SCHEDULE_POINT("condition.wait.before_sleep");
      const bool woken =
          detail::wait_on_until(me.state, detail::ConditionWaiter::waiting, deadline);
      CONCUR_SCHEDULE_POINT("condition.wait.after_wake");
      if (!woken) {
        std::uint32_t expected = detail::ConditionWaiter::waiting;
        // Lose the race to a notifier gracefully: if it got here first, the wait succeeded.
        return !me.state.compare_exchange_strong(expected, detail::ConditionWaiter::gave_up,
                                                 std::memory_order_acquire);
      }
    }
  }

  void link_tail(detail::ConditionWaiter& waiter) noexcept {
    waiter.prev = tail_;
    (tail_ != nullptr ? tail_->next : head_) = &waiter;
    tail_ = &waiter;
    waiter.linked = true;
    waiters_.store(head_, std::memory_order_relaxed);
  }

  void unlink(detail::ConditionWaiter& waiter) noexcept {
    (waiter.prev != nullptr ? waiter.prev->next : head_) = waiter.next;
    (waiter.next != nullptr ? waiter.next->prev : tail_) = waiter.prev;
    waiter.prev = waiter.next = nullptr;
    waiter.linked = false;
    waiters_.store(head_, std::memory_order_relaxed);
  }

  L own_lock_;
  L* lock_;
  Lock list_lock_;
  // The waiters, oldest first; guarded by list_lock_.
  detail::ConditionWaiter* head_ = nullptr;
  detail::ConditionWaiter* tail_ = nullptr;
  // A copy of head_ that notify() may read without list_lock_: whether anybody waits. Its
  // caller holds the user's lock, and so did every waiter when it linked itself, so the copy
  // it reads is current (a waiter that gave up and left may still be in it: harmless).
  std::atomic<detail::ConditionWaiter*> waiters_{nullptr};
};

template <class L>
Condition(L&) -> Condition<L>;

}  // namespace concur

#endif  // CONCUR_CONDITION_HPP
