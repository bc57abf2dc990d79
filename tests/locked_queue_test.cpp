// Tests of concur/detail/locked_queue_core.hpp through the queues built on it (an unbounded or
// throwing-move Queue, LifoQueue, PriorityQueue): what happens when user code throws in the
// middle of a put or a get (an item's move, an output iterator, a comparator).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <thread>
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
  Fragile(Fragile&& other) noexcept(false) : value(other.value) {}
  Fragile& operator=(const Fragile&) = default;
  Fragile& operator=(Fragile&&) = default;
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

}  // namespace
