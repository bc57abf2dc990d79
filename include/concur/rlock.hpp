// concur/rlock.hpp
//
// concur::RLock, Python's threading.RLock: a reentrant lock. The thread that holds it may
// acquire it again; it is free once that thread has released it as many times as it acquired
// it. Only the owner may release it.
//
//   concur::RLock lock;
//   void visit(Node& node) {
//     concur::Guard hold(lock);          // taken again by each recursive call
//     for (Node& child : node.children) visit(child);
//   }
//
// Eight bytes: a lock word (concur::Lock's protocol) that also names the holder, by a small
// per-thread number, and the recursion count, which only the holder touches. Every thread that
// acquires reads the holder's name, but a thread only ever finds its own name there if it wrote
// it itself, so relaxed loads suffice.
//
// Memory ordering: as Lock's. Re-acquisition by the owner orders nothing (it is one thread).

#ifndef CONCUR_RLOCK_HPP
#define CONCUR_RLOCK_HPP

#include <atomic>
#include <chrono>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/lock_word.hpp"
#include "concur/detail/thread_token.hpp"
#include "concur/errors.hpp"

namespace concur {

// RLock
//
// Python's threading.RLock. Not movable. Annotated for Clang's thread-safety analysis as a
// reentrant capability where Clang supports that, as a plain one elsewhere.
class CONCUR_CAPABILITY("mutex") CONCUR_REENTRANT_CAPABILITY RLock {
 public:
  // RLock::RLock()
  //
  // An unlocked reentrant lock.
  constexpr RLock() noexcept = default;

  RLock(const RLock&) = delete;
  RLock& operator=(const RLock&) = delete;

  // RLock::acquire()
  //
  // Blocks until the lock is acquired, at once if this thread already holds it (the count goes
  // up by one); returns true.
  bool acquire() noexcept CONCUR_ACQUIRE() { return acquire_until(detail::never, false); }

  // RLock::acquire(blocking)
  //
  // With `blocking` true, as acquire(). With false, never blocks: acquires if the lock is free
  // or already this thread's, and returns whether it did.
  [[nodiscard]] bool acquire(bool blocking) noexcept CONCUR_TRY_ACQUIRE(true) {
    return acquire_until(detail::never, !blocking);
  }

  // RLock::acquire(timeout)
  //
  // Blocks until the lock is acquired or `timeout` has passed; returns whether it was acquired.
  // A negative timeout throws std::invalid_argument, as in Python.
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    detail::require_non_negative(timeout, "RLock.acquire: timeout must be non-negative");
    return acquire_until(detail::deadline_after(timeout), false);
  }

  // RLock::release()
  //
  // Undoes one acquire(); the lock is free once every acquire() has been undone, and one waiter,
  // if any, is woken. Throws UsageError when the calling thread does not hold the lock.
  void release() CONCUR_RELEASE() {
    const std::uint32_t me = owner_name();
    const std::uint32_t extra = extra_levels_.load(std::memory_order_relaxed);
    if (extra == 0 && CONCUR_LIKELY(word_.release_if_sole(me))) return;
    if (word_.owner() != me) throw UsageError("cannot release un-acquired lock");
    if (extra > 0) {
      extra_levels_.store(extra - 1, std::memory_order_relaxed);
    } else {
      word_.release(me);
    }
  }

  // RLock::locked()
  //
  // Whether any thread holds the lock right now (Python 3.14's RLock.locked()).
  [[nodiscard]] bool locked() const noexcept { return word_.locked(); }

  // RLock::is_owned()
  //
  // Whether the calling thread holds the lock (Python's RLock._is_owned()).
  [[nodiscard]] bool is_owned() const noexcept { return word_.owner() == owner_name(); }

  // RLock::lock(), unlock(), try_lock(), try_lock_for(), try_lock_until()
  //
  // The standard Lockable and TimedLockable names; a zero or negative duration means "try once".
  void lock() noexcept CONCUR_ACQUIRE() { acquire(); }
  void unlock() CONCUR_RELEASE() { release(); }
  [[nodiscard]] bool try_lock() noexcept CONCUR_TRY_ACQUIRE(true) {
    return acquire_until(detail::never, true);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) noexcept
      CONCUR_TRY_ACQUIRE(true) {
    return acquire_until(detail::deadline_after(timeout), false);
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> when) noexcept
      CONCUR_TRY_ACQUIRE(true) {
    for (;;) {
      if (acquire_until(detail::to_steady_deadline(when), false)) return true;
      if (detail::reached(when)) return false;
    }
  }

  // RLock::release_all()
  //
  // For Condition::wait(): releases every level the calling thread holds and returns how many
  // (Python's RLock._release_save()). Throws UsageError when the thread does not hold the lock.
  std::uint32_t release_all() CONCUR_RELEASE() {
    const std::uint32_t me = owner_name();
    if (word_.owner() != me) throw UsageError("cannot release un-acquired lock");
    const std::uint32_t levels = extra_levels_.load(std::memory_order_relaxed) + 1;
    extra_levels_.store(0, std::memory_order_relaxed);
    word_.release(me);
    return levels;
  }

  // RLock::acquire_restore()
  //
  // For Condition::wait(): acquires the lock and restores `levels` levels of ownership (Python's
  // RLock._acquire_restore()).
  void acquire_restore(std::uint32_t levels) noexcept CONCUR_ACQUIRE() {
    word_.acquire(detail::never, owner_name());
    extra_levels_.store(levels > 0 ? levels - 1 : 0, std::memory_order_relaxed);
  }

 private:
  // The calling thread's name in the lock word.
  static std::uint32_t owner_name() noexcept {
    return detail::thread_token() << detail::LockWord::owner_shift;
  }

  bool acquire_until(detail::steady_time deadline, bool try_once) noexcept {
    const std::uint32_t me = owner_name();
    if (CONCUR_LIKELY(word_.try_acquire_free(me))) return true;
    if (word_.owner() == me) {
      extra_levels_.store(extra_levels_.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
      return true;
    }
    return try_once ? word_.try_acquire(me) : word_.acquire(deadline, me);
  }

  // The lock word names the holder, so that taking and releasing the lock stay one
  // compare-and-swap each, with no separate owner field to write.
  detail::LockWord word_;
  // Acquisitions beyond the first, written only by the owner; 0 whenever the lock is free.
  // Atomic (relaxed) only because release() reads it before it knows that the caller owns the
  // lock; a non-owner's release() then fails on the lock word.
  std::atomic<std::uint32_t> extra_levels_{0};
};

static_assert(sizeof(RLock) <= 16, "an RLock is a lock word and a count");  // eight bytes

}  // namespace concur

#endif  // CONCUR_RLOCK_HPP
