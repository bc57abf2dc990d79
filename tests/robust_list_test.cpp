// Tests for concur/detail/robust_list.hpp and the way concur/detail/robust_lock.hpp uses it: the
// kernel's robust futex list, which concur's process-shared locks share with glibc's robust
// pthread mutexes, and the "operation in progress" that a lock keeps while it is held.

#include "concur/detail/robust_list.hpp"

#include <gtest/gtest.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/robust_lock.hpp"
#include "concur/mp_condition.hpp"
#include "concur/mp_lock.hpp"
#include "forked.hpp"

namespace {

namespace mp = concur::mp;
using concur_test::exit_status;
using concur_test::fork_child;
using namespace std::chrono_literals;

// A robust (not process-shared) pthread mutex: glibc links it into the same list as concur's
// locks, with its own steps.
class GlibcRobustMutex {
 public:
  GlibcRobustMutex() {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mutex_, &attributes);
    pthread_mutexattr_destroy(&attributes);
  }
  ~GlibcRobustMutex() { pthread_mutex_destroy(&mutex_); }
  GlibcRobustMutex(const GlibcRobustMutex&) = delete;
  GlibcRobustMutex& operator=(const GlibcRobustMutex&) = delete;

  void lock() { ASSERT_EQ(pthread_mutex_lock(&mutex_), 0); }
  void unlock() { ASSERT_EQ(pthread_mutex_unlock(&mutex_), 0); }

  // Whether the last holder ended holding it (and leaves it free again either way).
  bool holder_died() {
    const int got = pthread_mutex_trylock(&mutex_);
    EXPECT_TRUE(got == 0 || got == EOWNERDEAD) << got;
    if (got == EOWNERDEAD) pthread_mutex_consistent(&mutex_);
    pthread_mutex_unlock(&mutex_);
    return got == EOWNERDEAD;
  }

 private:
  pthread_mutex_t mutex_;
};

// Whether the last holder of `lock` ended holding it (and leaves it free again either way).
bool holder_died(mp::Lock& lock) {
  bool died = false;
  try {
    EXPECT_TRUE(lock.acquire(10s)) << "a lock nobody holds stayed taken";
  } catch (const concur::OwnerDied&) {
    died = true;
  }
  lock.release();
  return died;
}

// A thread takes and releases two concur locks and two glibc robust mutexes in a random order,
// sometimes waits on a Condition (whose waiter slot is linked into the same list), and ends
// holding some of them. Whatever the order, every one it held at its end must be reported to
// the next acquirer, and none other: a link that glibc's removal reads (an entry's __prev) left
// wrong by concur, or the reverse, loses an entry from the list or corrupts a neighbour's.
TEST(RobustList, ConcurLocksAndGlibcRobustMutexesShareTheListInAnyOrder) {
  std::mt19937 random(20261204);
  for (int script = 0; script < 400; ++script) {
    mp::Lock a;
    mp::Lock b;
    mp::Condition<mp::Lock> on_a(a);
    GlibcRobustMutex m;
    GlibcRobustMutex n;
    std::array<bool, 4> held{};
    std::string steps;
    const int length = 1 + static_cast<int>(random() % 12);
    std::vector<unsigned> choices(static_cast<std::size_t>(length));
    for (unsigned& choice : choices) choice = static_cast<unsigned>(random());
    std::thread([&] {
      for (unsigned choice : choices) {
        const std::size_t which = choice % 5;
        if (which == 4) {  // a timed wait on the Condition, if the thread holds a
          if (held[0]) {
            steps += "w";
            (void)on_a.wait(1ms);
          }
          continue;
        }
        // The glibc mutexes in one order only (m before n), as ThreadSanitizer's lock-order
        // check asks; concur's locks, which it does not see, in any.
        if (which == 2 && !held[2] && held[3]) continue;
        steps += (held[which] ? "-" : "+") + std::to_string(which);
        switch (which) {
          case 0:
            held[0] ? a.release() : a.lock();
            break;
          case 1:
            held[1] ? b.release() : b.lock();
            break;
          case 2:
            held[2] ? m.unlock() : m.lock();
            break;
          default:
            held[3] ? n.unlock() : n.lock();
            break;
        }
        held[which] = !held[which];
      }
    }).join();
    SCOPED_TRACE("script " + std::to_string(script) + ": " + steps);
    EXPECT_EQ(holder_died(a), held[0]);
    EXPECT_EQ(holder_died(b), held[1]);
    EXPECT_EQ(m.holder_died(), held[2]);
    EXPECT_EQ(n.holder_died(), held[3]);
    if (testing::Test::HasFailure()) return;
  }
}

// A thread that forks while it holds a lock keeps that lock's slot as its operation in progress
// (robust_lock.hpp). The child's copy of that must be forgotten: the child does not hold the
// lock, and if it put other memory at that address, the kernel would otherwise write
// FUTEX_OWNER_DIED into it when the child ends, wherever that memory holds the child's id.
TEST(RobustList, AChildForkedByAHolderForgetsTheLockItsParentHolds) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto map_page = [&] {
    void* at = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(at, MAP_FAILED);
    return static_cast<char*>(at);
  };
  char* const lock_page = map_page();
  char* const other_page = map_page();  // shared with the child: what it puts in place of the lock
  auto* lock = new (lock_page) concur::detail::RobustLock;
  ASSERT_EQ(lock->acquire_until(concur::detail::never), concur::detail::RobustAcquired::taken);
  // RobustLock is its slot, whose word is the kernel's: the offset where the child writes.
  const std::size_t word_at = static_cast<std::size_t>(
      reinterpret_cast<char*>(&reinterpret_cast<concur::detail::RobustSlot*>(lock)->word()) -
      lock_page);

  const pid_t child = fork_child([&] {
    // Move the shared page to where the lock was, and put the child's id where the word was.
    void* moved = ::mremap(other_page, page, page, MREMAP_MAYMOVE | MREMAP_FIXED, lock_page);
    if (moved != lock_page) std::_Exit(2);
    const auto me = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    reinterpret_cast<std::atomic<std::uint32_t>*>(lock_page + word_at)->store(me);
    std::_Exit(0);  // the kernel walks the child's robust list and its operation in progress
  });
  ASSERT_EQ(exit_status(child), 0);
  const std::uint32_t left =
      reinterpret_cast<std::atomic<std::uint32_t>*>(other_page + word_at)->load();
  EXPECT_EQ(left & FUTEX_OWNER_DIED, 0u) << "the kernel marked memory the child never locked";
  EXPECT_EQ(left & FUTEX_TID_MASK, static_cast<std::uint32_t>(child));
  lock->release();
  ::munmap(other_page, page);
  ::munmap(lock_page, page);
}

// Three locks released in an order other than the reverse of their acquiring (each removal from
// the middle or the end of the list), with more taken in between, and the thread ends holding
// two: exactly those two are reported.
TEST(RobustList, LocksReleasedOutOfOrderLeaveTheRestListed) {
  mp::Lock a, b, c, d;
  std::thread([&] {
    a.acquire();
    b.acquire();
    c.acquire();  // the list: c b a
    b.release();  // from the middle
    a.release();  // from the end
    d.acquire();  // d c
    a.acquire();  // a d c
    d.release();
  }).join();
  EXPECT_TRUE(holder_died(a));
  EXPECT_FALSE(holder_died(b));
  EXPECT_TRUE(holder_died(c));
  EXPECT_FALSE(holder_died(d));
}

}  // namespace
