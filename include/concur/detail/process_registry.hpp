// concur/detail/process_registry.hpp
//
// The children concur::Process started, as the parent must remember them: the registry holds a
// reference to every child's record until the child is reaped. That lets it reap finished
// children whose Process objects are gone (Python's multiprocessing keeps the same list, and
// reaps it in active_children() and at each start()), list the running ones
// (concur::active_children()), and terminate and reap daemon children when the parent exits
// normally (Python does so from an atexit handler). Python then waits for them without a limit;
// concur sends SIGKILL to those still running after a grace period of 1 s (daemon_grace), so
// that a daemon that ignores or handles SIGTERM slowly cannot hang its parent's exit. There is no
// SIGCHLD handler: a process-wide signal handler would belong to the application, not to a library.
//
// Reaping points: Process::start(), active_children(), the end of every join(), and the
// destruction of every Process object. Between them, a finished child whose Process object is
// gone stays a zombie; one syscall (waitid with WNOWAIT) tells whether any child has ended, so
// these points cost nothing when none has.
//
// Lock order: a Process's mutex, then the registry's, then a record's (the registry reaps under
// its mutex; a Process tells the registry to forget a child after the record's mutex is released).

#ifndef CONCUR_DETAIL_PROCESS_REGISTRY_HPP
#define CONCUR_DETAIL_PROCESS_REGISTRY_HPP

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/process_child.hpp"

namespace concur::detail {

class ProcessRegistry {
 public:
  // How long daemon children have, after the SIGTERM sent at the parent's normal exit, before
  // SIGKILL ends them.
  static constexpr std::chrono::seconds daemon_grace{1};

  static ProcessRegistry& instance() {
    static ProcessRegistry* const registry = new ProcessRegistry();  // children use it late
    return *registry;
  }

  // A child was started: the registry holds it until it is reaped.
  void add(std::shared_ptr<ChildRecord> child) {
    std::lock_guard<std::mutex> hold(mutex_);
    drop_if_forked();
    children_.push_back(std::move(child));
  }

  // The child was reaped by its Process: the registry lets it go.
  void forget(const ChildRecord* child) noexcept {
    std::shared_ptr<ChildRecord> last;  // released after the mutex: it may close a pidfd
    std::lock_guard<std::mutex> hold(mutex_);
    drop_if_forked();
    const auto found = std::find_if(children_.begin(), children_.end(),
                                    [child](const auto& held) { return held.get() == child; });
    if (found == children_.end()) return;
    last = std::move(*found);
    children_.erase(found);
  }

  // Reaps every registered child that has ended; returns the pids of those still running.
  std::vector<pid_t> reap_finished() {
    std::vector<std::shared_ptr<ChildRecord>> ended;  // released after the mutex
    std::vector<pid_t> running;
    std::lock_guard<std::mutex> hold(mutex_);
    drop_if_forked();
    CONCUR_SCHEDULE_POINT("process.registry.reap");
    const bool scan = any_child_ended();
    running.reserve(children_.size());
    for (auto& child : children_) {
      if (scan && reap_quietly(*child)) {
        ended.push_back(std::move(child));
      } else {
        running.push_back(child->pid());
      }
    }
    std::erase(children_, nullptr);
    return running;
  }

 private:
  ProcessRegistry() : owner_(::getpid()) {
    std::atexit([] { instance().terminate_daemons(); });
    // fork() never happens while another thread holds the mutex (the child would inherit it
    // locked); in the child, the registry's children are the parent's, dropped on first use.
    at_fork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
            [] { instance().mutex_.unlock(); });
  }

  // In a fork()ed child, the list holds the parent's children: drop them (their pidfds were
  // closed at fork by the ChildFdTable). Not done in the atfork handler itself, where dropping a
  // record could take the ChildFdTable's mutex while its prepare handler still holds it.
  void drop_if_forked() noexcept {
    if (owner_ == ::getpid()) return;
    owner_ = ::getpid();
    children_.clear();
  }

  // Whether any child of this process has ended and waits to be reaped (one system call, which
  // reaps nothing); true when unsure.
  static bool any_child_ended() noexcept {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno != ECHILD;
    return info.si_pid != 0;
  }

  static bool reap_quietly(ChildRecord& child) noexcept {
    try {
      return child.try_reap();
    } catch (...) {  // waitpid failed for another reason than EINTR or ECHILD: try again later
      return false;
    }
  }

  // At normal exit: SIGTERM every daemon child still running; SIGKILL those still running after
  // daemon_grace; reap them all. Python sends SIGTERM and then waits without a limit, so that a
  // daemon that ignores SIGTERM hangs its parent's exit forever.
  void terminate_daemons() noexcept {
    std::vector<std::shared_ptr<ChildRecord>> daemons;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      drop_if_forked();
      for (auto& child : children_) {
        if (child->daemon()) daemons.push_back(child);
      }
    }
    for (auto& child : daemons) child->signal(SIGTERM);
    const steady_time grace_over = steady_clock::now() + daemon_grace;
    for (auto& child : daemons) {
      try {
        if (!child->wait_until(grace_over)) {
          child->signal(SIGKILL);
          (void)child->wait_until(never);
        }
      } catch (...) {
      }
    }
  }

  std::mutex mutex_;
  pid_t owner_;                                         // guarded by mutex_
  std::vector<std::shared_ptr<ChildRecord>> children_;  // guarded by mutex_: not yet reaped
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_REGISTRY_HPP
