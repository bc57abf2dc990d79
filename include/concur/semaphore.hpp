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
// The count lives in one 32-bit word, with its top bit saying that a thread may sleep on the
// word. acquire() is one compare-and-swap while the count is positive; release() is one
// compare-and-swap, plus a wake-up system call only when somebody sleeps. A thread that has
// slept sets the sleeper bit again when it takes a unit, because it cannot know whether others
// still sleep: the same rule as concur::Lock's, and the reason no wake-up is ever lost.
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
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"

namespace concur {

namespace detail {

class SemaphoreWord {
 public:
  static constexpr std::uint32_t sleepers_bit = 1u << 31;
  static constexpr std::uint32_t count_mask = sleepers_bit - 1;
  // The largest count a semaphore holds.
  static constexpr std::int64_t max_value = count_mask;

  explicit constexpr SemaphoreWord(std::uint32_t value) noexcept : word_(value) {}

  bool try_acquire() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    while (state & count_mask) {
      if (word_.compare_exchange_weak(state, state - 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  bool acquire(steady_time deadline) noexcept {
    if (CONCUR_LIKELY(try_acquire())) return true;
    return acquire_slow(deadline);
  }

  // Adds `n` unless the count would pass `limit`; returns false (and changes nothing) then.
  bool release(std::uint32_t n, std::uint32_t limit) noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    std::uint32_t next;
    do {
      const std::uint32_t count = state & count_mask;
      if (n > limit || count > limit - n) return false;
      next = count + n;  // clears the sleepers bit: the threads woken set it again if need be
    } while (!word_.compare_exchange_weak(state, next, std::memory_order_release,
                                          std::memory_order_relaxed));
    if (CONCUR_UNLIKELY(state & sleepers_bit)) wake(word_, n > INT_MAX ? INT_MAX : int(n));
    return true;
  }

 private:
  CONCUR_NOINLINE bool acquire_slow(steady_time deadline) noexcept {
    if (spin_until([this] { return try_acquire(); }, /*spin_rounds=*/6)) return true;
    bool slept = false;
    for (;;) {
      std::uint32_t state = word_.load(std::memory_order_relaxed);
      if (state & count_mask) {
        const std::uint32_t next = (state - 1) | (slept ? sleepers_bit : 0);
        if (word_.compare_exchange_weak(state, next, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      if (deadline != never && expired(deadline)) {
        // A sleeper that leaves may have consumed a wake-up meant for another: it keeps the
        // sleepers bit set, so the next release wakes someone.
        if (!slept || (state & sleepers_bit) ||
            word_.compare_exchange_weak(state, state | sleepers_bit, std::memory_order_relaxed)) {
          return false;
        }
        continue;
      }
      if (!(state & sleepers_bit)) {
        if (!word_.compare_exchange_weak(state, state | sleepers_bit, std::memory_order_relaxed)) {
          continue;
        }
        state |= sleepers_bit;
      }
      (void)wait_on_until(word_, state, deadline);
      slept = true;
    }
  }

  wait_word word_;
};

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
