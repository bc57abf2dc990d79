// concur/detail/process_registry.hpp
//
// The children concur::Process started, as the parent must remember them: daemon children are
// terminated and reaped when the parent exits normally (Python's multiprocessing does the same
// from an atexit handler), and a daemon child whose Process object is gone is reaped at the
// latest then, and earlier whenever a new Process starts. There is no SIGCHLD handler: a
// process-wide signal handler would belong to the application, not to a library.

#ifndef CONCUR_DETAIL_PROCESS_REGISTRY_HPP
#define CONCUR_DETAIL_PROCESS_REGISTRY_HPP

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace concur::detail {

class ProcessRegistry {
 public:
  static ProcessRegistry& instance() {
    static ProcessRegistry* const registry = new ProcessRegistry();
    return *registry;
  }

  // A daemon child was started: terminate and reap it at exit unless it is joined first.
  void add_daemon(pid_t pid) {
    std::lock_guard<std::mutex> hold(mutex_);
    daemons_.push_back(pid);
  }

  // The daemon child was reaped by its Process object.
  void remove_daemon(pid_t pid) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    daemons_.erase(std::remove(daemons_.begin(), daemons_.end(), pid), daemons_.end());
  }

  // A daemon child's Process object is gone while the child may still run: the registry
  // reaps it (it stays a daemon, terminated at exit).
  void adopt(pid_t pid) {
    std::lock_guard<std::mutex> hold(mutex_);
    orphans_.push_back(pid);
  }

  // Reaps the adopted children that have exited; called when a new Process starts.
  void reap_orphans() noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    auto gone = [this](pid_t pid) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == 0) return false;  // still running
      daemons_.erase(std::remove(daemons_.begin(), daemons_.end(), pid), daemons_.end());
      return true;
    };
    orphans_.erase(std::remove_if(orphans_.begin(), orphans_.end(), gone), orphans_.end());
  }

 private:
  ProcessRegistry() {
    std::atexit([] { instance().terminate_daemons(); });
    // A fork()ed child has no children of its own yet, and the mutex may have been held.
    ::pthread_atfork(nullptr, nullptr, [] {
      ProcessRegistry& self = instance();
      new (&self.mutex_) std::mutex();
      self.daemons_.clear();
      self.orphans_.clear();
    });
  }

  // At normal exit: SIGTERM every daemon child still running, then reap them all.
  void terminate_daemons() noexcept {
    std::vector<pid_t> daemons;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      daemons.swap(daemons_);
      orphans_.clear();
    }
    for (pid_t pid : daemons) ::kill(pid, SIGTERM);
    for (pid_t pid : daemons) {
      int status = 0;
      while (::waitpid(pid, &status, 0) == -1 && errno == EINTR) {
      }
    }
  }

  std::mutex mutex_;
  std::vector<pid_t> daemons_;  // guarded by mutex_: started, not yet reaped
  std::vector<pid_t> orphans_;  // guarded by mutex_: daemons whose Process object is gone
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_REGISTRY_HPP
