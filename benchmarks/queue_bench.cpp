// Bounded blocking queues compared: concur::Queue against the tutorial's naive queue (one
// std::mutex, two std::condition_variable, a std::deque) and, when found, Boost's
// sync_bounded_queue, oneTBB's concurrent_bounded_queue, moodycamel's BlockingConcurrentQueue
// (bounded by spinning on try_enqueue) and atomic_queue's AtomicQueueB2 (which spins to wait).
//
// Scenarios, at capacity 1024 and 8, with int items and 64-byte items:
//   1p1c, 2p2c, 4p4c  P producers and C consumers move a fixed number of items; the rate is
//                     items per second, each item counted once
//   roundtrip         two threads bounce one item through two queues (time per round trip)
//   NpNc              oversubscribed: N = 2x the cores producers and as many consumers (4x
//                     the cores in all; 4p4c on 2 cores, the row above), in its own table
// and, after the summaries, the CPU time a consumer uses while blocked for one second on an
// empty queue. Every row also reports the process's CPU time per item (per round trip), which
// shows what a contender that spins to wait costs (bench_support.hpp).
//
// Targets (issue: queues; ratios within one run): 1p1c at 1024 >= 5x naive and >= 1.0x the best
// peer; 1p1c at 8 >= 5x naive; 2p2c and 4p4c >= 3x naive and >= 1.0x the best peer; round trip
// <= 0.5x naive; a blocked consumer < 5 ms of CPU per second.

#include <time.h>
#include <concur/queue.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

#if CONCUR_BENCH_HAVE_BOOST
#include <boost/thread/concurrent_queues/sync_bounded_queue.hpp>
#endif
#if CONCUR_BENCH_HAVE_TBB
#include <oneapi/tbb/concurrent_queue.h>
#endif
#if CONCUR_BENCH_HAVE_MOODYCAMEL
#include <blockingconcurrentqueue.h>
#endif
#if CONCUR_BENCH_HAVE_ATOMIC_QUEUE
#include <atomic_queue/atomic_queue.h>
#endif

namespace {

struct Payload {
  std::array<std::uint64_t, 8> words{};  // 64 bytes
};

std::uint64_t value_of(int item) {
  return static_cast<std::uint64_t>(item);
}
std::uint64_t value_of(const Payload& item) {
  return item.words[0];
}
template <class T>
T make_item(std::uint64_t n) {
  if constexpr (std::is_same_v<T, int>) {
    return static_cast<int>(n);
  } else {
    Payload p;
    p.words[0] = n;
    return p;
  }
}

// The tutorial's queue: one mutex, two condition variables, a deque.
template <class T>
class NaiveQueue {
 public:
  explicit NaiveQueue(std::size_t capacity) : capacity_(capacity) {}
  void push(T item) {
    std::unique_lock<std::mutex> hold(mutex_);
    not_full_.wait(hold, [&] { return items_.size() < capacity_; });
    items_.push_back(std::move(item));
    not_empty_.notify_one();
  }
  void pop(T& out) {
    std::unique_lock<std::mutex> hold(mutex_);
    not_empty_.wait(hold, [&] { return !items_.empty(); });
    out = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
  }

 private:
  std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> items_;
};

// Every contender behind push (blocking while full) and pop (blocking while empty).
template <class T>
struct ConcurQueue {
  explicit ConcurQueue(std::size_t capacity) : q(static_cast<std::int64_t>(capacity)) {}
  void push(T item) { q.put(std::move(item)); }
  void pop(T& out) { out = q.get(); }
  concur::Queue<T> q;
};

#if CONCUR_BENCH_HAVE_BOOST
template <class T>
struct BoostQueue {
  explicit BoostQueue(std::size_t capacity) : q(capacity) {}
  void push(T item) { q.push(std::move(item)); }
  void pop(T& out) { q.pull(out); }
  boost::concurrent::sync_bounded_queue<T> q;
};
#endif

#if CONCUR_BENCH_HAVE_TBB
template <class T>
struct TbbQueue {
  explicit TbbQueue(std::size_t capacity) { q.set_capacity(static_cast<std::ptrdiff_t>(capacity)); }
  void push(T item) { q.push(std::move(item)); }
  void pop(T& out) { q.pop(out); }
  tbb::concurrent_bounded_queue<T> q;
};
#endif

#if CONCUR_BENCH_HAVE_MOODYCAMEL
// The most producer threads of any scenario: 4, or the oversubscribed shape's 2x the cores.
int max_producers() {
  return std::max(4, 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

// moodycamel's queue keeps a sub-queue per producer thread, in blocks of 32 items; try_enqueue
// never allocates, so the blocks must be there for every producer from the start: sized with
// only `capacity`, a producer that holds the one block (half used) when it finishes leaves the
// others unable ever to enqueue, and they yield forever. So the bound here is per producer and
// rounded up to a block, looser than the others' `capacity`.
template <class T>
struct MoodycamelQueue {
  explicit MoodycamelQueue(std::size_t capacity)
      : q(capacity, 0, static_cast<std::size_t>(max_producers())) {}
  void push(T item) {
    while (!q.try_enqueue(item)) std::this_thread::yield();  // bounded: no allocation
  }
  void pop(T& out) { q.wait_dequeue(out); }
  moodycamel::BlockingConcurrentQueue<T> q;
};
#endif

#if CONCUR_BENCH_HAVE_ATOMIC_QUEUE
template <class T>
struct AtomicQueue {
  explicit AtomicQueue(std::size_t capacity) : q(static_cast<unsigned>(capacity)) {}
  void push(T item) { q.push(std::move(item)); }
  void pop(T& out) { out = q.pop(); }
  atomic_queue::AtomicQueueB2<T> q;
};
#endif

// P producers put `items` items in all, C consumers take them; each consumer takes its share,
// so nothing needs to tell them to stop. The timed region runs from a start line to the last
// item taken; every item is counted once.
template <class Q, class T>
void produce_consume(benchmark::State& state, int producers, int consumers, std::size_t capacity) {
  // Every consumer takes the same share: a multiple of the consumers (240000 is one of 1 to 6).
  const long base = concur_bench::scaled(240000);
  const long items = base - base % consumers;
  for (auto _ : state) {
    Q q(capacity);
    const concur_bench::ProducerConsumerRun run = concur_bench::run_producers_consumers(
        state, producers, consumers, items,
        [&](int p) {
          for (long i = p; i < items; i += producers) q.push(make_item<T>(i));
        },
        [&] {
          std::uint64_t sum = 0;
          T item{};
          for (long i = 0; i < items / consumers; ++i) {
            q.pop(item);
            sum += value_of(item);
          }
          return sum;
        });
    if (!run.checksum_ok) {
      state.SkipWithError("items lost or duplicated");
      return;
    }
    state.SetIterationTime(run.seconds);
    state.counters["items_per_second"] =
        benchmark::Counter(static_cast<double>(items) / run.seconds);
  }
}

// Two threads bounce one item through two queues; the time is per round trip.
template <class Q>
void round_trip(benchmark::State& state, std::size_t capacity) {
  const int trips = static_cast<int>(concur_bench::scaled(20000));
  for (auto _ : state) {
    Q there(capacity);
    Q back(capacity);
    std::thread echo([&] {
      int item = 0;
      for (int i = 0; i < trips; ++i) {
        there.pop(item);
        back.push(item + 1);
      }
    });
    const concur_bench::Cost before = concur_bench::Cost::now();
    const auto start = std::chrono::steady_clock::now();
    int item = 0;
    for (int i = 0; i < trips; ++i) {
      there.push(item);
      back.pop(item);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    echo.join();
    const concur_bench::Cost after = concur_bench::Cost::now();
    concur_bench::set_cost(state, before, after, trips);
    state.SetIterationTime(seconds / trips);
  }
}

// The CPU time a consumer uses while it waits one second on an empty queue (a tenth of a
// second in a short run, the figure scaled to a second).
template <class Q>
double idle_cpu_ms() {
  Q q(8);
  std::atomic<double> cpu{0};
  std::thread consumer([&] {
    timespec before{};
    timespec after{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &before);
    int item = 0;
    q.pop(item);
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &after);
    cpu = static_cast<double>(after.tv_sec - before.tv_sec) * 1e3 +
          static_cast<double>(after.tv_nsec - before.tv_nsec) * 1e-6;
  });
  const long idle_ms = concur_bench::scaled(1000);  // 100 ms in a short run, scaled up below
  std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
  q.push(1);
  consumer.join();
  return cpu.load() * 1000.0 / static_cast<double>(idle_ms);
}

struct Contender {
  std::string name;
  void (*int_items)(benchmark::State&, int, int, std::size_t);
  void (*payload_items)(benchmark::State&, int, int, std::size_t);
  void (*trips)(benchmark::State&, std::size_t);
  double (*idle)();
};

template <template <class> class Q>
Contender contender(const char* name) {
  return {name, &produce_consume<Q<int>, int>, &produce_consume<Q<Payload>, Payload>,
          &round_trip<Q<int>>, &idle_cpu_ms<Q<int>>};
}

std::vector<Contender> contenders() {
  std::vector<Contender> all = {contender<ConcurQueue>("concur::Queue"),
                                contender<NaiveQueue>("naive")};
#if CONCUR_BENCH_HAVE_BOOST
  all.push_back(contender<BoostQueue>("boost::sync_bounded_queue"));
#endif
#if CONCUR_BENCH_HAVE_TBB
  all.push_back(contender<TbbQueue>("tbb::concurrent_bounded_queue"));
#endif
#if CONCUR_BENCH_HAVE_MOODYCAMEL
  all.push_back(contender<MoodycamelQueue>("moodycamel::BlockingConcurrentQueue"));
#endif
#if CONCUR_BENCH_HAVE_ATOMIC_QUEUE
  all.push_back(contender<AtomicQueue>("atomic_queue::AtomicQueueB2"));
#endif
  return all;
}

// Producers (and as many consumers) of the oversubscribed shape: 4x the cores in all.
int oversubscribed_pairs() {
  return 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string shape_name(int producers, int consumers) {
  return std::to_string(producers) + "p" + std::to_string(consumers) + "c";
}

void register_all(const std::vector<Contender>& all) {
  std::vector<std::pair<int, int>> shapes = {{1, 1}, {2, 2}, {4, 4}};
  const int n = oversubscribed_pairs();
  if (std::find(shapes.begin(), shapes.end(), std::pair{n, n}) == shapes.end()) {
    shapes.emplace_back(n, n);
  }
  for (const Contender& c : all) {
    for (const auto& [scenario, fn] : {std::pair{std::string("int"), c.int_items},
                                       std::pair{std::string("64B"), c.payload_items}}) {
      for (const auto& [p, cons] : shapes) {
        for (int capacity : {1024, 8}) {
          const std::string name = shape_name(p, cons) + "-" + scenario + "-cap" +
                                   std::to_string(capacity) + "/" + c.name;
          benchmark::RegisterBenchmark(name.c_str(), fn, p, cons,
                                       static_cast<std::size_t>(capacity))
              ->Iterations(1)
              ->UseManualTime();
        }
      }
    }
    for (int capacity : {1024, 8}) {
      benchmark::RegisterBenchmark(
          ("roundtrip-cap" + std::to_string(capacity) + "/" + c.name).c_str(), c.trips,
          static_cast<std::size_t>(capacity))
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

void print_idle(const std::vector<Contender>& all) {
  std::printf(
      "\nCPU used by a consumer blocked for 1 s on an empty queue (target: concur::Queue "
      "< 5 ms)\n");
  for (const Contender& c : all) std::printf("%-40s %10.2f ms\n", c.name.c_str(), c.idle());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Contender> all = contenders();
  register_all(all);
  using concur_bench::Metric;
  const std::string over = shape_name(oversubscribed_pairs(), oversubscribed_pairs());
  return concur_bench::run(
      argc, argv,
      {{"Throughput, int items (targets: concur::Queue >= 5x naive at 1p1c, >= 3x at 2p2c/4p4c, "
        ">= 1.0x the best peer at capacity 1024 and at 2p2c/4p4c)",
        "naive",
        Metric::throughput,
        {"1p1c-int-cap1024", "1p1c-int-cap8", "2p2c-int-cap1024", "2p2c-int-cap8",
         "4p4c-int-cap1024", "4p4c-int-cap8"}},
       {"Throughput, 64-byte items",
        "naive",
        Metric::throughput,
        {"1p1c-64B-cap1024", "1p1c-64B-cap8", "2p2c-64B-cap1024", "2p2c-64B-cap8",
         "4p4c-64B-cap1024", "4p4c-64B-cap8"}},
       {"Oversubscribed: " + over +
            " (4x the cores in threads), int and 64-byte items (see CPU/op)",
        "naive",
        Metric::throughput,
        {over + "-int-cap1024", over + "-int-cap8", over + "-64B-cap1024", over + "-64B-cap8"}},
       {"Round trip through two queues (target: concur::Queue <= 0.5x naive)",
        "naive",
        Metric::time,
        {"roundtrip-cap1024", "roundtrip-cap8"}}},
      /*default_repetitions=*/5, [&] { print_idle(all); });
}
