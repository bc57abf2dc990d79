// concur/lock.hpp
//
// concur::Lock, Python's threading.Lock: a mutual-exclusion lock in one 32-bit word, and
// concur::Guard, the scoped holder that Clang's thread-safety analysis understands.
//
//   concur::Lock lock;
//   int balance CONCUR_GUARDED_BY(lock) = 0;
//
//   void deposit(int amount) {
//     concur::Guard hold(lock);
//     balance += amount;
//   }
//
// Python's members (acquire, release, locked) and the standard Lockable and TimedLockable
// members (lock, unlock, try_lock, try_lock_for, try_lock_until), so std::scoped_lock,
// std::unique_lock and std::lock work with it. As in Python, a Lock is not owned by a thread:
// any thread may release it. Releasing a Lock that is not held throws UsageError.
//
// How it works (concur/detail/lock_word.hpp has the details and the arguments). One 32-bit
// word holds the lock bit and a few flags: "a thread may sleep here", "a waiter starves" and
// "release by compare-and-swap". Taking a free lock is one compare-and-swap; releasing an
// uncontended one is, on x86 Linux, a plain one-byte store followed by a load of the flags.
// Once threads park, releases switch to compare-and-swap until contention passes, and the
// thread that switched them re-reads the word after a short timed sleep, which covers the
// release that was already on its way (no fence, no membarrier). Elsewhere every release is a
// compare-and-swap. Under contention a running thread may take the lock ahead of parked ones
// and spins briefly before it parks, as WebKit's WTF::Lock and Rust's parking_lot do; the spin
// is bounded in time and by the caller's deadline. Fairness: there is no FIFO order, but a
// thread that has slept more than a millisecond stops newcomers from barging (Go's
// sync.Mutex), so no thread starves. Two threads racing to release one held Lock (a bug) may
// both succeed; releasing a free Lock always throws.
//
// Memory ordering: a successful acquire is an acquire operation and a release a release
// operation on the word, so everything done while holding the lock happens-before whatever the
// next holder does.

#ifndef CONCUR_LOCK_HPP
#define CONCUR_LOCK_HPP

#include <atomic>
#include <chrono>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/lock_word.hpp"
#include "concur/errors.hpp"

namespace concur {

// Lock
//
// Python's threading.Lock. Four bytes, constant-initialisable, not movable.
class CONCUR_CAPABILITY("mutex") Lock {
 public:
  // Lock::Lock()
  //
  // An unlocked lock. constexpr: a global Lock needs no dynamic initialisation.
  constexpr Lock() noexcept = default;

  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Lock::acquire()
  //
  // Blocks until the lock is acquired; returns true (Python's acquire() returns True).
  bool acquire() noexcept CONCUR_ACQUIRE() {
    word_.acquire(detail::never);
    return true;
  }

  // Lock::acquire(blocking)
  //
  // With `blocking` true, as acquire(). With false, takes the lock only if it is free right now
  // and never blocks; returns whether it did.
  [[nodiscard]] bool acquire(bool blocking) noexcept CONCUR_TRY_ACQUIRE(true) {
    return blocking ? acquire() : word_.try_acquire();
  }

  // Lock::acquire(timeout)
  //
  // Blocks until the lock is acquired or `timeout` has passed; returns whether it was acquired.
  // Never returns false before the timeout. A negative timeout throws std::invalid_argument,
  // as Python's ValueError (there, -1 means "forever": use acquire()).
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    detail::require_non_negative(timeout, "Lock.acquire: timeout must be non-negative");
    return word_.acquire(detail::deadline_after(timeout));
  }

  // Lock::release()
  //
  // Releases the lock, from any thread (Python's Lock has no owner), and wakes one waiter if
  // any sleeps. Throws UsageError when the lock is not held.
  void release() CONCUR_RELEASE() {
    if (!word_.release()) throw UsageError("release unlocked lock");
  }

  // Lock::locked()
  //
  // Whether the lock is held right now (by any thread). A snapshot: it may change at once.
  [[nodiscard]] bool locked() const noexcept { return word_.locked(); }

  // Lock::lock()
  //
  // The standard Lockable name of acquire().
  void lock() noexcept CONCUR_ACQUIRE() { word_.acquire(detail::never); }

  // Lock::try_lock()
  //
  // The standard name of acquire(false).
  [[nodiscard]] bool try_lock() noexcept CONCUR_TRY_ACQUIRE(true) { return word_.try_acquire(); }

  // Lock::try_lock_for()
  //
  // The standard TimedLockable member: as acquire(timeout), except that a zero or negative
  // duration means "try once", as the standard specifies.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) noexcept
      CONCUR_TRY_ACQUIRE(true) {
    return word_.acquire(detail::deadline_after(timeout));
  }

  // Lock::try_lock_until()
  //
  // The standard TimedLockable member: tries until the clock reaches `when`. A clock other than
  // steady_clock is followed as the standard asks: the wait is re-checked against it.
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> when) noexcept
      CONCUR_TRY_ACQUIRE(true) {
    for (;;) {
      if (word_.acquire(detail::to_steady_deadline(when))) return true;
      if (detail::reached(when)) return false;
    }
  }

  // Lock::unlock()
  //
  // The standard Lockable name of release(); throws UsageError when the lock is not held.
  void unlock() CONCUR_RELEASE() { release(); }

 private:
  detail::PlainLockWord word_;
};

static_assert(sizeof(Lock) == 4, "a Lock is one 32-bit word");

// Guard
//
// Holds a lock for the lifetime of a scope (Python's `with lock:`), and tells Clang's
// thread-safety analysis so. Works with any lock that has acquire() and release(): Lock, RLock,
// the semaphores.
//
//   {
//     concur::Guard hold(lock);
//     ... // lock held
//   }     // released, also when an exception leaves the scope
template <class Lockable>
class CONCUR_SCOPED_CAPABILITY Guard {
 public:
  // Guard::Guard()
  //
  // Acquires `lockable`, blocking until it can.
  explicit Guard(Lockable& lockable) CONCUR_ACQUIRE(lockable) : lockable_(lockable) {
    lockable_.acquire();
  }

  // Guard::~Guard()
  //
  // Releases the lock.
  ~Guard() CONCUR_RELEASE() { lockable_.release(); }

  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  Lockable& lockable_;
};

}  // namespace concur

#endif  // CONCUR_LOCK_HPP
