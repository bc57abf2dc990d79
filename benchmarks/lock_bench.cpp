// Locks compared: concur::Lock and RLock against the standard mutexes, a pthread spin lock, and
// Abseil, oneTBB and Boost when they are found. One harness (a template) drives them all.
//
// Scenarios
//   uncontended  one thread, acquire+release                          (time per pair)
//   tiny         N threads, a critical section of one increment        (pairs per second)
//   long         N threads, ~1 us of work inside and ~0.25 us outside  (pairs per second)
//                (both: every thread's acquisitions over a 200 ms window)
//   oversub-2us  4x as many threads as cores (8 on 2 cores), 2 us of work inside and 0.5 us
//                outside (calibrated at start-up), over a 200 ms window (time per pair): with
//                more threads than cores, a lock that spins where others sleep takes CPU from
//                the thread that holds the lock, and its CPU per acquisition shows it
//   condbuf      a bounded buffer of 5 ints built on a lock and two condition variables, 4
//                producers and 4 consumers (time per item): concur::Condition over
//                concur::Lock against std::condition_variable over std::mutex (the same code:
//                each notifies with the lock held, as Python requires) and, for information,
//                std with the notify after the unlock, and Abseil's CondVar
//   semaphore    one thread, acquire+release of a semaphore            (time per pair)
//   fairness     4 threads hammer each lock for a while; each thread's share and the longest
//                single wait (printed after the summaries)
// Every scenario also reports the process's CPU time per operation (bench_support.hpp).
//
// Targets (ratios within one run)
//   uncontended: Lock <= 0.75x std::mutex's time, RLock <= 0.8x std::recursive_mutex's
//   tiny: Lock >= 2x std::mutex at 2, 4 and 8 threads
//   oversubscribed (8 threads, 2 us critical sections): Lock's CPU per acquisition <= 1.1x and
//         its wall time per acquisition <= 1.0x std::mutex's
//   condbuf: CPU per item <= 1.1x and wall time per item <= 1.0x the std::condition_variable
//         buffer's
//   fairness: no thread below 25% of the mean; longest wait no worse than std::mutex's
//   semaphore: Semaphore <= 1.0x std::counting_semaphore's time

#include <pthread.h>
#include <concur/condition.hpp>
#include <concur/lock.hpp>
#include <concur/rlock.hpp>
#include <concur/semaphore.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
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

using concur_bench::work;

// The oversubscribed scenario's work inside and outside the lock, in units of work(),
// calibrated in main() before anything runs.
long oversub_inside = 2000;
long oversub_outside = 500;

// 4x as many threads as the machine has cores.
int oversubscribed_threads() {
  return 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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
  concur_bench::LoopCost cost(state);
  for (auto _ : state) with_lock(m, [] { benchmark::ClobberMemory(); });
}

// What a contended run reports: the rate of acquisitions of all threads (higher is better), or
// the wall time per acquisition (lower is better).
enum class Report { rate, time_per_op };

// N threads take the lock in a loop for a fixed time; the rate is every acquisition of every
// thread over that time (the aggregate throughput of the lock). Each repetition starts fresh
// threads behind a start line, so their creation is not timed. The CPU per acquisition is the
// process's from the start line until every thread has been joined (the threads end within one
// acquisition of the stop, and those acquisitions are counted). Fairness is measured apart.
template <class M>
void contended(benchmark::State& state, long inside, long outside, Report report) {
  const int threads = static_cast<int>(state.range(0));
  const auto window = std::chrono::milliseconds(concur_bench::scaled(200));
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
    const concur_bench::Cost before = concur_bench::Cost::now();
    const auto start = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    std::this_thread::sleep_for(window);
    stop = true;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (auto& w : workers) w.join();
    const concur_bench::Cost after = concur_bench::Cost::now();
    const double acquisitions = static_cast<double>(std::max(1L, total.load()));
    concur_bench::set_cost(state, before, after, acquisitions);
    if (report == Report::rate) {
      state.SetIterationTime(seconds);
      state.counters["items_per_second"] = benchmark::Counter(acquisitions / seconds);
    } else {
      state.SetIterationTime(seconds / acquisitions);
    }
  }
}

template <class M>
void tiny_section(benchmark::State& state) {
  contended<M>(state, /*inside=*/0, /*outside=*/0, Report::rate);
}

template <class M>
void long_section(benchmark::State& state) {
  contended<M>(state, /*inside=*/1000, /*outside=*/250, Report::rate);
}

template <class M>
void oversubscribed(benchmark::State& state) {
  contended<M>(state, oversub_inside, oversub_outside, Report::time_per_op);
}

template <class S>
void semaphore_pair(benchmark::State& state) {
  static S semaphore(1);
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    semaphore.acquire();
    semaphore.release();
  }
}

// ---- a bounded buffer on a lock and two condition variables ---------------------------------

// Five ints in a ring; the buffers below guard it with their lock.
class Ring {
 public:
  static constexpr int capacity = 5;
  bool full() const { return count_ == capacity; }
  bool empty() const { return count_ == 0; }
  void push(int item) {
    items_[(head_ + count_) % capacity] = item;
    ++count_;
  }
  int pop() {
    const int item = items_[head_];
    head_ = (head_ + 1) % capacity;
    --count_;
    return item;
  }

 private:
  int items_[capacity] = {};
  int head_ = 0;
  int count_ = 0;
};

// Python's way, in C++: one Lock, a Condition for "not empty" and one for "not full", each
// notified with the lock held (a Condition requires it).
class ConcurConditionBuffer {
 public:
  void put(int item) {
    concur::Guard hold(lock_);
    while (ring_.full()) not_full_.wait();
    ring_.push(item);
    not_empty_.notify();
  }
  int get() {
    concur::Guard hold(lock_);
    while (ring_.empty()) not_empty_.wait();
    const int item = ring_.pop();
    not_full_.notify();
    return item;
  }

 private:
  concur::Lock lock_;
  concur::Condition<concur::Lock> not_empty_{lock_};
  concur::Condition<concur::Lock> not_full_{lock_};
  Ring ring_;
};

// The same buffer on std::mutex and std::condition_variable, notifying with the lock held
// (`after_unlock` false, the same code as above) or just after releasing it (true, what C++
// code often does to spare the woken thread a wait for the mutex).
template <bool after_unlock>
class StdConditionBuffer {
 public:
  void put(int item) {
    std::unique_lock<std::mutex> hold(mutex_);
    while (ring_.full()) not_full_.wait(hold);
    ring_.push(item);
    if (after_unlock) hold.unlock();
    not_empty_.notify_one();
  }
  int get() {
    std::unique_lock<std::mutex> hold(mutex_);
    while (ring_.empty()) not_empty_.wait(hold);
    const int item = ring_.pop();
    if (after_unlock) hold.unlock();
    not_full_.notify_one();
    return item;
  }

 private:
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  Ring ring_;
};

#if CONCUR_BENCH_HAVE_ABSL
class AbslConditionBuffer {
 public:
  void put(int item) {
    absl::MutexLock hold(&mutex_);
    while (ring_.full()) not_full_.Wait(&mutex_);
    ring_.push(item);
    not_empty_.Signal();
  }
  int get() {
    absl::MutexLock hold(&mutex_);
    while (ring_.empty()) not_empty_.Wait(&mutex_);
    const int item = ring_.pop();
    not_full_.Signal();
    return item;
  }

 private:
  absl::Mutex mutex_;
  absl::CondVar not_empty_;
  absl::CondVar not_full_;
  Ring ring_;
};
#endif

// 4 producers put `items` ints in all, 4 consumers take their share each; the time and the
// process's CPU are per item, from the start line until every thread has been joined.
template <class Buffer>
void condition_buffer(benchmark::State& state) {
  constexpr int producers = 4;
  constexpr int consumers = 4;
  const long items = concur_bench::scaled(40000);  // divisible by 4, and so is a tenth
  for (auto _ : state) {
    Buffer buffer;
    const concur_bench::ProducerConsumerRun run = concur_bench::run_producers_consumers(
        state, producers, consumers, items,
        [&](int p) {
          for (long i = p; i < items; i += producers) buffer.put(static_cast<int>(i));
        },
        [&] {
          long sum = 0;
          for (long i = 0; i < items / consumers; ++i) sum += buffer.get();
          return sum;
        });
    if (!run.checksum_ok) {
      state.SkipWithError("items lost or duplicated");
      return;
    }
    state.SetIterationTime(run.seconds / static_cast<double>(items));
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
  void (*oversub)(benchmark::State&);
  FairnessResult (*fairness)(const std::string&, int, std::chrono::milliseconds);
};

template <class M>
Contender contender(const char* name) {
  return {name,        &uncontended<M>, &tiny_section<M>, &long_section<M>, &oversubscribed<M>,
          &fairness<M>};
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
    benchmark::RegisterBenchmark(("oversub-2us/" + c.name).c_str(), c.oversub)
        ->ArgName("threads")
        ->Arg(oversubscribed_threads())
        ->Iterations(1)
        ->UseManualTime();
  }
  auto buffer = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(1)->UseManualTime();
  };
  buffer("condbuf-4p4c-cap5/concur::Condition", &condition_buffer<ConcurConditionBuffer>);
  buffer("condbuf-4p4c-cap5/std::condition_variable", &condition_buffer<StdConditionBuffer<false>>);
  buffer("condbuf-4p4c-cap5/std::condition_variable, notify after unlock",
         &condition_buffer<StdConditionBuffer<true>>);
#if CONCUR_BENCH_HAVE_ABSL
  buffer("condbuf-4p4c-cap5/absl::CondVar", &condition_buffer<AbslConditionBuffer>);
#endif
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
  const auto length = std::chrono::milliseconds(concur_bench::scaled(500));
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
  const bool listing = concur_bench::listing_only(argc, argv);
  if (!listing) {
    oversub_inside = concur_bench::work_units_for(std::chrono::microseconds(2));
    oversub_outside = concur_bench::work_units_for(std::chrono::nanoseconds(500));
    std::printf(
        "oversub-2us: %d threads on %u cores; 2 us inside = %ld units of work, 0.5 us "
        "outside = %ld\n",
        oversubscribed_threads(), std::thread::hardware_concurrency(), oversub_inside,
        oversub_outside);
  }
  register_all(all);
  const std::string oversub =
      "Oversubscribed: " + std::to_string(oversubscribed_threads()) +
      " threads (4x the cores), 2 us critical sections (targets: concur::Lock wall <= 1.0x and "
      "CPU/op <= 1.1x)";
  return concur_bench::run(
      argc, argv,
      {{"Uncontended acquire+release (target: concur::Lock <= 0.75x)",
        "std::mutex",
        concur_bench::Metric::time,
        {"uncontended"}},
       {"Uncontended acquire+release (target: concur::RLock <= 0.8x)",
        "std::recursive_mutex",
        concur_bench::Metric::time,
        {"uncontended"}},
       {"Contended, tiny and ~1us critical sections (target: concur::Lock >= 2x at 2, 4 and 8 "
        "threads in tiny)",
        "std::mutex",
        concur_bench::Metric::throughput,
        {"tiny", "long"}},
       {oversub, "std::mutex", concur_bench::Metric::time, {"oversub-2us"}},
       {"Bounded buffer on a lock and two conditions, 4 producers, 4 consumers, 5 slots "
        "(targets: concur::Condition wall <= 1.0x and CPU/op <= 1.1x)",
        "std::condition_variable",
        concur_bench::Metric::time,
        {"condbuf-4p4c-cap5"}},
       {"Semaphore acquire+release (target: concur::Semaphore <= 1.0x)",
        "std::counting_semaphore",
        concur_bench::Metric::time,
        {"semaphore"}}},
      /*default_repetitions=*/5, [&] { print_fairness(all); });
}
