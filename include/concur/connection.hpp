// concur/connection.hpp
//
// concur::Pipe and concur::Connection, Python's multiprocessing.Pipe and its Connection objects:
// message-oriented endpoints between processes (or threads), speaking Python's wire format.
//
//   auto [parent_end, child_end] = concur::Pipe();        // duplex: a Unix socket pair
//   concur::Process child([](concur::Connection& end) { end.send(std::string("hello")); },
//                         std::move(child_end));          // the child's end goes to the child
//   child.start();
//   std::string greeting = parent_end.recv<std::string>();
//
// Byte messages (send_bytes, recv_bytes, recv_bytes_into) use Python's framing: a 4-byte
// big-endian length, or -1 and then an 8-byte length for messages over 2 GiB, then the bytes.
// So a concur process and a Python process can exchange byte messages over one connection
// (Python's send()/recv() pickle; concur's typed send(x)/recv<T>() use concur/codec.hpp, and
// are for C++ on both ends). Empty messages are messages.
//
// Behaviour, after Python: wrong-direction use, use after close(), and a message longer than
// recv_bytes(maxlength) throw std::system_error (the latter also leaves the connection unfit
// for reading, as in Python); bad arguments to send_bytes throw std::invalid_argument;
// recv_bytes_into() with too small a buffer throws BufferTooShort carrying the whole message.
// Any error once part of a message has been read (a read error, EAGAIN on a non-blocking
// descriptor, bad_alloc) also leaves the connection unfit for reading: the stream is out of
// step. An error before the first byte of a message (EAGAIN on an idle non-blocking end) does
// not.
// When the other end has closed, the messages already sent are still received, then recv
// throws EOFError; an end of file inside a message throws std::system_error(EPROTO). send to a
// closed peer throws std::system_error(EPIPE), and the process is never killed by SIGPIPE.
// Every call retries on EINTR; poll(timeout) never waits past its deadline.
//
// A malformed or hostile message cannot make the receiver read out of bounds or allocate
// without bound: lengths are checked before anything is read, a message may not exceed
// max_message_size() (256 MiB unless set), and its buffer grows as its bytes arrive.
//
// Efficiency: a header and a payload go out in one writev/sendmsg call; the receiver reads
// into a small buffer of its own (4 KiB), so a stream of small messages costs one read for many
// of them, while most of a large payload is read straight into its destination. Both kinds of
// Pipe are Unix socket pairs, written with MSG_NOSIGNAL: safe from SIGPIPE at no extra cost
// (a one-way Pipe(false) is a socket pair with one direction shut down, where Python uses
// os.pipe(); on Linux a socket pair carries small messages as fast as a pipe and large ones
// faster). Only a descriptor given to Connection(fd) that is a real pipe pays for SIGPIPE
// safety: each send blocks SIGPIPE around its write (two more system calls), unless the
// program has called ignore_sigpipe().
//
// A Connection is not thread-safe: give each direction one user at a time (Python's is not
// either). Descriptors are created close-on-exec.
//
// Close-on-fork (concur goes beyond Python here, which has the same trap under fork): once one
// end of a Pipe has been closed in a process while the other stays open there, the open end
// talks to another process, and children forked afterwards (concur::fork(), Process) do not
// inherit it; if the closed end had been moved (into a Process's arguments), closing the open
// end also shuts the stream down for copies that children inherited earlier. So the natural
// pool works: for each worker, Pipe(), move the worker's end into its Process, start it, keep
// the parent's end; each worker reads until EOFError, which comes when the parent closes that
// worker's end. Ends whose peer is still open here (a lambda capturing an end by reference, an
// end passed in a Process's arguments) are inherited as before. To hand a child an end whose
// peer already went to another process (a pipeline), call set_close_on_fork(false) on it
// first. The rules and their reasons: concur/detail/close_on_fork.hpp.

#ifndef CONCUR_CONNECTION_HPP
#define CONCUR_CONNECTION_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/connection.hpp needs a POSIX system"
#endif

#include <poll.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "concur/codec.hpp"
#include "concur/detail/close_on_fork.hpp"
#include "concur/detail/connection/framing.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/posix_io.hpp"
#include "concur/errors.hpp"

namespace concur {

class Connection;
namespace detail {
class ReadDeadline;
struct ConnectionAccess;
}  // namespace detail

// Connection
//
// One end of a Pipe. Movable, not copyable; closes its descriptor when destroyed.
class Connection {
 public:
  // The default limit on one received message (see set_max_message_size()).
  static constexpr std::size_t default_max_message_size = std::size_t{256} << 20;

  // Connection::Connection()
  //
  // A closed connection.
  Connection() noexcept = default;

  // Connection::Connection(fd, readable, writable)
  //
  // Takes ownership of the open descriptor `fd` (a pipe end or a stream socket), as Python's
  // Connection(handle, readable, writable) does. A negative `fd`, or neither direction, throws
  // std::invalid_argument before anything is taken: a refused descriptor stays the caller's.
  explicit Connection(int fd, bool readable = true, bool writable = true)
      : fd_(checked_handle(fd, readable, writable)),
        readable_(readable),
        writable_(writable),
        socket_(detail::is_socket(fd)) {}

  // Connection::Connection(pipe_end, fd, readable, writable, link)
  //
  // For Pipe(): one end of a new pair, built in place (ends that were never moved matter to
  // the close-on-fork rules), linked to the end `link` names (the first end fills it in).
  struct pipe_end_t {
    detail::ForkNode* first = nullptr;
  };
  Connection(pipe_end_t& link, int fd, bool readable, bool writable)
      : Connection(fd, readable, writable) {
    if (link.first == nullptr) {
      link.first = fd_.node();
    } else {
      fd_.link_to(link.first);
    }
  }

  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&&) noexcept = default;

  // Connection::send_bytes(data, offset, size)
  //
  // Sends bytes [offset, offset + size) of `data` as one message (size defaults to the rest),
  // with Python's checks: a negative offset or size, or a range past the end, throws
  // std::invalid_argument.
  void send_bytes(std::string_view data, std::int64_t offset = 0,
                  std::optional<std::int64_t> size = std::nullopt) {
    check_writable();
    const auto length = static_cast<std::int64_t>(data.size());
    if (offset < 0) throw std::invalid_argument("offset is negative");
    if (length < offset) throw std::invalid_argument("buffer length < offset");
    const std::int64_t count = size ? *size : length - offset;
    if (count < 0) throw std::invalid_argument("size is negative");
    if (offset + count > length) throw std::invalid_argument("buffer length < offset + size");
    send_frame(data.data() + offset, static_cast<std::size_t>(count));
  }
  void send_bytes(std::span<const std::byte> data, std::int64_t offset = 0,
                  std::optional<std::int64_t> size = std::nullopt) {
    send_bytes(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), offset,
               size);
  }

  // Connection::recv_bytes(maxlength)
  //
  // Receives one message, waiting for it. Throws EOFError when the other end has closed and
  // nothing is left; std::invalid_argument for a negative maxlength; std::system_error when the
  // message is longer than `maxlength` (the connection is then unfit for reading).
  [[nodiscard]] std::string recv_bytes(std::optional<std::int64_t> maxlength = std::nullopt) {
    check_readable();
    if (maxlength && *maxlength < 0) throw std::invalid_argument("negative maxlength");
    std::string message;
    frame_taken_ = 0;
    try {
      const std::size_t length = read_header();
      if (maxlength && length > static_cast<std::uint64_t>(*maxlength)) {
        read_broken_ = true;
        throw std::system_error(EMSGSIZE, std::generic_category(), "bad message length");
      }
      if (buffer_end_ - buffer_begin_ >= length) {  // all of it is here: one copy
        message.assign(buffer_.data() + buffer_begin_, length);
        buffer_begin_ += length;
      } else {
        read_payload(message, length);
      }
    } catch (...) {
      broken_if_inside_frame();
      throw;
    }
    return message;
  }

  // Connection::recv_bytes_into(buffer, offset)
  //
  // Receives one message into `buffer` starting at `offset`; returns its length. When it does
  // not fit, throws BufferTooShort holding the whole message (nothing is lost).
  std::size_t recv_bytes_into(std::span<std::byte> buffer, std::int64_t offset = 0) {
    check_readable();
    if (offset < 0) throw std::invalid_argument("negative offset");
    if (offset > static_cast<std::int64_t>(buffer.size())) {
      throw std::invalid_argument("offset too large");
    }
    const std::size_t room = buffer.size() - static_cast<std::size_t>(offset);
    std::size_t length;
    std::string message;  // the whole message, when it does not fit
    frame_taken_ = 0;
    try {
      length = read_header();
      if (length > room) {
        read_payload(message, length);
      } else {
        read_exactly(reinterpret_cast<char*>(buffer.data()) + offset, length);
      }
    } catch (...) {
      broken_if_inside_frame();
      throw;
    }
    // Outside the try: the message was read whole, so the stream is still in step.
    if (length > room) throw BufferTooShort(std::move(message));
    return length;
  }
  std::size_t recv_bytes_into(std::string& buffer, std::int64_t offset = 0) {
    return recv_bytes_into(std::as_writable_bytes(std::span(buffer.data(), buffer.size())), offset);
  }

  // Connection::send(value)
  //
  // Sends `value` encoded by concur::codec (see concur/codec.hpp) as one message.
  template <class T>
  void send(const T& value) {
    const std::string bytes = encode(value);
    check_writable();
    send_frame(bytes.data(), bytes.size());
  }

  // Connection::recv<T>()
  //
  // Receives one message and decodes it as a T. A message that is not a well-formed T throws
  // std::system_error(EBADMSG).
  template <class T>
  [[nodiscard]] T recv() {
    const std::string bytes = recv_bytes();
    return decode<T>(bytes);
  }

  // Connection::poll(), poll(timeout)
  //
  // Whether a message (or the end of the stream) can be read now, or within `timeout` (a
  // negative timeout counts as zero). Python's poll() with no argument does not wait either.
  [[nodiscard]] bool poll() { return poll_until(detail::steady_time{}); }
  template <class Rep, class Period>
  [[nodiscard]] bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_until(detail::deadline_after(timeout));
  }

  // Connection::close(), closed()
  //
  // Closes the descriptor (the other end then sees end of file); every later use but close()
  // and closed() throws. Closing twice does nothing.
  void close() noexcept { fd_.reset(); }
  [[nodiscard]] bool closed() const noexcept { return !fd_; }

  // Connection::fileno(), readable(), writable()
  //
  // The descriptor (throws when closed) and the directions this end allows.
  [[nodiscard]] int fileno() const {
    check_open();
    return fd_.get();
  }
  [[nodiscard]] bool readable() const noexcept { return readable_; }
  [[nodiscard]] bool writable() const noexcept { return writable_; }

  // Connection::close_on_fork(), set_close_on_fork(close)
  //
  // Whether children forked from now on (concur::fork(), Process) close this end: by default,
  // once its Pipe peer has been closed in this process (see the header comment). The setter
  // overrides that for this end: true closes it in every later child; false never does (and
  // never shuts the stream down on close), for an end meant to go to a child although its
  // peer already lives in another process. In a child where a fork closed an end, using it
  // throws std::system_error(EBADF) saying so. Nothing happens on a closed Connection.
  [[nodiscard]] bool close_on_fork() const noexcept { return fd_.close_on_fork(); }
  void set_close_on_fork(bool close) noexcept { fd_.set_close_on_fork(close); }

  // Connection::max_message_size(), set_max_message_size()
  //
  // The longest message recv_bytes() and recv<T>() accept, a guard against a hostile or broken
  // peer (longer ones throw std::system_error(EMSGSIZE)).
  [[nodiscard]] std::size_t max_message_size() const noexcept { return max_message_size_; }
  void set_max_message_size(std::size_t bytes) noexcept { max_message_size_ = bytes; }

 private:
  friend class detail::ReadDeadline;
  friend struct detail::ConnectionAccess;

  // Runs before fd_ takes `fd`, so that a throw leaves the descriptor to the caller.
  static int checked_handle(int fd, bool readable, bool writable) {
    if (fd < 0) throw std::invalid_argument("invalid handle");
    if (!readable && !writable) {
      throw std::invalid_argument("at least one of readable and writable");
    }
    return fd;
  }

  void check_open() const {
    if (!fd_) {
      if (fd_.closed_by_fork()) {
        throw std::system_error(EBADF, std::generic_category(),
                                "handle was closed when this process was forked: its Pipe "
                                "peer lives in another process (see "
                                "Connection::set_close_on_fork)");
      }
      throw std::system_error(EBADF, std::generic_category(), "handle is closed");
    }
  }
  void check_readable() const {
    check_open();
    if (!readable_)
      throw std::system_error(EBADF, std::generic_category(), "connection is write-only");
    if (read_broken_) {
      throw std::system_error(EBADMSG, std::generic_category(),
                              "connection unreadable: an earlier message was refused or cut short");
    }
  }
  void check_writable() const {
    check_open();
    if (!writable_)
      throw std::system_error(EBADF, std::generic_category(), "connection is read-only");
  }

  // After an exception inside recv_bytes or recv_bytes_into: once part of a frame has been taken
  // from the stream (a read error, EAGAIN on a non-blocking descriptor, bad_alloc midway), the
  // next byte is not a header, so the connection refuses to read again (as Python's does after
  // a bad length). Before the first byte of a frame, the stream is in step and stays readable.
  void broken_if_inside_frame() noexcept {
    if (frame_taken_ > 0) read_broken_ = true;
  }

  // Python's framing (detail/connection/framing.hpp), header and payload in one system call.
  void send_frame(const char* data, std::size_t size) {
    detail::FrameHeader header = detail::frame_header(size);
    iovec parts[2] = {{header.bytes, header.size}, {const_cast<char*>(data), size}};
    detail::write_all(fd_.get(), parts, size > 0 ? 2 : 1, socket_);
  }

  // Reads a message header; returns the payload length. EOFError at a clean end of stream.
  std::size_t read_header() {
    unsigned char raw[8];
    if (!read_exactly_or_eof(reinterpret_cast<char*>(raw), 4)) throw EOFError();
    std::uint64_t length = detail::get_big_endian(raw, 4);
    if (length == detail::long_frame_marker) {  // -1: the 8-byte length follows
      read_exactly(reinterpret_cast<char*>(raw), 8);
      length = detail::get_big_endian(raw, 8);
    } else if (length > detail::short_frame_limit) {
      read_broken_ = true;
      throw std::system_error(EBADMSG, std::generic_category(), "negative message length");
    }
    if (length > max_message_size_) {
      read_broken_ = true;
      throw std::system_error(EMSGSIZE, std::generic_category(),
                              "message longer than max_message_size");
    }
    return static_cast<std::size_t>(length);
  }

  // Reads a payload of `length` bytes into `message`, growing it as bytes arrive (so a length
  // that lies costs at most what was actually sent).
  void read_payload(std::string& message, std::size_t length) {
    constexpr std::size_t step = std::size_t{1} << 20;
    message.clear();
    while (message.size() < length) {
      const std::size_t have = message.size();
      const std::size_t next = std::min(length, std::max(step, have * 2));
      message.resize(next);
      read_exactly(message.data() + have, next - have);
    }
  }

  void read_exactly(char* out, std::size_t size) {
    if (!read_exactly_or_eof(out, size) && size > 0) {
      read_broken_ = true;
      throw std::system_error(EPROTO, std::generic_category(), "got end of file during message");
    }
  }

  // Copies `size` bytes out, from the buffer first, then from the descriptor (straight into
  // `out` for large reads). False at end of file before the first byte; an end of file in the
  // middle throws.
  bool read_exactly_or_eof(char* out, std::size_t size) {
    std::size_t done = take_buffered(out, size);
    while (done < size) {
      const std::size_t want = size - done;
      std::size_t got;
      if (want >= buffer_capacity) {
        wait_readable();
        got = detail::read_some(fd_.get(), out + done, want, socket_);
        frame_taken_ += got;
      } else {
        fill_buffer();
        got = take_buffered(out + done, want);
      }
      if (got == 0) {
        if (done == 0) return false;
        read_broken_ = true;
        throw std::system_error(EPROTO, std::generic_category(), "got end of file during message");
      }
      done += got;
    }
    return true;
  }

  std::size_t take_buffered(char* out, std::size_t size) noexcept {
    const std::size_t n = std::min(size, buffer_end_ - buffer_begin_);
    if (n > 0) {
      std::memcpy(out, buffer_.data() + buffer_begin_, n);
      buffer_begin_ += n;
      frame_taken_ += n;
    }
    return n;
  }

  // One read into the (empty) buffer: whatever has arrived, up to its capacity.
  void fill_buffer() {
    if (buffer_.size() < buffer_capacity) buffer_.resize(buffer_capacity);
    // Empty before reading: if the read throws, no stale bytes may look unread.
    buffer_begin_ = 0;
    buffer_end_ = 0;
    wait_readable();
    buffer_end_ = detail::read_some(fd_.get(), buffer_.data(), buffer_capacity, socket_);
  }

  // Before each read(2) under a read deadline (detail::ReadDeadline: the handshakes of Listener
  // and Client): waits until bytes arrive, or throws TimeoutError once the deadline has passed.
  // Checked before every read, not once per message, so a peer that trickles a byte at a time
  // cannot stretch a message past the deadline. Without a deadline, nothing (one comparison).
  void wait_readable() {
    if (read_deadline_ != detail::never && !detail::wait_ready(fd_.get(), POLLIN, read_deadline_)) {
      throw TimeoutError("the peer sent nothing more before the deadline");
    }
  }

  bool poll_until(detail::steady_time deadline) {
    check_readable();
    if (buffer_end_ > buffer_begin_) return true;
    return detail::wait_ready(fd_.get(), POLLIN, deadline);
  }

  static constexpr std::size_t buffer_capacity = 4 * 1024;

  detail::ForkFd fd_;
  bool readable_ = false;
  bool writable_ = false;
  bool socket_ = false;
  bool read_broken_ = false;
  std::size_t frame_taken_ = 0;  // bytes of the current frame taken from the stream so far
  std::size_t max_message_size_ = default_max_message_size;
  std::vector<char> buffer_;  // received bytes not yet taken: [buffer_begin_, buffer_end_)
  std::size_t buffer_begin_ = 0;
  std::size_t buffer_end_ = 0;
  detail::steady_time read_deadline_ = detail::never;  // see wait_readable()
};

namespace detail {

// What connection::wait() and the Listener's handshake need from a Connection beyond its
// public members.
struct ConnectionAccess {
  // Whether bytes are already buffered in this process (poll(2) would not see them).
  static bool buffered(const Connection& connection) noexcept {
    return connection.buffer_end_ > connection.buffer_begin_;
  }

  // Sends two messages, each shorter than 2 GiB, in one write: the same bytes as two
  // send_bytes() calls, in one system call and (over TCP) usually one segment.
  static void send_two(Connection& connection, std::string_view first, std::string_view second) {
    connection.check_writable();
    if (first.size() > short_frame_limit || second.size() > short_frame_limit) {
      throw std::invalid_argument("send_two() is for messages under 2 GiB");
    }
    FrameHeader one = frame_header(first.size());
    FrameHeader two = frame_header(second.size());
    iovec parts[4] = {{one.bytes, one.size},
                      {const_cast<char*>(first.data()), first.size()},
                      {two.bytes, two.size},
                      {const_cast<char*>(second.data()), second.size()}};
    write_all(connection.fd_.get(), parts, 4, connection.socket_);
  }
};

// The connections of `connections` that can be read without blocking, waiting until `deadline`
// for one. Bytes buffered in a Connection count without a wait.
inline std::vector<Connection*> ready_connections(std::span<Connection* const> connections,
                                                  steady_time deadline) {
  std::vector<pollfd> fds;
  fds.reserve(connections.size());
  bool any_buffered = false;
  for (Connection* connection : connections) {
    if (connection == nullptr) throw std::invalid_argument("wait() on a null Connection");
    fds.push_back(pollfd{connection->fileno(), POLLIN, 0});
    any_buffered = any_buffered || ConnectionAccess::buffered(*connection);
  }
  poll_all(fds, any_buffered ? steady_time{} : deadline);
  std::vector<Connection*> ready;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0 || ConnectionAccess::buffered(*connections[i])) {
      ready.push_back(connections[i]);
    }
  }
  return ready;
}

}  // namespace detail

// Pipe(duplex)
//
// Python's multiprocessing.Pipe(): two connected ends. Duplex (the default): each end reads and
// writes (an AF_UNIX stream socket pair). Not duplex: the first end only reads, the second
// only writes: a socket pair too, with the other direction shut down in the kernel (so the
// descriptors refuse it as a pipe's would), which lets every send use MSG_NOSIGNAL instead of
// two more system calls to keep SIGPIPE away. Descriptors are close-on-exec; throws
// std::system_error on failure.
inline std::pair<Connection, Connection> Pipe(bool duplex = true) {
  int fds[2];
  detail::pipe_sockets(fds, duplex);
  // Built in place (piecewise, and returned as a prvalue): the ends start out never moved.
  Connection::pipe_end_t link;
  try {
    return std::pair<Connection, Connection>(std::piecewise_construct,
                                             std::forward_as_tuple(link, fds[0], true, duplex),
                                             std::forward_as_tuple(link, fds[1], duplex, true));
  } catch (...) {  // bad_alloc: an end that was not taken is still ours to close
    if (link.first == nullptr) ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
}

// ignore_sigpipe()
//
// Sets SIGPIPE's action to "ignore" for the whole process, as Python's interpreter does when it
// starts, and tells concur so: sends on a Connection(fd) made from a real pipe then skip the
// two system calls that otherwise keep SIGPIPE away from the process (see Connection; both
// kinds of Pipe() need neither). Afterwards every write to
// a closed pipe or socket in the process, concur's or not, fails with EPIPE instead of killing
// it; children started by fork() or Process inherit this. Do not give SIGPIPE another action
// later in a process that has called this: one-way sends would no longer be protected. Throws
// std::system_error if sigaction fails.
inline void ignore_sigpipe() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGPIPE, &action, nullptr) != 0) detail::throw_errno("sigaction");
  detail::sigpipe_ignored().store(true, std::memory_order_relaxed);
}

// mp::Pipe, mp::Connection (Python's multiprocessing.Pipe and Connection), and
// connection::Connection (Python's multiprocessing.connection.Connection).
namespace mp {
using concur::Connection;
using concur::Pipe;
}  // namespace mp

namespace connection {
using concur::Connection;

// connection::wait(connections), wait(connections, timeout)
//
// Python's multiprocessing.connection.wait(): waits until at least one of `connections` can be
// read without blocking (a message has arrived, or the peer has closed, so that recv throws
// EOFError), or until the timeout passes (a negative one counts as zero); returns those that
// can, in the order given, empty after a timeout. Throws std::system_error(EBADF) for a closed
// Connection, std::invalid_argument for a null pointer.
[[nodiscard]] inline std::vector<Connection*> wait(std::span<Connection* const> connections) {
  return detail::ready_connections(connections, detail::never);
}
template <class Rep, class Period>
[[nodiscard]] std::vector<Connection*> wait(std::span<Connection* const> connections,
                                            std::chrono::duration<Rep, Period> timeout) {
  return detail::ready_connections(connections, detail::deadline_after(timeout));
}

// connection::wait(descriptors), wait(descriptors, timeout)
//
// The same for file descriptors, as Python's wait() takes sockets and process sentinels: a
// Listener's fileno() (a client is waiting to be accepted), a raw socket or
// pipe. Returns the ready descriptors in the order given. Throws std::invalid_argument for a
// negative descriptor and std::system_error(EBADF) for one that is not open.
[[nodiscard]] inline std::vector<int> wait(std::span<const int> descriptors) {
  return detail::ready_descriptors(descriptors, detail::never);
}
template <class Rep, class Period>
[[nodiscard]] std::vector<int> wait(std::span<const int> descriptors,
                                    std::chrono::duration<Rep, Period> timeout) {
  return detail::ready_descriptors(descriptors, detail::deadline_after(timeout));
}
}  // namespace connection

}  // namespace concur

#endif  // CONCUR_CONNECTION_HPP
