// concur/timer.hpp
//
// concur::Timer, Python's threading.Timer: a Thread that calls a function once, after an
// interval, unless cancel() comes first.
//
//   concur::Timer reminder(std::chrono::seconds(30), [] { std::puts("time is up"); });
//   reminder.start();
//   ...
//   reminder.cancel();   // if it has not fired yet, it never will
//
// It is a concur::Thread (start, join, is_alive, name, daemon...), so, like a non-daemon
// Thread, a started Timer is joined by its destructor: the program waits for it to fire or be
// cancelled. cancel() after the timer fired does nothing; join() after cancel() returns soon.
// The function and its arguments live in the timer's thread, not in the object, so a daemon
// Timer may be destroyed while it waits.
//
// Memory ordering: what the thread that called start() did before it is visible to the
// function; what the function did is visible after a join() that returns.

#ifndef CONCUR_TIMER_HPP
#define CONCUR_TIMER_HPP

#include <chrono>
#include <concepts>
#include <memory>
#include <type_traits>
#include <utility>

#include "concur/detail/thread_state.hpp"
#include "concur/event.hpp"
#include "concur/thread.hpp"

namespace concur {

namespace detail {

// What a Timer's thread and the Timer object share.
struct TimerState {
  TimerState(std::chrono::nanoseconds delay, std::unique_ptr<ThreadTarget> target)
      : interval(delay), function(std::move(target)) {}

  const std::chrono::nanoseconds interval;
  std::unique_ptr<ThreadTarget> function;
  Event finished;  // Python's Timer.finished: set by cancel() or once the function has run

  void run() {
    if (!finished.wait(interval)) (*function)();
    finished.set();
  }
};

}  // namespace detail

// Timer
//
// Python's threading.Timer.
class Timer : public Thread {
 public:
  // Timer::Timer(interval, f, args...)
  //
  // A timer that, once started, calls `f(args...)` after `interval` (arguments copied or moved,
  // as Thread does).
  template <class Rep, class Period, class F, class... Args>
  Timer(std::chrono::duration<Rep, Period> interval, F&& f,
        Args&&... args) requires detail::thread_target<F, Args...>
      : Timer(ThreadOptions{}, interval, std::forward<F>(f), std::forward<Args>(args)...) {}

  // Timer::Timer(options, interval, f, args...)
  //
  // As above, with a name and daemon status.
  template <class Rep, class Period, class F, class... Args>
  Timer(ThreadOptions options, std::chrono::duration<Rep, Period> interval, F&& f,
        Args&&... args) requires detail::thread_target<F, Args...>
      : Timer(std::move(options),
              std::make_shared<detail::TimerState>(
                  std::chrono::ceil<std::chrono::nanoseconds>(interval),
                  detail::bind_target(std::forward<F>(f), std::forward<Args>(args)...))) {}

  // Timer::cancel()
  //
  // Stops the timer if it has not fired yet; otherwise does nothing.
  void cancel() noexcept { timer_->finished.set(); }

  // Timer::interval()
  //
  // The delay before the function is called.
  [[nodiscard]] std::chrono::nanoseconds interval() const noexcept { return timer_->interval; }

 private:
  Timer(ThreadOptions options, std::shared_ptr<detail::TimerState> timer)
      : Thread(std::move(options), [timer] { timer->run(); }), timer_(std::move(timer)) {
    run_target_directly();
  }

  std::shared_ptr<detail::TimerState> timer_;
};

}  // namespace concur

#endif  // CONCUR_TIMER_HPP
