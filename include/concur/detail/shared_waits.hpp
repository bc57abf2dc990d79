// concur/detail/shared_waits.hpp
//
// SharedWaits: the waits of concur::mp's primitives whose protocol is a threading primitive's
// (mp::Semaphore is detail::BasicSemaphoreWord<SharedWaits>, mp::Event is
// BasicEvent<SharedWaits>): the shared futex, on a word in memory that other processes map.
//
// One thing more than the private waits: a sleep lasts at most recheck_interval, after which
// the protocol's loop looks at its word again and sleeps anew. Between processes a waker can
// die between its change to the word and its wake call (a SIGKILL at that instruction); a
// thread could then sleep for ever beside a unit or a set flag. With the cap, such a death
// delays it by at most recheck_interval. An idle waiter pays one short wake-up per interval,
// some microseconds of CPU per second.
//
// Linux only.

#ifndef CONCUR_DETAIL_SHARED_WAITS_HPP
#define CONCUR_DETAIL_SHARED_WAITS_HPP

#if !defined(__linux__)
#error "concur/detail/shared_waits.hpp is Linux only"
#endif

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait_futex.hpp"

namespace concur::detail {

struct SharedWaits {
  static constexpr std::chrono::milliseconds recheck_interval{200};

  // Sleeps while `word` holds `expected`, until woken, `deadline`, or recheck_interval; false
  // only once `deadline` has passed.
  static bool wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                         steady_time deadline) noexcept {
    CONCUR_SCHEDULE_POINT("shared_wait.before_sleep");
    const steady_time recheck = deadline_after(recheck_interval);
    if (recheck < deadline) {
      (void)futex::shared_wait_until(word, expected, recheck);
      CONCUR_SCHEDULE_POINT("shared_wait.after_wake");
      return true;
    }
    const bool woken = futex::shared_wait_until(word, expected, deadline);
    CONCUR_SCHEDULE_POINT("shared_wait.after_wake");
    return woken;
  }
  static void wake(std::atomic<std::uint32_t>& word, int count) noexcept {
    CONCUR_SCHEDULE_POINT("shared_wait.before_wake");
    futex::shared_wake(word, count);
  }
  static void wake_all(std::atomic<std::uint32_t>& word) noexcept { wake(word, INT_MAX); }
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SHARED_WAITS_HPP
