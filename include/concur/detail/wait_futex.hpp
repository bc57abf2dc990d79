// concur/detail/wait_futex.hpp
//
// The Linux implementation of the wait/wake seam: the futex system call on a private (process-
// local) 32-bit word. Waits with a deadline use FUTEX_WAIT_BITSET, whose timeout is an absolute
// CLOCK_MONOTONIC instant (the clock behind steady_clock), so a wait interrupted by a signal and
// restarted never waits past the original deadline.
//
// Include concur/detail/wait.hpp instead of this file.

#ifndef CONCUR_DETAIL_WAIT_FUTEX_HPP
#define CONCUR_DETAIL_WAIT_FUTEX_HPP

#if !defined(__linux__)
#error "concur/detail/wait_futex.hpp is Linux only"
#endif

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>

#include "concur/detail/deadline.hpp"

namespace concur::detail::futex {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the futex word must be a plain, lock-free 32-bit atomic");

inline long call(const std::atomic<std::uint32_t>& word, int op, std::uint32_t value,
                 const timespec* timeout, std::uint32_t value3) noexcept {
  return ::syscall(SYS_futex, &word, op, value, timeout, nullptr, value3);
}

inline timespec to_timespec(steady_time when) noexcept {
  const auto since_epoch = when.time_since_epoch();
  if (since_epoch <= steady_clock::duration::zero()) return timespec{0, 0};
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds);
  return timespec{static_cast<time_t>(seconds.count()), static_cast<long>(nanos.count())};
}

inline void wait_on(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  // EAGAIN (the word already differs) and EINTR both mean "look again": the caller does.
  call(word, FUTEX_WAIT_PRIVATE, expected, nullptr, 0);
}

inline bool wait_on_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                          steady_time deadline) noexcept {
  if (deadline == never) {
    wait_on(word, expected);
    return true;
  }
  const timespec at = to_timespec(deadline);
  const long rc = call(word, FUTEX_WAIT_BITSET_PRIVATE, expected, &at, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

inline void wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  call(word, FUTEX_WAKE_PRIVATE, static_cast<std::uint32_t>(count), nullptr, 0);
}

inline void wake_one(std::atomic<std::uint32_t>& word) noexcept {
  wake(word, 1);
}

inline void wake_all(std::atomic<std::uint32_t>& word) noexcept {
  wake(word, INT_MAX);
}

}  // namespace concur::detail::futex

#endif  // CONCUR_DETAIL_WAIT_FUTEX_HPP
