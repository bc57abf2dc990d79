// concur/detail/wait_futex.hpp
//
// The Linux implementation of the wait/wake seam: the futex system call on a private (process-
// local) 32-bit word. Waits with a deadline use FUTEX_WAIT_BITSET, whose timeout is an absolute
// CLOCK_MONOTONIC instant (the clock behind steady_clock), so a wait interrupted by a signal and
// restarted never waits past the original deadline.
//
// The timeout's layout is the system call's, not the C library's: see kernel_timespec below.
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
#include <limits>
#include <type_traits>

#include "concur/detail/deadline.hpp"

namespace concur::detail::futex {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the futex word must be a plain, lock-free 32-bit atomic");

// The futex system call and the layout of the timeout it reads (issue 14, item 3).
//
// The kernel reads the timeout in the layout of the system call it is given, whatever the C
// library's timespec is:
//   - SYS_futex reads the kernel's native timespec: two 64-bit fields on 64-bit targets (and on
//     x32), which is the C library's timespec there; two 32-bit longs on 32-bit targets (the
//     kernel's old_timespec32), which is the C library's timespec only while time_t is 32 bits.
//   - SYS_futex_time64, which exists only on 32-bit targets (Linux 5.1 and later), reads two
//     64-bit fields ({tv_sec, tv_nsec}, the kernel's __kernel_timespec). Some 32-bit targets
//     have only this call (riscv32, and every port added since).
// A 32-bit target built with a 64-bit time_t (_TIME_BITS=64, glibc 2.34 and later; musl 1.2)
// has a C library timespec of a 64-bit tv_sec, a 32-bit tv_nsec and padding: neither layout.
// Given to SYS_futex, the low half of tv_sec was read as the seconds and the high half (zero) as
// the nanoseconds, so every timed wait ended at the whole second before its deadline. So this
// seam picks SYS_futex_time64 with its own 64-bit pair where the C library's time_t is wider
// than the old kernel field (a long), or where SYS_futex is absent; SYS_futex with the C
// library's timespec otherwise.
struct time64_timespec {
  std::int64_t tv_sec;
  std::int64_t tv_nsec;
};
#if defined(SYS_futex) && defined(SYS_futex_time64)
inline constexpr bool futex_time64 = sizeof(time_t) > sizeof(long);
inline constexpr long futex_syscall = futex_time64 ? SYS_futex_time64 : SYS_futex;
#elif defined(SYS_futex_time64)
inline constexpr bool futex_time64 = true;
inline constexpr long futex_syscall = SYS_futex_time64;
#else
inline constexpr bool futex_time64 = false;
inline constexpr long futex_syscall = SYS_futex;
#endif
// The timeout as the chosen system call reads it.
using kernel_timespec = std::conditional_t<futex_time64, time64_timespec, timespec>;

inline long call(const std::atomic<std::uint32_t>& word, int op, std::uint32_t value,
                 const kernel_timespec* timeout, std::uint32_t value3) noexcept {
  return ::syscall(futex_syscall, &word, op, value, timeout, nullptr, value3);
}

// An absolute CLOCK_MONOTONIC instant for FUTEX_WAIT_BITSET; the epoch or later.
inline kernel_timespec to_timespec(steady_time when) noexcept {
  kernel_timespec at{};
  const auto since_epoch = when.time_since_epoch();
  if (since_epoch <= steady_clock::duration::zero()) return at;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds);
  // A 32-bit tv_sec holds 68 years of uptime; a finite deadline past that waits as long as it
  // can rather than wrap into the past.
  using seconds_field = decltype(at.tv_sec);
  constexpr auto most = std::numeric_limits<seconds_field>::max();
  if (seconds.count() > most) {
    at.tv_sec = most;
    return at;
  }
  at.tv_sec = static_cast<seconds_field>(seconds.count());
  at.tv_nsec = static_cast<decltype(at.tv_nsec)>(nanos.count());
  return at;
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
  const kernel_timespec at = to_timespec(deadline);
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

// The same two operations on a word in memory that other processes map (concur::mp): the
// shared futex, keyed by the page and offset rather than by this process's address. Without a
// deadline (`never`), waits until woken. Returns false once the deadline has passed.
inline bool shared_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                              steady_time deadline) noexcept {
  if (deadline == never) {
    call(word, FUTEX_WAIT, expected, nullptr, 0);
    return true;
  }
  const kernel_timespec at = to_timespec(deadline);
  const long rc = call(word, FUTEX_WAIT_BITSET, expected, &at, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

inline void shared_wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  call(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0);
}

}  // namespace concur::detail::futex

#endif  // CONCUR_DETAIL_WAIT_FUTEX_HPP
