// POSIX test helpers for tests that fork: start a child running a lambda, collect how it ended
// (with or without a watchdog), and read the CPU a thread or process has used.

#ifndef CONCUR_TESTS_FORKED_HPP
#define CONCUR_TESTS_FORKED_HPP

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace concur_test {

// Forks a child that runs `body` and ends with _exit(0), or _exit(1) on an exception. The child
// never returns into the test runner.
template <class Body>
pid_t fork_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      body();
    } catch (...) {
      std::_Exit(1);
    }
    std::_Exit(0);
  }
  return pid;
}

// How a waitpid() status ended: the exit code, or 128 + the signal (as a shell reports it).
inline int decode_status(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits for child `pid` and returns how it ended (see decode_status), or -1 if it is no child.
inline int exit_status(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return decode_status(status);
}

// Waits for child `pid` as above, and stores the CPU seconds it used (user plus system) in `cpu`.
inline int exit_status(pid_t pid, double& cpu) {
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) != pid) return -1;
  cpu = double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
        double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  return decode_status(status);
}

// Waits for child `pid` for up to `limit`; if it has not ended by then it is killed and -1 is
// returned, so a hung child fails its test instead of hanging the suite.
inline int exit_status_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return decode_status(status);
}

// Polls `reached()` until it returns true, for up to `limit`; false if it never did. For the
// kill-at-random tests, whose random delay before a kill must count from when the child says it
// runs: a forked child can take longer to start (under ThreadSanitizer, on a busy machine) than
// the longest delay, and a child killed before it starts tests nothing.
template <class Reached>
bool poll_until(Reached reached, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!reached()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

}  // namespace concur_test

#endif  // CONCUR_TESTS_FORKED_HPP
