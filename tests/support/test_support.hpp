// Helpers shared by concur's tests: iteration counts scaled down under sanitizers, generous
// time bounds, polling for a condition that must come true, and a watchdog that turns a hang
// into a failure with a message instead of a stuck CI job.

#ifndef CONCUR_TESTS_TEST_SUPPORT_HPP
#define CONCUR_TESTS_TEST_SUPPORT_HPP

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

namespace concur_test {

// Which sanitizer this build runs under: GCC defines __SANITIZE_*__, Clang has __has_feature.
#if !defined(__has_feature)
#define CONCUR_TEST_HAS_FEATURE(x) 0
#else
#define CONCUR_TEST_HAS_FEATURE(x) __has_feature(x)
#endif
inline constexpr bool under_thread_sanitizer =
#if defined(__SANITIZE_THREAD__) || CONCUR_TEST_HAS_FEATURE(thread_sanitizer)
    true;
#else
    false;
#endif
inline constexpr bool under_address_sanitizer =
#if defined(__SANITIZE_ADDRESS__) || CONCUR_TEST_HAS_FEATURE(address_sanitizer)
    true;
#else
    false;
#endif
inline constexpr bool under_sanitizer = under_thread_sanitizer || under_address_sanitizer;

// `n` normally, `n / divisor` (at least 1) under a sanitizer, which runs code 5-20x slower.
constexpr long scaled(long n, long divisor = 10) {
  return under_sanitizer ? (n / divisor > 0 ? n / divisor : 1) : n;
}

// A bound for "this should happen soon" that no loaded machine should ever hit.
inline constexpr std::chrono::seconds generous{20};

// Polls `predicate` until it holds or `limit` passes; returns its last value.
inline bool eventually(const std::function<bool()>& predicate,
                       std::chrono::steady_clock::duration limit = generous) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > give_up) return predicate();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Whether the thread with kernel id `native_id` (concur::get_native_id() on that thread) of
// this process is asleep in the kernel: state 'S' in /proc/self/task/ID/stat. A thread about to
// wait is running or runnable; once it reads 'S' it sleeps in its wait, so a test can tell "is
// waiting" from "is about to wait" without guessing with a sleep. Linux only; elsewhere it
// answers true after a pause long enough for a thread that was about to wait on an idle machine.
inline bool thread_asleep(std::uint64_t native_id) {
#if defined(__linux__)
  std::ifstream file("/proc/self/task/" + std::to_string(native_id) + "/stat");
  std::string stat;
  if (!std::getline(file, stat)) return false;
  const std::size_t name_end = stat.rfind(')');  // the name may hold spaces and parentheses
  return name_end != std::string::npos && stat.size() > name_end + 2 && stat[name_end + 2] == 'S';
#else
  (void)native_id;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return true;
#endif
}

// Watchdog
//
// Aborts the test program, after printing `what` and the result of `describe()`, if it is
// still alive after `limit`. Used by stress tests whose failure mode is a hang (a lost
// wake-up): the test fails loudly with the stuck state instead of stalling CI.
class Watchdog {
 public:
  Watchdog(std::string what, std::chrono::seconds limit, std::function<std::string()> describe = {})
      : what_(std::move(what)), describe_(std::move(describe)) {
    thread_ = std::thread([this, limit] {
      std::unique_lock<std::mutex> hold(mutex_);
      waiting_ = true;
      waiting_cv_.notify_one();
      if (!done_cv_.wait_for(hold, limit, [this] { return done_; })) {
        std::string state = describe_ ? describe_() : std::string("(no state)");
        std::fprintf(stderr, "WATCHDOG: '%s' still running after %llds; state: %s\n", what_.c_str(),
                     static_cast<long long>(limit.count()), state.c_str());
        std::fflush(stderr);
        std::abort();
      }
    });
    // Returns once the thread waits (it has released the mutex in wait_for). Many tests fork
    // right after starting a watchdog: a fork while the new thread is still starting could
    // leave the child a lock that the runtime (the C library, a sanitizer) held for it, and a
    // child that hangs on it keeps the test's output open until ctest's timeout.
    std::unique_lock<std::mutex> hold(mutex_);
    waiting_cv_.wait(hold, [this] { return waiting_; });
  }

  ~Watchdog() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    thread_.join();
  }

 private:
  std::string what_;
  std::function<std::string()> describe_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  std::condition_variable waiting_cv_;
  bool done_ = false;
  bool waiting_ = false;  // the thread has started and waits on done_cv_
  std::thread thread_;
};

}  // namespace concur_test

#endif  // CONCUR_TESTS_TEST_SUPPORT_HPP
