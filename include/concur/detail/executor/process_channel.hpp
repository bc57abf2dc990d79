// concur/detail/executor/process_channel.hpp
//
// The parent's side of a process pool's conversation with one worker, below the protocol
// (process_protocol.hpp) and above the socket: where results go (TaskSink), what waits to be
// sent (PoolJob), and the non-blocking reads and writes of framed batches that the pool's I/O
// thread does (process_worker.hpp). Frames use Python's Connection framing: a 4-byte big-endian
// length, or -1 and an 8-byte length.
//
// POSIX only.

#ifndef CONCUR_DETAIL_EXECUTOR_PROCESS_CHANNEL_HPP
#define CONCUR_DETAIL_EXECUTOR_PROCESS_CHANNEL_HPP

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "concur/detail/connection/framing.hpp"
#include "concur/detail/executor/block_cache.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/detail/posix_io.hpp"

namespace concur::detail {

// TaskSink
//
// Where the results of queued tasks go; one sink may take many tasks (a map's chunks), told
// apart by `slot`. deliver() and fail() run on the I/O thread, each task's exactly once.
class TaskSink {
 public:
  virtual ~TaskSink() = default;
  // Called (under the pool's mutex) just before the task is sent: false drops it (a Future
  // cancelled meanwhile).
  virtual bool start(std::size_t slot) {
    (void)slot;
    return true;
  }
  // The task's results: the payload of a result record.
  virtual void deliver(std::size_t slot, std::string_view payload) = 0;
  // The task failed: its exception, or BrokenProcessPool.
  virtual void fail(std::size_t slot, const TaskFailure& failure) = 0;
  // The task was taken off the queue before it ran (shutdown with cancel_futures).
  virtual void cancel(std::size_t slot) {
    TaskFailure failure;
    failure.kind = TaskFailure::Kind::cancelled;
    fail(slot, failure);
  }
};

// A queued task.
struct PoolJob {
  std::shared_ptr<TaskSink> sink;
  std::size_t slot = 0;
  TaskCall call;
};

// Buffers larger than this are freed once empty, so that one huge message does not pin its
// memory for the pool's life.
inline constexpr std::size_t kept_buffer = std::size_t{4} << 20;

// Bytes read from a worker: [begin, end) not yet handled. A big buffer (a chunk's results
// arrive as one frame of megabytes) comes from the pools' BlockCache and goes back to it when
// the buffer grows again, empties or is destroyed: a new pool's first big map then reads into
// memory already backed, not fresh pages (block_cache.hpp).
struct InBuffer {
  // Held, not looked up each time: a pool destroyed during static destruction must not reach
  // for the cache's function-local static then.
  const std::shared_ptr<BlockCache> blocks = BlockCache::shared();
  Bytes data;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t capacity = 0;

  InBuffer() = default;
  InBuffer(const InBuffer&) = delete;
  InBuffer& operator=(const InBuffer&) = delete;
  ~InBuffer() { release(); }

  // Gives the buffer back (to the cache, when it came from there).
  void release() noexcept {
    blocks->give(std::move(data), capacity);  // leaves data empty
    capacity = 0;
    begin = end = 0;
  }

  // Makes room for `more` bytes after end: moves the unhandled bytes to the front, or grows.
  void reserve(std::size_t more) {
    if (capacity - end >= more) return;
    const std::size_t used = end - begin;
    if (begin > 0 && capacity - used >= more) {  // a partial frame, moved at most once
      std::memmove(data.get(), data.get() + begin, used);
    } else {
      const std::size_t grown = std::max(capacity * 2, used + more);
      std::size_t grown_to = grown;
      Bytes bigger = blocks->take(grown_to);  // not zeroed; huge pages when big
      if (used > 0) std::memcpy(bigger.get(), data.get() + begin, used);
      blocks->give(std::exchange(data, std::move(bigger)), capacity);
      capacity = grown_to;
    }
    begin = 0;
    end = used;
  }
};

// Bytes waiting to go to a worker: frames written into a buffer of their own (headers, small
// payloads), and big payloads sent from where they lie (a map's shared block), not copied.
using OutPiece = SharedBytes;

// Payloads at least this big are sent from where they lie rather than copied.
inline constexpr std::size_t sent_in_place = std::size_t{64} << 10;

// Sends what the socket takes now of `out` (from `done` bytes into its first piece), without
// blocking, many pieces to a call (sendmsg); drops the pieces sent. False when the peer is gone.
inline bool send_pieces(int fd, std::deque<OutPiece>& out, std::size_t& done) noexcept {
  constexpr std::size_t most = 64;
  while (!out.empty()) {
    iovec parts[most];
    std::size_t n = 0;
    for (auto it = out.begin(); it != out.end() && n < most; ++it, ++n) {
      std::string_view bytes = it->bytes();
      if (n == 0) bytes.remove_prefix(done);
      parts[n].iov_base = const_cast<char*>(bytes.data());
      parts[n].iov_len = bytes.size();
    }
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = n;
    const ssize_t sent = ::sendmsg(fd, &message, MSG_DONTWAIT | send_without_sigpipe);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      return false;
    }
    auto left = static_cast<std::size_t>(sent);
    while (!out.empty()) {
      const std::size_t size = out.front().bytes().size() - done;
      if (left < size) {
        done += left;
        break;
      }
      left -= size;
      done = 0;
      out.pop_front();
    }
  }
  done = 0;
  return true;
}

// Sends what the socket takes now of out[done, size), without blocking; clears `out` once it is
// all sent. False when the peer is gone.
inline bool send_available(int fd, std::string& out, std::size_t& done) noexcept {
  while (done < out.size()) {
    const ssize_t n =
        ::send(fd, out.data() + done, out.size() - done, MSG_DONTWAIT | send_without_sigpipe);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
  out.clear();
  if (out.capacity() > kept_buffer) std::string().swap(out);  // a huge chunk went out
  done = 0;
  return true;
}

// Reads what has arrived into the room `in` has, without blocking; `filled` tells whether it
// filled that room, so that more may be waiting: the caller handles the whole frames first and
// reads again. So the buffer grows only for a frame bigger than it, not to drain the socket
// (which holds up to 4 MiB). The room is the whole buffer, or what the partial frame at its
// end still needs (for_each_frame makes that); none only when a frame's header is cut, and
// then 64 KiB are made. False at end of file (or an error such as ECONNRESET: the peer is gone
// either way).
inline bool recv_available(int fd, InBuffer& in, bool& filled) {
  filled = false;
  if (in.end == in.capacity) in.reserve(64 * 1024);
  for (;;) {
    const ssize_t n = ::recv(fd, in.data.get() + in.end, in.capacity - in.end, MSG_DONTWAIT);
    if (n > 0) {
      filled = static_cast<std::size_t>(n) == in.capacity - in.end;
      in.end += static_cast<std::size_t>(n);
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

// Calls handle(payload) for each whole frame in `in`, consuming it; makes room for the rest of
// a frame that has only partly arrived.
template <class Handle>
void for_each_frame(InBuffer& in, Handle&& handle) {
  for (;;) {
    const std::size_t left = in.end - in.begin;
    if (left < 4) break;
    const char* p = in.data.get() + in.begin;
    const auto* raw = reinterpret_cast<const unsigned char*>(p);
    std::uint64_t size = get_big_endian(raw, 4);
    std::size_t header = 4;
    if (size == long_frame_marker) {
      if (left < 12) break;
      size = get_big_endian(raw + 4, 8);
      header = 12;
    }
    if (left - header < size) {
      in.reserve(header + static_cast<std::size_t>(size) - left);  // room for the rest
      break;
    }
    handle(std::string_view(p + header, static_cast<std::size_t>(size)));
    in.begin += header + static_cast<std::size_t>(size);
  }
  if (in.begin == in.end) {
    in.begin = in.end = 0;
    if (in.capacity > kept_buffer) in.release();  // a huge result came in
  }
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_PROCESS_CHANNEL_HPP
