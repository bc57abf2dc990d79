// Linux test helper: the children of a process and their states, read from /proc, for tests
// that check that no zombie is left behind.

#ifndef CONCUR_TESTS_PROC_CHILDREN_HPP
#define CONCUR_TESTS_PROC_CHILDREN_HPP

#include <dirent.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace concur_test {

// The children of `parent` and their states ('Z' for a zombie), from /proc/PID/stat.
inline std::vector<std::pair<pid_t, char>> children_of(pid_t parent) {
  std::vector<std::pair<pid_t, char>> children;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return children;
  while (const dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream file(std::string("/proc/") + entry->d_name + "/stat");
    std::string stat;
    if (!std::getline(file, stat)) continue;       // gone meanwhile
    const std::size_t name_end = stat.rfind(')');  // the name may hold spaces and parentheses
    if (name_end == std::string::npos) continue;
    std::istringstream fields(stat.substr(name_end + 1));
    char state = '?';
    pid_t ppid = 0;
    if (fields >> state >> ppid && ppid == parent) {
      children.emplace_back(static_cast<pid_t>(std::atoi(entry->d_name)), state);
    }
  }
  ::closedir(proc);
  return children;
}

// Whether `pid`, a child of this process, is gone for good: reaped (waitpid gives ECHILD).
inline bool reaped(pid_t pid) {
  return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

}  // namespace concur_test

#endif  // CONCUR_TESTS_PROC_CHILDREN_HPP
