// concur/detail/process_child.hpp
//
// ChildRecord: one child that concur::Process started, as the process that started it knows it:
// its pid, its pidfd, and, once reaped, its wait status. The Process object, every join() in
// progress and the process registry each hold a shared reference, so the pidfd is closed only
// once nobody can be waiting on it: a close() racing a join() can never leave the joiner polling
// a descriptor number that has been reused meanwhile.
//
// A record exists only for a child that fork() created, so its pid is always positive: no path
// through it can pass 0 or a negative pid to kill(2) or waitpid(2). Only the process that started
// the child may use the record (the Process checks); a copy of it inherited by a child is inert.

#ifndef CONCUR_DETAIL_PROCESS_CHILD_HPP
#define CONCUR_DETAIL_PROCESS_CHILD_HPP

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/detail/posix_io.hpp"
#include "concur/detail/process_seams.hpp"
#include "concur/detail/schedule.hpp"

namespace concur::detail {

// A pidfd for a child, or -1 where the kernel has none (before Linux 5.3). pidfd_open gives a
// close-on-exec descriptor.
inline int open_pidfd_now(pid_t pid) noexcept {
#if defined(__linux__) && defined(SYS_pidfd_open)
  if (process_seams().no_pidfd.load(std::memory_order_relaxed)) return -1;
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd >= 0 ? static_cast<int>(fd) : -1;
#else
  (void)pid;
  return -1;
#endif
}

// PidfdTable
//
// Every pidfd that this process's ChildRecords hold, so that a fork()ed child closes them all at
// once: close-on-exec does nothing across fork(), and a child that inherits the pidfds of its
// parent's other children (issue 12, item 8) holds descriptors it can never use, and keeps
// every one of those siblings' struct pid alive as long as it runs. A pthread_atfork() child
// handler closes them, so plain fork() and concur::fork() children are covered too.
//
// Opening a pidfd and recording it is one step under the table's mutex, and so is closing and
// forgetting it; the prepare handler takes the same mutex, so that fork() happens between such
// steps, never inside one. Otherwise a child could inherit a pidfd not yet recorded (it would
// leak one descriptor), or, worse, close in the child a number the parent had just closed and
// reused for something else. In the child, each record's copy of its pidfd is set to -1, so that
// it never closes the number again (the child may have reused it by then).
class PidfdTable {
 public:
  static PidfdTable& instance() {
    static PidfdTable* const table = new PidfdTable();  // never destroyed: children use it late
    return *table;
  }

  // Opens a pidfd for `pid` into `*slot` (-1 when there is none) and records the slot.
  void open(pid_t pid, int* slot) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    *slot = open_pidfd_now(pid);
    if (*slot < 0) return;
    try {
      slots_.push_back(slot);
    } catch (...) {  // out of memory: no pidfd, then (waits fall back to naps)
      ::close(*slot);
      *slot = -1;
    }
  }

  // Closes the pidfd in `*slot` and forgets the slot.
  void close(int* slot) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    if (*slot < 0) return;
    ::close(*slot);
    *slot = -1;
    slots_.erase(std::remove(slots_.begin(), slots_.end(), slot), slots_.end());
  }

 private:
  PidfdTable() {
    ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().close_all_in_child(); });
  }

  // In the child, with the mutex held by the prepare handler (in the forking thread, which is
  // this thread now). No allocation: clear() keeps the capacity.
  void close_all_in_child() noexcept {
    for (int* slot : slots_) {
      ::close(*slot);
      *slot = -1;
    }
    slots_.clear();
    mutex_.unlock();
  }

  std::mutex mutex_;
  std::vector<int*> slots_;  // guarded by mutex_: the records' pidfd members
};

// Python's exit code for a wait status: the exit status, or minus the signal number.
inline int exitcode_of(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return 255;
}

class ChildRecord {
 public:
  // A record for the child `pid` (> 0) just forked; opens its pidfd.
  ChildRecord(pid_t pid, bool daemon) noexcept : pid_(pid), daemon_(daemon) {
    PidfdTable::instance().open(pid, &pidfd_);
  }
  ~ChildRecord() {
    if (pidfd_ >= 0) PidfdTable::instance().close(&pidfd_);
  }
  ChildRecord(const ChildRecord&) = delete;
  ChildRecord& operator=(const ChildRecord&) = delete;

  pid_t pid() const noexcept { return pid_; }
  bool daemon() const noexcept { return daemon_; }

  // The wait status once reaped.
  std::optional<int> status() {
    std::lock_guard<std::mutex> hold(mutex_);
    return status_;
  }

  // Reaps the child if it has ended, without waiting; true once it has.
  bool try_reap() {
    std::lock_guard<std::mutex> hold(mutex_);
    return try_reap_locked();
  }

  // Sends signal `number` unless the child has been reaped (its pid may be someone else's then).
  // The check and the kill are one step under the mutex, which every reap here holds.
  void signal(int number) {
    std::lock_guard<std::mutex> hold(mutex_);
    if (!status_) ::kill(pid_, number);
  }

  // Waits until the child ends (and reaps it) or `deadline` passes; true once reaped. With a
  // pidfd, poll(2) sleeps until the child ends; without one, naps that grow to 50 ms, each ending
  // at the deadline at the latest. The caller holds a reference to the record, so the pidfd
  // stays open for the whole wait whatever other threads do with the Process.
  bool wait_until(steady_time deadline) {
    auto nap = std::chrono::milliseconds(1);
    for (;;) {
      if (try_reap()) return true;
      if (expired(deadline)) return false;
      if (auto hook = process_seams().before_wait.load(std::memory_order_relaxed)) hook(pidfd_);
      CONCUR_SCHEDULE_POINT("process.join.before_wait");
      if (pidfd_ >= 0) {
        if (!wait_ready(pidfd_, POLLIN, deadline)) return try_reap();
      } else if (deadline == never) {
        std::this_thread::sleep_for(nap);
      } else {
        std::this_thread::sleep_until(std::min(deadline, steady_clock::now() + nap));
      }
      nap = std::min(nap * 2, std::chrono::milliseconds(50));
    }
  }

 private:
  bool try_reap_locked() {
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
        throw_errno("waitpid");
      }
      return true;
    }
  }

  const pid_t pid_;
  const bool daemon_;
  // Fixed for the record's life in the process that started the child; closed with the record,
  // or in a fork()ed child by the PidfdTable (which sets this copy to -1).
  int pidfd_ = -1;
  std::mutex mutex_;
  std::optional<int> status_;  // guarded by mutex_: the wait status, once reaped
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_CHILD_HPP
