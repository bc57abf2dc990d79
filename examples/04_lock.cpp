// Lesson 4: a Lock protects shared data.
//
// `counter += 1` is a read, then a write. When two threads both read before either writes, one
// update is lost. A mutual-exclusion lock lets one thread at a time do the read and the write:
// acquire() waits until the lock is free, release() frees it, and acquire(False) only tries.
//
//     import threading
//
//     counter = 0
//     lock = threading.Lock()
//
//     def add(times):
//         global counter
//         for _ in range(times):
//             if lock.acquire():          # blocks until the lock is ours
//                 counter += 1
//                 lock.release()
//
//     print(lock.acquire(False))          # True: nobody held it; False while someone does
//
// concur::Lock has Python's acquire(), acquire(false) and release(), and concur::Guard holds a
// lock for a scope as Python's `with lock:` does (std::scoped_lock works too). The unlocked
// counter below is a std::atomic read and written in two steps, so updates get lost without
// the undefined behaviour of a real data race; yield() between the steps makes it happen often.

#include <concur/lock.hpp>
#include <concur/thread.hpp>

#include <atomic>
#include <cstdio>
#include <deque>
#include <thread>

constexpr int thread_count = 4;
constexpr int increments_per_thread = 100000;
constexpr int expected_total = thread_count * increments_per_thread;
// Fewer for the unlocked counter: each of its increments yields the CPU, and on a loaded
// machine a yield can cost a whole time slice.
constexpr int unlocked_increments_per_thread = 5000;

// Runs `add` on thread_count threads at once and waits for them all.
template <class Body>
void run_on_threads(Body add) {
  std::deque<concur::Thread> threads;  // a Thread cannot move, and a deque never moves it
  for (int i = 0; i < thread_count; ++i) threads.emplace_back(add);
  for (concur::Thread& thread : threads) thread.start();
  for (concur::Thread& thread : threads) thread.join();
}

// Whether `lock` can be taken without waiting; leaves it as it was.
bool free_right_now(concur::Lock& lock) {
  const bool acquired = lock.acquire(false);
  if (acquired) lock.release();
  return acquired;
}

int main() {
  std::atomic<int> unlocked{0};
  run_on_threads([&] {
    for (int i = 0; i < unlocked_increments_per_thread; ++i) {
      const int seen = unlocked.load();  // read...
      std::this_thread::yield();         // ...another thread may run here...
      unlocked.store(seen + 1);          // ...and this write undoes its increments
    }
  });
  std::printf("without the lock: %d (expected %d)\n", unlocked.load(),
              thread_count * unlocked_increments_per_thread);

  concur::Lock lock;
  int counter = 0;  // guarded by lock
  run_on_threads([&] {
    for (int i = 0; i < increments_per_thread; ++i) {
      lock.acquire();  // returns true, as Python's does; waits while another thread holds it
      ++counter;       // only one thread at a time gets here
      lock.release();
    }
  });
  std::printf("with acquire/release: %d (expected %d)\n", counter, expected_total);

  counter = 0;
  run_on_threads([&] {
    for (int i = 0; i < increments_per_thread; ++i) {
      concur::Guard hold(lock);  // Python's `with lock:`; released at the end of each iteration
      ++counter;
    }
  });
  std::printf("with concur::Guard: %d (expected %d)\n", counter, expected_total);

  // acquire(false) never waits: it fails while any thread holds the lock, here the main one.
  lock.acquire();
  concur::Thread while_held([&] {
    std::printf("acquire(false) while main holds the lock: %s\n",
                free_right_now(lock) ? "true" : "false");
  });
  while_held.start();
  while_held.join();
  lock.release();
  concur::Thread after_release([&] {
    std::printf("acquire(false) after main released it: %s\n",
                free_right_now(lock) ? "true" : "false");
  });
  after_release.start();
  after_release.join();
}
