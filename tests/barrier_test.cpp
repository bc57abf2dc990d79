// Tests of concur/barrier.hpp: Python's Barrier semantics.

#include "concur/barrier.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "concur/detail/schedule.hpp"
#include "lateness.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Barrier;
using concur::BrokenBarrierError;
using concur_test::eventually;
using concur_test::scaled;

// Runs `body(thread_index)` on `count` threads and joins them.
template <class Body>
void on_threads(int count, Body body) {
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();
}

using concur_test::timed_wait_on_time;

// Issue 11, defect 3: a timed wait returns on time with CPU-bound threads on every core. A
// lone party of two times out and breaks the barrier; reset() readies it for the next trial.
TEST(Barrier, TimedWaitIsOnTimeWithCpuHogs) {
  if (CONCUR_SCHEDULE_EXPLORING) GTEST_SKIP() << "schedule points add delays on purpose";
  Barrier barrier(2);
  EXPECT_TRUE(timed_wait_on_time("Barrier::wait", [&](auto timeout) {
    try {
      (void)barrier.wait(timeout);
      return true;
    } catch (const BrokenBarrierError&) {
      barrier.reset();
      return false;
    }
  }));
}

TEST(Barrier, PartiesMustBePositive) {
  EXPECT_THROW(Barrier(0), std::invalid_argument);
  Barrier one(1);
  EXPECT_EQ(one.parties(), 1u);
  EXPECT_EQ(one.wait(), 0u);  // a party of one never waits
  EXPECT_EQ(one.wait(), 0u);
}

// Issue 12, item 16: a negative count is Python's ValueError, as Semaphore(-1) is; it used to
// convert to 2^64 - 1 parties, and every wait() hung.
TEST(Barrier, ANegativePartyCountIsRefused) {
  EXPECT_THROW(Barrier(-1), std::invalid_argument);
  EXPECT_THROW(Barrier(-1, [] {}), std::invalid_argument);
  EXPECT_THROW(Barrier(-1, 10ms), std::invalid_argument);
  const auto make = [](long parties) { Barrier barrier(parties); };  // a count from a variable
  EXPECT_THROW(make(-3), std::invalid_argument);
  Barrier two(std::size_t{2});  // an unsigned count still works
  EXPECT_EQ(two.parties(), 2u);
}

TEST(Barrier, IndicesAreDistinctAndTheActionRunsOncePerRoundBeforeRelease) {
  constexpr int parties = 4;
  const int rounds = static_cast<int>(scaled(200, 10));
  std::atomic<int> actions{0};
  std::atomic<int> through{0};
  std::atomic<bool> early{false};
  Barrier barrier(parties, [&] {
    // No thread of this round may have passed the barrier yet.
    if (through.load() != actions.load() * parties) early = true;
    ++actions;
  });
  std::mutex mutex;
  std::vector<std::vector<std::size_t>> indices(rounds);
  on_threads(parties, [&](int) {
    for (int r = 0; r < rounds; ++r) {
      const std::size_t index = barrier.wait();
      ++through;
      std::lock_guard<std::mutex> hold(mutex);
      indices[r].push_back(index);
    }
  });
  EXPECT_EQ(actions.load(), rounds);
  EXPECT_FALSE(early);
  for (auto& round : indices) {
    std::sort(round.begin(), round.end());
    EXPECT_EQ(round, (std::vector<std::size_t>{0, 1, 2, 3}));
  }
  EXPECT_FALSE(barrier.broken());
}

TEST(Barrier, NWaitingCountsTheThreadsAtTheBarrier) {
  Barrier barrier(3);
  std::thread a([&] { (void)barrier.wait(); });
  std::thread b([&] { (void)barrier.wait(); });
  EXPECT_TRUE(eventually([&] { return barrier.n_waiting() == 2; }));
  (void)barrier.wait();
  a.join();
  b.join();
  EXPECT_EQ(barrier.n_waiting(), 0u);
}

TEST(Barrier, ATimeoutBreaksTheBarrierForEveryone) {
  Barrier barrier(3);
  std::atomic<int> broken{0};
  std::thread patient([&] {
    try {
      (void)barrier.wait();
    } catch (const BrokenBarrierError&) {
      ++broken;
    }
  });
  EXPECT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)barrier.wait(30ms), BrokenBarrierError);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  patient.join();
  EXPECT_EQ(broken.load(), 1);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW((void)barrier.wait(), BrokenBarrierError);  // until reset()
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
}

TEST(Barrier, TheConstructorsTimeoutIsTheDefault) {
  Barrier barrier(2, 20ms);
  EXPECT_THROW((void)barrier.wait(), BrokenBarrierError);
  EXPECT_TRUE(barrier.broken());
}

TEST(Barrier, AbortBreaksItAndResetRepairsIt) {
  Barrier barrier(2);
  std::atomic<bool> broken{false};
  std::thread waiter([&] {
    try {
      (void)barrier.wait();
    } catch (const BrokenBarrierError&) {
      broken = true;
    }
  });
  EXPECT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  barrier.abort();
  waiter.join();
  EXPECT_TRUE(broken);
  EXPECT_THROW((void)barrier.wait(1s), BrokenBarrierError);
  barrier.reset();
  // Usable again: two threads pass together.
  on_threads(2, [&](int) { (void)barrier.wait(concur_test::generous); });
  EXPECT_FALSE(barrier.broken());
}

TEST(Barrier, ResetWhileThreadsWaitReleasesThemWithBrokenBarrierError) {
  Barrier barrier(3);
  std::atomic<int> broken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] {
      try {
        (void)barrier.wait();
      } catch (const BrokenBarrierError&) {
        ++broken;
      }
    });
  }
  EXPECT_TRUE(eventually([&] { return barrier.n_waiting() == 2; }));
  barrier.reset();
  for (auto& w : waiters) w.join();
  EXPECT_EQ(broken.load(), 2);
  EXPECT_FALSE(barrier.broken());  // reset leaves it ready for a new round
  on_threads(3, [&](int) { (void)barrier.wait(concur_test::generous); });
}

TEST(Barrier, AThrowingActionBreaksTheBarrier) {
  Barrier barrier(2, [] { throw std::runtime_error("action failed"); });
  std::atomic<int> broken{0};
  std::atomic<int> action_errors{0};
  on_threads(2, [&](int) {
    try {
      (void)barrier.wait();
    } catch (const BrokenBarrierError&) {
      ++broken;
    } catch (const std::runtime_error&) {
      ++action_errors;  // the thread that ran the action gets its exception
    }
  });
  EXPECT_EQ(broken.load(), 1);
  EXPECT_EQ(action_errors.load(), 1);
  EXPECT_TRUE(barrier.broken());
}

TEST(BarrierStress, ManyRoundsWithMoreThreadsThanCores) {
  constexpr int parties = 6;
  const int rounds = static_cast<int>(scaled(2000, 20));
  std::atomic<long> sum{0};
  long expected = 0;
  Barrier barrier(parties, [&] { ++expected; });
  concur_test::Watchdog watchdog("barrier rounds", std::chrono::seconds(120));
  on_threads(parties, [&](int) {
    for (int r = 0; r < rounds; ++r) sum += static_cast<long>(barrier.wait());
  });
  EXPECT_EQ(expected, rounds);
  EXPECT_EQ(sum.load(), static_cast<long>(rounds) * parties * (parties - 1) / 2);
}

}  // namespace
