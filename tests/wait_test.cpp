// Tests of the detail layer: the wait/wake seam (both implementations, whichever the build
// selects), deadline arithmetic and time-bounded spinning.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::detail::steady_clock;
using concur::detail::wait_word;
using concur_test::scaled;

// Each implementation of the seam behind one interface, so the same tests run on all of them.
struct SelectedWait {
  static void wait_on(const wait_word& w, std::uint32_t v) { concur::detail::wait_on(w, v); }
  static bool wait_on_until(const wait_word& w, std::uint32_t v, concur::detail::steady_time d) {
    return concur::detail::wait_on_until(w, v, d);
  }
  static void wake_one(wait_word& w) { concur::detail::wake_one(w); }
  static void wake_all(wait_word& w) { concur::detail::wake_all(w); }
};

struct PortableWait {
  static void wait_on(const wait_word& w, std::uint32_t v) {
    concur::detail::portable::wait_on(w, v);
  }
  static bool wait_on_until(const wait_word& w, std::uint32_t v, concur::detail::steady_time d) {
    return concur::detail::portable::wait_on_until(w, v, d);
  }
  static void wake_one(wait_word& w) { concur::detail::portable::wake_one(w); }
  static void wake_all(wait_word& w) { concur::detail::portable::wake_all(w); }
};

#if defined(__linux__)
struct FutexWait {
  static void wait_on(const wait_word& w, std::uint32_t v) { concur::detail::futex::wait_on(w, v); }
  static bool wait_on_until(const wait_word& w, std::uint32_t v, concur::detail::steady_time d) {
    return concur::detail::futex::wait_on_until(w, v, d);
  }
  static void wake_one(wait_word& w) { concur::detail::futex::wake_one(w); }
  static void wake_all(wait_word& w) { concur::detail::futex::wake_all(w); }
};
using WaitImplementations = ::testing::Types<SelectedWait, PortableWait, FutexWait>;
#else
using WaitImplementations = ::testing::Types<SelectedWait, PortableWait>;
#endif

template <class Impl>
class WaitTest : public ::testing::Test {};
TYPED_TEST_SUITE(WaitTest, WaitImplementations);

TYPED_TEST(WaitTest, ReturnsAtOnceWhenTheWordDiffers) {
  wait_word word{1};
  TypeParam::wait_on(word, 0);  // would block forever if it ignored the value
  EXPECT_TRUE(TypeParam::wait_on_until(word, 0, steady_clock::now() + 10s));
}

TYPED_TEST(WaitTest, TimedWaitTimesOutNeverEarly) {
  wait_word word{0};
  for (auto timeout : {1ms, 20ms}) {
    const auto start = steady_clock::now();
    const auto deadline = start + timeout;
    bool woken = true;
    // Spurious returns are allowed; the loop keeps waiting until the deadline reports itself.
    while (woken) woken = TypeParam::wait_on_until(word, 0, deadline);
    EXPECT_GE(steady_clock::now(), deadline);
    EXPECT_LT(steady_clock::now() - start, concur_test::generous);
  }
}

TYPED_TEST(WaitTest, DeadlineInThePastTimesOutAtOnce) {
  wait_word word{0};
  EXPECT_FALSE(TypeParam::wait_on_until(word, 0, steady_clock::now() - 1s));
}

TYPED_TEST(WaitTest, WakeOneWakesAnUntimedWaiter) {
  wait_word word{0};
  std::atomic<bool> woke{false};
  concur_test::Watchdog watchdog("untimed waiter", 60s);
  std::thread waiter([&] {
    while (word.load() == 0) TypeParam::wait_on(word, 0);
    woke = true;
  });
  std::this_thread::sleep_for(5ms);
  word.store(1);
  TypeParam::wake_one(word);
  waiter.join();
  EXPECT_TRUE(woke);
}

TYPED_TEST(WaitTest, WakeOneWakesATimedWaiterBeforeItsDeadline) {
  wait_word word{0};
  std::atomic<bool> timed_out{false};
  concur_test::Watchdog watchdog("timed waiter", 60s);
  std::thread waiter([&] {
    const auto deadline = steady_clock::now() + 30s;
    while (word.load() == 0) {
      if (!TypeParam::wait_on_until(word, 0, deadline)) timed_out = true;
    }
  });
  std::this_thread::sleep_for(5ms);
  word.store(1);
  TypeParam::wake_one(word);
  waiter.join();
  EXPECT_FALSE(timed_out);
}

TYPED_TEST(WaitTest, WakeAllWakesEveryWaiterTimedOrNot) {
  wait_word word{0};
  std::atomic<int> woken{0};
  concur_test::Watchdog watchdog("wake_all", 60s);
  std::vector<std::thread> waiters;
  for (int i = 0; i < 6; ++i) {
    waiters.emplace_back([&, timed = i % 2 == 0] {
      while (word.load() == 0) {
        if (timed) {
          (void)TypeParam::wait_on_until(word, 0, steady_clock::now() + 30s);
        } else {
          TypeParam::wait_on(word, 0);
        }
      }
      ++woken;
    });
  }
  std::this_thread::sleep_for(10ms);
  word.store(1);
  TypeParam::wake_all(word);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken.load(), 6);
}

// Two threads hand a token back and forth through one word; a lost wake-up hangs the exchange
// and the watchdog reports the word. Half the waits are timed, to exercise both paths.
TYPED_TEST(WaitTest, PingPongLosesNoWakeUp) {
  wait_word turn{0};
  const std::uint32_t rounds = static_cast<std::uint32_t>(scaled(20000));
  concur_test::Watchdog watchdog("ping-pong", 120s,
                                 [&] { return "turn=" + std::to_string(turn.load()); });
  auto player = [&](std::uint32_t parity) {
    for (std::uint32_t i = parity; i < 2 * rounds; i += 2) {
      for (std::uint32_t now = turn.load(); now != i; now = turn.load()) {
        if (i % 4 < 2) {
          TypeParam::wait_on(turn, now);
        } else {
          (void)TypeParam::wait_on_until(turn, now, steady_clock::now() + 10s);
        }
      }
      turn.store(i + 1);
      TypeParam::wake_one(turn);
    }
  };
  std::thread a(player, 0u);
  std::thread b(player, 1u);
  a.join();
  b.join();
  EXPECT_EQ(turn.load(), 2 * rounds);
}

TEST(WaitSeam, WaitWhileEqualReportsChangeOrTimeout) {
  wait_word word{7};
  EXPECT_FALSE(concur::detail::wait_while_equal(word, 7, steady_clock::now() + 5ms));
  EXPECT_TRUE(concur::detail::wait_while_equal(word, 8));
  std::thread changer([&] {
    std::this_thread::sleep_for(5ms);
    word.store(9);
    concur::detail::wake_all(word);
  });
  EXPECT_TRUE(concur::detail::wait_while_equal(word, 7, steady_clock::now() + 60s));
  changer.join();
  EXPECT_EQ(word.load(), 9u);
}

TEST(WaitSeam, SelectedPathMatchesTheBuild) {
#if defined(__linux__) && !defined(CONCUR_PORTABLE_WAIT)
  EXPECT_TRUE(concur::detail::uses_futex);
#else
  EXPECT_FALSE(concur::detail::uses_futex);
#endif
}

TEST(Deadline, ZeroAndNegativeTimeoutsAreAlreadyDue) {
  const auto before = steady_clock::now();
  const auto zero = concur::detail::deadline_after(0s);
  const auto negative = concur::detail::deadline_after(-5s);
  const auto after = steady_clock::now();
  EXPECT_LE(zero, after);
  EXPECT_LE(negative, after);
  EXPECT_GE(negative, before);
  EXPECT_TRUE(concur::detail::expired(negative));
}

TEST(Deadline, HugeTimeoutsSaturateToNever) {
  EXPECT_EQ(concur::detail::deadline_after(std::chrono::hours::max()), concur::detail::never);
  EXPECT_EQ(concur::detail::deadline_after(std::chrono::duration<double>(1e300)),
            concur::detail::never);
  EXPECT_FALSE(concur::detail::expired(concur::detail::never));
}

TEST(Deadline, NanCountsAsZero) {
  const std::chrono::duration<double> nan(std::numeric_limits<double>::quiet_NaN());
  const auto deadline = concur::detail::deadline_after(nan);
  EXPECT_LE(deadline, steady_clock::now());
}

TEST(Deadline, ConversionRoundsUp) {
  using concur::detail::to_steady_duration;
  EXPECT_GE(to_steady_duration(std::chrono::duration<double, std::nano>(0.25)),
            std::chrono::nanoseconds(1));
  EXPECT_EQ(to_steady_duration(1500us), std::chrono::microseconds(1500));
}

TEST(Deadline, ForeignClockDeadlineIsTranslated) {
  const auto target = std::chrono::system_clock::now() + 50ms;
  const auto steady = concur::detail::to_steady_deadline(target);
  EXPECT_GT(steady, steady_clock::now() + 10ms);
  EXPECT_LT(steady, steady_clock::now() + 10s);
}

TEST(Deadline, RequireNonNegativeRefusesNegativeAndNan) {
  using concur::detail::require_non_negative;
  EXPECT_NO_THROW(require_non_negative(0s, "t"));
  EXPECT_NO_THROW(require_non_negative(2ms, "t"));
  EXPECT_THROW(require_non_negative(-1ms, "t"), std::invalid_argument);
  EXPECT_THROW(require_non_negative(std::chrono::duration<double>(std::nan("")), "t"),
               std::invalid_argument);
}

// Defect 5 of the trust review: deadlines at the far end of a clock overflowed. A coarse
// time_point's max() became an instant in the past (a try_lock_until that returned false at once,
// a Condition::wait_until that returned after 3 ms), and its min() overflowed in the comparison.
TEST(Deadline, FarEndsOfACoarseSteadyClockSaturate) {
  using namespace std::chrono;
  EXPECT_EQ(concur::detail::to_steady_deadline(time_point<steady_clock, hours>::max()),
            concur::detail::never);
  EXPECT_EQ(concur::detail::to_steady_deadline(time_point<steady_clock, seconds>::max()),
            concur::detail::never);
  EXPECT_TRUE(concur::detail::expired(
      concur::detail::to_steady_deadline(time_point<steady_clock, hours>::min())));
  EXPECT_TRUE(concur::detail::reached(time_point<steady_clock, hours>::min()));
  EXPECT_FALSE(concur::detail::reached(time_point<steady_clock, hours>::max()));
}

TEST(Deadline, FarEndsOfAForeignClockSaturate) {
  using namespace std::chrono;
  using std::chrono::steady_clock;
  EXPECT_EQ(concur::detail::to_steady_deadline(time_point<system_clock, seconds>::max()),
            concur::detail::never);
  // A far but representable instant stays in the far future (some two centuries away).
  EXPECT_GT(concur::detail::to_steady_deadline(system_clock::time_point::max()),
            steady_clock::now() + hours(24 * 365 * 100));
  EXPECT_TRUE(concur::detail::expired(
      concur::detail::to_steady_deadline(time_point<system_clock, hours>::min())));
  EXPECT_TRUE(concur::detail::reached(time_point<system_clock, hours>::min()));
}

// SpinWait: the budget is a time, and the deadline cuts it short.
TEST(SpinWait, StopsWhenItsBudgetIsSpent) {
  const auto start = steady_clock::now();
  concur::detail::SpinWait spin(concur::detail::never, 200us);
  while (spin.pause()) {
  }
  const auto spent = steady_clock::now() - start;
  EXPECT_GE(spent, 200us);
  EXPECT_LT(spent, concur_test::generous);
  EXPECT_GT(spin.rounds(), concur::detail::SpinWait::rounds_before_clock);
}

TEST(SpinWait, NeverSpinsPastTheDeadline) {
  concur::detail::SpinWait past(steady_clock::now() - 1ms, 1s);
  std::uint32_t rounds = 0;
  while (past.pause()) ++rounds;
  // Only the first few rounds, which do not read the clock (a few microseconds at most).
  EXPECT_LE(rounds, concur::detail::SpinWait::rounds_before_clock);

  // The far past end of the clock (a saturated deadline) must not overflow (UBSan checks).
  concur::detail::SpinWait far_past(concur::detail::steady_time::min(), 1s);
  rounds = 0;
  while (far_past.pause()) ++rounds;
  EXPECT_LE(rounds, concur::detail::SpinWait::rounds_before_clock);

  const auto deadline = steady_clock::now() + 2ms;
  concur::detail::SpinWait soon(deadline, std::chrono::hours(1));
  while (soon.pause()) {
  }
  EXPECT_GE(steady_clock::now(), deadline);
  EXPECT_LT(steady_clock::now() - deadline, concur_test::generous);
}

TEST(SpinWait, SpinForReportsWhetherTheConditionCameTrue) {
  int calls = 0;
  EXPECT_TRUE(concur::detail::spin_for([&] { return ++calls == 3; }, concur::detail::never, 1s));
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(concur::detail::spin_for([] { return false; }, concur::detail::never, 50us));
}

// SpacedSpin: each look comes at least an interval after the last, the interval doubling up to
// eight times the first; the budget and the deadline end it as SpinWait's do.
TEST(SpacedSpin, LooksAreSpacedByAnIntervalThatDoublesUpToEightTimes) {
  const auto first = 100us;
  concur::detail::SpacedSpin spin(concur::detail::never, 3ms, first);
  std::vector<steady_clock::duration> pauses;
  for (auto before = steady_clock::now(); spin.pause();) {
    const auto after = steady_clock::now();
    pauses.push_back(after - before);
    before = after;
  }
  // 100 + 200 + 400 + 800 + 800 = 2300 us; a sixth look would end at 3100 us, after the budget
  // (it is cut short at its end). A slow machine only makes the looks fewer.
  ASSERT_FALSE(pauses.empty());
  EXPECT_LE(pauses.size(), 6u);
  auto interval = steady_clock::duration(first);
  for (std::size_t i = 0; i + 1 < pauses.size(); ++i) {
    EXPECT_GE(pauses[i], interval) << "look " << i;
    interval = std::min(interval * 2, steady_clock::duration(first * 8));
  }
}

TEST(SpacedSpin, NeverSpinsPastTheDeadline) {
  concur::detail::SpacedSpin past(steady_clock::now() - 1ms, 1s, 1us);
  EXPECT_FALSE(past.pause());
  // The far past end of the clock (a saturated deadline) must not overflow (UBSan checks).
  concur::detail::SpacedSpin far_past(concur::detail::steady_time::min(), 1s, 1us);
  EXPECT_FALSE(far_past.pause());

  const auto deadline = steady_clock::now() + 2ms;
  concur::detail::SpacedSpin soon(deadline, std::chrono::hours(1), 1us);
  while (soon.pause()) {
  }
  EXPECT_GE(steady_clock::now(), deadline);
  EXPECT_LT(steady_clock::now() - deadline, concur_test::generous);
}

}  // namespace
