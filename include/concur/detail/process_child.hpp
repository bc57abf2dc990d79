// concur/detail/process_child.hpp
//
// ChildRecord: one child that concur::Process started, as the process that started it knows it:
// its pid, its pidfd, and, once reaped, its wait status. The Process object, every join() in
// progress and the process registry each hold a shared reference, so the pidfd is closed only
// once nobody can be waiting on it: a close() racing a join() can never leave the joiner polling
// a descriptor number that has been reused meanwhile.
//
// A record is shared only once started() has given it the pid that fork() returned, so its pid is
// always positive: no path through it can pass 0 or a negative pid to kill(2) or waitpid(2). Only
// the process that started the child may use the record (the Process checks); a copy of it
// inherited by a child is inert.

#ifndef CONCUR_DETAIL_PROCESS_CHILD_HPP
#define CONCUR_DETAIL_PROCESS_CHILD_HPP

#include <fcntl.h>
#include <poll.h>
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
#include <system_error>
#include <thread>
#include <vector>

#include "concur/detail/at_fork.hpp"
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

// ChildFdTable
//
// Every descriptor this process keeps for its children (each child's pidfd, and the write end of
// a die_with_parent child's lifeline), so that a fork()ed child closes them all at once:
// close-on-exec does nothing across fork(), and a child that inherits the pidfds of its parent's
// other children (issue 12, item 8) holds descriptors it can never use, while one that inherited
// a sibling's lifeline would keep that sibling alive after the parent's death. A pthread_atfork()
// child handler closes them, so plain fork() and concur::fork() children are covered too.
//
// Opening and recording a descriptor is one step under the table's mutex, and so is closing and
// forgetting it; the prepare handler takes the same mutex, so that fork() happens between such
// steps, never inside one. Otherwise a child could inherit a descriptor not yet recorded, or,
// worse, close in the child a number that the parent had just closed and reused for something
// else. The table records the address of each descriptor's slot (a ChildRecord member): in the
// child, each slot's copy is set to -1, so that the copy never closes the number again.
class ChildFdTable {
 public:
  static ChildFdTable& instance() {
    static ChildFdTable* const table = new ChildFdTable();  // never destroyed: children use it late
    return *table;
  }

  // The descriptor that a fork() from the calling thread leaves open in the child (the read end
  // of the lifeline of the die_with_parent child that this thread is starting), or -1.
  static int& kept_in_child() noexcept {
    static thread_local int fd = -1;
    return fd;
  }

  // Opens a pidfd for `pid` into `*slot` (-1 when there is none) and records the slot.
  void open_pidfd(pid_t pid, int* slot) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    *slot = open_pidfd_now(pid);
    record(slot);
  }

  // Makes a close-on-exec pipe into `*read` and `*write` and records both slots; throws
  // std::system_error when the system cannot.
  void open_pipe(int* read, int* write) {
    std::lock_guard<std::mutex> hold(mutex_);
    int ends[2];
#if defined(__APPLE__)
    // No pipe2() on macOS: the flags are set just after. This registry's mutex is held, and
    // concur's fork() takes it, so no fork() of concur's sees the ends without the flag.
    if (::pipe(ends) != 0) throw_errno("pipe");
    ::fcntl(ends[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(ends[1], F_SETFD, FD_CLOEXEC);
#else
    if (::pipe2(ends, O_CLOEXEC) != 0) throw_errno("pipe2");
#endif
    *read = ends[0];
    *write = ends[1];
    record(read);
    record(write);
    if (*read < 0 || *write < 0) {
      close_locked(read);
      close_locked(write);
      throw std::system_error(ENOMEM, std::generic_category(), "pipe2");
    }
  }

  // Closes the descriptor in `*slot` if this process recorded it (a copy inherited through
  // fork() is not this process's to close), and sets the slot to -1.
  void close(int* slot) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    close_locked(slot);
  }

 private:
  ChildFdTable() {
    at_fork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
            [] { instance().close_all_in_child(); });
  }

  // Records `slot` (with the mutex held); out of memory, closes it instead (a pidfd then falls
  // back to naps; a pipe is reported by open_pipe()).
  void record(int* slot) noexcept {
    if (*slot < 0) return;
    try {
      slots_.push_back(slot);
    } catch (...) {
      ::close(*slot);
      *slot = -1;
    }
  }

  void close_locked(int* slot) noexcept {
    const auto found = std::find(slots_.begin(), slots_.end(), slot);
    if (found != slots_.end()) {
      ::close(*slot);
      slots_.erase(found);
    }
    *slot = -1;
  }

  // In the child, with the mutex held by the prepare handler (in the forking thread, which is
  // this thread now). No allocation: clear() keeps the capacity.
  void close_all_in_child() noexcept {
    for (int* slot : slots_) {
      if (*slot == kept_in_child()) continue;  // the lifeline of the child being started
      ::close(*slot);
      *slot = -1;
    }
    slots_.clear();
    mutex_.unlock();
  }

  std::mutex mutex_;
  std::vector<int*> slots_;  // guarded by mutex_: the ChildRecords' descriptor members
};

// In a die_with_parent child, first thing: arms the lifeline's read end `fd` so that the kernel
// sends SIGKILL to this process when the parent process has died (the pipe's last writer, which
// only the parent held, is gone). Pipes signal their fasync readers when the last writer closes;
// F_SETSIG makes that signal SIGKILL instead of SIGIO. The interleavings: the parent dies before
// O_ASYNC is set, and poll() below sees the hang-up; it dies after, and the kernel signals.
// The read end is this child's own open file description (each child gets its own pipe), so
// F_SETOWN here changes no other process's watch. Linux only: elsewhere, nothing.
inline void arm_lifeline(int fd) noexcept {
#if defined(__linux__) && defined(F_SETSIG)
  if (fd < 0) return;
  ::fcntl(fd, F_SETOWN, ::getpid());
  ::fcntl(fd, F_SETSIG, SIGKILL);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_ASYNC);
  CONCUR_SCHEDULE_POINT("process.lifeline.armed");
  pollfd entry{fd, POLLIN, 0};
  if (::poll(&entry, 1, 0) > 0) ::kill(::getpid(), SIGKILL);  // the parent is gone already
#else
  (void)fd;
#endif
}

// Python's exit code for a wait status: the exit status, or minus the signal number.
inline int exitcode_of(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return 255;
}

class ChildRecord {
 public:
  // A record for a child about to be forked (started() tells its pid).
  explicit ChildRecord(bool daemon) noexcept : daemon_(daemon) {}
  ~ChildRecord() {
    ChildFdTable& table = ChildFdTable::instance();
    if (pidfd_ >= 0) table.close(&pidfd_);
    if (lifeline_read_ >= 0) table.close(&lifeline_read_);
    if (lifeline_write_ >= 0) table.close(&lifeline_write_);
  }
  ChildRecord(const ChildRecord&) = delete;
  ChildRecord& operator=(const ChildRecord&) = delete;

  // Before fork(), for a die_with_parent child: the lifeline, a pipe whose write end only this
  // process holds (the table closes it in every child), so that its read end, in the child, sees
  // end of file once this whole process has died, whichever thread started the child. (Linux's
  // PR_SET_PDEATHSIG fires when the forking *thread* exits.) Throws std::system_error.
  void open_lifeline() { ChildFdTable::instance().open_pipe(&lifeline_read_, &lifeline_write_); }

  // The read end of the lifeline, for the child to arm (-1 when there is none).
  int lifeline_read() const noexcept { return lifeline_read_; }

  // After fork(), in the parent: the child's pid (> 0); opens its pidfd and closes the parent's
  // copy of the lifeline's read end. Before any other thread can see the record.
  void started(pid_t pid) noexcept {
    pid_ = pid;
    ChildFdTable& table = ChildFdTable::instance();
    table.open_pidfd(pid, &pidfd_);
    if (lifeline_read_ >= 0) table.close(&lifeline_read_);
  }

  pid_t pid() const noexcept { return pid_; }
  bool daemon() const noexcept { return daemon_; }
  // The child's pidfd (readable once it has ended), or -1 where the kernel has none.
  int pidfd() const noexcept { return pidfd_; }

  // The wait status once reaped.
  std::optional<int> status() {
    std::lock_guard<std::mutex> hold(mutex_);
    return status_;
  }

  // Reaps the child if it has ended, without waiting; true once it has.
  bool try_reap() {
    CONCUR_SCHEDULE_POINT("process.reap.before_lock");
    std::lock_guard<std::mutex> hold(mutex_);
    return try_reap_locked();
  }

  // Sends signal `number` unless the child has been reaped (its pid may be someone else's then).
  // The check and the kill are one step under the mutex, which every reap here holds.
  void signal(int number) {
    CONCUR_SCHEDULE_POINT("process.signal.before_lock");
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

  pid_t pid_ = 0;  // set by started(), before the record is shared; > 0 from then on
  const bool daemon_;
  // Fixed for the record's life in the process that started the child; closed with the record,
  // or in a fork()ed child by the ChildFdTable (which sets this copy to -1).
  int pidfd_ = -1;
  int lifeline_read_ = -1;   // until started(); in the child, armed by the child
  int lifeline_write_ = -1;  // held by this process only, until the record goes
  std::mutex mutex_;
  std::optional<int> status_;  // guarded by mutex_: the wait status, once reaped
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_CHILD_HPP
