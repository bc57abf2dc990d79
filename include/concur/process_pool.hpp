// concur/process_pool.hpp
//
// concur::ProcessPoolExecutor, Python's concurrent.futures.ProcessPoolExecutor with the fork
// start method (included by concur/futures.hpp on POSIX systems).
//
//   int square(int x) { return x * x; }
//   concur::ProcessPoolExecutor pool(4);
//   concur::Future<int> f = pool.submit(square, 7);      // f.result() == 49
//   for (int s : pool.map(concur::MapOptions{.chunksize = 64}, square, numbers)) use(s);
//
// The workers and what a task may be are mp::Pool's (concur/pool.hpp): a function pointer or a
// callable type with no state, arguments and results through concur's codec, checked at
// compile time; a task's exception comes back as concur::RemoteError (its what() and type
// name). A worker that dies breaks the executor, as in Python: every pending Future fails with
// BrokenProcessPool, and so does every later submit(). submit() after shutdown() throws
// UsageError (Python's RuntimeError); a bad max_workers or max_tasks_per_child throws
// std::invalid_argument (Python's ValueError).
//
// POSIX only.

#ifndef CONCUR_PROCESS_POOL_HPP
#define CONCUR_PROCESS_POOL_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/process_pool.hpp needs a POSIX system (fork)"
#endif

#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/executor/future.hpp"
#include "concur/detail/executor/map_result.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/detail/executor/process_results.hpp"
#include "concur/detail/executor/process_worker.hpp"
#include "concur/errors.hpp"
#include "concur/pool.hpp"
#include "concur/process.hpp"

namespace concur {

// ProcessPoolOptions
//
// ProcessPoolExecutor's optional settings, for designated initializers:
//   concur::ProcessPoolExecutor pool({.max_workers = 4, .max_tasks_per_child = 100});
struct ProcessPoolOptions {
  // The number of worker processes; empty is Python's default, process_cpu_count().
  std::optional<int> max_workers = std::nullopt;
  // Run first in each worker: a function pointer, or concur::bind_initializer(fn, args...). If
  // it throws, the executor is broken (BrokenProcessPool).
  ProcessInitializer initializer = {};
  // Tasks after which a worker is replaced by a fresh one; empty: never.
  std::optional<int> max_tasks_per_child = std::nullopt;
};

// ProcessMapResult<R>
//
// What ProcessPoolExecutor::map returns: an input range of the results in order, each waited
// for when the iteration reaches it (with the map's timeout, if any, counted from the call); a
// task's exception is thrown there (once for a whole chunk), TimeoutError when the timeout
// passes first. next() gives the explicit form.
template <class R>
using ProcessMapResult = detail::ResultStream<R>;

namespace detail {

// A Future's producer side as a task sink.
template <class R>
class PromiseSink final : public TaskSink {
 public:
  Future<R> future() const { return promise_.future(); }

  bool start(std::size_t) override { return promise_.set_running_or_notify_cancel(); }
  void deliver(std::size_t, std::string_view payload) override {
    std::optional<TaskFailure> failure;
    try {
      if constexpr (std::is_void_v<R>) {
        promise_.set_result();
      } else {
        Reader in(payload);
        promise_.set_result(in.get<R>());
      }
      return;
    } catch (const InvalidStateError&) {
      return;  // done already
    } catch (...) {
      failure.emplace(TaskFailure::current());
    }
    fail(0, *failure);
  }
  void fail(std::size_t, const TaskFailure& failure) override {
    try {
      promise_.set_exception(failure.make_exception_ptr());
    } catch (...) {  // done already
    }
  }
  void cancel(std::size_t) override { (void)future().cancel(); }

 private:
  Promise<R> promise_;
};

}  // namespace detail

// ProcessPoolExecutor
//
// Python's concurrent.futures.ProcessPoolExecutor. The destructor shuts it down and waits, as
// leaving Python's `with` block does. Neither copyable nor movable.
class ProcessPoolExecutor {
 public:
  // ProcessPoolExecutor::ProcessPoolExecutor(), (max_workers), (options)
  //
  // Forks the workers now (Python starts them on demand). Throws std::invalid_argument if
  // max_workers <= 0 or max_tasks_per_child <= 0, std::system_error when the system cannot fork.
  ProcessPoolExecutor() : ProcessPoolExecutor(ProcessPoolOptions{}) {}
  explicit ProcessPoolExecutor(int max_workers)
      : ProcessPoolExecutor(ProcessPoolOptions{.max_workers = max_workers}) {}
  explicit ProcessPoolExecutor(ProcessPoolOptions options)
      : core_(checked_workers(options.max_workers), options.initializer.call(),
              checked_max_tasks(options.max_tasks_per_child)) {}

  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  // ProcessPoolExecutor::~ProcessPoolExecutor()
  //
  // shutdown(wait = true).
  ~ProcessPoolExecutor() {
    try {
      shutdown(true);
    } catch (...) {
    }
  }

  // ProcessPoolExecutor::submit(fn, args...)
  //
  // Schedules fn(args...) in a worker and returns its Future. The arguments are encoded now
  // (a C string travels as a std::string). Throws UsageError after shutdown(),
  // BrokenProcessPool once the executor is broken.
  template <class F, class... Args>
  auto submit(F fn, Args&&... args) {
    using Item = std::tuple<detail::sent_t<Args>...>;
    using R = detail::process_result_t<F, Item, true>;
    static_assert(detail::check_process_callable<F>());
    static_assert((detail::check_process_value<detail::sent_t<Args>>() && ...));
    if constexpr (!std::is_void_v<R>) static_assert(detail::check_process_value<R>());
    auto sink = std::make_shared<detail::PromiseSink<R>>();
    Future<R> future = sink->future();
    detail::PoolJob job{sink, 0,
                        detail::make_single_call<std::decay_t<F>, Item, true>(
                            detail::process_callable_bits(fn), Item(std::forward<Args>(args)...))};
    core_.submit(std::move(job), refusal);
    return future;
  }

  // ProcessPoolExecutor::map(fn, ranges...), map(options, fn, ranges...)
  //
  // fn(a, b, ...) for each position of the ranges (until the shortest ends), sent to the
  // workers in chunks of options.chunksize (default 1) and yielded in order, lazily, as a
  // ProcessMapResult; with options.timeout, TimeoutError once that time has passed since the
  // call. Throws std::invalid_argument for a chunksize < 1 (Python's ValueError).
  template <class F, class... Ranges>
  requires(!std::is_same_v<std::remove_cvref_t<F>, MapOptions>) &&
      (sizeof...(Ranges) > 0) auto map(F fn, Ranges&&... ranges) {
    return map(MapOptions{}, fn, std::forward<Ranges>(ranges)...);
  }
  template <class F, class... Ranges>
  requires(sizeof...(Ranges) > 0) auto map(const MapOptions& options, F fn, Ranges&&... ranges) {
    using Item = std::tuple<std::remove_cv_t<std::ranges::range_value_t<Ranges>>...>;
    using R = detail::process_result_t<F, Item, true>;
    static_assert(detail::check_process_callable<F>());
    static_assert(detail::check_process_value<Item>());
    static_assert(!std::is_void_v<R>, "map() yields results: use submit() for a void function");
    static_assert(detail::check_process_value<R>());
    if (options.chunksize < 1) throw std::invalid_argument("chunksize must be >= 1.");
    const detail::steady_time deadline = detail::map_deadline(options);
    const auto size = static_cast<std::size_t>(options.chunksize);
    if constexpr (sizeof...(Ranges) == 1 &&
                  (std::ranges::forward_range<const std::remove_reference_t<Ranges>> && ...)) {
      // One range that can be read twice (counted, then encoded): its items go as they are,
      // without a copy into tuples first (f(x) is what std::apply(f, std::tuple(x)) calls, and
      // the two encode to the same bytes).
      using One = std::tuple_element_t<0, Item>;
      static_assert(std::is_same_v<detail::process_result_t<F, One, false>, R>);
      const std::size_t count = detail::range_count(ranges...);
      auto sink = std::make_shared<detail::IMapSink<R>>(count, size, true, core_.blocks());
      auto jobs = detail::chunk_jobs<std::decay_t<F>, One, false>(
          detail::process_callable_bits(fn), ranges..., count, size, sink, core_.blocks());
      core_.submit(std::move(jobs), refusal);
      return ProcessMapResult<R>(std::move(sink), deadline);
    }
    std::vector<Item> items;
    if constexpr (sizeof...(Ranges) == 1 && (std::ranges::sized_range<Ranges> && ...)) {
      items.reserve(static_cast<std::size_t>(std::ranges::size(ranges...)));
    }
    detail::for_each_zipped([&](auto&&... parts) { items.emplace_back(parts...); }, ranges...);
    auto sink = std::make_shared<detail::IMapSink<R>>(items.size(), size, true, core_.blocks());
    auto jobs = detail::chunk_jobs<std::decay_t<F>, Item, true>(
        detail::process_callable_bits(fn), items, items.size(), size, sink, core_.blocks());
    core_.submit(std::move(jobs), refusal);
    return ProcessMapResult<R>(std::move(sink), deadline);
  }

  // ProcessPoolExecutor::shutdown(wait, cancel_futures)
  //
  // Refuses new tasks from now on. With `cancel_futures`, cancels every task not yet sent to a
  // worker (their Futures are cancelled; a map's yield CancelledError). With `wait`, returns
  // once every remaining task has run and every worker has exited. May be called more than
  // once.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (cancel_futures) {
      for (auto& job : core_.cancel_queued()) job.sink->cancel(job.slot);
    }
    core_.close();
    if (wait) core_.join();
  }

  // ProcessPoolExecutor::max_workers()
  //
  // The number of worker processes.
  [[nodiscard]] int max_workers() const noexcept { return core_.processes(); }

  // ProcessPoolExecutor::pids()
  //
  // The process ids of the workers alive now (concur's addition, for monitoring and tests).
  [[nodiscard]] std::vector<pid_t> pids() const { return core_.pids(); }

 private:
  static constexpr const char* refusal = "cannot schedule new futures after shutdown";

  static int checked_workers(std::optional<int> max_workers) {
    if (!max_workers) return process_cpu_count();
    if (*max_workers <= 0) throw std::invalid_argument("max_workers must be greater than 0");
    return *max_workers;
  }
  static int checked_max_tasks(std::optional<int> max_tasks) {
    if (!max_tasks) return 0;
    if (*max_tasks < 1) throw std::invalid_argument("max_tasks_per_child must be >= 1");
    return *max_tasks;
  }

  detail::WorkerPool core_;
};

}  // namespace concur

#endif  // CONCUR_PROCESS_POOL_HPP
