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
// deadline, then waitpid(2)), and otherwise waitpid(WNOHANG) with growing naps that end at the
// deadline. No SIGCHLD handler is installed. No child is left a zombie for long: join() reaps, a
// failed start leaves nothing, a non-daemon Process's destructor joins, a daemon child whose
// object is gone is reaped at the next reaping point once it has ended (start(), the end of a
// join(), the destruction of a Process, active_children()), and daemon children still running
// when the parent exits normally get SIGTERM, then SIGKILL after a grace period of 1 s, and are
// reaped (Python waits forever for a daemon that ignores SIGTERM). Every descriptor concur
// creates is close-on-exec, and a fork()ed child inherits no pidfd of its parent's children.
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

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/close_on_fork.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/flush_streams.hpp"
#include "concur/detail/names.hpp"
#include "concur/detail/posix_io.hpp"
#include "concur/detail/process_child.hpp"
#include "concur/detail/process_identity.hpp"
#include "concur/detail/process_registry.hpp"
#include "concur/detail/process_seams.hpp"
#include "concur/detail/process_target.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/errors.hpp"

namespace concur {

// fork()
//
// Python's os.fork(): flushes stdio and the C++ standard streams (so that buffered output is not
// written twice), then forks.
// Returns 0 in the child and the child's pid in the parent; throws std::system_error when the
// system cannot fork.
inline pid_t fork() {
  detail::flush_standard_streams();
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
  // A daemon child is terminated (SIGTERM) and reaped when the parent exits normally; one still
  // running a grace period of 1 s later gets SIGKILL (Python would wait for it forever).
  bool daemon = false;
  // Ask the kernel to send SIGKILL to the child when the parent process dies, however it dies,
  // whichever of its threads started the child (Linux; ignored elsewhere). The child holds the
  // read end of a pipe whose write end only the parent holds, armed with O_ASYNC and F_SETSIG:
  // when the parent's last descriptor to it closes, the kernel signals the child itself.
  // (PR_SET_PDEATHSIG would fire when the *thread* that forked the child exits.) The parent also
  // "dies" in this sense when it exec()s, and the watch ends when the child exec()s or closes
  // that descriptor.
  bool die_with_parent = false;
};

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
  //
  // Arguments that cannot be stored or called stop the build with one message each, before any
  // error from inside the library: "pass it with std::move" for a move-only argument (a
  // Connection, a unique_ptr) given as an lvalue, "cannot be called with" for a mismatch.
  template <class F, class... Args>
  explicit Process(F&& f, Args&&... args) requires(
      !std::is_same_v<std::remove_cvref_t<F>, ProcessOptions> &&
      !std::is_base_of_v<Process, std::remove_cvref_t<F>>)
      : Process(ProcessOptions{}, std::forward<F>(f), std::forward<Args>(args)...) {}

  // Process::Process(options, f, args...)
  //
  // As Process(f, args...), with a name and flags.
  template <class F, class... Args>
  Process(ProcessOptions options, F&& f, Args&&... args)
      : options_(std::move(options)),
        target_(detail::make_process_target(std::forward<F>(f), std::forward<Args>(args)...)) {
    name_default();
  }

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Process::~Process()
  //
  // Joins a started non-daemon child (as Python's interpreter does at exit); a daemon child
  // that has ended is reaped now, and one that still runs is reaped once it has ended by the
  // next reaping point (start(), join() or destruction of any Process, active_children()), and
  // terminated and reaped when the parent exits.
  virtual ~Process() {
    bool join = false;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      // Nothing to wait for: no child, or one that belongs to another process (this is a copy
      // of the object in a child, which can neither reap nor signal it).
      if (!child_ || closed_ || ::getpid() != parent_pid_) return;
      join = !options_.daemon;
    }
    try {
      if (join) (void)join_until(detail::never);
      (void)detail::ProcessRegistry::instance().reap_finished();
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
      parent_pid_ = ::getpid();
    }
    (void)detail::ProcessRegistry::instance().reap_finished();
    std::shared_ptr<detail::ChildRecord> child;
    pid_t pid;
    try {
      child = std::make_shared<detail::ChildRecord>(options_.daemon);
      if (options_.die_with_parent) child->open_lifeline();
      // Of the descriptors kept for children, a fork() from this thread leaves the new child its
      // lifeline only.
      detail::ChildFdTable::kept_in_child() = child->lifeline_read();
      pid = concur::fork();
      detail::ChildFdTable::kept_in_child() = -1;
    } catch (...) {
      detail::ChildFdTable::kept_in_child() = -1;
      std::lock_guard<std::mutex> hold(mutex_);
      started_ = false;  // nothing was started: start() may be tried again
      throw;
    }
    if (pid == 0) run_child(child->lifeline_read());  // never returns
    if (auto hook = detail::process_seams().after_fork.load(std::memory_order_relaxed)) hook();
    CONCUR_SCHEDULE_POINT("process.start.forked");  // started_, no child_ yet: calls refuse
    child->started(pid);
    try {
      detail::ProcessRegistry::instance().add(child);
    } catch (...) {  // out of memory: end the child that nobody could join
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      std::lock_guard<std::mutex> hold(mutex_);
      started_ = false;
      throw;
    }
    std::unique_ptr<detail::ProcessTarget> spent;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      child_ = std::move(child);
      spent = std::move(target_);
    }
    // `spent` goes here, outside the lock: the child has its own copy of the target now.
  }

  // Process::join()
  //
  // Waits until the child has ended and reaps it. Throws UsageError before start() (or while
  // another thread's start() has not yet recorded the child), after close(), and when called
  // from any process but the one that started the child (Python: "can only join a child
  // process"), such as the child itself on its copy of the object.
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
  // Whether the child has been started and has not ended (reaping it if it has). In the child,
  // on its own Process object, true (as in Python). Throws UsageError when called from another
  // process than the one that started the child.
  [[nodiscard]] bool is_alive() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (in_child_) return true;
    if (!started_) return false;
    if (::getpid() != parent_pid_) throw UsageError("can only test a child process");
    return child_ && !try_reap();
  }

  // Process::exitcode()
  //
  // Empty while the child runs (or before start(), or in any process but the one that started
  // the child); then its exit code as Python reports it.
  [[nodiscard]] std::optional<int> exitcode() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (!child_ || ::getpid() != parent_pid_ || !try_reap()) return std::nullopt;
    return detail::exitcode_of(*child_->status());
  }

  // Process::pid()
  //
  // The child's process id; empty before start(). In the child, on its own Process object, the
  // child's own id (as in Python).
  [[nodiscard]] std::optional<pid_t> pid() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_open();
    if (in_child_) return ::getpid();
    if (!child_) return std::nullopt;
    return child_->pid();
  }

  // Process::sentinel()
  //
  // Python's Process.sentinel: a descriptor that becomes readable when the child ends (its
  // pidfd), to wait for with connection::wait() beside Connections and sockets. Open until
  // close() or the object's end. Throws UsageError as join() does (before start(), or in another
  // process than the one that started it), std::system_error(ENOSYS) where the kernel has no
  // pidfds (before Linux 5.3).
  [[nodiscard]] int sentinel() {
    std::lock_guard<std::mutex> hold(mutex_);
    check_own_child("get the sentinel of");
    if (child_->pidfd() < 0) detail::throw_system_error(ENOSYS, "pidfd_open");
    return child_->pidfd();
  }

  // Process::terminate(), kill()
  //
  // Sends SIGTERM (SIGKILL) to the child; nothing once it has ended. Throws UsageError before
  // start() (or while another thread's start() has not yet recorded the child), after close(),
  // and when called from any process but the one that started the child: the child itself, on
  // its copy of the object, has no pid to signal. A pid of 0 or less never reaches kill(2).
  void terminate() { signal(SIGTERM); }
  void kill() { signal(SIGKILL); }

  // Process::close()
  //
  // Releases the Process's resources. Throws UsageError while the child runs; afterwards every
  // member but close() throws UsageError. Closing twice does nothing.
  void close() {
    std::lock_guard<std::mutex> hold(mutex_);
    if (closed_) return;
    if (child_ && ::getpid() == parent_pid_ && !try_reap()) {
      throw UsageError("cannot close a process while it is still running");
    }
    // The record (and its pidfd) lives on while a join() in another thread still waits on it.
    child_.reset();
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

  // Throws UsageError unless this process started a child that it may signal or reap now: the
  // object has started, from this process (Python records the parent's pid for this check),
  // and start() has recorded the child. Only then is there a child_, whose pid is positive and
  // our own child's. With mutex_ held.
  void check_own_child(const char* action) const {
    check_open();
    if (!started_) {
      throw UsageError(std::string("can only ") + action + " a started process");
    }
    if (::getpid() != parent_pid_) {
      throw UsageError(std::string("can only ") + action +
                       " a child process (this Process was started by another process)");
    }
    if (!child_) {
      // Another thread's start() is between fork() and recording the pid.
      throw UsageError(std::string("cannot ") + action + " a process that is still starting");
    }
  }

  // In the child: runs run() and exits, never returning to the parent's code.
  [[noreturn]] void run_child(int lifeline) noexcept {
    // Only this thread exists now; another thread of the parent may have held the mutex at
    // fork(), and this copy of it would then stay locked forever.
    new (&mutex_) std::mutex();
    in_child_ = true;
    int code = 0;
    try {
      if (options_.die_with_parent) detail::arm_lifeline(lifeline);
      detail::become_process_child(options_.name, options_.daemon, parent_pid_);
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
    detail::flush_standard_streams();
    ::_exit(code & 0xff);
  }

  // Reaps the child if it has ended, without waiting; true once it has. With mutex_ held and a
  // child_.
  bool try_reap() { return reaped(*child_); }

  // Reaps `child` if it has ended; true once it has. The registry then lets it go (a daemon
  // reaped here is not terminated at exit).
  static bool reaped(detail::ChildRecord& child) {
    if (!child.try_reap()) return false;
    detail::ProcessRegistry::instance().forget(&child);
    return true;
  }

  // Waits until the child ends or `deadline` passes, without holding mutex_ while it waits (so
  // that is_alive() and others answer meanwhile); true once it has ended and been reaped. The
  // wait holds its own reference to the child's record: a close() meanwhile cannot close the
  // pidfd it waits on.
  bool join_until(detail::steady_time deadline) {
    std::shared_ptr<detail::ChildRecord> child;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      check_own_child("join");
      child = child_;
    }
    if (!child->wait_until(deadline)) return false;
    (void)reaped(*child);
    (void)detail::ProcessRegistry::instance().reap_finished();  // a reaping point
    return true;
  }

  void signal(int number) {
    std::lock_guard<std::mutex> hold(mutex_);
    check_own_child(number == SIGKILL ? "kill" : "terminate");
    child_->signal(number);  // nothing once reaped: the pid may belong to someone else now
  }

  ProcessOptions options_;
  std::unique_ptr<detail::ProcessTarget> target_;
  std::mutex mutex_;
  bool started_ = false;
  bool closed_ = false;
  bool in_child_ = false;  // this is the child's copy of the object, in the child
  pid_t parent_pid_ = 0;   // the process that started the child
  std::shared_ptr<detail::ChildRecord> child_;  // once start() has recorded the child
  int child_code_ = 0;                          // in the child: the target's result
};

// active_children()
//
// Python's multiprocessing.active_children(): the children that Process objects of this process
// started and that are still running, as pids (Python returns the Process objects; here an
// object may be gone while its daemon child runs on). Reaps, as Python's does, every such child
// that has ended, including daemons whose Process objects are gone.
[[nodiscard]] inline std::vector<pid_t> active_children() {
  return detail::ProcessRegistry::instance().reap_finished();
}

// concur::mp
//
// Python's multiprocessing module: the names that clash with threading's live here (mp::Pool,
// and the process-shared primitives), and these aliases let `namespace mp = concur::mp;` read
// as `import multiprocessing as mp` does: mp::Process, mp::cpu_count(), mp::active_children().
namespace mp {
using concur::active_children;
using concur::cpu_count;
using concur::Process;

// mp::ProcessInfo
//
// A process as current_process() and parent_process() describe it (Python returns the Process
// object, or a _ParentProcess): its name, pid (also ident()) and daemon flag.
class ProcessInfo {
 public:
  ProcessInfo(std::string name, pid_t pid, bool daemon)
      : name_(std::move(name)), pid_(pid), daemon_(daemon) {}

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] pid_t ident() const noexcept { return pid_; }
  [[nodiscard]] bool daemon() const noexcept { return daemon_; }

  // ProcessInfo::is_alive()
  //
  // True for the calling process; for its parent, while the parent runs (a child whose parent
  // has ended is re-parented, so its parent's pid changes). Any other process (a description
  // kept by a later child) is asked with kill(pid, 0), which a reused pid can fool.
  [[nodiscard]] bool is_alive() const noexcept {
    if (pid_ == ::getpid() || pid_ == ::getppid()) return true;
    return ::kill(pid_, 0) == 0 || errno == EPERM;
  }

 private:
  std::string name_;
  pid_t pid_;
  bool daemon_;
};

// mp::current_process()
//
// Python's multiprocessing.current_process(): "MainProcess" in a program's first process; in a
// Process child, its Process's name and daemon flag. A child made by concur::fork() is described
// as its parent was, with its own pid (Python's os.fork() keeps the record too).
[[nodiscard]] inline ProcessInfo current_process() {
  const detail::ProcessIdentity& identity = detail::process_identity();
  return {identity.name, ::getpid(), identity.daemon};
}

// mp::parent_process()
//
// Python's multiprocessing.parent_process(): in a Process child, the process that started it
// (its name as it was current there, and its pid); nothing in a program's first process.
[[nodiscard]] inline std::optional<ProcessInfo> parent_process() {
  const detail::ProcessIdentity& identity = detail::process_identity();
  if (!identity.has_parent) return std::nullopt;
  return ProcessInfo(identity.parent_name, identity.parent_pid, false);
}
}  // namespace mp

}  // namespace concur

#endif  // CONCUR_PROCESS_HPP
