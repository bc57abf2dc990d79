// Thread pools compared: concur::ThreadPoolExecutor against, when found, Boost.Asio's
// thread_pool with std::packaged_task/std::future, oneTBB's task_group, libthread-pool-dev's
// thread_pool::ThreadPool (Debian's package of that name: a work-stealing pool whose Submit
// returns a std::future), std::async, and Python's concurrent.futures.ThreadPoolExecutor
// (benchmarks/futures_python.py, when python3 was found at configure time).
//
// Every pool has kWorkers (4) worker threads. oneTBB's unit is an arena, not a pool: its rows
// run in a task_arena of concurrency kWorkers, where the thread that waits (task_group::wait)
// takes one of the kWorkers slots and runs tasks, as TBB is designed to; a global_control lets
// TBB start that many threads (its default is one fewer than the cores). std::async starts a
// thread per task (libstdc++), so it does fewer tasks and its rate is scaled.
//
// Scenarios:
//   submit-1t      1M empty tasks submitted from one thread, then all waited for (the futures
//                  kept in a vector, reserved and its pages touched beforehand, so that the
//                  first touch of the harness's own memory is not timed; Future::result() on
//                  each, as std::future::get on each for the peers that make futures;
//                  TBB: task_group::run each, then one wait); items per second. concur::wait()
//                  on the vector would also return the million handles in a new vector (a
//                  reference taken on each, and dropped with the result), which no peer's row
//                  does: about 15 ms more per million here.
//   submit-4t      the same from 4 submitting threads, each submitting a quarter and waiting for
//                  its own (TBB: a task_group per submitting thread, in one shared arena)
//   roundtrip      submit + result() of one empty task on an idle pool, in a loop; time per
//                  round trip (TBB: run + wait, which may run the task on the waiting thread)
//   forkjoin-Nw    recursive Fibonacci (fib(32), serial below 12: about 29k tasks) with nested
//                  submit and wait, in a pool of N = 1, 2 and 4 workers (TBB: an arena of
//                  concurrency N); time per fib. Asio with std::future and thread_pool::ThreadPool
//                  are not run: a worker that blocks in std::future::get holds its thread, so
//                  with fewer workers than the recursion is deep they deadlock (as Python's
//                  ThreadPoolExecutor does). std::async is not run either (a thread per task).
//                  A watchdog ends the program if a fork-join does not finish in 60 s.
//
// Targets (issue 15; ratios within one run): submit-1t and submit-4t >= 1.5x the best C++ peer's
// rate and >= 100x Python's; roundtrip <= 0.5x Asio + std::future's time; forkjoin completes on
// 1, 2 and 4 workers in <= 1.5x oneTBB task_group's time. After the summaries the program
// prints each target with its numbers and whether it holds.
//
// CPU per operation (bench_support.hpp) is the whole process's; Python's is its interpreter's
// (time.process_time, every thread).

#include <concur/futures.hpp>

#include <version>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "bench_targets.hpp"

#if CONCUR_BENCH_HAVE_ASIO
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#endif
#if CONCUR_BENCH_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif
// thread_pool.hpp uses std::result_of, which libc++ leaves out in C++20.
#if CONCUR_BENCH_HAVE_THREAD_POOL && !defined(_LIBCPP_VERSION)
#include <thread_pool/thread_pool.hpp>
#define CONCUR_BENCH_USE_THREAD_POOL 1
#else
#define CONCUR_BENCH_USE_THREAD_POOL 0
#endif

namespace {

using concur_bench::Kind;
using concur_bench::measure;
using concur_bench::scaled;

constexpr int kWorkers = 4;     // worker threads of every pool (not the fork-join rows)
constexpr int kSubmitters = 4;  // submitting threads of submit-4t
constexpr int kFibCutoff = 12;  // fib(n) below this is computed serially, in the task

long many_tasks() {
  return scaled(1000000);
}
long async_tasks() {
  return scaled(20000);
}  // std::async: a thread per task
[[maybe_unused]] long python_tasks() {  // used only where python3 was found
  return scaled(50000);
}  // Python: about 50k tasks/s here
long round_trips() {
  return scaled(20000);
}
long async_round_trips() {
  return scaled(2000);
}
[[maybe_unused]] long python_round_trips() {  // used only where python3 was found
  return scaled(10000);
}
int fib_n() {
  return concur_bench::short_run ? 26 : 32;
}

const char* const kConcur = "concur::ThreadPoolExecutor";
const char* const kAsio = "asio::thread_pool+std::future";
const char* const kTbb = "tbb::task_group";
const char* const kThreadPool = "thread_pool::ThreadPool";
const char* const kAsync = "std::async";
const char* const kPython = "python ThreadPoolExecutor";

// Runs body(t) in `threads` threads released together; returns when all have finished. The
// threads are started before `timed` is called, which times the release and the joins.
template <class Body, class Timed>
void from_threads(int threads, Body body, Timed timed) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> all;
  for (int t = 0; t < threads; ++t) {
    all.emplace_back([&, t] {
      concur_bench::settle_arena();
      ++ready;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      body(t);
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  timed([&] {
    go.store(true, std::memory_order_release);
    for (auto& thread : all) thread.join();
  });
}

// Ends the program when a fork-join has not finished in 60 s: a deadlock must not hang a run.
class Watchdog {
 public:
  explicit Watchdog(std::string what) : what_(std::move(what)), thread_([this] { watch(); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      done_ = true;
    }
    finished_.notify_one();
    thread_.join();
  }

 private:
  void watch() {
    std::unique_lock<std::mutex> hold(mutex_);
    if (!finished_.wait_for(hold, std::chrono::seconds(60), [&] { return done_; })) {
      std::fprintf(stderr, "futures_bench: %s did not finish in 60 s (deadlock?)\n", what_.c_str());
      std::fflush(stdout);
      std::_Exit(1);
    }
  }

  std::string what_;
  std::mutex mutex_;
  std::condition_variable finished_;
  bool done_ = false;
  std::thread thread_;
};

long fib_serial(int n) {
  return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2);
}

// Reserves room for `n` futures in `futures` and writes every page of it once: a fresh 8 MB
// vector is otherwise faulted in page by page while the run is timed, which on this kind of
// virtual machine costs about 15 ms (2,000 faults of 7.5 us), and more when the C library has
// just given the memory back to the kernel. It is the harness's memory, not the pool's.
template <class F>
void reserve_touched(std::vector<F>& futures, std::size_t n) {
  futures.resize(n);
  futures.clear();
}

// ---- concur::ThreadPoolExecutor -------------------------------------------------------------

// Starts every worker and warms the pool before anything is timed.
void warm(concur::ThreadPoolExecutor& pool) {
  std::vector<concur::Future<void>> fs;
  for (int i = 0; i < 100 * kWorkers; ++i) fs.push_back(pool.submit([] {}));
  concur::wait(fs);
}

void submit_concur(benchmark::State& state, int submitters) {
  const long n = many_tasks() - many_tasks() % submitters;
  concur::ThreadPoolExecutor pool(kWorkers);
  warm(pool);
  std::vector<std::vector<concur::Future<void>>> fs(static_cast<std::size_t>(submitters));
  for (auto& f : fs) reserve_touched(f, static_cast<std::size_t>(n / submitters));
  auto submit_share = [&](int t) {
    auto& mine = fs[static_cast<std::size_t>(t)];
    for (long i = 0; i < n / submitters; ++i) mine.push_back(pool.submit([] {}));
    for (const auto& future : mine) future.result();
  };
  const char* scenario = submitters == 1 ? "submit-1t" : "submit-4t";
  if (submitters == 1) {
    measure(state, scenario, kConcur, Kind::rate, n, [&] { submit_share(0); });
  } else {
    from_threads(submitters, submit_share, [&](auto release_and_join) {
      measure(state, scenario, kConcur, Kind::rate, n, release_and_join);
    });
  }
}

void round_trip_concur(benchmark::State& state) {
  concur::ThreadPoolExecutor pool(kWorkers);
  warm(pool);
  const long trips = round_trips();
  measure(state, "roundtrip", kConcur, Kind::time_per_op, trips, [&] {
    for (long i = 0; i < trips; ++i) pool.submit([] {}).result();
  });
}

long fib_concur(concur::ThreadPoolExecutor& pool, int n) {
  if (n < kFibCutoff) return fib_serial(n);
  concur::Future<long> left = pool.submit([&pool, n] { return fib_concur(pool, n - 1); });
  const long right = fib_concur(pool, n - 2);
  return left.result() + right;
}

void fork_join_concur(benchmark::State& state, int workers, const std::string& scenario) {
  concur::ThreadPoolExecutor pool(workers);
  warm(pool);
  const int n = fib_n();
  Watchdog watchdog(scenario + "/" + kConcur);
  measure(state, scenario.c_str(), kConcur, Kind::time_per_op, 1, [&] {
    const long value = pool.submit([&pool, n] { return fib_concur(pool, n); }).result();
    if (value != fib_serial(n)) state.SkipWithError("wrong Fibonacci number");
  });
}

// ---- Boost.Asio thread_pool with std::packaged_task / std::future ---------------------------

#if CONCUR_BENCH_HAVE_ASIO
std::future<void> post_asio(boost::asio::thread_pool& pool) {
  std::packaged_task<void()> task([] {});
  std::future<void> future = task.get_future();
  boost::asio::post(pool, std::move(task));
  return future;
}

void warm(boost::asio::thread_pool& pool) {
  std::vector<std::future<void>> fs;
  for (int i = 0; i < 100 * kWorkers; ++i) fs.push_back(post_asio(pool));
  for (auto& f : fs) f.get();
}

void submit_asio(benchmark::State& state, int submitters) {
  const long n = many_tasks() - many_tasks() % submitters;
  boost::asio::thread_pool pool(kWorkers);
  warm(pool);
  std::vector<std::vector<std::future<void>>> fs(static_cast<std::size_t>(submitters));
  for (auto& f : fs) reserve_touched(f, static_cast<std::size_t>(n / submitters));
  auto submit_share = [&](int t) {
    auto& mine = fs[static_cast<std::size_t>(t)];
    for (long i = 0; i < n / submitters; ++i) mine.push_back(post_asio(pool));
    for (auto& f : mine) f.get();
  };
  const char* scenario = submitters == 1 ? "submit-1t" : "submit-4t";
  if (submitters == 1) {
    measure(state, scenario, kAsio, Kind::rate, n, [&] { submit_share(0); });
  } else {
    from_threads(submitters, submit_share, [&](auto release_and_join) {
      measure(state, scenario, kAsio, Kind::rate, n, release_and_join);
    });
  }
  pool.join();
}

void round_trip_asio(benchmark::State& state) {
  boost::asio::thread_pool pool(kWorkers);
  warm(pool);
  const long trips = round_trips();
  measure(state, "roundtrip", kAsio, Kind::time_per_op, trips, [&] {
    for (long i = 0; i < trips; ++i) post_asio(pool).get();
  });
  pool.join();
}
#endif

// ---- oneTBB task_group ----------------------------------------------------------------------

#if CONCUR_BENCH_HAVE_TBB
// TBB's own threads for an arena of `concurrency` (its default limit is the cores minus one).
tbb::global_control tbb_limit(int concurrency) {
  return tbb::global_control(tbb::global_control::max_allowed_parallelism,
                             static_cast<std::size_t>(std::max(concurrency, 2)));
}

void warm(tbb::task_arena& arena) {
  arena.execute([] {
    tbb::task_group group;
    for (int i = 0; i < 100 * kWorkers; ++i) group.run([] {});
    group.wait();
  });
}

void submit_tbb(benchmark::State& state, int submitters) {
  const long n = many_tasks() - many_tasks() % submitters;
  auto limit = tbb_limit(kWorkers);
  tbb::task_arena arena(kWorkers);
  warm(arena);
  auto submit_share = [&](int) {
    arena.execute([&] {
      tbb::task_group group;
      for (long i = 0; i < n / submitters; ++i) group.run([] {});
      group.wait();
    });
  };
  const char* scenario = submitters == 1 ? "submit-1t" : "submit-4t";
  if (submitters == 1) {
    measure(state, scenario, kTbb, Kind::rate, n, [&] { submit_share(0); });
  } else {
    from_threads(submitters, submit_share, [&](auto release_and_join) {
      measure(state, scenario, kTbb, Kind::rate, n, release_and_join);
    });
  }
}

void round_trip_tbb(benchmark::State& state) {
  auto limit = tbb_limit(kWorkers);
  tbb::task_arena arena(kWorkers);
  warm(arena);
  const long trips = round_trips();
  measure(state, "roundtrip", kTbb, Kind::time_per_op, trips, [&] {
    arena.execute([&] {
      tbb::task_group group;
      for (long i = 0; i < trips; ++i) {
        group.run([] {});
        group.wait();
      }
    });
  });
}

long fib_tbb(int n) {
  if (n < kFibCutoff) return fib_serial(n);
  long left = 0;
  tbb::task_group group;
  group.run([&] { left = fib_tbb(n - 1); });
  const long right = fib_tbb(n - 2);
  group.wait();
  return left + right;
}

void fork_join_tbb(benchmark::State& state, int workers, const std::string& scenario) {
  auto limit = tbb_limit(workers);
  tbb::task_arena arena(workers);
  warm(arena);
  const int n = fib_n();
  Watchdog watchdog(scenario + "/" + kTbb);
  measure(state, scenario.c_str(), kTbb, Kind::time_per_op, 1, [&] {
    const long value = arena.execute([n] { return fib_tbb(n); });
    if (value != fib_serial(n)) state.SkipWithError("wrong Fibonacci number");
  });
}
#endif

// ---- libthread-pool-dev's thread_pool::ThreadPool -------------------------------------------

#if CONCUR_BENCH_USE_THREAD_POOL
void warm(thread_pool::ThreadPool& pool) {
  std::vector<std::future<void>> fs;
  for (int i = 0; i < 100 * kWorkers; ++i) fs.push_back(pool.Submit([] {}));
  for (auto& f : fs) f.get();
}

void submit_thread_pool(benchmark::State& state, int submitters) {
  const long n = many_tasks() - many_tasks() % submitters;
  thread_pool::ThreadPool pool(kWorkers);
  warm(pool);
  std::vector<std::vector<std::future<void>>> fs(static_cast<std::size_t>(submitters));
  for (auto& f : fs) reserve_touched(f, static_cast<std::size_t>(n / submitters));
  auto submit_share = [&](int t) {
    auto& mine = fs[static_cast<std::size_t>(t)];
    for (long i = 0; i < n / submitters; ++i) mine.push_back(pool.Submit([] {}));
    for (auto& f : mine) f.get();
  };
  const char* scenario = submitters == 1 ? "submit-1t" : "submit-4t";
  if (submitters == 1) {
    measure(state, scenario, kThreadPool, Kind::rate, n, [&] { submit_share(0); });
  } else {
    from_threads(submitters, submit_share, [&](auto release_and_join) {
      measure(state, scenario, kThreadPool, Kind::rate, n, release_and_join);
    });
  }
}

void round_trip_thread_pool(benchmark::State& state) {
  thread_pool::ThreadPool pool(kWorkers);
  warm(pool);
  const long trips = round_trips();
  measure(state, "roundtrip", kThreadPool, Kind::time_per_op, trips, [&] {
    for (long i = 0; i < trips; ++i) pool.Submit([] {}).get();
  });
}
#endif

// ---- std::async -----------------------------------------------------------------------------

void submit_async(benchmark::State& state, int submitters) {
  const long n = async_tasks() - async_tasks() % submitters;
  std::vector<std::vector<std::future<void>>> fs(static_cast<std::size_t>(submitters));
  for (auto& f : fs) reserve_touched(f, static_cast<std::size_t>(n / submitters));
  auto submit_share = [&](int t) {
    auto& mine = fs[static_cast<std::size_t>(t)];
    for (long i = 0; i < n / submitters; ++i) {
      mine.push_back(std::async(std::launch::async, [] {}));
    }
    for (auto& f : mine) f.get();
  };
  const char* scenario = submitters == 1 ? "submit-1t" : "submit-4t";
  if (submitters == 1) {
    measure(state, scenario, kAsync, Kind::rate, n, [&] { submit_share(0); });
  } else {
    from_threads(submitters, submit_share, [&](auto release_and_join) {
      measure(state, scenario, kAsync, Kind::rate, n, release_and_join);
    });
  }
}

void round_trip_async(benchmark::State& state) {
  const long trips = async_round_trips();
  measure(state, "roundtrip", kAsync, Kind::time_per_op, trips, [&] {
    for (long i = 0; i < trips; ++i) std::async(std::launch::async, [] {}).get();
  });
}

// ---- Python's ThreadPoolExecutor ------------------------------------------------------------

#ifdef CONCUR_BENCH_PYTHON
// One run of benchmarks/futures_python.py: its wall seconds per task are the row's (as a rate
// for the submit rows, a time for the round trip), its CPU per task the row's CPU/op.
void python(benchmark::State& state, const char* scenario, const char* mode, long tasks,
            Kind kind) {
  const std::string command =
      std::string("'") + CONCUR_BENCH_PYTHON + "' '" + CONCUR_BENCH_SOURCE_DIR +
      "/futures_python.py' --seconds --mode " + mode + " --tasks " + std::to_string(tasks) +
      " --workers " + std::to_string(kWorkers) + " --submitters " + std::to_string(kSubmitters);
  concur_bench::measure_script(state, scenario, kPython, kind, command);
}
#endif

// ---- registration and the target check ------------------------------------------------------

void register_all() {
  auto once = [](benchmark::internal::Benchmark* b, benchmark::TimeUnit unit) {
    b->Iterations(1)->UseManualTime()->Unit(unit);
  };
  using Submit = void (*)(benchmark::State&, int);
  std::vector<std::pair<const char*, Submit>> submits;
  submits.emplace_back(kConcur, submit_concur);
#if CONCUR_BENCH_HAVE_ASIO
  submits.emplace_back(kAsio, submit_asio);
#endif
#if CONCUR_BENCH_HAVE_TBB
  submits.emplace_back(kTbb, submit_tbb);
#endif
#if CONCUR_BENCH_USE_THREAD_POOL
  submits.emplace_back(kThreadPool, submit_thread_pool);
#endif
  submits.emplace_back(kAsync, submit_async);
  for (const auto& [name, fn] : submits) {
    for (int submitters : {1, kSubmitters}) {
      const std::string scenario = submitters == 1 ? "submit-1t" : "submit-4t";
      once(benchmark::RegisterBenchmark((scenario + "/" + name).c_str(), fn, submitters),
           benchmark::kMillisecond);
    }
  }
#ifdef CONCUR_BENCH_PYTHON
  for (const auto& [scenario, mode] :
       {std::pair{"submit-1t", "submit"}, std::pair{"submit-4t", "submit4"}}) {
    once(benchmark::RegisterBenchmark((std::string(scenario) + "/" + kPython).c_str(), python,
                                      scenario, mode, python_tasks(), Kind::rate),
         benchmark::kMillisecond);
  }
#endif

  using Trip = void (*)(benchmark::State&);
  std::vector<std::pair<const char*, Trip>> trips;
  trips.emplace_back(kConcur, round_trip_concur);
#if CONCUR_BENCH_HAVE_ASIO
  trips.emplace_back(kAsio, round_trip_asio);
#endif
#if CONCUR_BENCH_HAVE_TBB
  trips.emplace_back(kTbb, round_trip_tbb);
#endif
#if CONCUR_BENCH_USE_THREAD_POOL
  trips.emplace_back(kThreadPool, round_trip_thread_pool);
#endif
  trips.emplace_back(kAsync, round_trip_async);
  for (const auto& [name, fn] : trips) {
    once(benchmark::RegisterBenchmark((std::string("roundtrip/") + name).c_str(), fn),
         benchmark::kMicrosecond);
  }
#ifdef CONCUR_BENCH_PYTHON
  once(benchmark::RegisterBenchmark((std::string("roundtrip/") + kPython).c_str(), python,
                                    "roundtrip", "roundtrip", python_round_trips(),
                                    Kind::time_per_op),
       benchmark::kMicrosecond);
#endif

  for (int workers : {1, 2, 4}) {
    const std::string scenario = "forkjoin-" + std::to_string(workers) + "w";
    (void)scenario;
    once(benchmark::RegisterBenchmark((scenario + "/" + kConcur).c_str(), fork_join_concur, workers,
                                      scenario),
         benchmark::kMillisecond);
#if CONCUR_BENCH_HAVE_TBB
    once(benchmark::RegisterBenchmark((scenario + "/" + kTbb).c_str(), fork_join_tbb, workers,
                                      scenario),
         benchmark::kMillisecond);
#endif
  }
}

// The C++ peer with the best median rate in `scenario` ("" when none was measured); with
// `futures_only`, of the peers that make a future per task (not TBB's task_group).
std::string best_peer(const std::string& scenario, bool futures_only = false) {
  std::string best;
  for (const char* peer : {kAsio, kTbb, kThreadPool, kAsync}) {
    if (futures_only && peer == kTbb) continue;
    if (concur_bench::recorded_median(scenario, peer) >
        (best.empty() ? 0 : concur_bench::recorded_median(scenario, best)))
      best = peer;
  }
  return best;
}

void print_targets() {
  auto& check = concur_bench::check_target;
  std::printf(
      "\nTarget check (issue 15; every pool %d workers, TBB an arena of %d; medians of the "
      "repetitions)\n",
      kWorkers, kWorkers);
  for (const char* scenario : {"submit-1t", "submit-4t"}) {
    const char* label = std::string(scenario) == "submit-1t" ? "(a)" : "(b)";
    const std::string best = best_peer(scenario);
    check(label, Kind::rate, scenario, kConcur, best.empty() ? "best C++ peer" : best, 1.5);
    check(label, Kind::rate, scenario, kConcur, kPython, 100);
    // For reference (no target): the best peer that, like concur, makes a future per task.
    const std::string with_futures = best_peer(scenario, true);
    const double mine = concur_bench::recorded_median(scenario, kConcur);
    const double theirs = concur_bench::recorded_median(scenario, with_futures);
    if (!with_futures.empty() && with_futures != best && mine > 0 && theirs > 0) {
      std::printf(
          "  %-4s %-14s (no target) against the best peer with a future per task, %s %.3g/s: "
          "%.2fx\n",
          label, scenario, with_futures.c_str(), theirs, mine / theirs);
    }
  }
  check("(c)", Kind::time_per_op, "roundtrip", kConcur, kAsio, 0.5);
  for (const char* scenario : {"forkjoin-1w", "forkjoin-2w", "forkjoin-4w"}) {
    check("(d)", Kind::time_per_op, scenario, kConcur, kTbb, 1.5);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // run() sets this too, but the registrations and titles below already need it.
  concur_bench::short_run = concur_bench::short_run_asked(argc, argv);
  register_all();
  using concur_bench::Metric;
  const std::string workers = std::to_string(kWorkers);
  return concur_bench::run(
      argc, argv,
      {{"Empty tasks submitted, then waited for; " + workers +
            " workers (targets: concur >= 1.5x the best C++ peer, >= 100x Python)",
        kPython,
        Metric::throughput,
        {"submit-1t", "submit-4t"}},
       {"Empty tasks submitted, then waited for; " + workers + " workers, against Asio",
        kAsio,
        Metric::throughput,
        {"submit-1t", "submit-4t"}},
       {"submit + result() round trip on an idle pool of " + workers +
            " workers (target: concur <= 0.5x Asio + std::future)",
        kAsio,
        Metric::time,
        {"roundtrip"}},
       {"Recursive fork-join, fib(" + std::to_string(fib_n()) + ") serial below " +
            std::to_string(kFibCutoff) +
            ", on N workers (target: concur <= 1.5x TBB; Asio + std::future and "
            "thread_pool::ThreadPool not run: they deadlock)",
        kTbb,
        Metric::time,
        {"forkjoin-1w", "forkjoin-2w", "forkjoin-4w"}}},
      /*default_repetitions=*/5, print_targets);
}
