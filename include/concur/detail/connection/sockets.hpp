// concur/detail/connection/sockets.hpp
//
// The socket seam of concur/listener.hpp: addresses in the two forms Python's
// multiprocessing.connection uses (an IPv4 host and port, a Unix socket path, which on Linux
// may name the abstract namespace with a leading NUL), and listening, accepting and connecting
// stream sockets, close-on-exec, retried on EINTR, errors as std::system_error.
//
// POSIX only (concur/listener.hpp says so at compile time elsewhere).

#ifndef CONCUR_DETAIL_CONNECTION_SOCKETS_HPP
#define CONCUR_DETAIL_CONNECTION_SOCKETS_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "concur/detail/posix_io.hpp"

namespace concur::detail {

// getaddrinfo's errors, which are not errno values, as a std::error_category.
class ResolverCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};
inline const std::error_category& resolver_category() noexcept {
  static const ResolverCategory category;
  return category;
}

// A socket address ready for bind(2) or connect(2).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const noexcept { return storage.ss_family; }
  sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
};

// `host` (a dotted quad, a name, or "" for every interface, as Python's bind(('', port)))
// and `port`, resolved to IPv4 as Python's AF_INET family does.
inline SocketAddress inet_address(const std::string& host, std::uint16_t port) {
  SocketAddress address;
  auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  address.length = sizeof(sockaddr_in);
  if (host.empty()) {
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    return address;
  }
  if (::inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) return address;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int status = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (status != 0) {
    if (status == EAI_SYSTEM) throw_errno(("getaddrinfo " + host).c_str());
    throw std::system_error(status, resolver_category(), "cannot resolve host " + host);
  }
  in->sin_addr = reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr;
  ::freeaddrinfo(found);
  return address;
}

// Whether a Unix socket path names Linux's abstract namespace (a leading NUL byte).
inline bool is_abstract_path(const std::string& path) noexcept {
  return !path.empty() && path[0] == '\0';
}

// A Unix socket at `path`; an abstract name is taken byte for byte, with no terminating NUL.
inline SocketAddress unix_address(const std::string& path) {
  SocketAddress address;
  auto* un = reinterpret_cast<sockaddr_un*>(&address.storage);
  un->sun_family = AF_UNIX;
  const bool abstract = is_abstract_path(path);
  if (path.empty()) throw std::invalid_argument("empty Unix socket path");
  if (!abstract && path.find('\0') != std::string::npos) {
    throw std::invalid_argument("Unix socket path with an embedded NUL byte");
  }
  if (path.size() + (abstract ? 0 : 1) > sizeof un->sun_path) {
    throw std::invalid_argument("Unix socket path longer than " +
                                std::to_string(sizeof un->sun_path - 1) + " bytes: " + path);
  }
  std::memcpy(un->sun_path, path.data(), path.size());
  address.length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return address;
}

// A new stream socket of `family`, close-on-exec, that never raises SIGPIPE.
inline UniqueFd stream_socket(int family) {
#if defined(SOCK_CLOEXEC)
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
#else
  UniqueFd fd(::socket(family, SOCK_STREAM, 0));
  if (!fd) throw_errno("socket");
  ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
#endif
  no_sigpipe_on_socket(fd.get());
  return fd;
}

// Sends small messages at once: a round trip of request and reply must not wait for Nagle's
// algorithm to meet a delayed acknowledgement. Nothing on the wire changes but the timing.
inline void no_delay(int fd, int family) noexcept {
  if (family != AF_INET) return;
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

// A socket bound to `address` and listening, with SO_REUSEADDR as Python sets it.
inline UniqueFd listening_socket(SocketAddress address, int backlog) {
  UniqueFd fd = stream_socket(address.family());
  if (address.family() == AF_INET) {
    const int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
      throw_errno("setsockopt(SO_REUSEADDR)");
    }
  }
  if (::bind(fd.get(), address.get(), address.length) != 0) throw_errno("bind");
  if (::listen(fd.get(), backlog) != 0) throw_errno("listen");
  return fd;
}

// The address a socket is bound to (its own end), or its peer's.
inline SocketAddress local_address(int fd) {
  SocketAddress address;
  address.length = sizeof address.storage;
  if (::getsockname(fd, address.get(), &address.length) != 0) throw_errno("getsockname");
  return address;
}

// Accepts one connection, close-on-exec; `peer` gets its address. Retries on EINTR and on
// ECONNABORTED (a client that gave up while queued is not the listener's failure).
inline UniqueFd accept_socket(int listener, SocketAddress& peer) {
  for (;;) {
    peer.length = sizeof peer.storage;
#if defined(SOCK_CLOEXEC) && defined(__linux__)
    const int fd = ::accept4(listener, peer.get(), &peer.length, SOCK_CLOEXEC);
#else
    const int fd = ::accept(listener, peer.get(), &peer.length);
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
    if (fd >= 0) {
      no_sigpipe_on_socket(fd);
      no_delay(fd, peer.family());
      return UniqueFd(fd);
    }
    if (errno != EINTR && errno != ECONNABORTED) throw_errno("accept");
  }
}

// A socket connected to `address`. A connect(2) interrupted by a signal goes on in the kernel:
// the wait for it to finish replaces a second connect, which would fail with EALREADY.
inline UniqueFd connected_socket(SocketAddress address) {
  UniqueFd fd = stream_socket(address.family());
  if (::connect(fd.get(), address.get(), address.length) != 0) {
    if (errno != EINTR && errno != EINPROGRESS) throw_errno("connect");
    wait_ready(fd.get(), POLLOUT, never);
    int error = 0;
    socklen_t size = sizeof error;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size) != 0) throw_errno("getsockopt");
    if (error != 0) throw std::system_error(error, std::generic_category(), "connect");
  }
  no_delay(fd.get(), address.family());
  return fd;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_CONNECTION_SOCKETS_HPP
