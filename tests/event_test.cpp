// Tests of concur/event.hpp: Python's Event semantics.

#include "concur/event.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "concur/detail/schedule.hpp"
#include "concur/thread.hpp"
#include "lateness.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Event;
using concur_test::eventually;
using concur_test::scaled;
using steady = std::chrono::steady_clock;

constinit Event global_event;
static_assert(sizeof(Event) == 4);

using concur_test::timed_wait_on_time;

TEST(Event, SetClearIsSet) {
  Event e;
  EXPECT_FALSE(e.is_set());
  e.set();
  EXPECT_TRUE(e.is_set());
  e.set();  // setting a set event does nothing
  EXPECT_TRUE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
  global_event.set();
  EXPECT_TRUE(global_event.wait(0s));
}

TEST(Event, WaitReturnsAtOnceWhenSet) {
  Event e;
  e.set();
  EXPECT_TRUE(e.wait());
  EXPECT_TRUE(e.wait(0s));
  EXPECT_TRUE(e.wait(-1s));
}

TEST(Event, TimedWaitTimesOutNeverEarly) {
  Event e;
  for (auto timeout : {0ms, 1ms, 30ms}) {
    const auto start = steady::now();
    EXPECT_FALSE(e.wait(timeout));
    EXPECT_GE(steady::now() - start, timeout);
  }
  EXPECT_FALSE(e.wait(-1s));  // a negative timeout counts as zero
}

// Defect 3 of issue 11: with CPU-bound threads on every core, a 1 ms Event::wait(timeout)
// returned some 45 ms late, while std::condition_variable was 0.1 ms late: the waiter's spin
// ignored the deadline and ended in rounds of sched_yield(), each of which can hand the core
// to a busy thread for a whole time slice. The bound compares with std:: measured alongside.
TEST(Event, TimedWaitIsOnTimeWithCpuHogs) {
  if (CONCUR_SCHEDULE_EXPLORING) GTEST_SKIP() << "schedule points add delays on purpose";
  Event e;
  EXPECT_TRUE(timed_wait_on_time("Event::wait", [&](auto timeout) { return e.wait(timeout); }));
}

TEST(Event, SetWakesEveryWaiter) {
  Event e;
  std::atomic<int> woken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 6; ++i) {
    waiters.emplace_back([&, i] {
      if (i % 2 == 0 ? e.wait() : e.wait(concur_test::generous)) ++woken;
    });
  }
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(woken.load(), 0);
  e.set();
  for (auto& w : waiters) w.join();
  EXPECT_EQ(woken.load(), 6);
}

TEST(Event, SetThenClearStillReleasesEveryWaiter) {
  // Python's rule covers the threads that were waiting when set() came. A thread that has only
  // announced itself may still be on its way into wait() and would rightly miss a set() and
  // clear() pair, so the test waits until every waiter sleeps in the kernel.
  constexpr int count = 4;
  concur_test::Watchdog watchdog("set-then-clear", std::chrono::seconds(300));
  for (int round = 0; round < scaled(50, 5); ++round) {
    Event e;
    std::array<std::atomic<std::uint64_t>, count> ids{};
    std::atomic<int> released{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < count; ++i) {
      waiters.emplace_back([&, i] {
        ids[static_cast<std::size_t>(i)] = concur::get_native_id();
        if (round % 2 == 0 ? e.wait(concur_test::generous) : e.wait()) ++released;
      });
    }
    EXPECT_TRUE(eventually([&] {
      return std::all_of(ids.begin(), ids.end(), [](const std::atomic<std::uint64_t>& id) {
        return id.load() != 0 && concur_test::thread_asleep(id.load());
      });
    })) << "round "
        << round;
    e.set();
    e.clear();
    for (auto& w : waiters) w.join();
    EXPECT_EQ(released.load(), count) << "round " << round;
    EXPECT_FALSE(e.is_set());
  }
}

TEST(Event, EverythingBeforeSetIsVisibleAfterWait) {
  for (int round = 0; round < scaled(200, 10); ++round) {
    Event e;
    std::vector<int> data;  // written without a lock
    std::thread writer([&] {
      for (int i = 0; i < 64; ++i) data.push_back(i);
      e.set();
    });
    e.wait();
    ASSERT_EQ(data.size(), 64u);
    ASSERT_EQ(data.back(), 63);
    writer.join();
  }
}

TEST(EventStress, PingPongLosesNoWakeUp) {
  Event ping;
  Event pong;
  const int rounds = static_cast<int>(scaled(20000, 20));
  concur_test::Watchdog watchdog("event ping-pong", std::chrono::seconds(120));
  std::thread other([&] {
    for (int i = 0; i < rounds; ++i) {
      ping.wait();
      ping.clear();
      pong.set();
    }
  });
  for (int i = 0; i < rounds; ++i) {
    ping.set();
    if (i % 2 == 0) {
      pong.wait();
    } else {
      while (!pong.wait(1ms)) {
      }
    }
    pong.clear();
  }
  other.join();
  EXPECT_FALSE(ping.is_set());
}

}  // namespace
