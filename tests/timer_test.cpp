// Tests of concur/timer.hpp: Python's Timer semantics.

#include "concur/timer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Timer;
using steady = std::chrono::steady_clock;

TEST(Timer, FiresOnceAfterTheInterval) {
  std::atomic<int> calls{0};
  std::atomic<steady::time_point> fired{};
  const auto start = steady::now();
  Timer timer(
      40ms,
      [&](int step) {
        calls += step;
        fired = steady::now();
      },
      1);
  EXPECT_EQ(timer.interval(), 40ms);
  timer.start();
  EXPECT_TRUE(timer.is_alive());
  timer.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_GE(fired.load() - start, 40ms);
  EXPECT_FALSE(timer.is_alive());
}

TEST(Timer, CancelBeforeItFiresStopsIt) {
  std::atomic<int> calls{0};
  Timer timer(concur_test::generous, [&] { ++calls; });
  timer.start();
  std::this_thread::sleep_for(10ms);
  timer.cancel();
  const auto start = steady::now();
  timer.join();  // returns soon after cancel, not after the interval
  EXPECT_LT(steady::now() - start, concur_test::generous);
  EXPECT_EQ(calls.load(), 0);
}

TEST(Timer, CancelAfterItFiredDoesNothing) {
  std::atomic<int> calls{0};
  Timer timer(1ms, [&] { ++calls; });
  timer.start();
  timer.join();
  timer.cancel();
  EXPECT_EQ(calls.load(), 1);
}

TEST(Timer, CancelBeforeStartMeansItNeverFires) {
  std::atomic<int> calls{0};
  Timer timer(1ms, [&] { ++calls; });
  timer.cancel();
  timer.start();
  timer.join();
  EXPECT_EQ(calls.load(), 0);
}

TEST(Timer, IsAThreadWithANameAndDaemonFlag) {
  Timer timer({.name = "alarm", .daemon = true}, 1ms, [] {});
  EXPECT_EQ(timer.name(), "alarm");
  EXPECT_TRUE(timer.daemon());
  Timer plain(1ms, [] {});
  EXPECT_EQ(plain.name().rfind("Thread-", 0), 0u) << plain.name();
  timer.start();
  timer.join();
}

TEST(Timer, ADaemonTimerMayBeDestroyedWhileItWaits) {
  auto fired = std::make_shared<std::atomic<bool>>(false);
  std::optional<concur::ThreadHandle> handle;
  {
    Timer timer({.daemon = true}, 30ms, [fired] { *fired = true; });
    timer.start();
    handle = timer.handle();
  }
  EXPECT_TRUE(handle->join(concur_test::generous));
  EXPECT_TRUE(fired->load());
}

TEST(Timer, ANonDaemonTimerIsJoinedByItsDestructor) {
  std::atomic<bool> fired{false};
  {
    Timer timer(20ms, [&] { fired = true; });
    timer.start();
  }
  EXPECT_TRUE(fired.load());
}

}  // namespace
