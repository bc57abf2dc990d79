// The cost of what concur's benchmarks measure, beside their wall time: the process's CPU time
// per operation and the asymmetric fences (membarrier calls) it made. Part of the harness
// (bench_support.hpp includes it).
//
// CPU per operation ("CPU/op", a Google Benchmark counter in seconds, and the "CPU/op" rows of
// the summaries) is the user + system time of the whole process, every thread of it, as
// getrusage(RUSAGE_SELF) counts it (threads that ended in between included), over the timed
// region, divided by the operations done in it. Wall time alone flatters a contender that
// spins where others sleep: on a loaded machine its spinning takes CPU from other work, which
// only the CPU figure shows. How each kind of benchmark gets it:
//   - a benchmark that times its own region (threads it starts itself, UseManualTime) takes a
//     Cost::now() before the region and one after, and calls set_cost(state, before, after,
//     ops);
//   - a loop that Google Benchmark times (`for (auto _ : state)`) declares
//     `concur_bench::LoopCost cost(state);` just before the loop. With ->Threads(n), Google
//     Benchmark runs the function in n threads at once, and each of them reading the process's
//     CPU over its own loop would count the process n times over. So the n threads first meet
//     at a start line of their own (a barrier for state.threads() threads); the last to arrive
//     reads the process's CPU once, for all of them. Each then passes Google Benchmark's own
//     start barrier into its loop. Google Benchmark ends every thread's loop at its finish
//     barrier, so when thread 0 leaves its loop every thread has done its iterations: thread 0
//     reads the process's CPU again and reports the difference over the iterations of all n
//     threads (n times its own; every thread runs the same count). Only thread 0 sets the
//     counter; Google Benchmark adds the threads' counters up, the others adding nothing. The
//     two barrier waits sleep, so they add almost nothing to the figure.
// A benchmark that does neither shows "-" in the CPU rows. CPU spent in child processes (the
// other end of process_bench's pipes) is not the process's own and is not counted.
//
// Asymmetric fences: where the kernel lets the program count them (perf_event_open on the
// syscalls:sys_enter_membarrier tracepoint; root or a low perf_event_paranoid), every timed
// region also reports "fences", the membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) calls the
// process made in it, and each program ends with one line giving the total (or why it cannot
// be counted). Counting needs no change to the library: the kernel counts the system call.
// While the counter is open the kernel takes every system call on the machine through its
// tracing path, which costs little (no visible change here on a 1.3 us futex wake);
// CONCUR_BENCH_COUNT_FENCES=0 in the environment leaves the counter closed.

#ifndef CONCUR_BENCHMARKS_BENCH_COST_HPP
#define CONCUR_BENCHMARKS_BENCH_COST_HPP

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#endif

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

namespace concur_bench {

// ---- CPU time -------------------------------------------------------------------------------

inline double seconds_of(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
}

// User + system CPU time of every thread of this process so far (exited threads included), in
// seconds.
inline double process_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
}

// User + system CPU time of the calling thread so far, in seconds (Linux; the process's
// elsewhere).
inline double thread_cpu_seconds() {
  rusage usage{};
#if defined(RUSAGE_THREAD)
  ::getrusage(RUSAGE_THREAD, &usage);
#else
  ::getrusage(RUSAGE_SELF, &usage);
#endif
  return seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
}

// ---- asymmetric fences ----------------------------------------------------------------------

// Counts this process's membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) calls with a perf counter
// on the kernel's syscall tracepoint, opened once, before the program starts its first thread:
// "inherit" makes every thread started afterwards count into it too. Unavailable (count() is
// -1, why() says why) without the tracepoint or the permission to use it.
class FenceCounter {
 public:
  static FenceCounter& instance() {
    static FenceCounter counter;
    return counter;
  }

  // The calls so far, or -1 when they cannot be counted.
  long long count() const {
#if defined(__linux__)
    if (fd_ < 0) return -1;
    std::uint64_t value = 0;
    if (::read(fd_, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) return -1;
    return static_cast<long long>(value);
#else
    return -1;
#endif
  }

  bool available() const {
    return fd_ >= 0;
  }
  const std::string& why() const {
    return why_;
  }
  // True when only MEMBARRIER_CMD_PRIVATE_EXPEDITED is counted (a tracepoint filter took);
  // false when every membarrier call is (the one-time registration included).
  bool filtered() const {
    return filtered_;
  }

 private:
  FenceCounter() {
#if defined(__linux__) && defined(SYS_perf_event_open)
    if (const char* off = std::getenv("CONCUR_BENCH_COUNT_FENCES"); off && *off == '0') {
      why_ = "CONCUR_BENCH_COUNT_FENCES=0";
      return;
    }
    long long id = -1;
    for (const char* root : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
      std::ifstream file(std::string(root) + "/events/syscalls/sys_enter_membarrier/id");
      if (file >> id) break;
      id = -1;
    }
    if (id < 0) {
      why_ = "no syscalls:sys_enter_membarrier tracepoint readable in tracefs";
      return;
    }
    perf_event_attr attr{};
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.size = sizeof attr;
    attr.config = static_cast<std::uint64_t>(id);
    attr.inherit = 1;  // threads (and children) started later count too
    const long fd = ::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
      why_ = std::string("perf_event_open: ") + std::strerror(errno);
      return;
    }
    fd_ = static_cast<int>(fd);
    // MEMBARRIER_CMD_PRIVATE_EXPEDITED is 8 (1 << 3) in linux/membarrier.h.
    char filter[] = "cmd == 8";
    filtered_ = ::ioctl(fd_, PERF_EVENT_IOC_SET_FILTER, filter) == 0;
#else
    why_ = "not Linux";
#endif
  }

  int fd_ = -1;
  bool filtered_ = false;
  std::string why_;
};

// The fences so far, or -1 when they cannot be counted.
inline long long fence_count() {
  return FenceCounter::instance().count();
}

// ---- the cost of a timed region -------------------------------------------------------------

// The process's CPU time and fence count at one moment.
struct Cost {
  double cpu = 0;         // seconds, user + system, every thread
  long long fences = -1;  // membarrier calls, or -1 when they cannot be counted

  static Cost now() { return {process_cpu_seconds(), fence_count()}; }
};

// Sets the counters of a region that `before` and `after` enclose, in which `ops` operations
// were done: "CPU/op" (seconds of process CPU per operation) and, when fences can be counted,
// "fences" (membarrier calls in the region).
inline void set_cost(benchmark::State& state, const Cost& before, const Cost& after, double ops) {
  if (ops > 0) state.counters["CPU/op"] = benchmark::Counter((after.cpu - before.cpu) / ops);
  if (before.fences >= 0 && after.fences >= 0) {
    state.counters["fences"] =
        benchmark::Counter(static_cast<double>(after.fences - before.fences));
  }
}

// Where the threads of a multi-threaded Google Benchmark run meet before their loops (one
// benchmark runs at a time, so one start line serves all); the last to arrive reads the
// process's cost, which thread 0 takes as the start of the timed region.
class StartLine {
 public:
  static StartLine& instance() {
    static StartLine line;
    return line;
  }

  // Blocks until `parties` threads have arrived; returns the cost read by the last of them.
  Cost arrive(int parties) {
    std::unique_lock<std::mutex> hold(mutex_);
    const unsigned long generation = generation_;
    if (++arrived_ >= parties) {
      start_ = Cost::now();
      arrived_ = 0;
      ++generation_;
      all_here_.notify_all();
      return start_;
    }
    all_here_.wait(hold, [&] { return generation_ != generation; });
    return start_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable all_here_;
  int arrived_ = 0;
  unsigned long generation_ = 0;
  Cost start_;
};

// The cost of a loop that Google Benchmark times, in every thread of the run: declare it just
// before `for (auto _ : state)` (see the top of this file for why it is correct with
// ->Threads(n)). Thread 0 sets "CPU/op" and, when fences can be counted, "fences".
class LoopCost {
 public:
  explicit LoopCost(benchmark::State& state)
      : state_(state), start_(StartLine::instance().arrive(state.threads())) {}
  LoopCost(const LoopCost&) = delete;
  LoopCost& operator=(const LoopCost&) = delete;
  ~LoopCost() {
    if (state_.thread_index() != 0) return;
    const Cost end = Cost::now();
    set_cost(state_, start_, end,
             static_cast<double>(state_.iterations()) * static_cast<double>(state_.threads()));
  }

 private:
  benchmark::State& state_;
  Cost start_;
};

}  // namespace concur_bench

#endif  // CONCUR_BENCHMARKS_BENCH_COST_HPP
