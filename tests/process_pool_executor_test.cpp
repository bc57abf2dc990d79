// Tests of concurrent.futures' ProcessPoolExecutor in concur (concur/process_pool.hpp): submit
// and Futures, map in order with chunks and a timeout, exceptions, shutdown with and without
// cancel_futures, cancel(), initializer and max_tasks_per_child, and BrokenProcessPool when a
// worker is killed at a random moment. Every test runs under a watchdog and reaps its children.
//
// Futures are kept in named variables while their exceptions are examined: the exception
// object is then released by this thread, not by the pool's I/O thread (ThreadSanitizer cannot
// see the reference count inside libstdc++'s exception_ptr).

#include "concur/process_pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proc_children.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::BrokenProcessPool;
using concur::Future;
using concur::MapOptions;
using concur::ProcessPoolExecutor;
using concur::RemoteError;
using concur::UsageError;
using concur_test::Watchdog;

int square(int x) {
  return x * x;
}
long long mul(int a, long long b) {
  return a * b;
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int fail_on_three(int x) {
  if (x == 3) throw std::out_of_range("three");
  return x;
}
int worker_pid(int) {
  return static_cast<int>(::getpid());
}
int g_value = 0;
void set_value(int v) {
  g_value = v;
}
int get_value(int) {
  return g_value;
}
void init_throws() {
  throw std::runtime_error("no init today");
}

std::vector<int> iota(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

using concur_test::reaped;

TEST(ProcessPoolExecutorTest, SubmitResultsChecksum) {
  Watchdog dog("SubmitResultsChecksum", 60s);
  ProcessPoolExecutor pool(2);
  EXPECT_EQ(pool.max_workers(), 2);
  std::vector<Future<int>> futures;
  const int n = static_cast<int>(concur_test::scaled(2000, 4));
  for (int i = 0; i < n; ++i) futures.push_back(pool.submit(square, i));
  long long sum = 0, want = 0;
  for (int i = 0; i < n; ++i) {
    sum += futures[static_cast<std::size_t>(i)].result();
    want += static_cast<long long>(i) * i;
  }
  EXPECT_EQ(sum, want);
  Future<void> nothing = pool.submit([](int) {}, 1);
  nothing.result();
  EXPECT_TRUE(nothing.done());
  Future<std::string> text = pool.submit([](std::string s) { return s + s; }, "ab");
  EXPECT_EQ(text.result(), "abab");
}

TEST(ProcessPoolExecutorTest, MapInOrderWithChunksAndZip) {
  Watchdog dog("MapInOrderWithChunksAndZip", 60s);
  ProcessPoolExecutor pool(2);
  const auto items = iota(3000);
  for (int chunksize : {1, 7, 500}) {
    int expected = 0;
    for (int value : pool.map(MapOptions{.chunksize = chunksize}, square, items)) {
      ASSERT_EQ(value, expected * expected);
      ++expected;
    }
    EXPECT_EQ(expected, 3000);
  }
  // Several ranges, zipped up to the shortest.
  std::vector<long long> factors(10, 3);
  std::vector<long long> products;
  for (long long p : pool.map(mul, items, factors)) products.push_back(p);
  ASSERT_EQ(products.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(products[static_cast<std::size_t>(i)], 3LL * i);
  EXPECT_THROW((void)pool.map(MapOptions{.chunksize = 0}, square, items), std::invalid_argument);
}

std::int64_t square64(std::int64_t x) {
  return x * x;
}
std::int64_t fail_at_777(std::int64_t x) {
  if (x == 777) throw std::out_of_range("777");
  return x;
}
std::string tagged(std::string s) {
  return "<" + s + ">";
}

// One range goes as it is (bulk items as one block a chunk, results into one buffer): every
// result in order across chunk boundaries, a failed chunk's exception once in its place.
TEST(ProcessPoolExecutorTest, MapOfOneRangeInBulk) {
  Watchdog dog("MapOfOneRangeInBulk", 60s);
  ProcessPoolExecutor pool(2);
  std::vector<std::int64_t> items(50001);
  std::iota(items.begin(), items.end(), std::int64_t{0});
  for (int chunksize : {1, 1000, 6251, 50001, 70000}) {
    std::int64_t expected = 0;
    for (std::int64_t value : pool.map(MapOptions{.chunksize = chunksize}, square64, items)) {
      ASSERT_EQ(value, expected * expected);
      ++expected;
    }
    ASSERT_EQ(expected, 50001);
  }
  auto results = pool.map(MapOptions{.chunksize = 100}, fail_at_777, items);
  std::int64_t expected = 0;
  int thrown = 0;
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      ASSERT_EQ(*it, expected);
      ++expected;
    } catch (const RemoteError& e) {
      EXPECT_EQ(std::string(e.what()), "777");
      EXPECT_EQ(expected, 700);  // the chunk [700, 800) fails as a whole
      expected = 800;
      ++thrown;
    }
  }
  EXPECT_EQ(thrown, 1);
  EXPECT_EQ(expected, 50001);
  // Strings, and a range that is not contiguous.
  std::list<std::string> words;
  for (int i = 0; i < 5000; ++i) words.push_back(std::to_string(i));
  int i = 0;
  for (const std::string& out : pool.map(MapOptions{.chunksize = 300}, tagged, words)) {
    ASSERT_EQ(out, "<" + std::to_string(i++) + ">");
  }
  EXPECT_EQ(i, 5000);
}

TEST(ProcessPoolExecutorTest, MapTimeoutCountsFromTheCall) {
  Watchdog dog("MapTimeoutCountsFromTheCall", 60s);
  ProcessPoolExecutor pool(1);
  const auto start = std::chrono::steady_clock::now();
  auto results = pool.map(MapOptions{.timeout = 500ms}, sleep_ms, std::vector<int>{1, 2500});
  auto it = results.begin();
  EXPECT_EQ(*it, 1);
  ++it;
  EXPECT_THROW((void)*it, concur::TimeoutError);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 500ms);
  EXPECT_LT(waited, 2000ms);
  pool.shutdown(true);  // waits for the slow task
}

TEST(ProcessPoolExecutorTest, ExceptionsComeBack) {
  Watchdog dog("ExceptionsComeBack", 60s);
  ProcessPoolExecutor pool(2);
  Future<int> bad = pool.submit(fail_on_three, 3);
  try {
    (void)bad.result();
    ADD_FAILURE() << "no exception";
  } catch (const RemoteError& e) {
    EXPECT_EQ(std::string(e.what()), "three");
    EXPECT_EQ(e.type_name(), "std::out_of_range");
  }
  EXPECT_NE(bad.exception(), nullptr);
  Future<int> good = pool.submit(fail_on_three, 4);
  EXPECT_EQ(good.exception(), nullptr);
  EXPECT_EQ(good.result(), 4);
  auto results = pool.map(fail_on_three, std::vector<int>{1, 2, 3, 4});
  std::vector<int> seen;
  int thrown = 0;
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      seen.push_back(*it);
    } catch (const RemoteError&) {
      ++thrown;
    }
  }
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(thrown, 1);
}

TEST(ProcessPoolExecutorTest, ShutdownAndCancel) {
  Watchdog dog("ShutdownAndCancel", 60s);
  {
    ProcessPoolExecutor pool(1);
    const auto pids = pool.pids();
    std::vector<Future<int>> futures;
    for (int i = 0; i < 4; ++i) futures.push_back(pool.submit(sleep_ms, 30));
    pool.shutdown();  // waits for every queued task
    for (auto& f : futures) EXPECT_EQ(f.result(), 30);
    EXPECT_THROW((void)pool.submit(square, 1), UsageError);
    pool.shutdown();  // again: nothing happens
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
  }
  {
    // A fresh pool keeps 2 tasks in flight per worker; the rest wait in the parent's queue,
    // where cancel() and cancel_futures reach them.
    ProcessPoolExecutor pool(1);
    std::vector<Future<int>> futures;
    for (int i = 0; i < 10; ++i) futures.push_back(pool.submit(sleep_ms, 100));
    ASSERT_TRUE(concur_test::eventually([&] { return futures[0].running(); }));
    EXPECT_TRUE(futures[9].cancel());
    EXPECT_TRUE(futures[9].cancelled());
    EXPECT_THROW((void)futures[9].result(), concur::CancelledError);
    pool.shutdown(true, true);
    EXPECT_EQ(futures[0].result(), 100);
    int cancelled = 0;
    for (auto& f : futures) cancelled += f.cancelled() ? 1 : 0;
    EXPECT_GE(cancelled, 5);
    for (auto& f : futures) EXPECT_TRUE(f.done());
  }
  EXPECT_THROW(ProcessPoolExecutor(0), std::invalid_argument);
  EXPECT_THROW(ProcessPoolExecutor({.max_workers = 1, .max_tasks_per_child = 0}),
               std::invalid_argument);
}

TEST(ProcessPoolExecutorTest, InitializerAndMaxTasksPerChild) {
  Watchdog dog("InitializerAndMaxTasksPerChild", 60s);
  {
    ProcessPoolExecutor pool(
        {.max_workers = 2, .initializer = concur::bind_initializer(set_value, 17)});
    Future<int> f = pool.submit(get_value, 0);
    EXPECT_EQ(f.result(), 17);
  }
  {
    ProcessPoolExecutor pool({.max_workers = 2, .max_tasks_per_child = 2});
    std::vector<Future<int>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(pool.submit(worker_pid, i));
    std::set<int> pids;
    for (auto& f : futures) pids.insert(f.result());
    EXPECT_GE(pids.size(), 10u);
  }
  {
    // The failure may break the pool before the submit (which throws then) or after it (the
    // Future holds it); either way the pool is broken afterwards.
    ProcessPoolExecutor pool({.max_workers = 1, .initializer = init_throws});
    EXPECT_THROW(
        {
          Future<int> f = pool.submit(square, 2);
          (void)f.result();
        },
        BrokenProcessPool);
    EXPECT_THROW((void)pool.submit(square, 2), BrokenProcessPool);
  }
  EXPECT_EQ(g_value, 0);
}

TEST(ProcessPoolExecutorTest, KilledWorkerBreaksTheExecutor) {
  Watchdog dog("KilledWorkerBreaksTheExecutor", 90s);
  std::mt19937 random(15150);
  const int iterations = static_cast<int>(concur_test::scaled(12, 3));
  int broke = 0;
  for (int iteration = 0; iteration < iterations; ++iteration) {
    std::vector<pid_t> pids;
    {
      ProcessPoolExecutor pool(2);
      pids = pool.pids();
      std::vector<Future<int>> futures;
      for (int i = 0; i < 100; ++i) futures.push_back(pool.submit(sleep_ms, 1));
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 30));
      ::kill(pids[random() % pids.size()], SIGKILL);
      for (auto& f : futures) {
        try {
          (void)f.result(20s);
        } catch (const BrokenProcessPool&) {
          ++broke;
        }
      }
      EXPECT_TRUE(concur_test::eventually([&] {
        try {
          Future<int> probe = pool.submit(square, 2);
          (void)probe.result(20s);
          return false;
        } catch (const BrokenProcessPool&) {
          return true;
        }
      }));
    }  // the destructor shuts down and waits: it must not hang
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
  }
  EXPECT_GT(broke, 0);
}

}  // namespace
