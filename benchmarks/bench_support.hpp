// The shared harness of concur's benchmark programs.
//
// Every benchmark is registered as "<scenario>/<contender>" (Google Benchmark adds "/threads:N"
// and arguments), runs with repetitions, and after Google Benchmark's own output each program
// prints a summary table: per scenario, each contender's median against a reference contender
// measured in the same run, with the spread (coefficient of variation) of the medians, and
// under it the contender's CPU time per operation and its ratio to the reference's.
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
//
// Before anything is measured the program starts and joins a thread: glibc skips atomic
// instructions in a process that has never started one, which would flatter std::mutex in
// single-thread rows. Every real user of a lock runs threads.

#ifndef CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP
#define CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

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

// ---- work of a known length -----------------------------------------------------------------

// Work that the compiler cannot remove, about a nanosecond a unit.
inline void work(long units) {
  for (long i = 0; i < units; ++i) benchmark::DoNotOptimize(i);
}

// How many units of work() take `length` on this machine now (the median of a few timings;
// the machine may be busy, so this is approximate).
inline long work_units_for(std::chrono::nanoseconds length) {
  constexpr long probe = 200000;
  std::vector<double> per_unit;
  for (int i = 0; i < 7; ++i) {
    const auto start = std::chrono::steady_clock::now();
    work(probe);
    const auto took = std::chrono::steady_clock::now() - start;
    per_unit.push_back(std::chrono::duration<double, std::nano>(took).count() / probe);
  }
  std::sort(per_unit.begin(), per_unit.end());
  const double ns = per_unit[per_unit.size() / 2];
  return std::max<long>(1, std::lround(static_cast<double>(length.count()) / ns));
}

// ---- summaries ------------------------------------------------------------------------------

// What a summary compares: time per iteration (lower is better; the ratio says "costs N times
// the reference") or items per second (higher is better; "N times the reference's rate"). CPU
// per operation is compared in both, lower being better.
enum class Metric { time, throughput };

struct Summary {
  std::string title;
  std::string reference;  // the contender every other is divided by
  Metric metric;
  std::vector<std::string> scenarios = {};  // which scenarios; empty: all that have the reference
};

struct Measurement {
  double median = 0;   // seconds per iteration, or items per second
  double cv = 0;       // coefficient of variation across repetitions (0 with one repetition)
  double cpu = 0;      // median CPU seconds per operation; 0 when not measured
  double fences = -1;  // median fences per repetition; -1 when not counted
};

// One repetition of one contender in one cell.
struct Sample {
  double value = 0;
  double cpu = -1;     // CPU seconds per operation, -1 when not measured
  double fences = -1;  // fences in the timed region, -1 when not counted
};

// A key for one column of a summary: the scenario and its variant (thread count, arguments).
struct Cell {
  std::string scenario;
  std::string variant;
  bool operator<(const Cell& other) const {
    return std::tie(scenario, variant) < std::tie(other.scenario, other.variant);
  }
};

// "12.3 ns", "4.56 us", "7.89 ms", "1.23 s".
inline std::string format_seconds(double seconds) {
  char text[32];
  const double magnitude = std::fabs(seconds);
  if (magnitude < 1e-6) {
    std::snprintf(text, sizeof text, "%.1f ns", seconds * 1e9);
  } else if (magnitude < 1e-3) {
    std::snprintf(text, sizeof text, "%.2f us", seconds * 1e6);
  } else if (magnitude < 1) {
    std::snprintf(text, sizeof text, "%.2f ms", seconds * 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.2f s", seconds);
  }
  return text;
}

// Google Benchmark's console output (the aggregates, when there are repetitions), plus a
// record of every repetition for the summaries.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal, as Google Benchmark's own reporter does by default.
  RecordingReporter()
      : ConsoleReporter(::isatty(::fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> shown;
    for (const Run& run : runs) {
      const bool repetition = run.run_type == Run::RT_Iteration;
      if (repetition) record(run);
      // With repetitions, the table shows their aggregates, not each repetition.
      if (!repetition || run.repetitions <= 1) shown.push_back(run);
    }
    if (!shown.empty()) ConsoleReporter::ReportRuns(shown);
  }

  // The median and spread of one contender's repetitions in one cell; median 0 when absent.
  Measurement measurement(const Cell& cell, const std::string& contender) const {
    auto found = samples_.find(cell);
    if (found == samples_.end()) return {};
    auto entry = found->second.find(contender);
    if (entry == found->second.end()) return {};
    return summarize(entry->second);
  }

  void print_summary(const Summary& summary) const {
    std::vector<Cell> columns;
    std::vector<std::string> contenders;
    for (const auto& [cell, by_contender] : samples_) {
      if (!summary.scenarios.empty() &&
          std::find(summary.scenarios.begin(), summary.scenarios.end(), cell.scenario) ==
              summary.scenarios.end()) {
        continue;
      }
      if (!by_contender.count(summary.reference)) continue;
      columns.push_back(cell);
      for (const auto& entry : by_contender) {
        if (std::find(contenders.begin(), contenders.end(), entry.first) == contenders.end()) {
          contenders.push_back(entry.first);
        }
      }
    }
    if (columns.empty()) return;
    std::printf("\n%s\n", summary.title.c_str());
    std::printf("ratio to %s in %s; median of repetitions, (cv%%) its spread\n",
                summary.reference.c_str(),
                summary.metric == Metric::time ? "time per operation (lower is better)"
                                               : "throughput (higher is better)");
    const int first = static_cast<int>(std::max<std::size_t>(24, longest(contenders) + 2));
    std::size_t widest_label = 16;
    for (const Cell& c : columns) widest_label = std::max(widest_label, label(c).size());
    const int cell = static_cast<int>(widest_label);
    bool any_fences = false;
    for (const Cell& c : columns) {
      for (const std::string& contender : contenders) {
        any_fences = any_fences || measurement(c, contender).fences > 0;
      }
    }
    std::printf("%-*s", first, "");
    for (const Cell& c : columns) std::printf(" %*s", cell, label(c).c_str());
    std::printf("\n");
    for (const std::string& contender : contenders) {
      std::printf("%-*s", first, contender.c_str());
      for (const Cell& c : columns) print_ratio(c, contender, summary, cell);
      std::printf("\n");
      std::printf("%-*s", first, "  CPU/op");
      for (const Cell& c : columns) print_cpu(c, contender, summary, cell);
      std::printf("\n");
      if (any_fences) {
        std::printf("%-*s", first, "  fences");
        for (const Cell& c : columns) {
          const Measurement m = measurement(c, contender);
          char text[32] = "-";
          if (m.fences >= 0) std::snprintf(text, sizeof text, "%.0f", m.fences);
          std::printf(" %*s", cell, text);
        }
        std::printf("\n");
      }
    }
    std::printf("%-*s", first,
                summary.metric == Metric::time ? "(reference time)" : "(reference rate)");
    for (const Cell& c : columns) {
      const double value = measurement(c, summary.reference).median;
      char text[64];
      if (summary.metric == Metric::time) {
        std::snprintf(text, sizeof text, "%s", format_seconds(value).c_str());
      } else {
        std::snprintf(text, sizeof text, "%.3g/s", value);
      }
      std::printf(" %*s", cell, text);
    }
    std::printf("\n");
    std::printf(
        "(CPU/op: user+system CPU of the whole process per operation, median of repetitions: its "
        "ratio to %s's, lower is better, and its value%s)\n",
        summary.reference.c_str(),
        any_fences ? "; fences: membarrier calls per repetition, median" : "");
    std::fflush(stdout);
  }

 private:
  void print_ratio(const Cell& c, const std::string& contender, const Summary& summary,
                   int cell) const {
    const Measurement m = measurement(c, contender);
    if (m.median == 0) {
      std::printf(" %*s", cell, "-");
      return;
    }
    const double ratio = m.median / measurement(c, summary.reference).median;
    char text[64];
    std::snprintf(text, sizeof text, "%.2fx (%.0f%%)", ratio, 100 * m.cv);
    std::printf(" %*s", cell, text);
  }

  void print_cpu(const Cell& c, const std::string& contender, const Summary& summary,
                 int cell) const {
    const Measurement m = measurement(c, contender);
    const Measurement reference = measurement(c, summary.reference);
    if (m.cpu <= 0) {
      std::printf(" %*s", cell, "-");
      return;
    }
    char text[64];
    if (reference.cpu > 0) {
      std::snprintf(text, sizeof text, "%.2fx %s", m.cpu / reference.cpu,
                    format_seconds(m.cpu).c_str());
    } else {
      std::snprintf(text, sizeof text, "%s", format_seconds(m.cpu).c_str());
    }
    std::printf(" %*s", cell, text);
  }

  static double median_of(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  }

  static Measurement summarize(const std::vector<Sample>& samples) {
    std::vector<double> values;
    std::vector<double> cpus;
    std::vector<double> fences;
    for (const Sample& s : samples) {
      values.push_back(s.value);
      if (s.cpu >= 0) cpus.push_back(s.cpu);
      if (s.fences >= 0) fences.push_back(s.fences);
    }
    const std::size_t n = values.size();
    Measurement m;
    m.median = median_of(values);
    double mean = 0;
    for (double v : values) mean += v / static_cast<double>(n);
    double variance = 0;
    for (double v : values) variance += (v - mean) * (v - mean);
    if (n > 1 && mean > 0) m.cv = std::sqrt(variance / static_cast<double>(n - 1)) / mean;
    m.cpu = median_of(cpus);
    m.fences = fences.empty() ? -1 : median_of(fences);
    return m;
  }

  static std::size_t longest(const std::vector<std::string>& names) {
    std::size_t width = 0;
    for (const auto& n : names) width = std::max(width, n.size());
    return width;
  }

  static std::string label(const Cell& c) {
    return c.variant.empty() ? c.scenario : c.scenario + " " + c.variant;
  }

  void record(const Run& run) {
    if (run.error_occurred) return;
    const std::string& function = run.run_name.function_name;
    const std::size_t slash = function.find('/');
    if (slash == std::string::npos) return;
    const Cell cell{function.substr(0, slash), variant_of(run)};
    Sample sample;
    auto items = run.counters.find("items_per_second");
    sample.value = items != run.counters.end()
                       ? static_cast<double>(items->second)
                       : run.GetAdjustedRealTime() / multiplier(run.time_unit);
    if (auto cpu = run.counters.find("CPU/op"); cpu != run.counters.end()) {
      sample.cpu = static_cast<double>(cpu->second);
    }
    if (auto fences = run.counters.find("fences"); fences != run.counters.end()) {
      sample.fences = static_cast<double>(fences->second);
    }
    samples_[cell][function.substr(slash + 1)].push_back(sample);
  }

  static double multiplier(benchmark::TimeUnit unit) {
    switch (unit) {
      case benchmark::kNanosecond:
        return 1e9;
      case benchmark::kMicrosecond:
        return 1e6;
      case benchmark::kMillisecond:
        return 1e3;
      default:
        return 1;
    }
  }

  static std::string variant_of(const Run& run) {
    std::string variant = run.run_name.args;
    if (!run.run_name.threads.empty()) {
      if (!variant.empty()) variant += ' ';
      variant += run.run_name.threads;
    }
    return variant;
  }

  std::map<Cell, std::map<std::string, std::vector<Sample>>> samples_;
};

// True when the command line only asks for the list of benchmarks.
inline bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--benchmark_list_tests" || arg == "--benchmark_list_tests=true") return true;
  }
  return false;
}

// True when the command line asks for a minimum time under 0.1 s, as the CI's smoke run does
// (--benchmark_min_time=0.01): a quick check that every benchmark runs, not a measurement.
inline bool short_run_asked(int argc, char** argv) {
  const char* flag = "--benchmark_min_time=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], flag, std::strlen(flag)) != 0) continue;
    const char* value = argv[i] + std::strlen(flag);
    char* end = nullptr;
    const double seconds = std::strtod(value, &end);
    if (end != value && (*end == '\0' || *end == 's') && seconds < 0.1) return true;
  }
  return false;
}

// Set by run() from short_run_asked(): benchmarks that do a fixed amount of work per run
// (threads, windows, item counts, where min_time does not apply) do a tenth of it.
inline bool short_run = false;

// `n`, or a tenth of it (at least 1) in a short run.
inline long scaled(long n) {
  return short_run ? std::max(1L, n / 10) : n;
}

// Starts and joins one thread, so that the C library runs in its multi-threaded mode.
inline void leave_single_threaded_mode() {
  std::thread([] {}).join();
}

// The program's last line: the asymmetric fences (membarrier calls) the process made in all,
// or why they cannot be counted here.
inline void print_fence_total() {
  const FenceCounter& counter = FenceCounter::instance();
  const long long total = counter.count();
  if (total >= 0) {
    std::printf("\nmembarrier(%s) calls by this process, all benchmarks: %lld\n",
                counter.filtered() ? "MEMBARRIER_CMD_PRIVATE_EXPEDITED" : "any command", total);
  } else {
    std::printf("\nmembarrier calls: not countable here (%s)\n", counter.why().c_str());
  }
  std::fflush(stdout);
}

// The main() of every benchmark program: repetitions by default (unless the command line says
// otherwise), Google Benchmark's report, then the summaries, then `after` (a program's own
// tables), then the line on fences.
inline int run(int argc, char** argv, const std::vector<Summary>& summaries,
               int default_repetitions = 5, const std::function<void()>& after = {}) {
  (void)FenceCounter::instance();  // before the first thread, which then counts into it
  leave_single_threaded_mode();
  short_run = short_run_asked(argc, argv);
  std::vector<char*> args(argv, argv + argc);
  // Repetitions, interleaved in random order so that a slow spell of this shared machine is
  // spread over every contender instead of landing on one.
  std::string repetitions = "--benchmark_repetitions=" + std::to_string(default_repetitions);
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  auto given = [&](const char* flag) {
    for (int i = 1; i < argc; ++i) {
      if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) return true;
    }
    return false;
  };
  if (!given("--benchmark_repetitions")) args.insert(args.begin() + 1, repetitions.data());
  if (!given("--benchmark_enable_random_interleaving")) {
    args.insert(args.begin() + 1, interleave.data());
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  for (const Summary& summary : summaries) reporter.print_summary(summary);
  if (!listing_only(argc, argv)) {
    if (after) after();
    print_fence_total();
  }
  benchmark::Shutdown();
  return 0;
}

}  // namespace concur_bench

#endif  // CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP
