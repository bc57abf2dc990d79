// Tests of concur/local.hpp: per-object thread-local values, their lifetimes, for_each and
// combine.

#include "concur/local.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "concur/errors.hpp"
#include "concur/event.hpp"
#include "concur/rlock.hpp"
#include "concur/thread.hpp"
#include "test_support.hpp"

namespace {

using concur::local;
using concur_test::scaled;

// Counts live instances, to check that every value is destroyed exactly once.
struct Tracked {
  static inline std::atomic<long> live{0};
  int value;
  explicit Tracked(int v = 0) : value(v) { ++live; }
  Tracked(const Tracked& other) : value(other.value) { ++live; }
  ~Tracked() { --live; }
};

TEST(Local, EachThreadSeesItsOwnValuePerObject) {
  local<int> a;
  local<int> b;
  *a = 1;
  *b = 2;
  int seen_a = -1;
  int seen_b = -1;
  std::thread other([&] {
    seen_a = *a;  // a fresh value for this thread
    seen_b = *b;
    *a = 10;
  });
  other.join();
  EXPECT_EQ(seen_a, 0);
  EXPECT_EQ(seen_b, 0);
  EXPECT_EQ(a.get(), 1);  // this thread's value is untouched
  EXPECT_EQ(*b, 2);
}

TEST(Local, ArgumentsOrAFactoryBuildEachValueOnFirstAccess) {
  local<std::string> greeting("hello", 3);  // std::string("hello", 3) == "hel"
  EXPECT_EQ(*greeting, "hel");
  std::atomic<int> built{0};
  local<std::string> named(concur::with_factory, [&] {
    ++built;
    return concur::current_thread().name();
  });
  EXPECT_EQ(built.load(), 0);  // nothing built before the first access
  EXPECT_EQ(*named, "MainThread");
  EXPECT_EQ(named->size(), 10u);
  concur::Thread worker({.name = "worker"}, [&] { EXPECT_EQ(*named, "worker"); });
  worker.start();
  worker.join();
  EXPECT_EQ(built.load(), 2);
}

TEST(Local, AThreadsValueIsDestroyedWhenTheThreadExits) {
  const long before = Tracked::live.load();
  local<Tracked> values(7);
  concur::Thread worker([&] {
    EXPECT_EQ(values->value, 7);
    EXPECT_EQ(Tracked::live.load(), before + 1);
  });
  worker.start();
  worker.join();  // join returns after the thread's values are destroyed
  EXPECT_EQ(Tracked::live.load(), before);
}

TEST(Local, EveryValueIsDestroyedWithTheLocal) {
  const long before = Tracked::live.load();
  concur::Event done;
  concur::Event release;
  std::thread holder;
  {
    local<Tracked> values(1);
    (void)values.get();
    holder = std::thread([&] {
      (void)values.get();
      done.set();
      release.wait();  // still alive when the local goes
    });
    done.wait();
    EXPECT_EQ(Tracked::live.load(), before + 2);
  }
  EXPECT_EQ(Tracked::live.load(), before);
  release.set();
  holder.join();  // its exit must not touch the destroyed value
  EXPECT_EQ(Tracked::live.load(), before);
}

TEST(Local, ForEachAndCombineSeeEveryLiveThreadsValue) {
  local<int> counts;
  *counts = 1;
  constexpr int workers = 4;
  concur::Event go;
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      *counts = 10 * (i + 1);
      ++ready;
      go.wait();
    });
  }
  while (ready.load() < workers) std::this_thread::yield();
  std::multiset<int> seen;
  counts.for_each([&](int v) { seen.insert(v); });
  EXPECT_EQ(seen, (std::multiset<int>{1, 10, 20, 30, 40}));
  EXPECT_EQ(counts.combine([](int x, int y) { return x + y; }), 101);
  go.set();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counts.combine([](int x, int y) { return x + y; }), 1);  // exited threads' are gone
  local<int> empty;
  EXPECT_EQ(empty.combine([](int x, int y) { return x + y; }), 0);
}

// Issue 13, item 4: for_each's callback used another local (its first get(), which takes the
// registry's lock) while a thread with a value was exiting (which took the registry's lock and
// then the visited local's): a lock-order deadlock. The callback here waits until the exiting
// thread is asleep inside its exit, then gets a first value of another local; a watchdog turns
// the deadlock into a failure. The exiting thread's value is visited exactly once and destroyed
// after the callback returns; then the thread ends.
TEST(Local, ForEachCallbackMayUseLocalsWhileAThreadExits) {
  concur_test::Watchdog watchdog("for_each versus an exiting thread", std::chrono::seconds(40));
  for (int round = 0; round < 5; ++round) {
    local<Tracked> visited(round);
    local<int> other;
    (void)visited.get();  // this thread's value: visited too
    const long before = Tracked::live.load();
    std::atomic<std::uint64_t> exiting_tid{0};
    std::atomic<bool> exiting{false};
    concur::Event leave;
    std::thread exiter([&] {
      visited->value = 1000 + round;
      // Built after this thread's table of local values, so destroyed just before it: the
      // flag says that the thread is about to destroy its values.
      struct Exiting {
        std::atomic<bool>* flag = nullptr;
        ~Exiting() {
          if (flag != nullptr) *flag = true;
        }
      };
      static thread_local Exiting marker;
      marker.flag = &exiting;
      exiting_tid = concur::get_native_id();
      leave.wait();
    });
    while (exiting_tid.load() == 0) std::this_thread::yield();
    int calls = 0;
    std::thread::id caller = std::this_thread::get_id();
    visited.for_each([&](Tracked& value) {
      ++calls;
      EXPECT_EQ(std::this_thread::get_id(), caller);
      if (value.value != 1000 + round) return;
      leave.set();
      ASSERT_TRUE(concur_test::eventually(
          [&] { return exiting.load() && concur_test::thread_asleep(exiting_tid.load()); }));
      // The exiting thread now waits inside its exit. Take a first value of another local.
      *other = 3;
      EXPECT_EQ(*other, 3);
      EXPECT_EQ(Tracked::live.load(), before + 1);  // the visited value is not destroyed yet
    });
    exiter.join();
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(Tracked::live.load(), before);  // the exiter's value went with it
    EXPECT_EQ(visited.combine([](const Tracked& a, const Tracked&) { return a; }).value, round);
  }
}

TEST(Local, ManyLiveLocalsEachKeepTheirOwnValues) {
  // More locals than the thread_local fast array holds: the rest live in the heap array.
  const long before = Tracked::live.load();
  {
    std::vector<std::unique_ptr<local<Tracked>>> many;
    for (int i = 0; i < 200; ++i) many.push_back(std::make_unique<local<Tracked>>(i));
    for (int i = 0; i < 200; ++i) EXPECT_EQ((*many[i])->value, i);
    std::thread other([&] {
      for (int i = 199; i >= 0; --i) {
        (*many[i])->value += 1000;
        EXPECT_EQ((*many[i])->value, i + 1000);
      }
    });
    other.join();
    for (int i = 0; i < 200; i += 7) many[i].reset();  // free some slots for reuse
    for (int i = 0; i < 200; i += 7) many[i] = std::make_unique<local<Tracked>>(-i);
    for (int i = 0; i < 200; ++i) EXPECT_EQ((*many[i])->value, i % 7 == 0 ? -i : i);
  }
  EXPECT_EQ(Tracked::live.load(), before);
}

// Issue 13, item 7: a value whose construction uses the same local would build itself again,
// forever. The inner get() throws UsageError instead; the failed first access leaves nothing
// behind, and the next access builds the value normally. Building another local's value from a
// factory is fine.
TEST(Local, AFactoryThatUsesItsOwnLocalThrowsUsageError) {
  local<int>* self = nullptr;
  bool reenter = true;
  local<int> recursive(concur::with_factory, [&] {
    if (reenter) return self->get() + 1;
    return 7;
  });
  self = &recursive;
  EXPECT_THROW((void)recursive.get(), concur::UsageError);
  reenter = false;
  EXPECT_EQ(recursive.get(), 7);

  // Another local's value built inside a factory: allowed, at any depth.
  local<int> inner(concur::with_factory, [] { return 5; });
  local<int> outer(concur::with_factory, [&] { return inner.get() * 2; });
  EXPECT_EQ(outer.get(), 10);
  EXPECT_EQ(inner.get(), 5);

  // The same on another thread.
  std::thread other([&] {
    reenter = true;
    EXPECT_THROW((void)recursive.get(), concur::UsageError);
    reenter = false;
    EXPECT_EQ(recursive.get(), 7);
  });
  other.join();
}

TEST(LocalStress, ThousandsOfShortThreadsAndManyLocals) {
  const long before = Tracked::live.load();
  const int rounds = static_cast<int>(scaled(60, 6));
  for (int round = 0; round < rounds; ++round) {
    auto a = std::make_unique<local<Tracked>>(round);
    auto b = std::make_unique<local<std::vector<int>>>(std::size_t{16}, round);
    concur::Event used;
    concur::Event finish;
    std::atomic<int> users{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 32; ++t) {
      threads.emplace_back([&, t] {
        EXPECT_EQ((*a)->value, round);
        (*b)->push_back(t);
        if (t % 4 == 0) {
          local<Tracked> scratch(t);  // created and destroyed on this thread
          EXPECT_EQ(scratch->value, t);
        }
        if (++users == 32) used.set();
        if (t % 2 == 0) finish.wait();  // half stay alive, holding values, half exit at once
      });
    }
    used.wait();
    long sizes = 0;
    b->for_each([&](const std::vector<int>& v) { sizes += static_cast<long>(v.size()); });
    EXPECT_GE(sizes, 16 * 17);      // at least the waiting threads' values, each 16 + 1 long
    if (round % 2 == 0) a.reset();  // threads that hold values are still alive
    finish.set();
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(Tracked::live.load(), before);
}

}  // namespace

// Issue 14, item 5: where thread-locals are emulated (MinGW GCC's emutls, under Wine or on
// Windows), the storage of every thread_local is freed by a pthread key destructor and C++
// thread_local destructors run after it, so a thread-exit path that wrote through pointers to
// thread-locals corrupted the heap: this loop crashed 4 runs out of 4 under Wine 8. Many threads,
// each with values of several locals (some past the first array's 64 slots) and an RLock token,
// exit while the locals live on and are then destroyed; the values must all be destroyed once.
TEST(Local, ThreadExitNeverTouchesFreedThreadLocals) {
  concur_test::Watchdog watchdog("thread exit with many locals", std::chrono::seconds(180));
  std::atomic<long> built{0};
  std::atomic<long> destroyed{0};
  struct Counted {
    std::atomic<long>* destroyed;
    std::string payload = std::string(100, 'x');
    ~Counted() { destroyed->fetch_add(1); }
  };
  const int rounds = static_cast<int>(scaled(100));
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<concur::local<Counted>>> locals;
    for (int i = 0; i < 70; ++i) {
      locals.push_back(std::make_unique<concur::local<Counted>>(concur::with_factory, [&] {
        built.fetch_add(1);
        return Counted{&destroyed};
      }));
    }
    concur::RLock lock;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < 70; i += 3) locals[i]->get().payload += "y";
        std::scoped_lock hold(lock);
      });
    }
    for (std::thread& thread : threads) thread.join();
    locals.clear();
  }
  EXPECT_EQ(built.load(), destroyed.load());
  EXPECT_GT(built.load(), 0);
}
