// What futures_bench and pool_bench share beside bench_support.hpp: rows that time one
// repetition themselves (a fixed count of operations, not a Google Benchmark loop), rows measured
// by a Python script, and the target check printed after the summaries, which compares medians
// of different contenders per target (the best C++ peer, Python, Asio...), each line saying
// whether its target holds.

#ifndef CONCUR_BENCHMARKS_BENCH_TARGETS_HPP
#define CONCUR_BENCHMARKS_BENCH_TARGETS_HPP

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_support.hpp"

namespace concur_bench {

// Every repetition's value (items per second, or seconds per operation), by scenario and
// contender; the target check takes their medians.
inline std::map<std::pair<std::string, std::string>, std::vector<double>>& recorded() {
  static std::map<std::pair<std::string, std::string>, std::vector<double>> values;
  return values;
}

// The median of a contender's repetitions in a scenario; 0 when it was not measured.
inline double recorded_median(const std::string& scenario, const std::string& contender) {
  auto found = recorded().find({scenario, contender});
  if (found == recorded().end() || found->second.empty()) return 0;
  std::vector<double> v = found->second;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A row's figure: a rate (items per second, higher is better) or a time per operation.
enum class Kind { rate, time_per_op };

// Makes the C library merge the small blocks freed in the calling thread's heap arena now, not
// in the timed run that follows. glibc defers that merging to the next allocation of a kilobyte
// or more in the arena. With the rows interleaved, a row that freed a million small objects
// (Asio's packaged tasks and futures) left it to the next row, whose first large allocation
// (a vector of results) then paid tens of milliseconds for it: a row of concur's took twice its
// CPU per task right after Asio's (found with perf). Every thread that runs a timed body calls
// this first, so every row pays only for what it frees itself. (malloc_trim() would merge too,
// but it also gives the free pages back to the kernel, and rows that allocate in their timed
// run would then pay a page fault for each: that doubled Asio's and thread_pool's times.)
inline void settle_arena() {
  void* block = std::malloc(64 * 1024);
  benchmark::DoNotOptimize(block);
  std::free(block);
}

// One repetition (the row runs one iteration, with manual time): runs `body`, which does `ops`
// operations, and reports its wall time with the process's CPU per operation.
template <class Body>
void measure(benchmark::State& state, const std::string& scenario, const std::string& contender,
             Kind kind, long count, Body body) {
  const auto ops = static_cast<double>(count);
  settle_arena();
  for (auto _ : state) {
    const Cost before = Cost::now();
    const auto start = std::chrono::steady_clock::now();
    body();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const Cost after = Cost::now();
    set_cost(state, before, after, ops);
    if (kind == Kind::rate) {
      state.SetIterationTime(seconds);
      state.counters["items_per_second"] = benchmark::Counter(ops / seconds);
      recorded()[{scenario, contender}].push_back(ops / seconds);
    } else {
      state.SetIterationTime(seconds / ops);
      recorded()[{scenario, contender}].push_back(seconds / ops);
    }
  }
}

// One repetition measured by a script: `command` prints the wall seconds per task and the CPU
// seconds per task; the row reports them (as a rate, or a time per operation) and its CPU/op.
inline void measure_script(benchmark::State& state, const std::string& scenario,
                           const std::string& contender, Kind kind, const std::string& command) {
  for (auto _ : state) {
    std::FILE* output = ::popen(command.c_str(), "r");
    double seconds = 0;
    double cpu = 0;
    if (output == nullptr || std::fscanf(output, "%lf %lf", &seconds, &cpu) != 2 || seconds <= 0) {
      state.SkipWithError(("failed: " + command).c_str());
    }
    if (output != nullptr) ::pclose(output);
    if (seconds <= 0) break;
    state.counters["CPU/op"] = benchmark::Counter(cpu);
    if (kind == Kind::rate) {
      state.SetIterationTime(seconds);
      state.counters["items_per_second"] = benchmark::Counter(1 / seconds);
      recorded()[{scenario, contender}].push_back(1 / seconds);
    } else {
      state.SetIterationTime(seconds);
      recorded()[{scenario, contender}].push_back(seconds);
    }
  }
}

inline std::string format_figure(Kind kind, double value) {
  if (kind == Kind::time_per_op) return format_seconds(value);
  char text[32];
  std::snprintf(text, sizeof text, "%.3g/s", value);
  return text;
}

// One line of a target check: `mine`'s median against `reference`'s in `scenario`, the ratio
// and whether it meets `target` (at least, for rates; at most, for times).
inline void check_target(const char* label, Kind kind, const std::string& scenario,
                         const std::string& mine, const std::string& reference, double target) {
  const double value = recorded_median(scenario, mine);
  const double theirs = recorded_median(scenario, reference);
  if (value == 0 || theirs == 0) {
    std::printf("  %-4s %-14s %s %s, %s %s: not measured in this run\n", label, scenario.c_str(),
                mine.c_str(), value == 0 ? "-" : format_figure(kind, value).c_str(),
                reference.c_str(), theirs == 0 ? "-" : format_figure(kind, theirs).c_str());
    return;
  }
  const double ratio = value / theirs;
  const bool holds = kind == Kind::rate ? ratio >= target : ratio <= target;
  std::printf("  %-4s %-14s %s %s, %s %s: %.2fx (target %s %gx): %s\n", label, scenario.c_str(),
              mine.c_str(), format_figure(kind, value).c_str(), reference.c_str(),
              format_figure(kind, theirs).c_str(), ratio, kind == Kind::rate ? ">=" : "<=", target,
              holds ? "holds" : "DOES NOT HOLD");
}

}  // namespace concur_bench

#endif  // CONCUR_BENCHMARKS_BENCH_TARGETS_HPP
