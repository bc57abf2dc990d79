// The futex wait's deadline on every ABI (issue 14, item 3).
//
// The kernel reads a futex timeout in the layout of the system call it was given, not in the C
// library's: on a 32-bit target built with 64-bit time_t (_TIME_BITS=64), handing the C
// library's timespec to SYS_futex made the kernel read the low half of tv_sec as the seconds and
// the high half (zero) as the nanoseconds, so every timed wait timed out at the whole second
// before its deadline, up to a second early. These tests wait with deadlines a fraction of a
// second away, whose fractional part such a misreading drops, and require that no wait reports
// a timeout before its deadline. They run on every build; the 32-bit _TIME_BITS=64 build (under
// QEMU user mode, see .ci/cross) is the one that failed before the fix.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <thread>

#include "concur/detail/wait.hpp"

namespace {

using namespace std::chrono_literals;
using concur::detail::steady_clock;
using concur::detail::wait_word;

// Waits on a word nobody changes until `deadline` reports itself (spurious returns are allowed
// and waited through); returns the time at which the wait reported the timeout.
template <class TimedWait>
steady_clock::time_point time_out_at(TimedWait timed_wait, steady_clock::time_point deadline) {
  wait_word word{0};
  while (timed_wait(word, 0, deadline)) {
  }
  return steady_clock::now();
}

void expect_never_early(auto timed_wait) {
  // Deadlines 200 ms away, and a few with other fractions of a second, so that a misread
  // timeout (truncated to whole seconds) shows whatever the clock reads when the test starts.
  for (auto timeout : {200ms, 200ms, 350ms, 730ms}) {
    const auto deadline = steady_clock::now() + timeout;
    const auto returned = time_out_at(timed_wait, deadline);
    EXPECT_GE(returned, deadline)
        << "a " << timeout.count() << " ms wait timed out "
        << std::chrono::duration<double, std::milli>(deadline - returned).count()
        << " ms before its deadline";
  }
}

#if defined(__linux__)
TEST(FutexDeadline, TimedWaitNeverTimesOutEarly) {
  expect_never_early([](const wait_word& w, std::uint32_t v, steady_clock::time_point d) {
    return concur::detail::futex::wait_on_until(w, v, d);
  });
}
#endif

TEST(FutexDeadline, SelectedPathNeverTimesOutEarly) {
  expect_never_early([](const wait_word& w, std::uint32_t v, steady_clock::time_point d) {
    return concur::detail::wait_on_until(w, v, d);
  });
}

// A wake still ends a timed wait long before its deadline: the layout the kernel reads gives a
// wait that sleeps until it is woken, not one that fails or times out at once.
TEST(FutexDeadline, WakeEndsATimedWaitBeforeItsDeadline) {
  wait_word word{0};
  std::atomic<bool> timed_out{false};
  std::atomic<bool> waiting{false};
  const auto deadline = steady_clock::now() + 60s;
  std::thread waiter([&] {
    waiting.store(true);
    while (word.load() == 0) {
      if (!concur::detail::wait_on_until(word, 0, deadline)) {
        timed_out.store(true);
        return;
      }
    }
  });
  while (!waiting.load()) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  word.store(1);
  concur::detail::wake_all(word);
  waiter.join();
  EXPECT_FALSE(timed_out.load());
  EXPECT_LT(steady_clock::now(), deadline);
}

// Records which ABI this build ran on, so a CI log shows that the 32-bit, 64-bit-time build is
// the one that ran.
TEST(FutexDeadline, ReportsTheAbi) {
  std::printf("sizeof(long) = %zu, sizeof(time_t) = %zu, sizeof(timespec) = %zu\n", sizeof(long),
              sizeof(std::time_t), sizeof(timespec));
  SUCCEED();
}

}  // namespace
