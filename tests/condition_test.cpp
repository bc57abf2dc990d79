// Tests of concur/condition.hpp: Python's Condition semantics over an owned RLock and a shared
// Lock or RLock.

#include "concur/condition.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

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
  long sum = 0;
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
  EXPECT_EQ(sum, count * (count - 1) / 2);
}

TEST(ConditionStress, TimedWaitersAndNotifiersNeverHang) {
  Lock lock;
  Condition cond(lock);
  std::atomic<bool> stop{false};
  std::atomic<long> waits{0};
  concur_test::Watchdog watchdog("condition timed-wait stress", std::chrono::seconds(120));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!stop) {
        concur::Guard hold(lock);
        if (t % 2 == 0) {
          (void)cond.wait(std::chrono::microseconds(50 * (t + 1)));
        } else {
          (void)cond.wait_for([&] { return stop.load(); }, 1ms);
        }
        ++waits;
      }
    });
  }
  std::thread notifier([&] {
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
  EXPECT_GT(waits.load(), 0);
}

}  // namespace
