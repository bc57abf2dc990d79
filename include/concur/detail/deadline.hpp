// concur/detail/deadline.hpp
//
// Deadline arithmetic on std::chrono::steady_clock. Every timed call in concur turns its timeout
// into one absolute deadline at entry and waits against that deadline from then on, so a retry
// after EINTR or a spurious wake-up never extends the total wait.

#ifndef CONCUR_DETAIL_DEADLINE_HPP
#define CONCUR_DETAIL_DEADLINE_HPP

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace concur::detail {

using steady_clock = std::chrono::steady_clock;
using steady_time = steady_clock::time_point;

// The latest representable instant; a deadline this far away never passes.
inline constexpr steady_time never = steady_time::max();

// Converts any duration to steady_clock's own duration, rounding up (a wait is never shorter
// than asked) and saturating at the largest value instead of overflowing. A floating-point NaN
// counts as zero.
template <class Rep, class Period>
constexpr steady_clock::duration to_steady_duration(
    std::chrono::duration<Rep, Period> timeout) noexcept {
  using target = steady_clock::duration;
  using wide = std::chrono::duration<long double, typename target::period>;
  const wide as_wide = std::chrono::duration_cast<wide>(timeout);
  // NaN: the count itself, not the library's operator!= (which may be written as !(a == b)).
  if (as_wide.count() != as_wide.count()) return target::zero();
  if (as_wide >= wide(target::max().count())) return target::max();
  if (as_wide <= wide(target::min().count())) return target::min();
  return std::chrono::ceil<target>(timeout);
}

// The instant `timeout` from now. Zero or negative timeouts give "now" (already passed); huge
// ones saturate to `never`.
template <class Rep, class Period>
steady_time deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
  const steady_time now = steady_clock::now();
  const steady_clock::duration step = to_steady_duration(timeout);
  if (step <= steady_clock::duration::zero()) return now;
  if (step >= never - now) return never;
  return now + step;
}

// The steady_clock instant matching `when` on another clock, measured once now. Callers that
// take a foreign clock's time point re-check that clock after a timed-out wait, as the standard
// asks of try_lock_until. Instants beyond steady_clock's range saturate: a time point at the far
// end of a coarse clock (time_point<steady_clock, hours>::max()) means `never`, not an overflow
// into the past.
template <class Clock, class Duration>
steady_time to_steady_deadline(std::chrono::time_point<Clock, Duration> when) noexcept {
  if constexpr (std::is_same_v<Clock, steady_clock>) {
    const steady_clock::duration since_epoch = to_steady_duration(when.time_since_epoch());
    return steady_time(since_epoch);
  } else {
    // The difference in a floating type, which neither end of either clock can overflow.
    using wide = std::chrono::duration<long double, std::nano>;
    const wide left = std::chrono::duration_cast<wide>(when.time_since_epoch()) -
                      std::chrono::duration_cast<wide>(Clock::now().time_since_epoch());
    return deadline_after(left);
  }
}

// True once `Clock` has reached `when`. The comparison is made in a floating type: the
// standard's operator>= converts both sides to the finer duration, which overflows for a time
// point at either end of a coarse clock (time_point<Clock, hours>::min(), for one).
template <class Clock, class Duration>
bool reached(std::chrono::time_point<Clock, Duration> when) noexcept {
  using wide = std::chrono::duration<long double, std::nano>;
  return std::chrono::duration_cast<wide>(Clock::now().time_since_epoch()) >=
         std::chrono::duration_cast<wide>(when.time_since_epoch());
}

// True once `deadline` has passed.
inline bool expired(steady_time deadline) noexcept {
  return deadline != never && steady_clock::now() >= deadline;
}

// Throws std::invalid_argument for a negative (or NaN) timeout, for the calls where Python
// refuses one ("'timeout' must be a non-negative number").
// The NaN test looks at the value itself: the standard library's comparison operators may not
// say false for NaN (libc++ writes `a >= b` as `!(a < b)`, which is true when a is NaN).
template <class Rep, class Period>
void require_non_negative(std::chrono::duration<Rep, Period> timeout, const char* what) {
  if constexpr (std::is_floating_point_v<Rep>) {
    if (std::isnan(timeout.count())) throw std::invalid_argument(what);
  }
  if (timeout < std::chrono::duration<Rep, Period>::zero()) throw std::invalid_argument(what);
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_DEADLINE_HPP
