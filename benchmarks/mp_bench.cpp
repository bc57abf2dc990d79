// Process-shared state compared: concur::mp::Lock and concur::mp::Value against a process-shared
// pthread_mutex_t (plain, and robust as mp::Lock is), Boost.Interprocess's interprocess_mutex
// (when Boost's headers were found) and Python's multiprocessing.Lock and Value
// (benchmarks/mp_python.py, when python3 was found at configure time).
//
// Every lock lives in an anonymous shared mapping made before the processes are forked.
// Scenarios:
//   lock-uncontended  one process, acquire + release in a loop (time per pair; lower is better).
//   lock-contended    two forked processes each do N / 2 rounds of: acquire, add 1 to a counter
//                     in shared memory, release (rounds per second of both; higher is better).
//   value             two forked processes each do N / 2 rounds of Python's
//                     `with v.get_lock(): v.value += 1` (mp::Value<long>: scoped_lock on
//                     get_lock(), set_value(value() + 1); Python's mp.Value('l')).
//   queue-1p1c        one process puts N ints into a queue of capacity 1024, another gets them:
//                     mp::Queue<int>, Boost.Interprocess's message_queue (1024 messages of an
//                     int), Python's mp.Queue(1024) (items per second; higher is better).
//   queue-2p2c        two processes put N / 2 each, two get N / 2 each.
//   condition         two processes take turns N times between them: under the lock, wait on
//                     the condition until the shared count's parity is theirs, add 1, notify
//                     (mp::Condition<mp::Lock>; a pshared pthread_cond_t with its pshared
//                     mutex; Python's mp.Condition) (hand-offs per second; no target).
//   barrier           two processes each wait N / 2 times on a barrier of two parties
//                     (mp::Barrier; a pshared pthread_barrier_t; Python's mp.Barrier) (rounds
//                     per second of both; no target).
//   queue-text-1p1c   as queue-1p1c with the numbers sent as decimal text: mp::Queue<std::string>
//                     (encoded items in its ring of bytes), message_queue messages of up to 32
//                     bytes, Python's mp.Queue of str (no target: how encoded items compare).
// The workers wait at a start line before the clock starts; the totals are checked. The CPU per
// operation is the workers' own (wait4's usage of the children; the parent only waits), or
// the process's in the uncontended rows: it shows what spinning costs.
//
// Targets (issue 16): mp::Lock uncontended <= 1.0x a process-shared pthread_mutex_t; contended
// >= 1.5x its rate; mp::Value<long> increments from two processes >= 20x Python's;
// mp::Queue<int> 1p1c >= 50x Python's mp.Queue and >= 2x Boost's message_queue; 2p2c >= 1x the
// best peer.

#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <concur/mp_barrier.hpp>
#include <concur/mp_condition.hpp>
#include <concur/mp_lock.hpp>
#include <concur/mp_queue.hpp>
#include <concur/shared_ctypes.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "bench_targets.hpp"

#if CONCUR_BENCH_HAVE_INTERPROCESS  // set by benchmarks/CMakeLists.txt
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#endif

namespace {

using concur_bench::Kind;
using concur_bench::scaled;

const char* const kMpLock = "concur mp::Lock";
const char* const kPthread = "pthread_mutex pshared";
const char* const kPthreadRobust = "pthread_mutex pshared robust";
[[maybe_unused]] const char* const kInterprocess = "boost interprocess_mutex";
[[maybe_unused]] const char* const kPythonLock = "python multiprocessing.Lock";
const char* const kMpValue = "concur mp::Value<long>";
const char* const kPythonValue = "python multiprocessing.Value";
const char* const kMpCondition = "concur mp::Condition";
const char* const kPthreadCond = "pthread_cond pshared";
const char* const kPythonCondition = "python multiprocessing.Condition";
const char* const kMpBarrier = "concur mp::Barrier";
const char* const kPthreadBarrier = "pthread_barrier pshared";
const char* const kPythonBarrier = "python multiprocessing.Barrier";
const char* const kMpQueue = "concur mp::Queue<int>";
const char* const kMpTextQueue = "concur mp::Queue<std::string>";
const char* const kMessageQueue = "boost message_queue";
const char* const kPythonQueue = "python multiprocessing.Queue";

long uncontended_ops() {
  return scaled(10000000);
}
long contended_ops() {
  return scaled(10000000);
}
long python_ops() {
  return scaled(200000);
}
long queue_ops() {
  return scaled(4000000);
}
long python_queue_ops() {
  return scaled(50000);
}
long handoff_ops() {
  return scaled(400000);
}
[[maybe_unused]] long python_handoff_ops() {  // used only where python3 was found
  return scaled(20000);
}

// An object of type T in an anonymous shared mapping of its own.
template <class T>
class Shared {
 public:
  template <class... Args>
  explicit Shared(Args&&... args) {
    void* page =
        ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) std::abort();
    object_ = new (page) T(std::forward<Args>(args)...);
  }
  ~Shared() {
    object_->~T();
    ::munmap(object_, sizeof(T));
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T& operator*() const { return *object_; }
  T* operator->() const { return object_; }

 private:
  T* object_;
};

// A process-shared pthread mutex, robust or not, with the Lockable members.
class PthreadMutex {
 public:
  explicit PthreadMutex(bool robust) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    if (robust) pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mutex_, &attributes);
    pthread_mutexattr_destroy(&attributes);
  }
  ~PthreadMutex() { pthread_mutex_destroy(&mutex_); }
  void lock() {
    if (pthread_mutex_lock(&mutex_) == EOWNERDEAD) pthread_mutex_consistent(&mutex_);
  }
  void unlock() { pthread_mutex_unlock(&mutex_); }

 private:
  pthread_mutex_t mutex_;
};

// The start line and the counters the workers share.
struct Line {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  alignas(64) long counter = 0;   // written only under the lock
  std::atomic<long> checksum{0};  // what the queues' consumers got, added up
};

// One repetition: forks `workers` processes that each call work(index, rounds) after the start
// line; reports the wall time from the start until all have ended, `done` operations, and the
// workers' CPU per operation. `right()` checks the result.
template <class Work, class Right>
void run_processes(benchmark::State& state, const std::string& scenario,
                   const std::string& contender, int workers, long rounds, double done, Line& line,
                   Work work, Right right) {
  concur_bench::settle_arena();
  for (auto _ : state) {
    line.ready.store(0);
    line.go.store(0);
    line.counter = 0;
    line.checksum.store(0);
    std::vector<pid_t> pids(static_cast<std::size_t>(workers));
    for (int index = 0; index < workers; ++index) {
      pids[std::size_t(index)] = ::fork();
      if (pids[std::size_t(index)] == 0) {
        line.ready.fetch_add(1);
        while (line.go.load() == 0) concur::detail::cpu_relax();
        work(index, rounds);
        std::_Exit(0);
      }
    }
    while (line.ready.load() != workers) std::this_thread::sleep_for(std::chrono::microseconds(50));
    const auto start = std::chrono::steady_clock::now();
    line.go.store(1);
    double cpu = 0;
    bool clean = true;
    for (pid_t pid : pids) {
      int status = 0;
      rusage usage{};
      ::wait4(pid, &status, 0, &usage);
      clean = clean && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      cpu += double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
             double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!clean || !right()) {
      state.SkipWithError("a worker failed, or the total is wrong");
      break;
    }
    state.SetIterationTime(seconds);
    state.counters["items_per_second"] = benchmark::Counter(done / seconds);
    state.counters["CPU/op"] = benchmark::Counter(cpu / done);
    concur_bench::recorded()[{scenario, contender}].push_back(done / seconds);
  }
}

// Two workers doing `ops` rounds of `round` between them.
template <class Round>
void two_rounds(benchmark::State& state, const std::string& scenario, const std::string& contender,
                long ops, Line& line, Round round) {
  const long rounds = ops / 2;
  run_processes(
      state, scenario, contender, 2, rounds, double(rounds * 2), line,
      [&](int, long n) {
        for (long i = 0; i < n; ++i) round();
      },
      [&] { return line.counter == rounds * 2; });
}

template <class Lockable>
void uncontended(benchmark::State& state, const char* contender, Lockable& lock) {
  const long n = uncontended_ops();
  concur_bench::measure(state, "lock-uncontended", contender, Kind::time_per_op, n, [&] {
    for (long i = 0; i < n; ++i) {
      lock.lock();
      benchmark::ClobberMemory();
      lock.unlock();
    }
  });
}

template <class Lockable>
void contended(benchmark::State& state, const char* contender, Lockable& lock) {
  Shared<Line> line;
  two_rounds(state, "lock-contended", contender, contended_ops(), *line, [&] {
    std::scoped_lock hold(lock);
    ++line->counter;
  });
}

template <class Lockable>
void register_lock(const char* contender, Lockable& lock) {
  auto setup = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);
  };
  setup(benchmark::RegisterBenchmark(
      (std::string("lock-uncontended/") + contender).c_str(),
      [&lock, contender](benchmark::State& state) { uncontended(state, contender, lock); }));
  setup(benchmark::RegisterBenchmark(
      (std::string("lock-contended/") + contender).c_str(),
      [&lock, contender](benchmark::State& state) { contended(state, contender, lock); }));
}

void value_increments(benchmark::State& state) {
  concur::mp::Value<long> value(0);
  Shared<Line> line;
  two_rounds(state, "value", kMpValue, contended_ops(), *line, [&] {
    std::scoped_lock hold(value.get_lock());
    value.set_value(value.value() + 1);
    ++line->counter;  // under the same lock: the harness's check
  });
}

// Two processes take turns handoff_ops() times between them; `take_turn(index)` waits for the
// count's parity to be `index`, adds 1 to it and wakes the other.
template <class TakeTurn>
void turns(benchmark::State& state, const char* contender, Line& line, TakeTurn take_turn) {
  const long rounds = handoff_ops() / 2;
  run_processes(
      state, "condition", contender, 2, rounds, double(rounds * 2), line,
      [&](int index, long n) {
        for (long i = 0; i < n; ++i) take_turn(index);
      },
      [&] { return line.counter == rounds * 2; });
}

void condition_mp(benchmark::State& state) {
  concur::mp::Lock lock;
  concur::mp::Condition<concur::mp::Lock> turn(lock);
  Shared<Line> line;
  turns(state, kMpCondition, *line, [&](int index) {
    std::scoped_lock hold(turn);
    turn.wait_for([&] { return line->counter % 2 == index; });
    ++line->counter;
    turn.notify();
  });
}

// A process-shared pthread_cond_t and its mutex.
struct PthreadCondition {
  PthreadCondition() {
    pthread_mutexattr_t mutex_attributes;
    pthread_mutexattr_init(&mutex_attributes);
    pthread_mutexattr_setpshared(&mutex_attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&mutex, &mutex_attributes);
    pthread_mutexattr_destroy(&mutex_attributes);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&cond, &attributes);
    pthread_condattr_destroy(&attributes);
  }
  ~PthreadCondition() {
    pthread_cond_destroy(&cond);
    pthread_mutex_destroy(&mutex);
  }
  pthread_mutex_t mutex;
  pthread_cond_t cond;
};

void condition_pthread(benchmark::State& state) {
  Shared<PthreadCondition> turn;
  Shared<Line> line;
  turns(state, kPthreadCond, *line, [&](int index) {
    pthread_mutex_lock(&turn->mutex);
    while (line->counter % 2 != index) pthread_cond_wait(&turn->cond, &turn->mutex);
    ++line->counter;
    pthread_cond_signal(&turn->cond);
    pthread_mutex_unlock(&turn->mutex);
  });
}

// Two processes each wait handoff_ops() / 2 times on a barrier of two; `wait()` is one wait.
template <class Wait>
void barrier_rounds(benchmark::State& state, const char* contender, Wait wait) {
  const long rounds = handoff_ops() / 2;
  Shared<Line> line;
  run_processes(
      state, "barrier", contender, 2, rounds, double(rounds * 2), *line,
      [&](int, long n) {
        long served = 0;
        for (long i = 0; i < n; ++i) served += wait();
        line->checksum.fetch_add(served);
      },
      [&] { return line->checksum.load() == rounds; });  // one of the two is served each round
}

void barrier_mp(benchmark::State& state) {
  concur::mp::Barrier barrier(2);
  barrier_rounds(state, kMpBarrier, [&] { return barrier.wait() == 0 ? 1 : 0; });
}

void barrier_pthread(benchmark::State& state) {
  struct PthreadBarrier {
    PthreadBarrier() {
      pthread_barrierattr_t attributes;
      pthread_barrierattr_init(&attributes);
      pthread_barrierattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
      pthread_barrier_init(&barrier, &attributes, 2);
      pthread_barrierattr_destroy(&attributes);
    }
    ~PthreadBarrier() { pthread_barrier_destroy(&barrier); }
    pthread_barrier_t barrier;
  };
  Shared<PthreadBarrier> barrier;
  barrier_rounds(state, kPthreadBarrier, [&] {
    return pthread_barrier_wait(&barrier->barrier) == PTHREAD_BARRIER_SERIAL_THREAD ? 1 : 0;
  });
}

// Producers put 0 .. N - 1 between them, consumers get N / sides each and add up what they got.
// `put(v)` and `get()` are one contender's operations.
template <class Put, class Get>
void queue_run(benchmark::State& state, const std::string& scenario, const char* contender,
               int sides, Put put, Get get) {
  const long per = queue_ops() / sides;
  const long n = per * sides;
  Shared<Line> line;
  run_processes(
      state, scenario, contender, 2 * sides, per, double(n), *line,
      [&](int index, long count) {
        if (index < sides) {
          for (long v = index * count; v < (index + 1) * count; ++v) put(static_cast<int>(v));
        } else {
          long sum = 0;
          for (long i = 0; i < count; ++i) sum += get();
          line->checksum.fetch_add(sum);
        }
      },
      [&] { return line->checksum.load() == n * (n - 1) / 2; });
}

const char* queue_scenario(int sides) {
  return sides == 1 ? "queue-1p1c" : "queue-2p2c";
}

void mp_queue(benchmark::State& state, int sides) {
  concur::mp::Queue<int> queue(1024);
  queue_run(
      state, queue_scenario(sides), kMpQueue, sides, [&](int v) { queue.put(v); },
      [&] { return queue.get(); });
}

void mp_text_queue(benchmark::State& state) {
  concur::mp::Queue<std::string> queue(1024);
  queue_run(
      state, "queue-text-1p1c", kMpTextQueue, 1, [&](int v) { queue.put(std::to_string(v)); },
      [&] { return std::stol(queue.get()); });
}

#if CONCUR_BENCH_HAVE_INTERPROCESS
// Decimal text in messages of up to 32 bytes.
void message_queue_text(benchmark::State& state) {
  namespace bip = boost::interprocess;
  const char* const name = "concur_bench_message_queue_text";
  bip::message_queue::remove(name);
  {
    bip::message_queue queue(bip::create_only, name, 1024, 32);
    queue_run(
        state, "queue-text-1p1c", kMessageQueue, 1,
        [&](int v) {
          const std::string text = std::to_string(v);
          queue.send(text.data(), text.size(), 0);
        },
        [&] {
          char text[32];
          bip::message_queue::size_type size = 0;
          unsigned priority = 0;
          queue.receive(text, sizeof text, size, priority);
          long v = 0;
          std::from_chars(text, text + size, v);
          return v;
        });
  }
  bip::message_queue::remove(name);
}

void message_queue(benchmark::State& state, int sides) {
  namespace bip = boost::interprocess;
  const char* const name = "concur_bench_message_queue";
  bip::message_queue::remove(name);
  {
    bip::message_queue queue(bip::create_only, name, 1024, sizeof(int));
    queue_run(
        state, queue_scenario(sides), kMessageQueue, sides,
        [&](int v) { queue.send(&v, sizeof v, 0); },
        [&] {
          int v = 0;
          bip::message_queue::size_type size = 0;
          unsigned priority = 0;
          queue.receive(&v, sizeof v, size, priority);
          return v;
        });
  }
  bip::message_queue::remove(name);
}
#endif

#ifdef CONCUR_BENCH_PYTHON
void python(benchmark::State& state, const char* scenario, const char* kind,
            const char* contender) {
  const std::string name(kind);
  const long ops = name.rfind("queue", 0) == 0                ? python_queue_ops()
                   : name == "condition" || name == "barrier" ? python_handoff_ops()
                                                              : python_ops();
  const std::string command = std::string("'") + CONCUR_BENCH_PYTHON + "' '" +
                              CONCUR_BENCH_SOURCE_DIR + "/mp_python.py' --seconds --kind " + kind +
                              " --ops " + std::to_string(ops);
  const Kind figure = std::string(scenario) == "lock-uncontended" ? Kind::time_per_op : Kind::rate;
  concur_bench::measure_script(state, scenario, contender, figure, command);
}
#endif

void print_targets() {
  std::printf(
      "\nTarget check (issue 16; uncontended: %ld pairs; contended and value: %ld rounds over 2 "
      "processes, Python %ld; queues: %ld items, Python %ld; medians of the repetitions)\n",
      uncontended_ops(), contended_ops(), python_ops(), queue_ops(), python_queue_ops());
  concur_bench::check_target("(a)", Kind::time_per_op, "lock-uncontended", kMpLock, kPthread, 1.0);
  concur_bench::check_target("(b)", Kind::rate, "lock-contended", kMpLock, kPthread, 1.5);
  concur_bench::check_target("(c)", Kind::rate, "value", kMpValue, kPythonValue, 20);
  concur_bench::check_target("(d)", Kind::rate, "queue-1p1c", kMpQueue, kPythonQueue, 50);
  concur_bench::check_target("(d)", Kind::rate, "queue-1p1c", kMpQueue, kMessageQueue, 2);
  concur_bench::check_target("(e)", Kind::rate, "queue-2p2c", kMpQueue, kMessageQueue, 1);
  concur_bench::check_target("(e)", Kind::rate, "queue-2p2c", kMpQueue, kPythonQueue, 1);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  concur_bench::short_run = concur_bench::short_run_asked(argc, argv);
  // The locks live as long as the program; every process forked by a row maps them.
  static concur::mp::Lock mp_lock;
  static Shared<PthreadMutex> pthread_plain(false);
  static Shared<PthreadMutex> pthread_robust(true);
  register_lock(kMpLock, mp_lock);
  register_lock(kPthread, *pthread_plain);
  register_lock(kPthreadRobust, *pthread_robust);
#if CONCUR_BENCH_HAVE_INTERPROCESS
  static Shared<boost::interprocess::interprocess_mutex> interprocess;
  register_lock(kInterprocess, *interprocess);
#endif
  auto once = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kNanosecond);
  };
  once(benchmark::RegisterBenchmark((std::string("value/") + kMpValue).c_str(), value_increments));
  for (int sides : {1, 2}) {
    const std::string scenario = queue_scenario(sides);
    once(benchmark::RegisterBenchmark((scenario + "/" + kMpQueue).c_str(), mp_queue, sides));
#if CONCUR_BENCH_HAVE_INTERPROCESS
    once(benchmark::RegisterBenchmark((scenario + "/" + kMessageQueue).c_str(), message_queue,
                                      sides));
#endif
#ifdef CONCUR_BENCH_PYTHON
    once(benchmark::RegisterBenchmark((scenario + "/" + kPythonQueue).c_str(), python,
                                      queue_scenario(sides), queue_scenario(sides), kPythonQueue));
#endif
  }
  once(benchmark::RegisterBenchmark((std::string("queue-text-1p1c/") + kMpTextQueue).c_str(),
                                    mp_text_queue));
  once(benchmark::RegisterBenchmark((std::string("condition/") + kMpCondition).c_str(),
                                    condition_mp));
  once(benchmark::RegisterBenchmark((std::string("condition/") + kPthreadCond).c_str(),
                                    condition_pthread));
  once(benchmark::RegisterBenchmark((std::string("barrier/") + kMpBarrier).c_str(), barrier_mp));
  once(benchmark::RegisterBenchmark((std::string("barrier/") + kPthreadBarrier).c_str(),
                                    barrier_pthread));
#if CONCUR_BENCH_HAVE_INTERPROCESS
  once(benchmark::RegisterBenchmark((std::string("queue-text-1p1c/") + kMessageQueue).c_str(),
                                    message_queue_text));
#endif
#ifdef CONCUR_BENCH_PYTHON
  once(benchmark::RegisterBenchmark((std::string("condition/") + kPythonCondition).c_str(), python,
                                    "condition", "condition", kPythonCondition));
  once(benchmark::RegisterBenchmark((std::string("barrier/") + kPythonBarrier).c_str(), python,
                                    "barrier", "barrier", kPythonBarrier));
  once(benchmark::RegisterBenchmark((std::string("queue-text-1p1c/") + kPythonQueue).c_str(),
                                    python, "queue-text-1p1c", "queue-text-1p1c", kPythonQueue));
  once(benchmark::RegisterBenchmark((std::string("lock-uncontended/") + kPythonLock).c_str(),
                                    python, "lock-uncontended", "lock-uncontended", kPythonLock));
  once(benchmark::RegisterBenchmark((std::string("lock-contended/") + kPythonLock).c_str(), python,
                                    "lock-contended", "lock-contended", kPythonLock));
  once(benchmark::RegisterBenchmark((std::string("value/") + kPythonValue).c_str(), python, "value",
                                    "value", kPythonValue));
#endif
  using concur_bench::Metric;
  return concur_bench::run(
      argc, argv,
      {{"process-shared lock, one process: acquire + release (target: mp::Lock <= 1.0x pshared "
        "pthread_mutex)",
        kPthread,
        Metric::time,
        {"lock-uncontended"}},
       {"process-shared lock, two processes: rounds of acquire, +1, release (target: mp::Lock >= "
        "1.5x pshared pthread_mutex)",
        kPthread,
        Metric::throughput,
        {"lock-contended"}},
       {"mp::Value<long> += 1 under its lock, two processes (target: >= 20x Python's mp.Value)",
        kPythonValue,
        Metric::throughput,
        {"value"}},
       {"queues of capacity 1024 between processes, 1 producer and 1 consumer, 2 and 2 (targets: "
        "1p1c >= 2x message_queue and >= 50x Python; 2p2c >= 1x the best peer)",
        kMessageQueue,
        Metric::throughput,
        {"queue-1p1c", "queue-2p2c"}},
       {"decimal text through queues of capacity 1024, 1 producer and 1 consumer (no target: "
        "items through the codec)",
        kMessageQueue,
        Metric::throughput,
        {"queue-text-1p1c"}},
       {"two processes taking turns through a condition: wait for my turn, +1, notify (no "
        "target)",
        kPthreadCond,
        Metric::throughput,
        {"condition"}},
       {"two processes meeting at a barrier of two parties, round after round (no target)",
        kPthreadBarrier,
        Metric::throughput,
        {"barrier"}}},
      /*default_repetitions=*/5, print_targets);
}
