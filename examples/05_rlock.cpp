// Lesson 5: an RLock may be taken again by the thread that holds it.
//
// An RLock counts how many times its holder has acquired it. The holder may acquire it again
// (the count goes up), each release() takes one off, and only when every acquire has been
// released can another thread get it. A function that takes the lock can then call itself.
//
//     import threading
//
//     lock = threading.RLock()
//     balances = [10, 20, 30, 40]
//
//     def sum_from(i):
//         lock.acquire()                  # again at every level of the recursion
//         total = balances[i] + (sum_from(i + 1) if i + 1 < len(balances) else 0)
//         lock.release()
//         return total
//
// concur::RLock has the same members (and concur::Guard for `with lock:`). With a plain
// concur::Lock, the second acquire() in sum_from would wait for the lock to be released, by
// the very thread that is waiting: a deadlock. The end of main shows it safely, with
// acquire(false).

#include <concur/lock.hpp>
#include <concur/rlock.hpp>
#include <concur/thread.hpp>

#include <cstdio>
#include <vector>

struct Ledger {
  concur::RLock lock;
  std::vector<int> balances = {10, 20, 30, 40};  // guarded by lock
};

// Asks from another thread whether `lock` is free; leaves it as it was.
bool free_for_another_thread(concur::RLock& lock) {
  bool acquired = false;
  concur::Thread other([&] {
    if (lock.acquire(false)) {  // never waits: false while a thread holds the lock
      acquired = true;
      lock.release();
    }
  });
  other.start();
  other.join();
  return acquired;
}

// Sums ledger.balances[from...], taking the lock once more at every level.
int sum_from(Ledger& ledger, std::size_t from) {
  const int level = static_cast<int>(from) + 1;
  ledger.lock.acquire();
  std::printf("%*sacquire: held %d time(s)\n", 2 * level, "", level);
  int total = ledger.balances[from];
  if (from + 1 < ledger.balances.size()) {
    total += sum_from(ledger, from + 1);
  } else {
    std::printf("%*sdeepest level: free for another thread? %s\n", 2 * level, "",
                free_for_another_thread(ledger.lock) ? "yes" : "no");
  }
  ledger.lock.release();
  std::printf("%*srelease: held %d time(s)\n", 2 * level, "", level - 1);
  return total;
}

int main() {
  Ledger ledger;
  std::printf("sum: %d\n", sum_from(ledger, 0));
  std::printf("after every release: locked %s, free for another thread? %s\n",
              ledger.lock.locked() ? "yes" : "no",
              free_for_another_thread(ledger.lock) ? "yes" : "no");

  concur::Lock plain;
  plain.acquire();
  const bool again = plain.acquire(false);  // acquire() here would block forever
  std::printf("a plain Lock, taken again by its holder: %s\n", again ? "acquired" : "refused");
  plain.release();
}
