// Tests of concur/condition.hpp: Python's Condition semantics over an owned RLock and a shared
// Lock or RLock.

#include "concur/condition.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "concur/detail/schedule.hpp"
#include "concur/thread.hpp"
#include "lateness.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Condition;
using concur::Lock;
using concur::RLock;
using concur::UsageError;
using concur_test::eventually;
using concur_test::scaled;
using steady = std::chrono::steady_clock;

using concur_test::timed_wait_on_time;

// Issue 11, defect 3: a timed wait returns on time with CPU-bound threads on every core, over
// a Lock and over an RLock.
TEST(Condition, TimedWaitIsOnTimeWithCpuHogs) {
  if (CONCUR_SCHEDULE_EXPLORING) GTEST_SKIP() << "schedule points add delays on purpose";
  Lock lock;
  Condition shared(lock);
  EXPECT_TRUE(timed_wait_on_time("Condition<Lock>::wait", [&](auto timeout) {
    concur::Guard hold(lock);
    return shared.wait(timeout);
  }));
  Condition owned;
  EXPECT_TRUE(timed_wait_on_time("Condition<RLock>::wait", [&](auto timeout) {
    concur::Guard hold(owned);
    return owned.wait(timeout);
  }));
}

TEST(Condition, OwnsAnRLockOrSharesTheLockItIsGiven) {
  Condition owned;
  static_assert(std::is_same_v<decltype(owned), Condition<RLock>>);
  Lock lock;
  Condition shared(lock);
  static_assert(std::is_same_v<decltype(shared), Condition<Lock>>);
  EXPECT_EQ(&shared.lock_ref(), &lock);
  shared.acquire();
  EXPECT_TRUE(lock.locked());
  shared.release();
  EXPECT_FALSE(lock.locked());
  RLock rlock;
  Condition shared_r(rlock);
  static_assert(std::is_same_v<decltype(shared_r), Condition<RLock>>);
  {
    std::unique_lock<Condition<RLock>> hold(shared_r);
    EXPECT_TRUE(rlock.is_owned());
  }
  EXPECT_FALSE(rlock.locked());
}

TEST(Condition, WaitingOrNotifyingWithoutTheLockThrows) {
  Condition owned;
  EXPECT_THROW(owned.wait(), UsageError);
  EXPECT_THROW((void)owned.wait(1ms), UsageError);
  EXPECT_THROW(owned.notify(), UsageError);
  EXPECT_THROW(owned.notify_all(), UsageError);
  Lock lock;
  Condition shared(lock);
  EXPECT_THROW(shared.notify(), UsageError);
  EXPECT_THROW((void)shared.wait_for([] { return false; }, 1ms), UsageError);
  // An RLock held by another thread is not held by this one.
  std::thread other([&] {
    owned.acquire();
    std::this_thread::sleep_for(20ms);
    owned.release();
  });
  std::this_thread::sleep_for(5ms);
  EXPECT_THROW(owned.notify(), UsageError);
  other.join();
}

// Defect 4 of issue 11. A Condition over a plain Lock cannot tell who holds it (a Lock has no
// owner, as in Python), so wait() by a thread that does not hold it passes the check while
// another thread does, and then races that thread's release. When the release came first,
// wait() threw from releasing the lock after it had linked its node (on its stack) into the
// waiter list, and the node stayed there after the stack unwound: a later notify() wrote to
// dead stack memory (stack-use-after-return under ASan) and could spend a notification on it.
// Here a "holder" takes and releases the lock in a loop while a "misuser" that never takes it
// calls wait() for three seconds (two of each) (on the old code the race came within half a second,
// every run). Every misuse must throw the Condition's own UsageError (the old code let the lock's
// "release unlocked lock" out, after the node was linked: the misuser stops there), and
// afterwards the Condition must work for proper users: each notify(1) wakes one of two
// sleeping waiters (the old code crashed here, or spent a notification on the dead node).
TEST(Condition, WaitByANonHolderThatLosesARaceThrowsAndLeavesTheConditionIntact) {
  Lock lock;
  Condition cond(lock);
  concur_test::Watchdog watchdog("condition misuse", std::chrono::seconds(120));
  std::atomic<bool> stop{false};
  std::atomic<long> misuses{0};
  std::atomic<long> other_errors{0};
  std::atomic<int> misusers_left{2};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {  // a holder
      while (!stop.load()) {
        lock.acquire();
        try {
          lock.release();  // may fail: a misuser's wait() may have released it
        } catch (const UsageError&) {
        }
      }
    });
  }
  const auto give_up = steady::now() + std::chrono::seconds(3);
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {  // a misuser
      while (!stop.load() && steady::now() < give_up) {
        try {
          (void)cond.wait_until(steady::now() + std::chrono::microseconds(1));
          // It released a holder's lock and took it back: give it back.
          try {
            lock.release();
          } catch (const UsageError&) {
          }
        } catch (const UsageError& error) {
          ++misuses;
          if (std::string(error.what()) != "cannot wait on un-acquired lock") {
            ++other_errors;  // thrown from the lock's release, after the node was linked
            break;
          }
        }
      }
      if (--misusers_left == 0) stop = true;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(misuses.load(), 0);
  EXPECT_EQ(other_errors.load(), 0) << "wait() failed after queueing its node";
  // Proper use still works: two waiters sleep; each notify(1) must wake exactly one of them.
  std::atomic<int> queued{0};
  std::atomic<int> woken{0};
  std::array<std::atomic<std::uint64_t>, 2> ids{};
  std::vector<std::thread> waiters;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    waiters.emplace_back([&, i] {
      concur::Guard hold(lock);
      ids[i] = concur::get_native_id();
      ++queued;
      if (cond.wait(concur_test::generous)) ++woken;
    });
  }
  EXPECT_TRUE(eventually([&] {
    return queued.load() == 2 && std::all_of(ids.begin(), ids.end(), [](const auto& id) {
             return concur_test::thread_asleep(id.load());
           });
  }));
  for (int notified = 1; notified <= 2; ++notified) {
    {
      concur::Guard hold(lock);
      cond.notify(1);
    }
    EXPECT_TRUE(eventually([&] { return woken.load() == notified; }, std::chrono::seconds(5)))
        << "notify " << notified << " woke nobody";
  }
  for (auto& w : waiters) w.join();
  EXPECT_EQ(woken.load(), 2);
}

TEST(Condition, TimedWaitTimesOutNeverEarlyWithTheLockHeldAgain) {
  Condition cond;
  cond.acquire();
  for (auto timeout : {1ms, 30ms}) {
    const auto start = steady::now();
    EXPECT_FALSE(cond.wait(timeout));
    EXPECT_GE(steady::now() - start, timeout);
    EXPECT_TRUE(cond.lock_ref().is_owned());
  }
  EXPECT_FALSE(cond.wait(0s));
  EXPECT_FALSE(cond.wait(-1s));  // Python treats it as zero
  EXPECT_FALSE(cond.wait_until(steady::now() + 5ms));
  EXPECT_TRUE(cond.lock_ref().is_owned());
  cond.release();
}

TEST(Condition, WaitReleasesEveryLevelOfAnRLockAndRestoresThem) {
  Condition cond;
  cond.acquire();
  cond.acquire();
  cond.acquire();
  bool flag = false;
  std::thread setter([&] {
    cond.acquire();  // possible only while the waiter has released every level
    flag = true;
    cond.notify();
    cond.release();
  });
  cond.wait_for([&] { return flag; });
  cond.release();
  cond.release();
  EXPECT_TRUE(cond.lock_ref().is_owned());
  cond.release();
  EXPECT_FALSE(cond.lock_ref().locked());
  EXPECT_THROW(cond.release(), UsageError);
  setter.join();
}

TEST(Condition, WaitForReturnsThePredicatesLastValue) {
  Lock lock;
  Condition cond(lock);
  int value = 0;
  concur::Guard hold(lock);
  EXPECT_TRUE(cond.wait_for([&] { return true; }, 0s));
  const auto start = steady::now();
  EXPECT_FALSE(cond.wait_for([&] { return value > 0; }, 20ms));
  EXPECT_GE(steady::now() - start, 20ms);
  std::thread setter([&] {
    std::this_thread::sleep_for(10ms);
    concur::Guard inner(lock);
    value = 1;
    cond.notify_all();
  });
  EXPECT_TRUE(cond.wait_for([&] { return value > 0; }, concur_test::generous));
  setter.join();  // it released the lock before this thread could take it back
}

// Starts `count` threads that each wait once on `cond` (without timeout) and count themselves
// woken; returns once all of them are queued.
template <class L>
std::vector<std::thread> start_waiters(Condition<L>& cond, int count, std::atomic<int>& queued,
                                       std::atomic<int>& woken) {
  std::vector<std::thread> waiters;
  for (int i = 0; i < count; ++i) {
    waiters.emplace_back([&] {
      cond.acquire();
      ++queued;
      cond.wait();
      ++woken;
      cond.release();
    });
  }
  // A waiter counts itself queued before it waits, with the lock held; once this thread can
  // take the lock after all have counted, all of them are waiting.
  EXPECT_TRUE(eventually([&] { return queued.load() == count; }));
  cond.acquire();
  cond.release();
  return waiters;
}

TEST(Condition, NotifyNWakesExactlyN) {
  Lock lock;
  Condition cond(lock);
  std::atomic<int> queued{0};
  std::atomic<int> woken{0};
  auto waiters = start_waiters(cond, 5, queued, woken);
  cond.acquire();
  cond.notify(3);
  cond.release();
  EXPECT_TRUE(eventually([&] { return woken.load() == 3; }));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(woken.load(), 3);
  cond.acquire();
  cond.notify(0);
  cond.notify(-2);
  cond.release();
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(woken.load(), 3);
  cond.acquire();
  cond.notify_all();
  cond.release();
  for (auto& w : waiters) w.join();
  EXPECT_EQ(woken.load(), 5);
}

TEST(Condition, NotificationsAreNotRemembered) {
  Condition cond;
  cond.acquire();
  cond.notify();
  cond.notify_all();
  EXPECT_FALSE(cond.wait(20ms));
  cond.release();
}

TEST(Condition, NotifyGoesToTheNextWaiterWhenOneTimedOut) {
  // A waiter that gave up must not swallow a notification: notify(1) still wakes the other.
  // Each waiter counts itself with the lock held and then waits, which releases the lock; once
  // this thread takes the lock after the count, that waiter is queued.
  Lock lock;
  Condition cond(lock);
  std::atomic<int> queued{0};
  std::atomic<bool> patient_woken{false};
  const auto wait_until_queued = [&](int count) {
    EXPECT_TRUE(eventually([&] { return queued.load() == count; }));
    concur::Guard hold(lock);
  };
  std::thread impatient([&] {
    concur::Guard hold(lock);
    ++queued;
    (void)cond.wait(100ms);
  });
  wait_until_queued(1);
  std::thread patient([&] {
    concur::Guard hold(lock);
    ++queued;
    if (cond.wait(concur_test::generous)) patient_woken = true;
  });
  wait_until_queued(2);
  impatient.join();  // queued first, timed out while the patient one waits
  {
    concur::Guard hold(lock);
    cond.notify(1);
  }
  patient.join();
  EXPECT_TRUE(patient_woken);
}

TEST(ConditionStress, ProducerConsumerKeepsEveryItem) {
  Condition cond;
  std::deque<long> items;
  bool done = false;
  const long count = scaled(100000, 20);
  std::int64_t sum = 0;  // up to 5e9: more than a 32-bit long holds
  long received = 0;
  std::thread consumer([&] {
    for (;;) {
      concur::Guard hold(cond);
      cond.wait_for([&] { return !items.empty() || done; });
      while (!items.empty()) {
        sum += items.front();
        items.pop_front();
        ++received;
      }
      if (done) return;
    }
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < 3; ++p) {
    producers.emplace_back([&, p] {
      for (long i = p; i < count; i += 3) {
        concur::Guard hold(cond);
        items.push_back(i);
        cond.notify();
      }
    });
  }
  for (auto& p : producers) p.join();
  {
    concur::Guard hold(cond);
    done = true;
    cond.notify_all();
  }
  consumer.join();
  EXPECT_EQ(received, count);
  EXPECT_EQ(sum, std::int64_t{count} * (count - 1) / 2);
}

// The notifier starts once every waiter has waited once. Without that, on a busy machine the
// notifier (which takes the lock again at once, and Lock does not queue) could run all its
// rounds before any waiter got the lock, and no wait would race a notify at all: CI once saw
// that, the four threads never waiting in 8 ms.
TEST(ConditionStress, TimedWaitersAndNotifiersNeverHang) {
  Lock lock;
  Condition cond(lock);
  std::atomic<bool> stop{false};
  std::atomic<long> waits{0};
  std::atomic<int> started{0};
  concur_test::Watchdog watchdog("condition timed-wait stress", std::chrono::seconds(120));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bool first = true;
      while (!stop) {
        concur::Guard hold(lock);
        if (t % 2 == 0) {
          (void)cond.wait(std::chrono::microseconds(50 * (t + 1)));
        } else {
          (void)cond.wait_for([&] { return stop.load(); }, 1ms);
        }
        ++waits;
        if (first) {
          first = false;
          started.fetch_add(1);
        }
      }
    });
  }
  std::thread notifier([&] {
    while (started.load() < 4) std::this_thread::yield();
    for (int i = 0; i < scaled(20000, 10); ++i) {
      concur::Guard hold(lock);
      if (i % 5 == 0) {
        cond.notify_all();
      } else {
        cond.notify(i % 3);
      }
    }
  });
  notifier.join();
  stop = true;
  {
    concur::Guard hold(lock);
    cond.notify_all();
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(waits.load(), 4);  // every waiter waited, and none hung (the watchdog)
}

}  // namespace
