// How late a 1 ms timed wait returns while CPU-bound threads keep every core busy: each of
// concur's primitives with a timeout against std::timed_mutex::try_lock_for and
// std::condition_variable::wait_for.
//
// For the whole run, 2x as many threads as the machine has cores spin on work (the "hogs"), at
// the same priority as the measuring thread. Each sample makes one wait of 1 ms that must time
// out (nothing will ever come) and takes the time from the call to its return; the lateness is
// that time less 1 ms. A wait whose sleep hands the CPU back to the scheduler returns about a
// tenth of a millisecond late (the kernel's timer slack, then a wake-up that preempts a hog);
// one that spins or calls sched_yield() past its deadline queues behind the hogs for whole
// time slices and returns milliseconds late.
//
// What is waited on:
//   concur::Lock acquire               a Lock this thread holds (a Lock has no owner)
//   concur::RLock acquire              an RLock another thread holds
//   concur::Semaphore acquire          a Semaphore(0)
//   concur::BoundedSemaphore acquire   a BoundedSemaphore(1) taken once
//   concur::Event wait                 an Event never set
//   concur::Condition<...> wait        a Condition never notified (its lock held around it)
//   concur::Queue maxsize=8 get        an empty bounded Queue (the ring); throws Empty
//   concur::Queue maxsize=0 get        an empty unbounded Queue (the locked core); throws Empty
//   concur::LifoQueue get, PriorityQueue get, SimpleQueue get    empty; throw Empty
//   concur::Barrier wait               a fresh Barrier(2) with one party: it breaks, and the
//                                      wait throws BrokenBarrierError
//   concur::Thread join                a thread that runs until the end of the program
//   std::timed_mutex try_lock_for      a timed_mutex another thread holds
//   std::condition_variable wait_for   never notified (wait_for with a false predicate, so a
//                                      spurious wake-up does not end the wait early)
//
// Each Google Benchmark run of a contender takes a batch of samples (15; 3 when the command line
// asks for a minimum time under 0.1 s, as the CI's smoke run does; --lateness_samples=N sets
// it); with the default 10 repetitions, interleaved in random order, that is 150 samples a
// contender. A contender whose waits have used up its share of a 45-second budget takes one
// sample a run from then on, so a very late one cannot make the program run for minutes.
// Google Benchmark's lines show each batch's mean wait ("Time"), the median and p90 of its
// lateness, and "waiter_CPU/wait": the CPU time of the waiting thread per wait
// (getrusage(RUSAGE_THREAD)), which is near zero for a wait that sleeps and near 1 ms for one
// that spins. (The process's CPU, which the other programs report, says nothing here: the hogs
// use all of it by design.)
//
// The summary pools every sample of a contender: median and p90 lateness, p90 over the worse
// p90 of the two std references, returns before the deadline (must be 0), and the waiting
// thread's CPU per wait.
//
// Target (issue: trust): every concur primitive's p90 <= 2x the worse p90 of the two std
// references.

#include <concur/barrier.hpp>
#include <concur/condition.hpp>
#include <concur/errors.hpp>
#include <concur/event.hpp>
#include <concur/lock.hpp>
#include <concur/queue.hpp>
#include <concur/rlock.hpp>
#include <concur/semaphore.hpp>
#include <concur/simple_queue.hpp>
#include <concur/thread.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto timeout = 1ms;
constexpr double total_budget_seconds = 45;

int samples_per_run = 15;

int cores() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// One timed wait: how late it returned (seconds; negative: early) and the waiting thread's CPU.
struct Sample {
  double late = 0;
  double cpu = 0;
};

// ---- what the waits wait on, and the hogs ---------------------------------------------------

// Everything the contenders wait on, the threads that hold what must be held by another thread,
// and the CPU-bound hogs. Built once (starting its threads), stopped and joined at the end.
class Fixture {
 public:
  Fixture() {
    lock.acquire();  // held by the measuring thread for the whole run
    bounded.acquire();
    holder_ = std::thread([this] {
      rlock.acquire();
      timed_mutex.lock();
      held_ = true;
      while (!stop_.load()) std::this_thread::sleep_for(2ms);
      timed_mutex.unlock();
      rlock.release();
    });
    while (!held_.load()) std::this_thread::sleep_for(1ms);
    long_runner.start();
    for (int i = 0; i < 2 * cores(); ++i) {
      hogs_.emplace_back([this] {
        while (!stop_.load(std::memory_order_relaxed)) concur_bench::work(1000);
      });
    }
  }

  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;
  ~Fixture() { stop(); }

  void stop() {
    if (stop_.exchange(true)) return;
    for (auto& hog : hogs_) hog.join();
    holder_.join();
    long_runner.join();
  }

  int hogs() const { return static_cast<int>(hogs_.size()); }

  concur::Lock lock;
  concur::RLock rlock;
  concur::Semaphore semaphore{0};
  concur::BoundedSemaphore bounded{1};
  concur::Event event;
  concur::Lock condition_lock;
  concur::Condition<concur::Lock> condition{condition_lock};
  concur::Condition<concur::RLock> rcondition;
  concur::Queue<int> ring{8};
  concur::Queue<int> unbounded{0};
  concur::LifoQueue<int> lifo;
  concur::PriorityQueue<int> priority;
  concur::SimpleQueue<int> simple;
  std::timed_mutex timed_mutex;
  std::mutex mutex;
  std::condition_variable condvar;
  concur::Thread long_runner{[this] {
    while (!stop_.load()) std::this_thread::sleep_for(2ms);
  }};

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> held_{false};
  std::thread holder_;
  std::vector<std::thread> hogs_;
};

Fixture* fixture = nullptr;

// Times `wait`, which must time out: false when it did not (it returned true).
template <class Wait>
bool timed(Wait&& wait, Sample& sample) {
  const double cpu_before = concur_bench::thread_cpu_seconds();
  const auto start = Clock::now();
  const bool timed_out = wait();
  const auto end = Clock::now();
  sample.cpu = concur_bench::thread_cpu_seconds() - cpu_before;
  sample.late = std::chrono::duration<double>(end - start - timeout).count();
  return timed_out;
}

// A get(timeout) on an empty queue: times out by throwing Empty.
template <class Q>
bool get_times_out(Q& queue) {
  try {
    (void)queue.get(timeout);
    return false;
  } catch (const concur::Empty&) {
    return true;
  }
}

struct Contender {
  std::string name;
  std::function<bool(Sample&)> sample;  // one wait; false when it did not time out
};

std::vector<Contender> contenders() {
  Fixture*& f = fixture;
  return {
      {"concur::Lock acquire",
       [&f](Sample& s) { return timed([&] { return !f->lock.acquire(timeout); }, s); }},
      {"concur::RLock acquire",
       [&f](Sample& s) { return timed([&] { return !f->rlock.acquire(timeout); }, s); }},
      {"concur::Semaphore acquire",
       [&f](Sample& s) { return timed([&] { return !f->semaphore.acquire(timeout); }, s); }},
      {"concur::BoundedSemaphore acquire",
       [&f](Sample& s) { return timed([&] { return !f->bounded.acquire(timeout); }, s); }},
      {"concur::Event wait",
       [&f](Sample& s) { return timed([&] { return !f->event.wait(timeout); }, s); }},
      {"concur::Condition<Lock> wait",
       [&f](Sample& s) {
         concur::Guard hold(f->condition_lock);
         return timed([&] { return !f->condition.wait(timeout); }, s);
       }},
      {"concur::Condition<RLock> wait",
       [&f](Sample& s) {
         f->rcondition.acquire();
         const bool ok = timed([&] { return !f->rcondition.wait(timeout); }, s);
         f->rcondition.release();
         return ok;
       }},
      {"concur::Queue maxsize=8 get",
       [&f](Sample& s) { return timed([&] { return get_times_out(f->ring); }, s); }},
      {"concur::Queue maxsize=0 get",
       [&f](Sample& s) { return timed([&] { return get_times_out(f->unbounded); }, s); }},
      {"concur::LifoQueue get",
       [&f](Sample& s) { return timed([&] { return get_times_out(f->lifo); }, s); }},
      {"concur::PriorityQueue get",
       [&f](Sample& s) { return timed([&] { return get_times_out(f->priority); }, s); }},
      {"concur::SimpleQueue get",
       [&f](Sample& s) { return timed([&] { return get_times_out(f->simple); }, s); }},
      {"concur::Barrier wait",
       [](Sample& s) {
         concur::Barrier barrier(2);  // a fresh one: a timed-out wait breaks it
         return timed(
             [&] {
               try {
                 (void)barrier.wait(timeout);
                 return false;
               } catch (const concur::BrokenBarrierError&) {
                 return true;
               }
             },
             s);
       }},
      {"concur::Thread join",
       [&f](Sample& s) { return timed([&] { return !f->long_runner.join(timeout); }, s); }},
      {"std::timed_mutex try_lock_for",
       [&f](Sample& s) { return timed([&] { return !f->timed_mutex.try_lock_for(timeout); }, s); }},
      {"std::condition_variable wait_for",
       [&f](Sample& s) {
         std::unique_lock<std::mutex> hold(f->mutex);
         return timed([&] { return !f->condvar.wait_for(hold, timeout, [] { return false; }); }, s);
       }},
  };
}

const char* const std_references[] = {"std::timed_mutex try_lock_for",
                                      "std::condition_variable wait_for"};

// ---- runs -----------------------------------------------------------------------------------

std::map<std::string, std::vector<Sample>> samples;  // every sample of every contender
std::map<std::string, double> spent;                 // seconds each contender has waited

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(position);
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return values[below] * (1 - fraction) + values[above] * fraction;
}

void run_contender(benchmark::State& state, const Contender& contender, double budget) {
  for (auto _ : state) {
    std::vector<Sample> batch;
    const int wanted = spent[contender.name] > budget ? 1 : samples_per_run;
    for (int i = 0; i < wanted; ++i) {
      Sample sample;
      if (!contender.sample(sample)) {
        state.SkipWithError("the wait did not time out");
        return;
      }
      batch.push_back(sample);
      spent[contender.name] += std::chrono::duration<double>(timeout).count() + sample.late;
    }
    std::vector<double> late;
    double waited = 0;
    double cpu = 0;
    for (const Sample& s : batch) {
      late.push_back(s.late);
      waited += std::chrono::duration<double>(timeout).count() + s.late;
      cpu += s.cpu;
      samples[contender.name].push_back(s);
    }
    const auto n = static_cast<double>(batch.size());
    state.SetIterationTime(waited / n);
    state.counters["late_median"] = benchmark::Counter(quantile(late, 0.5));
    state.counters["late_p90"] = benchmark::Counter(quantile(late, 0.9));
    state.counters["waiter_CPU/wait"] = benchmark::Counter(cpu / n);
    state.counters["samples"] = benchmark::Counter(n);
  }
}

std::string ms(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f ms", seconds * 1e3);
  return text;
}

void print_summary(const std::vector<Contender>& all) {
  if (samples.empty()) return;
  double worse_std = 0;
  for (const char* reference : std_references) {
    auto found = samples.find(reference);
    if (found == samples.end()) continue;
    std::vector<double> late;
    for (const Sample& s : found->second) late.push_back(s.late);
    worse_std = std::max(worse_std, quantile(late, 0.9));
  }
  std::printf(
      "\nLateness of a 1 ms timed wait with %d CPU-bound threads on %d cores (target: every "
      "concur p90 <= 2x the worse std p90)\n",
      fixture != nullptr ? fixture->hogs() : 0, cores());
  std::printf("%-36s %8s %11s %11s %9s %6s %12s\n", "", "samples", "median", "p90", "p90/std",
              "early", "CPU/wait");
  for (const Contender& c : all) {
    auto found = samples.find(c.name);
    if (found == samples.end()) continue;
    std::vector<double> late;
    double cpu = 0;
    int early = 0;
    for (const Sample& s : found->second) {
      late.push_back(s.late);
      cpu += s.cpu;
      if (s.late < 0) ++early;
    }
    const double p90 = quantile(late, 0.9);
    char ratio[32] = "-";
    if (worse_std > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", p90 / worse_std);
    std::printf("%-36s %8zu %11s %11s %9s %6d %12s\n", c.name.c_str(), late.size(),
                ms(quantile(late, 0.5)).c_str(), ms(p90).c_str(), ratio, early,
                concur_bench::format_seconds(cpu / static_cast<double>(late.size())).c_str());
  }
  std::printf(
      "(median and p90 of (return - call - 1 ms) over every sample; p90/std: over the worse p90 "
      "of the two std rows, %s; early: returns before the timeout, which must not happen; "
      "CPU/wait: the waiting thread's user+system CPU per wait, getrusage(RUSAGE_THREAD))\n",
      ms(worse_std).c_str());
  std::fflush(stdout);
}

// Removes this program's own flags from the command line and reads them (and whether a short
// run is asked for) into samples_per_run.
std::vector<char*> own_flags(int argc, char** argv) {
  std::vector<char*> rest;
  bool given = false;
  for (int i = 0; i < argc; ++i) {
    const char* flag = "--lateness_samples=";
    if (i > 0 && std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      samples_per_run = std::max(1, std::atoi(argv[i] + std::strlen(flag)));
      given = true;
      continue;
    }
    rest.push_back(argv[i]);
  }
  if (!given && concur_bench::short_run_asked(argc, argv)) samples_per_run = 3;
  return rest;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = own_flags(argc, argv);
  (void)concur_bench::fence_count();  // open the fence counter before the first thread
  const std::vector<Contender> all = contenders();
  const double budget = total_budget_seconds / static_cast<double>(all.size());
  for (const Contender& c : all) {
    benchmark::RegisterBenchmark(
        ("lateness/" + c.name).c_str(),
        [&c, budget](benchmark::State& state) { run_contender(state, c, budget); })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  std::unique_ptr<Fixture> made;
  if (!concur_bench::listing_only(argc, argv)) {
    made = std::make_unique<Fixture>();
    fixture = made.get();
  }
  const int rc = concur_bench::run(static_cast<int>(args.size()), args.data(), {},
                                   /*default_repetitions=*/10, [&] {
                                     if (made) made->stop();
                                     print_summary(all);
                                   });
  return rc;
}
