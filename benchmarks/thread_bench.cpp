// Starting and joining a thread: concur::Thread against std::thread (and boost::thread when
// found), each creating, starting and joining one thread per iteration.
//
// The CPU per operation is the whole process's, the started thread's included.
//
// Target (issue: foundation): concur's start+join costs at most 1.15x std::thread's.

#include <concur/thread.hpp>

#include <thread>

#include "bench_support.hpp"

#if CONCUR_BENCH_HAVE_BOOST
#include <boost/thread/thread.hpp>
#endif

namespace {

void start_join_concur(benchmark::State& state) {
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    concur::Thread thread([] {});
    thread.start();
    thread.join();
  }
}

void start_join_std(benchmark::State& state) {
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    std::thread thread([] {});
    thread.join();
  }
}

#if CONCUR_BENCH_HAVE_BOOST
void start_join_boost(benchmark::State& state) {
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    boost::thread thread([] {});
    thread.join();
  }
}
#endif

void register_all() {
  auto add = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->UseRealTime()->Unit(benchmark::kMicrosecond);
  };
  add("start_join/concur::Thread", start_join_concur);
  add("start_join/std::thread", start_join_std);
#if CONCUR_BENCH_HAVE_BOOST
  add("start_join/boost::thread", start_join_boost);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return concur_bench::run(argc, argv,
                           {{"Thread start+join (target: concur::Thread <= 1.15x)", "std::thread",
                             concur_bench::Metric::time}},
                           /*default_repetitions=*/10);
}
