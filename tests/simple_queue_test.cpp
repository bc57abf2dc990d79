// Tests of concur/simple_queue.hpp: Python's SimpleQueue (unbounded, no task tracking).

#include "concur/simple_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lateness.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Empty;
using concur::SimpleQueue;
using steady = std::chrono::steady_clock;

TEST(SimpleQueue, FirstInFirstOutAndNeverFull) {
  SimpleQueue<std::string> q;
  EXPECT_TRUE(q.empty());
  for (int i = 0; i < 10000; ++i) q.put(std::to_string(i));
  q.put_nowait("last");
  EXPECT_EQ(q.qsize(), 10001u);
  EXPECT_EQ(q.get(), "0");
  EXPECT_EQ(q.get(false), "1");
  EXPECT_EQ(q.get_nowait(), "2");
}

// Issue 12, item 17: put({...}) did not compile (the template parameter cannot be deduced from
// braces); put and put_nowait now default it to T. emplace() builds an item from constructor
// arguments, explicit constructors included.
TEST(SimpleQueue, BracedPutsAndEmplace) {
  SimpleQueue<std::pair<int, long>> pairs;
  pairs.put({1, 2L});
  pairs.put_nowait({3, 4L});
  pairs.emplace(5, 6L);
  EXPECT_EQ(pairs.get(), std::make_pair(1, 2L));
  EXPECT_EQ(pairs.get(), std::make_pair(3, 4L));
  EXPECT_EQ(pairs.get(), std::make_pair(5, 6L));
  SimpleQueue<std::vector<int>> vectors;
  vectors.emplace(3u, 7);  // a constructor braces would not pick: three sevens
  EXPECT_EQ(vectors.get(), std::vector<int>({7, 7, 7}));
  SimpleQueue<std::unique_ptr<int>> pointers;
  pointers.emplace(std::make_unique<int>(8));
  EXPECT_EQ(*pointers.get(), 8);
}

TEST(SimpleQueue, EmptyGetsThrowOrTimeOut) {
  SimpleQueue<int> q;
  EXPECT_THROW((void)q.get(false), Empty);
  EXPECT_THROW((void)q.get_nowait(), Empty);
  const auto start = steady::now();
  EXPECT_THROW((void)q.get(20ms), Empty);
  EXPECT_GE(steady::now() - start, 20ms);
  EXPECT_THROW((void)q.get(-1ms), std::invalid_argument);
  EXPECT_FALSE(q.try_get().has_value());
  EXPECT_FALSE(q.try_get(5ms).has_value());
}

TEST(SimpleQueue, BlockedGetWakesOnPut) {
  SimpleQueue<std::unique_ptr<int>> q;
  std::atomic<int> got{0};
  std::thread getter([&] { got = *q.get(); });
  std::this_thread::sleep_for(20ms);
  q.put(std::make_unique<int>(9));
  getter.join();
  EXPECT_EQ(got.load(), 9);
}

TEST(SimpleQueueStress, EveryItemArrivesOnce) {
  SimpleQueue<long> q;
  const long per_producer = concur_test::scaled(100000, 20);
  std::atomic<std::int64_t> sum{0};  // 1.5e10: more than a 32-bit long holds
  std::vector<std::thread> threads;
  for (int p = 0; p < 3; ++p) {
    threads.emplace_back([&] {
      for (long i = 1; i <= per_producer; ++i) q.put(i);
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      for (long n = 0; n < 3 * per_producer / 2; ++n) sum += q.get();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sum.load(), std::int64_t{3} * per_producer * (per_producer + 1) / 2);
  EXPECT_TRUE(q.empty());
}

// With CPU-bound threads (twice the hardware threads), a 1 ms timed get on an empty SimpleQueue
// returns about as late as std::condition_variable::wait_for, measured the same way in the same
// test (defect 3 of the "trust" issue).
TEST(SimpleQueue, TimedGetReturnsOnTimeUnderCpuLoad) {
  if (CONCUR_SCHEDULE_EXPLORING) GTEST_SKIP() << "schedule points add delays on purpose";
  SimpleQueue<int> q;
  EXPECT_TRUE(concur_test::timed_wait_on_time(
      "SimpleQueue::try_get", [&](auto timeout) { return q.try_get(timeout).has_value(); }));
}

}  // namespace
