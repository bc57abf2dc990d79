// concur/process.hpp
//
// Processes with Python's os and multiprocessing semantics: concur::fork(), getpid(),
// getppid(), cpu_count(), process_cpu_count(), and concur::Process (the fork start method).
//
//   concur::Process worker([](int n) { return n * 2; }, 21);   // exit code 42
//   worker.start();
//   worker.join();
//   std::printf("%s exited with %d\n", worker.name().c_str(), *worker.exitcode());
//
// A Process runs its callable (or an overridden run()) in a fork()ed child, which then ends with
// _exit(): the parent's atexit handlers and static destructors never run twice. exitcode() is
// empty while the child runs, then the callable's return value (0 for void), the code given to
// exit_process() or std::exit(), 1 after an uncaught exception (with "Process NAME:" and the
// exception on the child's stderr), or -N when signal N ended it, as Python reports it.
//
// Misuse throws UsageError: start() twice, join() before start(), set_daemon() after start(),
// and, after close(), any member but close(); close() throws while the child runs. A failed
// fork() throws std::system_error.
//
// Waiting uses a pidfd where the kernel has one (Linux 5.3 and later: poll(2) with the
// deadline, then waitid(2)), and otherwise waitpid(WNOHANG) with a growing sleep. No SIGCHLD
// handler is installed. No child is left a zombie: join() reaps, a failed start leaves nothing,
// a non-daemon Process's destructor joins, and daemon children are terminated and reaped when the
// parent exits normally (or asked to die with it, die_with_parent). Every descriptor concur
// creates is close-on-exec.
//
// Memory ordering: the child starts from a copy of the parent's memory as it was at start();
// nothing the child writes is seen by the parent (use a Pipe).
//
// POSIX only (fork); pidfds on Linux.

#ifndef CONCUR_PROCESS_HPP
#define CONCUR_PROCESS_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/process.hpp needs a POSIX system (fork)"
#endif

#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "concur/detail/close_on_fork.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/names.hpp"
#include "concur/detail/posix_io.hpp"
#include "concur/detail/process_registry.hpp"
#include "concur/errors.hpp"

namespace concur {

// fork()
//
// Python's os.fork(): flushes stdio (so buffered output is not written twice), then forks.
// Returns 0 in the child and the child's pid in the parent; throws std::system_error when the
// system cannot fork.
inline pid_t fork() {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) detail::throw_errno("fork");
  if (pid == 0) detail::close_on_fork_in_child();  // concur's close-on-fork descriptors
  return pid;
}

// getpid(), getppid()
//
// The calling process's id and its parent's (Python's os.getpid() and os.getppid()).
[[nodiscard]] inline pid_t getpid() noexcept {
  return ::getpid();
}
[[nodiscard]] inline pid_t getppid() noexcept {
  return ::getppid();
}

// cpu_count()
//
// The number of CPUs in the system, at least 1 (Python's os.cpu_count(), which
// multiprocessing.cpu_count() returns).
[[nodiscard]] inline int cpu_count() noexcept {
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

// process_cpu_count()
//
// The number of CPUs this process may run on (Python 3.13's os.process_cpu_count()): the
// scheduler affinity mask where the system has one, otherwise cpu_count().
[[nodiscard]] inline int process_cpu_count() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
#endif
  return cpu_count();
}

// ProcessExit
//
// What exit_process() throws to end a Process's child with a code (Python's SystemExit): the
// top of the child catches it and exits with `code`. Not a std::exception, so that
// `catch (const std::exception&)` lets it pass.
struct ProcessExit {
  int code = 0;
};

// exit_process(code)
//
// Ends the calling Process child with exit code `code` after unwinding its stack (Python's
// sys.exit(code) in a multiprocessing child). Outside a Process child it propagates like any
// exception.
[[noreturn]] inline void exit_process(int code) {
  throw ProcessExit{code};
}

// ProcessOptions
//
// A Process's optional settings, meant for designated initializers:
//   concur::Process p({.name = "indexer", .daemon = true}, index_files);
struct ProcessOptions {
  // The name; empty gives Python's default, "Process-N".
  std::string name = {};
  // A daemon child is terminated (SIGTERM) and reaped when the parent exits normally.
  bool daemon = false;
  // Ask the kernel to send SIGKILL to the child when the parent dies, however it dies (Linux:
  // PR_SET_PDEATHSIG; ignored elsewhere).
  bool die_with_parent = false;
};

namespace detail {

// What Process(f, args...) accepts: `f` callable with (stored copies of) `args`.
template <class F, class... Args>
concept process_target = requires(std::decay_t<F>& f, std::decay_t<Args>&... args) {
  std::invoke(f, args...);
};

// The callable a Process runs in its child, with its arguments bound; returns the exit code.
class ProcessTarget {
 public:
  virtual ~ProcessTarget() = default;
  virtual int operator()() = 0;
};

template <class F, class... Args>
class BoundProcessTarget final : public ProcessTarget {
 public:
  template <class G, class... As>
  explicit BoundProcessTarget(G&& callable, As&&... arguments)
      : parts_(std::forward<G>(callable), std::forward<As>(arguments)...) {}

  int operator()() override {
    return std::apply(
        [](auto& callable, auto&... arguments) -> int {
          using Result = std::invoke_result_t<F&, Args&...>;
          if constexpr (std::is_convertible_v<Result, int>) {
            return static_cast<int>(std::invoke(callable, arguments...));
          } else {
            std::invoke(callable, arguments...);
            return 0;
          }
        },
        parts_);
  }

 private:
  std::tuple<F, Args...> parts_;
};

inline std::atomic<std::uint64_t>& process_counter() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter;
}

// A pidfd for a child, or an invalid UniqueFd where the kernel has none (before Linux 5.3).
inline UniqueFd open_pidfd(pid_t pid) noexcept {
#if defined(__linux__) && defined(SYS_pidfd_open)
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    // pidfd_open gives close-on-exec descriptors already (PIDFD_NONBLOCK aside).
    return UniqueFd(static_cast<int>(fd));
  }
#else
  (void)pid;
#endif
  return UniqueFd();
}

// Python's exit code for a wait status: the exit status, or minus the signal number.
inline int exitcode_of(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return 255;
}

}  // namespace detail

// Process
//
// Python's multiprocessing.Process with the fork start method. Not copyable or movable (the
// child of a derived class runs its run()).
class Process {
 public:
  // Process::Process()
  //
  // A process whose run() does nothing: for classes that override run().
  Process() : Process(ProcessOptions{}) {}

  // Process::Process(options)
  //
  // A process with the given name and flags, for classes that override run().
  explicit Process(ProcessOptions options) : options_(std::move(options)) { name_default(); }

  // Process::Process(f, args...)
  //
  // A process that runs `f(args...)` in its child. The arguments are copied or moved into the
  // Process now; the child gets the parent's copy of them at start(). If `f` returns something
  // convertible to int, that is the exit code.
  template <class F, class... Args>
  explicit Process(F&& f, Args&&... args) requires detail::process_target<F, Args...>
      : Process(ProcessOptions{}, std::forward<F>(f), std::forward<Args>(args)...) {}

  // Process::Process(options, f, args...)
  //
  // As Process(f, args...), with a name and flags.
  template <class F, class... Args>
  Process(ProcessOptions options, F&& f, Args&&... args) requires detail::process_target<F, Args...>
      : options_(std::move(options)),
        target_(
            std::make_unique<detail::BoundProcessTarget<std::decay_t<F>, std::decay_t<Args>...>>(
                std::forward<F>(f), std::forward<Args>(args)...)) {
    name_default();
  }

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Process::~Process()
  //
  // Joins a started non-daemon child (as Python's interpreter does at exit); a daemon child
  // keeps running and is terminated and reaped when the parent exits.
  virtual ~Process() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (pid_ <= 0 || status_ || closed_) return;
      if (options_.daemon) {
        detail::ProcessRegistry::instance().adopt(pid_);
        return;
      }
    }
    try {
      (void)join_until(detail::never);
    } catch (...) {
    }
  }

  // Process::start()
  //
  // Forks the child, which runs run() and exits. The parent then destroys its copy of the
  // callable and arguments, which only the child needs: a Connection moved into the Process is
  // closed on the parent's side, so the parent sees end of file once the child is done with it.
  // Throws UsageError when called twice or after close(), std::system_error when the system
  // cannot fork.
  void start() {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      check_open();
      if (started_) throw UsageError("cannot start a process twice");
      started_ = true;  // claimed; the mutex is not held across fork(), so the child may use it
    }
    detail::ProcessRegistry::instance().reap_orphans();
    const pid_t parent = ::getpid();
    pid_t pid;
    try {
      pid = concur::fork();
    } catch (...) {
      std::lock_guard<std::mutex> hold(mutex_);
      started_ = false;  // nothing was started: start() may be tried again
      throw;
    }
    if (pid == 0) run_child(parent);  // never returns
    std::unique_ptr<detail::ProcessTarget> spent;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      pid_ = pid;
      pidfd_ = detail::open_pidfd(pid);
      if (options_.daemon) detail::ProcessRegistry::instance().add_daemon(pid);
      spent = std::move(target_);
    }
    // `spent` goes here, outside the lock: the child has its own copy of the target now.
  }

  // Process::join()
  //
  // Waits until the child has ended and reaps it. Throws UsageError before start() or after
  // close().
  void join() { (void)join_until(detail::never); }

  // Process::join(timeout)
  //
  // Waits at most `timeout` (a negative one counts as zero); returns true once the child has
  // ended (Python's join(timeout) returns None: check exitcode there).
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(detail::deadline_after(timeout));
  }

  // Process::is_alive()
  //
  // Whether the child has been started and has not ended (reaping it if it has).
  [[nodiscard]] bool is_alive() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    return pid_ > 0 && !try_reap();
  }

  // Process::exitcode()
  //
  // Empty while the child runs (or before start()); then its exit code as Python reports it.
  [[nodiscard]] std::optional<int> exitcode() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (pid_ <= 0 || !try_reap()) return std::nullopt;
    return detail::exitcode_of(*status_);
  }

  // Process::pid()
  //
  // The child's process id; empty before start().
  [[nodiscard]] std::optional<pid_t> pid() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (pid_ <= 0) return std::nullopt;
    return pid_;
  }

  // Process::terminate(), kill()
  //
  // Sends SIGTERM (SIGKILL) to the child; nothing once it has ended. Throws UsageError before
  // start() or after close().
  void terminate() { signal(SIGTERM); }
  void kill() { signal(SIGKILL); }

  // Process::close()
  //
  // Releases the Process's resources. Throws UsageError while the child runs; afterwards every
  // member but close() throws UsageError. Closing twice does nothing.
  void close() {
    std::lock_guard<std::mutex> hold(mutex_);
    if (closed_) return;
    if (pid_ > 0 && !try_reap()) {
      throw UsageError("cannot close a process while it is still running");
    }
    pidfd_.reset();
    target_.reset();
    closed_ = true;
  }

  // Process::name(), set_name(), daemon(), set_daemon()
  //
  // The name ("Process-N" by default) and the daemon flag; set_daemon() after start() throws
  // UsageError.
  [[nodiscard]] std::string name() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    return options_.name;
  }
  void set_name(std::string name) {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    options_.name = std::move(name);
  }
  [[nodiscard]] bool daemon() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    return options_.daemon;
  }
  void set_daemon(bool daemon) {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (started_) throw UsageError("process has already started");
    options_.daemon = daemon;
  }

  // Process::run()
  //
  // The child's activity, run in the child after start(); its return is the exit code 0. The
  // default calls the callable given to the constructor (whose result, if an int, is the exit
  // code). Override it in a derived class (and end with exit_process(n) for another code).
  virtual void run() {
    if (target_) child_code_ = (*target_)();
  }

 private:
  void name_default() {
    if (options_.name.empty()) {
      options_.name = "Process-" + std::to_string(detail::process_counter().fetch_add(1) + 1);
    }
  }

  void check_open() const {
    if (closed_) throw UsageError("process object is closed");
  }

  // In the child: runs run() and exits, never returning to the parent's code.
  [[noreturn]] void run_child(pid_t parent) noexcept {
    int code = 0;
    try {
#if defined(__linux__)
      if (options_.die_with_parent) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);  // the parent died before the request
      }
#endif
      (void)parent;
      run();
      code = child_code_;
    } catch (const ProcessExit& exit) {
      code = exit.code;
    } catch (...) {
      const std::string text = "Process " + options_.name + ":\n" +
                               detail::describe_exception(std::current_exception()) + "\n";
      std::fwrite(text.data(), 1, text.size(), stderr);
      code = 1;
    }
    std::fflush(nullptr);
    ::_exit(code & 0xff);
  }

  // Reaps the child if it has ended, without waiting; true once it has. With mutex_ held.
  bool try_reap() {
    if (status_) return true;
    for (;;) {
      int status = 0;
      const pid_t rc = ::waitpid(pid_, &status, WNOHANG);
      if (rc == 0) return false;
      if (rc == pid_) {
        status_ = status;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == ECHILD) {
        status_ = 255 << 8;  // reaped behind concur's back (SIGCHLD ignored?): code unknown
      } else {
        detail::throw_errno("waitpid");
      }
      if (options_.daemon) detail::ProcessRegistry::instance().remove_daemon(pid_);
      return true;  // pidfd_ stays open until close(): a join() may be polling it
    }
  }

  // Waits until the child ends or `deadline` passes, without holding mutex_ while it waits (so
  // that is_alive() and others answer meanwhile); true once it has ended and been reaped.
  bool join_until(detail::steady_time deadline) {
    int pidfd;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      check_open();
      if (!started_) throw UsageError("can only join a started process");
      if (try_reap()) return true;
      pidfd = pidfd_.get();
    }
    auto nap = std::chrono::milliseconds(1);
    for (;;) {
      // With a pidfd, poll(2) sleeps until the child ends; without one, nap and look again.
      const bool ready = pidfd >= 0 ? detail::wait_ready(pidfd, POLLIN, deadline) : true;
      {
        std::lock_guard<std::mutex> hold(mutex_);
        if (try_reap()) return true;
      }
      if (!ready || detail::expired(deadline)) return false;
      if (pidfd < 0) {
        std::this_thread::sleep_for(nap);
        nap = std::min(nap * 2, std::chrono::milliseconds(50));
      }
    }
  }

  void signal(int number) {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (!started_) throw UsageError("process has not been started");
    if (status_) return;  // ended and reaped: the pid may belong to someone else now
    ::kill(pid_, number);
  }

  ProcessOptions options_;
  std::unique_ptr<detail::ProcessTarget> target_;
  std::mutex mutex_;
  bool started_ = false;
  bool closed_ = false;
  pid_t pid_ = 0;
  detail::UniqueFd pidfd_;
  std::optional<int> status_;  // the wait status, once reaped
  int child_code_ = 0;         // in the child: the target's result
};

}  // namespace concur

#endif  // CONCUR_PROCESS_HPP
