// Event and Barrier compared.
//
// Event: is_set() and wait() on a set event against a plain std::atomic<bool> load (the floor)
// and the classic std::mutex + std::condition_variable event; a ping-pong round trip between
// two threads through two events against that classic event and a bare futex flag (wait and
// wake, no spinning). Barrier: one round of a two-thread barrier against std::barrier (and
// boost::barrier when found).
//
// Every row also reports the process's CPU time per operation (bench_support.hpp).
//
// Targets (issue: events; ratios within one run): is_set() and wait() on a set event <= 2x the
// atomic load; round trip <= 0.5x the classic event's and <= 1.0x the bare futex flag's; a
// two-thread barrier round <= 0.7x std::barrier's.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <concur/barrier.hpp>
#include <concur/event.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "bench_support.hpp"

#if CONCUR_BENCH_HAVE_BOOST
#include <boost/thread/barrier.hpp>
#endif

namespace {

// The classic event: a flag under a mutex and a condition variable.
class ClassicEvent {
 public:
  bool is_set() {
    std::lock_guard<std::mutex> hold(mutex_);
    return flag_;
  }
  void set() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      flag_ = true;
    }
    changed_.notify_all();
  }
  void clear() {
    std::lock_guard<std::mutex> hold(mutex_);
    flag_ = false;
  }
  bool wait() {
    std::unique_lock<std::mutex> hold(mutex_);
    changed_.wait(hold, [this] { return flag_; });
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool flag_ = false;
};

// A bare futex flag: set stores and wakes, wait sleeps while clear. No spinning.
class FutexFlag {
 public:
  bool is_set() { return flag_.load(std::memory_order_acquire) != 0; }
  void set() {
    flag_.store(1, std::memory_order_release);
    ::syscall(SYS_futex, &flag_, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  }
  void clear() { flag_.store(0, std::memory_order_relaxed); }
  bool wait() {
    while (flag_.load(std::memory_order_acquire) == 0) {
      ::syscall(SYS_futex, &flag_, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    }
    return true;
  }

 private:
  std::atomic<std::uint32_t> flag_{0};
};

// The floor for reading a flag.
class AtomicFlag {
 public:
  bool is_set() { return flag_.load(std::memory_order_acquire); }
  void set() { flag_.store(true, std::memory_order_release); }
  bool wait() { return flag_.load(std::memory_order_acquire); }  // never blocks: set in use

 private:
  std::atomic<bool> flag_{false};
};

template <class E>
void is_set_on_set_event(benchmark::State& state) {
  E event;
  event.set();
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(event.is_set());
    benchmark::ClobberMemory();
  }
}

template <class E>
void wait_on_set_event(benchmark::State& state) {
  E event;
  event.set();
  concur_bench::LoopCost cost(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(event.wait());
    benchmark::ClobberMemory();
  }
}

// Two threads hand a turn back and forth through two events; the time is per round trip.
template <class E>
void ping_pong(benchmark::State& state) {
  const int trips = static_cast<int>(concur_bench::scaled(20000));
  for (auto _ : state) {
    E ping;
    E pong;
    std::thread other([&] {
      for (int i = 0; i < trips; ++i) {
        ping.wait();
        ping.clear();
        pong.set();
      }
    });
    const concur_bench::Cost before = concur_bench::Cost::now();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < trips; ++i) {
      ping.set();
      pong.wait();
      pong.clear();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    other.join();
    const concur_bench::Cost after = concur_bench::Cost::now();
    concur_bench::set_cost(state, before, after, trips);
    state.SetIterationTime(seconds / trips);
  }
}

// Two threads meet at a barrier, round after round; the time is per round.
template <class Meet>
void barrier_rounds(benchmark::State& state, Meet meet) {
  const int rounds = static_cast<int>(concur_bench::scaled(20000));
  for (auto _ : state) {
    auto b = meet();
    std::thread other([&] {
      for (int i = 0; i < rounds; ++i) b->arrive_and_wait();
    });
    const concur_bench::Cost before = concur_bench::Cost::now();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) b->arrive_and_wait();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    other.join();
    const concur_bench::Cost after = concur_bench::Cost::now();
    concur_bench::set_cost(state, before, after, rounds);
    state.SetIterationTime(seconds / rounds);
  }
}

struct ConcurBarrier {
  concur::Barrier barrier{2};
  void arrive_and_wait() { (void)barrier.wait(); }
};
struct StdBarrier {
  std::barrier<> barrier{2};
  void arrive_and_wait() { barrier.arrive_and_wait(); }
};
#if CONCUR_BENCH_HAVE_BOOST
struct BoostBarrier {
  boost::barrier barrier{2};
  void arrive_and_wait() { barrier.wait(); }
};
#endif

template <class B>
auto make_barrier() {
  return std::make_unique<B>();
}

void register_all() {
  auto fast = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->MinTime(0.1);
  };
  fast("is_set/concur::Event", &is_set_on_set_event<concur::Event>);
  fast("is_set/std::atomic<bool>", &is_set_on_set_event<AtomicFlag>);
  fast("is_set/mutex+condvar event", &is_set_on_set_event<ClassicEvent>);
  fast("wait_when_set/concur::Event", &wait_on_set_event<concur::Event>);
  fast("wait_when_set/std::atomic<bool>", &wait_on_set_event<AtomicFlag>);
  fast("wait_when_set/mutex+condvar event", &wait_on_set_event<ClassicEvent>);
  auto timed = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(1)->UseManualTime()->Unit(
        benchmark::kMicrosecond);
  };
  timed("ping_pong/concur::Event", &ping_pong<concur::Event>);
  timed("ping_pong/mutex+condvar event", &ping_pong<ClassicEvent>);
  timed("ping_pong/futex flag", &ping_pong<FutexFlag>);
  timed("barrier_2_threads/concur::Barrier",
        [](benchmark::State& s) { barrier_rounds(s, &make_barrier<ConcurBarrier>); });
  timed("barrier_2_threads/std::barrier",
        [](benchmark::State& s) { barrier_rounds(s, &make_barrier<StdBarrier>); });
#if CONCUR_BENCH_HAVE_BOOST
  timed("barrier_2_threads/boost::barrier",
        [](benchmark::State& s) { barrier_rounds(s, &make_barrier<BoostBarrier>); });
#endif
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  using concur_bench::Metric;
  return concur_bench::run(argc, argv,
                           {{"Reading a set event (target: concur::Event <= 2x)",
                             "std::atomic<bool>",
                             Metric::time,
                             {"is_set", "wait_when_set"}},
                            {"Ping-pong through two events (target: concur::Event <= 0.5x)",
                             "mutex+condvar event",
                             Metric::time,
                             {"ping_pong"}},
                            {"Ping-pong through two events (target: concur::Event <= 1.0x)",
                             "futex flag",
                             Metric::time,
                             {"ping_pong"}},
                            {"Two-thread barrier round (target: concur::Barrier <= 0.7x)",
                             "std::barrier",
                             Metric::time,
                             {"barrier_2_threads"}}},
                           /*default_repetitions=*/7);
}
