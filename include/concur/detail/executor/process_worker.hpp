// concur/detail/executor/process_worker.hpp
//
// The worker processes behind concur::mp::Pool and concur::ProcessPoolExecutor: WorkerPool
// forks them, feeds them tasks, collects their results and notices their deaths. The protocol
// is in process_protocol.hpp.
//
// Shape. Each worker is a fork()ed child holding one end of its own Pipe (a Unix socket pair);
// the parent keeps the other end. One parent thread (the I/O thread) does all the talking: it
// moves queued tasks into per-worker output buffers, writes them without blocking, reads the
// results, hands them to each task's TaskSink, and polls each worker's pidfd. So neither side
// can block the other: the parent never blocks on a worker's socket (a worker blocked writing
// results while the parent blocked writing tasks would be a deadlock), and a worker is
// single-threaded and blocking, reading a batch of tasks, running them, writing their results.
//
// Throughput. Tasks are pipelined: each worker has up to `window` tasks in flight, the window
// sized from the measured run time of tasks so that about 2 ms of work is queued at a worker
// (from 2 for slow tasks, so that load stays balanced, up to 1024 for tiny ones). Every
// dispatch round puts all of a worker's new tasks into one frame, one write; a worker sends its
// results when its input has run dry, when 1 ms has passed since the oldest unsent result, or
// when 256 KiB are waiting.
//
// Deaths. A worker that ends while it has tasks in flight or queued for it, that ends with a
// non-zero status, or whose initializer failed, breaks the pool (Python's ProcessPoolExecutor:
// BrokenProcessPool): every other worker is killed and reaped, and every pending task's sink
// gets BrokenProcessPool; later submissions throw it. A worker that ends after max_tasks tasks,
// on purpose, is replaced. The I/O thread learns of a death from the worker's pidfd (Linux 5.3
// and later) or end of file on its socket; without pidfds it also checks with waitpid(WNOHANG)
// every 100 ms. Every worker is reaped by the I/O thread.
//
// Descriptors. Each parent end is close-on-fork (Connection::set_close_on_fork(true)), and the
// pidfds and the wake-up pipe are in the ChildFdTable: no child forked by concur (a worker, or
// any Process) holds them, so a worker sees end of file when the parent closes its end or
// dies, and exits. To end workers the parent also shuts its socket down for writing, which ends
// the stream for every copy, even one inherited by a raw fork() elsewhere in the program.
//
// Idle: the I/O thread sleeps in poll(2) with no timeout (100 ms without pidfds), the workers
// in read(2).
//
// Locking: mutex_ guards the queue, the state and the worker list's membership; each worker's
// buffers and in-flight list belong to the I/O thread alone. Lock order: mutex_, then a sink's
// own lock (TaskSink::start runs under mutex_; deliver and fail run without it).

#ifndef CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_HPP
#define CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_HPP

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "concur/connection.hpp"
#include "concur/detail/connection/framing.hpp"
#include "concur/detail/executor/block_cache.hpp"
#include "concur/detail/executor/process_channel.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/detail/executor/process_worker_main.hpp"
#include "concur/detail/process_child.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/errors.hpp"
#include "concur/process.hpp"

namespace concur::detail {

// WorkerPool
//
// The workers and the I/O thread. Not copyable or movable.
class WorkerPool {
 public:
  enum class State { running, closing, terminating };

  // Forks `processes` workers, which first run `initializer` (when it has an invoker) and end
  // after `max_tasks` tasks (0: never), and starts the I/O thread. Throws std::system_error
  // when the system cannot fork (workers already started are killed and reaped).
  WorkerPool(int processes, TaskCall initializer, int max_tasks)
      : processes_(processes), initializer_(std::move(initializer)), max_tasks_(max_tasks) {
    if (processes_ < 1) throw std::invalid_argument("Number of processes must be at least 1");
    ChildFdTable::instance().open_pipe(&wake_read_, &wake_write_);
    ::fcntl(wake_read_, F_SETFL, ::fcntl(wake_read_, F_GETFL) | O_NONBLOCK);
    ::fcntl(wake_write_, F_SETFL, ::fcntl(wake_write_, F_GETFL) | O_NONBLOCK);
    try {
      std::lock_guard<std::mutex> hold(mutex_);
      for (int i = 0; i < processes_; ++i) spawn_locked();
      thread_ = std::thread([this] { run(); });
    } catch (...) {
      for (auto& w : workers_) kill_and_reap(*w);
      close_descriptors();
      throw;
    }
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Terminates (if not closed already) and waits for the I/O thread.
  ~WorkerPool() {
    terminate();
    join();
    close_descriptors();
  }

  // WorkerPool::submit(jobs, refusal)
  //
  // Queues `jobs` in order. Throws BrokenProcessPool once the pool is broken, UsageError with
  // `refusal` once it is closed.
  void submit(std::vector<PoolJob>&& jobs, const char* refusal) {
    bool wake;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      check_open_locked(refusal);
      for (auto& job : jobs) queue_.push_back(std::move(job));
      wake = !std::exchange(wake_pending_, true);
    }
    if (wake) wake_up();
  }
  void submit(PoolJob&& job, const char* refusal) {
    bool wake;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      check_open_locked(refusal);
      queue_.push_back(std::move(job));
      wake = !std::exchange(wake_pending_, true);
    }
    if (wake) wake_up();
  }

  // WorkerPool::close()
  //
  // No more submissions; the workers end once every queued task has run.
  void close() { set_state(State::closing); }

  // WorkerPool::terminate()
  //
  // No more submissions; the workers are killed (SIGKILL) and reaped, and every pending task
  // fails with BrokenProcessPool. Returns once they are all reaped.
  void terminate() {
    set_state(State::terminating);
    join();
  }

  // WorkerPool::join()
  //
  // Waits until the I/O thread has ended (after close() or terminate(), or a breakage).
  void join() {
    std::lock_guard<std::mutex> hold(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  // WorkerPool::cancel_queued()
  //
  // Removes every task not yet sent to a worker and returns them.
  std::deque<PoolJob> cancel_queued() {
    std::lock_guard<std::mutex> hold(mutex_);
    return std::exchange(queue_, {});
  }

  [[nodiscard]] State state() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return state_;
  }
  [[nodiscard]] bool broken() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return broken_;
  }
  [[nodiscard]] int processes() const noexcept { return processes_; }

  // WorkerPool::blocks()
  //
  // The big blocks the maps reuse (block_cache.hpp; shared by every pool).
  [[nodiscard]] const std::shared_ptr<BlockCache>& blocks() const noexcept { return blocks_; }

  // The pids of the workers alive now.
  [[nodiscard]] std::vector<pid_t> pids() const {
    std::lock_guard<std::mutex> hold(mutex_);
    std::vector<pid_t> out;
    for (const auto& w : workers_) {
      if (!w->reaped) out.push_back(w->pid);
    }
    return out;
  }

 private:
  struct InFlight {
    std::shared_ptr<TaskSink> sink;
    std::size_t slot;
    std::uint64_t id;
  };

  struct Worker {
    pid_t pid = -1;
    int pidfd = -1;  // in the ChildFdTable
    Connection end;  // the parent's end
    std::deque<InFlight> in_flight;
    std::deque<OutPiece> out;  // bytes to write, from out_done in the first piece
    std::size_t out_done = 0;
    InBuffer in;
    std::uint64_t sent = 0;  // tasks sent
    bool shut = false;       // its socket is shut down for writing: it will end
    bool write_failed = false;
    std::atomic<bool> reaped{false};  // written by the I/O thread, read by pids()
    int status = 0;
    std::string init_error;
  };

  void check_open_locked(const char* refusal) const {
    if (broken_) throw BrokenProcessPool(broken_message_);
    if (state_ != State::running) throw UsageError(refusal);
  }

  void set_state(State state) {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (state_ == State::terminating || state_ == state) return;
      state_ = state;
      wake_pending_ = true;
    }
    wake_up();
  }

  void wake_up() noexcept {
    const char byte = 1;
    CONCUR_SCHEDULE_POINT("process_pool.wake");
    while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
    }
  }

  void close_descriptors() noexcept {
    ChildFdTable::instance().close(&wake_read_);
    ChildFdTable::instance().close(&wake_write_);
  }

  // Forks one worker (with mutex_ held: the child never touches it). Throws std::system_error.
  void spawn_locked() {
    auto worker = std::make_unique<Worker>();
    auto [parent_end, child_end] = Pipe();
    parent_end.set_close_on_fork(true);  // no child, this one included, inherits it
    // Room for a big chunk in the socket each way (as much as the system allows a program
    // without privileges, up to 4 MiB): a chunk of megabytes then crosses in a few writes
    // and wake-ups instead of one per default-sized buffer (about 200 KiB). Only what is in
    // flight uses the memory.
    for (const int fd : {parent_end.fileno(), child_end.fileno()}) {
      const int bytes = 4 << 20;
      (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }
    workers_.reserve(workers_.size() + 1);
    const pid_t pid = concur::fork();
    if (pid == 0) {
      // The child: concur::fork() closed every close-on-fork end (the other workers' parent
      // ends, this one's) and the ChildFdTable's descriptors (pidfds, the wake-up pipe).
      worker_main(child_end, initializer_, static_cast<std::uint64_t>(max_tasks_));
    }
    CONCUR_SCHEDULE_POINT("process_pool.forked");
    child_end.close();
    worker->pid = pid;
    worker->end = std::move(parent_end);
    ChildFdTable::instance().open_pidfd(pid, &worker->pidfd);
    workers_.push_back(std::move(worker));
  }

  static void kill_and_reap(Worker& w) noexcept {
    if (w.reaped) return;
    ::kill(w.pid, SIGKILL);
    reap(w, 0);
  }

  // waitpid with `flags`; true once reaped.
  static bool reap(Worker& w, int flags) noexcept {
    if (w.reaped) return true;
    for (;;) {
      const pid_t rc = ::waitpid(w.pid, &w.status, flags);
      if (rc == w.pid) break;
      if (rc == 0) return false;
      if (errno == EINTR) continue;
      w.status = 0;  // ECHILD: someone else reaped it; nothing more to learn
      break;
    }
    w.reaped.store(true);
    ChildFdTable::instance().close(&w.pidfd);
    return true;
  }

  // The I/O thread.
  void run() noexcept {
    try {
      loop();
    } catch (...) {
      break_pool("the process pool's I/O thread failed: " +
                 describe_exception(std::current_exception()));
    }
    // Everything ends here: no worker is left unreaped.
    for (auto& w : workers_) kill_and_reap(*w);
  }

  void loop() {
    std::vector<pollfd> fds;
    std::vector<Worker*> polled;
    for (;;) {
      State state;
      {
        std::lock_guard<std::mutex> hold(mutex_);
        wake_pending_ = false;
        state = state_;
        std::erase_if(workers_, [](const std::unique_ptr<Worker>& w) { return w->reaped.load(); });
        if (state != State::terminating && !broken_) dispatch_locked();
      }
      if (state == State::terminating) {
        end_all("the pool was terminated before the task finished");
        return;
      }
      bool any_alive = false;
      bool need_timer = false;
      fds.clear();
      polled.clear();
      fds.push_back({wake_read_, POLLIN, 0});
      for (auto& wp : workers_) {
        Worker& w = *wp;
        if (w.reaped) continue;
        any_alive = true;
        write_some(w);
        if (state == State::closing && w.in_flight.empty() && !w.shut && queue_empty()) {
          ::shutdown(w.end.fileno(), SHUT_WR);  // it reads end of file and exits
          w.shut = true;
        }
        short events = POLLIN;
        if (!w.out.empty() && !w.write_failed) events |= POLLOUT;
        fds.push_back({w.end.fileno(), events, 0});
        polled.push_back(&w);
        if (w.pidfd >= 0) {
          fds.push_back({w.pidfd, POLLIN, 0});
          polled.push_back(&w);
        } else {
          need_timer = true;
        }
      }
      if (!any_alive && state != State::running) return;  // closed, and every worker ended
      CONCUR_SCHEDULE_POINT("process_pool.poll");
      const int rc = ::poll(fds.data(), fds.size(), need_timer ? 100 : -1);
      if (rc < 0) {
        if (errno == EINTR) continue;
        throw_errno("poll");
      }
      if (fds[0].revents != 0) drain_wake_pipe();
      for (std::size_t i = 1; i < fds.size(); ++i) {
        Worker& w = *polled[i - 1];
        if (w.reaped) continue;
        const bool is_pidfd = fds[i].fd == w.pidfd;
        if (is_pidfd) {
          if (fds[i].revents != 0) worker_ended(w);
          continue;
        }
        if (fds[i].revents & POLLOUT) write_some(w);
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          if (!read_some(w)) worker_ended(w);
        }
      }
      if (need_timer) {
        const std::size_t count = workers_.size();  // worker_ended() may add a replacement
        for (std::size_t i = 0; i < count; ++i) {
          Worker& w = *workers_[i];
          if (!w.reaped && w.pidfd < 0 && reap_peek(w)) worker_ended(w);
        }
      }
      if (broken()) return;
    }
  }

  bool queue_empty() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return queue_.empty();
  }

  // Whether the worker (without a pidfd) has ended, without reaping it.
  static bool reap_peek(Worker& w) noexcept {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(w.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return errno == ECHILD;
    }
    return info.si_pid == w.pid;
  }

  void drain_wake_pipe() noexcept {
    char sink[64];
    while (::read(wake_read_, sink, sizeof sink) == static_cast<ssize_t>(sizeof sink)) {
    }
  }

  // How many tasks each worker may have in flight: about 2 ms of measured work, 2 to 1024.
  std::size_t window() const noexcept {
    if (mean_task_ns_ <= 0.0) return 2;
    const double w = 2e6 / mean_task_ns_;
    return static_cast<std::size_t>(std::clamp(w, 2.0, 1024.0));
  }

  // Moves queued tasks into the output buffers of the workers with room (mutex_ held): each
  // worker with room, least loaded first, gets an even share of the queue (up to its room), so
  // that a few slow tasks spread over the workers instead of queueing behind each other.
  void dispatch_locked() {
    if (queue_.empty()) return;
    const std::size_t limit = window();
    std::vector<Worker*>& ready = ready_;
    ready.clear();
    for (auto& wp : workers_) {
      Worker& w = *wp;
      if (w.reaped || w.shut || w.write_failed || w.in_flight.size() >= limit) continue;
      if (max_tasks_ > 0 && w.sent >= static_cast<std::uint64_t>(max_tasks_)) continue;
      ready.push_back(&w);
    }
    std::sort(ready.begin(), ready.end(), [](const Worker* a, const Worker* b) {
      return a->in_flight.size() < b->in_flight.size();
    });
    for (std::size_t i = 0; i < ready.size() && !queue_.empty(); ++i) {
      Worker& w = *ready[i];
      const std::size_t share = (queue_.size() + (ready.size() - i) - 1) / (ready.size() - i);
      std::size_t room = limit - w.in_flight.size();
      if (max_tasks_ > 0) {
        room = std::min<std::size_t>(room, static_cast<std::uint64_t>(max_tasks_) - w.sent);
      }
      fill(w, std::min(share, room));
    }
  }

  // Puts up to `count` queued tasks into one frame for `w`: its header (the long form: -1,
  // then 8 bytes) and the task records go into a piece of its own, except that a big payload
  // goes as a piece that points into its map's shared block (no copy). mutex_ held.
  void fill(Worker& w, std::size_t count) {
    std::vector<PoolJob>& taken = taken_;
    taken.clear();
    std::uint64_t size = 0;
    while (taken.size() < count && !queue_.empty() && size < (std::uint64_t{64} << 20)) {
      PoolJob job = std::move(queue_.front());
      queue_.pop_front();
      if (!job.sink->start(job.slot)) continue;  // cancelled
      size += task_header_size + job.call.bytes().size();
      taken.push_back(std::move(job));
    }
    if (taken.empty()) return;
    OutPiece piece;  // one frame in the long form, whatever its size: Python reads both
    unsigned char header[12];
    put_big_endian(header, long_frame_marker, 4);
    put_big_endian(header + 4, size, 8);
    piece.own.append(reinterpret_cast<const char*>(header), sizeof header);
    for (PoolJob& job : taken) {
      const std::uint64_t id = next_id_++;
      const std::string_view payload = job.call.bytes();
      append_task_header(piece.own, id, job.call);
      if (payload.size() >= sent_in_place && job.call.payload.keep) {
        w.out.push_back(std::move(piece));
        piece = OutPiece();
        OutPiece shared;
        shared.keep = job.call.payload.keep;
        shared.view = payload;
        w.out.push_back(std::move(shared));
      } else {
        piece.own.append(payload);
      }
      w.in_flight.push_back({std::move(job.sink), job.slot, id});
      ++w.sent;
    }
    if (!piece.own.empty()) w.out.push_back(std::move(piece));
    taken.clear();
  }

  // Writes what the socket takes now, without blocking.
  static void write_some(Worker& w) noexcept {
    if (!w.write_failed && !send_pieces(w.end.fileno(), w.out, w.out_done)) {
      w.write_failed = true;  // the worker is gone: its end of file or pidfd says so next
    }
  }

  // Reads and handles what the worker has sent, until its socket is empty; false once it has
  // closed it (or an error).
  bool read_some(Worker& w) {
    bool filled = true;
    while (filled) {
      const bool open = recv_available(w.end.fileno(), w.in, filled);
      for_each_frame(w.in, [&](std::string_view frame) { handle_records(w, frame); });
      if (!open) return false;
    }
    return true;
  }

  void handle_records(Worker& w, std::string_view frame) {
    while (!frame.empty()) {
      if (frame.size() < result_header_size) throw_protocol();
      const auto id = get_le<std::uint64_t>(frame.data());
      const auto status = static_cast<std::uint8_t>(frame[8]);
      const auto ns = get_le<std::uint32_t>(frame.data() + 9);
      const auto size = get_le<std::uint64_t>(frame.data() + 13);
      if (frame.size() - result_header_size < size) throw_protocol();
      const std::string_view payload = frame.substr(result_header_size, size);
      frame.remove_prefix(result_header_size + size);
      if (status == result_init_failed) {
        w.init_error = decode_remote_error(payload).message;
        continue;
      }
      if (w.in_flight.empty() || w.in_flight.front().id != id) throw_protocol();
      InFlight done = std::move(w.in_flight.front());
      w.in_flight.pop_front();
      mean_task_ns_ = mean_task_ns_ <= 0.0
                          ? static_cast<double>(ns) + 1.0
                          : 0.9 * mean_task_ns_ + 0.1 * (static_cast<double>(ns) + 1.0);
      CONCUR_SCHEDULE_POINT("process_pool.deliver");
      if (status == result_ok) {
        done.sink->deliver(done.slot, payload);
      } else {
        done.sink->fail(done.slot, decode_remote_error(payload));
      }
    }
  }

  [[noreturn]] static void throw_protocol() {
    throw std::system_error(EPROTO, std::generic_category(), "malformed result from a worker");
  }

  // The worker's socket reached end of file, or its pidfd says it has ended.
  void worker_ended(Worker& w) {
    // A pidfd can tell of the death before the last results were read: everything the worker
    // wrote is in the socket by now, and one read_some() takes it all (to EAGAIN or end of file).
    (void)read_some(w);
    reap(w, 0);
    const bool clean = WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0;
    const bool retired = max_tasks_ > 0 && w.sent >= static_cast<std::uint64_t>(max_tasks_);
    if (!w.init_error.empty()) {
      break_pool("a process pool's initializer failed: " + w.init_error);
      return;
    }
    if (!clean || !w.in_flight.empty() || (!w.shut && !retired)) {
      const std::string how = WIFSIGNALED(w.status)
                                  ? "killed by signal " + std::to_string(WTERMSIG(w.status))
                                  : "exit code " + std::to_string(WEXITSTATUS(w.status));
      break_pool(
          "a process in the process pool was terminated abruptly while the future was "
          "running or pending (pid " +
          std::to_string(w.pid) + ", " + how + ")");
      return;
    }
    // Retired after max_tasks on purpose: replace it while there is or may be work. The new
    // Worker goes at the end of workers_ (unique_ptrs: the loop's pointers stay valid); reaped
    // records are dropped at the top of the loop.
    std::string failure;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (state_ == State::running || (state_ == State::closing && !queue_.empty())) {
        try {
          spawn_locked();
        } catch (...) {
          failure = "could not start a replacement worker: " +
                    describe_exception(std::current_exception());
        }
      }
    }
    if (!failure.empty()) break_pool(failure);
  }

  // Marks the pool broken, kills and reaps every worker, and fails every pending task.
  void break_pool(const std::string& message) noexcept {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      broken_ = true;
      broken_message_ = message;
    }
    end_all(message);
  }

  // Kills and reaps every worker, and fails every pending task with BrokenProcessPool.
  void end_all(const std::string& message) noexcept {
    std::deque<PoolJob> queued;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      queued = std::exchange(queue_, {});
    }
    std::vector<InFlight> pending;
    for (auto& w : workers_) {
      kill_and_reap(*w);
      for (auto& f : w->in_flight) pending.push_back(std::move(f));
      w->in_flight.clear();
    }
    TaskFailure failure;
    try {
      failure = TaskFailure::broken(message);
    } catch (...) {  // out of memory: the default message
      failure.kind = TaskFailure::Kind::broken;
    }
    for (auto& f : pending) f.sink->fail(f.slot, failure);
    for (auto& job : queued) job.sink->fail(job.slot, failure);
  }

  const int processes_;
  const TaskCall initializer_;
  const int max_tasks_;
  mutable std::mutex mutex_;
  std::mutex join_mutex_;
  State state_ = State::running;
  bool broken_ = false;
  std::string broken_message_;
  bool wake_pending_ = false;
  std::deque<PoolJob> queue_;
  std::vector<std::unique_ptr<Worker>> workers_;
  const std::shared_ptr<BlockCache> blocks_ = BlockCache::shared();
  int wake_read_ = -1;   // in the ChildFdTable
  int wake_write_ = -1;  // in the ChildFdTable
  // The I/O thread's own:
  std::uint64_t next_id_ = 0;
  double mean_task_ns_ = 0.0;
  std::vector<Worker*> ready_;
  std::vector<PoolJob> taken_;
  std::thread thread_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_PROCESS_WORKER_HPP
