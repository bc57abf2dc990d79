// concur/futures.hpp
//
// Python's concurrent.futures: Future, ThreadPoolExecutor, wait(), as_completed(), and (POSIX)
// ProcessPoolExecutor.
//
//   concur::ThreadPoolExecutor pool(4);
//   concur::Future<int> f = pool.submit([](int x) { return x * x; }, 7);
//   std::printf("%d\n", f.result());                  // 49
//   for (int square : pool.map([](int x) { return x * x; }, std::vector{1, 2, 3})) { ... }
//
// Beyond Python:
//   - A pool thread that waits for a Future of its own pool runs the pool's queued tasks
//     meanwhile (detail/executor/thread_pool.hpp), so a task may submit to its own pool and wait
//     for the result, recursively, with any number of workers, one included.
//   - A submit allocates one object (the task is its Future's state) and takes no lock; idle
//     workers sleep in the kernel, so an idle pool uses no CPU.
//
// Errors (errors.hpp): TimeoutError, CancelledError, InvalidStateError, BrokenThreadPool,
// BrokenProcessPool; submit() after shutdown() throws UsageError (Python's RuntimeError); a
// bad max_workers throws std::invalid_argument (Python's ValueError).
//
// Memory ordering: everything a task does happens before its Future's result() (or exception(),
// or a wait() or as_completed() that reports it done) returns; everything the submitting thread
// did before submit() happens before the task runs.

#ifndef CONCUR_FUTURES_HPP
#define CONCUR_FUTURES_HPP

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/config.hpp"
#include "concur/detail/executor/future.hpp"
#include "concur/detail/executor/map_result.hpp"
#include "concur/detail/executor/thread_pool.hpp"
#include "concur/detail/executor/waiter.hpp"
#include "concur/errors.hpp"

#if CONCUR_POSIX
#include "concur/process.hpp"
#else
#include <thread>
#endif

namespace concur {

// ThreadPoolOptions
//
// ThreadPoolExecutor's optional settings, for designated initializers:
//   concur::ThreadPoolExecutor pool({.max_workers = 8, .thread_name_prefix = "io"});
struct ThreadPoolOptions {
  // The most threads the pool starts (one per submit that finds no idle thread, as Python
  // does); empty is Python's default, min(32, process_cpu_count() + 4).
  std::optional<int> max_workers = std::nullopt;
  // The workers' names are "<prefix>_<n>"; empty is Python's "ThreadPoolExecutor-<k>".
  std::string thread_name_prefix = {};
  // Runs first in each worker thread; if it throws, the pool is broken (BrokenThreadPool).
  std::function<void()> initializer = {};
};

namespace detail {

inline int thread_pool_number() noexcept {
  static std::atomic<int> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed);
}

inline int default_max_workers() noexcept {
#if CONCUR_POSIX
  const int cpus = process_cpu_count();
#else
  const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#endif
  return std::min(32, cpus + 4);
}

inline int checked_max_workers(std::optional<int> max_workers) {
  if (!max_workers) return default_max_workers();
  if (*max_workers <= 0) throw std::invalid_argument("max_workers must be greater than 0");
  return *max_workers;
}

// A map() call whose first argument is the function, not MapOptions.
template <class F>
concept map_function = !std::same_as<std::remove_cvref_t<F>, MapOptions>;

}  // namespace detail

// ThreadPoolExecutor
//
// Python's concurrent.futures.ThreadPoolExecutor. The destructor shuts the pool down and waits
// for the queued tasks, as leaving Python's `with` block does. Neither copyable nor movable.
class ThreadPoolExecutor {
 public:
  // ThreadPoolExecutor::ThreadPoolExecutor(), (max_workers), (options)
  //
  // A pool of at most `max_workers` threads, started as tasks arrive. Throws
  // std::invalid_argument if max_workers <= 0.
  ThreadPoolExecutor() : ThreadPoolExecutor(ThreadPoolOptions{}) {}
  explicit ThreadPoolExecutor(int max_workers)
      : ThreadPoolExecutor(ThreadPoolOptions{.max_workers = max_workers}) {}
  explicit ThreadPoolExecutor(ThreadPoolOptions options)
      : core_(detail::checked_max_workers(options.max_workers),
              options.thread_name_prefix.empty()
                  ? "ThreadPoolExecutor-" + std::to_string(detail::thread_pool_number())
                  : std::move(options.thread_name_prefix),
              std::move(options.initializer)) {}

  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  // ThreadPoolExecutor::~ThreadPoolExecutor()
  //
  // shutdown(wait = true).
  ~ThreadPoolExecutor() = default;

  // ThreadPoolExecutor::submit(fn, args...)
  //
  // Schedules fn(args...) and returns its Future. `fn` and the arguments are copied or moved
  // into the task now (use std::ref for a reference) and given to `fn` as rvalues. Throws
  // UsageError after shutdown(), BrokenThreadPool if an initializer failed.
  template <class F, class... Args>
  requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
  auto submit(F&& fn, Args&&... args) -> Future<detail::task_result_t<F, Args...>> {
    using R = detail::task_result_t<F, Args...>;
    auto* task = detail::make_task(&core_, std::forward<F>(fn), std::forward<Args>(args)...);
    Future<R> future = detail::FutureAccess::adopt(task);
    core_.enqueue(task);
    return future;
  }

  // ThreadPoolExecutor::map(fn, ranges...), map(options, fn, ranges...)
  //
  // Submits fn(a, b, ...) for each position of the ranges (until the shortest ends) and
  // returns a MapResult: the results in order, each waited for as the iteration reaches it,
  // rethrowing a task's exception there; with options.timeout, TimeoutError once that time has
  // passed since the call. Destroying the MapResult early cancels the tasks not yet started.
  template <class F, class... Ranges>
  requires detail::map_function<F> &&(sizeof...(Ranges) > 0) auto map(F&& fn, Ranges&&... ranges) {
    return map(MapOptions{}, std::forward<F>(fn), std::forward<Ranges>(ranges)...);
  }
  template <class F, class... Ranges>
  requires(sizeof...(Ranges) > 0) auto map(const MapOptions& options, F&& fn, Ranges&&... ranges) {
    using R = std::invoke_result_t<F&, std::ranges::range_reference_t<Ranges>...>;
    static_assert(!std::is_void_v<R>, "map() yields results: use submit() for a void function");
    const detail::steady_time deadline = detail::map_deadline(options);
    std::vector<Future<R>> futures;
    detail::for_each_zipped([&](auto&&... items) { futures.push_back(submit(fn, items...)); },
                            ranges...);
    return MapResult<R>(std::move(futures), deadline);
  }

  // ThreadPoolExecutor::shutdown(wait, cancel_futures)
  //
  // Refuses new tasks from now on. With `cancel_futures`, cancels every task not yet started.
  // With `wait`, returns once every queued task has run and every worker has ended. May be
  // called more than once.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    core_.shutdown(wait, cancel_futures);
  }

  // ThreadPoolExecutor::max_workers()
  //
  // The most threads this pool runs.
  [[nodiscard]] int max_workers() const noexcept { return core_.max_workers(); }

 private:
  detail::ThreadPoolCore core_;
};

// wait(futures, [timeout], return_when)
//
// Blocks until the condition `return_when` holds for `futures`: one of them is done
// (first_completed), one finished by throwing or all are done (first_exception), or all are
// done (all_completed, the default); or until `timeout` passes. Returns the done and the not
// done futures; never throws TimeoutError (check not_done). A cancelled future counts as done.
template <class T>
DoneAndNotDone<T> wait(const std::vector<Future<T>>& futures,
                       ReturnWhen return_when = ReturnWhen::all_completed) {
  return detail::wait_futures(futures, detail::never, return_when);
}
template <class T, class Rep, class Period>
DoneAndNotDone<T> wait(const std::vector<Future<T>>& futures,
                       std::chrono::duration<Rep, Period> timeout,
                       ReturnWhen return_when = ReturnWhen::all_completed) {
  return detail::wait_futures(futures, detail::deadline_after(timeout), return_when);
}

// as_completed(futures, [timeout])
//
// An input range that yields each of `futures` (duplicates once) as it is done: those already
// done first, then the others in the order they finish. Iterating blocks; TimeoutError when
// `timeout`, counted from the call, passes before the next one is done.
//   for (concur::Future<int>& f : concur::as_completed(futures)) use(f.result());
template <class T>
AsCompleted<T> as_completed(const std::vector<Future<T>>& futures) {
  return AsCompleted<T>(futures, detail::never);
}
template <class T, class Rep, class Period>
AsCompleted<T> as_completed(const std::vector<Future<T>>& futures,
                            std::chrono::duration<Rep, Period> timeout) {
  return AsCompleted<T>(futures, detail::deadline_after(timeout));
}

}  // namespace concur

// ProcessPoolExecutor (POSIX: its workers are forked).
#if CONCUR_POSIX
#include "concur/process_pool.hpp"
#endif

#endif  // CONCUR_FUTURES_HPP
