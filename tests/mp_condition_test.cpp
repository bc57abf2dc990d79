// Tests of concur::mp::Condition and concur::mp::Barrier: Python's semantics across processes,
// and what happens when a waiter, a holder or a party is killed.

#include "concur/mp_condition.hpp"
#include "concur/mp_barrier.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "concur/shared_ctypes.hpp"
#include "forked.hpp"

namespace {

namespace mp = concur::mp;
using concur_test::exit_status;
using concur_test::exit_status_within;
using concur_test::fork_child;
using namespace std::chrono_literals;

// Polls a shared counter until it reaches `value`; aborts the process after 30 s.
void wait_until(const mp::RawValue<int>& counter, int value) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (counter.value() < value) {
    if (std::chrono::steady_clock::now() > give_up) std::abort();
    std::this_thread::sleep_for(1ms);
  }
}

// ---------------------------------------------------------------------------------------------
// Condition

TEST(MpCondition, NotifyWakesAWaiterInAnotherProcess) {
  mp::Condition ready;
  mp::RawValue<int> items(0);
  const pid_t consumer = fork_child([&] {
    std::scoped_lock hold(ready);
    if (!ready.wait_for([&] { return items.value() > 0; }, 30s)) std::_Exit(2);
    items.set_value(items.value() - 1);
  });
  std::this_thread::sleep_for(20ms);
  {
    std::scoped_lock hold(ready);
    items.set_value(1);
    ready.notify();
  }
  EXPECT_EQ(exit_status_within(consumer, 30s), 0);
  EXPECT_EQ(items.value(), 0);
}

// Four processes wait, in a known order; notify(2) wakes exactly the two oldest, and
// notify_all() the other two.
TEST(MpCondition, NotifyNWakesExactlyNOldestFirst) {
  mp::Lock lock;
  mp::Condition cond(lock);
  mp::RawValue<int> waiting(0);
  mp::RawArray<int> order(4);  // order[k]: the rank of the k-th process to wake, 1-based
  mp::RawValue<int> woken(0);
  std::vector<pid_t> children;
  for (int k = 0; k < 4; ++k) {
    children.push_back(fork_child([&, k] {
      std::scoped_lock hold(lock);
      waiting.set_value(waiting.value() + 1);
      if (!cond.wait(30s)) std::_Exit(2);
      woken.set_value(woken.value() + 1);
      order[static_cast<std::size_t>(k)] = woken.value();
    }));
    wait_until(waiting, k + 1);  // child k waits before child k + 1 starts
  }
  {
    std::scoped_lock hold(lock);
    cond.notify(2);
  }
  wait_until(woken, 2);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(woken.value(), 2) << "notify(2) woke more than two";
  EXPECT_EQ(order[0] + order[1], 1 + 2) << "not the two oldest";
  {
    std::scoped_lock hold(lock);
    cond.notify_all();
  }
  for (pid_t child : children) EXPECT_EQ(exit_status_within(child, 30s), 0);
  EXPECT_EQ(woken.value(), 4);
}

TEST(MpCondition, WaitAndNotifyWithoutTheLockThrow) {
  mp::Condition cond;
  EXPECT_THROW((void)cond.wait(1ms), concur::UsageError);
  EXPECT_THROW(cond.notify(), concur::UsageError);
  EXPECT_THROW(cond.notify_all(), concur::UsageError);
  // Held by another thread: still not the caller's.
  cond.acquire();
  std::thread other([&] { EXPECT_THROW(cond.notify(), concur::UsageError); });
  other.join();
  cond.release();
}

TEST(MpCondition, ATimedWaitTimesOutHoldingTheLockAgainWithEveryLevel) {
  mp::Condition cond;  // an RLock of its own
  cond.acquire();
  cond.acquire();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(cond.wait(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  EXPECT_FALSE(cond.wait(0s));
  cond.release();
  EXPECT_TRUE(cond.lock_ref().is_owned()) << "a level was lost";
  cond.release();
  EXPECT_FALSE(cond.lock_ref().locked());
}

TEST(MpCondition, MoreWaitersThanSlotsThrowLengthError) {
  mp::Condition cond(mp::ConditionOptions{.max_waiters = 1});
  std::thread first([&] {
    std::scoped_lock hold(cond);
    (void)cond.wait(2s);
  });
  std::this_thread::sleep_for(100ms);  // the first thread waits, in the only slot
  {
    std::scoped_lock hold(cond);
    EXPECT_THROW((void)cond.wait(10ms), std::length_error);
    EXPECT_TRUE(cond.lock_ref().is_owned());
    cond.notify();
  }
  first.join();
  EXPECT_THROW(mp::Condition(mp::ConditionOptions{.max_waiters = 0}), std::invalid_argument);
}

// The heart of the kill-safety: A waits first, B after; A is killed while it waits. notify(1)
// must wake B: a dead waiter never swallows a notification.
TEST(MpCondition, AWaiterKilledWhileWaitingDoesNotSwallowANotification) {
  mp::Lock lock;
  mp::Condition cond(lock);
  mp::RawValue<int> waiting(0);
  auto waiter = [&] {
    std::scoped_lock hold(lock);
    waiting.set_value(waiting.value() + 1);
    if (!cond.wait(30s)) std::_Exit(2);
  };
  const pid_t a = fork_child(waiter);
  wait_until(waiting, 1);
  const pid_t b = fork_child(waiter);
  wait_until(waiting, 2);
  std::this_thread::sleep_for(20ms);  // B is asleep in wait()
  ::kill(a, SIGKILL);
  EXPECT_EQ(exit_status(a), 128 + SIGKILL);
  {
    std::scoped_lock hold(lock);
    cond.notify(1);
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(exit_status_within(b, 30s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "B waited for its timeout";
}

// A holder of the lock killed while a waiter sleeps: the waiter's wait() throws OwnerDied,
// holding the lock and no longer waiting, and the condition goes on working.
TEST(MpCondition, AWaiterLearnsThatTheHolderDied) {
  mp::Lock lock;
  mp::Condition cond(lock);
  mp::RawValue<int> held(0);
  const pid_t holder = fork_child([&] {
    std::this_thread::sleep_for(50ms);  // the parent waits by now
    lock.acquire();
    held.set_value(1);
    for (;;) ::pause();
  });
  std::thread killer([&] {
    wait_until(held, 1);
    ::kill(holder, SIGKILL);
  });
  std::unique_lock hold(lock);
  EXPECT_THROW((void)cond.wait(300ms), concur::OwnerDied);
  killer.join();
  EXPECT_EQ(exit_status(holder), 128 + SIGKILL);
  // The lock is held here, and the condition works.
  std::thread other([&] {
    std::scoped_lock inner(lock);
    cond.notify();
  });
  EXPECT_TRUE(cond.wait(30s));
  other.join();
}

// A waiter sleeps in the kernel: it wakes every 200 ms to look at the lock and the slots, and
// uses next to no CPU.
TEST(MpCondition, AnIdleWaiterUsesNoCpu) {
  mp::Condition cond;
  const pid_t waiter = fork_child([&] {
    std::scoped_lock hold(cond);
    if (cond.wait(1500ms)) std::_Exit(2);
  });
  double cpu = 0;
  ASSERT_EQ(exit_status(waiter, cpu), 0);
  EXPECT_LT(cpu, 0.3) << "a waiter of 1.5 s used " << cpu << " s of CPU";
}

TEST(MpCondition, PlacedAndFound) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 16384});
  mp::Condition<mp::RLock> placed(mp::place, block, 0);
  mp::Lock lock;
  const std::size_t second = 8192;
  mp::Condition<mp::Lock> shared(mp::place, block, second, lock);
  mp::RawValue<int> waiting(0);
  const pid_t child = fork_child([&] {
    mp::SharedMemory again(block.name());
    mp::Condition<mp::RLock> found(mp::find, again, 0);
    std::scoped_lock hold(found);
    waiting.set_value(1);
    if (!found.wait(30s)) std::_Exit(2);
  });
  wait_until(waiting, 1);
  {
    std::scoped_lock hold(placed);
    placed.notify();
  }
  EXPECT_EQ(exit_status_within(child, 30s), 0);
  EXPECT_THROW(mp::Condition<mp::Lock>(mp::find, block, 0, lock), std::invalid_argument);
  EXPECT_THROW(mp::Condition<mp::RLock>(mp::find, block, second), std::invalid_argument);
  EXPECT_THROW(mp::Lock(mp::find, block, 0), std::invalid_argument);
  EXPECT_GE(mp::Condition<>::shared_size(), 128 * 48u);
  block.unlink();
}

// Kill at random points: a producer and a consumer process pass numbered items through a
// one-place buffer guarded by two conditions over one lock, and a third process, producer or
// consumer at random, is killed at a random moment, 300 times. The survivors never hang (every
// wait has a 60 s deadline, far beyond need, and gives up with exit code 3), and the items keep
// flowing after every kill.
TEST(MpCondition, KilledAtRandomNobodyHangs) {
  mp::Lock lock;
  mp::Condition not_full(lock);
  mp::Condition not_empty(lock);
  mp::RawValue<long> slot(-1);  // -1: empty
  mp::RawValue<long> next(0);   // the next item to put
  mp::RawValue<long> taken(0);  // items taken
  mp::RawValue<int> stop(0);
  // One step under the lock: 0 to go on, 1 when done. Every OwnerDied (from taking the lock,
  // or from a wait taking it back) leaves the lock held; the repair is a notify_all() on both
  // conditions, since the dead holder may have been about to notify, and the step is tried
  // again.
  auto repair = [&] {
    not_full.notify_all();
    not_empty.notify_all();
  };
  auto run = [&](auto step) {
    for (;;) {
      try {
        lock.acquire();
      } catch (const concur::OwnerDied&) {
        repair();
      }
      int result = 0;
      try {
        result = step();
      } catch (const concur::OwnerDied&) {
        repair();
      }
      lock.release();
      if (result == 1) return;
    }
  };
  std::function<void()> put_all = [&] {
    run([&] {
      if (!not_full.wait_for([&] { return slot.value() < 0 || stop.value() != 0; }, 60s)) {
        std::_Exit(3);
      }
      if (stop.value() != 0) return 1;
      slot.set_value(next.value());
      next.set_value(next.value() + 1);
      not_empty.notify();
      return 0;
    });
  };
  std::function<void()> take_all = [&] {
    run([&] {
      if (!not_empty.wait_for([&] { return slot.value() >= 0 || stop.value() != 0; }, 60s)) {
        std::_Exit(3);
      }
      if (stop.value() != 0) return 1;
      slot.set_value(-1);
      taken.set_value(taken.value() + 1);
      not_full.notify();
      return 0;
    });
  };
  const pid_t producer = fork_child(put_all);
  const pid_t consumer = fork_child(take_all);
  std::mt19937 random(7);
  for (int kill = 0; kill < 300; ++kill) {
    const long before = taken.value();
    const pid_t victim = fork_child(random() % 2 == 0 ? take_all : put_all);
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
    ::kill(victim, SIGKILL);
    EXPECT_EQ(exit_status(victim), 128 + SIGKILL);
    // The survivors go on: more items pass within 30 s (usually within microseconds).
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (taken.value() < before + 10 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(100us);
    }
    if (taken.value() < before + 10) {
      ADD_FAILURE() << "no progress after kill " << kill;
      break;
    }
  }
  try {
    lock.acquire();
  } catch (const concur::OwnerDied&) {
  }
  stop.set_value(1);
  not_full.notify_all();
  not_empty.notify_all();
  lock.release();
  EXPECT_EQ(exit_status_within(producer, 60s), 0);
  EXPECT_EQ(exit_status_within(consumer, 60s), 0);
}

// ---------------------------------------------------------------------------------------------
// Barrier

// Three processes, 200 rounds: each round hands out 0, 1 and 2 once, and the action runs once
// per round.
TEST(MpBarrier, RoundsAcrossProcesses) {
  mp::RawValue<long> actions(0);
  mp::RawValue<long> index_sum(0);
  mp::Lock sum_lock;
  mp::Barrier barrier(3, [&] { actions.set_value(actions.value() + 1); });
  constexpr int rounds = 200;
  auto party = [&] {
    for (int r = 0; r < rounds; ++r) {
      const std::size_t index = barrier.wait(30s);
      std::scoped_lock hold(sum_lock);
      index_sum.set_value(index_sum.value() + static_cast<long>(index));
    }
  };
  const pid_t a = fork_child(party);
  const pid_t b = fork_child(party);
  party();
  EXPECT_EQ(exit_status_within(a, 60s), 0);
  EXPECT_EQ(exit_status_within(b, 60s), 0);
  EXPECT_EQ(actions.value(), rounds);
  EXPECT_EQ(index_sum.value(), rounds * (0 + 1 + 2));
  EXPECT_EQ(barrier.n_waiting(), 0u);
  EXPECT_FALSE(barrier.broken());
}

TEST(MpBarrier, ATimeoutBreaksItForEveryWaiterUntilReset) {
  mp::Barrier barrier(3);
  mp::RawValue<int> broken_seen(0);
  const pid_t waiter = fork_child([&] {
    try {
      (void)barrier.wait(30s);
    } catch (const concur::BrokenBarrierError&) {
      broken_seen.set_value(1);
    }
  });
  while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
  EXPECT_THROW((void)barrier.wait(20ms), concur::BrokenBarrierError);
  EXPECT_EQ(exit_status_within(waiter, 30s), 0);
  EXPECT_EQ(broken_seen.value(), 1);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW((void)barrier.wait(), concur::BrokenBarrierError);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  mp::Barrier one(1);
  EXPECT_EQ(one.wait(), 0u);
  EXPECT_THROW(mp::Barrier(0), std::invalid_argument);
  EXPECT_THROW(mp::Barrier(-1), std::invalid_argument);
}

TEST(MpBarrier, AbortAndResetReleaseWaitersBroken) {
  mp::Barrier barrier(2);
  for (int round = 0; round < 2; ++round) {
    const pid_t waiter = fork_child([&] {
      try {
        (void)barrier.wait(30s);
        std::_Exit(2);
      } catch (const concur::BrokenBarrierError&) {
      }
    });
    while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
    if (round == 0) {
      barrier.abort();
      EXPECT_TRUE(barrier.broken());
      barrier.reset();
    } else {
      barrier.reset();
    }
    EXPECT_EQ(exit_status_within(waiter, 30s), 0);
    EXPECT_FALSE(barrier.broken());
  }
}

// The table has parties + 4 slots, and a thread of a finished round holds its slot until it has
// run to give it back. Six such threads, stopped (SIGSTOP) right after their rounds, hold all
// six slots of a Barrier(2); the next arrival waits for a slot, and gets one once a stopped
// thread goes on. With a short timeout instead, the waiting arrival breaks the barrier.
TEST(MpBarrier, AnArrivalWaitsForASlotHeldByAFinishedRound) {
  mp::Barrier barrier(2);
  std::vector<pid_t> stopped;
  for (int k = 0; k < 6; ++k) {
    const pid_t party = fork_child([&] { (void)barrier.wait(30s); });
    while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
    ::kill(party, SIGSTOP);
    (void)barrier.wait(30s);  // completes the round; `party` cannot give its slot back yet
    stopped.push_back(party);
  }
  mp::RawValue<int> broke(0);
  const pid_t hasty = fork_child([&] {
    try {
      (void)barrier.wait(300ms);
    } catch (const concur::BrokenBarrierError&) {
      broke.set_value(1);
    }
  });
  EXPECT_EQ(exit_status_within(hasty, 30s), 0);
  EXPECT_EQ(broke.value(), 1) << "an arrival with no slot must time out, breaking the barrier";
  barrier.reset();
  const pid_t patient = fork_child([&] { (void)barrier.wait(30s); });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(barrier.n_waiting(), 0u) << "it found no free slot, so it has not arrived";
  ::kill(stopped[0], SIGCONT);  // gives its slot back, and wakes the arrival
  while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
  EXPECT_LE(barrier.wait(30s), 1u);
  EXPECT_EQ(exit_status_within(patient, 30s), 0);
  for (pid_t party : stopped) {
    ::kill(party, SIGCONT);
    EXPECT_EQ(exit_status_within(party, 30s), 0);
  }
}

// A party killed while it waits has arrived: the round completes without it.
TEST(MpBarrier, APartyKilledWhileWaitingStillCounts) {
  mp::Barrier barrier(3);
  const pid_t victim = fork_child([&] { (void)barrier.wait(); });
  while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
  ::kill(victim, SIGKILL);
  EXPECT_EQ(exit_status(victim), 128 + SIGKILL);
  const pid_t other = fork_child([&] { (void)barrier.wait(30s); });
  const std::size_t index = barrier.wait(30s);
  EXPECT_EQ(exit_status_within(other, 30s), 0);
  EXPECT_LE(index, 2u);
  // And the dead party's slot is free again: many rounds of two live parties and a third.
  for (int r = 0; r < 20; ++r) {
    const pid_t a = fork_child([&] { (void)barrier.wait(30s); });
    const pid_t b = fork_child([&] { (void)barrier.wait(30s); });
    (void)barrier.wait(30s);
    EXPECT_EQ(exit_status_within(a, 30s), 0);
    EXPECT_EQ(exit_status_within(b, 30s), 0);
  }
}

// A process killed inside the barrier's lock breaks the barrier. The waiter asleep in the round
// learns it by itself, at its next look (within the 200 ms recheck), not at its 30 s timeout;
// nobody else touches the barrier meanwhile.
TEST(MpBarrier, ADeathInsideItsLockBreaksIt) {
  mp::Barrier barrier(2, [] {
    for (;;) ::pause();  // the last arrival stops inside the lock, in the action
  });
  mp::RawValue<std::int64_t> waited_ms(-1);
  const pid_t waiter = fork_child([&] {
    try {
      (void)barrier.wait(30s);
      std::_Exit(2);
    } catch (const concur::BrokenBarrierError&) {
    }
  });
  while (barrier.n_waiting() != 1) std::this_thread::sleep_for(1ms);
  const pid_t last = fork_child([&] { (void)barrier.wait(); });  // runs the endless action
  std::this_thread::sleep_for(100ms);
  ::kill(last, SIGKILL);
  EXPECT_EQ(exit_status(last), 128 + SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(exit_status_within(waiter, 30s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the waiter slept to its timeout";
  EXPECT_TRUE(barrier.broken());
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
}

}  // namespace
