// concur/detail/wait_windows.hpp
//
// The wait/wake seam on Windows: WaitOnAddress and WakeByAddressSingle/All (Windows 8 and
// later, and Wine), which behave as a futex does: the comparison of the word with `expected`
// and the sleep are atomic with respect to a wake on the same address, a wake reaches exactly
// the waiters it names, and the wait takes a timeout.
//
// Why not the portable path (std::atomic::wait) there: the libstdc++ of MinGW-w64 (GCC 12) has
// no platform wait on Windows and its own pool of mutexes and condition variables loses
// wake-ups; a plain std::atomic::wait ping-pong hung in 3 runs out of 5 under Wine 8 (issue 14,
// item 5), the same ping-pong on WaitOnAddress in none. Link with -lsynchronization.
//
// WaitOnAddress takes a relative timeout in whole milliseconds: a timed wait sleeps for the
// time left until the deadline, rounded up, and a wake-up before the deadline (the timer's
// granularity) counts as a spurious one: wait_on_until returns true and the caller re-checks,
// so only a wait that finds the deadline passed returns false.
//
// Include concur/detail/wait.hpp instead of this file.

#ifndef CONCUR_DETAIL_WAIT_WINDOWS_HPP
#define CONCUR_DETAIL_WAIT_WINDOWS_HPP

#if !defined(_WIN32)
#error "concur/detail/wait_windows.hpp is for Windows"
#endif

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
// windows.h first: synchapi.h needs its types.
#include <synchapi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include "concur/detail/deadline.hpp"

#if defined(_MSC_VER)
#pragma comment(lib, "synchronization.lib")
#endif

namespace concur::detail::windows {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the wait word must be a plain, lock-free 32-bit atomic");

inline volatile void* address_of(const std::atomic<std::uint32_t>& word) noexcept {
  return const_cast<volatile void*>(static_cast<const volatile void*>(&word));
}

inline void wait_on(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  ::WaitOnAddress(address_of(word), &expected, sizeof expected, INFINITE);
}

inline bool wait_on_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                          steady_time deadline) noexcept {
  if (deadline == never) {
    wait_on(word, expected);
    return true;
  }
  const steady_time now = steady_clock::now();
  if (now >= deadline) return false;
  // Milliseconds left, rounded up, and kept below INFINITE (a longer wait just wakes early).
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  const DWORD ms =
      left >= static_cast<long long>(INFINITE - 1) ? INFINITE - 1 : static_cast<DWORD>(left);
  if (::WaitOnAddress(address_of(word), &expected, sizeof expected, ms)) return true;
  // A timeout: final only when the deadline has really passed.
  return ::GetLastError() != ERROR_TIMEOUT || !reached(deadline);
}

inline void wake_one(std::atomic<std::uint32_t>& word) noexcept {
  ::WakeByAddressSingle(const_cast<void*>(static_cast<const volatile void*>(&word)));
}

inline void wake_all(std::atomic<std::uint32_t>& word) noexcept {
  ::WakeByAddressAll(const_cast<void*>(static_cast<const volatile void*>(&word)));
}

// Wakes up to `count` waiters: one at a time for a few, all of them beyond that (a waiter
// woken without cause re-checks and sleeps again).
inline void wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  if (count > 8) {
    wake_all(word);
    return;
  }
  for (int i = 0; i < count; ++i) wake_one(word);
}

}  // namespace concur::detail::windows

#endif  // CONCUR_DETAIL_WAIT_WINDOWS_HPP
