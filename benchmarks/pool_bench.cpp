// Process pools compared: concur::mp::Pool::map and concur::ProcessPoolExecutor::map against
// Python's multiprocessing.Pool.map and concurrent.futures.ProcessPoolExecutor.map
// (benchmarks/pool_python.py, when python3 was found at configure time). No C++ process pool is
// packaged to compare with.
//
// The task is x * x (64-bit) over 0, 1, ..., N - 1; the results are checked. Every pool has as
// many processes as the machine has cores (Python's default; the table titles say how many),
// forked and warmed by a first small map before the clock starts. Scenarios:
//   map-cs1        chunksize 1: one message per task each way. Python does fewer tasks here
//                  (20k: about 1 s at its ~25k tasks/s) than concur (1M); rates are compared.
//   map-csdefault  Python's default chunksize for Pool.map of N tasks, ceil(N / (4 * processes)),
//                  for every contender (ProcessPoolExecutor.map's own default is 1); N = 1M.
// The rate is tasks per second of one whole map call (for ProcessPoolExecutor::map, the lazy
// range read to its end).
//
// Target (issue 15): mp::Pool::map and ProcessPoolExecutor::map >= 10x Python's
// multiprocessing.Pool.map at each chunksize; the program prints each with its numbers and
// whether it holds after the summaries.
//
// CPU per operation (bench_support.hpp) is the parent's: getrusage(RUSAGE_SELF) leaves out the
// workers, and the Python rows report their parent's likewise.

#include <concur/pool.hpp>
#include <concur/process_pool.hpp>

#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "bench_targets.hpp"

namespace {

using concur_bench::Kind;
using concur_bench::scaled;

const char* const kPool = "concur mp::Pool::map";
const char* const kExecutor = "concur ProcessPoolExecutor::map";
const char* const kPythonPool = "python multiprocessing.Pool.map";
const char* const kPythonExecutor = "python ProcessPoolExecutor.map";

int processes() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

long concur_tasks() {
  return scaled(1000000);
}
long python_tasks(int chunksize) {
  return chunksize == 1 ? scaled(20000) : scaled(1000000);
}

// Python's Pool.map default: ceil(tasks / (4 * processes)).
int default_chunksize(long tasks) {
  const long per = 4L * processes();
  return static_cast<int>((tasks + per - 1) / per);
}

// 0 stands for the default chunksize in the registrations below.
const char* scenario_of(int chunksize) {
  return chunksize == 1 ? "map-cs1" : "map-csdefault";
}

std::int64_t square(std::int64_t x) {
  return x * x;
}

std::vector<std::int64_t> inputs(long n) {
  std::vector<std::int64_t> values(static_cast<std::size_t>(n));
  std::iota(values.begin(), values.end(), std::int64_t{0});
  return values;
}

// 0^2 + 1^2 + ... + (n - 1)^2.
std::int64_t sum_of_squares(long n) {
  const auto m = static_cast<std::int64_t>(n);
  return (m - 1) * m * (2 * m - 1) / 6;
}

void map_pool(benchmark::State& state, int chunksize) {
  const long n = concur_tasks();
  const int chunk = chunksize == 0 ? default_chunksize(n) : chunksize;
  const std::vector<std::int64_t> values = inputs(n);
  concur::mp::Pool pool(processes());
  (void)pool.map(square, inputs(100L * processes()), 1);  // start and warm every worker
  bool right = true;
  concur_bench::measure(state, scenario_of(chunksize), kPool, Kind::rate, n, [&] {
    const std::vector<std::int64_t> results = pool.map(square, values, chunk);
    right = right &&
            std::accumulate(results.begin(), results.end(), std::int64_t{0}) == sum_of_squares(n);
  });
  if (!right) state.SkipWithError("wrong results");
  pool.close();
  pool.join();
}

void map_executor(benchmark::State& state, int chunksize) {
  const long n = concur_tasks();
  const int chunk = chunksize == 0 ? default_chunksize(n) : chunksize;
  const std::vector<std::int64_t> values = inputs(n);
  concur::ProcessPoolOptions options;
  options.max_workers = processes();
  concur::ProcessPoolExecutor executor(options);
  concur::MapOptions map_options;
  map_options.chunksize = chunk;
  for (std::int64_t x : executor.map(square, inputs(100L * processes()))) (void)x;  // warm up
  bool right = true;
  concur_bench::measure(state, scenario_of(chunksize), kExecutor, Kind::rate, n, [&] {
    std::int64_t sum = 0;
    for (std::int64_t x : executor.map(map_options, square, values)) {
      sum += x;
    }
    right = right && sum == sum_of_squares(n);
  });
  if (!right) state.SkipWithError("wrong results");
}

#ifdef CONCUR_BENCH_PYTHON
// One run of benchmarks/pool_python.py (--kind pool or executor).
void map_python(benchmark::State& state, int chunksize, const char* kind, const char* contender) {
  const long n = python_tasks(chunksize);
  const int chunk = chunksize == 0 ? default_chunksize(n) : chunksize;
  const std::string command = std::string("'") + CONCUR_BENCH_PYTHON + "' '" +
                              CONCUR_BENCH_SOURCE_DIR + "/pool_python.py' --seconds --kind " +
                              kind + " --tasks " + std::to_string(n) + " --chunksize " +
                              std::to_string(chunk) + " --processes " + std::to_string(processes());
  concur_bench::measure_script(state, scenario_of(chunksize), contender, Kind::rate, command);
}
#endif

void register_all() {
  auto once = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  };
  for (int chunksize : {1, 0}) {
    const std::string scenario = scenario_of(chunksize);
    once(benchmark::RegisterBenchmark((scenario + "/" + kPool).c_str(), map_pool, chunksize));
    once(benchmark::RegisterBenchmark((scenario + "/" + kExecutor).c_str(), map_executor,
                                      chunksize));
#ifdef CONCUR_BENCH_PYTHON
    once(benchmark::RegisterBenchmark((scenario + "/" + kPythonPool).c_str(), map_python, chunksize,
                                      "pool", kPythonPool));
    once(benchmark::RegisterBenchmark((scenario + "/" + kPythonExecutor).c_str(), map_python,
                                      chunksize, "executor", kPythonExecutor));
#endif
  }
}

void print_targets() {
  std::printf(
      "\nTarget check (issue 15; %d processes in every pool; chunksize 1: concur %ld tasks, "
      "Python %ld; default chunksize: %ld tasks, chunks of %d; medians of the repetitions)\n",
      processes(), concur_tasks(), python_tasks(1), concur_tasks(),
      default_chunksize(concur_tasks()));
  for (const char* scenario : {"map-cs1", "map-csdefault"}) {
    concur_bench::check_target("(e)", Kind::rate, scenario, kPool, kPythonPool, 10);
    concur_bench::check_target("(e)", Kind::rate, scenario, kExecutor, kPythonPool, 10);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // run() sets this too, but the registrations and titles below already need it.
  concur_bench::short_run = concur_bench::short_run_asked(argc, argv);
  register_all();
  using concur_bench::Metric;
  const std::string title = "map of x*x over " + std::to_string(concur_tasks()) + " ints, " +
                            std::to_string(processes()) +
                            " processes, chunksize 1 (Python: " + std::to_string(python_tasks(1)) +
                            " tasks) and Python's default (" +
                            std::to_string(default_chunksize(concur_tasks())) +
                            ") (target: concur >= 10x multiprocessing.Pool.map)";
  return concur_bench::run(argc, argv,
                           {{title, kPythonPool, Metric::throughput, {"map-cs1", "map-csdefault"}}},
                           /*default_repetitions=*/5, print_targets);
}
