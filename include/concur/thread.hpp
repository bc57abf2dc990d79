// concur/thread.hpp
//
// Threads with Python's `threading` and `_thread` semantics: concur::Thread (built from a
// callable, or derived with run() overridden), the live-thread registry (current_thread(),
// main_thread(), enumerate(), active_count()), the low-level start_new_thread() and
// exit_thread(), and excepthook for exceptions that escape a thread.
//
//   concur::Thread worker({.name = "worker"}, [](int n) { std::cout << n << '\n'; }, 42);
//   worker.start();
//   worker.join();
//
// Lifecycle (as Python's): a Thread is built, started exactly once, runs, and ends; join() waits
// for the end, from any number of threads, with or without a timeout. A started non-daemon Thread
// is joined by its destructor (the C++ counterpart of the interpreter waiting for non-daemon
// threads at exit); a daemon Thread's destructor leaves the thread running.
//
// A class derived from Thread that overrides run() must keep its own members alive for as long
// as run() uses them: its destructor runs before ~Thread() joins, so it should call join() itself
// (or be joined by its owner) before its members go. A Thread built from a callable has no such
// concern: the callable and its arguments live in the thread's own record.
//
// Errors: start() twice, join() before start(), a thread joining itself, and set_daemon() after
// start() throw concur::UsageError; the OS refusing a new thread throws std::system_error (and
// the Thread stays unstarted: start() may be retried).
//
// Memory ordering: everything the starting thread did before start() happens-before the new
// thread's run(); everything run() did happens-before a join() that returns (true), and before
// is_alive() reads false.

#ifndef CONCUR_THREAD_HPP
#define CONCUR_THREAD_HPP

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/detail/names.hpp"
#include "concur/detail/os_thread.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/thread_registry.hpp"
#include "concur/detail/thread_state.hpp"
#include "concur/errors.hpp"

namespace concur {

// ThreadExit
//
// What exit_thread() throws to end the calling thread quietly (Python's SystemExit from
// _thread.exit()). A thread started by concur catches it at its top and ends without a message.
// It deliberately does not derive from std::exception, so `catch (const std::exception&)` lets
// it pass; code that catches everything with `catch (...)` must rethrow it.
struct ThreadExit {};

namespace detail {

// The members that a Thread and a ThreadHandle share: everything Python's Thread object offers
// for a thread that may already be running.
class ThreadAccess {
 public:
  // ThreadAccess::name()
  //
  // The thread's name: the one given, or "Thread-N" ("Thread-N (target)" when the target has a
  // name), "MainThread", or "Dummy-N". Names need not be unique.
  [[nodiscard]] std::string name() const { return state_->name(); }

  // ThreadAccess::set_name()
  //
  // Renames the thread. A running thread that concur started is renamed in the OS too (cut to
  // the 15 bytes Linux keeps), so the name shows in `top -H`, `ps -L` and gdb.
  void set_name(std::string name) { state_->set_name(std::move(name)); }

  // ThreadAccess::ident()
  //
  // Python's `ident`: the thread's identifier (its pthread_t), empty before start() and kept
  // after the thread ends. The OS may reuse it for a later thread.
  [[nodiscard]] std::optional<std::uint64_t> ident() const noexcept { return state_->ident(); }

  // ThreadAccess::native_id()
  //
  // Python's `native_id`: the id the kernel gave the thread (Linux: its TID, as `top -H` shows),
  // empty before start() (Python's None; it never blocks then) and kept after the thread ends.
  // Right after start() it may wait the few microseconds until the new thread has published
  // it; empty when that start() fails.
  [[nodiscard]] std::optional<std::uint64_t> native_id() const noexcept {
    return state_->native_id();
  }

  // ThreadAccess::daemon()
  //
  // Whether this is a daemon thread: one that nothing waits for. Defaults to the daemon status
  // of the thread that built it (false for threads built by the main thread).
  [[nodiscard]] bool daemon() const noexcept { return state_->daemon(); }

  // ThreadAccess::is_alive()
  //
  // True from start() until the thread's function has returned and its thread-local objects are
  // destroyed.
  [[nodiscard]] bool is_alive() const noexcept { return state_->is_alive(); }

  // ThreadAccess::join()
  //
  // Blocks until the thread ends. Any number of threads may join the same thread, at the same
  // time or later. Throws UsageError before start(), when a thread joins itself, and for a
  // "Dummy-N" thread (Python 3.13: "cannot join a dummy thread"). Returns normally even when
  // the thread's function threw (the exception went to excepthook).
  void join() const { (void)state_->join_until(detail::never); }

  // ThreadAccess::join(timeout)
  //
  // Blocks until the thread ends or `timeout` passes; returns true once the thread has ended
  // (Python's join(timeout) returns None: call is_alive() there). A negative timeout counts as
  // zero, as in Python. Throws as join() does.
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) const {
    return state_->join_until(detail::deadline_after(timeout));
  }

 protected:
  explicit ThreadAccess(std::shared_ptr<ThreadState> state) noexcept : state_(std::move(state)) {}

  std::shared_ptr<ThreadState> state_;
};

}  // namespace detail

// ThreadHandle
//
// A copyable reference to a thread that concur knows about, as current_thread(), main_thread(),
// enumerate() and Thread::handle() return it: Python's Thread object seen from outside its
// owner. It keeps the thread's record (name, ids, state) alive, not the thread. Two handles
// compare equal when they refer to the same thread.
class ThreadHandle : public detail::ThreadAccess {
 public:
  // ThreadHandle::ThreadHandle()
  //
  // For concur's own use: the functions above hand out handles.
  explicit ThreadHandle(std::shared_ptr<detail::ThreadState> state) noexcept
      : ThreadAccess(std::move(state)) {}

  friend bool operator==(const ThreadHandle& a, const ThreadHandle& b) noexcept {
    return a.state_ == b.state_;
  }
};

// ExceptHookArgs
//
// What excepthook receives when an exception escapes a Thread's function (Python's
// threading.ExceptHookArgs): the exception, and the thread it escaped from (empty when the
// caller of excepthook() gives none).
struct ExceptHookArgs {
  std::exception_ptr exc_value;
  std::optional<ThreadHandle> thread;
};

// The type of an exception hook.
using ExceptHook = std::function<void(const ExceptHookArgs&)>;

// default_excepthook()
//
// Python's threading.__excepthook__: writes "Exception in thread NAME:" and, on the next line,
// the exception's type and what(), to stderr in one write.
inline void default_excepthook(const ExceptHookArgs& args) {
  const std::string who =
      args.thread ? args.thread->name() : std::to_string(detail::os_thread_ident());
  const std::string text =
      "Exception in thread " + who + ":\n" + detail::describe_exception(args.exc_value) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

namespace detail {

// The installed hook. Created on first use and never destroyed: a daemon thread may fail while
// static objects are being destroyed.
class ExceptHookSlot {
 public:
  static ExceptHookSlot& instance() {
    static ExceptHookSlot* const slot = new ExceptHookSlot();
    return *slot;
  }

  ExceptHook exchange(ExceptHook hook) {
    auto next = hook ? std::make_shared<const ExceptHook>(std::move(hook)) : nullptr;
    std::lock_guard<std::mutex> hold(mutex_);
    std::swap(next, hook_);
    return next ? *next : ExceptHook(&default_excepthook);
  }

  std::shared_ptr<const ExceptHook> current() {
    std::lock_guard<std::mutex> hold(mutex_);
    return hook_;
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<const ExceptHook> hook_;  // empty: default_excepthook
};

}  // namespace detail

// set_excepthook()
//
// Installs `hook` as concur's excepthook (Python's `threading.excepthook = hook`) and returns
// the one it replaces; an empty hook restores default_excepthook. The hook runs on the failing
// thread, before that thread ends.
inline ExceptHook set_excepthook(ExceptHook hook) {
  return detail::ExceptHookSlot::instance().exchange(std::move(hook));
}

// excepthook()
//
// Calls the installed hook with `args`: what concur does with an exception that escapes a
// thread's function.
inline void excepthook(const ExceptHookArgs& args) {
  const std::shared_ptr<const ExceptHook> hook = detail::ExceptHookSlot::instance().current();
  if (hook) {
    (*hook)(args);
  } else {
    default_excepthook(args);
  }
}

namespace detail {

// Hands an escaped exception to excepthook; an exception from the hook itself is reported on
// stderr and swallowed, as Python does.
inline void report_thread_exception(std::exception_ptr error, ThreadState* state) noexcept {
  try {
    std::optional<ThreadHandle> thread;
    if (state != nullptr) thread.emplace(state->shared_from_this());
    excepthook(ExceptHookArgs{std::move(error), std::move(thread)});
  } catch (...) {
    const std::string text =
        "Exception in concur::excepthook:\n" + describe_exception(std::current_exception()) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
}

// Runs `body`, ending quietly on ThreadExit and sending any other exception to `report`.
// pthread_exit() and pthread_cancel() end a glibc thread by unwinding its stack with a "forced
// unwind" exception that must go on up to the C library (swallowing it aborts the process), so
// it is rethrown, as libstdc++'s std::thread does (issue 13, item 2). It is recognised as an
// exception that is not C++'s: std::current_exception() is empty for it. (Catching
// abi::__forced_unwind by reference would bind the reference to no object, which UBSan reports.)
template <class Body, class Report>
void run_reporting_exceptions(Body&& body, Report&& report) {
  try {
    std::forward<Body>(body)();
  } catch (const ThreadExit&) {
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    if (!error) throw;  // a forced unwind, or another language's exception: let it pass
    std::forward<Report>(report)(std::move(error));
  }
}

template <class Body>
void run_reporting_exceptions(Body&& body) {
  run_reporting_exceptions(std::forward<Body>(body), [](std::exception_ptr error) {
    report_thread_exception(std::move(error), current_thread_state);
  });
}

// The entry of a thread from start_new_thread(): no record, no name.
inline void* bare_thread_entry(void* raw) {
  const std::unique_ptr<ThreadTarget> target(static_cast<ThreadTarget*>(raw));
  run_reporting_exceptions(
      [&] { (*target)(); },
      [&](const std::exception_ptr& error) { report_ignored_thread_exception(*target, error); });
  return nullptr;
}

}  // namespace detail

// ThreadOptions
//
// A Thread's optional settings, meant for designated initializers:
//   concur::Thread t({.name = "worker", .daemon = true}, work);
struct ThreadOptions {
  // The thread's name; empty gives Python's default, "Thread-N" or "Thread-N (target)".
  std::string name = {};
  // Whether it is a daemon thread; empty inherits the building thread's daemon status.
  std::optional<bool> daemon = std::nullopt;
};

namespace detail {

// What Thread(f, args...) takes: a thread target whose first part is not a ThreadOptions
// (that one is Thread(options), or Thread(options, f, args...)).
template <class F, class... Args>
concept target_without_options =
    !std::same_as<std::remove_cvref_t<F>, ThreadOptions> && thread_target<F, Args...>;

}  // namespace detail

// Thread
//
// Python's threading.Thread. Not copyable or movable: the running thread may refer to it (a
// derived class's run()), so it stays where it was built; keep Threads in a std::deque,
// std::list, or by std::unique_ptr when you need a collection.
class Thread : public detail::ThreadAccess {
 public:
  // Thread::Thread()
  //
  // A thread with default options whose run() does nothing: for classes that override run().
  Thread() : Thread(ThreadOptions{}) {}

  // Thread::Thread(options)
  //
  // A thread with the given name and daemon status, for classes that override run():
  //   class Worker : public concur::Thread {
  //    public:
  //     Worker() : Thread({.name = "worker"}) {}
  //     void run() override { ... }
  //   };
  explicit Thread(ThreadOptions options) : ThreadAccess(make_state(std::move(options))) {}

  // Thread::Thread(f, args...)
  //
  // A thread that runs `f(args...)`. `f` and the arguments are copied or moved into the thread
  // now, as std::thread does (use std::ref to pass a reference), and given to `f` as rvalues.
  template <class F, class... Args>
  explicit Thread(F&& f, Args&&... args) requires detail::target_without_options<F, Args...>
      : Thread(ThreadOptions{}, std::forward<F>(f), std::forward<Args>(args)...) {}

  // Thread::Thread(options, f, args...)
  //
  // As Thread(f, args...), with a name and daemon status:
  //   concur::Thread t({.name = "saver", .daemon = true}, save, std::move(data));
  template <class F, class... Args>
  Thread(ThreadOptions options, F&& f, Args&&... args) requires detail::thread_target<F, Args...>
      : ThreadAccess(make_state(std::move(options), std::forward<F>(f),
                                std::forward<Args>(args)...)) {}

  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;

  // Thread::~Thread()
  //
  // Joins a started non-daemon thread (unless called on that thread itself); leaves a daemon
  // thread running.
  virtual ~Thread() {
    if (state_->phase() == detail::ThreadPhase::created) return;
    if (!daemon() && detail::current_thread_state != state_.get()) {
      try {
        join();
        return;
      } catch (...) {
      }
    }
    if (state_->claim_os_thread()) detail::os_detach_thread(*state_->ident());
  }

  // Thread::start()
  //
  // Starts the thread: run() begins on a new OS thread, named after this Thread. Returns without
  // waiting for it; is_alive() is true from here on. Throws UsageError when called after a
  // start() that succeeded, and std::system_error (EAGAIN) when the OS cannot create another
  // thread; a start() that threw leaves the Thread unstarted, so it may be called again (as in
  // Python), and a native_id() or join() waiting on it returns as before any start.
  void start() {
    // Everything that may fail before the OS thread is made, made before the phase changes.
    auto ownership = std::make_unique<detail::ThreadOwnership>(
        detail::ThreadOwnership{state_, runs_through_object() ? this : nullptr});
    auto& registry = detail::ThreadRegistry::instance();
    state_->begin_start();
    CONCUR_SCHEDULE_POINT("thread.start.before_listing");
    try {
      registry.add(*state_);
    } catch (...) {
      state_->undo_start();
      throw;
    }
    std::uint64_t ident = 0;
    if (int rc = detail::os_start_thread(&entry, ownership.get(), /*detached=*/false, ident);
        rc != 0) {
      registry.remove(*state_);
      CONCUR_SCHEDULE_POINT("thread.start.failed_before_undo");
      state_->undo_start();
      detail::throw_system_error(rc, "can't start new thread");
    }
    ownership.release();
    state_->set_started_os_thread(ident);
  }

  // Thread::join()
  //
  // Blocks until the thread ends. Any number of threads may join the same thread, at the same
  // time or later. Throws UsageError before start() and when a thread joins itself. Returns
  // normally even when the thread's function threw (the exception went to excepthook).
  void join() {
    state_->check_joinable();
    if (state_->claim_os_thread()) {
      // The first joiner joins the OS thread itself, as std::thread::join does: one wake-up
      // when the thread exits, and its stack goes straight back to the C library's cache.
      detail::os_join_thread(*state_->ident());
    } else {
      state_->join_until(detail::never);
    }
  }

  // Thread::join(timeout)
  //
  // Blocks until the thread ends or `timeout` passes; returns true once the thread has ended
  // (Python's join(timeout) returns None: call is_alive() there). A negative timeout counts as
  // zero, as in Python. Throws as join() does.
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) {
    if (!state_->join_until(detail::deadline_after(timeout))) return false;
    if (state_->claim_os_thread()) detail::os_join_thread(*state_->ident());
    return true;
  }

  // Thread::set_daemon()
  //
  // Sets the daemon status. Throws UsageError once the thread has started.
  void set_daemon(bool daemon) { state_->set_daemon(daemon); }

  // Thread::handle()
  //
  // A copyable handle to this thread, equal to what current_thread() returns on it.
  [[nodiscard]] ThreadHandle handle() const noexcept { return ThreadHandle(state_); }

  // Thread::run()
  //
  // The thread's activity. The default calls the callable given to the constructor, once.
  // Override it in a derived class; it runs on the new thread after start().
  virtual void run() { state_->run_target(); }

 protected:
  // Thread::run_target_directly()
  //
  // For a derived class that does not override run(): its thread then runs the stored target
  // without touching the object, so that the object, like a plain Thread's, may be destroyed
  // while a daemon thread runs. Call it from the derived constructor.
  void run_target_directly() noexcept { direct_ = true; }

 private:
  // Builds the record, naming it after the target before the target is moved into it.
  template <class... Target>
  static std::shared_ptr<detail::ThreadState> make_state(ThreadOptions options,
                                                         Target&&... target) {
    std::string name = std::move(options.name);
    std::unique_ptr<detail::ThreadTarget> bound;
    if constexpr (sizeof...(Target) > 0) {
      if (name.empty()) name = default_name(detail::target_name(first_of(target...)));
      bound = detail::bind_target(std::forward<Target>(target)...);
    }
    if (name.empty()) name = default_name({});
    const bool daemon = options.daemon.value_or(building_thread_is_daemon());
    return std::make_shared<detail::ThreadState>(std::move(name), daemon, /*started_here=*/true,
                                                 std::move(bound));
  }

  template <class F, class... Rest>
  static const F& first_of(const F& f, const Rest&...) noexcept {
    return f;
  }

  static std::string default_name(const std::string& target) {
    std::string name = "Thread-" + std::to_string(detail::ThreadRegistry::instance().next_number());
    if (!target.empty()) name += " (" + target + ")";
    return name;
  }

  // Python: a new thread inherits the daemon status of the thread that builds it; a thread
  // concur has not met yet is a "dummy" thread, and those are daemons.
  static bool building_thread_is_daemon() noexcept {
    if (const detail::ThreadState* state = detail::current_thread_state) return state->daemon();
    return !detail::os_is_initial_thread();
  }

  // A Thread of exactly this class runs its stored target and never touches the object again,
  // so a daemon Thread may be destroyed while it runs. A derived class is called through run().
  bool runs_through_object() const noexcept {
    if (direct_) return false;
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
    return typeid(*this) != typeid(Thread);
#else
    return true;
#endif
  }

  static void* entry(void* raw) {
    auto* ownership = static_cast<detail::ThreadOwnership*>(raw);
    detail::ThreadState& state = *ownership->state;
    auto* through = static_cast<Thread*>(ownership->runner);
    detail::ThreadRegistry::own_current_thread(std::unique_ptr<detail::ThreadOwnership>(ownership));
    state.enter_running();
    detail::run_reporting_exceptions([&] {
      if (through != nullptr) {
        through->run();
      } else {
        state.run_target();
      }
    });
    return nullptr;
  }

  bool direct_ = false;
};

// start_new_thread()
//
// Python's _thread.start_new_thread: runs `f(args...)` on a new detached thread and returns its
// ident at once. The thread is not listed by enumerate() unless it calls current_thread(). An
// exception escaping `f` is reported as Python reports it there (an unraisable exception, not
// excepthook): "Exception ignored in thread started by NAME:" and the exception on stderr;
// exit_thread(), pthread_exit() and pthread_cancel() end it quietly. Throws std::system_error
// when the OS cannot create another thread.
template <class F, class... Args>
std::uint64_t start_new_thread(F&& f, Args&&... args) requires detail::thread_target<F, Args...> {
  auto target = detail::bind_target(std::forward<F>(f), std::forward<Args>(args)...);
  std::uint64_t ident = 0;
  if (int rc = detail::os_start_thread(&detail::bare_thread_entry, target.get(),
                                       /*detached=*/true, ident);
      rc != 0) {
    detail::throw_system_error(rc, "can't start new thread");
  }
  target.release();
  return ident;
}

// exit_thread()
//
// Python's _thread.exit(): ends the calling thread quietly by throwing ThreadExit, which the
// top of every thread concur started catches (destructors run on the way up). On a thread that
// concur did not start, the exception propagates like any other.
[[noreturn]] inline void exit_thread() {
  throw ThreadExit{};
}

// current_thread()
//
// The calling thread. A thread that concur did not start gets a "Dummy-N" record (a daemon) on
// its first call, listed by enumerate() until it exits.
[[nodiscard]] inline ThreadHandle current_thread() {
  return ThreadHandle(detail::ThreadRegistry::instance().current().shared_from_this());
}

// main_thread()
//
// The main thread ("MainThread"): the one that ran main(). In a fork()ed child, the thread that
// called fork().
[[nodiscard]] inline ThreadHandle main_thread() {
  return ThreadHandle(detail::ThreadRegistry::instance().main_thread());
}

// enumerate()
//
// Every listed thread that is alive, in the order they were listed: the main thread, started
// Threads that have not ended, and dummy threads.
[[nodiscard]] inline std::vector<ThreadHandle> enumerate() {
  std::vector<ThreadHandle> threads;
  for (auto& state : detail::ThreadRegistry::instance().snapshot()) {
    threads.emplace_back(std::move(state));
  }
  return threads;
}

// active_count()
//
// The number of threads enumerate() would list.
[[nodiscard]] inline std::size_t active_count() {
  return detail::ThreadRegistry::instance().size();
}

// get_ident()
//
// The calling thread's ident (its pthread_t), cheap and without touching the registry.
[[nodiscard]] inline std::uint64_t get_ident() noexcept {
  return detail::os_thread_ident();
}

// get_native_id()
//
// The calling thread's kernel id (Linux: its TID).
[[nodiscard]] inline std::uint64_t get_native_id() noexcept {
  return detail::os_thread_native_id();
}

}  // namespace concur

#endif  // CONCUR_THREAD_HPP
