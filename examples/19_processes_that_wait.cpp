// Lesson 19: processes that wait for each other: multiprocessing.Barrier and Condition.
//
// Lesson 18 shared data between processes. Here they share the waiting: a Barrier that every
// worker reaches before any goes on, and a Condition on which one process waits until the
// others have changed what it guards.
//
//     import multiprocessing as mp
//
//     def report():
//         print("a round is complete", flush=True)
//
//     def worker(start, cond, finished, rounds):
//         for _ in range(rounds):
//             start.wait()                      # all three go on together
//         with cond:
//             finished.value += 1
//             cond.notify()
//
//     if __name__ == "__main__":
//         start = mp.Barrier(3, action=report)
//         cond = mp.Condition()
//         finished = mp.RawValue("i", 0)        # guarded by cond's lock
//         workers = [mp.Process(target=worker, args=(start, cond, finished, 2))
//                    for _ in range(3)]
//         for w in workers:
//             w.start()
//         with cond:
//             cond.wait_for(lambda: finished.value == 3)
//             print("all", finished.value, "workers are done")
//         for w in workers:
//             w.join()
//
// It prints "a round is complete" twice (the action runs once per round, in the last worker to
// arrive, before any is released), then "all 3 workers are done". In C++ the names are the
// same: mp::Barrier, mp::Condition (which owns an mp::RLock, as Python's does), and
// mp::RawValue for a number that the condition's lock guards; `with cond:` is a
// std::scoped_lock on the condition.
//
// One thing Python gets wrong. Two processes wait on the condition and one of them is killed.
// Python's notify_all() then waits for ever: it counts its sleepers, wakes them, and waits for
// each to say it woke, and the dead one never does. concur's waiters are known to the kernel
// (each waits in a slot that names it, on the kernel's robust list), so a dead waiter is skipped
// and notify_all() wakes the live ones. The end of this lesson does that on purpose.

#include <concur/mp_barrier.hpp>
#include <concur/mp_condition.hpp>
#include <concur/process.hpp>
#include <concur/shared_ctypes.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

namespace mp = concur::mp;

int main() {
  mp::Barrier start(3, [] {
    std::printf("a round is complete\n");
    std::fflush(stdout);  // printed in a child process, which ends with _exit()
  });
  mp::Condition cond;
  mp::RawValue<int> finished(0);  // guarded by cond's lock

  auto worker = [&] {
    for (int round = 0; round < 2; ++round) start.wait();  // all three go on together
    std::scoped_lock hold(cond);
    finished.set_value(finished.value() + 1);
    cond.notify();
  };
  std::deque<concur::Process> workers;  // a Process does not move: a deque keeps it in place
  for (int i = 0; i < 3; ++i) workers.emplace_back(worker);
  for (concur::Process& w : workers) w.start();
  {
    std::scoped_lock hold(cond);
    cond.wait_for([&] { return finished.value() == 3; });
    std::printf("all %d workers are done\n", finished.value());
  }
  for (concur::Process& w : workers) w.join();

  // Two waiters, and one of them is killed while it waits.
  mp::RawValue<int> waiting(0);  // guarded by cond's lock
  auto sleeper = [&] {
    std::scoped_lock hold(cond);
    waiting.set_value(waiting.value() + 1);
    cond.wait();
  };
  concur::Process doomed(sleeper);
  concur::Process survivor(sleeper);
  doomed.start();
  survivor.start();
  for (;;) {  // until both wait: each counts itself and waits within one hold of the lock
    {
      std::scoped_lock hold(cond);
      if (waiting.value() == 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  doomed.kill();
  doomed.join();
  std::printf("a waiter was killed (exitcode %d)\n", doomed.exitcode().value_or(0));
  {
    std::scoped_lock hold(cond);
    cond.notify_all();  // Python's waits here for ever, for the dead waiter to wake
  }
  survivor.join();
  std::printf("notify_all() returned and the other waiter woke (exitcode %d)\n",
              survivor.exitcode().value_or(-1));
}
