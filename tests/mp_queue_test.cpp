// Tests for concur/mp_queue.hpp: mp::Queue, mp::JoinableQueue and mp::SimpleQueue between
// processes, with checksums, timeouts, processes killed at random, and placement.

#include "concur/mp_queue.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "concur/shared_ctypes.hpp"
#include "forked.hpp"

namespace {

namespace mp = concur::mp;
using concur_test::exit_status;
using concur_test::exit_status_within;
using concur_test::fork_child;
using concur_test::poll_until;
using namespace std::chrono_literals;

// Two producer processes put 20000 items each, make(producer, seq); two consumer processes get
// them until an end mark (make(-1, 0)) and read each back with read(item), which gives its
// {producer, seq}, or a producer of -2 for an item that is not what was put (a consumer that
// meets one exits with 3, and one that finds items out of order with 2). Every item arrives
// exactly once (the sums and counts), whole, and each producer's items reach each consumer in
// the order they were put.
template <class Queue, class Make, class Read>
void two_producers_two_consumers(Queue& queue, Make make, Read read) {
  mp::RawArray<long> sums(2);
  mp::RawArray<long> counts(2);
  constexpr int per_producer = 20000;
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    children.push_back(fork_child([&, p] {
      for (int i = 0; i < per_producer; ++i) queue.put(make(p, i));
    }));
  }
  for (int c = 0; c < 2; ++c) {
    children.push_back(fork_child([&, c] {
      long last[2] = {-1, -1};
      for (;;) {
        const auto [producer, seq] = read(queue.get(30s));
        if (producer == -1) break;                 // the end mark
        if (producer < 0) std::_Exit(3);           // torn or misread
        if (seq <= last[producer]) std::_Exit(2);  // out of order, or twice
        last[producer] = seq;
        sums[c] += seq;
        counts[c] += 1;
      }
    }));
  }
  // A watchdog on each: a consumer that failed leaves the producers waiting for room.
  for (int p = 0; p < 2; ++p) EXPECT_EQ(exit_status_within(children[p], 60s), 0);
  queue.put(make(-1, 0), 1s);
  queue.put(make(-1, 0), 1s);
  for (int c = 2; c < 4; ++c) EXPECT_EQ(exit_status_within(children[c], 60s), 0);
  EXPECT_EQ(counts[0] + counts[1], 2L * per_producer);
  EXPECT_EQ(sums[0] + sums[1], 2L * per_producer * (per_producer - 1) / 2);
  EXPECT_TRUE(queue.empty());
}

TEST(MpQueue, EveryItemOnceAndInOrderBetweenFourProcesses) {
  struct Item {
    std::int32_t producer;
    std::int32_t seq;
  };
  mp::Queue<Item> queue(64);  // small: producers wait for room often
  two_producers_two_consumers(
      queue,
      [](int p, int i) {
        return Item{p, i};
      },
      [](const Item& item) { return std::pair<int, long>(item.producer, item.seq); });
}

TEST(MpQueue, TimeoutsAndTheNonBlockingForms) {
  mp::Queue<int> queue(2);
  EXPECT_EQ(queue.maxsize(), 2u);
  EXPECT_THROW((void)queue.get_nowait(), concur::Empty);
  EXPECT_FALSE(queue.try_get());
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)queue.get(30ms), concur::Empty);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  queue.put(1);
  queue.put_nowait(2);
  EXPECT_TRUE(queue.full());
  EXPECT_EQ(queue.qsize(), 2u);
  EXPECT_FALSE(queue.try_put(3));
  EXPECT_THROW(queue.put_nowait(3), concur::Full);
  start = std::chrono::steady_clock::now();
  EXPECT_THROW(queue.put(3, 30ms), concur::Full);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_THROW(queue.put(3, -1ms), std::invalid_argument);
  EXPECT_THROW((void)queue.get(-1ms), std::invalid_argument);
  EXPECT_EQ(queue.get(), 1);
  EXPECT_EQ(queue.get_nowait(), 2);
  EXPECT_TRUE(queue.empty());
  EXPECT_THROW(mp::Queue<int>(mp::QueueOptions{.maxsize = 0, .capacity = 0}),
               std::invalid_argument);
}

// A get() asleep in one process is woken by a put() in another, well before its
// recheck interval, and a put() asleep on a full queue by a get().
TEST(MpQueue, SleepersAreWokenAcrossProcesses) {
  mp::Queue<int> queue(1);
  mp::RawValue<std::int64_t> woke_after_us(0);
  mp::RawValue<int> running(0);
  const pid_t getter = fork_child([&] {
    const auto start = std::chrono::steady_clock::now();
    running.set_value(1);
    if (queue.get(30s) != 7) std::_Exit(2);
    woke_after_us.set_value(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count());
    queue.put(8);  // fills it again
    queue.put(9);  // sleeps until the parent takes 8
  });
  // From when the child runs: a forked child may start late (under ThreadSanitizer, 15 ms).
  ASSERT_TRUE(poll_until([&] { return running.value() == 1; }));
  std::this_thread::sleep_for(50ms);
  queue.put(7);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (queue.qsize() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  std::this_thread::sleep_for(50ms);  // the child sleeps in put(9)
  EXPECT_EQ(queue.get(30s), 8);
  EXPECT_EQ(queue.get(30s), 9);
  EXPECT_EQ(exit_status(getter), 0);
  EXPECT_GE(woke_after_us.value(), 40000);
}

// A putter on a full queue waits for the getters to free a batch of slots before it takes the
// lock, but only within its spin budget: when a getter takes one item and stops, the put still
// goes on (here well within its 10 s timeout; a putter that waited for a batch would throw Full).
TEST(MpQueue, APutIntoAFullQueueGoesOnWhenASingleItemIsTaken) {
  mp::Queue<int> queue(64);
  for (int i = 0; i < 64; ++i) queue.put(i);
  const pid_t getter = fork_child([&] {
    std::this_thread::sleep_for(20ms);
    if (queue.get() != 0) std::_Exit(2);
  });
  EXPECT_NO_THROW(queue.put(64, 10s));
  EXPECT_EQ(exit_status(getter), 0);
  EXPECT_EQ(queue.qsize(), 64u);
  for (int i = 1; i <= 64; ++i) EXPECT_EQ(queue.get_nowait(), i);
}

TEST(MpQueue, AnIdleGetterUsesNoCpu) {
  mp::Queue<int> queue(4);
  const pid_t waiter = fork_child([&] {
    if (queue.try_get()) std::_Exit(2);
    try {
      (void)queue.get(1500ms);
      std::_Exit(3);
    } catch (const concur::Empty&) {
    }
  });
  double cpu = 0;
  ASSERT_EQ(exit_status(waiter, cpu), 0);
  EXPECT_LT(cpu, 0.3) << "a getter idle for 1.5 s used " << cpu << " s of CPU";
}

TEST(MpQueue, CloseAndTheFeederThreadMembers) {
  mp::Queue<int> queue;
  EXPECT_EQ(queue.maxsize(), 0u);
  EXPECT_THROW(queue.join_thread(), concur::UsageError);
  queue.put(1);
  queue.close();
  EXPECT_THROW(queue.put(2), std::invalid_argument);
  EXPECT_THROW((void)queue.get(), std::invalid_argument);
  EXPECT_NO_THROW(queue.join_thread());
  EXPECT_NO_THROW(queue.cancel_join_thread());
}

TEST(MpJoinableQueue, JoinWaitsForEveryTaskDoneInAnotherProcess) {
  mp::JoinableQueue<int> queue;
  EXPECT_THROW(queue.task_done(), concur::UsageError);
  constexpr int items = 1000;
  for (int i = 0; i < items; ++i) queue.put(i);
  EXPECT_EQ(queue.unfinished_tasks(), std::size_t(items));
  EXPECT_FALSE(queue.join(20ms));
  const pid_t worker = fork_child([&] {
    for (int i = 0; i < items; ++i) {
      if (queue.get(30s) != i) std::_Exit(2);
      if (i % 100 == 0) std::this_thread::sleep_for(1ms);
      queue.task_done();
    }
  });
  EXPECT_TRUE(queue.join(30s));
  EXPECT_EQ(queue.unfinished_tasks(), 0u);
  EXPECT_EQ(exit_status(worker), 0);
  EXPECT_THROW(queue.task_done(), concur::UsageError);
  queue.join();  // nothing unfinished: returns at once
}

TEST(MpSimpleQueue, PutGetEmptyBetweenProcesses) {
  mp::SimpleQueue<double> queue;
  EXPECT_TRUE(queue.empty());
  const pid_t child = fork_child([&] {
    for (int i = 0; i < 100; ++i) queue.put(i * 0.5);
  });
  double sum = 0;
  for (int i = 0; i < 100; ++i) sum += queue.get();
  EXPECT_EQ(sum, 0.5 * 99 * 100 / 2);
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_TRUE(queue.empty());
}

// A producer puts item_for(0), item_for(1), ... and records each number once its put() has
// returned; it is killed at a random moment, a thousand times. The parent then drains the queue
// within a 10 s watchdog: the items are consecutive (nothing lost, nothing twice, nothing torn),
// and reach at least the last one recorded (everything fully put is there). `check`, an item
// no producer puts, then shows that the queue still works.
template <class Queue, class ItemFor>
void kill_producers_at_random(Queue& queue, ItemFor item_for,
                              const typename Queue::value_type& check, unsigned seed) {
  mp::RawValue<std::int64_t> confirmed(-1);
  mp::RawValue<int> running(0);  // the trial whose child runs
  std::mt19937 random(seed);
  std::int64_t next = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    const std::int64_t first = next;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      running.set_value(trial + 1);
      for (std::int64_t i = first;; ++i) {
        queue.put(item_for(i));
        confirmed.set_value(i);
      }
    }
    const bool started = poll_until([&] { return running.value() == trial + 1; });
    if (started) std::this_thread::sleep_for(std::chrono::microseconds(random() % 400));
    ::kill(child, SIGKILL);
    ASSERT_EQ(::waitpid(child, nullptr, 0), child);
    ASSERT_TRUE(started) << "trial " << trial << ": the child never started";
    while (auto item = queue.try_get()) {
      ASSERT_EQ(*item, item_for(next)) << "trial " << trial << ": lost, duplicated or torn";
      ++next;
    }
    ASSERT_GE(next - 1, confirmed.value()) << "trial " << trial << ": a confirmed item is gone";
    queue.put(check);
    ASSERT_EQ(queue.get(10s), check) << "trial " << trial;
  }
  EXPECT_GT(next, 0);
}

TEST(MpQueue, AProducerKilledAtRandomLosesNothingItPut) {
  mp::Queue<std::int64_t> queue(256);
  kill_producers_at_random(
      queue, [](std::int64_t i) { return i; }, std::int64_t{-1}, 31);
}

// A consumer records each number it got; it is killed at random, a thousand times, while the parent
// keeps the queue supplied. Every number put is then either recorded by a consumer, still in
// the queue, or the one a killed consumer was holding: at most one per kill, never twice.
TEST(MpQueue, AConsumerKilledAtRandomNeverHangsOrDuplicates) {
  constexpr int trials = 1000;
  mp::Queue<std::int64_t> queue(128);
  mp::RawArray<std::int32_t> seen(200000);
  mp::RawValue<std::int64_t> in_hand(-1);
  mp::RawValue<int> running(0);  // the trial whose child runs
  std::mt19937 random(47);
  std::int64_t put = 0;
  for (int trial = 0; trial < trials; ++trial) {
    while (queue.qsize() < 100) queue.put(put++);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      running.set_value(trial + 1);
      for (;;) {
        const std::int64_t item = queue.get();
        in_hand.set_value(item);
        seen[std::size_t(item)] += 1;
        in_hand.set_value(-1);
      }
    }
    const bool started = poll_until([&] { return running.value() == trial + 1; });
    if (started) std::this_thread::sleep_for(std::chrono::microseconds(random() % 300));
    ::kill(child, SIGKILL);
    ASSERT_EQ(::waitpid(child, nullptr, 0), child);
    ASSERT_TRUE(started) << "trial " << trial << ": the child never started";
    ASSERT_LT(put + 100, std::int64_t(seen.size()));
  }
  while (std::optional<std::int64_t> item = queue.try_get()) seen[std::size_t(*item)] += 1;
  long missing = 0;
  for (std::int64_t i = 0; i < put; ++i) {
    ASSERT_LE(seen[std::size_t(i)], 1) << "item " << i << " was got twice";
    if (seen[std::size_t(i)] == 0) ++missing;
  }
  EXPECT_LE(missing, trials) << "more items lost than consumers killed";
  std::printf("items put: %lld, lost with a killed consumer: %ld\n", (long long)put, missing);
}

// The text an encoded-item test sends as number `n`: its digits and then n % 97 letters, so
// that items of many lengths (10 to 115 encoded bytes) wrap around the arena's end at every
// offset.
std::string text_for(std::int64_t n) {
  return std::to_string(n) + std::string(std::size_t(n % 97), char('a' + n % 26));
}

// Items that go through the codec: (producer, text) pairs of many lengths in an arena of 1000
// bytes (room for some dozen), each checked to be the text that was put.
TEST(MpQueueOfEncodedItems, EveryItemOnceWholeAndInOrderBetweenFourProcesses) {
  using Item = std::pair<std::int32_t, std::string>;
  mp::Queue<Item> queue(mp::QueueOptions{.maxsize = 0, .capacity = 64, .bytes = 1000});
  two_producers_two_consumers(
      queue,
      [](int p, int i) {
        return Item{p, text_for(i)};
      },
      [](const Item& item) {
        const long seq = std::stol(item.second);
        return std::pair<int, long>(item.second == text_for(seq) ? item.first : -2, seq);
      });
}

// Room for encoded items is counted in bytes as well as items: a put waits (or throws Full)
// while the arena cannot take the encoding, though the count has room; an encoding larger
// than the whole arena throws std::length_error at once, and leaves the queue as it was.
TEST(MpQueueOfEncodedItems, RoomIsCountedInBytesAndTooLargeAnItemIsRefused) {
  mp::Queue<std::string> queue(mp::QueueOptions{.maxsize = 10, .capacity = 0, .bytes = 64});
  const std::string forty(32, 'x');  // 8 bytes of length, then 32: 40 encoded bytes
  queue.put(forty);
  EXPECT_FALSE(queue.full());
  EXPECT_FALSE(queue.try_put(forty));
  EXPECT_THROW(queue.put_nowait(forty), concur::Full);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(queue.put(forty, 30ms), concur::Full);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_TRUE(queue.try_put(std::string(16, 'y')));  // 24 bytes: exactly what is left
  EXPECT_THROW(queue.put(std::string(57, 'z')), std::length_error);
  EXPECT_THROW(queue.put(std::string(57, 'z'), 1s), std::length_error);
  EXPECT_EQ(queue.qsize(), 2u);
  EXPECT_EQ(queue.get(), forty);
  EXPECT_TRUE(queue.try_put(forty));  // starts the arena again from its beginning
  EXPECT_EQ(queue.get(), std::string(16, 'y'));
  EXPECT_EQ(queue.get(), forty);
  EXPECT_TRUE(queue.try_put(std::string(56, 'w')));  // the whole arena, across its end
  EXPECT_EQ(queue.get(), std::string(56, 'w'));
  queue.put("");
  EXPECT_EQ(queue.get(), "");
  EXPECT_THROW(mp::Queue<std::string>(mp::QueueOptions{.bytes = 0}), std::invalid_argument);
}

// Encoded items of the built-in kinds arrive equal; JoinableQueue and SimpleQueue take them too.
TEST(MpQueueOfEncodedItems, ContainersOptionalsAndTheOtherQueues) {
  mp::Queue<std::map<std::string, std::vector<double>>> maps;
  maps.put({{"a", {1.5, 2.5}}, {"b", {}}});
  EXPECT_EQ(maps.get(1s),
            (std::map<std::string, std::vector<double>>{{"a", {1.5, 2.5}}, {"b", {}}}));
  mp::Queue<std::optional<std::string>> optionals(4);
  optionals.put(std::nullopt);
  optionals.put("here");
  EXPECT_EQ(optionals.get(), std::nullopt);
  EXPECT_EQ(optionals.get_nowait(), "here");
  EXPECT_THROW((void)optionals.get_nowait(), concur::Empty);
  mp::JoinableQueue<std::vector<int>> jobs;
  const pid_t worker = fork_child([&] {
    for (int i = 0; i < 100; ++i) {
      const std::vector<int> job = jobs.get(30s);
      if (job != std::vector<int>(std::size_t(i), i)) std::_Exit(2);
      jobs.task_done();
    }
  });
  for (int i = 0; i < 100; ++i) jobs.put(std::vector<int>(std::size_t(i), i));
  EXPECT_TRUE(jobs.join(30s));
  EXPECT_EQ(exit_status(worker), 0);
  mp::SimpleQueue<std::string> simple;
  simple.put("one");
  EXPECT_EQ(simple.get(), "one");
  EXPECT_TRUE(simple.empty());
}

// Two putters sleep for room in the arena: a large item first, then a small one. A get that
// frees room for the small one only must wake it at once, not leave it to its recheck
// interval (a get that woke one putter would wake the large one, which sleeps again). Tried up
// to three times; once within 100 ms is enough (the recheck comes 150 ms after the get).
TEST(MpQueueOfEncodedItems, AGetWakesThePutterItsRoomFits) {
  bool woken_in_time = false;
  for (int attempt = 0; attempt < 3 && !woken_in_time; ++attempt) {
    mp::Queue<std::string> queue(mp::QueueOptions{.maxsize = 0, .capacity = 8, .bytes = 100});
    mp::RawValue<std::int64_t> small_put_at_us(0);
    queue.put(std::string(42, 'x'));  // 50 bytes
    queue.put(std::string(37, 'y'));  // 45 bytes: 95 of 100 used
    const pid_t large = fork_child([&] { queue.put(std::string(72, 'L')); });  // 80 bytes
    std::this_thread::sleep_for(20ms);
    const pid_t small = fork_child([&] {
      queue.put(std::string(12, 's'));  // 20 bytes
      small_put_at_us.set_value(std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::steady_clock::now().time_since_epoch())
                                    .count());
    });
    std::this_thread::sleep_for(30ms);  // both sleep: the recheck comes in 150 to 180 ms
    const auto got_at = std::chrono::steady_clock::now();
    ASSERT_EQ(queue.get(), std::string(42, 'x'));  // 45 used: 20 fit, 80 do not
    ASSERT_EQ(exit_status_within(small, 10000ms), 0);
    const auto latency =
        std::chrono::microseconds(small_put_at_us.value()) -
        std::chrono::duration_cast<std::chrono::microseconds>(got_at.time_since_epoch());
    woken_in_time = latency < 100ms;
    ASSERT_EQ(queue.get(), std::string(37, 'y'));
    ASSERT_EQ(queue.get(), std::string(12, 's'));
    ASSERT_EQ(exit_status_within(large, 10000ms), 0);
    ASSERT_EQ(queue.get(), std::string(72, 'L'));
  }
  EXPECT_TRUE(woken_in_time) << "a putter whose item fitted waited for its recheck interval";
}

// As AProducerKilledAtRandomLosesNothingItPut, with encoded items of many lengths in an arena
// that wraps often: a producer killed while copying an item's bytes, or between its bytes and
// its slot record, publishes nothing, and everything it confirmed arrives whole.
TEST(MpQueueOfEncodedItems, AProducerKilledAtRandomLosesNothingItPut) {
  mp::Queue<std::string> queue(mp::QueueOptions{.maxsize = 0, .capacity = 64, .bytes = 2000});
  kill_producers_at_random(queue, text_for, std::string("check"), 53);
}

TEST(MpQueuePlacement, AQueuePlacedByOneProcessIsFoundByAnother) {
  mp::SharedMemory block(
      mp::SharedMemoryOptions{.create = true, .size = mp::Queue<int>::shared_size(16)});
  mp::Queue<int> queue(mp::place, block, 0, mp::QueueOptions{.maxsize = 16});
  const std::string name = block.name();
  const pid_t child = fork_child([&] {
    mp::SharedMemory mine(name);
    mp::Queue<int> same(mp::find, mine);
    if (same.maxsize() != 16) std::_Exit(2);
    for (int i = 0; i < 100; ++i) same.put(i);
    try {
      mp::Queue<float> wrong(mp::find, mine);
      std::_Exit(3);
    } catch (const std::invalid_argument&) {
    }
  });
  long sum = 0;
  for (int i = 0; i < 100; ++i) sum += queue.get(30s);
  EXPECT_EQ(sum, 99 * 100 / 2);
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_THROW(mp::Queue<int>(mp::place, block, 0), std::invalid_argument);
}

TEST(MpQueuePlacement, AQueueOfEncodedItemsIsFoundWithItsArena) {
  const mp::QueueOptions options{.maxsize = 8, .capacity = 0, .bytes = 300};
  mp::SharedMemory block(mp::SharedMemoryOptions{
      .create = true, .size = mp::Queue<std::string>::shared_size(options) + 64});
  mp::Queue<std::string> queue(mp::place, block, 0, options);
  const std::string name = block.name();
  const pid_t child = fork_child([&] {
    mp::SharedMemory mine(name);
    mp::Queue<std::string> same(mp::find, mine);
    if (same.maxsize() != 8) std::_Exit(2);
    for (int i = 0; i < 100; ++i) same.put(text_for(i));
    try {
      mp::Queue<std::vector<char>> wrong(mp::find, mine);
      std::_Exit(3);
    } catch (const std::invalid_argument&) {
    }
    try {
      mp::Queue<char> fixed(mp::find, mine);  // a ring of char is another kind
      std::_Exit(4);
    } catch (const std::invalid_argument&) {
    }
  });
  for (int i = 0; i < 100; ++i) EXPECT_EQ(queue.get(30s), text_for(i));
  EXPECT_EQ(exit_status(child), 0);
}

}  // namespace
