// concur/semaphore.hpp
//
// concur::Semaphore and concur::BoundedSemaphore, Python's threading.Semaphore and
// threading.BoundedSemaphore: a counter that acquire() decrements, blocking while it is zero,
// and release(n) increments.
//
//   concur::BoundedSemaphore slots(4);   // at most four downloads at a time
//   void download(const Url& url) {
//     concur::Guard hold(slots);
//     fetch(url);
//   }
//
// The count lives in one 32-bit word, the futex word that sleepers wait on; a second word counts
// the threads that are about to sleep or sleep on it. acquire() is one compare-and-swap while
// the count is positive; release(n) is one compare-and-swap and one load, plus a wake-up system
// call only when somebody sleeps: it wakes min(n, sleepers) threads. (glibc's sem_t, too, keeps
// a count of waiters beside the value and wakes only when it is not zero.)
//
// Why no wake-up is lost. A single "somebody sleeps" bit in the count word, cleared by a
// release and set again by each thread that wakes, suffices for a lock, whose one unit goes to
// the one woken thread; it does not for a counter. Two sleepers, two releases back to back:
// the first clears the bit and wakes one thread, the second sees no bit and wakes nobody, the
// woken thread takes one unit and the other sleeps on beside a unit. Counting the sleepers
// instead, each release wakes as many sleepers as it adds units (at most), whatever the others
// did. The waiter and the releaser form a Dekker pair, both sides sequentially consistent:
//
//   waiter                                  releaser
//   sleepers += 1            (seq_cst RMW)  count += n         (seq_cst RMW)
//   c = count                (seq_cst load) s = sleepers       (seq_cst load)
//   if c == 0: futex_wait(count, 0)         if s > 0: futex_wake(count, min(n, s))
//   sleepers -= 1
//
// In the single total order of these operations, either the waiter's increment comes before
// the releaser's load, which then sees the sleeper and wakes (the futex wait, atomic against
// the wake, either sees the new count or is woken), or the releaser's load comes first, and
// then its count update comes before the waiter's load of the count, which sees the unit and
// does not sleep. A futex wake only reaches threads queued in the kernel, each of which counted
// itself first, so min(n, s) wakes at least min(n, threads queued); a woken thread always tries
// to take a unit before it sleeps again or gives up on its deadline, so a wake-up is never
// spent on a thread that then leaves a unit behind. (A thread that takes a unit without
// sleeping may take the one a woken thread was sent for: the unit is used, not lost, and the
// woken thread sleeps again.)
//
// Before sleeping, a waiter spins for a few microseconds (detail::SpinWait: bounded in time and
// by its deadline, never yielding), so a hand-off between running threads costs no system call.
//
// Memory ordering: release() is a release operation and a successful acquire() an acquire
// operation on the count, so what a thread did before release() happens-before what the thread
// whose acquire() took that unit does after it.

#ifndef CONCUR_SEMAPHORE_HPP
#define CONCUR_SEMAPHORE_HPP

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <stdexcept>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"

namespace concur {

namespace detail {

// BasicSemaphoreWord
//
// The count and the number of sleepers; see the comment at the top of this file. `Waits` is how
// it sleeps and wakes (ProcessWaits here; mp::Semaphore gives it the shared futex).
template <class Waits>
class BasicSemaphoreWord {
 public:
  // The largest count a semaphore holds.
  static constexpr std::uint32_t count_mask = (1u << 31) - 1;
  static constexpr std::int64_t max_value = count_mask;
  // How long acquire() spins before it sleeps.
  static constexpr std::chrono::nanoseconds spin_budget = std::chrono::microseconds(10);

  explicit constexpr BasicSemaphoreWord(std::uint32_t value) noexcept : count_(value) {}

  // BasicSemaphoreWord::value()
  //
  // The count now (a snapshot).
  [[nodiscard]] std::uint32_t value() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }

  // SemaphoreWord::try_acquire()
  //
  // Takes a unit if the count is positive; never blocks.
  bool try_acquire() noexcept {
    std::uint32_t count = count_.load(std::memory_order_relaxed);
    while (count != 0) {
      CONCUR_SCHEDULE_POINT("semaphore.acquire.before_cas");
      if (count_.compare_exchange_weak(count, count - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        CONCUR_SCHEDULE_POINT("semaphore.acquire.after_cas");
        return true;
      }
    }
    return false;
  }

  // SemaphoreWord::acquire(deadline)
  //
  // Takes a unit, blocking until one is there or `deadline` passes; false on timeout.
  bool acquire(steady_time deadline) noexcept {
    if (CONCUR_LIKELY(try_acquire())) return true;
    return acquire_slow(deadline);
  }

  // SemaphoreWord::release(n, limit)
  //
  // Adds `n` unless the count would pass `limit`; returns false (and changes nothing) then.
  // Wakes up to `n` sleepers.
  bool release(std::uint32_t n, std::uint32_t limit) noexcept {
    std::uint32_t count = count_.load(std::memory_order_relaxed);
    do {
      if (n > limit || count > limit - n) return false;
      CONCUR_SCHEDULE_POINT("semaphore.release.before_cas");
    } while (!count_.compare_exchange_weak(count, count + n, std::memory_order_seq_cst,
                                           std::memory_order_relaxed));
    CONCUR_SCHEDULE_POINT("semaphore.release.after_cas");
    // The releaser's half of the Dekker pair: the count is updated (seq_cst) before this load.
    const std::uint32_t sleeping = sleepers_.load(std::memory_order_seq_cst);
    if (CONCUR_UNLIKELY(sleeping != 0)) {
      CONCUR_SCHEDULE_POINT("semaphore.release.before_wake");
      const std::uint32_t wakes = n < sleeping ? n : sleeping;
      Waits::wake(count_, wakes > INT_MAX ? INT_MAX : static_cast<int>(wakes));
    }
    return true;
  }

 private:
  CONCUR_NOINLINE bool acquire_slow(steady_time deadline) noexcept {
    if (spin_for([this] { return try_acquire(); }, deadline, spin_budget)) return true;
    for (;;) {
      if (try_acquire()) return true;
      if (deadline != never && expired(deadline)) return false;
      // The waiter's half of the Dekker pair: count ourselves, then look at the count.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      CONCUR_SCHEDULE_POINT("semaphore.acquire.counted_sleeper");
      if (count_.load(std::memory_order_seq_cst) == 0) {
        CONCUR_SCHEDULE_POINT("semaphore.acquire.before_sleep");
        (void)Waits::wait_until(count_, 0, deadline);
        CONCUR_SCHEDULE_POINT("semaphore.acquire.after_wake");
      }
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      // Back to the top: a woken thread tries to take a unit before it gives up or sleeps.
    }
  }

  // The count (the futex word) and the number of threads that sleep, or are about to, on it.
  // Side by side, so that release() touches one cache line.
  wait_word count_;
  std::atomic<std::uint32_t> sleepers_{0};
};

// The threading semaphores' word.
using SemaphoreWord = BasicSemaphoreWord<ProcessWaits>;

// Python's checks on a semaphore's initial value.
inline std::uint32_t checked_initial_value(std::int64_t value) {
  if (value < 0) throw std::invalid_argument("semaphore initial value must be >= 0");
  if (value > SemaphoreWord::max_value) {
    throw std::invalid_argument("semaphore initial value is too large");
  }
  return static_cast<std::uint32_t>(value);
}

inline std::uint32_t checked_release_count(std::int64_t n) {
  if (n < 1) throw std::invalid_argument("n must be one or more");
  if (n > SemaphoreWord::max_value) throw std::overflow_error("semaphore count overflow");
  return static_cast<std::uint32_t>(n);
}

}  // namespace detail

namespace detail {

// What Semaphore and BoundedSemaphore share: everything but release().
class BasicSemaphore {
 public:
  BasicSemaphore(const BasicSemaphore&) = delete;
  BasicSemaphore& operator=(const BasicSemaphore&) = delete;

  // acquire()
  //
  // Blocks until the count is positive, then decrements it; returns true.
  bool acquire() noexcept {
    word_.acquire(never);
    return true;
  }

  // acquire(blocking)
  //
  // With `blocking` true, as acquire(). With false, decrements only if the count is positive
  // right now; returns whether it did.
  [[nodiscard]] bool acquire(bool blocking) noexcept {
    return blocking ? acquire() : word_.try_acquire();
  }

  // acquire(timeout)
  //
  // Blocks until the count can be decremented or `timeout` has passed; returns whether it
  // decremented. Never returns false before the timeout. A negative timeout counts as zero, as
  // in Python.
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) noexcept {
    return word_.acquire(deadline_after(timeout));
  }

  // try_acquire(), try_acquire_for(), try_acquire_until()
  //
  // The names std::counting_semaphore uses for acquire(false) and the timed acquire.
  [[nodiscard]] bool try_acquire() noexcept { return word_.try_acquire(); }
  template <class Rep, class Period>
  [[nodiscard]] bool try_acquire_for(std::chrono::duration<Rep, Period> timeout) noexcept {
    return word_.acquire(deadline_after(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_acquire_until(std::chrono::time_point<Clock, Duration> when) noexcept {
    for (;;) {
      if (word_.acquire(to_steady_deadline(when))) return true;
      if (reached(when)) return false;
    }
  }

 protected:
  explicit BasicSemaphore(std::int64_t value) : word_(checked_initial_value(value)) {}
  ~BasicSemaphore() = default;

  SemaphoreWord word_;
};

}  // namespace detail

// Semaphore
//
// Python's threading.Semaphore. Not movable. acquire() in Python's three forms and the
// std::counting_semaphore names come from detail::BasicSemaphore.
class Semaphore : public detail::BasicSemaphore {
 public:
  // Semaphore::Semaphore()
  //
  // A semaphore with count `value` (default 1). A negative value throws std::invalid_argument;
  // the count is limited to 2^31 - 1.
  explicit Semaphore(std::int64_t value = 1) : BasicSemaphore(value) {}

  // Semaphore::release(n)
  //
  // Adds `n` (default 1) to the count and wakes up to `n` waiting threads. `n` < 1 throws
  // std::invalid_argument; a count past 2^31 - 1 throws std::overflow_error (and changes
  // nothing).
  void release(std::int64_t n = 1) {
    if (!word_.release(detail::checked_release_count(n), detail::SemaphoreWord::count_mask)) {
      throw std::overflow_error("semaphore count overflow");
    }
  }
};

// BoundedSemaphore
//
// Python's threading.BoundedSemaphore: a semaphore whose count may never pass its initial
// value. A release() that would pass it throws UsageError and leaves the count as it was, which
// catches a release without a matching acquire.
class BoundedSemaphore : public detail::BasicSemaphore {
 public:
  // BoundedSemaphore::BoundedSemaphore()
  //
  // A semaphore with count and bound `value` (default 1). A negative value throws
  // std::invalid_argument.
  explicit BoundedSemaphore(std::int64_t value = 1)
      : BasicSemaphore(value), bound_(static_cast<std::uint32_t>(value)) {}

  // BoundedSemaphore::release(n)
  //
  // Adds `n` (default 1) to the count and wakes up to `n` waiting threads. Throws UsageError,
  // changing nothing, when the count would pass the initial value; `n` < 1 throws
  // std::invalid_argument.
  void release(std::int64_t n = 1) {
    if (!word_.release(detail::checked_release_count(n), bound_)) {
      throw UsageError("semaphore released too many times");
    }
  }

 private:
  const std::uint32_t bound_;
};

}  // namespace concur

#endif  // CONCUR_SEMAPHORE_HPP
