// Tests of concur/detail/locked_queue_core.hpp through the queues built on it (an unbounded or
// throwing-move Queue, LifoQueue, PriorityQueue): what happens when user code throws in the
// middle of a put or a get (an item's move, an output iterator, a comparator).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "concur/queue.hpp"
#include "concur/thread.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::PriorityQueue;
using concur::Queue;
using concur_test::eventually;

// An item whose move constructor may throw, so that a bounded Queue of it runs on the locked
// core rather than the ring.
struct Fragile {
  int value = 0;
  explicit Fragile(int v) : value(v) {}
  Fragile(const Fragile&) = default;
  Fragile(Fragile&& other) noexcept(false) : value(std::exchange(other.value, -1)) {}
  Fragile& operator=(const Fragile&) = default;
  Fragile& operator=(Fragile&& other) noexcept(false) {
    value = std::exchange(other.value, -1);
    return *this;
  }
};

// An output iterator that accepts `limit` items and throws on the next one.
class FailingSink {
 public:
  FailingSink(std::vector<int>& got, std::size_t limit) : got_(&got), limit_(limit) {}
  FailingSink& operator*() { return *this; }
  FailingSink& operator++() { return *this; }
  FailingSink operator++(int) { return *this; }
  FailingSink& operator=(Fragile&& item) {
    if (got_->size() >= limit_) throw std::runtime_error("sink full");
    got_->push_back(item.value);
    return *this;
  }

 private:
  std::vector<int>* got_;
  std::size_t limit_;
};

// ---- issue 13, item 6: get_many and the wake-up for the room it made --------------------------

// A put blocked on a full queue must wake when get_many takes an item, even when get_many then
// fails on a later item: the room it made is real. The putter is asleep in its wait before
// get_many runs (checked in /proc), so the test does not depend on timing.
TEST(LockedQueue, GetManyThatThrowsStillWakesBlockedPutters) {
  for (int round = 0; round < 20; ++round) {
    Queue<Fragile> q(2);
    q.put(Fragile(1));
    q.put(Fragile(2));
    std::atomic<std::uint64_t> putter_tid{0};
    std::atomic<bool> put_done{false};
    concur::Thread putter([&] {
      putter_tid = concur::get_native_id();
      q.put(Fragile(3));  // blocks: the queue is full
      put_done = true;
    });
    putter.start();
    ASSERT_TRUE(eventually(
        [&] { return putter_tid.load() != 0 && concur_test::thread_asleep(putter_tid.load()); }));
    std::vector<int> got;
    EXPECT_THROW(q.get_many(FailingSink(got, 1), 2), std::runtime_error);
    ASSERT_EQ(got, std::vector<int>{1});
    // One place is free: the putter must finish without any further get.
    const bool woke = eventually([&] { return put_done.load(); }, 5s);
    if (!woke) (void)q.get();  // release it so that the test can end
    putter.join();
    ASSERT_TRUE(woke) << "round " << round << ": a put slept with room in the queue";
    EXPECT_EQ(q.qsize(), 2u);
    EXPECT_EQ(q.get().value, 2);  // the failed item stayed, in order
    EXPECT_EQ(q.get().value, 3);
  }
}

// ---- issue 13, item 3: a PriorityQueue whose comparator throws --------------------------------

// A comparator that allows `budget` more comparisons (-1: any number) and then throws.
struct Touchy {
  static inline int budget = -1;
  template <class T>
  bool operator()(const T& a, const T& b) const {
    if (budget == 0) throw std::runtime_error("comparison failed");
    if (budget > 0) --budget;
    return key(a) < key(b);
  }
  static int key(int v) { return v; }
  static int key(const Fragile& f) { return f.value; }
};

template <class T>
T item_of(int v) {
  return T(v);
}

template <class T>
int value_of(const T& item) {
  return Touchy::key(item);
}

// Neither an item nor the heap is lost when the comparator throws at any step of a put or a
// get: a failed put leaves the heap as it was and the item with the caller (not moved from); a
// failed get raises and leaves the item in the queue. Python's heapq keeps the item in the list
// on a failed push; concur keeps it with the caller instead, so that the queue's count, its
// unfinished tasks and its contents all say the put did not happen.
template <class T>
void expect_throwing_comparator_loses_nothing() {
  const std::vector<int> start = {50, 30, 80, 10, 90, 20, 70, 60, 40, 15, 85, 25, 5, 95, 35};
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("comparison " + std::to_string(step));
    PriorityQueue<T, Touchy> q;
    Touchy::budget = -1;
    for (int v : start) q.put(item_of<T>(v));

    // A put of the new smallest item: it would rise to the root, comparing at every level.
    T newcomer = item_of<T>(1);
    Touchy::budget = step;
    bool put_failed = false;
    try {
      q.put(std::move(newcomer));
    } catch (const std::runtime_error&) {
      put_failed = true;
    }
    Touchy::budget = -1;
    std::vector<int> expected = start;
    if (put_failed) {
      EXPECT_EQ(value_of(newcomer), 1) << "a failed put moved the caller's item away";
      EXPECT_EQ(q.qsize(), start.size());
    } else {
      expected.push_back(1);
    }

    // A get: the last item sinks from the root, comparing at every level.
    Touchy::budget = step;
    bool get_failed = false;
    std::vector<int> out;
    try {
      out.push_back(value_of(q.get()));
    } catch (const std::runtime_error&) {
      get_failed = true;
    }
    Touchy::budget = -1;
    if (get_failed) {
      EXPECT_EQ(q.qsize(), expected.size());
    }

    // Everything comes out, once, in order.
    while (!q.empty()) out.push_back(value_of(q.get()));
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(out, expected);
    for (std::size_t i = 0; i < expected.size(); ++i) q.task_done();
    EXPECT_THROW(q.task_done(), concur::UsageError);  // exactly one task per item put
  }
}

TEST(LockedQueue, ThrowingComparatorLosesNoItemByValue) {
  expect_throwing_comparator_loses_nothing<int>();
}

TEST(LockedQueue, ThrowingComparatorLosesNoItemByPointer) {
  // Fragile's move may throw: the heap keeps it behind a pointer.
  expect_throwing_comparator_loses_nothing<Fragile>();
}

// get_many with a comparator that fails part way: the items already taken are the caller's,
// the rest stay in the queue, in order.
TEST(LockedQueue, GetManyWithThrowingComparatorKeepsTheRest) {
  PriorityQueue<int, Touchy> q;
  Touchy::budget = -1;
  for (int v = 20; v > 0; --v) q.put(v);
  std::vector<int> got;
  Touchy::budget = 12;
  EXPECT_THROW(q.get_many(std::back_inserter(got), 20), std::runtime_error);
  Touchy::budget = -1;
  ASSERT_FALSE(got.empty());
  ASSERT_LT(got.size(), 20u);
  while (!q.empty()) got.push_back(q.get());
  std::vector<int> expected;
  for (int v = 1; v <= 20; ++v) expected.push_back(v);
  EXPECT_EQ(got, expected);
}

// The heap's own walk (issue 13, item 3 replaced std::push_heap/pop_heap) against a sorted
// reference, over random puts and gets.
TEST(LockedQueue, PriorityOrderMatchesAReference) {
  PriorityQueue<int> q;
  std::multiset<int> reference;
  std::mt19937 random(13);
  for (int i = 0; i < 20000; ++i) {
    if (reference.empty() || random() % 3 != 0) {
      const int v = static_cast<int>(random() % 1000);
      q.put(v);
      reference.insert(v);
    } else {
      ASSERT_EQ(q.get(), *reference.begin());
      reference.erase(reference.begin());
    }
  }
  while (!reference.empty()) {
    ASSERT_EQ(q.get(), *reference.begin());
    reference.erase(reference.begin());
  }
  EXPECT_TRUE(q.empty());
}

}  // namespace
