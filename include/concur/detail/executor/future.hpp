// concur/detail/executor/future.hpp
//
// concur::Future<T> (Python's concurrent.futures.Future, seen from its consumer), the tasks that
// complete one, and detail::Promise<T>, the producer side for executors that do not run the task
// in this process (the process pools). Included by concur/futures.hpp.

#ifndef CONCUR_DETAIL_EXECUTOR_FUTURE_HPP
#define CONCUR_DETAIL_EXECUTOR_FUTURE_HPP

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/executor/future_state.hpp"
#include "concur/errors.hpp"

namespace concur {

template <class T>
class Future;

namespace detail {

// TaskPool
//
// What a state's owner pool offers the threads that wait for it: a pool thread that waits for a
// task of its own pool runs that pool's queued work meanwhile (thread_pool.hpp).
class TaskPool : public HelperSignal {
 public:
  // Waits for `state`, a task of this pool, running queued tasks of the pool meanwhile; true
  // when the state is terminal, false at the deadline.
  virtual bool help_until(StateBase& state, steady_time deadline) noexcept = 0;

  // Runs one queued task of this pool, if there is one; true if it did.
  virtual bool run_one() noexcept = 0;

 protected:
  ~TaskPool() = default;
};

// The pool whose worker the calling thread is, if any.
inline TaskPool*& current_task_pool() noexcept {
  thread_local TaskPool* pool = nullptr;
  return pool;
}

// The task a pool worker took from its queue and runs at the top of its stack, and the flag
// that tells submitters whether that worker is busy. The task clears the flag just before it
// publishes its result, so that a submitter that has seen the result also sees the worker
// free (and does not start another thread for its next task, as Python's pool would not).
struct WorkerSlot {
  alignas(64) std::atomic<bool> busy{false};
};
struct TopTask {
  const StateBase* task = nullptr;
  WorkerSlot* slot = nullptr;
};
inline TopTask& current_top_task() noexcept {
  thread_local TopTask top;
  return top;
}
// Called by a task just before it publishes its result.
inline void free_worker_of(const StateBase* task) noexcept {
  TopTask& top = current_top_task();
  if (top.task == task) {
    top.slot->busy.store(false, std::memory_order_relaxed);
    top.task = nullptr;
  }
}

// Waits for a state: a thread of the state's own pool helps that pool; any other thread spins
// briefly, then sleeps on the state.
inline bool wait_for_state(StateBase& state, steady_time deadline) noexcept {
  if (state.done()) return true;
  TaskPool* pool = current_task_pool();
  if (pool != nullptr && static_cast<HelperSignal*>(pool) == state.owner()) {
    return pool->help_until(state, deadline);
  }
  return state.wait_until(deadline);
}

// Builds and takes apart Future handles; only concur's executors use it.
struct FutureAccess {
  // A Future that adopts one reference to `state`.
  template <class T>
  static Future<T> adopt(FutureState<T>* state) noexcept {
    return Future<T>(state);
  }
  template <class T>
  static FutureState<T>* state(const Future<T>& future) noexcept {
    return future.state_;
  }
};

// Task<R, Body>
//
// A state that is also the work: `Body` is the callable with its arguments bound; it is
// destroyed as soon as it has run, before the result is published, so that what it captured
// is released by the time a waiter sees the task done (Python's worker drops its work item
// likewise).
template <class R, class Body>
class Task final : public FutureState<R> {
 public:
  Task(HelperSignal* owner, Body body) : FutureState<R>(owner), body_(std::move(body)) {}

  void run_claimed() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        (*body_)();
        body_.reset();
        free_worker_of(this);
        this->set_value();
      } else {
        R result = (*body_)();
        body_.reset();
        free_worker_of(this);
        this->set_value(std::move(result));
      }
    } catch (...) {
      // The task threw (or its result's move did): the exception is the future's outcome, never
      // printed and dropped. The state is ours (claimed), so fail() cannot find it terminal.
      body_.reset();
      free_worker_of(this);
      this->fail(std::current_exception());
    }
  }

 private:
  std::optional<Body> body_;
};

// The type a task's callable returns when called with its decayed arguments as rvalues.
template <class F, class... Args>
using task_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;

// Makes a pending task running fn(args...) with copies of the arguments (as Python's submit
// keeps references to them), owned by `owner`. The caller owns the one reference.
template <class F, class... Args>
auto make_task(HelperSignal* owner, F&& fn, Args&&... args) {
  using R = task_result_t<F, Args...>;
  static_assert(std::is_void_v<R> || std::is_move_constructible_v<R>,
                "a task's result must be move-constructible: the Future stores it");
  auto body = [fn = std::forward<F>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(std::move(fn), std::move(args)...);
  };
  return new Task<R, decltype(body)>(owner, std::move(body));
}

template <class T>
class DoneCallback;

}  // namespace detail

// Future<T>
//
// The eventual result of a task: Python's concurrent.futures.Future. A Future is a shared
// handle: copies refer to the same result, as every reference to a Python future does. T may be
// void; a default-constructed Future has no state (valid() is false) and any other member then
// throws UsageError.
//
// Memory ordering: everything the task did happens before result() or exception() returns, and
// before each done callback runs.
template <class T>
class Future {
 public:
  // Future::Future()
  //
  // A Future with no state.
  Future() noexcept = default;

  Future(const Future& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Future& operator=(Future other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~Future() {
    if (state_ != nullptr) state_->release_ref();
  }

  // Future::valid()
  //
  // True when the Future refers to a task's result (it came from an executor or a Promise).
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // Future::cancel()
  //
  // Cancels the task if it has not started: true when it is cancelled (now or before), false
  // when it is running or done, as Python's cancel(). Waiters and done callbacks are woken.
  bool cancel() { return checked().cancel(); }

  // Future::cancelled(), running(), done()
  //
  // The task's state: cancelled; running now; done (finished or cancelled).
  [[nodiscard]] bool cancelled() const {
    return checked().status() == detail::FutureStatus::cancelled;
  }
  [[nodiscard]] bool running() const { return checked().status() == detail::FutureStatus::running; }
  [[nodiscard]] bool done() const { return checked().done(); }

  // Future::result()
  //
  // Blocks until the task is done and returns its result (a const reference, valid while a
  // Future refers to it; nothing for Future<void>). Rethrows the task's exception; throws
  // CancelledError if it was cancelled. Called from a worker thread of the pool that runs the
  // task, it runs queued tasks of that pool while it waits, so a task may submit to its own
  // pool and wait without deadlock, even with one worker.
  decltype(auto) result() const {
    detail::wait_for_state(checked(), detail::never);
    return outcome();
  }

  // Future::result(timeout)
  //
  // As result(), but throws TimeoutError if the task is not done within `timeout` (a negative
  // timeout is zero, as in Python). A pool thread that waits for a task of its own pool runs
  // queued tasks meanwhile, so it may return late by the length of the task it ran last.
  template <class Rep, class Period>
  decltype(auto) result(std::chrono::duration<Rep, Period> timeout) const {
    if (!detail::wait_for_state(checked(), detail::deadline_after(timeout))) throw TimeoutError();
    return outcome();
  }

  // Future::exception(), exception(timeout)
  //
  // Blocks until the task is done and returns the exception it threw, or nullptr if it
  // returned. Throws CancelledError if it was cancelled, TimeoutError at the timeout.
  [[nodiscard]] std::exception_ptr exception() const {
    detail::wait_for_state(checked(), detail::never);
    return error();
  }
  template <class Rep, class Period>
  [[nodiscard]] std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    if (!detail::wait_for_state(checked(), detail::deadline_after(timeout))) throw TimeoutError();
    return error();
  }

  // Future::add_done_callback(fn)
  //
  // Calls fn(future) once the task is done (finished or cancelled): at once, in the calling
  // thread, if it already is; otherwise in the thread that completes it, in the order the
  // callbacks were added. An exception from fn is reported on stderr and otherwise ignored, as
  // Python logs it.
  template <class F>
  requires std::is_invocable_v < F&, const Future<T>
  & > void add_done_callback(F&& fn) {
    checked().add_listener(new detail::DoneCallback<T>(std::forward<F>(fn)));
  }

  // Two Futures are equal when they refer to the same task.
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.state_ == b.state_; }

 private:
  friend struct detail::FutureAccess;

  explicit Future(detail::FutureState<T>* adopted) noexcept : state_(adopted) {}

  detail::FutureState<T>& checked() const {
    if (state_ == nullptr) throw UsageError("Future has no state");
    return *state_;
  }

  decltype(auto) outcome() const {
    if (state_->status() == detail::FutureStatus::cancelled) throw CancelledError();
    if (state_->error()) std::rethrow_exception(state_->error());
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return static_cast<const T&>(state_->value());
    }
  }

  std::exception_ptr error() const {
    if (state_->status() == detail::FutureStatus::cancelled) throw CancelledError();
    return state_->error();
  }

  detail::FutureState<T>* state_ = nullptr;
};

namespace detail {

template <class T>
class DoneCallback final : public Listener {
 public:
  template <class F>
  explicit DoneCallback(F&& fn) : fn_(std::forward<F>(fn)) {}

  void on_done(StateBase& state) noexcept override {
    state.add_ref();
    const Future<T> future = FutureAccess::adopt(static_cast<FutureState<T>*>(&state));
    try {
      fn_(future);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "exception calling callback for future: %s\n", error.what());
    } catch (...) {
      std::fprintf(stderr, "exception calling callback for future\n");
    }
    delete this;
  }

 private:
  std::function<void(const Future<T>&)> fn_;
};

// Promise<T>
//
// The producer side of a Future whose work runs elsewhere (another process): Python's
// executor-facing Future methods. One thread produces: set_running_or_notify_cancel(), then
// set_result() or set_exception(). A Promise destroyed before it completed its state fails it
// with BrokenExecutor, so a waiter can never be left hanging.
template <class T>
class Promise {
 public:
  Promise() : state_(new FutureState<T>(nullptr)) {}
  Promise(Promise&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Promise& operator=(Promise&& other) noexcept {
    Promise(std::move(other)).swap(*this);
    return *this;
  }
  ~Promise() {
    if (state_ == nullptr) return;
    if (!state_->done()) {
      try {
        state_->fail(std::make_exception_ptr(
            BrokenExecutor("the executor dropped the task before it completed")));
      } catch (...) {
        // Terminal meanwhile (a cancel): nothing to do.
      }
    }
    state_->release_ref();
  }
  void swap(Promise& other) noexcept { std::swap(state_, other.state_); }

  // Promise::future()
  //
  // A Future on this Promise's result.
  [[nodiscard]] Future<T> future() const {
    state_->add_ref();
    return FutureAccess::adopt(state_);
  }

  // Promise::set_running_or_notify_cancel()
  //
  // pending -> running: false if the future was cancelled (then do not run the work).
  [[nodiscard]] bool set_running_or_notify_cancel() noexcept { return state_->claim(); }

  // Promise::set_result(value), set_exception(error)
  //
  // Completes the future; throw InvalidStateError if it is already done or cancelled.
  template <class... Args>
  void set_result(Args&&... args) {
    state_->set_value(std::forward<Args>(args)...);
  }
  void set_exception(std::exception_ptr error) { state_->fail(std::move(error)); }

 private:
  FutureState<T>* state_;
};

}  // namespace detail

}  // namespace concur

#endif  // CONCUR_DETAIL_EXECUTOR_FUTURE_HPP
