// A representative stress program for other CPU architectures and ABIs (run under QEMU user mode
// by .ci/cross): several primitives at once, every result checked against a checksum, a watchdog
// that turns a hang into a failure. It uses only the core and composite layers (Lock, Condition,
// Semaphore, Queue, Event, Barrier) with std::thread, so that it builds on every target the
// library claims; sums are 64-bit, so that they cannot overflow where long is 32 bits.
//
// Exit status 0 when every check held; 1 (with a message) otherwise; killed by SIGALRM (the
// watchdog) when something hangs.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>
#include <vector>

#include "concur/barrier.hpp"
#include "concur/condition.hpp"
#include "concur/errors.hpp"
#include "concur/event.hpp"
#include "concur/lock.hpp"
#include "concur/queue.hpp"
#include "concur/semaphore.hpp"

namespace {

using namespace std::chrono_literals;
using std::uint64_t;

std::atomic<int> failures{0};  // checks run on several threads

void check(bool ok, const char* what, uint64_t got, uint64_t want) {
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "FAILED: %s: got %llu, want %llu\n", what,
               static_cast<unsigned long long>(got), static_cast<unsigned long long>(want));
}

void check_equal(const char* what, uint64_t got, uint64_t want) {
  check(got == want, what, got, want);
}

// The sum of the values 1 .. n.
constexpr uint64_t triangle(uint64_t n) {
  return n * (n + 1) / 2;
}

constexpr int producers = 3;
constexpr int consumers = 3;
constexpr uint64_t items_per_producer = 20000;
constexpr int lock_threads = 4;
constexpr uint64_t increments_per_thread = 20000;
constexpr int semaphore_threads = 4;
constexpr int semaphore_slots = 2;
constexpr uint64_t entries_per_thread = 5000;
constexpr int barrier_parties = 4;
constexpr uint64_t rounds = 500;

// Producers put 1 .. N (tagged with the producer) into a bounded Queue; consumers take until
// shutdown and add what they got; the totals and counts must match, and join() must return once
// every item is marked done.
void queue_round(concur::Event& start) {
  concur::Queue<uint64_t> queue(64);
  std::atomic<uint64_t> sum{0};
  std::atomic<uint64_t> count{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      start.wait();
      for (uint64_t i = 1; i <= items_per_producer; ++i) {
        queue.put(i + static_cast<uint64_t>(p) * items_per_producer);
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      start.wait();
      uint64_t local_sum = 0;
      uint64_t local_count = 0;
      for (;;) {
        try {
          local_sum += queue.get();
        } catch (const concur::ShutDown&) {
          break;
        }
        ++local_count;
        queue.task_done();
      }
      sum += local_sum;
      count += local_count;
    });
  }
  start.set();
  for (int p = 0; p < producers; ++p) threads[p].join();
  queue.join();  // every item taken and marked done
  queue.shutdown();
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
  const uint64_t n = producers * items_per_producer;
  check_equal("queue: items taken", count.load(), n);
  check_equal("queue: checksum", sum.load(), triangle(n));
}

// Threads increment a plain counter under a Lock, and signal a Condition on every step that a
// waiter watches; the waiter must see the final count and the counter must have lost nothing.
void lock_and_condition_round() {
  concur::Lock lock;
  concur::Condition condition(lock);
  uint64_t counter = 0;  // guarded by lock
  std::thread watcher([&] {
    std::lock_guard guard(condition);
    condition.wait_for([&] { return counter == lock_threads * increments_per_thread; });
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < lock_threads; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 0; i < increments_per_thread; ++i) {
        std::lock_guard guard(condition);
        ++counter;
        condition.notify();
      }
    });
  }
  for (auto& t : threads) t.join();
  watcher.join();
  check_equal("lock: counter", counter, lock_threads * increments_per_thread);
}

// A Semaphore admits at most `semaphore_slots` threads at a time; each admitted thread adds to
// a sum; the most ever inside must not exceed the slots.
void semaphore_round() {
  concur::Semaphore slots(semaphore_slots);
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < semaphore_threads; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 1; i <= entries_per_thread; ++i) {
        slots.acquire();
        const int now = inside.fetch_add(1) + 1;
        int most = most_inside.load();
        while (now > most && !most_inside.compare_exchange_weak(most, now)) {
        }
        sum += i;
        inside.fetch_sub(1);
        slots.release();
      }
    });
  }
  for (auto& t : threads) t.join();
  check(most_inside.load() <= semaphore_slots, "semaphore: most inside at once",
        static_cast<uint64_t>(most_inside.load()), semaphore_slots);
  check_equal("semaphore: checksum", sum.load(), semaphore_threads * triangle(entries_per_thread));
}

// Parties add their round's share and meet at a Barrier whose action checks the round's total:
// every round must be complete before any party starts the next.
void barrier_round() {
  std::atomic<uint64_t> round_sum{0};
  uint64_t round = 0;  // written by the action only, read by parties after the barrier
  uint64_t bad_rounds = 0;
  concur::Barrier barrier(barrier_parties, [&] {
    ++round;
    if (round_sum.exchange(0) != round * barrier_parties) ++bad_rounds;
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < barrier_parties; ++t) {
    threads.emplace_back([&] {
      for (uint64_t r = 1; r <= rounds; ++r) {
        round_sum += r;
        barrier.wait();
      }
    });
  }
  for (auto& t : threads) t.join();
  check_equal("barrier: rounds", round, rounds);
  check_equal("barrier: bad rounds", bad_rounds, 0);
}

// Timed waits end at their deadline, never before (the futex timeout layout of the target).
void timeouts_round() {
  concur::Event never_set;
  const auto start = std::chrono::steady_clock::now();
  const bool set = never_set.wait(150ms);
  const auto waited = std::chrono::steady_clock::now() - start;
  check(!set, "event: wait(150ms) on an unset event returned true", 1, 0);
  check(
      waited >= 150ms, "event: wait(150ms) returned early, ms",
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()),
      150);

  concur::Condition condition;
  std::lock_guard guard(condition);
  const auto cstart = std::chrono::steady_clock::now();
  const bool notified = condition.wait(120ms);
  const auto cwaited = std::chrono::steady_clock::now() - cstart;
  check(!notified, "condition: wait(120ms) without a notify returned true", 1, 0);
  check(
      cwaited >= 120ms, "condition: wait(120ms) returned early, ms",
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(cwaited).count()),
      120);
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 1;
  ::alarm(240);  // the watchdog: SIGALRM ends a hung run with a failure status
  for (int r = 0; r < repeats; ++r) {
    concur::Event start;
    // The primitives run at the same time, so that their threads contend for the CPUs.
    std::thread queue_thread([&] { queue_round(start); });
    std::thread lock_thread(lock_and_condition_round);
    std::thread semaphore_thread(semaphore_round);
    std::thread barrier_thread(barrier_round);
    std::thread timeout_thread(timeouts_round);
    queue_thread.join();
    lock_thread.join();
    semaphore_thread.join();
    barrier_thread.join();
    timeout_thread.join();
  }
  std::printf("platform_stress (%s wait, %zu-bit long, %zu-bit time_t): %d repeats, %s\n",
              concur::detail::uses_futex ? "futex" : "portable", sizeof(long) * 8,
              sizeof(std::time_t) * 8, repeats, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
