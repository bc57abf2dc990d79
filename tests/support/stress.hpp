// The harness of concur's stress tests (tests/stress_test.cpp): worker threads that run for a
// time budget, a progress counter they tick, and a stall detector that fails the test, with the
// schedule seed and every worker's state, when the workers stop making progress.
//
// Every stress case is a closed system in which progress is always possible (every unit a
// thread waits for exists or is on its way), so "no progress for a long while" means a lost
// wake-up or a deadlock, never a slow machine: the limit is seconds, the steps milliseconds.
// The detector also reads each worker's state from /proc: "every worker asleep in the kernel"
// is the signature of a lost wake-up, and it says so.

#ifndef CONCUR_TESTS_STRESS_HPP
#define CONCUR_TESTS_STRESS_HPP

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/schedule.hpp"
#include "test_support.hpp"

namespace concur_test {

// How long each stress case runs. CONCUR_STRESS_SECONDS overrides it (a long hunt by hand);
// the schedule-exploration build runs longer by default, since its operations are slower.
inline std::chrono::milliseconds stress_budget() {
  if (const char* text = std::getenv("CONCUR_STRESS_SECONDS"); text != nullptr && *text) {
    return std::chrono::milliseconds(static_cast<long>(std::atof(text) * 1000));
  }
  if (CONCUR_SCHEDULE_EXPLORING) return std::chrono::milliseconds(4000);
  return std::chrono::milliseconds(under_sanitizer ? 1500 : 1000);
}

// How long the workers may go without progress before the case fails.
inline std::chrono::milliseconds stall_limit() {
  return std::chrono::milliseconds(under_sanitizer || CONCUR_SCHEDULE_EXPLORING ? 15000 : 8000);
}

inline std::uint64_t current_tid() {
  return static_cast<std::uint64_t>(::syscall(SYS_gettid));
}

// The scheduler state letter of thread `tid` of this process ('S' asleep, 'R' running...).
inline char thread_state(std::uint64_t tid) {
  std::ifstream file("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat;
  if (!std::getline(file, stat)) return '?';
  const std::size_t name_end = stat.rfind(')');
  return name_end != std::string::npos && stat.size() > name_end + 2 ? stat[name_end + 2] : '?';
}

// Stress
//
// One stress case: its workers, their progress and the stall detector.
//
//   concur_test::Stress stress("semaphore.rounds");
//   stress.run(4, [&](int index) {
//     while (stress.running()) { ...; stress.tick(); }
//   });
class Stress {
 public:
  explicit Stress(std::string name) : name_(std::move(name)), start_(clock::now()) {
    detector_ = std::thread([this] { detect_stalls(); });
  }

  ~Stress() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    detector_.join();
  }

  Stress(const Stress&) = delete;
  Stress& operator=(const Stress&) = delete;

  // Whether the time budget has some left: workers loop while it does.
  bool running() const { return clock::now() - start_ < stress_budget(); }

  // Records one step of progress.
  void tick() { progress_.fetch_add(1, std::memory_order_relaxed); }

  // Steps recorded so far.
  std::uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }

  // Runs `body(index)` on `threads` new threads and joins them. Every thread that calls it is
  // watched by the stall detector.
  template <class Body>
  void run(int threads, Body body) {
    std::vector<std::thread> workers;
    workers.reserve(static_cast<std::size_t>(threads));
    for (int i = 0; i < threads; ++i) {
      workers.emplace_back([this, &body, i] {
        watch_this_thread();
        body(i);
      });
    }
    for (std::thread& worker : workers) worker.join();
  }

  // Adds the calling thread to those the stall detector describes.
  void watch_this_thread() {
    std::lock_guard<std::mutex> hold(mutex_);
    tids_.push_back(current_tid());
  }

 private:
  using clock = std::chrono::steady_clock;

  void detect_stalls() {
    std::unique_lock<std::mutex> hold(mutex_);
    std::uint64_t last = progress();
    clock::time_point last_change = clock::now();
    while (!done_cv_.wait_for(hold, std::chrono::milliseconds(50), [this] { return done_; })) {
      const std::uint64_t now = progress();
      if (now != last) {
        last = now;
        last_change = clock::now();
        continue;
      }
      if (clock::now() - last_change > stall_limit()) fail(now);
    }
  }

  [[noreturn]] void fail(std::uint64_t steps) {
    std::string states;
    bool all_asleep = !tids_.empty();
    for (std::uint64_t tid : tids_) {
      const char state = thread_state(tid);
      if (state == '?') continue;  // finished
      if (state != 'S') all_asleep = false;
      states += " " + std::to_string(tid) + ":" + state;
    }
    std::fprintf(stderr,
                 "STALL: stress case '%s' made no progress for %lld ms after %llu steps;%s "
                 "worker states:%s\n",
                 name_.c_str(), static_cast<long long>(stall_limit().count()),
                 static_cast<unsigned long long>(steps),
                 all_asleep ? " every worker is asleep (a lost wake-up?);" : "", states.c_str());
#if CONCUR_SCHEDULE_EXPLORING
    std::fprintf(stderr, "STALL: replay with CONCUR_SCHEDULE_SEED=%llu\n",
                 static_cast<unsigned long long>(concur::detail::schedule::seed()));
#endif
    std::fflush(stderr);
    std::abort();
  }

  const std::string name_;
  const clock::time_point start_;
  std::atomic<std::uint64_t> progress_{0};
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::vector<std::uint64_t> tids_;  // guarded by mutex_
  std::thread detector_;
};

// A per-thread random generator for the workers' choices (not the schedule's: those come
// from the schedule seed).
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  // A number in [0, bound).
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }

 private:
  std::uint64_t state_;
};

}  // namespace concur_test

#endif  // CONCUR_TESTS_STRESS_HPP
