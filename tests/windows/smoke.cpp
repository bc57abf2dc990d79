// A smoke program for Windows (MinGW-w64, run under Wine by .ci/windows): the portable subset
// working together, with no GoogleTest. Every wait below blocks in concur's wait seam, which is
// WaitOnAddress on Windows (concur/detail/wait_windows.hpp): a lost wake-up shows as a hang,
// which the script's time limit turns into a failure. Exit status 0 when every check holds.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>

#include "concur/barrier.hpp"
#include "concur/condition.hpp"
#include "concur/event.hpp"
#include "concur/local.hpp"
#include "concur/lock.hpp"
#include "concur/queue.hpp"
#include "concur/rlock.hpp"
#include "concur/semaphore.hpp"
#include "concur/simple_queue.hpp"
#include "concur/thread.hpp"
#include "concur/timer.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  constexpr int producers = 3;
  constexpr int per_producer = 20000;

  // A bounded queue between producers and consumers (full and empty waits), with a lock-held
  // counter, an RLock taken twice, a semaphore and a per-thread local sum.
  concur::Queue<long long> queue(8);
  concur::Lock lock;
  concur::RLock rlock;
  concur::Semaphore slots(2);
  concur::local<long long> sums;
  long long consumed = 0;
  std::atomic<long long> per_thread_total{0};
  std::deque<concur::Thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 1; i <= per_producer; ++i)
        queue.put(static_cast<long long>(p) * per_producer + i);
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      for (;;) {
        const long long item = queue.get();
        if (item < 0) break;
        *sums += item;
        slots.acquire();
        {
          std::scoped_lock hold(lock);
          consumed += item;
        }
        rlock.acquire();
        rlock.acquire();
        rlock.release();
        rlock.release();
        slots.release();
      }
      per_thread_total += *sums;
    });
  }
  for (concur::Thread& t : threads) t.start();
  for (int p = 0; p < producers; ++p) threads[p].join();
  queue.put(-1);
  queue.put(-1);
  for (concur::Thread& t : threads) t.join();
  const long long n = static_cast<long long>(producers) * per_producer;
  check(consumed == n * (n + 1) / 2, "queue checksum");
  check(per_thread_total.load() == consumed, "local sums");

  // Event, Condition and Barrier: a ping-pong of 2000 rounds through a condition, then a barrier.
  concur::Condition condition;
  int turn = 0;
  concur::Barrier barrier(2);
  concur::Thread other([&] {
    for (int i = 0; i < 1000; ++i) {
      std::unique_lock hold(condition);
      condition.wait_for([&] { return turn % 2 == 1; });
      ++turn;
      condition.notify_all();
    }
    barrier.wait();
  });
  other.start();
  for (int i = 0; i < 1000; ++i) {
    std::unique_lock hold(condition);
    condition.wait_for([&] { return turn % 2 == 0; });
    ++turn;
    condition.notify_all();
  }
  barrier.wait();
  other.join();
  check(turn == 2000, "condition ping-pong");

  // Timed waits give up on time, and a Timer fires.
  concur::Event never_set;
  const auto start = std::chrono::steady_clock::now();
  check(!never_set.wait(50ms), "event timeout");
  check(std::chrono::steady_clock::now() - start >= 50ms, "event waited its timeout");
  concur::Event fired;
  concur::Timer timer(10ms, [&] { fired.set(); });
  timer.start();
  check(fired.wait(10s), "timer fired");
  timer.join();

  if (failures != 0) return 1;
  std::printf("ok: queue, lock, rlock, semaphore, local, condition, barrier, event, timer\n");
  return 0;
}
