// Tests of concur/queue.hpp: Python's queue semantics for Queue (on the ring when bounded, on
// the locked core when unbounded), LifoQueue and PriorityQueue; move-only and throwing items;
// task accounting; shutdown; and stress with checksums.

#include "concur/queue.hpp"

#include "concur/thread.hpp"

#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <optional>
#include <ranges>
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
using concur::Full;
using concur::LifoQueue;
using concur::PriorityQueue;
using concur::Queue;
using concur::ShutDown;
using concur::UsageError;
using concur_test::eventually;
using concur_test::scaled;
using steady = std::chrono::steady_clock;

// ---- semantics shared by every queue, each built bounded and unbounded ---------------------

template <class Q>
struct QueueKind {
  using type = Q;
};

template <class Kind>
class AnyQueue : public ::testing::Test {
 protected:
  using Q = typename Kind::type;
};

using QueueKinds = ::testing::Types<QueueKind<Queue<int>>, QueueKind<LifoQueue<int>>,
                                    QueueKind<PriorityQueue<int>>>;
TYPED_TEST_SUITE(AnyQueue, QueueKinds);

TYPED_TEST(AnyQueue, MaxsizeZeroOrLessIsUnbounded) {
  typename TestFixture::Q unbounded;
  typename TestFixture::Q negative(-3);
  EXPECT_EQ(unbounded.maxsize(), 0);
  EXPECT_EQ(negative.maxsize(), -3);
  for (int i = 0; i < 5000; ++i) {
    unbounded.put_nowait(i);
    negative.put(i, false);
  }
  EXPECT_FALSE(unbounded.full());
  EXPECT_EQ(unbounded.qsize(), 5000u);
  EXPECT_EQ(negative.qsize(), 5000u);
}

TYPED_TEST(AnyQueue, FullQueueRefusesNonBlockingAndTimedPuts) {
  typename TestFixture::Q q(2);
  EXPECT_TRUE(q.empty());
  q.put(1);
  q.put(2, true);
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_THROW(q.put(3, false), Full);
  EXPECT_THROW(q.put_nowait(3), Full);
  const auto start = steady::now();
  EXPECT_THROW(q.put(3, 30ms), Full);
  EXPECT_GE(steady::now() - start, 30ms);
  EXPECT_THROW(q.put(3, -1ms), std::invalid_argument);
  EXPECT_FALSE(q.try_put(3));
  EXPECT_FALSE(q.try_put(3, 5ms));
  EXPECT_EQ(q.qsize(), 2u);
}

TYPED_TEST(AnyQueue, EmptyQueueRefusesNonBlockingAndTimedGets) {
  typename TestFixture::Q q(4);
  EXPECT_THROW((void)q.get(false), Empty);
  EXPECT_THROW((void)q.get_nowait(), Empty);
  const auto start = steady::now();
  EXPECT_THROW((void)q.get(30ms), Empty);
  EXPECT_GE(steady::now() - start, 30ms);
  EXPECT_THROW((void)q.get(-1s), std::invalid_argument);
  EXPECT_FALSE(q.try_get().has_value());
  EXPECT_FALSE(q.try_get(5ms).has_value());
  q.put(7);
  EXPECT_EQ(q.get(0s), 7);
}

TYPED_TEST(AnyQueue, BlockedGetWakesOnPutAndBlockedPutOnGet) {
  typename TestFixture::Q q(1);
  std::atomic<int> got{-1};
  std::thread getter([&] { got = q.get(); });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(got.load(), -1);
  q.put(5);
  getter.join();
  EXPECT_EQ(got.load(), 5);

  q.put(1);
  std::atomic<bool> put_done{false};
  std::thread putter([&] {
    q.put(2);
    put_done = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(put_done);
  EXPECT_EQ(q.get(), 1);
  putter.join();
  EXPECT_TRUE(put_done);
  EXPECT_EQ(q.get(), 2);
}

TYPED_TEST(AnyQueue, TaskDoneAndJoin) {
  typename TestFixture::Q q(8);
  EXPECT_THROW(q.task_done(), UsageError);
  q.join();  // nothing put: returns at once
  q.put(1);
  q.put(2);
  EXPECT_FALSE(q.join(20ms));
  std::atomic<int> processed{0};
  std::thread worker([&] {
    for (int i = 0; i < 2; ++i) {
      (void)q.get();
      std::this_thread::sleep_for(10ms);
      ++processed;
      q.task_done();
    }
  });
  q.join();
  EXPECT_EQ(processed.load(), 2);
  worker.join();
  EXPECT_THROW(q.task_done(), UsageError);
  q.put(3);
  q.task_done();  // Python allows marking an item done before it is got
  EXPECT_THROW(q.task_done(), UsageError);
}

TYPED_TEST(AnyQueue, ShutdownRefusesPutsAndDrainsGets) {
  typename TestFixture::Q q(8);
  q.put(1);
  q.put(2);
  EXPECT_FALSE(q.is_shutdown());
  q.shutdown();
  EXPECT_TRUE(q.is_shutdown());
  EXPECT_THROW(q.put(3), ShutDown);
  EXPECT_THROW(q.put_nowait(3), ShutDown);
  EXPECT_THROW((void)q.try_put(3), ShutDown);
  int sum = q.get();
  sum += q.get(false);
  EXPECT_EQ(sum, 3);
  EXPECT_THROW((void)q.get(), ShutDown);
  EXPECT_THROW((void)q.get(false), ShutDown);
  EXPECT_THROW((void)q.try_get(), ShutDown);
  EXPECT_THROW((void)q.get(1s), ShutDown);
}

TYPED_TEST(AnyQueue, ImmediateShutdownDropsItemsAndReleasesJoin) {
  typename TestFixture::Q q(8);
  for (int i = 0; i < 5; ++i) q.put(i);
  (void)q.get();  // got but not done: join must still wait for it
  std::atomic<bool> joined{false};
  std::thread joiner([&] {
    q.join();
    joined = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(joined);
  q.shutdown(true);
  EXPECT_EQ(q.qsize(), 0u);
  EXPECT_THROW((void)q.get(false), ShutDown);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(joined);  // one item is still unfinished
  q.task_done();
  joiner.join();
  EXPECT_TRUE(joined);
}

TYPED_TEST(AnyQueue, ShutdownWakesEveryBlockedCaller) {
  typename TestFixture::Q full(1);
  typename TestFixture::Q empty(1);
  full.put(0);
  std::atomic<int> shut_down{0};
  std::vector<std::thread> blocked;
  for (int i = 0; i < 3; ++i) {
    blocked.emplace_back([&] {
      try {
        full.put(1);
      } catch (const ShutDown&) {
        ++shut_down;
      }
    });
    blocked.emplace_back([&] {
      try {
        (void)empty.get();
      } catch (const ShutDown&) {
        ++shut_down;
      }
    });
  }
  std::this_thread::sleep_for(30ms);
  full.shutdown();
  empty.shutdown();
  for (auto& t : blocked) t.join();
  EXPECT_EQ(shut_down.load(), 6);
  EXPECT_EQ(full.get(), 0);  // the item put before the shutdown is still there
}

// Issue 12, item 20: consuming until shutdown without exceptions. next() returns what get()
// would, and an empty optional where get() would throw ShutDown.
TYPED_TEST(AnyQueue, NextReturnsItemsThenEmptyOnceShutDownAndDrained) {
  for (long maxsize : {0L, 8L}) {
    typename TestFixture::Q q(maxsize);
    for (int i = 1; i <= 5; ++i) q.put(i);
    q.shutdown();
    int sum = 0;
    int count = 0;
    while (auto item = q.next()) {
      sum += *item;
      ++count;
      q.task_done();
    }
    EXPECT_EQ(count, 5);
    EXPECT_EQ(sum, 15);
    EXPECT_FALSE(q.next().has_value());  // and again: the end is permanent
    EXPECT_TRUE(q.join(1s));
  }
}

TYPED_TEST(AnyQueue, NextBlockedOnAnEmptyQueueEndsAtShutdown) {
  concur_test::Watchdog watchdog("next() blocked across shutdown()", 60s);
  for (bool immediate : {false, true}) {
    typename TestFixture::Q q(4);
    std::atomic<std::uint64_t> consumer_id{0};
    std::atomic<int> got{0};
    std::atomic<bool> ended{false};
    std::thread consumer([&] {
      consumer_id = concur::get_native_id();
      while (auto item = q.next()) got += *item;
      ended = true;
    });
    q.put(7);
    // The consumer takes the item and then sleeps in next() on the empty queue.
    ASSERT_TRUE(eventually([&] { return got.load() == 7 && consumer_id.load() != 0; }));
    ASSERT_TRUE(eventually([&] { return concur_test::thread_asleep(consumer_id.load()); }));
    EXPECT_FALSE(ended.load());
    q.shutdown(immediate);
    consumer.join();
    EXPECT_TRUE(ended.load());
    EXPECT_EQ(got.load(), 7);
  }
}

TYPED_TEST(AnyQueue, NextAfterImmediateShutdownFindsNothing) {
  typename TestFixture::Q q(8);
  for (int i = 0; i < 5; ++i) q.put(i);
  q.shutdown(true);  // drops the five, counting each as done
  EXPECT_FALSE(q.next().has_value());
  EXPECT_TRUE(q.join(1s));
}

TYPED_TEST(AnyQueue, BatchPutAndGet) {
  typename TestFixture::Q q(16);
  std::vector<int> in(10);
  std::iota(in.begin(), in.end(), 0);
  q.put_many(in.begin(), in.end());
  EXPECT_EQ(q.qsize(), 10u);
  std::vector<int> out;
  EXPECT_EQ(q.get_many(std::back_inserter(out), 4), 4u);
  EXPECT_EQ(q.get_many(std::back_inserter(out), 100), 6u);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, in);
  // put_many waits for room; get_many waits for the first item only.
  std::vector<int> many(40, 1);
  std::thread putter([&] { q.put_many(many.begin(), many.end()); });
  int taken = 0;
  while (taken < 40) {
    std::vector<int> batch;
    taken += static_cast<int>(q.get_many(std::back_inserter(batch), 7));
  }
  putter.join();
  EXPECT_EQ(taken, 40);
  q.shutdown();
  std::vector<int> none;
  EXPECT_THROW((void)q.get_many(std::back_inserter(none), 3), ShutDown);
  EXPECT_THROW(q.put_many(in.begin(), in.end()), ShutDown);
}

// ---- order ------------------------------------------------------------------------------------

TEST(Queue, FirstInFirstOut) {
  for (long maxsize : {0L, 3L, 8L}) {
    Queue<int> q(maxsize);
    q.put(3);
    q.put(1);
    q.put(2);
    EXPECT_EQ(q.get(), 3);
    EXPECT_EQ(q.get(), 1);
    EXPECT_EQ(q.get(), 2);
  }
}

TEST(LifoQueue, LastInFirstOut) {
  LifoQueue<std::string> q;
  q.put("a");
  q.put(std::string("b"));
  q.put("c");
  EXPECT_EQ(q.get(), "c");
  EXPECT_EQ(q.get(), "b");
  EXPECT_EQ(q.get(), "a");
}

TEST(PriorityQueue, SmallestFirstOrByTheGivenOrder) {
  PriorityQueue<int> q;
  for (int v : {5, 1, 4, 2, 3}) q.put(v);
  for (int expected = 1; expected <= 5; ++expected) EXPECT_EQ(q.get(), expected);
  PriorityQueue<int, std::greater<int>> largest;
  for (int v : {5, 1, 4}) largest.put(v);
  EXPECT_EQ(largest.get(), 5);
  // Python's idiom: (priority, payload) tuples.
  PriorityQueue<std::pair<int, std::string>> jobs;
  jobs.put(std::pair{2, std::string("write")});
  jobs.put(std::pair{1, std::string("read")});
  EXPECT_EQ(jobs.get().second, "read");
}

// ---- items built from braces and in place ----------------------------------------------------

using IntLong = std::pair<int, long>;

// An item whose constructor is explicit: braces cannot build it, emplace() can.
struct Explicit {
  explicit Explicit(int a, std::string b) : number(a), text(std::move(b)) {}
  int number;
  std::string text;
  bool operator<(const Explicit& other) const { return number < other.number; }
};

// Issue 12, item 17: put({1, 2L}) did not compile (put's template parameter cannot be deduced
// from braces); every member of the put family now defaults it to T. emplace() builds an item
// from constructor arguments.
template <class Q>
void expect_braced_puts_and_emplace(Q& q) {
  q.put({1, 2L});
  q.put({2, 3L}, true);
  q.put({3, 4L}, false);
  q.put({4, 5L}, 1s);
  q.put_nowait({5, 6L});
  EXPECT_TRUE(q.try_put({6, 7L}));
  EXPECT_TRUE(q.try_put({7, 8L}, 1s));
  q.emplace(8, 9L);
  EXPECT_EQ(q.qsize(), 8u);
  long sum = 0;
  for (int i = 0; i < 8; ++i) {
    const IntLong item = q.get();
    EXPECT_EQ(item.second, item.first + 1L);
    sum += item.first;
  }
  EXPECT_EQ(sum, 36);
  q.shutdown();
  EXPECT_THROW(q.emplace(9, 10L), ShutDown);
}

TEST(Queue, BracedPutsAndEmplaceOnEveryQueue) {
  Queue<IntLong> ring(8);
  expect_braced_puts_and_emplace(ring);
  Queue<IntLong> locked;
  expect_braced_puts_and_emplace(locked);
  LifoQueue<IntLong> lifo;
  expect_braced_puts_and_emplace(lifo);
  PriorityQueue<IntLong> priority;
  expect_braced_puts_and_emplace(priority);
}

TEST(Queue, EmplaceUsesExplicitConstructorsAndBlocksWhileFull) {
  Queue<Explicit> fifo(1);
  fifo.emplace(1, "one");
  std::atomic<bool> put{false};
  std::thread producer([&] {
    fifo.emplace(2, std::string("two"));  // waits for room, as put() does
    put = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(put.load());
  EXPECT_EQ(fifo.get().text, "one");
  producer.join();
  EXPECT_EQ(fifo.get().text, "two");
  PriorityQueue<Explicit> priority;
  priority.emplace(2, "b");
  priority.emplace(1, "a");
  EXPECT_EQ(priority.get().text, "a");
  Queue<std::unique_ptr<int>> pointers(2);
  pointers.emplace(std::make_unique<int>(3));
  pointers.emplace();  // a default-built item
  EXPECT_EQ(*pointers.get(), 3);
  EXPECT_EQ(pointers.get(), nullptr);
}

// ---- drain(): a range over a queue until it is shut down ------------------------------------

static_assert(std::ranges::input_range<decltype(concur::drain(std::declval<Queue<int>&>()))>);
static_assert(std::ranges::view<decltype(concur::drain(std::declval<Queue<int>&>()))>);

// Issue 12, item 20: producers and consumers on every kind of Queue; the consumers use
// for (... : drain(q)) and stop at shutdown, and every item arrives exactly once.
template <class Q>
void expect_drain_delivers_everything(Q& q) {
  concur_test::Watchdog watchdog("drain() with many producers and consumers", 120s);
  constexpr int producers = 3;
  constexpr int consumers = 3;
  const long per_producer = scaled(20000);
  std::atomic<std::int64_t> sum{0};  // 64 bits: n * (n + 1) / 2 overflows a 32-bit long
  std::atomic<long> count{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      std::int64_t local_sum = 0;
      long local_count = 0;
      for (long item : concur::drain(q)) {
        local_sum += item;
        ++local_count;
      }
      sum += local_sum;
      count += local_count;
    });
  }
  std::vector<std::thread> putters;
  for (int p = 0; p < producers; ++p) {
    putters.emplace_back([&, p] {
      for (long i = 0; i < per_producer; ++i) q.put(p * per_producer + i + 1);
    });
  }
  for (auto& t : putters) t.join();
  q.shutdown();
  for (auto& t : threads) t.join();
  const long n = producers * per_producer;
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(sum.load(), std::int64_t{n} * (n + 1) / 2);
}

TEST(Drain, DeliversEveryItemOnceAndEndsAtShutdown) {
  Queue<long> ring(16);
  expect_drain_delivers_everything(ring);
  Queue<long> locked;
  expect_drain_delivers_everything(locked);
  LifoQueue<long> lifo(16);
  expect_drain_delivers_everything(lifo);
  PriorityQueue<long> priority(16);
  expect_drain_delivers_everything(priority);
}

TEST(Drain, MoveOnlyItemsAndTheOrderOfTheQueue) {
  Queue<std::unique_ptr<int>> q(4);
  q.put(std::make_unique<int>(1));
  q.put(std::make_unique<int>(2));
  q.shutdown();
  std::vector<int> seen;
  for (auto& item : concur::drain(q)) {
    std::unique_ptr<int> mine = std::move(item);  // the item is the caller's to take
    seen.push_back(*mine);
  }
  EXPECT_EQ(seen, std::vector<int>({1, 2}));
  PriorityQueue<int> priority;
  for (int v : {3, 1, 2}) priority.put(v);
  priority.shutdown();
  std::vector<int> ordered;
  for (int v : concur::drain(priority)) ordered.push_back(v);
  EXPECT_EQ(ordered, std::vector<int>({1, 2, 3}));
}

TEST(Drain, TheLastItemIsReleasedBeforeWaitingForTheNext) {
  Queue<std::shared_ptr<int>> q(4);
  auto item = std::make_shared<int>(5);
  std::weak_ptr<int> watch = item;
  q.put(std::move(item));
  std::atomic<int> seen{0};
  std::thread consumer([&] {
    for (auto& got : concur::drain(q)) seen += *got;
  });
  // Once the consumer has moved on to wait for the next item, nothing holds the first one.
  EXPECT_TRUE(eventually([&] { return seen.load() == 5 && watch.expired(); }));
  q.shutdown();
  consumer.join();
}

// ---- move-only and throwing items ---------------------------------------------------------------

TEST(Queue, MoveOnlyItemsWorkEverywhere) {
  Queue<std::unique_ptr<int>> ring(4);
  Queue<std::unique_ptr<int>> locked;
  LifoQueue<std::unique_ptr<int>> lifo;
  for (auto* q : {&ring, &locked}) {
    q->put(std::make_unique<int>(7));
    EXPECT_EQ(*q->get(), 7);
  }
  lifo.put(std::make_unique<int>(8));
  EXPECT_EQ(*lifo.get(), 8);
  // A failed try_put leaves the item with the caller.
  Queue<std::unique_ptr<int>> one(1);
  one.put(std::make_unique<int>(1));
  auto item = std::make_unique<int>(2);
  EXPECT_FALSE(one.try_put(std::move(item)));
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(*item, 2);
  EXPECT_EQ(*one.get(), 1);
  EXPECT_TRUE(one.try_put(std::move(item)));
  EXPECT_EQ(item, nullptr);
}

// An item whose copies and moves throw while `failing` is set.
struct Fragile {
  static inline bool failing = false;
  int value = 0;
  explicit Fragile(int v) : value(v) {}
  Fragile(const Fragile& other) : value(other.value) {
    if (failing) throw std::runtime_error("copy failed");
  }
  Fragile(Fragile&& other) noexcept(false) : value(other.value) {
    if (failing) throw std::runtime_error("move failed");
  }
  Fragile& operator=(const Fragile&) = default;
  Fragile& operator=(Fragile&&) = default;
  bool operator<(const Fragile& other) const { return value < other.value; }
};

template <class Q>
void expect_consistent_after_throwing_moves(Q& q) {
  q.put(Fragile(1));
  Fragile::failing = true;
  EXPECT_THROW(q.put(Fragile(2)), std::runtime_error);  // not added
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_THROW((void)q.get(), std::runtime_error);  // stays
  Fragile::failing = false;
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.get().value, 1);
  q.put(Fragile(3));
  EXPECT_EQ(q.get(1s).value, 3);  // nothing deadlocked
}

TEST(Queue, ThrowingMovesLeaveEveryQueueConsistent) {
  Queue<Fragile> fifo(4);
  expect_consistent_after_throwing_moves(fifo);
  LifoQueue<Fragile> lifo(4);
  expect_consistent_after_throwing_moves(lifo);
  PriorityQueue<Fragile> heap(4);
  expect_consistent_after_throwing_moves(heap);
}

// ---- resources ----------------------------------------------------------------------------------

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

TEST(Queue, AnIdleBlockedConsumerUsesNoCpu) {
  for (long maxsize : {0L, 8L}) {
    Queue<int> q(maxsize);
    std::atomic<double> cpu{-1};
    std::thread consumer([&] {
      const double before = thread_cpu_seconds();
      (void)q.get();
      cpu = thread_cpu_seconds() - before;
    });
    std::this_thread::sleep_for(500ms);
    q.put(1);
    consumer.join();
    // It sleeps instead of spinning: a few milliseconds at most, however slow the machine.
    EXPECT_LT(cpu.load(), 0.05) << "maxsize " << maxsize;
  }
}

// ---- stress
// ---------------------------------------------------------------------------------------

// P producers put their own numbered items; C consumers check that nothing is lost or repeated
// (a per-item count) and that each producer's items arrive in order (FIFO per producer).
void producer_consumer_stress(long maxsize, int producers, int consumers, long per_producer) {
  Queue<std::uint64_t> q(maxsize);
  std::vector<std::atomic<std::uint32_t>> seen(static_cast<std::size_t>(producers * per_producer));
  std::atomic<long> taken{0};
  std::atomic<bool> order_ok{true};
  concur_test::Watchdog watchdog("queue stress", std::chrono::seconds(300), [&] {
    return "maxsize=" + std::to_string(maxsize) + " taken=" + std::to_string(taken.load()) +
           " qsize=" + std::to_string(q.qsize());
  });
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (long i = 0; i < per_producer; ++i) {
        const std::uint64_t item =
            (static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint64_t>(i);
        if (i % 3 == 0) {
          while (!q.try_put(item)) std::this_thread::yield();
        } else {
          q.put(item);
        }
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      std::vector<long> last(static_cast<std::size_t>(producers), -1);
      for (;;) {
        std::uint64_t item;
        try {
          item = q.get();
        } catch (const ShutDown&) {
          return;
        }
        const auto p = static_cast<std::size_t>(item >> 32);
        const auto i = static_cast<long>(item & 0xffffffffu);
        if (i <= last[p]) order_ok = false;
        last[p] = i;
        seen[p * static_cast<std::size_t>(per_producer) + static_cast<std::size_t>(i)]++;
        ++taken;
      }
    });
  }
  for (int p = 0; p < producers; ++p) threads[static_cast<std::size_t>(p)].join();
  while (taken.load() < producers * per_producer) std::this_thread::sleep_for(1ms);
  q.shutdown();
  for (std::size_t t = static_cast<std::size_t>(producers); t < threads.size(); ++t) {
    threads[t].join();
  }
  EXPECT_TRUE(order_ok) << "a producer's items arrived out of order";
  long once = 0;
  for (auto& s : seen) once += s.load() == 1 ? 1 : 0;
  EXPECT_EQ(once, producers * per_producer) << "items lost or duplicated";
}

TEST(QueueStress, EveryItemArrivesOnceInProducerOrder) {
  const long total = scaled(1200000, 40);
  for (long maxsize : {1L, 8L, 1024L, 0L}) {
    for (int producers : {1, 2, 4}) {
      for (int consumers : {1, 2, 4}) {
        const long per_producer = std::max<long>(1, total / producers / 12);
        producer_consumer_stress(maxsize, producers, consumers, per_producer);
      }
    }
  }
}

TEST(QueueStress, ShutdownRacingWithPutsAndGetsLosesNothing) {
  for (int round = 0; round < scaled(40, 4); ++round) {
    for (bool immediate : {false, true}) {
      Queue<int> q(round % 2 == 0 ? 8 : 0);
      std::atomic<std::int64_t> put_sum{0};  // how many puts happen is up to the scheduler
      std::atomic<std::int64_t> got_sum{0};
      std::vector<std::thread> threads;
      for (int p = 0; p < 3; ++p) {
        threads.emplace_back([&] {
          try {
            for (int i = 1;; ++i) {
              q.put(i);
              put_sum += i;
            }
          } catch (const ShutDown&) {
          }
        });
      }
      for (int c = 0; c < 2; ++c) {
        threads.emplace_back([&] {
          try {
            for (;;) {
              got_sum += q.get();
              q.task_done();
            }
          } catch (const ShutDown&) {
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2 + round % 5));
      q.shutdown(immediate);
      for (auto& t : threads) t.join();
      if (immediate) {
        EXPECT_LE(got_sum.load(), put_sum.load());
        q.join();  // dropped items count as done
      } else {
        EXPECT_EQ(got_sum.load(), put_sum.load()) << "round " << round;
        EXPECT_TRUE(q.join(concur_test::generous));
      }
      EXPECT_EQ(q.qsize(), 0u);
    }
  }
}

// ---- lost wake-ups in the ring (defect 2 of the "trust" issue) -----------------------------

// The delay, in milliseconds, of every SlowMove move made on this thread: it holds a producer
// between claiming its slot and filling it, or a consumer between claiming an item and freeing
// its slot, for as long as a preempted thread would be, without relying on the scheduler.
thread_local int slow_move_ms = 0;

struct SlowMove {
  long value = 0;
  SlowMove() = default;
  explicit SlowMove(long v) noexcept : value(v) {}
  SlowMove(SlowMove&& other) noexcept : value(other.value) { stall(); }
  SlowMove& operator=(SlowMove&& other) noexcept {
    value = other.value;
    stall();
    return *this;
  }
  static void stall() noexcept {
    if (slow_move_ms == 0) return;
    timespec pause{0, slow_move_ms * 1000000L};
    while (::nanosleep(&pause, &pause) != 0) {
    }
  }
};

// Waits until every thread of `ids` sleeps in the kernel (in its get or put).
bool all_asleep(const std::vector<std::atomic<std::uint64_t>>& ids) {
  return eventually([&] {
    for (const auto& id : ids) {
      if (id.load() == 0 || !concur_test::thread_asleep(id.load())) return false;
    }
    return true;
  });
}

// Consumers C1 and C2 sleep in get() on an empty queue. Producer P1 claims slot t and stays
// 20 ms in the move that fills it; P2 then claims t+1 and fills it at once, and its wake-up
// reaches a consumer that cannot take t+1 before t (FIFO), so it sleeps again. When P1 fills t
// its wake-up lets one consumer take t; t+1 must then reach the other consumer, which sleeps.
// Each round waits (generously) for both items; an item left in the queue while a consumer
// sleeps is a lost wake-up.
TEST(QueueWakeups, AnItemFilledOutOfOrderStillWakesASleepingConsumer) {
  Queue<SlowMove> q(16);
  const int rounds = static_cast<int>(scaled(20, 4));
  long put_sum = 0;
  std::atomic<long> got_sum{0};
  std::atomic<int> got{0};
  int stranded = 0;
  concur_test::Watchdog watchdog("slow-fill consumer rounds", std::chrono::seconds(120), [&] {
    return "got=" + std::to_string(got.load()) + " qsize=" + std::to_string(q.qsize());
  });
  for (int round = 0; round < rounds; ++round) {
    got = 0;
    std::vector<std::atomic<std::uint64_t>> ids(2);
    std::vector<std::thread> consumers;
    for (auto& id : ids) {
      consumers.emplace_back([&] {
        id = concur::get_native_id();
        got_sum += q.get().value;
        ++got;
      });
    }
    ASSERT_TRUE(all_asleep(ids));
    const long slow_value = 2 * round + 1;
    const long fast_value = 1000 * (round + 1);
    put_sum += slow_value + fast_value;
    std::thread slow_producer([&] {
      slow_move_ms = 20;
      q.put(SlowMove(slow_value));
    });
    ASSERT_TRUE(eventually([&] { return q.qsize() >= 1; }));  // P1 has claimed its slot
    q.put(SlowMove(fast_value));
    if (!eventually([&] { return got.load() == 2; }, std::chrono::seconds(3))) {
      ++stranded;
      while (got.load() < 2) {  // unstick the sleeping consumer, then count what it got
        q.put(SlowMove(0));
        std::this_thread::sleep_for(10ms);
      }
    }
    slow_producer.join();
    for (auto& c : consumers) c.join();
    while (auto extra = q.try_get()) got_sum += extra->value;  // unsticking puts carry 0
  }
  EXPECT_EQ(stranded, 0) << "rounds in which an item stayed queued while a consumer slept";
  EXPECT_EQ(got_sum.load(), put_sum) << "items lost or duplicated";
}

// The mirror image: producers PA and PB sleep in put() on a full queue of capacity 2. Consumer
// C1 claims the item at ticket t and stays 20 ms in the move that empties its slot; C2 then
// takes t+1 at once, and its wake-up reaches a producer that cannot use slot t+1 before slot t
// (the put ticket is at t+2), so it sleeps again. When C1 frees t one producer puts into it;
// the free slot of t+1 must then reach the other producer, which sleeps.
TEST(QueueWakeups, ASlotFreedOutOfOrderStillWakesASleepingProducer) {
  Queue<SlowMove> q(2);
  const int rounds = static_cast<int>(scaled(20, 4));
  std::atomic<long> put_sum{0};
  long got_sum = 0;
  std::atomic<int> put{0};
  int stranded = 0;
  concur_test::Watchdog watchdog("slow-free producer rounds", std::chrono::seconds(120), [&] {
    return "put=" + std::to_string(put.load()) + " qsize=" + std::to_string(q.qsize());
  });
  for (int round = 0; round < rounds; ++round) {
    put = 0;
    q.put(SlowMove(1));
    q.put(SlowMove(2));
    put_sum += 3;
    std::vector<std::atomic<std::uint64_t>> ids(2);
    std::vector<std::thread> producers;
    for (int p = 0; p < 2; ++p) {
      producers.emplace_back([&, p] {
        ids[static_cast<std::size_t>(p)] = concur::get_native_id();
        const long value = 100 * (round + 1) + p;
        q.put(SlowMove(value));
        put_sum += value;
        ++put;
      });
    }
    ASSERT_TRUE(all_asleep(ids));
    std::atomic<long> slow_got{0};
    std::thread slow_consumer([&] {
      slow_move_ms = 20;
      slow_got = q.get().value;
    });
    ASSERT_TRUE(eventually([&] { return q.qsize() <= 1; }));  // C1 has claimed its item
    got_sum += q.get().value;
    if (!eventually([&] { return put.load() == 2; }, std::chrono::seconds(3))) {
      ++stranded;
      while (put.load() < 2) {  // unstick the sleeping producer
        if (auto item = q.try_get()) got_sum += item->value;
        std::this_thread::sleep_for(10ms);
      }
    }
    slow_consumer.join();
    got_sum += slow_got.load();
    for (auto& p : producers) p.join();
    while (auto item = q.try_get()) got_sum += item->value;
  }
  EXPECT_EQ(stranded, 0) << "rounds in which a slot stayed free while a producer slept";
  EXPECT_EQ(got_sum, put_sum.load()) << "items lost or duplicated";
}

// Many producers and consumers, with one item in four filled or emptied slowly (2 ms) so that
// claims and fills keep landing out of order, on a small and a larger ring. Every item must
// arrive exactly once, and the last ones must not stay queued while consumers sleep: the
// consumers must finish within a generous bound after the producers do.
TEST(QueueWakeups, SlowFillsAndEmptiesWithManyThreadsLoseNoWakeUp) {
  for (long maxsize : {2L, 8L}) {
    Queue<SlowMove> q(maxsize);
    const int producers = 3;
    const int consumers = 3;
    const long per_producer = scaled(120, 4);
    std::atomic<long> got_sum{0};
    std::atomic<long> got{0};
    concur_test::Watchdog watchdog("slow items, many threads", std::chrono::seconds(120), [&] {
      return "maxsize=" + std::to_string(maxsize) + " got=" + std::to_string(got.load()) +
             " qsize=" + std::to_string(q.qsize());
    });
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        for (long i = 1; i <= per_producer; ++i) {
          slow_move_ms = (i + p) % 4 == 0 ? 2 : 0;
          q.put(SlowMove(i));
        }
      });
    }
    for (int c = 0; c < consumers; ++c) {
      threads.emplace_back([&, c] {
        for (long i = 0;; ++i) {
          slow_move_ms = (i + c) % 4 == 1 ? 2 : 0;
          try {
            got_sum += q.get().value;
          } catch (const ShutDown&) {
            return;
          }
          ++got;
        }
      });
    }
    for (int p = 0; p < producers; ++p) threads[static_cast<std::size_t>(p)].join();
    const long total = producers * per_producer;
    EXPECT_TRUE(eventually([&] { return got.load() == total; }, std::chrono::seconds(5)))
        << "maxsize " << maxsize << ": " << total - got.load()
        << " items stayed queued while consumers slept";
    q.shutdown();
    for (std::size_t t = producers; t < threads.size(); ++t) threads[t].join();
    EXPECT_EQ(got_sum.load(), producers * per_producer * (per_producer + 1) / 2);
  }
}

// shutdown(immediate=True) waits for a put that was claimed before it and is still filling its
// slot (here for 200 ms); it must sleep meanwhile, not spin or yield.
TEST(QueueWakeups, ImmediateShutdownSleepsWhileAClaimedPutFills) {
  for (int round = 0; round < 3; ++round) {
    Queue<SlowMove> q(4);
    std::thread producer([&] {
      slow_move_ms = 200;
      q.put(SlowMove(1));
    });
    ASSERT_TRUE(eventually([&] { return q.qsize() >= 1; }));  // claimed, now filling
    const auto start = steady::now();
    const double cpu_before = thread_cpu_seconds();
    q.shutdown(true);
    const double cpu = thread_cpu_seconds() - cpu_before;
    producer.join();
    EXPECT_EQ(q.qsize(), 0u) << "the late put arrived after the immediate shutdown";
    EXPECT_GE(steady::now() - start, 100ms) << "shutdown did not wait for the claimed put";
    EXPECT_LT(cpu, 0.02) << "shutdown burned " << cpu * 1000 << " ms of CPU waiting for a put";
  }
}

// ---- timed waits under CPU load (defect 3 of the "trust" issue) ----------------------------

// With CPU-bound threads on every core, a 1 ms timed get on an empty queue (and put on a full
// one) returns about as late as std::condition_variable's timed wait does, measured the same
// way in the same test (tests/support/lateness.hpp: up to three attempts, so that a burst of
// outside load cannot fail it): a spin must stop at the deadline and never hand the core to a
// busy thread with sched_yield().
TEST(QueueTimedWaits, ReturnOnTimeUnderCpuLoad) {
  if (CONCUR_SCHEDULE_EXPLORING) {
    // Schedule exploration sleeps threads (up to 10 ms) at the queue's own schedule points.
    GTEST_SKIP() << "timing is not measured under schedule exploration";
  }
  Queue<int> ring(4);
  Queue<int> full_ring(2);
  full_ring.put(1);
  full_ring.put(2);
  Queue<int> unbounded;
  LifoQueue<int> lifo(4);
  PriorityQueue<int> priority(4);
  using concur_test::timed_wait_on_time;
  EXPECT_TRUE(timed_wait_on_time("Queue(4).try_get",
                                 [&](auto timeout) { return ring.try_get(timeout).has_value(); }));
  EXPECT_TRUE(timed_wait_on_time("Queue(4).get", [&](auto timeout) {
    try {
      (void)ring.get(timeout);
      return true;
    } catch (const Empty&) {
      return false;
    }
  }));
  EXPECT_TRUE(timed_wait_on_time("Queue(2) full: put", [&](auto timeout) {
    try {
      full_ring.put(3, timeout);
      return true;
    } catch (const Full&) {
      return false;
    }
  }));
  EXPECT_TRUE(timed_wait_on_time(
      "Queue().try_get", [&](auto timeout) { return unbounded.try_get(timeout).has_value(); }));
  EXPECT_TRUE(timed_wait_on_time("LifoQueue.try_get",
                                 [&](auto timeout) { return lifo.try_get(timeout).has_value(); }));
  EXPECT_TRUE(timed_wait_on_time("PriorityQueue.try_get", [&](auto timeout) {
    return priority.try_get(timeout).has_value();
  }));
}

// An output iterator whose assignment throws on its `fail_at`-th write (counting from 1), as a
// back_inserter does when the vector cannot grow.
struct FailingSink {
  using iterator_category = std::output_iterator_tag;
  using value_type = void;
  using difference_type = std::ptrdiff_t;
  using pointer = void;
  using reference = void;
  std::vector<int>* written;
  int fail_at;
  FailingSink& operator*() { return *this; }
  FailingSink& operator++() { return *this; }
  FailingSink operator++(int) { return *this; }
  FailingSink& operator=(int item) {
    if (static_cast<int>(written->size()) + 1 == fail_at) throw std::bad_alloc();
    written->push_back(item);
    return *this;
  }
};

// get_many on the ring (a bounded Queue of ints) whose output throws part way: the item being
// written goes with the exception, as with `out = q.get()`, and the queue stays whole: the
// items after it are still there, in order, and every slot can be used again. Before the fix
// the tickets claimed after the failed write were never taken, so their slots stayed full for
// ever: the queue lost them and, once the ring wrapped round, every put and get hung.
TEST(QueueGetMany, AnOutputThatThrowsPartWayLeavesTheRestInTheQueue) {
  Queue<int> q(4);
  for (int i = 1; i <= 3; ++i) q.put(i);
  std::vector<int> written;
  EXPECT_THROW((void)q.get_many(FailingSink{&written, 2}, 10), std::bad_alloc);
  EXPECT_EQ(written, std::vector<int>{1});
  ASSERT_EQ(q.try_get(2s), std::optional<int>(3));
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.try_put(10 * round + i, 2s)) << round;
    for (int i = 0; i < 4; ++i) ASSERT_EQ(q.try_get(2s), std::optional<int>(10 * round + i));
  }
}

// Converts to std::string, or throws when told to: an input to put_many whose items are built
// as they are put.
struct MaybeString {
  const char* text;
  operator std::string() const {
    if (text == nullptr) throw std::runtime_error("no text");
    return text;
  }
};

// put_many on the ring whose items throw while they are built: the items before the failing one
// are in the queue, nothing after it is, and the queue stays whole. Before the fix the ring
// claimed places for every item at once and the ones after the throw were never filled, so a
// consumer waited on them for ever.
TEST(QueuePutMany, AnItemThatThrowsWhileBuiltLeavesTheQueueWhole) {
  Queue<std::string> q(4);
  const std::vector<MaybeString> items = {{"a"}, {nullptr}, {"c"}};
  EXPECT_THROW(q.put_many(items.begin(), items.end()), std::runtime_error);
  EXPECT_EQ(q.try_get(2s), std::optional<std::string>("a"));
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.try_put(std::to_string(10 * round + i), 2s));
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(q.try_get(2s), std::optional<std::string>(std::to_string(10 * round + i)));
    }
  }
}

}  // namespace
