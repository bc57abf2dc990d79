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
// Twelve bytes: concur::Lock's lock word, the holder's name (a small per-thread number) and
// the recursion count, as glibc's recursive mutex keeps them. The name lives beside the word,
// not in it, so that a release can be Lock's plain store (see detail/lock_word.hpp) rather than
// a compare-and-swap: one locked instruction per acquire and release pair, where a word that
// names its holder needs two.
//
// Why a relaxed read of the name is enough to tell "mine". The holder writes its name after it
// takes the word and writes 0 before it releases it; only the holder writes it. A thread T that
// reads the name reads, by coherence, either its own last write to it or a later one. T's own
// last write is its name only while T holds the lock (T cleared it before its release, in
// program order), and any later write is another holder's name or 0. So T finds its own name
// there exactly when it holds the lock, whatever the other threads do; no ordering is needed.
//
// Memory ordering: as Lock's. Re-acquisition by the owner orders nothing (it is one thread).
// The name and the count are relaxed atomics only so that other threads may read the name.

#ifndef CONCUR_RLOCK_HPP
#define CONCUR_RLOCK_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/lock_word.hpp"
#include "concur/detail/schedule.hpp"
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
  // up by one); returns true. The count holds 2^32 - 1 levels: the acquire that would go past
  // them throws std::overflow_error and changes nothing (Python raises OverflowError). Every
  // acquiring member below does the same.
  bool acquire() CONCUR_ACQUIRE() { return acquire_until(detail::never, false); }

  // RLock::acquire(blocking)
  //
  // With `blocking` true, as acquire(). With false, never blocks: acquires if the lock is free
  // or already this thread's, and returns whether it did.
  [[nodiscard]] bool acquire(bool blocking) CONCUR_TRY_ACQUIRE(true) {
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
    if (owner_.load(std::memory_order_relaxed) != detail::thread_token()) {
      throw UsageError("cannot release un-acquired lock");
    }
    const std::uint32_t extra = extra_levels_.load(std::memory_order_relaxed);
    if (extra > 0) {
      extra_levels_.store(extra - 1, std::memory_order_relaxed);
      return;
    }
    release_word();
  }

  // RLock::locked()
  //
  // Whether any thread holds the lock right now (Python 3.14's RLock.locked()).
  [[nodiscard]] bool locked() const noexcept { return word_.locked(); }

  // RLock::is_owned()
  //
  // Whether the calling thread holds the lock (Python's RLock._is_owned()).
  [[nodiscard]] bool is_owned() const noexcept {
    return owner_.load(std::memory_order_relaxed) == detail::thread_token();
  }

  // RLock::lock(), unlock(), try_lock(), try_lock_for(), try_lock_until()
  //
  // The standard Lockable and TimedLockable names; a zero or negative duration means "try once".
  void lock() CONCUR_ACQUIRE() { acquire(); }
  void unlock() CONCUR_RELEASE() { release(); }
  [[nodiscard]] bool try_lock() CONCUR_TRY_ACQUIRE(true) {
    return acquire_until(detail::never, true);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout)
      CONCUR_TRY_ACQUIRE(true) {
    return acquire_until(detail::deadline_after(timeout), false);
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> when)
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
    if (owner_.load(std::memory_order_relaxed) != detail::thread_token()) {
      throw UsageError("cannot release un-acquired lock");
    }
    const std::uint32_t levels = extra_levels_.load(std::memory_order_relaxed) + 1;
    extra_levels_.store(0, std::memory_order_relaxed);
    release_word();
    return levels;
  }

  // RLock::acquire_restore()
  //
  // For Condition::wait(): acquires the lock and restores `levels` levels of ownership (Python's
  // RLock._acquire_restore()).
  void acquire_restore(std::uint32_t levels) noexcept CONCUR_ACQUIRE() {
    word_.acquire(detail::never);
    take_ownership(detail::thread_token(), levels > 0 ? levels - 1 : 0);
  }

 private:
  // The count stores levels beyond the first, so that release_all() can return every level.
  static constexpr std::uint32_t max_extra_levels = std::numeric_limits<std::uint32_t>::max() - 1;

  bool acquire_until(detail::steady_time deadline, bool try_once) {
    const std::uint32_t me = detail::thread_token();
    if (owner_.load(std::memory_order_relaxed) == me) {
      const std::uint32_t extra = extra_levels_.load(std::memory_order_relaxed);
      if (CONCUR_UNLIKELY(extra == max_extra_levels)) {
        throw std::overflow_error("RLock: too many levels of acquisition");
      }
      extra_levels_.store(extra + 1, std::memory_order_relaxed);
      return true;
    }
    if (CONCUR_LIKELY(word_.try_acquire_free()) ||
        (try_once ? word_.try_acquire() : word_.acquire(deadline))) {
      take_ownership(me, 0);
      return true;
    }
    return false;
  }

  // After taking the word: the name, then the count. Another thread may read the name between
  // the acquire and this store; it finds 0 or a former holder's name, never its own.
  void take_ownership(std::uint32_t me, std::uint32_t extra) noexcept {
    CONCUR_SCHEDULE_POINT("rlock.acquire.before_naming");
    owner_.store(me, std::memory_order_relaxed);
    extra_levels_.store(extra, std::memory_order_relaxed);
  }

  // Clears the name, then releases the word (the name must be 0 before anyone else can take it).
  void release_word() noexcept {
    owner_.store(0, std::memory_order_relaxed);
    CONCUR_SCHEDULE_POINT("rlock.release.after_unnaming");
    (void)word_.release();
  }

  // concur::Lock's word: a plain store releases it where that is safe.
  detail::PlainLockWord word_;
  // The holder's thread token (detail/thread_token.hpp), 0 when free; written by the holder only.
  std::atomic<std::uint32_t> owner_{0};
  // Acquisitions beyond the first, written by the holder only; 0 whenever the lock is free.
  std::atomic<std::uint32_t> extra_levels_{0};
};

static_assert(sizeof(RLock) <= 16, "an RLock is a lock word, a name and a count");

}  // namespace concur

#endif  // CONCUR_RLOCK_HPP
