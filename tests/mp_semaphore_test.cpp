// Tests for concur/mp_semaphore.hpp and concur/mp_event.hpp: mp::Semaphore,
// mp::BoundedSemaphore and mp::Event between processes, a waker that dies before its wake-up
// call, and placement.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "concur/mp_event.hpp"
#include "concur/mp_semaphore.hpp"
#include "concur/shared_ctypes.hpp"
#include "forked.hpp"

namespace {

namespace mp = concur::mp;
using concur_test::exit_status;
using concur_test::exit_status_within;
using concur_test::fork_child;
using concur_test::poll_until;
using namespace std::chrono_literals;

// Four processes of two threads each pass through a BoundedSemaphore(2): never more than two
// inside at once, and every pass is counted.
TEST(MpSemaphore, LimitsHowManyAreInsideAcrossProcesses) {
  mp::BoundedSemaphore slots(2);
  struct Counts {
    std::atomic<long> inside{0};
    std::atomic<long> most{0};
    std::atomic<long> passes{0};
  };
  void* page =
      ::mmap(nullptr, sizeof(Counts), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  Counts& counts = *new (page) Counts;
  auto work = [&] {
    auto one = [&] {
      for (int i = 0; i < 2000; ++i) {
        std::scoped_lock hold(slots);
        const long now = counts.inside.fetch_add(1) + 1;
        long most = counts.most.load();
        while (now > most && !counts.most.compare_exchange_weak(most, now)) {
        }
        if (i % 32 == 0) std::this_thread::yield();
        counts.inside.fetch_sub(1);
        counts.passes.fetch_add(1);
      }
    };
    std::thread other(one);
    one();
    other.join();
  };
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) children.push_back(fork_child(work));
  for (pid_t child : children) EXPECT_EQ(exit_status_within(child, 30s), 0);
  EXPECT_LE(counts.most.load(), 2);
  EXPECT_GE(counts.most.load(), 1);
  EXPECT_EQ(counts.passes.load(), 4L * 2 * 2000);
  EXPECT_EQ(slots.get_value(), 2);
  ::munmap(page, sizeof(Counts));
}

TEST(MpSemaphore, ReleaseOfNWakesNWaitersInOtherProcesses) {
  mp::Semaphore semaphore(0);
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(fork_child([&] {
      if (!semaphore.acquire(30s)) std::_Exit(2);
    }));
  }
  std::this_thread::sleep_for(50ms);  // let them sleep
  semaphore.release(3);
  for (pid_t child : children) EXPECT_EQ(exit_status_within(child, 30s), 0);
  EXPECT_EQ(semaphore.get_value(), 0);
}

TEST(MpSemaphore, ArgumentsTimeoutsAndTheBound) {
  EXPECT_THROW(mp::Semaphore(-1), std::invalid_argument);
  mp::BoundedSemaphore bounded(1);
  EXPECT_THROW(bounded.release(), concur::UsageError);
  EXPECT_THROW(bounded.release(0), std::invalid_argument);
  EXPECT_TRUE(bounded.acquire(false));
  EXPECT_FALSE(bounded.try_lock());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(bounded.acquire(30ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  bounded.release();
  EXPECT_EQ(bounded.get_value(), 1);
  mp::BoundedSemaphore none(0);  // as Python's: every release is one too many
  EXPECT_THROW(none.release(), concur::UsageError);
  mp::Semaphore open(0);
  open.release(5);
  EXPECT_EQ(open.get_value(), 5);
  EXPECT_THROW(open.release(std::int64_t{1} << 31), std::overflow_error);
}

// A unit has no owner: a process killed holding one keeps it, as in Python. What is promised
// is only that nothing hangs: a timed acquire returns at its timeout.
TEST(MpSemaphore, AUnitTakenByAKilledProcessStaysTaken) {
  mp::BoundedSemaphore slot(1);
  mp::RawValue<int> ready(0);
  const pid_t child = fork_child([&] {
    slot.acquire();
    ready.set_value(1);
    ::pause();
  });
  while (ready.value() == 0) std::this_thread::sleep_for(100us);
  ::kill(child, SIGKILL);
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  EXPECT_FALSE(slot.acquire(50ms));
  EXPECT_EQ(slot.get_value(), 0);
}

TEST(MpSemaphore, AnIdleWaiterUsesNoCpu) {
  mp::Semaphore semaphore(0);
  const pid_t waiter = fork_child([&] {
    if (semaphore.acquire(1500ms)) std::_Exit(2);
  });
  double cpu = 0;
  ASSERT_EQ(exit_status(waiter, cpu), 0);
  EXPECT_LT(cpu, 0.3) << "a waiter of 1.5 s used " << cpu << " s";
}

// The death of a releaser between its change to the count and its wake-up call, done by hand:
// the count is raised in the shared memory with no wake. The sleeping waiter still takes the
// unit, at its next look (within SharedWaits::recheck_interval), not at its 30 s timeout.
TEST(MpSemaphore, AWakeUpThatNeverCameCostsAtMostTheRecheckInterval) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
  mp::Semaphore semaphore(mp::place, block, 0, 0);
  mp::RawValue<std::int64_t> waited_ms(-1);
  mp::RawValue<int> running(0);
  const pid_t waiter = fork_child([&] {
    const auto start = std::chrono::steady_clock::now();
    running.set_value(1);
    if (!semaphore.acquire(30s)) std::_Exit(2);
    waited_ms.set_value(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count());
  });
  // From when the child runs: a forked child may start late (under ThreadSanitizer).
  ASSERT_TRUE(poll_until([&] { return running.value() == 1; }));
  std::this_thread::sleep_for(50ms);
  // The count is the first word of the state, which follows the 64-byte header.
  auto* count = reinterpret_cast<std::atomic<std::uint32_t>*>(block.buf().data() + 64);
  count->fetch_add(1);  // and no wake-up call
  EXPECT_EQ(exit_status_within(waiter, 30s), 0);
  EXPECT_GE(waited_ms.value(), 40);
  EXPECT_LT(waited_ms.value(), 5000) << "the waiter slept past its recheck interval";
}

TEST(MpSemaphore, PlacedByOneProcessFoundByAnother) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
  mp::BoundedSemaphore semaphore(mp::place, block, 0, 3);
  const std::string name = block.name();
  const pid_t child = fork_child([&] {
    mp::SharedMemory mine(name);
    mp::BoundedSemaphore same(mp::find, mine);
    if (same.get_value() != 3) std::_Exit(2);
    for (int i = 0; i < 3; ++i) same.acquire();
    try {
      mp::Event wrong(mp::find, mine);
      std::_Exit(3);
    } catch (const std::invalid_argument&) {
    }
  });
  EXPECT_EQ(exit_status(child), 0);
  EXPECT_EQ(semaphore.get_value(), 0);
  semaphore.release(3);
  EXPECT_THROW(semaphore.release(), concur::UsageError) << "the bound is shared too";
}

TEST(MpEvent, SetWakesWaitersInEveryProcess) {
  mp::Event event;
  EXPECT_FALSE(event.is_set());
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(fork_child([&] {
      if (!event.wait(30s)) std::_Exit(2);
    }));
  }
  std::this_thread::sleep_for(50ms);
  event.set();
  for (pid_t child : children) EXPECT_EQ(exit_status_within(child, 30s), 0);
  EXPECT_TRUE(event.is_set());
  EXPECT_TRUE(event.wait());
  event.clear();
  EXPECT_FALSE(event.is_set());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(event.wait(30ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
}

TEST(MpEvent, AWakeUpThatNeverCameCostsAtMostTheRecheckInterval) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
  mp::Event event(mp::place, block);
  mp::RawValue<std::int64_t> waited_ms(-1);
  mp::RawValue<int> running(0);
  const pid_t waiter = fork_child([&] {
    const auto start = std::chrono::steady_clock::now();
    running.set_value(1);
    if (!event.wait(30s)) std::_Exit(2);
    waited_ms.set_value(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count());
  });
  // From when the child runs: a forked child may start late (under ThreadSanitizer).
  ASSERT_TRUE(poll_until([&] { return running.value() == 1; }));
  std::this_thread::sleep_for(50ms);
  auto* word = reinterpret_cast<std::atomic<std::uint32_t>*>(block.buf().data() + 64);
  word->fetch_or(1);  // the flag, with no wake-up call
  EXPECT_EQ(exit_status_within(waiter, 30s), 0);
  EXPECT_TRUE(event.is_set());
  EXPECT_GE(waited_ms.value(), 40);
  EXPECT_LT(waited_ms.value(), 5000) << "the waiter slept past its recheck interval";
}

}  // namespace
