// Timed calls of the core primitives at the far ends of the clocks (defect 5 of the trust
// review): a deadline of time_point<steady_clock, hours>::max() means "never", not an overflow
// into the past, and min() means "already passed", not undefined behaviour. UBSan checks the
// arithmetic in the sanitizer presets.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "concur/condition.hpp"
#include "concur/lock.hpp"
#include "concur/rlock.hpp"
#include "concur/semaphore.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using std::chrono::hours;
using std::chrono::seconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;
using std::chrono::time_point;

// Runs `release` on another thread after a short delay and returns how long `wait` took.
template <class Wait, class Release>
steady_clock::duration released_later(Wait wait, Release release) {
  const auto start = steady_clock::now();
  std::thread other([&] {
    std::this_thread::sleep_for(30ms);
    release();
  });
  wait();
  const auto took = steady_clock::now() - start;
  other.join();
  return took;
}

TEST(FarDeadline, LockTryLockUntilMaxWaitsForTheRelease) {
  concur::Lock lock;
  lock.lock();
  bool got = false;
  const auto took =
      released_later([&] { got = lock.try_lock_until(time_point<steady_clock, hours>::max()); },
                     [&] { lock.unlock(); });
  EXPECT_TRUE(got);
  EXPECT_GE(took, 25ms);
  lock.unlock();
}

TEST(FarDeadline, LockTryLockUntilMinFailsAtOnce) {
  concur::Lock lock;
  lock.lock();
  EXPECT_FALSE(lock.try_lock_until(time_point<steady_clock, hours>::min()));
  EXPECT_FALSE(lock.try_lock_until(time_point<system_clock, hours>::min()));
  lock.unlock();
  EXPECT_TRUE(lock.try_lock_until(time_point<steady_clock, hours>::min()));
  lock.unlock();
}

TEST(FarDeadline, RLockAndSemaphoreAtTheFarEnds) {
  concur::RLock rlock;
  std::thread([&] {
    rlock.acquire();
    EXPECT_TRUE(rlock.try_lock_until(time_point<steady_clock, hours>::max()));  // its own
    rlock.release();
    rlock.release();
  }).join();
  concur::Semaphore empty(0);
  EXPECT_FALSE(empty.try_acquire_until(time_point<steady_clock, hours>::min()));
  bool got = false;
  released_later([&] { got = empty.try_acquire_until(time_point<system_clock, seconds>::max()); },
                 [&] { empty.release(); });
  EXPECT_TRUE(got);
}

TEST(FarDeadline, ConditionWaitUntilMaxWaitsForTheNotify) {
  concur::Condition cond;
  std::atomic<bool> notified{false};
  cond.acquire();
  bool result = false;
  const auto took = released_later(
      [&] {
        while (!notified.load()) result = cond.wait_until(time_point<steady_clock, seconds>::max());
      },
      [&] {
        concur::Guard hold(cond);
        notified = true;
        cond.notify_all();
      });
  cond.release();
  EXPECT_TRUE(result);
  EXPECT_GE(took, 25ms);
}

}  // namespace
