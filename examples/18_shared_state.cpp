// Lesson 18: sharing state between processes: multiprocessing.Queue and Value.
//
// Lesson 13 connected processes with a Pipe, lesson 16 gave the work to a pool. Here the
// processes share objects: a Queue that any of them puts into and gets from, and a Value (a
// number in shared memory) with a lock for updating it. They are made before the workers start,
// and every worker uses the same ones.
//
//     import multiprocessing as mp
//
//     def worker(jobs, results, done):
//         while (n := jobs.get()) >= 0:
//             results.put(n * n)
//             with done.get_lock():              # done.value += 1 alone would lose updates
//                 done.value += 1
//
//     if __name__ == "__main__":
//         jobs, results = mp.Queue(), mp.Queue()
//         done = mp.Value("l", 0)
//         workers = [mp.Process(target=worker, args=(jobs, results, done)) for _ in range(4)]
//         for w in workers:
//             w.start()
//         for n in range(100):
//             jobs.put(n)
//         for _ in workers:
//             jobs.put(-1)                           # one "stop" for each worker
//         print(sum(results.get() for _ in range(100)), done.value)     # 328350 100
//         for w in workers:
//             w.join()
//
// In C++ the same names: `namespace mp = concur::mp;`, mp::Queue<long>, mp::Value<long>.
// Numbers and plain structs go through an mp::Queue byte for byte; strings, vectors, maps,
// pairs and the other types Connection::send takes are encoded, as Python pickles what it
// puts (mp::Queue<std::string> works as well); `with done.get_lock():` is a std::scoped_lock
// on get_lock().
//
// One thing Python gets wrong. Kill a worker (the OOM killer, say) while it holds done's lock,
// and every other process that takes that lock waits for ever: Python's lock is a semaphore, and
// nothing knows that its holder is gone. concur's locks are the kernel's robust futexes: the
// next acquire takes the lock and throws concur::OwnerDied, so the program learns what happened,
// repairs what the lock guards, and goes on. The end of this lesson does that on purpose. A
// queue needs no repair: a process killed inside put() or get() leaves it whole.

#include <concur/mp_queue.hpp>
#include <concur/process.hpp>
#include <concur/shared_ctypes.hpp>

#include <csignal>
#include <cstdio>
#include <deque>
#include <mutex>

namespace mp = concur::mp;

int main() {
  mp::Queue<long> jobs;
  mp::Queue<long> results;
  mp::Value<long> done(0);

  auto worker = [&] {
    for (long n; (n = jobs.get()) >= 0;) {
      results.put(n * n);
      std::scoped_lock hold(done.get_lock());  // with done.get_lock():
      done.set_value(done.value() + 1);        //     done.value += 1
    }
  };
  std::deque<concur::Process> workers;  // a Process does not move: a deque keeps it in place
  for (int i = 0; i < 4; ++i) workers.emplace_back(worker);
  for (concur::Process& w : workers) w.start();
  for (long n = 0; n < 100; ++n) jobs.put(n);
  for (std::size_t i = 0; i < workers.size(); ++i) jobs.put(-1);  // one "stop" for each worker
  long total = 0;
  for (int i = 0; i < 100; ++i) total += results.get();
  for (concur::Process& w : workers) w.join();
  std::printf("sum of squares from %zu workers: %ld\n", workers.size(), total);
  std::printf("jobs counted under the Value's lock: %ld\n", done.value());

  // A worker that dies holding the lock, half-way through an update.
  concur::Process doomed([&] {
    done.get_lock().acquire();
    done.get_obj() = -1;  // half an update...
    std::raise(SIGKILL);  // ...and the process is killed
  });
  doomed.start();
  doomed.join();
  std::printf("the worker was killed (exitcode %d)\n", doomed.exitcode().value_or(0));
  try {
    std::scoped_lock hold(done.get_lock());
    std::printf("not reached: the lock's holder died\n");
  } catch (const concur::OwnerDied&) {
    // The lock is ours now: repair what it guards, then let it go.
    done.get_obj() = 100;
    done.get_lock().release();
    std::printf("the next acquire got OwnerDied; repaired, the counter is %ld\n", done.value());
  }
}
