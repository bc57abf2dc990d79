// concur/detail/process_identity.hpp
//
// What mp::current_process() and mp::parent_process() report: the calling process's name and
// daemon flag, and the name and pid of the process that started it, kept as Python keeps them
// (multiprocessing.process._current_process and _parent_process). A program's first process is
// "MainProcess", with no parent; a Process child takes its Process object's name and flag, and
// its parent is the process that was current in the parent. A child made by a plain fork() keeps
// its parent's record, as Python's os.fork() does.
//
// Written once per process, in a Process child before run(), while only that thread exists;
// read by any thread after.

#ifndef CONCUR_DETAIL_PROCESS_IDENTITY_HPP
#define CONCUR_DETAIL_PROCESS_IDENTITY_HPP

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

namespace concur::detail {

struct ProcessIdentity {
  std::string name = "MainProcess";
  bool daemon = false;
  bool has_parent = false;
  std::string parent_name;
  pid_t parent_pid = 0;
};

// The N of Python's default name "Process-N": Processes constructed in this process, ever.
inline std::atomic<std::uint64_t>& process_counter() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter;
}

inline ProcessIdentity& process_identity() noexcept {
  static ProcessIdentity identity;
  return identity;
}

// In a Process child, before its run(): this process becomes `name`, started by `parent_pid`,
// which was the process current in the parent.
inline void become_process_child(std::string name, bool daemon, pid_t parent_pid) {
  ProcessIdentity& identity = process_identity();
  identity.parent_name = std::exchange(identity.name, std::move(name));
  identity.daemon = daemon;
  identity.has_parent = true;
  identity.parent_pid = parent_pid;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_IDENTITY_HPP
