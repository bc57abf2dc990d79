// concur/detail/process_seams.hpp
//
// Test seams of concur::Process: points where a test can hold start() or join() at a known step
// of their protocol, or pretend that the kernel has no pidfds, so that a race that the OS would
// hit once in a million runs happens on every run. A program that sets none of them pays one
// relaxed load per seam.

#ifndef CONCUR_DETAIL_PROCESS_SEAMS_HPP
#define CONCUR_DETAIL_PROCESS_SEAMS_HPP

#include <atomic>

namespace concur::detail {

struct ProcessSeams {
  // Called by Process::start() in the parent, after fork() and before the child is recorded.
  std::atomic<void (*)()> after_fork{nullptr};
  // Called by Process::join() just before it waits on `pidfd` (-1 when it has none).
  std::atomic<void (*)(int pidfd)> before_wait{nullptr};
  // When true, Process opens no pidfd, as on a kernel before Linux 5.3.
  std::atomic<bool> no_pidfd{false};
};

inline ProcessSeams& process_seams() noexcept {
  static ProcessSeams seams;
  return seams;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_SEAMS_HPP
