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
#include <limits>
#include <string>
#include <string_view>

#include "concur/connection.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/process.hpp"

namespace concur::detail {

// Appends a result record to `out`.
inline void append_result_record(std::string& out, std::uint64_t id, std::uint8_t status,
                                 std::uint64_t nanoseconds, const std::string& payload) {
  put_le<std::uint64_t>(out, id);
  out.push_back(static_cast<char>(status));
  put_le<std::uint32_t>(out, static_cast<std::uint32_t>(std::min<std::uint64_t>(
                                 nanoseconds, std::numeric_limits<std::uint32_t>::max())));
  put_le<std::uint64_t>(out, payload.size());
  out.append(payload);
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
    std::string out;
    if (initializer.invoker != nullptr) {
      Writer result;
      if (!initializer.invoker(initializer.fn, initializer.payload, result)) {
        append_result_record(out, ~std::uint64_t{0}, result_init_failed, 0, result.bytes());
        end.send_bytes(out);
        flush_standard_streams();
        ::_exit(3);
      }
    }
    std::uint64_t done = 0;
    clock::time_point oldest{};
    double mean_ns = 0.0;  // the tasks' recent run time
    bool finished = false;
    auto flush = [&] {
      if (out.empty()) return;
      end.send_bytes(out);
      out.clear();
    };
    while (!finished) {
      std::string frame;
      try {
        frame = end.recv_bytes();
      } catch (const EOFError&) {
        break;
      }
      std::string_view rest(frame);
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
        Writer result;
        const auto start = clock::now();
        const bool ok = invoker(fn, payload, result);
        const auto stop = clock::now();
        if (out.empty()) oldest = stop;
        const auto ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count());
        mean_ns = 0.8 * mean_ns + 0.2 * static_cast<double>(ns);
        append_result_record(out, id, ok ? result_ok : result_exception, ns, result.bytes());
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
