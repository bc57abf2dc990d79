// Tests of concur/futures.hpp: Python's concurrent.futures semantics (Future, ThreadPoolExecutor,
// wait, as_completed), and the waits that cannot deadlock.

#include "concur/futures.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concur/event.hpp"
#include "concur/lock.hpp"
#include "concur/thread.hpp"
#include "stress.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::CancelledError;
using concur::Event;
using concur::Future;
using concur::ReturnWhen;
using concur::ThreadPoolExecutor;
using concur::TimeoutError;
using concur_test::eventually;
using concur_test::scaled;

// --- Future and submit -----------------------------------------------------------------------

TEST(Future, DefaultHasNoState) {
  Future<int> future;
  EXPECT_FALSE(future.valid());
  EXPECT_THROW((void)future.result(), concur::UsageError);
  EXPECT_THROW((void)future.done(), concur::UsageError);
}

TEST(ThreadPoolExecutor, SubmitReturnsTheResult) {
  ThreadPoolExecutor pool(2);
  Future<int> future = pool.submit([](int a, int b) { return a * b; }, 6, 7);
  EXPECT_EQ(future.result(), 42);
  EXPECT_TRUE(future.done());
  EXPECT_FALSE(future.running());
  EXPECT_FALSE(future.cancelled());
  EXPECT_EQ(future.exception(), nullptr);
  Future<int> copy = future;  // a shared handle
  EXPECT_EQ(copy, future);
  EXPECT_EQ(copy.result(), 42);
}

TEST(ThreadPoolExecutor, MoveOnlyArgumentsAndResults) {
  ThreadPoolExecutor pool(1);
  auto future = pool.submit([](std::unique_ptr<int> p) { return std::make_unique<int>(*p + 1); },
                            std::make_unique<int>(41));
  EXPECT_EQ(*future.result(), 42);
  Future<void> nothing = pool.submit([] {});
  nothing.result();
  EXPECT_TRUE(nothing.done());
}

TEST(ThreadPoolExecutor, ArgumentsAreCopiedAtSubmit) {
  ThreadPoolExecutor pool(1);
  std::string text = "before";
  auto future = pool.submit([](const std::string& s) { return s; }, text);
  text = "after";
  EXPECT_EQ(future.result(), "before");
}

TEST(ThreadPoolExecutor, ExceptionIsKeptInTheFuture) {
  ThreadPoolExecutor pool(1);
  Future<int> future = pool.submit([]() -> int { throw std::out_of_range("task failed"); });
  EXPECT_THROW((void)future.result(), std::out_of_range);
  EXPECT_THROW((void)future.result(), std::out_of_range);  // every time, as in Python
  std::exception_ptr error = future.exception();
  ASSERT_NE(error, nullptr);
  try {
    std::rethrow_exception(error);
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "task failed");
  }
}

TEST(ThreadPoolExecutor, RunningWhileItRuns) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  Future<void> future = pool.submit([&] {
    started.set();
    go.wait();
  });
  started.wait();
  EXPECT_TRUE(future.running());
  EXPECT_FALSE(future.done());
  EXPECT_FALSE(future.cancel()) << "a running task cannot be cancelled";
  go.set();
  future.result();
  EXPECT_FALSE(future.running());
}

TEST(ThreadPoolExecutor, CancelAQueuedTask) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  std::atomic<bool> ran{false};
  Future<void> blocker = pool.submit([&] {
    started.set();
    go.wait();
  });
  started.wait();
  Future<int> queued = pool.submit([&] {
    ran = true;
    return 1;
  });
  EXPECT_TRUE(queued.cancel());
  EXPECT_TRUE(queued.cancel()) << "cancel() of a cancelled future is true";
  EXPECT_TRUE(queued.cancelled());
  EXPECT_TRUE(queued.done());
  EXPECT_THROW((void)queued.result(), CancelledError);
  EXPECT_THROW((void)queued.exception(), CancelledError);
  go.set();
  blocker.result();
  pool.shutdown();
  EXPECT_FALSE(ran.load()) << "a cancelled task ran";
}

TEST(ThreadPoolExecutor, TimedResult) {
  ThreadPoolExecutor pool(1);
  Event go;
  Future<int> future = pool.submit([&] {
    go.wait();
    return 5;
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)future.result(30ms), TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_THROW((void)future.result(-1s), TimeoutError) << "a negative timeout is zero";
  EXPECT_THROW((void)future.exception(1ms), TimeoutError);
  go.set();
  EXPECT_EQ(future.result(concur_test::generous), 5);
}

TEST(ThreadPoolExecutor, DoneCallbacksRunOnceInOrder) {
  ThreadPoolExecutor pool(1);
  Event go;
  Future<int> future = pool.submit([&] {
    go.wait();
    return 3;
  });
  std::vector<int> calls;
  concur::Lock lock;
  for (int i = 0; i < 3; ++i) {
    future.add_done_callback([&, i](const Future<int>& f) {
      std::scoped_lock hold(lock);
      calls.push_back(i * 10 + f.result());
    });
  }
  future.add_done_callback([](const Future<int>&) { throw std::runtime_error("reported"); });
  go.set();
  future.result();
  ASSERT_TRUE(eventually([&] {
    std::scoped_lock hold(lock);
    return calls.size() == 3;
  }));
  // Added after it is done: runs at once, in this thread.
  future.add_done_callback([&](const Future<int>&) { calls.push_back(99); });
  std::scoped_lock hold(lock);
  EXPECT_EQ(calls, (std::vector<int>{3, 13, 23, 99}));
}

TEST(ThreadPoolExecutor, CancelRunsDoneCallbacks) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  pool.submit([&] {
    started.set();
    go.wait();
  });
  started.wait();
  Future<int> queued = pool.submit([] { return 1; });
  std::atomic<int> called{0};
  queued.add_done_callback([&](const Future<int>& f) {
    EXPECT_TRUE(f.cancelled());
    ++called;
  });
  EXPECT_TRUE(queued.cancel());
  EXPECT_EQ(called.load(), 1);
  go.set();
}

// --- map -------------------------------------------------------------------------------------

TEST(ThreadPoolExecutor, MapYieldsInOrder) {
  ThreadPoolExecutor pool(3);
  std::vector<int> input(200);
  std::iota(input.begin(), input.end(), 0);
  std::vector<int> output;
  for (int value : pool.map(
           [](int x) {
             if (x % 7 == 0) std::this_thread::sleep_for(100us);  // finish out of order
             return x * x;
           },
           input)) {
    output.push_back(value);
  }
  ASSERT_EQ(output.size(), input.size());
  for (int i = 0; i < 200; ++i) EXPECT_EQ(output[static_cast<std::size_t>(i)], i * i);
}

TEST(ThreadPoolExecutor, MapZipsRangesToTheShortest) {
  ThreadPoolExecutor pool(2);
  std::vector<int> a{1, 2, 3, 4};
  std::vector<std::string> b{"x", "y", "z"};
  std::vector<std::string> out;
  for (const std::string& s :
       pool.map([](int n,
                   const std::string&t) { return std::string(static_cast<std::size_t>(n), t[0]); },
                a, b)) {
    out.push_back(s);
  }
  EXPECT_EQ(out, (std::vector<std::string>{"x", "yy", "zzz"}));
}

TEST(ThreadPoolExecutor, MapRethrowsAtTheFailingItemAndTimesOut) {
  ThreadPoolExecutor pool(2);
  std::vector<int> input{1, 2, 0, 4};
  auto results = pool.map(
      [](int x) {
        if (x == 0) throw std::domain_error("zero");
        return 10 / x;
      },
      input);
  auto it = results.begin();
  EXPECT_EQ(*it, 10);
  ++it;
  EXPECT_EQ(*it, 5);
  ++it;
  EXPECT_THROW((void)*it, std::domain_error);

  Event go;
  std::vector<int> one{1};
  auto slow = pool.map(
      concur::MapOptions{.timeout = 20ms},
      [&](int x) {
        go.wait();
        return x;
      },
      one);
  EXPECT_THROW((void)*slow.begin(), TimeoutError);
  go.set();
}

TEST(ThreadPoolExecutor, DroppingAMapCancelsWhatHasNotStarted) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  std::atomic<int> ran{0};
  std::vector<int> input(50, 1);
  {
    auto results = pool.map(
        [&](int) {
          started.set();
          go.wait();
          return ++ran;
        },
        input);
    started.wait();
  }
  go.set();
  pool.shutdown();
  EXPECT_EQ(ran.load(), 1) << "only the task that had started ran";
}

// --- shutdown, workers, initializer ----------------------------------------------------------

TEST(ThreadPoolExecutor, SubmitAfterShutdownThrows) {
  ThreadPoolExecutor pool(2);
  pool.shutdown();
  EXPECT_THROW((void)pool.submit([] { return 1; }), concur::UsageError);
  pool.shutdown();  // again: nothing happens
}

TEST(ThreadPoolExecutor, ShutdownWaitsForQueuedTasks) {
  std::atomic<int> ran{0};
  {
    ThreadPoolExecutor pool(2);
    for (int i = 0; i < 500; ++i) {
      pool.submit([&] {
        std::this_thread::sleep_for(10us);
        ++ran;
      });
    }
  }  // the destructor: shutdown(wait = true)
  EXPECT_EQ(ran.load(), 500);
}

TEST(ThreadPoolExecutor, ShutdownCancelFutures) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  Future<void> running = pool.submit([&] {
    started.set();
    go.wait();
  });
  started.wait();
  std::vector<Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(pool.submit([i] { return i; }));
  pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  EXPECT_FALSE(running.done());
  go.set();
  pool.shutdown(true);
  EXPECT_TRUE(running.done());
}

TEST(ThreadPoolExecutor, MaxWorkers) {
  EXPECT_THROW(ThreadPoolExecutor(0), std::invalid_argument);
  EXPECT_THROW(ThreadPoolExecutor(-3), std::invalid_argument);
  ThreadPoolExecutor pool;
  EXPECT_EQ(pool.max_workers(), std::min(32, concur::process_cpu_count() + 4));
}

TEST(ThreadPoolExecutor, WorkersAreNamedAndStartedOnDemand) {
  ThreadPoolExecutor pool({.max_workers = 4, .thread_name_prefix = "pooled"});
  std::set<std::string> names;
  // One task at a time: the one idle worker takes each, so no second thread starts.
  for (int i = 0; i < 50; ++i) {
    names.insert(pool.submit([] { return concur::current_thread().name(); }).result());
  }
  EXPECT_EQ(names, (std::set<std::string>{"pooled_0"}));
}

TEST(ThreadPoolExecutor, NeverMoreWorkersThanMax) {
  ThreadPoolExecutor pool(3);
  std::atomic<int> inside{0}, most{0};
  std::vector<Future<void>> futures;
  for (int i = 0; i < 60; ++i) {
    futures.push_back(pool.submit([&] {
      const int now = ++inside;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(200us);
      --inside;
    }));
  }
  for (auto& f : futures) f.result();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
}

TEST(ThreadPoolExecutor, FailedInitializerBreaksThePool) {
  ThreadPoolExecutor pool(
      {.max_workers = 1, .initializer = [] { throw std::runtime_error("init"); }});
  Future<int> first = pool.submit([] { return 1; });
  EXPECT_THROW((void)first.result(concur_test::generous), concur::BrokenThreadPool);
  ASSERT_TRUE(eventually([&] {
    try {
      (void)pool.submit([] { return 2; });
      return false;
    } catch (const concur::BrokenThreadPool&) {
      return true;
    }
  }));
}

TEST(ThreadPoolExecutor, InitializerRunsInEachWorker) {
  static thread_local int initialized = 0;
  ThreadPoolExecutor pool({.max_workers = 2, .initializer = [] { initialized = 7; }});
  EXPECT_EQ(pool.submit([] { return initialized; }).result(), 7);
}

// An idle pool uses no CPU: its workers sleep in the kernel (< 5 ms of CPU per second).
TEST(ThreadPoolExecutor, IdlePoolUsesNoCpu) {
  ThreadPoolExecutor pool(4);
  std::vector<Future<int>> futures;
  for (int i = 0; i < 16; ++i) futures.push_back(pool.submit([i] { return i; }));
  for (auto& f : futures) f.result();
  std::this_thread::sleep_for(50ms);  // past any spin
  auto cpu = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return std::chrono::seconds(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           std::chrono::microseconds(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  };
  const auto before = cpu();
  std::this_thread::sleep_for(500ms);
  const auto used = cpu() - before;
  EXPECT_LT(used, 5ms) << "CPU used by an idle pool in 500 ms: "
                       << std::chrono::duration_cast<std::chrono::microseconds>(used).count()
                       << " us";
}

// --- waits that cannot deadlock: nested submit and wait --------------------------------------

long fib(ThreadPoolExecutor& pool, int n) {
  if (n < 2) return n;
  Future<long> a = pool.submit([&pool, n] { return fib(pool, n - 1); });
  Future<long> b = pool.submit([&pool, n] { return fib(pool, n - 2); });
  return b.result() + a.result();  // waits in the "wrong" order on purpose
}

long serial_fib(int n) {
  return n < 2 ? n : serial_fib(n - 1) + serial_fib(n - 2);
}

class NestedWait : public ::testing::TestWithParam<int> {};

TEST_P(NestedWait, RecursiveFibonacciCompletes) {
  concur_test::Watchdog watchdog("nested fibonacci", std::chrono::seconds(120));
  ThreadPoolExecutor pool(GetParam());
  static constexpr int n = concur_test::under_sanitizer ? 14 : 20;
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(pool.submit([&pool] { return fib(pool, n); }).result(), serial_fib(n));
  }
}

TEST_P(NestedWait, WaitAndAsCompletedInsideTasks) {
  concur_test::Watchdog watchdog("nested wait", std::chrono::seconds(120));
  ThreadPoolExecutor pool(GetParam());
  auto parent = [&pool](int width) {
    std::vector<Future<int>> children;
    for (int i = 0; i < width; ++i) children.push_back(pool.submit([i] { return i; }));
    auto [done, not_done] = concur::wait(children);
    int sum = 0;
    for (auto& f : done) sum += f.result();
    int again = 0;
    for (auto& f : concur::as_completed(children)) again += f.result();
    return not_done.empty() && sum == again ? sum : -1;
  };
  std::vector<Future<int>> parents;
  for (int i = 0; i < 8; ++i) parents.push_back(pool.submit(parent, 20));
  for (auto& f : parents) EXPECT_EQ(f.result(), 190);
}

TEST_P(NestedWait, ManyIndependentTrees) {
  concur_test::Watchdog watchdog("nested trees", std::chrono::seconds(120));
  ThreadPoolExecutor pool(GetParam());
  std::vector<Future<long>> roots;
  for (int i = 0; i < 6; ++i) roots.push_back(pool.submit([&pool] { return fib(pool, 12); }));
  for (auto& f : roots) EXPECT_EQ(f.result(), 144);
}

// A result that counts its live copies.
struct Counted {
  static inline std::atomic<int> live{0};
  Counted() { live.fetch_add(1); }
  Counted(const Counted&) { live.fetch_add(1); }
  Counted(Counted&&) noexcept { live.fetch_add(1); }
  ~Counted() { live.fetch_sub(1); }
};

// A task that submits a child, waits for it and drops its Future leaves nothing of the child
// behind: its state (the result with it) is freed at once, not held by a queue until some
// worker pops the finished task. (It once was held, so a fork-join program kept all of its
// tasks alive until the end, and every one past the deque's capacity went through the shared
// queue.)
TEST_P(NestedWait, AwaitedChildrenAreFreedAtOnce) {
  ThreadPoolExecutor pool(GetParam());
  const int before = Counted::live.load();
  const int most = pool.submit([&pool] {
                         int most_alive = 0;
                         for (int i = 0; i < 5000; ++i) {
                           pool.submit([] { return Counted(); }).result();
                           most_alive = std::max(most_alive, Counted::live.load());
                         }
                         return most_alive;
                       })
                       .result();
  // Each child's result lives until its Future is dropped, and a thief that ran one may hold
  // it a moment longer, until it drops the queue's reference: at most one per worker.
  EXPECT_LE(most - before, GetParam());
  pool.shutdown();  // every worker has let go of every task
  EXPECT_EQ(Counted::live.load(), before);
}

INSTANTIATE_TEST_SUITE_P(Workers, NestedWait, ::testing::Values(1, 2, 4));

// A task that waits with a timeout for a sibling that is stuck queued behind it still gets it
// run (the waiting thread runs it), so the timeout does not pass.
TEST(ThreadPoolExecutor, TimedNestedWaitRunsTheChild) {
  ThreadPoolExecutor pool(1);
  Future<int> outer = pool.submit([&pool] {
    Future<int> inner = pool.submit([] { return 9; });
    return inner.result(10s);
  });
  EXPECT_EQ(outer.result(concur_test::generous), 9);
}

// --- many submitters: nothing lost, nothing run twice ----------------------------------------

// Submits `per_thread` tasks from each of `threads` threads to a pool of `workers` and checks
// that every task ran exactly once and every Future holds its own result. Tasks submitted from
// outside the pool are queued in shards (one per worker, at most 8, a submitting thread's own),
// so more submitting threads than shards puts several threads on each shard.
void many_submitters_checksum(int workers, int threads, long per_thread) {
  ThreadPoolExecutor pool(workers);
  std::atomic<long> ran_sum{0};
  std::vector<long> result_sums(static_cast<std::size_t>(threads), 0);
  {
    std::vector<std::thread> submitters;
    for (int t = 0; t < threads; ++t) {
      submitters.emplace_back([&, t] {
        std::vector<Future<long>> futures;
        futures.reserve(static_cast<std::size_t>(per_thread));
        for (long i = 0; i < per_thread; ++i) {
          const long value = t * per_thread + i;
          futures.push_back(pool.submit([&ran_sum, value] {
            ran_sum.fetch_add(value, std::memory_order_relaxed);
            return value;
          }));
        }
        for (auto& f : futures) result_sums[static_cast<std::size_t>(t)] += f.result();
      });
    }
    for (auto& s : submitters) s.join();
  }
  const long n = threads * per_thread;
  const long expected = n * (n - 1) / 2;
  EXPECT_EQ(ran_sum.load(), expected) << "a task was lost or ran twice";
  EXPECT_EQ(std::accumulate(result_sums.begin(), result_sums.end(), 0L), expected);
}

TEST(ThreadPoolExecutor, ManySubmittersChecksum) {
  many_submitters_checksum(3, 4, scaled(20000));
}

TEST(ThreadPoolExecutor, MoreSubmittersThanShardsChecksum) {
  many_submitters_checksum(8, 12, scaled(5000));
}

// --- wait and as_completed -------------------------------------------------------------------

TEST(Wait, AllCompletedFirstCompletedAndTimeout) {
  ThreadPoolExecutor pool(2);
  Event go;
  Future<int> quick = pool.submit([] { return 1; });
  Future<int> slow = pool.submit([&] {
    go.wait();
    return 2;
  });
  auto first = concur::wait(std::vector{quick, slow}, ReturnWhen::first_completed);
  ASSERT_EQ(first.done.size(), 1u);
  EXPECT_EQ(first.done[0], quick);
  ASSERT_EQ(first.not_done.size(), 1u);
  EXPECT_EQ(first.not_done[0], slow);

  auto timed = concur::wait(std::vector{quick, slow}, 20ms);
  EXPECT_EQ(timed.done.size(), 1u);
  EXPECT_EQ(timed.not_done.size(), 1u);

  go.set();
  auto all = concur::wait(std::vector{quick, slow, quick});  // duplicates count once
  EXPECT_EQ(all.done.size(), 2u);
  EXPECT_TRUE(all.not_done.empty());
}

// wait() for all looks at each future once, from the first, waiting at the first that is not
// done (for the last one first); at the deadline it stops waiting and sorts the rest by a look.
// Each list: done ones before, between and after unfinished ones, with and without repeats (the
// two ways in: a list that is waited for as given, and its de-duplicated copy).
TEST(Wait, AllCompletedSortsEveryFutureOnceInOrder) {
  ThreadPoolExecutor pool(2);
  Event go;
  Future<int> slow = pool.submit([&] {
    go.wait();
    return -1;
  });
  std::vector<Future<int>> quick;
  for (int i = 0; i < 300; ++i) quick.push_back(pool.submit([i] { return i; }));
  for (Future<int>& f : quick) f.result();
  for (const bool repeats : {false, true}) {
    std::vector<Future<int>> list(quick.begin(), quick.begin() + 100);
    list.push_back(slow);
    list.insert(list.end(), quick.begin() + 100, quick.end());
    if (repeats) {
      list.push_back(slow);
      list.push_back(quick[7]);
      list.insert(list.begin(), quick[250]);
    }
    std::vector<Future<int>> expected_done;
    std::set<const void*> seen;
    for (const Future<int>& f : list) {
      if (f != slow && seen.insert(concur::detail::FutureAccess::state(f)).second) {
        expected_done.push_back(f);
      }
    }
    EXPECT_EQ(concur::detail::without_repeats(list), !repeats);
    auto timed = concur::wait(list, 30ms);
    EXPECT_EQ(timed.done, expected_done) << "repeats " << repeats;
    EXPECT_EQ(timed.not_done, std::vector<Future<int>>{slow}) << "repeats " << repeats;
    // The last is unfinished: the wait for it times out, and the rest are sorted by a look.
    std::vector<Future<int>> slow_last(quick.begin(), quick.begin() + 50);
    slow_last.push_back(slow);
    auto last = concur::wait(slow_last, 10ms);
    EXPECT_EQ(last.done.size(), 50u);
    EXPECT_EQ(last.not_done, std::vector<Future<int>>{slow});
  }
  // Released meanwhile: the wait for the one in the middle (the last is done) sees it finish.
  std::vector<Future<int>> list(quick.begin(), quick.begin() + 10);
  list.push_back(slow);
  list.push_back(quick.back());
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    go.set();
  });
  auto all = concur::wait(list);
  releaser.join();
  EXPECT_EQ(all.done, list);
  EXPECT_TRUE(all.not_done.empty());
}

TEST(Wait, FirstException) {
  ThreadPoolExecutor pool(2);
  Event go;
  Future<int> fails = pool.submit([]() -> int { throw std::runtime_error("x"); });
  Future<int> slow = pool.submit([&] {
    go.wait();
    return 2;
  });
  auto result = concur::wait(std::vector{slow, fails}, ReturnWhen::first_exception);
  ASSERT_EQ(result.done.size(), 1u);
  EXPECT_EQ(result.done[0], fails);
  go.set();
  auto none_fail = concur::wait(std::vector{slow}, ReturnWhen::first_exception);
  EXPECT_EQ(none_fail.done.size(), 1u) << "no exception: returns when all are done";
}

// wait() and as_completed() return each future once. Lists of futures whose states lie in a few
// increasing runs of addresses skip the table (known_without_repeats); this checks the answer
// against a std::set for lists of every shape: sorted, reversed, shuffled, few and many runs,
// repeats next to each other and far apart, empty.
TEST(Wait, EachFutureOnceWhateverTheOrder) {
  ThreadPoolExecutor pool(2);
  std::vector<Future<int>> made;
  for (int i = 0; i < 40; ++i) made.push_back(pool.submit([i] { return i; }));
  auto by_address = made;
  std::sort(by_address.begin(), by_address.end(), [](const Future<int>& a, const Future<int>& b) {
    return concur::detail::FutureAccess::state(a) < concur::detail::FutureAccess::state(b);
  });
  std::mt19937 random(20261203);
  const int trials = static_cast<int>(scaled(3000));
  int fast = 0;  // lists of two or more that took the path without a table
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<Future<int>> list;
    const std::size_t length = random() % 48;
    const std::size_t runs = 1 + random() % 12;
    for (std::size_t i = 0; i < length; ++i) {
      // Runs of increasing addresses; a few draws repeat an earlier pick.
      const std::size_t run = i * runs / std::max<std::size_t>(length, 1);
      const std::size_t pick = (run * 7 + i * 3 + (random() % 4 == 0 ? random() : 0)) % 40;
      list.push_back(trial % 3 == 0 ? made[random() % 40] : by_address[pick]);
    }
    if (trial % 5 == 0) std::reverse(list.begin(), list.end());
    std::vector<Future<int>> expected;
    std::set<const void*> seen;
    for (const Future<int>& f : list) {
      if (seen.insert(concur::detail::FutureAccess::state(f)).second) expected.push_back(f);
    }
    if (seen.size() != list.size()) {
      EXPECT_FALSE(concur::detail::known_without_repeats(list))
          << "a list with repeats called free of them, trial " << trial;
    } else if (list.size() > 1 && concur::detail::known_without_repeats(list)) {
      ++fast;
    }
    auto result = concur::wait(list);
    EXPECT_TRUE(result.not_done.empty());
    ASSERT_EQ(result.done, expected) << "trial " << trial;
    // The two other ways, each on its own, whichever wait() took.
    EXPECT_EQ(concur::detail::unique_by_table(list), expected) << "trial " << trial;
    EXPECT_EQ(concur::detail::unique_by_granules(list, 64), expected) << "trial " << trial;
    std::vector<Future<int>> yielded;
    for (Future<int>& f : concur::as_completed(list)) yielded.push_back(f);
    std::set<const void*> yielded_states;
    for (const Future<int>& f : yielded) {
      yielded_states.insert(concur::detail::FutureAccess::state(f));
    }
    EXPECT_EQ(yielded.size(), expected.size());
    EXPECT_EQ(yielded_states, seen);
  }
  EXPECT_GT(fast, trials / 50) << "the trials hardly reach the path without a table";
  // The shapes the fast path takes: sorted, and a few runs without repeats.
  EXPECT_TRUE(concur::detail::known_without_repeats(by_address));
  std::vector<Future<int>> two_runs(by_address.begin() + 20, by_address.end());
  two_runs.insert(two_runs.end(), by_address.begin(), by_address.begin() + 20);
  EXPECT_TRUE(concur::detail::known_without_repeats(two_runs));
  // Two runs over the same range of addresses (every other state, then the rest): merged.
  std::vector<Future<int>> interleaved;
  for (int i = 0; i < 40; i += 2) interleaved.push_back(by_address[static_cast<std::size_t>(i)]);
  for (int i = 1; i < 40; i += 2) interleaved.push_back(by_address[static_cast<std::size_t>(i)]);
  EXPECT_TRUE(concur::detail::known_without_repeats(interleaved));
  interleaved.push_back(by_address[38]);  // within the last run's range: a repeat of the first
  EXPECT_FALSE(concur::detail::known_without_repeats(interleaved));
  two_runs.push_back(by_address[5]);  // a repeat across runs
  EXPECT_FALSE(concur::detail::known_without_repeats(two_runs));
  std::vector<Future<int>> reversed(by_address.rbegin(), by_address.rend());
  EXPECT_FALSE(concur::detail::known_without_repeats(reversed)) << "40 runs: left to the table";
  EXPECT_EQ(concur::wait(reversed).done.size(), 40u);
  std::vector<Future<int>> with_invalid = by_address;
  with_invalid.emplace_back();
  EXPECT_THROW((void)concur::wait(with_invalid), concur::UsageError);
}

TEST(Wait, CancelledCountsAsDone) {
  ThreadPoolExecutor pool(1);
  Event started, go;
  Future<void> blocker = pool.submit([&] {
    started.set();
    go.wait();
  });
  started.wait();
  Future<void> queued = pool.submit([] {});
  std::thread canceller([&] {
    std::this_thread::sleep_for(20ms);
    queued.cancel();
  });
  auto result = concur::wait(std::vector{queued}, concur_test::generous);
  canceller.join();
  EXPECT_EQ(result.done.size(), 1u);
  EXPECT_TRUE(result.done[0].cancelled());
  go.set();
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  ThreadPoolExecutor pool(3);
  Event go[3];
  std::vector<Future<int>> futures;
  for (int i = 0; i < 3; ++i) {
    futures.push_back(pool.submit([&go, i] {
      go[i].wait();
      return i;
    }));
  }
  std::thread releaser([&] {
    for (int i : {2, 0, 1}) {
      go[i].set();
      std::this_thread::sleep_for(20ms);
    }
  });
  std::vector<int> order;
  for (Future<int>& f : concur::as_completed(futures)) order.push_back(f.result());
  releaser.join();
  EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
}

TEST(AsCompleted, DoneFirstDuplicatesOnceAndTimeout) {
  ThreadPoolExecutor pool(1);
  Future<int> done = pool.submit([] { return 1; });
  done.result();
  Event go;
  Future<int> stuck = pool.submit([&] {
    go.wait();
    return 2;
  });
  std::vector<int> seen;
  try {
    for (Future<int>& f : concur::as_completed(std::vector{done, done, stuck}, 30ms)) {
      seen.push_back(f.result());
    }
    ADD_FAILURE() << "no TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "1 (of 2) futures unfinished");
  }
  EXPECT_EQ(seen, (std::vector<int>{1}));
  go.set();
}

// The GranuleSet's way on states made by several threads (each thread's heap lies elsewhere in
// the address space, so the states fall in many blocks far apart), against a std::set; and its
// refusal when the states need more blocks than it may take.
TEST(Wait, GranulesSpanManyBlocksAndKeepToTheirBudget) {
  ThreadPoolExecutor pool(2);
  std::vector<std::vector<Future<int>>> made(4);
  {
    std::vector<std::thread> makers;
    for (int t = 0; t < 4; ++t) {
      makers.emplace_back([&, t] {
        for (int i = 0; i < 20000; ++i)
          made[static_cast<std::size_t>(t)].push_back(pool.submit([i] { return i; }));
      });
    }
    for (auto& maker : makers) maker.join();
  }
  std::vector<Future<int>> all;
  for (auto& some : made) all.insert(all.end(), some.begin(), some.end());
  std::mt19937 random(20261203);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<Future<int>> list;
    for (int i = 0; i < 5000; ++i) list.push_back(all[random() % all.size()]);
    std::vector<Future<int>> expected;
    std::set<const void*> seen;
    std::set<std::uintptr_t> blocks;
    for (const Future<int>& f : list) {
      const void* state = concur::detail::FutureAccess::state(f);
      if (seen.insert(state).second) expected.push_back(f);
      blocks.insert(reinterpret_cast<std::uintptr_t>(state) >> 16);
    }
    ASSERT_GT(blocks.size(), 64U) << "the states lie in too few blocks to test the set's table";
    EXPECT_EQ(concur::detail::unique_by_granules(list, blocks.size()), expected)
        << "trial " << trial;
    EXPECT_FALSE(concur::detail::unique_by_granules(list, blocks.size() - 1).has_value())
        << "trial " << trial;
    EXPECT_EQ(concur::wait(list).done, expected) << "trial " << trial;
  }
}

// The GranuleSet's table grows only for a block it adds: a refusal at the budget leaves it as it
// was, and the blocks it has still answer.
TEST(Wait, GranuleSetRefusesWithoutGrowing) {
  using Insert = concur::detail::GranuleSet::Insert;
  concur::detail::GranuleSet set(32);
  for (std::uintptr_t block = 1; block <= 32; ++block) {
    EXPECT_EQ(set.insert(block << 16), Insert::added) << block;
  }
  EXPECT_EQ(set.table_slots(), 64u);  // 32 blocks: half full
  EXPECT_EQ(set.insert(std::uintptr_t{33} << 16), Insert::over_budget);
  EXPECT_EQ(set.table_slots(), 64u);
  EXPECT_EQ(set.insert((std::uintptr_t{5} << 16) + 16), Insert::added);
  EXPECT_EQ(set.insert((std::uintptr_t{5} << 16) + 16), Insert::present);
  EXPECT_EQ(set.insert(std::uintptr_t{32} << 16), Insert::present);
}

// An invalid handle is refused on each way to de-duplicate, which check it as they go.
TEST(Wait, EveryWayRefusesAnInvalidHandle) {
  ThreadPoolExecutor pool(1);
  std::vector<Future<int>> list;
  for (int i = 0; i < 100; ++i) list.push_back(pool.submit([i] { return i; }));
  list.emplace_back();
  EXPECT_FALSE(concur::detail::known_without_repeats(list));
  EXPECT_THROW((void)concur::detail::unique_by_granules(list, 1000), concur::UsageError);
  EXPECT_THROW((void)concur::detail::unique_by_table(list), concur::UsageError);
  std::vector<Future<int>> first_invalid(1);
  first_invalid.insert(first_invalid.end(), list.begin(), list.end() - 1);
  EXPECT_THROW((void)concur::detail::unique_by_granules(first_invalid, 1000), concur::UsageError);
  EXPECT_THROW((void)concur::wait(first_invalid), concur::UsageError);
  EXPECT_THROW((void)concur::as_completed(first_invalid), concur::UsageError);
}

// --- the worker's deque (Chase-Lev): every task taken exactly once ----------------------------

TEST(LocalDeque, OwnerAndThievesTakeEachTaskOnce) {
  const long n = scaled(200000);
  std::vector<std::unique_ptr<concur::detail::FutureState<int>>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    tasks.push_back(std::make_unique<concur::detail::FutureState<int>>());
  std::vector<std::atomic<int>> taken(static_cast<std::size_t>(n));
  auto index_of = [&](concur::detail::StateBase* task) {
    // The tasks are in one vector: find the index by pointer (they were made in order).
    for (long lo = 0, hi = n - 1; lo <= hi;) {
      const long mid = (lo + hi) / 2;
      auto* at =
          static_cast<concur::detail::StateBase*>(tasks[static_cast<std::size_t>(mid)].get());
      if (at == task) return mid;
      (std::less<>{}(at, task) ? lo : hi) = (std::less<>{}(at, task) ? mid + 1 : mid - 1);
    }
    return -1L;
  };
  std::sort(tasks.begin(), tasks.end(), [](const auto& a, const auto& b) {
    return std::less<>{}(static_cast<concur::detail::StateBase*>(a.get()),
                         static_cast<concur::detail::StateBase*>(b.get()));
  });
  concur::detail::LocalDeque deque;
  std::atomic<bool> done{false};
  std::atomic<long> stolen{0};
  auto take = [&](concur::detail::StateBase* task) {
    const long i = index_of(task);
    ASSERT_GE(i, 0);
    taken[static_cast<std::size_t>(i)].fetch_add(1);
  };
  std::vector<std::thread> thieves;
  for (int t = 0; t < 2; ++t) {
    thieves.emplace_back([&] {
      while (!done.load() || deque.maybe_nonempty()) {
        if (auto* task = deque.steal()) {
          take(task);
          stolen.fetch_add(1);
        }
      }
    });
  }
  long pushed = 0;
  concur_test::Random random(5);
  auto task_at = [&](long i) {
    return static_cast<concur::detail::StateBase*>(tasks[static_cast<std::size_t>(i)].get());
  };
  auto push_one = [&] {
    if (n - pushed >= 4 && random.below(4) == 0) {  // a batch, as a worker keeps one
      concur::detail::StateBase* batch[4] = {task_at(pushed), task_at(pushed + 1),
                                             task_at(pushed + 2), task_at(pushed + 3)};
      const int added = deque.push_newest_last(batch, 4);
      // Those that did not fit are the first of the batch: in one by one, making room.
      for (int k = 0; k < 4 - added; ++k) {
        while (!deque.push(batch[k])) {
          if (auto* own = deque.pop()) take(own);
        }
      }
      pushed += 4;
      return;
    }
    if (deque.push(task_at(pushed))) {
      ++pushed;
    } else if (auto* own = deque.pop()) {
      take(own);  // full: make room
    }
  };
  const long last_batch = 64;  // left to the thieves at the end
  while (pushed < n - last_batch) {
    const long burst = 1 + static_cast<long>(random.below(40));
    for (long k = 0; k < burst && pushed < n - last_batch; ++k) push_one();
    for (long k = static_cast<long>(random.below(30)); k > 0; --k) {
      if (auto* own = deque.pop()) take(own);
    }
  }
  // The thieves may not have been scheduled yet (a slow sanitizer build, a busy machine): the
  // last tasks are left to them until one has stolen something, so the race always runs.
  while (pushed < n) push_one();
  ASSERT_TRUE(eventually([&] { return stolen.load() > 0; }));
  while (auto* own = deque.pop()) take(own);
  done = true;
  for (auto& thief : thieves) thief.join();
  long total = 0;
  for (long i = 0; i < n; ++i) {
    const int count = taken[static_cast<std::size_t>(i)].load();
    ASSERT_EQ(count, 1) << "task " << i << " taken " << count << " times";
    total += count;
  }
  EXPECT_EQ(total, n);
  EXPECT_GT(stolen.load(), 0) << "the thieves never got one (the test did not race)";
}

TEST(LocalDeque, ABatchIsPoppedOldestFirstAndFillsTheRing) {
  constexpr long capacity = concur::detail::LocalDeque::capacity;
  std::vector<concur::detail::FutureState<int>> tasks(static_cast<std::size_t>(capacity + 8));
  auto at = [&](long i) {
    return static_cast<concur::detail::StateBase*>(&tasks[static_cast<std::size_t>(i)]);
  };
  concur::detail::LocalDeque deque;
  concur::detail::StateBase* batch[3] = {at(0), at(1), at(2)};
  ASSERT_EQ(deque.push_newest_last(batch, 3), 3);
  EXPECT_EQ(deque.steal(), at(2)) << "a thief takes from the other end than the owner";
  EXPECT_EQ(deque.pop(), at(0));
  EXPECT_EQ(deque.pop(), at(1));
  EXPECT_EQ(deque.pop(), nullptr);
  // Two places left: only the last two of a batch of five go in, in the same order as ever.
  for (long i = 0; i < capacity - 2; ++i) ASSERT_TRUE(deque.push(at(i)));
  concur::detail::StateBase* five[5] = {at(capacity), at(capacity + 1), at(capacity + 2),
                                        at(capacity + 3), at(capacity + 4)};
  ASSERT_EQ(deque.push_newest_last(five, 5), 2);
  EXPECT_EQ(deque.pop(), at(capacity + 3));
  EXPECT_EQ(deque.pop(), at(capacity + 4));
  EXPECT_EQ(deque.pop(), at(capacity - 3));
  EXPECT_EQ(deque.push_newest_last(five, 0), 0);
}

// --- Promise (the producer side the process pools use) ---------------------------------------

TEST(Promise, SetResultSetExceptionAndInvalidState) {
  concur::detail::Promise<int> promise;
  Future<int> future = promise.future();
  EXPECT_FALSE(future.done());
  ASSERT_TRUE(promise.set_running_or_notify_cancel());
  EXPECT_TRUE(future.running());
  promise.set_result(5);
  EXPECT_EQ(future.result(), 5);
  EXPECT_THROW(promise.set_result(6), concur::InvalidStateError);
  EXPECT_THROW(promise.set_exception(std::make_exception_ptr(std::runtime_error("x"))),
               concur::InvalidStateError);
  EXPECT_EQ(future.result(), 5);
}

TEST(Promise, CancelledBeforeItRuns) {
  concur::detail::Promise<int> promise;
  Future<int> future = promise.future();
  EXPECT_TRUE(future.cancel());
  EXPECT_FALSE(promise.set_running_or_notify_cancel());
  EXPECT_THROW(promise.set_result(1), concur::InvalidStateError);
}

TEST(Promise, DroppedPromiseBreaksItsFuture) {
  Future<int> future;
  {
    concur::detail::Promise<int> promise;
    future = promise.future();
  }
  EXPECT_THROW((void)future.result(), concur::BrokenExecutor);
}

}  // namespace
