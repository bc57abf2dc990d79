// concur/listener.hpp
//
// concur::connection::Listener and Client, Python's multiprocessing.connection.Listener and
// Client: connections between processes on one host (Unix sockets) or across hosts (TCP),
// with the mutual HMAC challenge that an authkey turns on, wire-compatible with every Python
// from 3.6 on. A concur process can be a peer of Python processes: a worker of a Python job
// server, or a server of Python clients.
//
//   namespace cx = concur::connection;
//   cx::Listener listener({"127.0.0.1", 6000}, {.authkey = "secret"});
//   cx::Connection conn = listener.accept();      // a Python Client(..., authkey=b"secret")
//   std::string job = conn.recv_bytes();
//   conn.send_bytes("done");
//
//   cx::Connection to_server = cx::Client({"10.0.0.7", 6000}, {.authkey = "secret"});
//
// What crosses the wire is Python's framing (concur/connection.hpp): byte messages are the
// common ground (send_bytes/recv_bytes); Python's send()/recv() pickle, which C++ does not
// read.
//
// The handshake, as CPython's connection.py does it. The side that accepts delivers a
// challenge and then answers one; the side that connects answers and then challenges, so each
// proves to the other that it knows the key, and the key never crosses the wire:
//   challenger -> "#CHALLENGE#" + "{sha256}" + 40 random bytes
//   answerer   -> "{sha256}" + HMAC-SHA256(key, "{sha256}" + the random bytes)
//   challenger -> "#WELCOME#", or "#FAILURE#" and AuthenticationError on both sides.
// Python 3.11 and older (the legacy form) challenge with 20 random bytes and no "{digest}",
// and answer with a bare 16-byte HMAC-MD5; both directions recognize that form by its length,
// so a concur Listener accepts old and new Python clients and a concur Client talks to old and
// new Python listeners. An answer may name md5, sha256, sha384, sha3_256 or sha3_384; the MAC
// covers the "{digest}" of the challenge, so a peer cannot downgrade it. Messages during the
// handshake are capped at 256 bytes, as in Python, before anything is allocated for them.
//
// Beyond Python: accept() and Client() bound the whole handshake by `handshake_timeout`
// (checked before every read, so a peer that trickles bytes cannot stretch it), and every
// failure of the peer during the handshake (a wrong key, garbage, silence, a hang-up) throws
// AuthenticationError, after which the Listener accepts again as before. Python's accept()
// waits forever for a silent client. TCP connections are made with TCP_NODELAY. A concur Client
// sends its own challenge with its answer, and a concur Listener then its welcome with its own
// answer: the same bytes in the same order as Python's, in four one-way trips instead of six
// between two concur ends (detail::accept_handshake() says why Python peers do not notice).
//
// Not encryption: the authkey authenticates the two ends, and the messages that follow travel
// in the clear, unauthenticated: use this on trusted networks, or inside a TLS or SSH tunnel.
//
// Needs OpenSSL's libcrypto for HMAC and random bytes (the only part of concur that needs a
// library): link the CMake target concur::listener. The umbrella header concur/concur.hpp does
// not include this one.

#ifndef CONCUR_LISTENER_HPP
#define CONCUR_LISTENER_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/listener.hpp needs a POSIX system"
#endif

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "concur/connection.hpp"
#include "concur/detail/connection/hmac.hpp"
#include "concur/detail/connection/sockets.hpp"
#include "concur/errors.hpp"

namespace concur::connection {

// Family
//
// The address families of Python's multiprocessing.connection on POSIX: 'AF_INET' (TCP over
// IPv4) and 'AF_UNIX'.
enum class Family { af_inet, af_unix };

// Address
//
// Where a Listener listens and a Client connects, in Python's forms: a host and a port
// (Python's tuple), or a Unix socket path (Python's str; a leading '\0' names Linux's abstract
// namespace, which needs no file and no unlinking). Construction checks nothing; binding or
// connecting reports a bad address (std::invalid_argument for a path that cannot be one,
// std::system_error for a host that cannot be resolved).
class Address {
 public:
  // Address::Address(host, port)
  //
  // TCP: `host` is a dotted quad, a name resolved to IPv4, or "" for every interface (binding
  // only); port 0 lets a Listener pick a free port (see Listener::address()).
  Address(std::string host, std::uint16_t port) noexcept
      : family_(Family::af_inet), text_(std::move(host)), port_(port) {}

  // Address::Address(path)
  //
  // A Unix socket. The path is kept byte for byte: std::string("\0name", 5) is abstract.
  Address(const char* path)  // NOLINT(google-explicit-constructor): as Python's str
      : family_(Family::af_unix),
        text_(path != nullptr ? path : throw std::invalid_argument("null path")) {}
  Address(std::string path) noexcept : family_(Family::af_unix), text_(std::move(path)) {}

  [[nodiscard]] Family family() const noexcept { return family_; }
  // The host of a TCP address (empty for a Unix one).
  [[nodiscard]] const std::string& host() const noexcept { return text_; }
  // The port of a TCP address (0 for a Unix one).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // The path of a Unix address (empty for a TCP one, and for an unnamed peer).
  [[nodiscard]] const std::string& path() const noexcept { return text_; }

  // Address::str()
  //
  // "host:port", or the path, with an abstract name's NUL shown as '@' (as ss(8) does).
  [[nodiscard]] std::string str() const {
    if (family_ == Family::af_inet) return text_ + ":" + std::to_string(port_);
    if (detail::is_abstract_path(text_)) return "@" + text_.substr(1);
    return text_;
  }

  friend bool operator==(const Address&, const Address&) = default;

 private:
  Family family_;
  std::string text_;  // the host, or the path
  std::uint16_t port_ = 0;
};

// ListenerOptions
//
// Python's Listener(address, family, backlog, authkey) arguments, and the handshake's time
// limit that Python lacks. `authkey` holds bytes; an empty optional turns authentication off
// (Python's None), while an empty string is a key like any other.
struct ListenerOptions {
  int backlog = 1;
  std::optional<std::string> authkey = std::nullopt;
  std::chrono::milliseconds handshake_timeout{10000};
};

// ClientOptions
//
// Python's Client(address, family, authkey) arguments, and the handshake's time limit.
struct ClientOptions {
  std::optional<std::string> authkey = std::nullopt;
  std::chrono::milliseconds handshake_timeout{10000};
};

}  // namespace concur::connection

namespace concur::detail {

inline constexpr std::string_view challenge_tag = "#CHALLENGE#";
inline constexpr std::string_view welcome = "#WELCOME#";
inline constexpr std::string_view failure = "#FAILURE#";
inline constexpr std::size_t challenge_bytes = 40;         // random bytes of a challenge
inline constexpr std::size_t legacy_challenge_bytes = 20;  // Python <= 3.11: the whole challenge
inline constexpr std::size_t legacy_answer_bytes = 16;     // Python <= 3.11: a bare HMAC-MD5
inline constexpr std::int64_t handshake_message_cap = 256;

// A challenge or an answer split into the digest it names and the rest. The digest is empty for
// the legacy forms, which are told apart by their lengths alone: every current message is
// longer than both.
struct NamedPayload {
  std::string_view digest;
  std::string_view payload;
};
inline NamedPayload split_digest_name(std::string_view message) {
  if (message.size() == legacy_challenge_bytes || message.size() == legacy_answer_bytes) {
    return {{}, message};
  }
  if (!message.empty() && message[0] == '{') {
    const std::size_t close = message.find('}', 1);
    if (close != std::string_view::npos && close <= detail::longest_digest_name + 1) {
      const std::string_view name = message.substr(1, close - 1);
      if (detail::find_digest(name) != nullptr) return {name, message.substr(close + 1)};
    }
  }
  throw AuthenticationError(
      "unsupported message length, missing digest prefix, or unsupported digest");
}

// The answer to a challenge: HMAC-MD5 alone for the legacy form, else "{digest}" and the HMAC
// with the digest the challenge names. Either covers the whole challenge.
inline std::string answer_to(std::string_view authkey, std::string_view challenge) {
  const std::string_view digest = split_digest_name(challenge).digest;
  if (digest.empty()) return detail::hmac("md5", authkey, challenge);
  return "{" + std::string(digest) + "}" + detail::hmac(digest, authkey, challenge);
}

// Checks an answer to `challenge`; AuthenticationError when it is wrong.
inline void check_answer(std::string_view authkey, std::string_view challenge,
                         std::string_view answer) {
  const NamedPayload named = split_digest_name(answer);
  const std::string_view digest = named.digest.empty() ? "md5" : named.digest;
  const std::string expected = detail::hmac(digest, authkey, challenge);
  if (expected.size() != named.payload.size()) {
    throw AuthenticationError("expected a " + std::string(digest) + " MAC of " +
                              std::to_string(expected.size()) + " bytes, got " +
                              std::to_string(named.payload.size()));
  }
  if (!detail::same_mac(expected, named.payload)) {
    throw AuthenticationError("digest received was wrong");
  }
}

// The steps both handshakes are made of. Each reads at most one message, capped at 256 bytes.

// A fresh challenge naming `digest_name`: "{name}" and 40 random bytes (without the tag).
inline std::string new_challenge(std::string_view digest_name) {
  return "{" + std::string(digest_name) + "}" + random_bytes(challenge_bytes);
}

// Reads the peer's challenge and returns it without "#CHALLENGE#" (either form).
inline std::string receive_challenge(Connection& connection) {
  std::string message = connection.recv_bytes(handshake_message_cap);
  if (!message.starts_with(challenge_tag)) {
    throw AuthenticationError("protocol error: expected a challenge");
  }
  message.erase(0, challenge_tag.size());
  if (message.size() < legacy_challenge_bytes) {
    throw AuthenticationError("challenge too short: " + std::to_string(message.size()) + " bytes");
  }
  return message;
}

// Reads the answer to `challenge` and checks it; a wrong answer is told "#FAILURE#" and throws
// AuthenticationError. Sends nothing when the answer is right.
inline void judge_answer(Connection& connection, std::string_view authkey,
                         std::string_view challenge) {
  const std::string answer = connection.recv_bytes(handshake_message_cap);
  try {
    check_answer(authkey, challenge, answer);
  } catch (const AuthenticationError&) {
    connection.send_bytes(failure);
    throw;
  }
}

// Reads the verdict on our answer: anything but "#WELCOME#" throws AuthenticationError.
inline void expect_welcome(Connection& connection) {
  if (connection.recv_bytes(handshake_message_cap) != welcome) {
    throw AuthenticationError("digest sent was rejected");
  }
}

}  // namespace concur::detail

namespace concur::connection {

// deliver_challenge(connection, authkey, digest_name)
//
// Python's deliver_challenge(): sends a challenge naming `digest_name` (md5, sha256, sha384,
// sha3_256 or sha3_384; anything else throws std::invalid_argument), checks the answer, and
// sends "#WELCOME#", or "#FAILURE#" and throws AuthenticationError. Blocks without a time
// limit (as Python's), and throws what the connection throws: EOFError when the peer hangs
// up, std::system_error for an answer over 256 bytes or a failed read or write.
inline void deliver_challenge(Connection& connection, std::string_view authkey,
                              std::string_view digest_name = "sha256") {
  if (detail::find_digest(digest_name) == nullptr) {
    throw std::invalid_argument("digest_name must be md5, sha256, sha384, sha3_256 or sha3_384");
  }
  const std::string challenge = detail::new_challenge(digest_name);
  connection.send_bytes(std::string(detail::challenge_tag) + challenge);
  detail::judge_answer(connection, authkey, challenge);
  connection.send_bytes(detail::welcome);
}

// answer_challenge(connection, authkey)
//
// Python's answer_challenge(): receives a challenge (current or legacy form), answers it, and
// throws AuthenticationError unless the peer then welcomes the answer. Blocks without a time
// limit; throws what the connection throws, as deliver_challenge() does.
inline void answer_challenge(Connection& connection, std::string_view authkey) {
  const std::string challenge = detail::receive_challenge(connection);
  connection.send_bytes(detail::answer_to(authkey, challenge));
  detail::expect_welcome(connection);
}

}  // namespace concur::connection

namespace concur::detail {

// ReadDeadline
//
// While alive, every read of `connection` waits at most until `deadline`, then throws
// TimeoutError (the connection is then unfit for reading if a message was cut short). Used by
// the handshakes of concur/listener.hpp, so that a silent or trickling peer cannot hold them.
class ReadDeadline {
 public:
  ReadDeadline(Connection& connection, steady_time deadline) noexcept
      : connection_(connection), saved_(connection.read_deadline_) {
    connection_.read_deadline_ = deadline;
  }
  ReadDeadline(const ReadDeadline&) = delete;
  ReadDeadline& operator=(const ReadDeadline&) = delete;
  ~ReadDeadline() { connection_.read_deadline_ = saved_; }

 private:
  Connection& connection_;
  steady_time saved_;
};

// The two handshakes of accept() and Client(). Each is Python's pair of steps, with the same
// bytes on the wire in the same order, but with fewer trips between the ends:
//
//   Python's order (6 one-way trips)       concur Client to concur Listener (4)
//   L: challenge                           L: challenge
//   C: answer                              C: answer + C's challenge        (one write)
//   L: welcome                             L: welcome + answer to C         (one write)
//   C: C's challenge                       C: welcome
//   L: answer to C
//   C: welcome
//
// Why this is compatible. The Client sends its challenge before it is welcomed: a Python
// Listener (any version) reads its answer with recv_bytes(), which takes exactly one message,
// sends its welcome, and then finds the challenge already waiting in the socket. If it refuses
// the answer it sends "#FAILURE#" and closes; the challenge (40 random bytes, no secret) was
// never read, and the Client reads the failure that arrived before the close (were the close
// to reset the connection because of that unread challenge, the Client would still end in
// AuthenticationError: every failure of the peer during the handshake does). The Listener
// sends its welcome with its answer only when the client's challenge is already buffered, which
// a Python Client never does (it waits for the welcome before it challenges); a Python Client
// gets Python's order exactly. A malformed early challenge is refused only after the welcome
// has gone, as in Python's order.

// Listener::accept()'s side: deliver a challenge, then answer the client's.
inline void accept_handshake(Connection& connection, std::string_view authkey) {
  const std::string ours = new_challenge("sha256");
  connection.send_bytes(std::string(challenge_tag) + ours);
  judge_answer(connection, authkey, ours);
  // Nothing buffered: a Python client, which waits for the welcome, or a concur client whose
  // challenge came in a later segment than its answer (stalled for 10 ms, say). Python's order
  // then serves both: the concur client reads the welcome, then the answer, whichever way they
  // were written, and the bytes are the same.
  if (!ConnectionAccess::buffered(connection)) {
    connection.send_bytes(welcome);
    connection::answer_challenge(connection, authkey);
    return;
  }
  std::string answer;
  try {
    answer = answer_to(authkey, receive_challenge(connection));
  } catch (const AuthenticationError&) {
    connection.send_bytes(welcome);  // its answer was right; its challenge is what failed
    throw;
  }
  ConnectionAccess::send_two(connection, welcome, answer);
  expect_welcome(connection);
}

// Client()'s side: answer the Listener's challenge, then deliver one, sent with the answer.
inline void connect_handshake(Connection& connection, std::string_view authkey) {
  const std::string answer = answer_to(authkey, receive_challenge(connection));
  const std::string ours = new_challenge("sha256");
  ConnectionAccess::send_two(connection, answer, std::string(challenge_tag) + ours);
  expect_welcome(connection);
  judge_answer(connection, authkey, ours);
  connection.send_bytes(welcome);
}

// Runs a handshake under a deadline; every failure that the peer can cause becomes an
// AuthenticationError that says what happened.
template <class Steps>
void authenticate(Connection& connection, std::chrono::milliseconds timeout, Steps steps) {
  try {
    ReadDeadline limit(connection, deadline_after(timeout));
    steps();
  } catch (const AuthenticationError&) {
    throw;
  } catch (const TimeoutError&) {
    throw AuthenticationError("the peer did not complete the handshake within " +
                              std::to_string(timeout.count()) + " ms");
  } catch (const EOFError&) {
    throw AuthenticationError("the peer hung up during the handshake");
  } catch (const std::system_error& error) {
    throw AuthenticationError(std::string("handshake failed: ") + error.what());
  }
}

inline SocketAddress socket_address(const connection::Address& address) {
  return address.family() == connection::Family::af_inet
             ? inet_address(address.host(), address.port())
             : unix_address(address.path());
}

// The Address of a socket address that accept() or getsockname() filled in.
inline connection::Address to_address(const SocketAddress& address) {
  if (address.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return connection::Address(text, ntohs(in->sin_port));
  }
  const auto* un = reinterpret_cast<const sockaddr_un*>(&address.storage);
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (address.length <= offset) return connection::Address(std::string());  // an unnamed peer
  std::string path(un->sun_path, address.length - offset);
  if (!is_abstract_path(path)) path.resize(std::strlen(path.c_str()));
  return connection::Address(std::move(path));
}

// A fresh Unix socket path in a new private directory (Python's arbitrary_address('AF_UNIX')
// for a Listener made without an address). Returns the directory and the path.
inline std::pair<std::string, std::string> fresh_unix_path() {
  const char* base = ::getenv("TMPDIR");
  std::string directory =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/concur-listener-XXXXXX";
  if (::mkdtemp(directory.data()) == nullptr) throw_errno("mkdtemp");
  return {directory, directory + "/socket"};
}

}  // namespace concur::detail

namespace concur::connection {

// Listener
//
// Python's multiprocessing.connection.Listener: a bound, listening socket whose accept()
// returns Connections (authenticated when an authkey is given). Movable, not copyable; the
// destructor closes it. Not thread-safe: accept from one thread at a time.
class Listener {
 public:
  // Listener::Listener()
  //
  // Listens on a Unix socket at a fresh path in a new private temporary directory (Python's
  // default family on POSIX), with no authentication; address() says where. Both are removed
  // by close().
  Listener() : Listener(Address(""), ListenerOptions{}, true) {}

  // Listener::Listener(address, options)
  //
  // Binds and listens (SO_REUSEADDR for TCP, as Python). Throws std::system_error when that
  // fails (EADDRINUSE for a taken port or an existing socket file, as Python's bind), and
  // std::invalid_argument for a negative handshake timeout or an impossible Unix path.
  explicit Listener(Address address, ListenerOptions options = {})
      : Listener(std::move(address), std::move(options), false) {}

  Listener(Listener&& other) noexcept
      : fd_(std::move(other.fd_)),
        address_(std::move(other.address_)),
        options_(std::move(other.options_)),
        last_accepted_(std::move(other.last_accepted_)),
        unlink_(std::exchange(other.unlink_, false)),
        directory_(std::exchange(other.directory_, {})) {}
  Listener& operator=(Listener&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::move(other.fd_);
      address_ = std::move(other.address_);
      options_ = std::move(other.options_);
      last_accepted_ = std::move(other.last_accepted_);
      unlink_ = std::exchange(other.unlink_, false);
      directory_ = std::exchange(other.directory_, {});
    }
    return *this;
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() { close(); }

  // Listener::accept()
  //
  // Waits for a connection and returns it; with an authkey, first delivers a challenge and
  // answers the peer's, within handshake_timeout. Throws AuthenticationError when the handshake
  // fails in any way (the connection is closed and this Listener accepts again as before), and
  // std::system_error when the Listener is closed or accept(2) fails.
  Connection accept() {
    if (!fd_) throw std::system_error(EBADF, std::generic_category(), "listener is closed");
    detail::SocketAddress peer;
    detail::UniqueFd fd = detail::accept_socket(fd_.get(), peer);
    last_accepted_ = detail::to_address(peer);
    Connection connection(fd.get());
    fd.release();
    if (options_.authkey) {
      const std::string& key = *options_.authkey;
      detail::authenticate(connection, options_.handshake_timeout,
                           [&] { detail::accept_handshake(connection, key); });
    }
    return connection;
  }

  // Listener::close()
  //
  // Stops listening, and removes the socket file of a Unix address (not an abstract one) and
  // the directory that Listener() made. Idempotent.
  void close() noexcept {
    if (!fd_) return;
    fd_.reset();
    if (unlink_) ::unlink(address_.path().c_str());
    if (!directory_.empty()) ::rmdir(directory_.c_str());
    unlink_ = false;
    directory_.clear();
  }

  // Listener::address()
  //
  // The bound address: for TCP, the host as bound and the port chosen (when 0 was asked).
  [[nodiscard]] const Address& address() const noexcept { return address_; }

  // Listener::last_accepted()
  //
  // The peer of the last connection accepted (empty before the first; an unnamed Unix peer
  // has an empty path).
  [[nodiscard]] const std::optional<Address>& last_accepted() const noexcept {
    return last_accepted_;
  }

  // Listener::fileno()
  //
  // The listening socket, to wait for clients with poll(2); -1 once closed.
  [[nodiscard]] int fileno() const noexcept { return fd_.get(); }

 private:
  Listener(Address address, ListenerOptions options, bool fresh_path)
      : address_(std::move(address)), options_(std::move(options)) {
    if (options_.handshake_timeout.count() < 0) {
      throw std::invalid_argument("handshake_timeout is negative");
    }
    if (fresh_path) {
      auto [directory, path] = detail::fresh_unix_path();
      directory_ = directory;
      address_ = Address(path);
    }
    try {
      fd_ = detail::listening_socket(detail::socket_address(address_), options_.backlog);
      if (address_.family() == Family::af_inet) {
        address_ = detail::to_address(detail::local_address(fd_.get()));
      } else {
        unlink_ = !detail::is_abstract_path(address_.path());
      }
    } catch (...) {
      if (!directory_.empty()) ::rmdir(directory_.c_str());
      throw;
    }
  }

  detail::UniqueFd fd_;
  Address address_;
  ListenerOptions options_;
  std::optional<Address> last_accepted_;
  bool unlink_ = false;    // a socket file this Listener made
  std::string directory_;  // the directory Listener() made
};

// Client(address, options)
//
// Python's multiprocessing.connection.Client(): connects to a Listener (concur's or Python's)
// and returns the Connection; with an authkey, first answers the Listener's challenge and then
// delivers one, within handshake_timeout. Throws std::system_error when connecting fails
// (ECONNREFUSED when nobody listens, ENOENT for a missing socket file), std::invalid_argument
// for an impossible Unix path or a negative timeout, AuthenticationError when the handshake
// fails in any way.
inline Connection Client(const Address& address, ClientOptions options = {}) {
  if (options.handshake_timeout.count() < 0) {
    throw std::invalid_argument("handshake_timeout is negative");
  }
  detail::UniqueFd fd = detail::connected_socket(detail::socket_address(address));
  Connection connection(fd.get());
  fd.release();
  if (options.authkey) {
    const std::string& key = *options.authkey;
    detail::authenticate(connection, options.handshake_timeout,
                         [&] { detail::connect_handshake(connection, key); });
  }
  return connection;
}

}  // namespace concur::connection

#endif  // CONCUR_LISTENER_HPP
