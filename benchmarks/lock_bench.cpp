// Locks compared: concur::Lock and RLock against the standard mutexes, a pthread spin lock, and
// Abseil, oneTBB and Boost when they are found. One harness (a template) drives them all.
//
// Scenarios
//   uncontended  one thread, acquire+release                          (time per pair)
//   tiny         N threads, a critical section of one increment        (pairs per second)
//   long         N threads, ~1 us of work inside and ~0.25 us outside  (pairs per second)
//                (both: every thread's acquisitions over a 200 ms window)
//   semaphore    one thread, acquire+release of a semaphore            (time per pair)
//   fairness     4 threads hammer each lock for a while; each thread's share and the longest
//                single wait (printed after the summaries)
//
// Targets (issue: locks; ratios within one run)
//   uncontended: Lock <= 0.75x std::mutex's time, RLock <= 0.8x std::recursive_mutex's
//   tiny: Lock >= 2.5x std::mutex at 2, 4, 8 threads; >= 1.0x the best blocking lock in every
//         column; >= 0.6x the best spin lock
//   fairness: no thread below 25% of the mean; longest wait no worse than std::mutex's
//   semaphore: Semaphore <= 1.0x std::counting_semaphore's time

#include <pthread.h>
#include <concur/lock.hpp>
#include <concur/rlock.hpp>
#include <concur/semaphore.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

#if CONCUR_BENCH_HAVE_ABSL
#include <absl/synchronization/mutex.h>
#endif
#if CONCUR_BENCH_HAVE_TBB
#include <oneapi/tbb/queuing_mutex.h>
#include <oneapi/tbb/spin_mutex.h>
#endif
#if CONCUR_BENCH_HAVE_BOOST
#include <boost/thread/mutex.hpp>
#endif

namespace {

// A pthread spin lock with the Lockable members.
class PthreadSpinLock {
 public:
  PthreadSpinLock() { pthread_spin_init(&lock_, PTHREAD_PROCESS_PRIVATE); }
  ~PthreadSpinLock() { pthread_spin_destroy(&lock_); }
  void lock() { pthread_spin_lock(&lock_); }
  void unlock() { pthread_spin_unlock(&lock_); }

 private:
  pthread_spinlock_t lock_;
};

// Runs `body` with `m` held: lock()/unlock() for most, the library's own form for the rest.
template <class M, class Body>
inline void with_lock(M& m, Body&& body) {
  m.lock();
  body();
  m.unlock();
}

#if CONCUR_BENCH_HAVE_ABSL
template <class Body>
inline void with_lock(absl::Mutex& m, Body&& body) {
  m.Lock();
  body();
  m.Unlock();
}
#endif

#if CONCUR_BENCH_HAVE_TBB
template <class Body>
inline void with_lock(tbb::queuing_mutex& m, Body&& body) {
  tbb::queuing_mutex::scoped_lock hold(m);  // a queue node per acquisition, as TBB requires
  body();
}
#endif

// Work that the compiler cannot remove, about a nanosecond a unit.
inline void work(int units) {
  for (int i = 0; i < units; ++i) benchmark::DoNotOptimize(i);
}

template <class M>
M& shared_lock() {
  static M lock;
  return lock;
}

long shared_counter = 0;  // touched only inside critical sections

// Acquire+release and nothing else: the cost of the lock itself.
template <class M>
void uncontended(benchmark::State& state) {
  M& m = shared_lock<M>();
  for (auto _ : state) with_lock(m, [] { benchmark::ClobberMemory(); });
}

// N threads take the lock in a loop for a fixed time; the rate is every acquisition of every
// thread over that time (the aggregate throughput of the lock). Each repetition starts fresh
// threads behind a start line, so their creation is not timed. Fairness is measured apart.
template <class M>
void contended(benchmark::State& state, int inside, int outside) {
  const int threads = static_cast<int>(state.range(0));
  constexpr auto window = std::chrono::milliseconds(200);
  for (auto _ : state) {
    M& m = shared_lock<M>();
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::atomic<bool> stop{false};
    std::atomic<long> total{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        ++ready;
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        long mine = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          with_lock(m, [&] {
            ++shared_counter;
            work(inside);
          });
          work(outside);
          ++mine;
        }
        total += mine;
      });
    }
    while (ready.load() < threads) std::this_thread::yield();
    const auto start = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    std::this_thread::sleep_for(window);
    stop = true;
    const auto elapsed = std::chrono::steady_clock::now() - start;
    for (auto& w : workers) w.join();
    state.SetIterationTime(std::chrono::duration<double>(elapsed).count());
    state.counters["items_per_second"] = benchmark::Counter(
        static_cast<double>(total.load()) / std::chrono::duration<double>(elapsed).count());
  }
}

template <class M>
void tiny_section(benchmark::State& state) {
  contended<M>(state, /*inside=*/0, /*outside=*/0);
}

template <class M>
void long_section(benchmark::State& state) {
  contended<M>(state, /*inside=*/1000, /*outside=*/250);
}

template <class S>
void semaphore_pair(benchmark::State& state) {
  static S semaphore(1);
  for (auto _ : state) {
    semaphore.acquire();
    semaphore.release();
  }
}

// ---- fairness -------------------------------------------------------------------------------

struct FairnessResult {
  std::string name;
  double min_share = 0;  // fewest acquisitions of one thread, over the mean
  double max_share = 0;  // most acquisitions of one thread, over the mean
  double longest_wait_ms = 0;
};

template <class M>
FairnessResult fairness(const std::string& name, int threads, std::chrono::milliseconds length) {
  M m;
  long counter = 0;
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<long> counts(threads);
  std::vector<std::chrono::steady_clock::duration> longest(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      long mine = 0;
      std::chrono::steady_clock::duration worst{};
      while (!stop.load(std::memory_order_relaxed)) {
        const auto start = std::chrono::steady_clock::now();
        with_lock(m, [&] {
          worst = std::max(worst, std::chrono::steady_clock::now() - start);
          ++counter;
          work(50);
        });
        ++mine;
      }
      counts[t] = mine;
      longest[t] = worst;
    });
  }
  go = true;
  std::this_thread::sleep_for(length);
  stop = true;
  for (auto& w : workers) w.join();
  double mean = 0;
  for (long c : counts) mean += static_cast<double>(c) / threads;
  FairnessResult result{name};
  result.min_share = *std::min_element(counts.begin(), counts.end()) / mean;
  result.max_share = *std::max_element(counts.begin(), counts.end()) / mean;
  result.longest_wait_ms =
      std::chrono::duration<double, std::milli>(*std::max_element(longest.begin(), longest.end()))
          .count();
  return result;
}

// ---- registration ---------------------------------------------------------------------------

struct Contender {
  std::string name;
  void (*uncontended)(benchmark::State&);
  void (*tiny)(benchmark::State&);
  void (*long_cs)(benchmark::State&);
  FairnessResult (*fairness)(const std::string&, int, std::chrono::milliseconds);
};

template <class M>
Contender contender(const char* name) {
  return {name, &uncontended<M>, &tiny_section<M>, &long_section<M>, &fairness<M>};
}

std::vector<Contender> contenders() {
  std::vector<Contender> all = {
      contender<concur::Lock>("concur::Lock"),
      contender<concur::RLock>("concur::RLock"),
      contender<std::mutex>("std::mutex"),
      contender<std::recursive_mutex>("std::recursive_mutex"),
      contender<std::timed_mutex>("std::timed_mutex"),
      contender<PthreadSpinLock>("pthread_spinlock"),
  };
#if CONCUR_BENCH_HAVE_ABSL
  all.push_back(contender<absl::Mutex>("absl::Mutex"));
#endif
#if CONCUR_BENCH_HAVE_TBB
  all.push_back(contender<tbb::spin_mutex>("tbb::spin_mutex"));
  all.push_back(contender<tbb::queuing_mutex>("tbb::queuing_mutex"));
#endif
#if CONCUR_BENCH_HAVE_BOOST
  all.push_back(contender<boost::mutex>("boost::mutex"));
#endif
  return all;
}

void register_all(const std::vector<Contender>& all) {
  for (const Contender& c : all) {
    benchmark::RegisterBenchmark(("uncontended/" + c.name).c_str(), c.uncontended)->MinTime(0.2);
    benchmark::RegisterBenchmark(("tiny/" + c.name).c_str(), c.tiny)
        ->ArgName("threads")
        ->Arg(1)
        ->Arg(2)
        ->Arg(4)
        ->Arg(8)
        ->Iterations(1)
        ->UseManualTime();
    benchmark::RegisterBenchmark(("long/" + c.name).c_str(), c.long_cs)
        ->ArgName("threads")
        ->Arg(2)
        ->Arg(4)
        ->Iterations(1)
        ->UseManualTime();
  }
  benchmark::RegisterBenchmark("semaphore/concur::Semaphore", &semaphore_pair<concur::Semaphore>)
      ->MinTime(0.2);
  benchmark::RegisterBenchmark("semaphore/concur::BoundedSemaphore",
                               &semaphore_pair<concur::BoundedSemaphore>)
      ->MinTime(0.2);
  benchmark::RegisterBenchmark("semaphore/std::counting_semaphore",
                               &semaphore_pair<std::counting_semaphore<>>)
      ->MinTime(0.2);
}

// The median of three runs, field by field: one run's figures swing with the scheduler.
FairnessResult median_fairness(const Contender& c, int threads, std::chrono::milliseconds length) {
  std::vector<FairnessResult> runs;
  for (int i = 0; i < 3; ++i) runs.push_back(c.fairness(c.name, threads, length));
  auto middle = [&](double FairnessResult::*field) {
    std::vector<double> values;
    for (const FairnessResult& r : runs) values.push_back(r.*field);
    std::sort(values.begin(), values.end());
    return values[1];
  };
  return {c.name, middle(&FairnessResult::min_share), middle(&FairnessResult::max_share),
          middle(&FairnessResult::longest_wait_ms)};
}

void print_fairness(const std::vector<Contender>& all) {
  constexpr int threads = 4;
  constexpr auto length = std::chrono::milliseconds(500);
  std::printf(
      "\nFairness: %d threads hammer one lock for %lld ms, median of 3 runs (targets:\n"
      "concur::Lock's fewest acquisitions >= 25%% of the mean; longest wait <= std::mutex's)\n",
      threads, static_cast<long long>(length.count()));
  std::printf("%-24s %12s %12s %18s\n", "", "min/mean", "max/mean", "longest wait");
  for (const Contender& c : all) {
    const FairnessResult r = median_fairness(c, threads, length);
    std::printf("%-24s %11.0f%% %11.0f%% %15.2f ms\n", r.name.c_str(), 100 * r.min_share,
                100 * r.max_share, r.longest_wait_ms);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Contender> all = contenders();
  register_all(all);
  const int rc = concur_bench::run(
      argc, argv,
      {{"Uncontended acquire+release (target: concur::Lock <= 0.75x)",
        "std::mutex",
        concur_bench::Metric::time,
        {"uncontended"}},
       {"Uncontended acquire+release (target: concur::RLock <= 0.8x)",
        "std::recursive_mutex",
        concur_bench::Metric::time,
        {"uncontended"}},
       {"Contended, tiny and ~1us critical sections (target: concur::Lock >= 2.5x at 2-8 threads)",
        "std::mutex",
        concur_bench::Metric::throughput,
        {"tiny", "long"}},
       {"Semaphore acquire+release (target: concur::Semaphore <= 1.0x)",
        "std::counting_semaphore",
        concur_bench::Metric::time,
        {"semaphore"}}});
  if (rc == 0 && !concur_bench::listing_only(argc, argv)) print_fairness(all);
  return rc;
}
