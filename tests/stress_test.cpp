// Stress tests of every primitive: several threads for a time budget, a checksum that proves
// nothing was lost or duplicated, and a stall detector (tests/support/stress.hpp) that turns a
// lost wake-up into a failure that names the case, the schedule seed and the workers' states.
//
// Each case is written so that progress is always possible: a thread that sleeps while the unit
// it waits for exists is a bug, and the case stalls on it instead of limping on. In the normal
// builds they run on the operating system's schedule; in the `explore` preset
// (CONCUR_SCHEDULE_EXPLORATION) every schedule point in the library perturbs the threads, which
// is what finds the windows of a few nanoseconds (see concur/detail/schedule.hpp).

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "concur/barrier.hpp"
#include "concur/condition.hpp"
#include "concur/errors.hpp"
#include "concur/event.hpp"
#include "concur/futures.hpp"
#include "concur/local.hpp"
#include "concur/lock.hpp"
#include "concur/mp_barrier.hpp"
#include "concur/mp_condition.hpp"
#include "concur/mp_event.hpp"
#include "concur/mp_lock.hpp"
#include "concur/mp_queue.hpp"
#include "concur/mp_semaphore.hpp"
#include "concur/queue.hpp"
#include "concur/rlock.hpp"
#include "concur/semaphore.hpp"
#include "concur/simple_queue.hpp"
#include "concur/timer.hpp"
#include "stress.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur_test::Random;
using concur_test::Stress;

// Holds the calling thread for a moment, sometimes: a critical section that is not empty.
void dwell(Random& random) {
  if (random.below(16) == 0) {
    for (int i = static_cast<int>(random.below(2000)); i > 0; --i) concur::detail::cpu_relax();
  }
}

// ---------------------------------------------------------------------------------------------
// Locks: mutual exclusion (a plain counter), every way of acquiring, parking and timing out.

// What the holders of one lock compare: kept in a shared mapping, so that a forked rival
// process (the mp:: locks) checks against the same counters.
struct Exclusion {
  std::atomic<int> inside{0};
  std::atomic<long> overlaps{0};
  std::atomic<int> stop{0};
  std::atomic<long> rival_rounds{0};
};

// Takes and releases `lock` until told to stop, from a process of its own (the mp:: locks):
// the threads of the stress run then contend with another process too.
template <class L>
pid_t fork_rival(L& lock, Exclusion& shared) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  Random random(99);
  while (shared.stop.load(std::memory_order_relaxed) == 0) {
    if (!lock.acquire(std::chrono::milliseconds(random.below(3)))) continue;
    if (shared.inside.fetch_add(1, std::memory_order_relaxed) != 0) shared.overlaps.fetch_add(1);
    dwell(random);
    shared.inside.fetch_sub(1, std::memory_order_relaxed);
    lock.release();
    shared.rival_rounds.fetch_add(1, std::memory_order_relaxed);
  }
  std::_Exit(0);
}

template <class L>
void lock_stress(const char* name, int threads, int max_depth, bool rival_process = false) {
  L lock;
  long plain = 0;  // touched only under the lock
  void* page =
      ::mmap(nullptr, sizeof(Exclusion), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  Exclusion& shared = *new (page) Exclusion;
  const pid_t rival = rival_process ? fork_rival(lock, shared) : 0;
  std::atomic<long> acquisitions{0};
  Stress stress(name);
  stress.run(threads, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 1);
    long mine = 0;
    while (stress.running()) {
      bool got = false;
      switch (random.below(5)) {
        case 0:
        case 1:
          lock.acquire();
          got = true;
          break;
        case 2:
          got = lock.acquire(std::chrono::microseconds(random.below(300)));
          break;
        case 3:
          got = lock.try_lock_for(std::chrono::microseconds(random.below(50)));
          break;
        default:
          got = lock.acquire(false);
      }
      stress.tick();
      if (!got) continue;
      if (shared.inside.fetch_add(1, std::memory_order_relaxed) != 0) shared.overlaps.fetch_add(1);
      const int depth = max_depth > 1 ? static_cast<int>(random.below(max_depth)) : 0;
      for (int level = 0; level < depth; ++level) lock.acquire();  // RLock only
      ++plain;
      dwell(random);
      for (int level = 0; level < depth; ++level) lock.release();
      shared.inside.fetch_sub(1, std::memory_order_relaxed);
      lock.release();
      ++mine;
    }
    acquisitions += mine;
  });
  if (rival_process) {
    shared.stop.store(1);
    int status = 0;
    EXPECT_EQ(::waitpid(rival, &status, 0), rival);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_GT(shared.rival_rounds.load(), 0) << "the rival process never got the lock";
  }
  EXPECT_EQ(shared.overlaps.load(), 0) << "two threads held the lock at once";
  EXPECT_EQ(plain, acquisitions.load());
  EXPECT_GT(acquisitions.load(), 0);
  EXPECT_FALSE(lock.locked());
  ::munmap(page, sizeof(Exclusion));
}

TEST(Stress, Lock) {
  lock_stress<concur::Lock>("lock", 4, 1);
}
TEST(Stress, RLock) {
  lock_stress<concur::RLock>("rlock", 4, 3);
}
// The process-shared locks: four threads here and a rival process.
TEST(Stress, MpLock) {
  lock_stress<concur::mp::Lock>("mp_lock", 4, 1, true);
}
TEST(Stress, MpRLock) {
  lock_stress<concur::mp::RLock>("mp_rlock", 4, 3, true);
}

// ---------------------------------------------------------------------------------------------
// Semaphores: rounds in which a driver hands out one unit per waiter, in separate releases or
// one release(n), and waits until every waiter has its unit. A waiter left asleep beside a
// free unit (two releases landing before the first woken thread runs) stalls the round.

template <class Sem>
void semaphore_rounds(const char* name, Sem& sem, int waiters) {
  std::mutex mutex;
  std::condition_variable changed;
  long round = 0;
  int taken = 0;
  bool stop = false;
  Stress stress(name);
  stress.run(waiters + 1, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 7);
    if (index == waiters) {  // the driver
      while (stress.running()) {
        switch (random.below(3)) {
          case 0:
            for (int i = 0; i < waiters; ++i) sem.release();
            break;
          case 1:
            sem.release(waiters);
            break;
          default:
            sem.release(1);
            if (waiters > 1) sem.release(waiters - 1);
        }
        std::unique_lock<std::mutex> hold(mutex);
        changed.wait(hold, [&] { return taken == waiters; });
        taken = 0;
        ++round;
        stress.tick();
        changed.notify_all();
      }
      {
        std::lock_guard<std::mutex> hold(mutex);
        stop = true;
      }
      sem.release(waiters);  // one last unit each: every waiter is in (or on its way to) acquire
      return;
    }
    long my_round = 0;
    for (;;) {
      if (random.below(2) == 0) {
        sem.acquire();
      } else {
        while (!sem.acquire(std::chrono::microseconds(random.below(500)))) {
        }
      }
      std::unique_lock<std::mutex> hold(mutex);
      if (stop) return;
      ++taken;
      changed.notify_all();
      changed.wait(hold, [&] { return round > my_round; });
      my_round = round;
    }
  });
  EXPECT_FALSE(sem.acquire(false)) << "a unit was left over";
  EXPECT_GT(round, 0);
}

TEST(Stress, Semaphore) {
  concur::Semaphore sem(0);
  semaphore_rounds("semaphore", sem, 3);
}

TEST(Stress, BoundedSemaphore) {
  concur::BoundedSemaphore sem(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sem.acquire(false));
  semaphore_rounds("bounded_semaphore", sem, 3);
}

// The same protocol on the shared futex (its waits capped at the recheck interval).
TEST(Stress, MpSemaphore) {
  concur::mp::Semaphore sem(0);
  semaphore_rounds("mp_semaphore", sem, 3);
}

// ---------------------------------------------------------------------------------------------
// Event: rounds of "every waiter waits, the driver sets", and a ping-pong between two events.

TEST(Stress, EventRounds) {
  constexpr int waiters = 3;
  concur::Event event;
  std::mutex mutex;
  std::condition_variable changed;
  long round = 0;
  int ready = 0;
  int released = 0;
  bool stop = false;
  Stress stress("event.rounds");
  stress.run(waiters + 1, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 11);
    if (index == waiters) {
      while (stress.running()) {
        {
          std::unique_lock<std::mutex> hold(mutex);
          // Sometimes set before every waiter is in wait(), sometimes after.
          if (random.below(2) == 0) changed.wait(hold, [&] { return ready == waiters; });
        }
        event.set();
        std::unique_lock<std::mutex> hold(mutex);
        changed.wait(hold, [&] { return released == waiters; });
        event.clear();
        ready = released = 0;
        ++round;
        stress.tick();
        changed.notify_all();
      }
      {
        std::lock_guard<std::mutex> hold(mutex);
        stop = true;
      }
      event.set();  // every waiter is in (or on its way to) wait(): let it see the stop
      return;
    }
    long my_round = 0;
    for (;;) {
      {
        std::lock_guard<std::mutex> hold(mutex);
        ++ready;
        changed.notify_all();
      }
      if (random.below(2) == 0) {
        event.wait();
      } else {
        while (!event.wait(std::chrono::microseconds(random.below(400)))) {
        }
      }
      std::unique_lock<std::mutex> hold(mutex);
      if (stop) return;
      ++released;
      changed.notify_all();
      changed.wait(hold, [&] { return round > my_round; });
      my_round = round;
    }
  });
  EXPECT_GT(round, 0);
}

template <class E>
void event_ping_pong(const char* name) {
  E ping;
  E pong;
  std::atomic<bool> stop{false};
  std::atomic<long> volleys{0};
  Stress stress(name);
  stress.run(2, [&](int index) {
    E& mine = index == 0 ? ping : pong;
    E& theirs = index == 0 ? pong : ping;
    if (index == 0) ping.set();
    for (;;) {
      mine.wait();
      mine.clear();
      if (stop.load()) {
        theirs.set();
        return;
      }
      if (!stress.running()) stop = true;
      volleys.fetch_add(1);
      stress.tick();
      theirs.set();
    }
  });
  EXPECT_GT(volleys.load(), 0);
}

TEST(Stress, EventPingPong) {
  event_ping_pong<concur::Event>("event.ping_pong");
}
TEST(Stress, MpEventPingPong) {
  event_ping_pong<concur::mp::Event>("mp_event.ping_pong");
}

// ---------------------------------------------------------------------------------------------
// Condition: a bounded buffer with two conditions over one lock (Python's queue.py shape), every
// kind of wait, notify(1) only, and a checksum of what went through.

template <class L, template <class> class Cond = concur::Condition>
void condition_buffer(const char* name) {
  constexpr int producers = 3;
  constexpr int consumers = 3;
  constexpr std::size_t capacity = 2;
  L lock;
  Cond<L> not_full(lock);
  Cond<L> not_empty(lock);
  std::deque<std::uint64_t> buffer;
  int producing = producers;
  std::atomic<std::uint64_t> put_sum{0}, got_sum{0}, put_count{0}, got_count{0};
  Stress stress(name);

  auto wait_on = [](Cond<L>& cond, Random& random, auto ready) {
    switch (random.below(3)) {
      case 0:
        while (!ready()) cond.wait();
        break;
      case 1:
        while (!ready()) (void)cond.wait(std::chrono::microseconds(random.below(300)));
        break;
      default:
        while (!cond.wait_for(ready, std::chrono::microseconds(random.below(300)))) {
        }
    }
  };

  stress.run(producers + consumers, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 23);
    if (index < producers) {
      for (std::uint64_t k = 0; stress.running(); ++k) {
        const std::uint64_t item = (static_cast<std::uint64_t>(index) << 40) | k;
        std::scoped_lock hold(lock);
        wait_on(not_full, random, [&] { return buffer.size() < capacity; });
        buffer.push_back(item);
        put_sum += item;
        ++put_count;
        not_empty.notify();
        stress.tick();
      }
      std::scoped_lock hold(lock);
      if (--producing == 0) not_empty.notify_all();
      return;
    }
    for (;;) {
      std::scoped_lock hold(lock);
      wait_on(not_empty, random, [&] { return !buffer.empty() || producing == 0; });
      if (buffer.empty()) return;
      got_sum += buffer.front();
      ++got_count;
      buffer.pop_front();
      not_full.notify();
      stress.tick();
    }
  });
  EXPECT_EQ(got_count.load(), put_count.load());
  EXPECT_EQ(got_sum.load(), put_sum.load());
  EXPECT_GT(got_count.load(), 0u);
}

TEST(Stress, ConditionOverLock) {
  condition_buffer<concur::Lock>("condition.lock");
}
TEST(Stress, ConditionOverRLock) {
  condition_buffer<concur::RLock>("condition.rlock");
}
// The process-shared conditions, with the threads of one process (the kill tests are in
// mp_condition_test).
TEST(Stress, MpConditionOverLock) {
  condition_buffer<concur::mp::Lock, concur::mp::Condition>("mp_condition.lock");
}
TEST(Stress, MpConditionOverRLock) {
  condition_buffer<concur::mp::RLock, concur::mp::Condition>("mp_condition.rlock");
}

// ---------------------------------------------------------------------------------------------
// Barrier: rounds of three parties; each round hands out the indices 0, 1, 2 once each. The
// action decides, once per round, whether the budget is spent, so every party stops together.

template <class B>
void barrier_rounds(const char* name) {
  constexpr int parties = 3;
  std::atomic<bool> stop{false};
  std::atomic<long> rounds{0};
  std::atomic<long> index_sum{0};
  Stress* watched = nullptr;
  B barrier(parties, [&] {
    rounds.fetch_add(1);
    watched->tick();
    if (!watched->running()) stop = true;
  });
  Stress stress(name);
  watched = &stress;
  stress.run(parties, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 31);
    for (;;) {
      const std::size_t got = random.below(2) == 0 ? barrier.wait() : barrier.wait(60s);
      index_sum += static_cast<long>(got);
      if (stop.load()) return;
    }
  });
  EXPECT_GT(rounds.load(), 0);
  EXPECT_EQ(index_sum.load(), rounds.load() * (0 + 1 + 2));
}

TEST(Stress, Barrier) {
  barrier_rounds<concur::Barrier>("barrier");
}
TEST(Stress, MpBarrier) {
  barrier_rounds<concur::mp::Barrier>("mp_barrier");
}

// ---------------------------------------------------------------------------------------------
// Queues: producers and consumers with every kind of put and get, a checksum of item ids, and
// task accounting. Bounded queues are tiny, so both sides block all the time.

// An item whose move, now and then, is slow: it widens the window between claiming a slot in
// the ring and filling (or emptying) it, where the ring's wake-ups used to get lost.
struct SlowItem {
  std::uint64_t id = 0;
  SlowItem() = default;
  explicit SlowItem(std::uint64_t value) : id(value) {}
  SlowItem(SlowItem&& other) noexcept : id(other.id) {
    if ((id * 0x9E3779B97F4A7C15ull) >> 58 == 0) std::this_thread::sleep_for(1ms);  // 1 in 64
  }
  SlowItem& operator=(SlowItem&& other) noexcept {
    id = other.id;
    return *this;
  }
  bool operator<(const SlowItem& other) const { return id < other.id; }
};

// An item whose move may throw (as far as the type says): the queue uses its locked core.
struct ThrowingItem {
  std::uint64_t id = 0;
  ThrowingItem() = default;
  explicit ThrowingItem(std::uint64_t value) : id(value) {}
  ThrowingItem(ThrowingItem&& other) noexcept(false) : id(other.id) {}
  ThrowingItem& operator=(ThrowingItem&& other) noexcept(false) {
    id = other.id;
    return *this;
  }
};

struct Checksum {
  std::atomic<std::uint64_t> count{0}, sum{0}, mix{0};
  void add(std::uint64_t id) {
    count.fetch_add(1, std::memory_order_relaxed);
    sum.fetch_add(id, std::memory_order_relaxed);
    mix.fetch_xor(id * 0x9E3779B97F4A7C15ull, std::memory_order_relaxed);
  }
};

// Rounds: in each, the producers put one item per consumer between them and every consumer
// takes exactly one, then all meet at a std::barrier (the test's own synchronisation is not the
// library under test). So an item left in the queue while a consumer sleeps, or a free slot
// left while a producer sleeps, is never rescued by a later put or get: the round stalls on it
// and the detector reports it. The queues are smaller than a round, so both sides block.
template <class Q, class Item>
void queue_rounds(const char* name, Q& queue, int producers, int consumers, bool shut_down) {
  Checksum put, got;
  std::atomic<bool> stop{false};
  std::atomic<long> rounds{0};
  Stress stress(name);
  std::barrier meet(producers + consumers, [&]() noexcept {
    rounds.fetch_add(1, std::memory_order_relaxed);
    stress.tick();
    if (!stress.running()) stop = true;
  });
  stress.run(producers + consumers, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 41);
    for (std::uint64_t round = 1; !stop.load(); ++round) {
      if (index < producers) {
        for (int slot = index; slot < consumers; slot += producers) {
          const std::uint64_t id = (round << 20) | static_cast<std::uint64_t>(slot);
          const std::uint64_t how = random.below(4);
          if constexpr (requires { queue.try_put(Item(id)); }) {
            if (how == 2) {
              while (!queue.try_put(Item(id), std::chrono::microseconds(random.below(300)))) {
              }
            } else if (how == 3) {
              while (!queue.try_put(Item(id))) concur::detail::cpu_relax();
            } else {
              queue.put(Item(id));
            }
          } else {
            queue.put(Item(id));  // SimpleQueue: never blocks
          }
          put.add(id);
        }
      } else {
        std::optional<Item> item;
        while (!item) {
          switch (random.below(4)) {
            case 0:
            case 1:
              item.emplace(queue.get());
              break;
            case 2:
              item = queue.try_get(std::chrono::microseconds(random.below(300)));
              break;
            default:
              item = queue.try_get();
          }
        }
        got.add(item->id);
        if constexpr (requires { queue.task_done(); }) queue.task_done();
      }
      meet.arrive_and_wait();
    }
  });
  EXPECT_EQ(got.count.load(), put.count.load());
  EXPECT_EQ(got.sum.load(), put.sum.load());
  EXPECT_EQ(got.mix.load(), put.mix.load());
  EXPECT_GT(rounds.load(), 0);
  if (shut_down) {
    if constexpr (requires { queue.shutdown(); }) {
      EXPECT_TRUE(queue.join(10s)) << "task_done() was called for every item";
      queue.put(Item(1));
      queue.shutdown();
      EXPECT_EQ(queue.get().id, 1u);
      EXPECT_THROW((void)queue.get(), concur::ShutDown);
    }
  }
}

TEST(Stress, QueueRing) {
  concur::Queue<SlowItem> queue(2);
  queue_rounds<concur::Queue<SlowItem>, SlowItem>("queue.ring", queue, 2, 3, true);
}

TEST(Stress, QueueRingOneSlot) {
  concur::Queue<SlowItem> queue(1);
  queue_rounds<concur::Queue<SlowItem>, SlowItem>("queue.ring1", queue, 3, 2, true);
}

// mp::Queue: every participant (four threads here, and a rival process) puts a number and then
// gets one, with every kind of put and get; a ring of three slots makes puts wait as often as
// gets. The sums of what was put and what was got (plus what is left) must match. No
// participant can wait for ever: while one waits in get(), the items in the ring number at least
// the participants that are between their put and their get.
struct MpQueueTally {
  std::atomic<long> put_sum{0}, put_count{0}, got_sum{0}, got_count{0};
  std::atomic<int> stop{0};
};

// The item a round puts for `value`: the number, or for a queue of encoded items its digits
// after 0 to 7 spaces (so that items of many lengths wrap around a tiny arena).
template <class Item>
Item mp_item(long value, Random& random) {
  if constexpr (std::is_same_v<Item, std::string>) {
    return std::string(random.below(8), ' ') + std::to_string(value);
  } else {
    return value;
  }
}
template <class Item>
long mp_value(const Item& item) {
  if constexpr (std::is_same_v<Item, std::string>) {
    return std::stol(item);
  } else {
    return item;
  }
}

template <class Queue>
bool mp_queue_round(Queue& queue, Random& random, MpQueueTally& tally) {
  using Item = typename Queue::value_type;
  const long number = static_cast<long>(random.below(1000000)) + 1;
  const Item value = mp_item<Item>(number, random);
  bool put = false;
  switch (random.below(3)) {
    case 0:
      queue.put(value);
      put = true;
      break;
    case 1:
      put = queue.try_put(value);
      break;
    default:
      try {
        queue.put(value, std::chrono::microseconds(random.below(300)));
        put = true;
      } catch (const concur::Full&) {
      }
  }
  if (!put) return false;
  tally.put_sum += number;
  tally.put_count += 1;
  std::optional<Item> got;
  while (!got) {
    switch (random.below(3)) {
      case 0:
        got = queue.get();
        break;
      case 1:
        got = queue.try_get();
        break;
      default:
        try {
          got = queue.get(std::chrono::microseconds(random.below(300)));
        } catch (const concur::Empty&) {
        }
    }
  }
  tally.got_sum += mp_value(*got);
  tally.got_count += 1;
  return true;
}

template <class Queue>
void mp_queue_stress(const char* name, Queue& queue) {
  void* page = ::mmap(nullptr, sizeof(MpQueueTally), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  MpQueueTally& tally = *new (page) MpQueueTally;
  const pid_t rival = ::fork();
  if (rival == 0) {
    Random random(77);
    while (tally.stop.load(std::memory_order_relaxed) == 0)
      (void)mp_queue_round(queue, random, tally);
    std::_Exit(0);
  }
  Stress stress(name);
  stress.run(4, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 1);
    while (stress.running()) {
      (void)mp_queue_round(queue, random, tally);
      stress.tick();
    }
  });
  tally.stop.store(1);
  int status = 0;
  EXPECT_EQ(::waitpid(rival, &status, 0), rival);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  long left_sum = 0;
  long left_count = 0;
  while (auto item = queue.try_get()) {
    left_sum += mp_value(*item);
    ++left_count;
  }
  EXPECT_EQ(tally.put_count.load(), tally.got_count.load() + left_count);
  EXPECT_EQ(tally.put_sum.load(), tally.got_sum.load() + left_sum);
  EXPECT_GT(tally.got_count.load(), 0);
  ::munmap(page, sizeof(MpQueueTally));
}

TEST(Stress, MpQueue) {
  concur::mp::Queue<long> queue(3);
  mp_queue_stress("mp_queue", queue);
}

// Encoded items in an arena of 40 bytes: room for two to four of them (each 9 to 22 bytes),
// so that puts wait for bytes rather than slots, and items straddle the arena's end.
TEST(Stress, MpQueueOfEncodedItems) {
  concur::mp::Queue<std::string> queue(
      concur::mp::QueueOptions{.maxsize = 0, .capacity = 8, .bytes = 40});
  mp_queue_stress("mp_queue.encoded", queue);
}

TEST(Stress, QueueLockedBounded) {
  concur::Queue<ThrowingItem> queue(2);
  queue_rounds<concur::Queue<ThrowingItem>, ThrowingItem>("queue.locked", queue, 2, 3, true);
}

TEST(Stress, QueueUnbounded) {
  concur::Queue<SlowItem> queue;
  queue_rounds<concur::Queue<SlowItem>, SlowItem>("queue.unbounded", queue, 2, 3, true);
}

TEST(Stress, LifoQueue) {
  concur::LifoQueue<SlowItem> queue(2);
  queue_rounds<concur::LifoQueue<SlowItem>, SlowItem>("lifo_queue", queue, 2, 3, true);
}

TEST(Stress, PriorityQueue) {
  concur::PriorityQueue<SlowItem> queue(2);
  queue_rounds<concur::PriorityQueue<SlowItem>, SlowItem>("priority_queue", queue, 2, 3, true);
}

// SimpleQueue: unbounded, no task accounting and no shutdown; put() never blocks.
TEST(Stress, SimpleQueue) {
  concur::SimpleQueue<SlowItem> queue;
  queue_rounds<concur::SimpleQueue<SlowItem>, SlowItem>("simple_queue", queue, 2, 3, false);
}

// ---------------------------------------------------------------------------------------------
// ThreadPoolExecutor: rounds of a fresh pool of 1 to 3 workers that runs a fork-join tree
// (nested submit and wait, on fewer workers than the tree is wide), flat tasks of which some
// are cancelled, a wait() and an as_completed() from inside a task, and then a shutdown that
// races a thread still submitting. Checksums: every future is done when the pool is gone, a
// cancelled task never ran, and the results of the others add up to what the tasks did.

long pool_tree(concur::ThreadPoolExecutor& pool, int depth, std::atomic<long>& leaves) {
  if (depth == 0) {
    leaves.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }
  concur::Future<long> left =
      pool.submit([&pool, depth, &leaves] { return pool_tree(pool, depth - 1, leaves); });
  concur::Future<long> right =
      pool.submit([&pool, depth, &leaves] { return pool_tree(pool, depth - 1, leaves); });
  return (depth % 2 == 0 ? left.result() + right.result() : right.result() + left.result());
}

TEST(Stress, ThreadPool) {
  std::atomic<long> rounds{0};
  Stress stress("thread_pool");
  stress.run(2, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 71);
    while (stress.running()) {
      std::atomic<long> leaves{0}, flat_ran{0};
      std::vector<concur::Future<long>> flat;
      std::vector<concur::Future<long>> late;
      {
        concur::ThreadPoolExecutor pool(static_cast<int>(1 + random.below(3)));
        const int depth = static_cast<int>(2 + random.below(4));
        EXPECT_EQ(pool.submit([&] { return pool_tree(pool, depth, leaves); }).result(),
                  1L << depth);
        EXPECT_EQ(leaves.load(), 1L << depth);
        const int width = static_cast<int>(1 + random.below(6));
        EXPECT_EQ(pool.submit([&pool, width] {
                        std::vector<concur::Future<long>> children;
                        for (int i = 0; i < width; ++i) {
                          children.push_back(pool.submit([i] { return long{i}; }));
                        }
                        long sum = 0;
                        for (auto& f : concur::wait(children).done) sum += f.result();
                        for (auto& f : concur::as_completed(children)) sum += f.result();
                        return sum;
                      })
                      .result(),
                  long{width} * (width - 1));
        for (int i = 0; i < 12; ++i) {
          flat.push_back(pool.submit([&flat_ran, i] {
            flat_ran.fetch_add(i, std::memory_order_relaxed);
            return long{i};
          }));
          if (random.below(3) == 0) flat.back().cancel();
        }
        concur::Thread submitter([&] {
          try {
            for (int i = 0; i < 50; ++i) {
              late.push_back(pool.submit([&flat_ran] {
                flat_ran.fetch_add(100, std::memory_order_relaxed);
                return 100L;
              }));
            }
          } catch (const concur::UsageError&) {
            // shut down meanwhile: refused, as Python refuses
          }
        });
        submitter.start();
        if (random.below(2) == 0)
          std::this_thread::sleep_for(std::chrono::microseconds(random.below(200)));
        pool.shutdown(random.below(2) == 0, random.below(2) == 0);
        submitter.join();
      }
      long expected = 0;
      for (auto* list : {&flat, &late}) {
        for (auto& future : *list) {
          ASSERT_TRUE(future.done()) << "a future left pending after the pool was destroyed";
          if (!future.cancelled()) expected += future.result();
        }
      }
      EXPECT_EQ(flat_ran.load(), expected) << "a task ran although cancelled, or ran twice";
      rounds.fetch_add(1);
      stress.tick();
    }
  });
  EXPECT_GT(rounds.load(), 0);
}

// ThreadPoolBurst: as many tasks as workers, each waiting at a barrier for all the others, so
// the round completes only if every task is started while the others wait: a burst of
// submits must reach every worker, whether the workers were asleep, spinning, or busy with the
// previous round (a wake-up not passed on leaves a task queued behind a waiting one, and the
// barrier times out).
TEST(Stress, ThreadPoolBurst) {
  std::atomic<long> rounds{0};
  Stress stress("thread_pool_burst");
  stress.run(2, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 79);
    const int workers = 2 + index;
    concur::ThreadPoolExecutor pool(workers);
    while (stress.running()) {
      concur::Barrier barrier(workers);
      std::vector<concur::Future<std::size_t>> tasks;
      for (int i = 0; i < workers; ++i) {
        tasks.push_back(pool.submit([&barrier] { return barrier.wait(std::chrono::seconds(30)); }));
      }
      std::vector<int> seen(static_cast<std::size_t>(workers), 0);
      for (auto& task : tasks) {
        ASSERT_NO_THROW(++seen.at(task.result()))
            << "a task was not started while the others waited";
      }
      for (int count : seen) EXPECT_EQ(count, 1);
      // Let the workers go idle for a while, or not: spinning, or asleep.
      if (random.below(2) == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(random.below(100)));
      rounds.fetch_add(1);
      stress.tick();
    }
  });
  EXPECT_GT(rounds.load(), 0);
}

// ThreadPoolStartUp: ThreadPoolBurst's round on a fresh pool each time, so that every round
// runs while the pool is still starting its threads (started on demand, as Python's are): each
// task must get a thread of its own. A worker that looked for work while a batch of tasks was
// between the queue and another worker's deque once counted itself free, was taken for the
// next submit (so no thread was started for it), and then stole from the batch: one thread
// short, the barrier timed out (the schedule point thread_pool.worker.before_keep widens that
// window under exploration).
TEST(Stress, ThreadPoolStartUp) {
  std::atomic<long> rounds{0};
  Stress stress("thread_pool_start_up");
  stress.run(2, [&](int index) {
    int round = 0;
    while (stress.running()) {
      const int workers = 2 + (index + round++) % 3;
      concur::ThreadPoolExecutor pool(workers);
      concur::Barrier barrier(workers);
      std::vector<concur::Future<std::size_t>> tasks;
      for (int i = 0; i < workers; ++i) {
        tasks.push_back(pool.submit([&barrier] { return barrier.wait(std::chrono::seconds(5)); }));
      }
      for (auto& task : tasks) {
        ASSERT_NO_THROW((void)task.result()) << "a task of the burst got no thread of its own";
      }
      rounds.fetch_add(1);
      stress.tick();
    }
  });
  EXPECT_GT(rounds.load(), 0);
}

// WorkQueue: the pool's queue alone. Three threads push numbered nodes and two take them, by
// pop() and by pop_some() batches of any size (five threads: on a machine of few cores, pushers
// are preempted between their two steps). Each taker must see each pusher's nodes in the order
// they were pushed, never the queue's own stub node, and between them every node exactly once
// (a count and a sum of sequence numbers per pusher). pop_some() stores the head once per batch
// and stops at the stub: a first version took the stub for a node when a push had been between
// its two steps while a pop put the stub back (work_queue.pop.before_stub), leaving the stub
// between two nodes. That failed here in about one run of three on two cores.
struct NumberedNode : concur::detail::QueueNode {
  NumberedNode(int from, long number) : pusher(from), seq(number) {}
  int pusher;
  long seq;
};

TEST(Stress, WorkQueue) {
  concur::detail::WorkQueue queue;
  const auto* queue_begin = reinterpret_cast<const char*>(&queue);
  const auto* queue_end = queue_begin + sizeof(queue);
  constexpr int pushers = 3;
  std::atomic<int> pushing{pushers};
  std::atomic<long> pushed_count[pushers] = {};
  std::atomic<long> pushed_sum[pushers] = {};
  std::atomic<long> taken_count[pushers] = {};
  std::atomic<long> taken_sum[pushers] = {};
  Stress stress("work_queue");
  stress.run(5, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 83);
    if (index < pushers) {
      long seq = 0;
      while (stress.running()) {
        for (int i = static_cast<int>(1 + random.below(16)); i > 0; --i, ++seq) {
          queue.push(new NumberedNode(index, seq));
          pushed_sum[index].fetch_add(seq, std::memory_order_relaxed);
        }
        pushed_count[index].store(seq, std::memory_order_relaxed);
        stress.tick();
      }
      pushing.fetch_sub(1);
      return;
    }
    long last_seen[pushers] = {-1, -1, -1};
    auto take = [&](concur::detail::QueueNode* node) {
      const auto* at = reinterpret_cast<const char*>(node);
      ASSERT_FALSE(at >= queue_begin && at < queue_end) << "the queue's stub was taken as a node";
      auto* numbered = static_cast<NumberedNode*>(node);
      const int from = numbered->pusher;
      ASSERT_TRUE(from >= 0 && from < pushers);
      EXPECT_GT(numbered->seq, last_seen[from]) << "a pusher's nodes came out of order";
      last_seen[from] = numbered->seq;
      taken_count[from].fetch_add(1, std::memory_order_relaxed);
      taken_sum[from].fetch_add(numbered->seq, std::memory_order_relaxed);
      delete numbered;
    };
    // Until the pushers are done and the queue is empty (no push is in flight once they are).
    while (pushing.load() > 0 || queue.maybe_nonempty()) {
      if (random.below(2) == 0) {
        concur::detail::QueueNode* node = nullptr;
        if (queue.pop(node) == concur::detail::WorkQueue::PopStatus::got) take(node);
      } else {
        concur::detail::QueueNode* batch[8];
        const int count = queue.pop_some(batch, static_cast<int>(1 + random.below(8)));
        for (int i = 0; i < count; ++i) take(batch[i]);
      }
      stress.tick();
    }
  });
  for (int p = 0; p < pushers; ++p) {
    EXPECT_GT(pushed_count[p].load(), 0);
    EXPECT_EQ(taken_count[p].load(), pushed_count[p].load()) << "pusher " << p;
    EXPECT_EQ(taken_sum[p].load(), pushed_sum[p].load()) << "pusher " << p;
  }
}

// ---------------------------------------------------------------------------------------------
// Timer: rounds of short timers, some cancelled before they start (they must never fire), some
// cancelled while they wait (either outcome), the rest left alone (they must fire).

TEST(Stress, Timer) {
  std::atomic<long> rounds{0};
  Stress stress("timer");
  stress.run(2, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 61);
    while (stress.running()) {
      constexpr int count = 4;
      std::atomic<bool> fired[count] = {};
      int fate[count];  // 0 left alone, 1 cancelled before start, 2 cancelled while waiting
      std::vector<std::unique_ptr<concur::Timer>> timers;
      for (int i = 0; i < count; ++i) {
        fate[i] = static_cast<int>(random.below(3));
        timers.push_back(std::make_unique<concur::Timer>(
            std::chrono::microseconds(random.below(1500)), [&fired, i] { fired[i] = true; }));
        if (fate[i] == 1) timers.back()->cancel();
        timers.back()->start();
        if (fate[i] == 2) timers.back()->cancel();
      }
      for (int i = 0; i < count; ++i) {
        timers[static_cast<std::size_t>(i)]->join();
        if (fate[i] == 0) {
          EXPECT_TRUE(fired[i].load()) << "a timer left alone did not fire";
        } else if (fate[i] == 1) {
          EXPECT_FALSE(fired[i].load()) << "a cancelled timer fired";
        }
      }
      rounds.fetch_add(1);
      stress.tick();
    }
  });
  EXPECT_GT(rounds.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// local: threads come and go, each counting in its own value, while another thread visits every
// live thread's value; each thread sees only its own count.

TEST(Stress, Local) {
  // Atomic values: the combiner reads every live thread's value while its owner counts.
  concur::local<std::atomic<long>> counter;
  std::atomic<long> total{0};
  std::atomic<long> wrong{0};
  std::atomic<bool> done{false};
  Stress stress("local");
  std::thread combiner([&] {
    stress.watch_this_thread();
    while (!done.load()) {
      long seen = 0;
      counter.for_each([&](const std::atomic<long>& value) { seen += value.load(); });
      if (seen < 0) wrong.fetch_add(1);
      stress.tick();
    }
  });
  stress.run(2, [&](int index) {
    Random random(static_cast<std::uint64_t>(index) + 71);
    while (stress.running()) {
      std::vector<std::thread> batch;
      for (int t = 0; t < 3; ++t) {
        batch.emplace_back([&, steps = static_cast<long>(1 + random.below(200))] {
          for (long i = 0; i < steps; ++i) counter.get().fetch_add(1, std::memory_order_relaxed);
          if (counter.get().load() != steps) wrong.fetch_add(1);
          total.fetch_add(steps);
        });
      }
      for (std::thread& thread : batch) thread.join();
      stress.tick();
    }
  });
  done = true;
  combiner.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(total.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// No asymmetric fence on any path whose rate grows with load: a child process in which every
// membarrier(2) call kills the process (a seccomp filter, installed after start-up as a
// sandbox might) parks on a contended Lock, waits on idle queues, events, semaphores and
// conditions, and must exit normally. A library that fenced on those paths dies of SIGSYS; one
// that relied on a fence that silently failed could lose wake-ups instead.

void forbid_membarrier() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    ::_exit(3);
  }
}

void park_and_idle_everywhere() {
  concur::Lock lock;
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        concur::Guard hold(lock);
        ++counter;
        if (i % 512 == 0) std::this_thread::sleep_for(50us);  // make the others park
      }
    });
  }
  concur::Queue<int> ring(4);
  concur::Queue<int> locked_queue;
  concur::Semaphore sem(0);
  concur::Event event;
  threads.emplace_back([&] {
    for (int i = 0; i < 200; ++i) {
      (void)ring.get();
      (void)locked_queue.get();
      sem.acquire();
    }
    event.wait();
  });
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(100us);  // the consumer goes idle and sleeps
    ring.put(i);
    locked_queue.put(i);
    sem.release();
  }
  std::this_thread::sleep_for(1ms);
  event.set();
  for (std::thread& thread : threads) thread.join();
  if (counter != 4 * 20000) ::_exit(4);
}

TEST(NoMembarrier, ParkingAndIdleWaitsMakeNoMembarrierCall) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    forbid_membarrier();
    park_and_idle_everywhere();
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_FALSE(WIFSIGNALED(status))
      << "the child died of signal " << WTERMSIG(status)
      << (WTERMSIG(status) == SIGSYS ? " (it called membarrier)" : "");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: no seccomp here; 4: the lock lost an increment";
}

}  // namespace
