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
//      an event count with epochs, not tokens (HelperEvent, helper_event.hpp).
// A thread thus sleeps only while the task it waits for runs on another thread and the queue
// is empty. In a fork-join program (tasks wait only for tasks they or their descendants
// submitted) that task's own waits are for its descendants, which are queued (and claimed by
// whoever waits for them) or running; so the wait chain always ends at a running task, and
// nested submit-and-wait completes with any number of workers, one included.
//
// Where tasks wait. A task submitted from outside the pool goes to the shared queue
// (work_queue.hpp, in shards: see submit_shard()); one submitted by a worker of the pool (a nested
// submit) goes to that worker's own deque (local_deque.hpp), as in oneTBB and Cilk: the worker pops
// its own newest first, so a fork-join program runs depth first on each worker with its children
// hot in cache and freed as soon as they ran, while idle workers and helpers steal the oldest (the
// biggest pieces). A thread looks at its own deque, then the shared queue, then steals.
//
// Shutdown without a lost task. submit() pushes, then re-reads the control word; a worker
// leaves only when it has read the shutdown bit and then found every shard of the queue and
// every deque empty.
// The push's link (or a deque's store of its bottom) and the control word's change are seq_cst,
// so (a Dekker pair) either the submitter sees the bit (it then cancels its task and throws,
// unless a worker claimed it first, in which case it runs and the Future is returned) or the
// worker's look sees the task.
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
#include "concur/detail/executor/helper_event.hpp"
#include "concur/detail/executor/local_deque.hpp"
#include "concur/detail/executor/work_queue.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"
#include "concur/thread.hpp"

namespace concur::detail {

class ThreadPoolCore final : public TaskPool {
 public:
  ThreadPoolCore(int max_workers, std::string name_prefix, std::function<void()> initializer)
      : max_workers_(max_workers),
        name_prefix_(std::move(name_prefix)),
        initializer_(std::move(initializer)),
        shard_count_(max_workers < max_shards ? max_workers : max_shards),
        shards_(new WorkQueue[static_cast<std::size_t>(shard_count_)]),
        slots_(new WorkerSlot[static_cast<std::size_t>(max_workers)]),
        deques_(new std::unique_ptr<LocalDeque>[static_cast<std::size_t>(max_workers)]) {}

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
  // Queues a task that no other thread can reach yet (just made by submit()), taking a
  // reference to it for the queue. Throws UsageError after shutdown and
  // BrokenThreadPool once the pool is broken (the task is then not queued, or cancelled), and
  // std::system_error if no thread could be started for it (the task is then cancelled).
  void enqueue(StateBase* task) {
    check_accepting();
    // Decided before the push: a worker taken after it could already have run the task and be
    // free again, and would then count as busy for the next submit.
    const bool start_thread =
        thread_count_.load(std::memory_order_acquire) < max_workers_ && !take_free_worker();
    task->add_ref_unpublished();  // no other thread has it before the push below
    // A task submitted by a worker of this pool goes to that worker's own deque (newest first
    // for it, oldest first for thieves); any other, or one that does not fit, to the queue.
    LocalDeque* own = current_task_pool() == this ? current_local_deque() : nullptr;
    if (own == nullptr || !own->push(task)) submit_shard().push(task);
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
    StateBase* task = find_task(current_local_deque());
    if (task == nullptr) return false;
    run_task(task);
    return true;
  }

  bool help_until(StateBase& state, steady_time deadline) noexcept override {
    LocalDeque* own = current_local_deque();
    // 1. The awaited task itself, if it is still queued: run it here. In a fork-join program
    //    it is this thread's newest task (submitted, then everything submitted since was
    //    awaited): take it off the deque, so that the deque's reference goes now. A task
    //    claimed where it lies stays queued, finished, until some thread pops it, and keeps its
    //    state (its result) alive until then: a deep fork-join would keep every task alive and
    //    overflow the deque into the shared queue.
    if (own != nullptr && own->newest() == &state) {
      // pop() gives `state` or, if a thief took it meanwhile, nullptr (only the owner moves
      // the bottom, so the newest slot cannot hold another task).
      if (StateBase* task = own->pop()) {
        run_task(task);
        if (state.done()) return true;
      }
    } else if (state.claim()) {
      state.run_claimed();
      return true;
    }
    while (!state.done()) {
      // 2. Any queued task of this pool: this thread's own newest first.
      if (StateBase* task = find_task(own)) {
        run_task(task);
        continue;
      }
      if (reached(deadline)) return state.done();
      // 3. Sleep until the task completes or work arrives (see the header comment).
      if (!state.mark_helper_waiting()) return true;
      const std::uint32_t key = helpers_.prepare_wait();
      if (state.done() || has_work()) {
        helpers_.cancel_wait(key);
        cpu_relax();  // work is there but another thread took it first: a breath, then again
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

  // The queue of tasks submitted from outside the pool is sharded: a submitting thread pushes
  // to one shard (chosen once per thread), and a worker pops its home shard first, then the
  // others. Submitting threads thus do not all exchange the same tail, nor workers all take the
  // same pop lock (a single queue's two hot spots with many threads); one thread's tasks stay in
  // one shard, in the order it submitted them.
  static constexpr int max_shards = 8;

  WorkQueue& shard(int index) noexcept { return shards_[static_cast<std::size_t>(index)]; }

  WorkQueue& submit_shard() noexcept {
    static std::atomic<unsigned> threads_seen{0};
    thread_local const unsigned ticket = threads_seen.fetch_add(1, std::memory_order_relaxed);
    return shard(static_cast<int>(ticket % static_cast<unsigned>(shard_count_)));
  }

  // The shard a worker pops first (its index; taken modulo the shards).
  static int& current_home_shard() noexcept {
    thread_local int home = 0;
    return home;
  }

  // Whether some shard may hold a task (seq_cst loads: sleepers' checks).
  bool any_queued() const noexcept {
    for (int k = 0; k < shard_count_; ++k) {
      if (shards_[static_cast<std::size_t>(k)].maybe_nonempty()) return true;
    }
    return false;
  }

  static void run_task(StateBase* task) noexcept {
    if (task->claim()) task->run_claimed();
    task->release_ref();
  }

  // The deque of the calling thread if it is a worker (of any pool; callers check the pool).
  static LocalDeque*& current_local_deque() noexcept {
    thread_local LocalDeque* deque = nullptr;
    return deque;
  }

  // A task to run: the caller's own newest, else the queue's oldest, else one stolen from
  // another worker (the oldest there). nullptr when none was found.
  StateBase* find_task(LocalDeque* own) noexcept {
    if (own != nullptr) {
      if (StateBase* task = own->pop()) return task;
    }
    // Home first, except every 16th look, which starts at the next shard in turn: a shard
    // that is no started worker's home (workers start on demand) is not starved by busy ones.
    thread_local unsigned looks = 0;
    const unsigned look = looks++;
    const int home = (look % 16 == 15 ? current_home_shard() + static_cast<int>(look / 16)
                                      : current_home_shard()) %
                     shard_count_;
    for (int k = 0; k < shard_count_; ++k) {
      // A look without the pop lock first: most shards are empty when few threads submit.
      // Skipping one that just filled is harmless; a sleeper checks every shard (has_work()).
      WorkQueue& queue = shard((home + k) % shard_count_);
      if (!queue.maybe_nonempty()) continue;
      if (own == nullptr || !all_started()) {
        QueueNode* node = nullptr;
        if (queue.pop(node) == WorkQueue::PopStatus::got) return static_cast<StateBase*>(node);
        continue;
      }
      QueueNode* taken[take_at_once];
      const int count = queue.pop_some(taken, take_at_once);
      if (count == 0) continue;
      keep_in_deque(*own, taken + 1, count - 1);
      return static_cast<StateBase*>(taken[0]);
    }
    const int count = thread_count_.load(std::memory_order_acquire);
    thread_local unsigned rotation = 0;  // where this thread starts looking, moved each time
    const int start = count > 0 ? static_cast<int>(rotation++ % static_cast<unsigned>(count)) : 0;
    for (int k = 0; k < count; ++k) {
      LocalDeque* victim = deques_[static_cast<std::size_t>((start + k) % count)].get();
      if (victim == own) continue;
      if (StateBase* task = victim->steal()) return task;
    }
    return nullptr;
  }

  // A worker takes up to this many tasks from a shard at once: it runs the oldest and keeps the
  // rest in its own deque (keep_in_deque()). One hold of the pop lock per batch, not per task:
  // with one thread submitting, every worker pops the same shard, and taking tasks one at a
  // time had them queue on its lock for each (Go's scheduler and oneTBB likewise move work to
  // a worker's own queue in batches). Small, so that the others soon find work to steal.
  //
  // Only once every worker has started. While a batch is between the shard and the deque, no
  // look finds it: a worker that looked then would count itself free (worker_main()), and a
  // pool still starting threads would take it for the next submit instead of starting one,
  // though it is about to steal from the batch; a burst that needs every worker at once would
  // then be one thread short for good (found by Stress.ThreadPoolBurst under schedule
  // exploration: a pool of 3 with 2 threads, both at the barrier). Once all have started, no
  // submit asks who is free, and a sleeper is covered by keep_in_deque()'s notify.
  static constexpr int take_at_once = 8;

  bool all_started() const noexcept {
    return thread_count_.load(std::memory_order_acquire) == max_workers_;
  }

  // Puts `count` tasks taken from a shard (oldest first) into the worker's own deque, so that
  // it pops them oldest first; idle workers steal them from the other end. Wakes one sleeping
  // worker (unless one spins) as a submit does, with the same Dekker pair: the deque's store
  // of its bottom is seq_cst and a sleeper's has_work() looks at every deque after it
  // registered. Without it, a burst of long tasks taken together could run one after another
  // on this worker while the others sleep. A task that does not fit goes back to the queue.
  void keep_in_deque(LocalDeque& own, QueueNode** tasks, int count) noexcept {
    if (count == 0) return;
    CONCUR_SCHEDULE_POINT("thread_pool.worker.before_keep");  // the batch is in no queue here
    StateBase* batch[take_at_once];
    for (int i = 0; i < count; ++i) batch[i] = static_cast<StateBase*>(tasks[i]);
    const int kept = own.push_newest_last(batch, count);
    for (int i = count - kept - 1; i >= 0; --i) submit_shard().push(batch[i]);
    CONCUR_SCHEDULE_POINT("thread_pool.worker.after_keep");
    if (!spinner_.load(std::memory_order_seq_cst)) work_.notify_one();
  }

  // Whether a task may be queued anywhere (seq_cst loads: sleepers' checks).
  bool has_work() const noexcept {
    if (any_queued()) return true;
    const int count = thread_count_.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) {
      if (deques_[static_cast<std::size_t>(i)]->maybe_nonempty()) return true;
    }
    return false;
  }

  // Pops every queued task, applies `fn` to it, and drops the queue's reference.
  template <class Fn>
  void drain(Fn fn) noexcept {
    for (int k = 0; k < shard_count_; ++k) {
      QueueNode* node = nullptr;
      for (;;) {
        const auto status = shard(k).pop(node);
        if (status == WorkQueue::PopStatus::empty) break;
        if (status == WorkQueue::PopStatus::in_flight) {
          cpu_relax();  // a submitter between its two steps; it is not blocked there
          continue;
        }
        auto* task = static_cast<StateBase*>(node);
        fn(*task);
        release_drained(task);
      }
    }
    const int count = thread_count_.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) {
      LocalDeque& deque = *deques_[static_cast<std::size_t>(i)];
      while (deque.maybe_nonempty()) {
        if (StateBase* task = deque.steal()) {
          fn(*task);
          task->release_ref();
        }
      }
    }
  }

  // Drops the queue's reference to a task drain() popped. Out of line: inlined, GCC 12 cannot
  // tell that pop() never hands out the queue's stub node (a QueueNode, smaller than a state)
  // and warns of a write past it (-Wstringop-overflow).
  CONCUR_NOINLINE static void release_drained(StateBase* task) noexcept { task->release_ref(); }

  void start_worker() {
    threads_lock_.lock();
    try {
      const int index = thread_count_.load(std::memory_order_relaxed);
      if (index < max_workers_ && (control_.load(std::memory_order_acquire) & shutdown_bit) == 0) {
        slots_[static_cast<std::size_t>(index)].busy.store(true, std::memory_order_relaxed);
        if (!deques_[static_cast<std::size_t>(index)]) {
          deques_[static_cast<std::size_t>(index)] = std::make_unique<LocalDeque>();
        }
        auto thread = std::make_unique<Thread>(
            ThreadOptions{.name = name_prefix_ + "_" + std::to_string(index), .daemon = false},
            [this, index] {
              worker_main(index, slots_[static_cast<std::size_t>(index)],
                          *deques_[static_cast<std::size_t>(index)]);
            });
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

  void worker_main(int index, WorkerSlot& slot, LocalDeque& own) noexcept {
    current_task_pool() = this;
    current_local_deque() = &own;
    current_home_shard() = index;
    if (initializer_) {
      try {
        initializer_();
      } catch (...) {
        break_pool();
        return;
      }
    }
    bool from_idle = true;  // this worker was idle (spinning, asleep, or just started)
    for (;;) {
      // The shutdown bit is read before the pop, not after: a worker leaves only when it saw
      // the bit and then found the queue empty (the Dekker pair with enqueue(), in the header
      // comment). In the other order, a submitter could push and read no shutdown between
      // this thread's pop and its read of the bit, and its task would stay queued with no
      // worker left (found by Stress.ThreadPool under schedule exploration).
      const bool stopping = control_.load(std::memory_order_seq_cst) != 0;
      if (StateBase* task = find_task(&own)) {
        // Pass the wake-up on: a worker that comes from idle and finds more queued than the
        // task it takes wakes one more, unless a spinner will take it. So a burst reaches every
        // worker, one wake-up after another (as Go's and Tokio's schedulers hand the searching
        // role on), while a worker that goes from task to task in a stream wakes nobody: waking
        // a sleeper per task taken kept every worker awake, fighting over the queue and the
        // CPUs with the submitters. "More" counts the deques too: tasks another worker took in
        // a batch (keep_in_deque()) wait there for a thief, and that worker woke only one
        // (found by Stress.ThreadPoolBurst: three tasks taken at once by a worker that then
        // waited at a barrier for the other two, with one worker woken and the third asleep).
        if (from_idle && has_work() && !spinner_.load(std::memory_order_seq_cst)) {
          work_.notify_one();
        }
        from_idle = false;
        slot.busy.store(true, std::memory_order_relaxed);
        current_top_task() = TopTask{task, &slot};
        run_task(task);
        current_top_task() = TopTask{};
        continue;
      }
      // Free only when nothing is queued. A look can come back empty-handed with work there: a
      // push between its two steps (in_flight), or a task another thread took first. Counted
      // free then, this worker could be taken for the next submit (no thread started for it)
      // and still run a task queued before it: a burst of tasks that wait for each other on a
      // pool below max_workers would be one thread short for good (found by
      // Stress.ThreadPoolBurst: a three-party round with two threads, both at the barrier).
      const bool work_left = has_work();
      if (!work_left) slot.busy.store(false, std::memory_order_relaxed);
      if (stopping && !work_left) return;
      wait_for_work();
      from_idle = true;
    }
  }

  // Spins for work if no other worker does, then sleeps on `work_` until a submit or shutdown.
  void wait_for_work() noexcept {
    bool expected = false;
    if (spinner_.compare_exchange_strong(expected, true, std::memory_order_seq_cst)) {
      const bool found =
          spin_for([this] { return has_work() || control_.load(std::memory_order_relaxed) != 0; },
                   never, std::chrono::microseconds(20));
      // seq_cst, before the registration below: a submitter that saw the spinner and did not
      // notify pushed before this store, so the check below sees its task (see enqueue()).
      spinner_.store(false, std::memory_order_seq_cst);
      if (found) return;
    }
    work_.prepare_wait();
    if (has_work() || control_.load(std::memory_order_seq_cst) != 0) {
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

  const int shard_count_;
  const std::unique_ptr<WorkQueue[]> shards_;  // the queue, in shards (see submit_shard())
  EventCount work_;                            // idle workers
  HelperEvent helpers_;                        // pool threads waiting for a task of this pool
  alignas(64) std::atomic<std::uint32_t> control_{0};  // shutdown_bit | broken_bit
  std::atomic<int> thread_count_{0};
  alignas(64) std::atomic<bool> spinner_{false};  // written by idle workers: its own line

  const std::unique_ptr<WorkerSlot[]> slots_;  // one per possible worker
  // One per worker started, made before its thread (and before thread_count_ counts it).
  const std::unique_ptr<std::unique_ptr<LocalDeque>[]> deques_;
  Lock threads_lock_;
  std::vector<std::unique_ptr<Thread>> threads_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_THREAD_POOL_HPP
