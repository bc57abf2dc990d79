// Lesson 16: a pool of processes: multiprocessing.Pool and ProcessPoolExecutor.
//
// Lesson 12 started a process per job. multiprocessing.Pool(n) starts n worker processes once
// and hands them calls: map() splits the inputs among the workers and returns the results in
// order, apply_async() sends one call and returns an AsyncResult whose get(timeout) waits for
// it, imap_unordered() yields the results as they come. concurrent.futures.ProcessPoolExecutor
// is a pool of processes behind lesson 15's interface: submit() and Futures.
//
//     import multiprocessing as mp, os, signal, time
//     from concurrent.futures import ProcessPoolExecutor
//
//     def square(x):
//         return x * x
//
//     def whoami(_):
//         time.sleep(0.02)                     # long enough for the calls to spread out
//         return os.getpid()
//
//     def die():
//         os.kill(os.getpid(), signal.SIGKILL)
//
//     def parse(text):
//         return int(text)                     # int("x") raises ValueError
//
//     if __name__ == "__main__":
//         pool = mp.Pool(4)
//         print(pool.map(square, range(10)))                     # [0, 1, 4, ..., 81]
//         print(len(set(pool.map(whoami, range(8)))), "workers")
//         print(pool.apply_async(square, (7,)).get(timeout=10))  # 49
//         print(sum(pool.imap_unordered(square, range(100))))    # 328350
//         try:
//             pool.apply_async(parse, ("x",)).get(timeout=10)
//         except ValueError as error:
//             print("get() raised", error)
//         pool.close()                                           # no more calls
//         pool.join()                                            # the workers exit
//         with ProcessPoolExecutor(max_workers=2) as executor:
//             print(executor.submit(pow, 2, 10).result())         # 1024
//             executor.submit(die).result()                       # raises BrokenProcessPool
//
// (pool.apply(die) before pool.close() would never return: see below.)
//
// `namespace mp = concur::mp;` reads as `import multiprocessing as mp`: mp::Pool is the pool,
// and mp::cpu_count, mp::Process, mp::Pipe and mp::Connection are the names of lessons 12 and
// 13. The workers are forked from the parent, so they already hold the program's code: what
// goes to a worker is the function's address and the arguments, and what comes back is the
// result; the values go through the codec of lesson 13 (numbers, strings, containers, ...). So
// the function must be a plain function, or a lambda that captures nothing: a lambda with
// captures would need its captured state sent too, and does not compile. An exception object cannot
// cross from one process to another either: a call that throws in a worker throws
// concur::RemoteError from get() or result() in the parent, with the original what() and the name
// of its type. mp::Pool's destructor is terminate(), as the end of Python's `with Pool(4) as pool:`
// block is; close() then join() lets the queued calls finish first. pool.processes() (the number of
// workers) is concur's addition.
//
// One thing Python gets wrong. When a worker dies in the middle of a call (killed by the OOM
// killer, say), Python's ProcessPoolExecutor raises BrokenProcessPool, but Python's
// multiprocessing.Pool waits for that call's result for ever. concur's mp::Pool and
// ProcessPoolExecutor both throw concur::BrokenProcessPool, and the pool can still be shut down.

#include <concur/futures.hpp>
#include <concur/pool.hpp>
#include <concur/process_pool.hpp>

#include <concur/process.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mp = concur::mp;
using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}

int whoami(int) {
  std::this_thread::sleep_for(20ms);  // long enough for the calls to spread out
  return static_cast<int>(concur::getpid());
}

int power(int base, int exponent) {
  int result = 1;
  while (exponent-- > 0) result *= base;
  return result;
}

int parse(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("invalid literal for int() with base 10: '" + text + "'");
  }
  return std::stoi(text);
}

int die() {
  ::kill(concur::getpid(), SIGKILL);  // as the OOM killer would
  return 0;                           // never reached
}

// Python's range(n), as a vector.
std::vector<int> range(int n) {
  std::vector<int> numbers;
  for (int i = 0; i < n; ++i) numbers.push_back(i);
  return numbers;
}

void print_list(const char* label, const std::vector<int>& values) {
  std::printf("%s: [", label);
  for (std::size_t i = 0; i < values.size(); ++i) std::printf(i ? ", %d" : "%d", values[i]);
  std::printf("]\n");
}

int main() {
  std::printf("mp::cpu_count() = %d\n", mp::cpu_count());
  const int parent = static_cast<int>(concur::getpid());
  {
    mp::Pool pool(4);
    print_list("pool.map(square, range(10))", pool.map(square, range(10)));
    std::printf("pool.processes() = %d\n", pool.processes());
    std::set<int> pids;
    for (int pid : pool.map(whoami, range(8))) pids.insert(pid);
    std::printf("8 calls ran in %zu worker process(es), the parent among them: %s\n", pids.size(),
                pids.count(parent) ? "yes" : "no");
    std::printf("pool.apply_async(square, 7).get(10s) = %d\n",
                pool.apply_async(square, 7).get(10s));
    int sum = 0;
    for (int result : pool.imap_unordered(square, range(100))) sum += result;
    std::printf("sum of imap_unordered(square, range(100)) = %d\n", sum);
    try {
      pool.apply_async(parse, std::string("x")).get(10s);
    } catch (const concur::RemoteError& error) {
      std::printf("get() threw RemoteError: %s: %s\n", error.type_name().c_str(), error.what());
    }
    try {
      pool.apply(die);  // Python's Pool.apply(die) never returns
    } catch (const concur::BrokenProcessPool& error) {
      std::printf("a Pool worker was killed: apply() threw BrokenProcessPool (%s)\n", error.what());
    }
    pool.close();  // no more calls
    pool.join();   // wait for the workers to exit
    std::printf("the broken Pool was closed and joined\n");
  }
  {
    concur::ProcessPoolExecutor executor(2);
    std::printf("executor.submit(power, 2, 10).result() = %d\n",
                executor.submit(power, 2, 10).result());
    concur::Future<int> doomed = executor.submit(die);
    try {
      doomed.result();
    } catch (const concur::BrokenProcessPool& error) {
      std::printf("an executor worker was killed: result() threw BrokenProcessPool (%s)\n",
                  error.what());
    }
  }  // ~ProcessPoolExecutor(): shutdown(true), the end of Python's `with` block
  std::printf("the broken executor was shut down\n");
}
