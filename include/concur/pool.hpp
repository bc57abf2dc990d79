// concur/pool.hpp
//
// concur::mp::Pool, Python's multiprocessing.Pool with the fork start method, and the
// multiprocessing names that clash with threading's, so that `namespace mp = concur::mp;` reads
// like `import multiprocessing as mp`:
//
//   int square(int x) { return x * x; }
//   mp::Pool pool(4);
//   std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});   // {1, 4, 9}
//   mp::AsyncResult<int> r = pool.apply_async(square, 7);
//   int answer = r.get(std::chrono::seconds(1));                               // 49
//
// Tasks: the workers are fork()ed copies of this program, so a task's function is sent by
// address: it must be a function pointer or a callable type with no state (a lambda without
// captures); its arguments and result go through concur's codec (concur/codec.hpp). Anything
// else stops the compilation with a message saying so. An exception a task throws comes back as
// concur::RemoteError (a concur::Error) carrying its what() text and its type's name: Python
// re-raises the original type, which a C++ exception cannot do across processes.
//
// Differences from Python, each on purpose:
//   - A worker that dies (killed, or exited in a task) breaks the pool: every pending result
//     throws BrokenProcessPool, later calls throw it too, and close()/terminate()/join() finish
//     cleanly. Python's Pool waits forever instead (CPython issue 96062); concurrent.futures'
//     ProcessPoolExecutor raises BrokenProcessPool, as here. So does an initializer that throws
//     (Python's Pool restarts such workers forever).
//   - terminate() and the destructor fail the pending results with BrokenProcessPool (Python
//     leaves them waiting forever).
//   - Misuse throws UsageError where Python raises ValueError (a call on a closed pool, join()
//     on a running one, successful() before ready()): it reports a state, not a bad argument;
//     a bad argument (processes < 1, chunksize < 1 for imap) throws std::invalid_argument.
//   - map and starmap return std::vector; map of a function returning void does not compile
//     (use apply_async).
//
// Speed: tasks are pipelined to the workers, many to a message (see
// concur/detail/executor/process_worker.hpp); a chunk is one message. An idle pool uses no CPU.
//
// POSIX only.

#ifndef CONCUR_POOL_HPP
#define CONCUR_POOL_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/pool.hpp needs a POSIX system (fork)"
#endif

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/connection.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/detail/executor/process_results.hpp"
#include "concur/detail/executor/process_worker.hpp"
#include "concur/errors.hpp"
#include "concur/process.hpp"

namespace concur {

// ProcessInitializer
//
// What a process pool's worker runs first: nothing, a function (pointer or stateless callable
// type) taking no arguments, or one with arguments bound by bind_initializer(). If it throws,
// the pool is broken (BrokenProcessPool).
class ProcessInitializer {
 public:
  ProcessInitializer() = default;
  ProcessInitializer(std::nullptr_t) noexcept {}  // NOLINT: as a null function pointer

  // ProcessInitializer(fn)
  //
  // Runs fn() in each worker.
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, ProcessInitializer> &&
           !std::is_null_pointer_v<std::decay_t<F>>)
      ProcessInitializer(F fn) {  // NOLINT: implicit, like a function pointer field
    if constexpr (detail::check_process_callable<F>()) {
      if constexpr (std::is_pointer_v<std::decay_t<F>>) {
        if (fn == nullptr) return;
      }
      call_ = detail::make_single_call<std::decay_t<F>, std::tuple<>, true>(
          detail::process_callable_bits(fn), std::tuple<>{});
    }
  }

  // ProcessInitializer::operator bool()
  //
  // Whether there is a function to run.
  explicit operator bool() const noexcept { return call_.invoker != nullptr; }

  // The call for the worker (for the pools).
  [[nodiscard]] const detail::TaskCall& call() const noexcept { return call_; }

  template <class F, class... Args>
  friend ProcessInitializer bind_initializer(F fn, Args&&... args);

 private:
  detail::TaskCall call_;
};

// bind_initializer(fn, args...)
//
// An initializer that runs fn(args...) in each worker (Python's initializer and initargs); the
// arguments go through the codec.
template <class F, class... Args>
ProcessInitializer bind_initializer(F fn, Args&&... args) {
  ProcessInitializer init;
  using Item = std::tuple<detail::sent_t<Args>...>;
  if constexpr (detail::check_process_callable<F>() &&
                (detail::check_process_value<detail::sent_t<Args>>() && ...)) {
    init.call_ = detail::make_single_call<std::decay_t<F>, Item, true>(
        detail::process_callable_bits(fn), Item(std::forward<Args>(args)...));
  }
  return init;
}

namespace mp {

namespace detail_pool {
template <class R>
struct get_result {
  using type = const R&;
};
template <>
struct get_result<void> {
  using type = void;
};
}  // namespace detail_pool

// AsyncResult<R>
//
// The result of apply_async (R) or map_async (std::vector<R>): Python's
// multiprocessing.pool.AsyncResult. A shared handle: copies see the same result.
template <class R>
class AsyncResult {
 public:
  using get_type = typename detail_pool::get_result<R>::type;

  explicit AsyncResult(std::shared_ptr<concur::detail::AsyncState<R>> state)
      : state_(std::move(state)) {}

  // AsyncResult::get(), get(timeout)
  //
  // Waits for the result and returns it (a reference valid while a handle lives; nothing for
  // void), or throws the task's exception (RemoteError, BrokenProcessPool). With a timeout,
  // throws TimeoutError when it is not ready in time (Python's multiprocessing.TimeoutError).
  get_type get() { return get_until(concur::detail::never); }
  template <class Rep, class Period>
  get_type get(std::chrono::duration<Rep, Period> timeout) {
    return get_until(concur::detail::deadline_after(timeout));
  }

  // AsyncResult::wait(), wait(timeout)
  //
  // Waits until the result is ready; wait(timeout) returns whether it is (Python returns None).
  void wait() { (void)state_->wait_until(concur::detail::never); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return state_->wait_until(concur::detail::deadline_after(timeout));
  }

  // AsyncResult::ready()
  //
  // Whether the task has completed (with a value or an exception).
  [[nodiscard]] bool ready() const { return state_->ready(); }

  // AsyncResult::successful()
  //
  // Whether the task completed without an exception. Throws UsageError when it is not ready
  // (Python raises ValueError).
  [[nodiscard]] bool successful() const { return state_->successful(); }

 private:
  get_type get_until(concur::detail::steady_time deadline) {
    if constexpr (std::is_void_v<R>) {
      (void)state_->get_until(deadline);
    } else {
      return state_->get_until(deadline);
    }
  }

  std::shared_ptr<concur::detail::AsyncState<R>> state_;
};

// IMapIterator<R>
//
// What imap and imap_unordered return: an input range of the results (see
// concur::detail::ResultStream), with next() and next(timeout) as Python's IMapIterator.
template <class R>
using IMapIterator = concur::detail::ResultStream<R>;

// PoolOptions
//
// A Pool's settings, for designated initializers:
//   mp::Pool pool({.processes = 4, .initializer = concur::bind_initializer(setup, 7),
//                  .maxtasksperchild = 100});
struct PoolOptions {
  // The number of workers; empty gives Python's default, cpu_count().
  std::optional<int> processes = std::nullopt;
  // Run first in each worker (Python's initializer and initargs).
  ProcessInitializer initializer = {};
  // Tasks (a chunk counts as one, as in Python) after which a worker is replaced; empty: never.
  std::optional<int> maxtasksperchild = std::nullopt;
};

// Pool
//
// Python's multiprocessing.Pool. Not copyable or movable.
class Pool {
 public:
  // Pool::Pool(), Pool(processes), Pool(options)
  //
  // Forks the workers now. Throws std::invalid_argument for processes < 1 or maxtasksperchild
  // < 1 (Python's ValueError), std::system_error when the system cannot fork.
  Pool() : Pool(PoolOptions{}) {}
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options)
      : core_(checked_processes(options.processes), options.initializer.call(),
              checked_max_tasks(options.maxtasksperchild)) {}

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Pool::~Pool()
  //
  // terminate(), as Python's `with Pool() as pool:` does on leaving the block.
  ~Pool() = default;  // the WorkerPool's destructor terminates and reaps

  // Pool::apply(fn, args...), apply_async(fn, args...)
  //
  // Runs fn(args...) in a worker: apply() waits and returns the result; apply_async() returns
  // an AsyncResult at once.
  template <class F, class... Args>
  auto apply(F fn, Args&&... args) {
    auto result = apply_async(fn, std::forward<Args>(args)...);
    using R =
        concur::detail::process_result_t<F, std::tuple<concur::detail::sent_t<Args>...>, true>;
    if constexpr (std::is_void_v<R>) {
      result.get();
    } else {
      return R(result.get());
    }
  }
  template <class F, class... Args>
  auto apply_async(F fn, Args&&... args) {
    using Item = std::tuple<concur::detail::sent_t<Args>...>;
    using R = concur::detail::process_result_t<F, Item, true>;
    static_assert(concur::detail::check_process_callable<F>());
    static_assert((concur::detail::check_process_value<concur::detail::sent_t<Args>>() && ...));
    if constexpr (!std::is_void_v<R>) static_assert(concur::detail::check_process_value<R>());
    auto sink = std::make_shared<concur::detail::ApplySink<R>>();
    concur::detail::PoolJob job{
        sink, 0,
        concur::detail::make_single_call<std::decay_t<F>, Item, true>(
            concur::detail::process_callable_bits(fn), Item(std::forward<Args>(args)...))};
    core_.submit(std::move(job), refusal);
    return AsyncResult<R>(std::shared_ptr<concur::detail::AsyncState<R>>(sink));
  }

  // Pool::map(fn, items, chunksize), map_async(...)
  //
  // fn(item) for each item, in order; the items go to the workers in chunks of `chunksize`
  // (0: Python's default, about a quarter of an even share per worker). map() waits; if any
  // task throws, it throws the first exception that arrived.
  template <class F, std::ranges::input_range Range>
  auto map(F fn, Range&& items, int chunksize = 0) {
    return map_async(fn, std::forward<Range>(items), chunksize).take();
  }
  template <class F, std::ranges::input_range Range>
  auto map_async(F fn, Range&& items, int chunksize = 0) {
    return map_impl<false>(fn, std::forward<Range>(items), chunksize);
  }

  // Pool::starmap(fn, tuples, chunksize), starmap_async(...)
  //
  // As map, with each item (a std::tuple or std::pair) unpacked into fn's arguments.
  template <class F, std::ranges::input_range Range>
  auto starmap(F fn, Range&& items, int chunksize = 0) {
    return starmap_async(fn, std::forward<Range>(items), chunksize).take();
  }
  template <class F, std::ranges::input_range Range>
  auto starmap_async(F fn, Range&& items, int chunksize = 0) {
    return map_impl<true>(fn, std::forward<Range>(items), chunksize);
  }

  // Pool::imap(fn, items, chunksize), imap_unordered(...)
  //
  // As map, returning the results lazily as an IMapIterator: in order (imap), or as they
  // complete (imap_unordered, where a chunk's results stay together). chunksize defaults to 1;
  // less throws std::invalid_argument. All items are sent at once (as Python's task handler
  // does); only the results are lazy.
  template <class F, std::ranges::input_range Range>
  auto imap(F fn, Range&& items, int chunksize = 1) {
    return imap_impl<false>(fn, std::forward<Range>(items), chunksize, true);
  }
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F fn, Range&& items, int chunksize = 1) {
    return imap_impl<false>(fn, std::forward<Range>(items), chunksize, false);
  }

  // Pool::close()
  //
  // No more tasks; the workers exit once the queued ones are done.
  void close() { core_.close(); }

  // Pool::terminate()
  //
  // Stops the workers at once (SIGKILL) and reaps them; pending results throw
  // BrokenProcessPool. Returns once every worker is reaped.
  void terminate() { core_.terminate(); }

  // Pool::join()
  //
  // Waits until every worker has exited. Throws UsageError unless close() or terminate() came
  // first (Python raises ValueError).
  void join() {
    if (core_.state() == concur::detail::WorkerPool::State::running) {
      throw UsageError("Pool is still running");
    }
    core_.join();
  }

  // Pool::processes()
  //
  // The number of workers.
  [[nodiscard]] int processes() const noexcept { return core_.processes(); }

  // Pool::pids()
  //
  // The process ids of the workers alive now (concur's addition, for monitoring and tests).
  [[nodiscard]] std::vector<pid_t> pids() const { return core_.pids(); }

 private:
  static constexpr const char* refusal = "Pool not running";

  static int checked_processes(std::optional<int> processes) {
    if (!processes) return concur::cpu_count();
    if (*processes < 1) throw std::invalid_argument("Number of processes must be at least 1");
    return *processes;
  }
  static int checked_max_tasks(std::optional<int> max_tasks) {
    if (!max_tasks) return 0;
    if (*max_tasks < 1) throw std::invalid_argument("maxtasksperchild must be a positive int");
    return *max_tasks;
  }

  // The items as a forward range: the range itself when it is one, else a copy.
  template <class Range, class Body>
  static auto with_forward(Range&& items, Body body) {
    if constexpr (std::ranges::forward_range<Range>) {
      return body(items);
    } else {
      using Item = std::ranges::range_value_t<Range>;
      std::vector<Item> copy;
      for (auto&& item : items) copy.push_back(std::forward<decltype(item)>(item));
      return body(copy);
    }
  }

  template <bool Unpack, class F, class Range>
  auto map_impl(F fn, Range&& items, int chunksize) {
    using Item = std::remove_cv_t<std::ranges::range_value_t<Range>>;
    using R = concur::detail::process_result_t<F, Item, Unpack>;
    static_assert(concur::detail::check_process_callable<F>());
    static_assert(concur::detail::check_process_value<Item>());
    static_assert(!std::is_void_v<R>, "Pool::map needs a function that returns a value");
    static_assert(concur::detail::check_process_value<R>());
    if (chunksize < 0) throw std::invalid_argument("chunksize must be 1+");
    return with_forward(std::forward<Range>(items), [&](auto& range) {
      const auto count = concur::detail::range_count(range);
      const std::size_t size = chunksize > 0
                                   ? static_cast<std::size_t>(chunksize)
                                   : concur::detail::default_chunksize(count, processes());
      auto sink = std::make_shared<concur::detail::MapSink<R>>(count, size);
      auto jobs = concur::detail::chunk_jobs<std::decay_t<F>, Item, Unpack>(
          concur::detail::process_callable_bits(fn), range, count, size, sink, core_.blocks());
      core_.submit(std::move(jobs), refusal);
      return MapResult<R>(std::move(sink));
    });
  }

  template <bool Unpack, class F, class Range>
  auto imap_impl(F fn, Range&& items, int chunksize, bool ordered) {
    using Item = std::remove_cv_t<std::ranges::range_value_t<Range>>;
    using R = concur::detail::process_result_t<F, Item, Unpack>;
    static_assert(concur::detail::check_process_callable<F>());
    static_assert(concur::detail::check_process_value<Item>());
    static_assert(!std::is_void_v<R>, "Pool::imap needs a function that returns a value");
    static_assert(concur::detail::check_process_value<R>());
    if (chunksize < 1) {
      throw std::invalid_argument("Chunksize must be 1+, not " + std::to_string(chunksize));
    }
    return with_forward(std::forward<Range>(items), [&](auto& range) {
      const auto count = concur::detail::range_count(range);
      const auto size = static_cast<std::size_t>(chunksize);
      auto sink =
          std::make_shared<concur::detail::IMapSink<R>>(count, size, ordered, core_.blocks());
      auto jobs = concur::detail::chunk_jobs<std::decay_t<F>, Item, Unpack>(
          concur::detail::process_callable_bits(fn), range, count, size, sink, core_.blocks());
      core_.submit(std::move(jobs), refusal);
      return IMapIterator<R>(std::move(sink));
    });
  }

 public:
  // Pool::MapResult<R>
  //
  // What map_async and starmap_async return: an AsyncResult<std::vector<R>>, whose take()
  // moves the vector out (map() uses it).
  template <class R>
  class MapResult : public AsyncResult<std::vector<R>> {
   public:
    explicit MapResult(std::shared_ptr<concur::detail::MapSink<R>> sink)
        : AsyncResult<std::vector<R>>(sink), sink_(std::move(sink)) {}
    // MapResult::take()
    //
    // Waits, then moves the results out (a later get() sees an empty vector).
    std::vector<R> take() { return sink_->take(); }

   private:
    std::shared_ptr<concur::detail::MapSink<R>> sink_;
  };

 private:
  concur::detail::WorkerPool core_;
};

}  // namespace mp
}  // namespace concur

#endif  // CONCUR_POOL_HPP
