// concur/detail/thread_state.hpp
//
// The shared record behind every thread concur knows about: a concur::Thread's, the main
// thread's, and the "Dummy-N" record of a thread started elsewhere. The Thread object, any
// ThreadHandle copies, the registry and the running thread itself share it through a
// std::shared_ptr, so it outlives whichever of them goes first.
//
// Lifecycle (one atomic word, `phase_`):
//
//   created --start()--> started --the new thread runs--> running --thread exit--> ended
//
// The word's low byte is the phase; bit 8 says that some thread sleeps on the word (a joiner, or
// a caller of native_id() that came before the new thread published it), so the thread only
// pays for a wake-up system call when somebody waits. "ended" is published from the running
// thread's last thread_local destructor, after every other thread-local object of that thread is
// gone, so a join() that returns sees the thread's whole effect.
//
// Memory ordering: the transitions are release operations and every read of the phase an
// acquire, so all that happened before start() is visible to the new thread, and all the thread
// did is visible to a joiner that sees it ended.

#ifndef CONCUR_DETAIL_THREAD_STATE_HPP
#define CONCUR_DETAIL_THREAD_STATE_HPP

#include <atomic>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <sys/types.h>
#include <unistd.h>

#include "concur/detail/deadline.hpp"
#include "concur/detail/names.hpp"
#include "concur/detail/os_thread.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// The name Python would give a target: a callable object's name(), or a function's own name
// when the dynamic symbol table has it.
template <class Callable>
std::string target_name(const Callable& callable) {
  if constexpr (std::is_function_v<Callable>) {
    return function_name_at(reinterpret_cast<const void*>(&callable));
  } else if constexpr (std::is_pointer_v<Callable> &&
                       std::is_function_v<std::remove_pointer_t<Callable>>) {
    return function_name_at(reinterpret_cast<const void*>(callable));
  } else if constexpr (requires { std::string(callable.name()); }) {
    return std::string(callable.name());
  } else {
    return {};
  }
}

// ThreadTarget
//
// A callable with its arguments already bound, run once on the new thread.
class ThreadTarget {
 public:
  virtual ~ThreadTarget() = default;
  virtual void operator()() = 0;
  // What Python's repr of the function would name: the target's name, or the callable's type.
  virtual std::string name() const = 0;
};

// The arguments are decay-copied (or moved) into the target when the Thread is built, as
// std::thread does, and handed to the callable as rvalues when it runs.
template <class F, class... Args>
class BoundTarget final : public ThreadTarget {
 public:
  template <class G, class... As>
  explicit BoundTarget(G&& callable, As&&... arguments)
      : parts_(std::forward<G>(callable), std::forward<As>(arguments)...) {}

  std::string name() const override {
    std::string named = target_name(std::get<0>(parts_));
    if (!named.empty()) return named;
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
    return "<" + demangle(typeid(F).name()) + ">";
#else
    return "<callable>";
#endif
  }

  void operator()() override {
    std::apply(
        [](auto& callable, auto&... arguments) {
          std::invoke(std::move(callable), std::move(arguments)...);
        },
        parts_);
  }

 private:
  std::tuple<F, Args...> parts_;
};

// What Thread(f, args...), Timer and start_new_thread accept: `f` callable with its stored,
// decayed arguments, as std::thread requires.
template <class F, class... Args>
concept thread_target = std::invocable<std::decay_t<F>, std::decay_t<Args>...>;

template <class F, class... Args>
std::unique_ptr<ThreadTarget> bind_target(F&& callable, Args&&... arguments) {
  return std::make_unique<BoundTarget<std::decay_t<F>, std::decay_t<Args>...>>(
      std::forward<F>(callable), std::forward<Args>(arguments)...);
}

// Python's unraisable-exception report of an exception that escaped a start_new_thread()
// function: "Exception ignored in thread started by NAME:" (NAME: the function's name, or the
// callable's type) and, on the next line, the exception's type and what(), in one write to
// stderr. Python 3.13 sends it to sys.unraisablehook, not to threading.excepthook.
inline void report_ignored_thread_exception(const ThreadTarget& target,
                                            const std::exception_ptr& error) noexcept {
  try {
    const std::string text = "Exception ignored in thread started by " + target.name() + ":\n" +
                             describe_exception(error) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  } catch (...) {
  }
}

enum class ThreadPhase : std::uint32_t { created = 0, started = 1, running = 2, ended = 3 };

class ThreadState : public std::enable_shared_from_this<ThreadState> {
 public:
  // A thread that concur starts (and names in the OS) when `started_here`; otherwise the record
  // of a thread that already runs (the main thread, or a "Dummy-N" thread), whose OS name concur
  // leaves alone.
  ThreadState(std::string name, bool daemon, bool started_here,
              std::unique_ptr<ThreadTarget> target = nullptr)
      : name_(std::move(name)),
        daemon_(daemon),
        started_here_(started_here),
        target_(std::move(target)) {}

  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;

  std::string name() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return name_;
  }

  // Renames the thread, in the OS too while it runs. The mutex keeps the thread from ending (see
  // finish()) while its OS name is written, so the write never reaches a thread that is gone.
  void set_name(std::string name) {
    std::lock_guard<std::mutex> hold(mutex_);
    name_ = std::move(name);
    if (started_here_ && phase() == ThreadPhase::running) os_set_thread_name(ident_.load(), name_);
  }

  bool daemon() const noexcept { return daemon_.load(std::memory_order_relaxed); }

  void set_daemon(bool daemon) {
    if (phase() != ThreadPhase::created) {
      throw UsageError("cannot set daemon status of active thread");
    }
    daemon_.store(daemon, std::memory_order_relaxed);
  }

  std::optional<std::uint64_t> ident() const noexcept {
    const std::uint64_t ident = ident_.load(std::memory_order_acquire);
    if (ident == 0) return std::nullopt;
    return ident;
  }

  // The kernel's id; empty before start() (never blocking then). A caller that comes after
  // start() but before the new thread has published it waits the few microseconds until it
  // has; when that start() fails instead, it returns empty.
  std::optional<std::uint64_t> native_id() const noexcept {
    if (phase() == ThreadPhase::created) return std::nullopt;
    if (wait_for(ThreadPhase::running, never) == ThreadPhase::created) return std::nullopt;
    return native_id_.load(std::memory_order_acquire);
  }

  ThreadPhase phase() const noexcept {
    return static_cast<ThreadPhase>(phase_.load(std::memory_order_acquire) & phase_mask);
  }

  bool is_alive() const noexcept {
    const ThreadPhase now = phase();
    return now == ThreadPhase::started || now == ThreadPhase::running;
  }

  // A "Dummy-N" record: a thread that concur did not start, met through current_thread().
  bool dummy() const noexcept { return dummy_.load(std::memory_order_relaxed); }
  void set_dummy(bool dummy) noexcept { dummy_.store(dummy, std::memory_order_relaxed); }

  // Throws UsageError when joining is a mistake: a dummy thread (nothing tells concur when it
  // ends; Python 3.13 refuses too), before start(), or from the thread itself.
  void check_joinable() const {
    if (dummy()) throw UsageError("cannot join a dummy thread");
    if (phase() == ThreadPhase::created) {
      throw UsageError("cannot join thread before it is started");
    }
    if (native_id_.load(std::memory_order_acquire) == os_thread_native_id() &&
        phase() != ThreadPhase::ended) {
      throw UsageError("cannot join current thread");
    }
  }

  // Waits until the thread has ended or `deadline` passes; true once it has ended. Throws
  // UsageError, as before start(), when the start() it waited on failed.
  bool join_until(steady_time deadline) const {
    check_joinable();
    const ThreadPhase reached = wait_for(ThreadPhase::ended, deadline);
    if (reached == ThreadPhase::created) {
      throw UsageError("cannot join thread before it is started");
    }
    return reached == ThreadPhase::ended;
  }

  // The OS thread of a started Thread is joinable; exactly one caller (a join() of its owner,
  // or the owner's destructor) gets to join or detach it. True for that one caller, and never
  // in a process other than the one that started the thread: in a fork()ed child the parent's
  // threads do not exist, and joining or detaching one there is undefined (glibc crashes or
  // hangs). Whether the thread had ended before the fork or not, nothing is left to join there.
  bool claim_os_thread() noexcept {
    if (os_thread_pid_.load(std::memory_order_acquire) != ::getpid()) return false;
    return !os_thread_claimed_.exchange(true, std::memory_order_acq_rel);
  }

  // start(): created -> started, or UsageError when the thread was started before. Only the
  // phase decides: a waiters bit (none can be set on a created word, see wait_for) is kept.
  void begin_start() {
    std::uint32_t word = phase_.load(std::memory_order_acquire);
    do {
      if ((word & phase_mask) != static_cast<std::uint32_t>(ThreadPhase::created)) {
        throw UsageError("threads can only be started once");
      }
    } while (!phase_.compare_exchange_weak(
        word, (word & waiters_bit) | static_cast<std::uint32_t>(ThreadPhase::started),
        std::memory_order_acq_rel, std::memory_order_acquire));
    CONCUR_SCHEDULE_POINT("thread.begin_start.after_exchange");
  }

  // start() failed to create the OS thread: back to created, so that start() may be retried,
  // waking whoever came to wait on the start (a native_id() or a join(), which then return as
  // they do before any start).
  void undo_start() noexcept { advance(ThreadPhase::created); }

  // start() created the joinable OS thread `ident`.
  void set_started_os_thread(std::uint64_t ident) noexcept {
    ident_.store(ident, std::memory_order_release);
    os_thread_pid_.store(::getpid(), std::memory_order_release);
    os_thread_claimed_.store(false, std::memory_order_release);
  }

  // On the new (or adopted) thread itself: publish its ids and OS name, then mark it running.
  void enter_running() {
    ident_.store(os_thread_ident(), std::memory_order_release);
    native_id_.store(os_thread_native_id(), std::memory_order_release);
    std::lock_guard<std::mutex> hold(mutex_);
    if (started_here_) os_set_thread_name(ident_.load(std::memory_order_relaxed), name_);
    advance(ThreadPhase::running);
  }

  // Marks the record of an already running thread (main or dummy) as started and running.
  void adopt_running() {
    begin_start();
    enter_running();
  }

  // On the thread itself, as its very last act: mark it ended and wake every joiner.
  void finish() noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    advance(ThreadPhase::ended);
  }

  // In the child of fork(): the record's lock is made new (a thread that did not survive the
  // fork may have held it), and a thread other than the forking one is marked ended.
  void reset_after_fork(bool survives) noexcept {
    new (&mutex_) std::mutex();
    if (survives) {
      set_dummy(false);  // the forking thread is the child's main thread, as in Python
      os_forget_native_id();
      native_id_.store(os_thread_native_id(), std::memory_order_release);
    } else {
      phase_.store(static_cast<std::uint32_t>(ThreadPhase::ended), std::memory_order_release);
      os_thread_claimed_.store(true, std::memory_order_release);  // nothing left to join
    }
  }

  // Runs the target given at construction, once; later calls do nothing.
  void run_target() {
    if (std::unique_ptr<ThreadTarget> target = std::move(target_)) (*target)();
  }

  // Links of the registry's list, guarded by the registry's mutex.
  ThreadState* registry_prev = nullptr;
  ThreadState* registry_next = nullptr;
  bool registry_listed = false;

 private:
  static constexpr std::uint32_t phase_mask = 0xff;
  static constexpr std::uint32_t waiters_bit = 0x100;

  // Moves to `next`, clearing the waiters bit, and wakes every sleeper if the bit was set.
  void advance(ThreadPhase next) noexcept {
    CONCUR_SCHEDULE_POINT("thread.advance.before_exchange");
    const std::uint32_t before =
        phase_.exchange(static_cast<std::uint32_t>(next), std::memory_order_acq_rel);
    if (before & waiters_bit) wake_all(phase_);
  }

  // Waits until the phase is at least `target`, or is back at created (the start failed), or
  // the deadline passes; returns the phase it saw last. Never sleeps on a created word, so a
  // created word never carries the waiters bit:
  //   waiter: loads started            start(): fails, exchanges the word to created, wakes
  //   waiter: CAS started -> started|W fails (the word changed), reloads created, returns.
  ThreadPhase wait_for(ThreadPhase target, steady_time deadline) const noexcept {
    for (;;) {
      std::uint32_t word = phase_.load(std::memory_order_acquire);
      const std::uint32_t now = word & phase_mask;
      if (now >= static_cast<std::uint32_t>(target) ||
          now == static_cast<std::uint32_t>(ThreadPhase::created)) {
        return static_cast<ThreadPhase>(now);
      }
      if (!(word & waiters_bit)) {
        if (!phase_.compare_exchange_weak(word, word | waiters_bit, std::memory_order_acquire)) {
          continue;
        }
        word |= waiters_bit;
        // The thread may advance right here: the futex then sees a changed word and returns.
        CONCUR_SCHEDULE_POINT("thread.wait.after_setting_waiters");
      }
      if (!wait_on_until(phase_, word, deadline)) {
        return static_cast<ThreadPhase>(phase_.load(std::memory_order_acquire) & phase_mask);
      }
    }
  }

  mutable std::mutex mutex_;
  std::string name_;  // guarded by mutex_
  std::atomic<bool> daemon_;
  std::atomic<bool> dummy_{false};
  const bool started_here_;
  std::atomic<std::uint64_t> ident_{0};
  std::atomic<std::uint64_t> native_id_{0};
  std::atomic<bool> os_thread_claimed_{true};  // true: no OS thread left to join or detach
  std::atomic<pid_t> os_thread_pid_{0};        // the process whose OS thread it is
  // Written by the waiters (the waiters bit) as well as by the thread: mutable for const waits.
  mutable wait_word phase_{static_cast<std::uint32_t>(ThreadPhase::created)};
  std::unique_ptr<ThreadTarget> target_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_THREAD_STATE_HPP
