// concur/detail/wait.hpp
//
// The wait/wake seam: the one place where concur blocks a thread. Every primitive above it is
// written against these five functions on a 32-bit atomic word:
//
//   wait_on(word, expected)                 block while `word == expected`, until woken
//   wait_on_until(word, expected, deadline) the same, giving up at `deadline`
//   wake_one(word) / wake_all(word) / wake(word, n)
//
// The contract, the same as the futex system call's:
//   - The check and the sleep are atomic with respect to wakes: a waker that changes the word and
//     then wakes cannot be missed by a waiter that saw the old value.
//   - A waker must change the word before it wakes (the portable path only returns once the word
//     differs from `expected`).
//   - Either wait may return spuriously, after a signal (EINTR), or because the word already
//     differed; callers re-check their own state in a loop. wait_on_until returns false only when
//     the deadline has passed, and the deadline is absolute, so a retry never extends the wait.
//   - Waits give no ordering of their own; the word's own atomic operations do.
//
// On Linux the futex is used (concur/detail/wait_futex.hpp); on Windows WaitOnAddress
// (concur/detail/wait_windows.hpp), unless CONCUR_PORTABLE_WAIT is defined; elsewhere, or when
// CONCUR_PORTABLE_WAIT is defined, the portable path (concur/detail/wait_portable.hpp). Both
// the futex and the portable path are always compiled on Linux so that tests can exercise both.

#ifndef CONCUR_DETAIL_WAIT_HPP
#define CONCUR_DETAIL_WAIT_HPP

#include <atomic>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait_portable.hpp"

#if defined(__linux__)
#include "concur/detail/wait_futex.hpp"
#elif defined(_WIN32) && !defined(CONCUR_PORTABLE_WAIT)
#include "concur/detail/wait_windows.hpp"
#endif

namespace concur::detail {

// The type of every word that threads wait on.
using wait_word = std::atomic<std::uint32_t>;

#if CONCUR_HAS_FUTEX
namespace wait_impl = futex;
#elif defined(_WIN32) && !defined(CONCUR_PORTABLE_WAIT)
namespace wait_impl = windows;
#else
namespace wait_impl = portable;
#endif

// True when this build waits with the Linux futex; false on the portable path.
inline constexpr bool uses_futex = CONCUR_HAS_FUTEX != 0;

// Every wait and wake passes schedule points (concur/detail/schedule.hpp): before the word is
// compared (a waker may run first, and the wait must then return at once), after the wait
// returns (the woken thread may be slow to run, and other threads may act first), and before a
// wake (the waiters' state may change between the waker's store and its wake call).

inline void wait_on(const wait_word& word, std::uint32_t expected) noexcept {
  CONCUR_SCHEDULE_POINT("wait.before_sleep");
  wait_impl::wait_on(word, expected);
  CONCUR_SCHEDULE_POINT("wait.after_wake");
}

inline bool wait_on_until(const wait_word& word, std::uint32_t expected,
                          steady_time deadline) noexcept {
  CONCUR_SCHEDULE_POINT("wait.before_timed_sleep");
  const bool woken = wait_impl::wait_on_until(word, expected, deadline);
  CONCUR_SCHEDULE_POINT("wait.after_timed_wake");
  return woken;
}

inline void wake_one(wait_word& word) noexcept {
  CONCUR_SCHEDULE_POINT("wait.before_wake_one");
  wait_impl::wake_one(word);
}

inline void wake_all(wait_word& word) noexcept {
  CONCUR_SCHEDULE_POINT("wait.before_wake_all");
  wait_impl::wake_all(word);
}

inline void wake(wait_word& word, int count) noexcept {
  CONCUR_SCHEDULE_POINT("wait.before_wake");
  wait_impl::wake(word, count);
}

// ProcessWaits
//
// The waits of a primitive private to one process, as a policy: the primitives whose protocol
// concur::mp reuses between processes (Semaphore, Event) take their waits from a class of this
// shape, and mp gives them detail::SharedWaits (concur/detail/shared_waits.hpp) instead.
struct ProcessWaits {
  // Sleeps while `word` holds `expected`, until woken or `deadline`; false once it has passed.
  static bool wait_until(const wait_word& word, std::uint32_t expected,
                         steady_time deadline) noexcept {
    return wait_on_until(word, expected, deadline);
  }
  static void wake(wait_word& word, int count) noexcept { detail::wake(word, count); }
  static void wake_all(wait_word& word) noexcept { detail::wake_all(word); }
};

// Blocks until `word` no longer holds `expected` or `deadline` passes, absorbing spurious
// wake-ups. Returns true when the word changed, false on timeout (the word still `expected`).
inline bool wait_while_equal(const wait_word& word, std::uint32_t expected,
                             steady_time deadline = never) noexcept {
  while (word.load(std::memory_order_acquire) == expected) {
    if (!wait_on_until(word, expected, deadline)) {
      return word.load(std::memory_order_acquire) != expected;
    }
  }
  return true;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_WAIT_HPP
