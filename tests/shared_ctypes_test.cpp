// Tests for concur/shared_ctypes.hpp: mp::Value, mp::Array, mp::RawValue and mp::RawArray
// between processes, their locks' holders dying, and placement in a named SharedMemory.

#include "concur/shared_ctypes.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "forked.hpp"

namespace {

namespace mp = concur::mp;
using concur_test::exit_status;
using concur_test::fork_child;
using concur_test::poll_until;
using namespace std::chrono_literals;

void wait_until(const mp::RawValue<int>& flag, int value) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (flag.value() != value) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "a child never got there";
    std::this_thread::sleep_for(100us);
  }
}

// Python's lesson: two processes of two threads each add 1 to a Value under its lock, with a
// separate read and write; the total is exact.
TEST(MpValue, IncrementsUnderItsLockFromTwoProcessesAreNeverLost) {
  mp::Value<long> counter(0);
  constexpr int rounds = 10000;
  auto work = [&] {
    auto one_thread = [&] {
      for (int i = 0; i < rounds; ++i) {
        std::scoped_lock hold(counter.get_lock());
        const long seen = counter.value();
        if (i % 64 == 0) std::this_thread::yield();
        counter.set_value(seen + 1);
      }
    };
    std::thread other(one_thread);
    one_thread();
    other.join();
  };
  const pid_t child = fork_child(work);
  work();
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(counter.value(), 4L * rounds);
}

TEST(MpValue, TheValueItselfAndTheWrapperAsALock) {
  mp::Value<double> value(1.5);
  EXPECT_EQ(value.value(), 1.5);
  {
    std::scoped_lock hold(value);  // Python's `with value:`
    value.get_obj() *= 2;
    EXPECT_TRUE(value.get_lock().is_owned());
  }
  EXPECT_FALSE(value.get_lock().locked());
  EXPECT_EQ(value.value(), 3.0);
  struct Point {
    int x, y;
  };
  mp::Value<Point> point(Point{1, 2});
  const pid_t child = fork_child([&] { point.set_value(Point{3, 4}); });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(point.value().x, 3);
  EXPECT_EQ(point.value().y, 4);
}

// A process killed while holding the Value's lock: the next value() and set_value() report it
// once, release the lock, and the Value is usable again.
TEST(MpValue, AHolderKilledIsReportedAndTheLockFreedAgain) {
  mp::Value<long> value(10);
  mp::RawValue<int> ready(0);
  const pid_t child = fork_child([&] {
    value.get_lock().acquire();
    value.get_obj() = 11;
    ready.set_value(1);
    ::pause();
  });
  wait_until(ready, 1);
  ::kill(child, SIGKILL);
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  EXPECT_THROW((void)value.value(), concur::OwnerDied);
  EXPECT_FALSE(value.get_lock().locked()) << "value() releases the lock before it throws";
  EXPECT_EQ(value.value(), 11);
  // set_value() on a lock whose holder died: stores, releases, reports.
  const pid_t again = fork_child([&] {
    value.get_lock().acquire();
    ready.set_value(2);
    ::pause();
  });
  wait_until(ready, 2);
  ::kill(again, SIGKILL);
  EXPECT_EQ(exit_status(again), 128 + SIGKILL);
  EXPECT_THROW(value.set_value(12), concur::OwnerDied);
  EXPECT_EQ(value.value(), 12);
}

// A child updates two fields of one Value together under its lock, and is killed at random
// moments, 300 times. The parent never hangs, and finds the two fields equal whenever it is not
// told that the holder died. (Each random moment counts from when the child says it runs: CI
// once saw all 300 children killed before their first update under ThreadSanitizer.)
TEST(MpValue, AHolderKilledAtRandomNeverLeavesAHalfUpdateUnreported) {
  struct Pair {
    long a, b;
  };
  mp::Value<Pair> pair(Pair{0, 0});
  mp::RawValue<int> running(0);  // the trial whose child runs
  std::mt19937 random(1203);
  int reported = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      running.set_value(trial + 1);
      for (;;) {
        try {
          pair.get_lock().acquire();
        } catch (const concur::OwnerDied&) {
          pair.get_obj().b = pair.get_obj().a;
        }
        ++pair.get_obj().a;
        ++pair.get_obj().b;
        pair.get_lock().release();
      }
    }
    const bool started = poll_until([&] { return running.value() == trial + 1; });
    if (started) std::this_thread::sleep_for(std::chrono::microseconds(random() % 300));
    ::kill(child, SIGKILL);
    ASSERT_EQ(::waitpid(child, nullptr, 0), child);
    ASSERT_TRUE(started) << "trial " << trial << ": the child never started";
    try {
      ASSERT_TRUE(pair.get_lock().acquire(10s)) << "trial " << trial << ": hung";
    } catch (const concur::OwnerDied&) {
      ++reported;
      pair.get_obj().b = pair.get_obj().a;  // the repair
    }
    EXPECT_EQ(pair.get_obj().a, pair.get_obj().b) << "trial " << trial;
    pair.get_lock().release();
  }
  EXPECT_GT(pair.value().a, 0);
  std::printf("deaths while holding the lock: %d of 300\n", reported);
}

TEST(MpRawValue, IsSharedWithForkedChildrenWithoutALock) {
  mp::RawValue<long> value(7);
  EXPECT_EQ(value.value(), 7);
  const pid_t child = fork_child([&] { value.set_value(value.value() * 6); });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(value.value(), 42);
  value.get_obj() = 1;
  EXPECT_EQ(value.value(), 1);
}

TEST(MpArray, ItemsWrittenByOneProcessAreReadByAnother) {
  mp::Array<int> array(8);
  EXPECT_EQ(array.size(), 8u);
  EXPECT_EQ(array.to_vector(), std::vector<int>(8, 0));
  const pid_t child = fork_child([&] {
    for (std::size_t i = 0; i < array.size(); ++i) array.set(i, int(i * i));
  });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(array.to_vector(), (std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49}));
  EXPECT_EQ(array[3], 9);
  EXPECT_THROW((void)array[8], std::out_of_range);
  EXPECT_THROW(array.set(8, 1), std::out_of_range);
  mp::Array<double> listed{1.0, 2.5};
  EXPECT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1], 2.5);
  {
    std::scoped_lock hold(listed);
    for (double& x : listed.get_obj()) x *= 2;
  }
  EXPECT_EQ(listed.to_vector(), (std::vector<double>{2.0, 5.0}));
}

TEST(MpArray, ConcurrentIncrementsOfEveryItemUnderTheLock) {
  mp::Array<long> array(16);
  constexpr int rounds = 2000;
  auto work = [&] {
    for (int i = 0; i < rounds; ++i) {
      std::scoped_lock hold(array.get_lock());
      for (long& item : array.get_obj()) item += 1;
    }
  };
  const pid_t child = fork_child(work);
  work();
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(array.to_vector(), std::vector<long>(16, 2L * rounds));
}

TEST(MpRawArray, ItemsAreSharedWithoutALock) {
  mp::RawArray<unsigned char> bytes(5);
  mp::RawArray<int> listed{3, 1, 2};
  const pid_t child = fork_child([&] {
    for (unsigned char& b : bytes) b = 'x';
    listed[0] = 30;
  });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "xxxxx");
  EXPECT_EQ(listed[0], 30);
  EXPECT_EQ(listed.get_obj().size(), 3u);
}

// --- placement in a named SharedMemory ---

TEST(MpSharedCtypesPlacement, ObjectsPlacedByOneProcessAreFoundByAnother) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
  constexpr std::size_t value_at = 0;
  constexpr std::size_t array_at = 512;
  constexpr std::size_t raw_at = 1024;
  mp::Value<long> value(mp::place, block, value_at, 5);
  mp::Array<int> array(mp::place, block, array_at, 10);
  mp::RawArray<char> raw(mp::place, block, raw_at, 3);
  const std::string name = block.name();
  const pid_t child = fork_child([&] {
    mp::SharedMemory mine(name);
    mp::Value<long> v(mp::find, mine, value_at);
    mp::Array<int> a(mp::find, mine, array_at);  // its length comes from the block
    mp::RawArray<char> r(mp::find, mine, raw_at);
    if (a.size() != 10 || r.size() != 3 || v.value() != 5) std::_Exit(2);
    v.set_value(6);
    a.set(9, 99);
    r[0] = 'k';
    // Another item type, or another kind, is refused.
    try {
      mp::Array<long> wrong(mp::find, mine, array_at);
      std::_Exit(3);
    } catch (const std::invalid_argument&) {
    }
    try {
      mp::Value<int> wrong(mp::find, mine, value_at);
      std::_Exit(4);
    } catch (const std::invalid_argument&) {
    }
    try {
      mp::RawArray<int> wrong(mp::find, mine, array_at);
      std::_Exit(5);
    } catch (const std::invalid_argument&) {
    }
    try {
      mp::Value<double> wrong(mp::find, mine, value_at);  // the same size as long
      std::_Exit(6);
    } catch (const std::invalid_argument&) {
    }
  });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(value.value(), 6);
  EXPECT_EQ(array[9], 99);
  EXPECT_EQ(raw[0], 'k');
  EXPECT_THROW(mp::Array<int>(mp::place, block, 4096 - 64, 100), std::invalid_argument);
  EXPECT_THROW(mp::Value<long>(mp::find, block, 2048), std::invalid_argument);
}

}  // namespace
