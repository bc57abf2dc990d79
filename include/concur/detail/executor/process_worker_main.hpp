// concur/detail/executor/process_worker_main.hpp
//
// The loop a process pool's worker runs in its fork()ed child (see process_worker.hpp for the
// parent's side and process_protocol.hpp for the records): run the initializer, then read a
// frame of task records, run each task, and send the result records back, batched, until end of
// file on the connection (the parent closed or shut down its end, or died), or until
// `max_tasks` tasks have run. Then flush the standard streams and _exit(0): the parent's
// atexit handlers and static destructors never run in a worker. An initializer that throws
// sends one record saying so and exits with 3; a broken connection exits with 1.
//
// When results go out: once the input has run dry (no more bytes waiting), once 256 KiB are
// waiting, and before the next task starts when the recent tasks averaged 20 us or more or the
// oldest unsent result has waited 1 ms. So a stream of tiny tasks costs a write per batch, and
// a slow task's result does not wait behind the next ones; a tiny task's result can wait behind
// one slow task that follows it in the same batch.
//
// POSIX only.

#ifndef CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_MAIN_HPP
#define CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_MAIN_HPP

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "concur/connection.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/process.hpp"

namespace concur::detail {

// Writes a result record's header at out[at, at + result_header_size) for the payload that
// follows it to the end of `out`.
inline void patch_result_header(std::string& out, std::size_t at, std::uint64_t id,
                                std::uint8_t status, std::uint64_t nanoseconds) {
  char* header = out.data() + at;
  const auto time = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(nanoseconds, std::numeric_limits<std::uint32_t>::max()));
  const std::uint64_t size = out.size() - at - result_header_size;
  for (std::size_t i = 0; i < 8; ++i) header[i] = static_cast<char>(id >> (8 * i));
  header[8] = static_cast<char>(status);
  for (std::size_t i = 0; i < 4; ++i) header[9 + i] = static_cast<char>(time >> (8 * i));
  for (std::size_t i = 0; i < 8; ++i) header[13 + i] = static_cast<char>(size >> (8 * i));
}

// Runs a task (or the initializer) and appends its result record to `out`: the header's room
// first, then the invoker writes the payload straight after it (no copy), then the header is
// filled in. Returns whether the task succeeded; `nanoseconds` gets its run time and `stop`
// the time it ended.
inline bool run_record(std::string& out, std::uint64_t id, Invoker invoker, std::uint64_t fn,
                       std::string_view payload, std::uint64_t& nanoseconds,
                       std::chrono::steady_clock::time_point& stop) {
  using clock = std::chrono::steady_clock;
  const std::size_t at = out.size();
  out.append(result_header_size, '\0');
  Writer writer(std::move(out));
  const auto start = clock::now();
  const bool ok = invoker(fn, payload, writer);
  stop = clock::now();
  out = writer.take();
  nanoseconds = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count());
  patch_result_header(out, at, id, ok ? result_ok : result_exception, nanoseconds);
  return ok;
}

// worker_main(end, initializer, max_tasks)
//
// The worker's whole life, in the child; never returns.
[[noreturn]] inline void worker_main(Connection& end, const TaskCall& initializer,
                                     std::uint64_t max_tasks) noexcept {
  using clock = std::chrono::steady_clock;
  using namespace std::chrono_literals;
  int code = 0;
  try {
    end.set_max_message_size(std::numeric_limits<std::size_t>::max());  // the parent is trusted
    // The results' batch: reserved big and on huge pages at once, as the frame buffer below,
    // so that the worker's first big results do not fault page by page (the heap a worker
    // inherits is copy-on-write; reserving touches nothing).
    std::string out;
    reserve_huge(out, std::size_t{16} << 20);
    if (initializer.invoker != nullptr) {
      std::uint64_t ns = 0;
      clock::time_point stop;
      if (!run_record(out, ~std::uint64_t{0}, initializer.invoker, initializer.fn,
                      initializer.bytes(), ns, stop)) {
        out[8] = static_cast<char>(result_init_failed);  // the status byte
        end.send_bytes(out);
        flush_standard_streams();
        ::_exit(3);
      }
    }
    out.clear();  // an initializer's result has no record
    std::uint64_t done = 0;
    clock::time_point oldest{};
    double mean_ns = 0.0;  // the tasks' recent run time
    bool finished = false;
    auto flush = [&] {  // out keeps its capacity: the next batch reuses its pages
      if (out.empty()) return;
      end.send_bytes(out);
      out.clear();
      if (out.capacity() > (std::size_t{64} << 20)) std::string().swap(out);
    };
    // The frame buffer is kept from one frame to the next, and is big and on huge pages
    // from the start: only what frames use of it is ever touched, and a big chunk's bytes
    // then cost a few huge page faults, not one fault per 4 KiB (a fresh page costs a fault,
    // and so does a copy-on-write one after fork()).
    std::size_t capacity = std::size_t{64} << 20;
    Bytes frame = allocate_bytes(capacity);  // not zeroed: untouched until read into
    while (!finished) {
      std::size_t length = 0;
      try {
        length = end.recv_bytes_into(std::as_writable_bytes(std::span(frame.get(), capacity)));
      } catch (const EOFError&) {
        break;
      } catch (const BufferTooShort& e) {  // bigger than the buffer: it takes its size
        const std::string& message = e.message();
        capacity = message.size();
        frame = allocate_bytes(capacity);
        std::memcpy(frame.get(), message.data(), message.size());
        length = message.size();
      }
      std::string_view rest(frame.get(), length);
      while (!rest.empty()) {
        if (rest.size() < task_header_size) throw std::runtime_error("malformed task record");
        const auto id = get_le<std::uint64_t>(rest.data());
        const auto invoker = reinterpret_cast<Invoker>(
            static_cast<std::uintptr_t>(get_le<std::uint64_t>(rest.data() + 8)));
        const auto fn = get_le<std::uint64_t>(rest.data() + 16);
        const auto size = get_le<std::uint64_t>(rest.data() + 24);
        if (rest.size() - task_header_size < size) throw std::runtime_error("malformed task");
        const std::string_view payload = rest.substr(task_header_size, size);
        rest.remove_prefix(task_header_size + size);
        // Results already waiting go out before a task that may be slow: when the tasks so
        // far have been slow (20 us on average, a write is then cheap beside them), or once
        // the oldest has waited 1 ms. Short tasks keep batching.
        if (!out.empty() && (mean_ns >= 20000.0 || clock::now() - oldest >= 1ms)) flush();
        const bool first = out.empty();
        std::uint64_t ns = 0;
        clock::time_point stop;
        (void)run_record(out, id, invoker, fn, payload, ns, stop);
        if (first) oldest = stop;
        mean_ns = 0.8 * mean_ns + 0.2 * static_cast<double>(ns);
        ++done;
        if (max_tasks > 0 && done >= max_tasks) {
          finished = true;
          break;
        }
        if (out.size() >= 256 * 1024) flush();
      }
      if (finished || !end.poll()) flush();
    }
    flush();
  } catch (...) {
    code = 1;  // the parent is gone (EPIPE) or the stream broke: nothing to report to
  }
  flush_standard_streams();
  ::_exit(code);
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_MAIN_HPP
