// The shared harness of concur's benchmark programs.
//
// Every benchmark is registered as "<scenario>/<contender>" (Google Benchmark adds "/threads:N"
// and arguments), runs with repetitions, and after Google Benchmark's own output each program
// prints a summary table: per scenario, each contender's median against a reference contender
// measured in the same run, with the spread (coefficient of variation) of the medians.
//
// Before anything is measured the program starts and joins a thread: glibc skips atomic
// instructions in a process that has never started one, which would flatter std::mutex in
// single-thread rows. Every real user of a lock runs threads.

#ifndef CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP
#define CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace concur_bench {

// What a summary compares: time per iteration (lower is better; the ratio says "costs N times
// the reference") or items per second (higher is better; "N times the reference's rate").
enum class Metric { time, throughput };

struct Summary {
  std::string title;
  std::string reference;  // the contender every other is divided by
  Metric metric;
  std::vector<std::string> scenarios = {};  // which scenarios; empty: all that have the reference
};

struct Measurement {
  double median = 0;  // seconds per iteration, or items per second
  double cv = 0;      // coefficient of variation across repetitions (0 with one repetition)
};

// A key for one column of a summary: the scenario and its variant (thread count, arguments).
struct Cell {
  std::string scenario;
  std::string variant;
  bool operator<(const Cell& other) const {
    return std::tie(scenario, variant) < std::tie(other.scenario, other.variant);
  }
};

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
    std::printf("%-*s", first, "");
    for (const Cell& c : columns) std::printf(" %*s", cell, label(c).c_str());
    std::printf("\n");
    for (const std::string& contender : contenders) {
      std::printf("%-*s", first, contender.c_str());
      for (const Cell& c : columns) print_ratio(c, contender, summary, cell);
      std::printf("\n");
    }
    std::printf("%-*s", first,
                summary.metric == Metric::time ? "(reference time)" : "(reference rate)");
    for (const Cell& c : columns) {
      const double value = measurement(c, summary.reference).median;
      char text[64];
      if (summary.metric == Metric::time) {
        std::snprintf(text, sizeof text, "%.1f ns", value * 1e9);
      } else {
        std::snprintf(text, sizeof text, "%.3g/s", value);
      }
      std::printf(" %*s", cell, text);
    }
    std::printf("\n");
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

  static Measurement summarize(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    Measurement m;
    m.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    double mean = 0;
    for (double v : values) mean += v / static_cast<double>(n);
    double variance = 0;
    for (double v : values) variance += (v - mean) * (v - mean);
    if (n > 1 && mean > 0) m.cv = std::sqrt(variance / static_cast<double>(n - 1)) / mean;
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
    auto items = run.counters.find("items_per_second");
    const double value = items != run.counters.end()
                             ? static_cast<double>(items->second)
                             : run.GetAdjustedRealTime() / multiplier(run.time_unit);
    samples_[cell][function.substr(slash + 1)].push_back(value);
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

  std::map<Cell, std::map<std::string, std::vector<double>>> samples_;
};

// True when the command line only asks for the list of benchmarks.
inline bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--benchmark_list_tests" || arg == "--benchmark_list_tests=true") return true;
  }
  return false;
}

// Starts and joins one thread, so that the C library runs in its multi-threaded mode.
inline void leave_single_threaded_mode() {
  std::thread([] {}).join();
}

// The main() of every benchmark program: repetitions by default (unless the command line says
// otherwise), Google Benchmark's report, then the summaries.
inline int run(int argc, char** argv, const std::vector<Summary>& summaries,
               int default_repetitions = 5) {
  leave_single_threaded_mode();
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
  benchmark::Shutdown();
  return 0;
}

}  // namespace concur_bench

#endif  // CONCUR_BENCHMARKS_BENCH_SUPPORT_HPP
