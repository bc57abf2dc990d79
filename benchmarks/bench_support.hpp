// The shared harness of concur's benchmark programs.
//
// Every benchmark is registered as "<scenario>/<contender>" (Google Benchmark adds "/threads:N"
// and arguments), runs with repetitions, and after Google Benchmark's own output each program
// prints a summary table: per scenario, each contender's median against a reference contender
// measured in the same run, with the spread (coefficient of variation) of the medians, and
// under it the contender's CPU time per operation and its ratio to the reference's.
//
// CPU per operation and the count of asymmetric fences: bench_cost.hpp.
//
// Before anything is measured the program starts and joins a thread: glibc skips atomic
// instructions in a process that has never started one, which would flatter std::mutex in
// single-thread rows. Every real user of a lock runs threads.

#ifndef CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP
#define CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "bench_cost.hpp"

namespace concur_bench {

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

// Producers and consumers behind a start line: `producers` threads each call produce(p), with p
// from 0, to put the items p, p + producers, ... below `items`; `consumers` threads each call
// consume(), which takes its share (items / consumers) and returns the sum of the values it
// took. The threads are created first and released together, so creating them is not timed.
// Reports the wall seconds and the process's CPU from the start line until every thread has
// been joined, in `state` per item, and whether the values taken add up to 0 + 1 + ... +
// (items - 1), each exactly once (the caller skips the run when they do not).
struct ProducerConsumerRun {
  double seconds = 0;
  bool checksum_ok = false;
};
template <class Produce, class Consume>
ProducerConsumerRun run_producers_consumers(benchmark::State& state, int producers, int consumers,
                                            long items, Produce produce, Consume consume) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> checksum{0};
  auto start_line = [&] {
    ++ready;
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  };
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      start_line();
      produce(p);
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      start_line();
      checksum += static_cast<std::uint64_t>(consume());
    });
  }
  while (ready.load() < producers + consumers) std::this_thread::yield();
  const Cost before = Cost::now();
  const auto start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  ProducerConsumerRun run;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Cost after = Cost::now();
  const auto n = static_cast<std::uint64_t>(items);
  run.checksum_ok = checksum.load() == n * (n - 1) / 2;
  set_cost(state, before, after, static_cast<double>(items));
  return run;
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
