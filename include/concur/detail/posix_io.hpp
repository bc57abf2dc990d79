// concur/detail/posix_io.hpp
//
// The POSIX seam for processes and pipes: file descriptors owned by RAII, and reads, writes and
// waits that retry on EINTR (with an absolute deadline, so a retry never extends a timed wait),
// report errors as std::system_error, and never let SIGPIPE kill the process.
//
// POSIX only; concur/process.hpp and concur/connection.hpp say so at compile time elsewhere.

#ifndef CONCUR_DETAIL_POSIX_IO_HPP
#define CONCUR_DETAIL_POSIX_IO_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur's processes and pipes need a POSIX system"
#endif

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// UniqueFd
//
// Owns a file descriptor and closes it once.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }

  // Closes the descriptor now. close() is not retried on EINTR: on Linux the descriptor is
  // released either way, and a retry could close a descriptor another thread just opened.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Milliseconds until `deadline` for poll(2): -1 for never, 0 once passed, rounded up.
inline int poll_timeout(steady_time deadline) noexcept {
  if (deadline == never) return -1;
  const steady_time now = steady_clock::now();
  if (deadline <= now) return 0;  // before subtracting: min() - now would overflow
  const auto left = deadline - now;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(ms);
}

// Waits until `fd` is ready for `events` or `deadline` passes; true when ready (or in error or
// hung up: the following read or write reports that).
inline bool wait_ready(int fd, short events, steady_time deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int rc = ::poll(&entry, 1, poll_timeout(deadline));
    if (rc > 0) return true;
    if (rc == 0) {
      if (deadline == never || expired(deadline)) return false;
      continue;  // woke a little early (millisecond rounding): wait for the rest
    }
    if (errno != EINTR) throw_errno("poll");
  }
}

// poll(2) on every descriptor of `fds` until one is ready or `deadline` passes; retried on
// EINTR without extending the deadline. A descriptor that is not open throws EBADF.
inline void poll_all(std::vector<pollfd>& fds, steady_time deadline) {
  for (;;) {
    const int ready = ::poll(fds.data(), static_cast<nfds_t>(fds.size()), poll_timeout(deadline));
    if (ready >= 0) break;
    if (errno != EINTR) throw_errno("poll");
  }
  for (const pollfd& fd : fds) {
    if ((fd.revents & POLLNVAL) != 0) {
      throw std::system_error(EBADF, std::generic_category(), "wait() on a closed descriptor");
    }
  }
}

// The descriptors of `fds` that are ready to read (or at end of file, or hung up), waiting
// until `deadline` for one.
inline std::vector<int> ready_descriptors(std::span<const int> descriptors, steady_time deadline) {
  std::vector<pollfd> fds;
  fds.reserve(descriptors.size());
  for (int fd : descriptors) {
    if (fd < 0) throw std::invalid_argument("wait() on a negative file descriptor");
    fds.push_back(pollfd{fd, POLLIN, 0});
  }
  poll_all(fds, deadline);
  std::vector<int> ready;
  for (const pollfd& fd : fds) {
    if (fd.revents != 0) ready.push_back(fd.fd);
  }
  return ready;
}

// read(2), or recv(2) on a socket (which skips the file layer read(2) goes through), retried
// on EINTR; returns 0 at end of file.
inline std::size_t read_some(int fd, void* data, std::size_t size, bool is_socket = false) {
  for (;;) {
    const ssize_t n = is_socket ? ::recv(fd, data, size, 0) : ::read(fd, data, size);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) throw_errno(is_socket ? "recv" : "read");
  }
}

// Blocks SIGPIPE on the calling thread while alive, so that a write to a closed pipe reports
// EPIPE instead of killing the process; the SIGPIPE the kernel raised meanwhile is consumed
// before the old mask returns. (Sockets use MSG_NOSIGNAL instead.) Costs one system call, two
// when the mask has to be restored; nothing changes for a thread that already blocks SIGPIPE.
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    // With SIGPIPE unblocked until now, none can be pending for this thread: any SIGPIPE
    // pending after the write is the write's own.
    was_blocked_ = sigismember(&old_, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    if (was_blocked_) return;  // the caller's own mask: leave it, and its signals, alone
    if (got_epipe_) consume_pending_sigpipe();
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

  void saw_epipe() noexcept { got_epipe_ = true; }

 private:
  // Takes the SIGPIPE pending for this thread, if any, without blocking.
  void consume_pending_sigpipe() noexcept {
#if defined(__APPLE__)
    // macOS has no sigtimedwait: sigwait() returns at once when the signal is pending, so it
    // is only called when sigpending() shows one.
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      int taken = 0;
      ::sigwait(&pipe_, &taken);
    }
#else
    const timespec zero{0, 0};
    while (::sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
    }
#endif
  }

  sigset_t pipe_{};
  sigset_t old_{};
  bool was_blocked_ = false;
  bool got_epipe_ = false;
};

// The loop behind write_all(): writes every byte of `parts` (a writev(2) vector, modified in
// place) in as few system calls as the kernel allows and retries on EINTR. A socket is written
// with sendmsg(MSG_NOSIGNAL); a pipe with writev, and an EPIPE is reported to `guard` so that it
// consumes the SIGPIPE the kernel raised.
//
// Where send() has no MSG_NOSIGNAL (macOS), each socket is made with SO_NOSIGPIPE instead
// (no_sigpipe_on_socket()), which has the same effect for every send on it.
#if defined(MSG_NOSIGNAL)
inline constexpr int send_without_sigpipe = MSG_NOSIGNAL;
#else
inline constexpr int send_without_sigpipe = 0;
#endif

// Makes sends on socket `fd` report EPIPE without raising SIGPIPE where the system needs that
// said per socket (SO_NOSIGPIPE: macOS and the BSDs without MSG_NOSIGNAL); nothing elsewhere.
inline void no_sigpipe_on_socket(int fd) noexcept {
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#else
  (void)fd;
#endif
}

inline void write_all_to(int fd, iovec* parts, int count, bool is_socket, SigpipeGuard* guard) {
  while (count > 0) {
    ssize_t n;
    if (is_socket && count == 1) {
      n = ::send(fd, parts->iov_base, parts->iov_len, send_without_sigpipe);
    } else if (is_socket) {
      msghdr message{};
      message.msg_iov = parts;
      message.msg_iovlen = static_cast<decltype(message.msg_iovlen)>(count);
      n = ::sendmsg(fd, &message, send_without_sigpipe);
    } else {
      n = ::writev(fd, parts, count);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE && guard != nullptr) guard->saw_epipe();
      throw_errno(is_socket ? "sendmsg" : "writev");
    }
    auto done = static_cast<std::size_t>(n);
    while (count > 0 && done >= parts->iov_len) {
      done -= parts->iov_len;
      ++parts;
      --count;
    }
    if (count > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + done;
      parts->iov_len -= done;
    }
  }
}

// Set by concur::ignore_sigpipe(): SIGPIPE is ignored process-wide, and a pipe write needs no
// guard. Relaxed is enough: the flag only ever goes from false to true, after the sigaction
// that makes it true, and a writer that reads a stale false merely guards once more.
inline std::atomic<bool>& sigpipe_ignored() noexcept {
  static std::atomic<bool> ignored{false};
  return ignored;
}

// A message of a few hundred bytes or less: its parts (a header and a payload) copied into
// one buffer of this thread's cost less to send than the iovec array that describes them.
inline constexpr std::size_t small_send_bytes = 512;

// Gathers `parts` into `gathered` and points parts[0] at it, when they add up to
// small_send_bytes or less; returns whether it did.
inline bool gather_small(iovec* parts, int count, char (&gathered)[small_send_bytes]) noexcept {
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += parts[i].iov_len;
  if (total > small_send_bytes) return false;
  std::size_t at = 0;
  for (int i = 0; i < count; ++i) {
    if (parts[i].iov_len > 0) std::memcpy(gathered + at, parts[i].iov_base, parts[i].iov_len);
    at += parts[i].iov_len;
  }
  parts[0] = iovec{gathered, total};
  return true;
}

// Writes all of `parts` to `fd`; throws std::system_error (EPIPE when the reader is gone) and
// never lets a SIGPIPE reach the process.
inline void write_all(int fd, iovec* parts, int count, bool is_socket) {
  if (is_socket) {
    // A small message becomes one part, which send(2) takes without sendmsg's copying in of an
    // iovec array.
    char gathered[small_send_bytes];
    if (count > 1 && gather_small(parts, count, gathered)) count = 1;
    write_all_to(fd, parts, count, true, nullptr);  // MSG_NOSIGNAL: no signal to block
  } else if (sigpipe_ignored().load(std::memory_order_relaxed)) {
    write_all_to(fd, parts, count, false, nullptr);  // the kernel raises nothing to catch
  } else {
    SigpipeGuard guard;
    write_all_to(fd, parts, count, false, &guard);
  }
}

// Python's Pipe() ends as a connected AF_UNIX stream socket pair in `fds`, close-on-exec and
// safe from SIGPIPE; when not `duplex`, fds[0] only reads and fds[1] only writes (the other
// direction shut down in the kernel). Throws std::system_error, with nothing left open.
inline void pipe_sockets(int (&fds)[2], bool duplex) {
#if defined(SOCK_CLOEXEC)
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_errno("socketpair");
  }
#else
  // No SOCK_CLOEXEC (macOS): the flag is set just after; there is no atomic way there, so an
  // exec() in another thread between the two calls may inherit the descriptors.
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw_errno("socketpair");
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
  no_sigpipe_on_socket(fds[0]);
  no_sigpipe_on_socket(fds[1]);
  if (!duplex && (::shutdown(fds[0], SHUT_WR) != 0 || ::shutdown(fds[1], SHUT_RD) != 0)) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::system_error(error, std::generic_category(), "shutdown");
  }
}

// Whether `fd` is a socket (a duplex Pipe) rather than a pipe.
inline bool is_socket(int fd) noexcept {
  int type = 0;
  socklen_t length = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_POSIX_IO_HPP
