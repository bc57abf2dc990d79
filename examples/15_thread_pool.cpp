// Lesson 15: a pool of threads and the Futures it hands back.
//
// Lessons 1 to 10 start a thread per job and join it. A pool keeps a few threads and feeds them
// jobs. concurrent.futures.ThreadPoolExecutor does it: submit(fn, *args) queues the call and
// returns at once with a Future, a handle on the result to come; result() waits for it and, if
// the call raised, raises that exception instead. as_completed() yields the futures as they
// finish, map() gives the results in the order of the inputs. Leaving the `with` block shuts the
// pool down: it waits until every queued call has run, then for the threads.
//
//     from concurrent.futures import ThreadPoolExecutor, as_completed, wait
//     import threading, time
//
//     def fetch(page):                         # stands for a slow download
//         time.sleep(0.01 * (6 - page))
//         return f"page {page}: {100 * page} bytes, by {threading.current_thread().name}"
//
//     def parse(text):
//         return int(text)                     # int("x") raises ValueError
//
//     def square(x):
//         return x * x
//
//     with ThreadPoolExecutor(max_workers=3, thread_name_prefix="fetcher") as executor:
//         futures = [executor.submit(fetch, page) for page in range(1, 6)]
//         for future in as_completed(futures):  # the first to finish comes first
//             print(future.result())
//         done, not_done = wait(futures)
//         print(list(executor.map(square, [1, 2, 3, 4, 5])))   # [1, 4, 9, 16, 25]
//         bad = executor.submit(parse, "x")
//         try:
//             bad.result()
//         except ValueError as error:
//             print("result() raised", error)
//     # here every submitted call has run and the threads have ended
//
// concur::ThreadPoolExecutor has the same members and options (its threads are concur::Threads,
// named fetcher_0, fetcher_1, ... here), and its destructor is the end of the `with` block
// (shutdown(true): wait for the queued calls, then the threads). submit() returns a
// concur::Future<R>, a shared handle that copies freely; result() returns the R, or throws the
// call's own exception object (kept in a std::exception_ptr, so catch it by its own type).
// concur::as_completed(futures) is a range for a range-for; map(fn, inputs) submits every call at
// once, as Python's does, and is a range that waits for each result in turn, in the inputs' order.
//
// One thing Python cannot do. A task that submits more work to its own pool and waits for it
// deadlocks in Python once every worker is waiting: with max_workers=1 the first nested result()
// waits for a call that no thread is left to run. In concur a pool thread that waits on a Future
// of its own pool runs that pool's queued calls meanwhile, so recursive fork-join, the Fibonacci
// below, works on any number of workers, one included.

#include <concur/futures.hpp>
#include <concur/thread.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

std::string fetch(int page) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * (6 - page)));
  return "page " + std::to_string(page) + ": " + std::to_string(100 * page) + " bytes, by " +
         concur::current_thread().name();
}

int parse(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("invalid literal for int() with base 10: '" + text + "'");
  }
  return std::stoi(text);
}

int square(int x) {
  return x * x;
}

// fib(n) the slow way: one call of each pair runs as a task of the same pool, and the caller,
// itself a task, waits for it.
long fib(concur::ThreadPoolExecutor& pool, int n) {
  if (n < 2) return n;
  concur::Future<long> left = pool.submit(fib, std::ref(pool), n - 1);
  const long right = fib(pool, n - 2);
  return left.result() + right;  // runs queued calls of `pool` until `left` is done
}

int main() {
  std::atomic<int> late_calls_run = 0;
  {
    concur::ThreadPoolExecutor executor({.max_workers = 3, .thread_name_prefix = "fetcher"});

    std::vector<concur::Future<std::string>> futures;
    for (int page = 1; page <= 5; ++page) futures.push_back(executor.submit(fetch, page));
    int yielded = 0;
    for (concur::Future<std::string>& future : concur::as_completed(futures)) {
      std::printf("%s\n", future.result().c_str());
      ++yielded;
    }
    std::printf("as_completed yielded %d futures\n", yielded);
    const auto [done, not_done] = concur::wait(futures);
    std::printf("wait(): %zu done, %zu not done\n", done.size(), not_done.size());

    const std::vector<int> numbers = {1, 2, 3, 4, 5};
    std::printf("map, in the inputs' order:");
    for (int result : executor.map(square, numbers)) std::printf(" %d", result);
    std::printf("\n");

    concur::Future<int> bad = executor.submit(parse, std::string("x"));
    try {
      bad.result();
    } catch (const std::invalid_argument& error) {
      std::printf("result() threw std::invalid_argument: %s\n", error.what());
    }
    std::printf("exception() holds it too: %s\n", bad.exception() ? "yes" : "no");

    // Calls nobody waits for: the end of the scope does.
    for (int i = 0; i < 3; ++i) {
      executor.submit([&late_calls_run] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ++late_calls_run;
      });
    }
  }  // ~ThreadPoolExecutor(): shutdown(true), the end of Python's `with` block
  std::printf("after the pool's scope: %d of 3 late calls ran\n", late_calls_run.load());

  concur::ThreadPoolExecutor one_worker(1);
  std::printf("fib(20) by nested submit and result() on 1 worker: %ld\n",
              one_worker.submit(fib, std::ref(one_worker), 20).result());
}
