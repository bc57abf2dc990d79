// concur/detail/executor/thread_pool.hpp
//
// The engine of ThreadPoolExecutor: a queue of tasks (work_queue.hpp), worker threads started
// on demand up to max_workers (as Python's are), and the two event counts they sleep on.
//
// Waits that cannot deadlock. A worker that waits for a Future of its own pool does not just
// block (which deadlocks a pool whose every worker waits for queued children: the classic
// failure of fixed-size pools); it helps, as oneTBB's task_group::wait and Java's ForkJoinPool
// do:
//   1. it claims the task it waits for if that task is still queued, and runs it inline (depth
//      first, as the serial program would);
//   2. otherwise it pops and runs queued tasks of the pool until its task is done;
//   3. with nothing queued, it sleeps on `helpers_` until its task completes (the completer
//      sees the state's helpers bit and notifies) or new work is queued (every submit notifies
//      `helpers_` too), and goes back to 2. Helpers wait for different tasks, so they sleep on
//      an event count with epochs, not tokens (HelperEvent, below).
// A thread thus sleeps only while the task it waits for runs on another thread and the queue
// is empty. In a fork-join program (tasks wait only for tasks they or their descendants
// submitted) that task's own waits are for its descendants, which are queued (and claimed by
// whoever waits for them) or running; so the wait chain always ends at a running task, and
// nested submit-and-wait completes with any number of workers, one included.
//
// Shutdown without a lost task. submit() pushes, then re-reads the control word; a worker
// leaves only when it has read the shutdown bit and then found the queue empty. Both the
// push's link and the control word's change are seq_cst, so (a Dekker pair) either the
// submitter sees the bit (it then cancels its task and throws, unless a worker claimed it
// first, in which case it runs and the Future is returned) or the worker's pop sees the task.
//
//   submitter                      shutdown()              worker
//   control: not shut down
//   push(task)
//                                  control |= shutdown
//                                                          control: shut down
//                                                          pop() -> task (it runs)
//   control: shut down -> cancel() fails (claimed) -> return the Future
//
// Idle workers: one at a time spins for new work (20 microseconds, bounded in time),
// the others sleep on `work_` at once; a submit notifies `work_`, which costs one load when no
// worker sleeps. An idle pool uses no CPU.

#ifndef CONCUR_DETAIL_EXECUTOR_THREAD_POOL_HPP
#define CONCUR_DETAIL_EXECUTOR_THREAD_POOL_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "concur/detail/event_count.hpp"
#include "concur/detail/executor/future.hpp"
#include "concur/detail/executor/work_queue.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"
#include "concur/thread.hpp"

namespace concur::detail {

// HelperEvent
//
// Where pool threads that wait for a task of their pool sleep: an event count with epochs (the
// original form of Dmitry Vyukov's eventcount). Unlike EventCount's wake-up tokens, which any
// registered thread may take, an epoch wakes exactly the threads that registered before it
// moved. That matters here because helpers wait for different things (each its own task):
// with tokens, a helper whose task is not done could take, re-register and take again the token
// meant for one whose task is done, which would then sleep on with its task finished.
//
//   helper                                    notifier (a completer, a submitter)
//   key = prepare_wait()   (waiters++, epoch)  make the change (seq_cst)
//   if (condition) cancel_wait();              notify_all(): if waiters > 0, epoch++, wake all
//   else wait(key, deadline);
//
// Memory ordering: the same Dekker pair as EventCount's. If the notifier's seq_cst load of
// `waiters_` misses the helper's increment, that load precedes the increment in the single
// order S, so the change precedes the helper's check, which sees it. Otherwise the notifier
// moves the epoch after its change: a helper that read the epoch before the move sleeps only
// while the epoch word still holds its key, and one that read it after sees the change in its
// check (the move precedes its read of the epoch, which precedes its check, all in S).
class HelperEvent {
 public:
  std::uint32_t prepare_wait() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("helper_event.after_register");
    return epoch_.load(std::memory_order_seq_cst);
  }
  void cancel_wait() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }
  bool wait(std::uint32_t key, steady_time deadline) noexcept {
    bool woken = true;
    while (epoch_.load(std::memory_order_acquire) == key) {
      if (!wait_on_until(epoch_, key, deadline)) {
        woken = epoch_.load(std::memory_order_acquire) != key;
        break;
      }
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return woken;
  }
  void notify_all() noexcept {
    if (waiters_.load(std::memory_order_seq_cst) == 0) return;
    CONCUR_SCHEDULE_POINT("helper_event.before_bump");
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    wake_all(epoch_);
  }

 private:
  wait_word epoch_{0};
  alignas(64) std::atomic<std::uint32_t> waiters_{0};
};

class ThreadPoolCore final : public TaskPool {
 public:
  ThreadPoolCore(int max_workers, std::string name_prefix, std::function<void()> initializer)
      : max_workers_(max_workers),
        name_prefix_(std::move(name_prefix)),
        initializer_(std::move(initializer)),
        slots_(new WorkerSlot[static_cast<std::size_t>(max_workers)]) {}

  ThreadPoolCore(const ThreadPoolCore&) = delete;
  ThreadPoolCore& operator=(const ThreadPoolCore&) = delete;

  ~ThreadPoolCore() {
    shutdown(/*wait=*/true, /*cancel_futures=*/false);
    // Tasks whose submit lost the race with shutdown() (cancelled there) may still be queued.
    drain([](StateBase&) {});
  }

  [[nodiscard]] int max_workers() const noexcept { return max_workers_; }

  // ThreadPoolCore::enqueue(task)
  //
  // Queues a task, taking a reference to it for the queue. Throws UsageError after shutdown and
  // BrokenThreadPool once the pool is broken (the task is then not queued, or cancelled), and
  // std::system_error if no thread could be started for it (the task is then cancelled).
  void enqueue(StateBase* task) {
    check_accepting();
    // Decided before the push: a worker taken after it could already have run the task and be
    // free again, and would then count as busy for the next submit.
    const bool start_thread =
        thread_count_.load(std::memory_order_acquire) < max_workers_ && !take_free_worker();
    task->add_ref();
    queue_.push(task);
    CONCUR_SCHEDULE_POINT("thread_pool.submit.after_push");
    if (CONCUR_UNLIKELY(control_.load(std::memory_order_seq_cst) != 0)) {
      // Shut down or broken meanwhile: take the task back unless a worker already claimed it
      // (the queue's reference goes when the task is popped or drained).
      if (task->cancel()) rethrow_rejection();
    }
    // A spinning worker will find the task: no wake-up (a system call when workers sleep). The
    // Dekker pair: this seq_cst load comes after the push; the spinner's seq_cst store of false
    // comes before its registration and check. If this load saw it spinning, the store comes
    // later in the single order, and so does the check, which then sees the task. A worker that
    // takes a task and sees more queued wakes the next one (worker_main), so a burst still
    // reaches every worker.
    if (!spinner_.load(std::memory_order_seq_cst)) work_.notify_one();
    helpers_.notify_all();
    if (start_thread) {
      try {
        start_worker();
      } catch (...) {
        // As Python's submit, report the failure, unless a worker already took the task.
        if (task->cancel()) throw;
      }
    }
  }

  // ThreadPoolCore::shutdown(wait, cancel_futures)
  //
  // Refuses new tasks, cancels the queued ones if asked, and lets the workers finish the rest
  // and leave; with `wait`, joins them.
  void shutdown(bool wait, bool cancel_futures) {
    control_.fetch_or(shutdown_bit, std::memory_order_seq_cst);
    if (cancel_futures) drain([](StateBase& task) { task.cancel(); });
    work_.notify_all();
    helpers_.notify_all();
    if (!wait) return;
    std::vector<std::unique_ptr<Thread>> threads;
    {
      threads_lock_.lock();
      threads.swap(threads_);
      threads_lock_.unlock();
    }
    for (auto& thread : threads) {
      if (thread->ident() != get_ident()) thread->join();
    }
  }

  void notify_helpers() noexcept override { helpers_.notify_all(); }

  bool run_one() noexcept override {
    QueueNode* node = nullptr;
    if (queue_.pop(node) != WorkQueue::PopStatus::got) return false;
    run_node(node);
    return true;
  }

  bool help_until(StateBase& state, steady_time deadline) noexcept override {
    // 1. The awaited task itself, if it is still queued: run it here.
    if (state.claim()) {
      state.run_claimed();
      return true;
    }
    while (!state.done()) {
      // 2. Any queued task of this pool.
      QueueNode* node = nullptr;
      if (queue_.pop(node) == WorkQueue::PopStatus::got) {
        run_node(node);
        continue;
      }
      if (reached(deadline)) return state.done();
      // 3. Sleep until the task completes or work arrives (see the header comment).
      if (!state.mark_helper_waiting()) return true;
      const std::uint32_t key = helpers_.prepare_wait();
      if (state.done() || queue_.maybe_nonempty()) {
        helpers_.cancel_wait();
        continue;
      }
      CONCUR_SCHEDULE_POINT("thread_pool.helper.before_sleep");
      if (!helpers_.wait(key, deadline)) return state.done();
    }
    return true;
  }

 private:
  static constexpr std::uint32_t shutdown_bit = 1;
  static constexpr std::uint32_t broken_bit = 2;

  void check_accepting() const {
    if (CONCUR_UNLIKELY(control_.load(std::memory_order_acquire) != 0)) rethrow_rejection();
  }
  [[noreturn]] void rethrow_rejection() const {
    if ((control_.load(std::memory_order_acquire) & broken_bit) != 0) throw BrokenThreadPool();
    throw UsageError("cannot schedule new futures after shutdown");
  }

  // Python's idle semaphore, per worker: takes a worker that is free (it found the queue empty,
  // or is about to publish its task's result and look again) for the task just queued, so that
  // the next submit does not count it free too; false if there is none, and a thread should
  // start. Only while the pool has fewer than max_workers threads; each flag is its worker's.
  bool take_free_worker() noexcept {
    const int count = thread_count_.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) {
      bool busy = false;
      if (slots_[static_cast<std::size_t>(i)].busy.compare_exchange_strong(
              busy, true, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  static void run_node(QueueNode* node) noexcept {
    auto* task = static_cast<StateBase*>(node);
    if (task->claim()) task->run_claimed();
    task->release_ref();
  }

  // Pops every queued task, applies `fn` to it, and drops the queue's reference.
  template <class Fn>
  void drain(Fn fn) noexcept {
    QueueNode* node = nullptr;
    for (;;) {
      const auto status = queue_.pop(node);
      if (status == WorkQueue::PopStatus::empty) return;
      if (status == WorkQueue::PopStatus::in_flight) {
        cpu_relax();  // a submitter between its two steps; it is not blocked there
        continue;
      }
      auto* task = static_cast<StateBase*>(node);
      fn(*task);
      task->release_ref();
    }
  }

  void start_worker() {
    threads_lock_.lock();
    try {
      const int index = thread_count_.load(std::memory_order_relaxed);
      if (index < max_workers_ && (control_.load(std::memory_order_acquire) & shutdown_bit) == 0) {
        slots_[static_cast<std::size_t>(index)].busy.store(true, std::memory_order_relaxed);
        auto thread = std::make_unique<Thread>(
            ThreadOptions{.name = name_prefix_ + "_" + std::to_string(index), .daemon = false},
            [this, index] { worker_main(slots_[static_cast<std::size_t>(index)]); });
        thread->start();
        threads_.push_back(std::move(thread));
        thread_count_.store(index + 1, std::memory_order_release);
      }
    } catch (...) {
      threads_lock_.unlock();
      throw;
    }
    threads_lock_.unlock();
  }

  void worker_main(WorkerSlot& slot) noexcept {
    current_task_pool() = this;
    if (initializer_) {
      try {
        initializer_();
      } catch (...) {
        break_pool();
        return;
      }
    }
    for (;;) {
      // The shutdown bit is read before the pop, not after: a worker leaves only when it saw
      // the bit and then found the queue empty (the Dekker pair with enqueue(), in the header
      // comment). In the other order, a submitter could push and read no shutdown between
      // this thread's pop and its read of the bit, and its task would stay queued with no
      // worker left (found by Stress.ThreadPool under schedule exploration).
      const bool stopping = control_.load(std::memory_order_seq_cst) != 0;
      QueueNode* node = nullptr;
      const auto status = queue_.pop(node);
      if (status == WorkQueue::PopStatus::got) {
        if (queue_.maybe_nonempty()) work_.notify_one();  // more queued: pass the wake-up on
        slot.busy.store(true, std::memory_order_relaxed);
        current_top_task() = TopTask{static_cast<StateBase*>(node), &slot};
        run_node(node);
        current_top_task() = TopTask{};
        continue;
      }
      slot.busy.store(false, std::memory_order_relaxed);  // found nothing to do: free
      if (status == WorkQueue::PopStatus::empty && stopping) return;
      wait_for_work();
    }
  }

  // Spins for work if no other worker does, then sleeps on `work_` until a submit or shutdown.
  void wait_for_work() noexcept {
    bool expected = false;
    if (spinner_.compare_exchange_strong(expected, true, std::memory_order_seq_cst)) {
      const bool found = spin_for(
          [this] {
            return queue_.maybe_nonempty() || control_.load(std::memory_order_relaxed) != 0;
          },
          never, std::chrono::microseconds(20));
      // seq_cst, before the registration below: a submitter that saw the spinner and did not
      // notify pushed before this store, so the check below sees its task (see enqueue()).
      spinner_.store(false, std::memory_order_seq_cst);
      if (found) return;
    }
    work_.prepare_wait();
    if (queue_.maybe_nonempty() || control_.load(std::memory_order_seq_cst) != 0) {
      work_.cancel_wait();
      return;
    }
    CONCUR_SCHEDULE_POINT("thread_pool.worker.before_sleep");
    work_.wait();
  }

  // An initializer failed: Python's BrokenThreadPool. Refuses new work, fails every queued
  // task, and lets the other workers leave.
  void break_pool() noexcept {
    control_.fetch_or(broken_bit, std::memory_order_seq_cst);
    drain([](StateBase& task) {
      if (task.claim()) {
        task.fail(std::make_exception_ptr(BrokenThreadPool()));
      }
    });
    work_.notify_all();
    helpers_.notify_all();
  }

  const int max_workers_;
  const std::string name_prefix_;
  const std::function<void()> initializer_;

  WorkQueue queue_;
  EventCount work_;      // idle workers
  HelperEvent helpers_;  // pool threads waiting for a task of this pool
  alignas(64) std::atomic<std::uint32_t> control_{0};  // shutdown_bit | broken_bit
  std::atomic<int> thread_count_{0};
  std::atomic<bool> spinner_{false};

  const std::unique_ptr<WorkerSlot[]> slots_;  // one per possible worker
  Lock threads_lock_;
  std::vector<std::unique_ptr<Thread>> threads_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_THREAD_POOL_HPP
