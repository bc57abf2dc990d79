// concur/detail/thread_registry.hpp
//
// The live-thread registry behind concur::enumerate(), active_count(), current_thread() and
// main_thread(), as Python's threading module keeps its `_active` table.
//
// Who is listed, in the order they were listed:
//   - the main thread ("MainThread"), from static initialisation (or its first call into concur)
//     for the life of the process;
//   - every concur::Thread from start() until its last thread-local object is destroyed;
//   - every other thread that called current_thread() ("Dummy-N"), until it exits.
//
// The registry is created on first use and never destroyed, so a daemon thread that outlives
// main() can still use it. After fork(), the child keeps only the forking thread, which becomes
// the main thread, as in Python.

#ifndef CONCUR_DETAIL_THREAD_REGISTRY_HPP
#define CONCUR_DETAIL_THREAD_REGISTRY_HPP

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/local_registry.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/thread_state.hpp"

namespace concur::detail {

// The record of the calling thread, or null when concur has not met this thread yet.
inline thread_local ThreadState* current_thread_state = nullptr;

// What a running thread owns until it exits: a reference to its record, and for a Thread the
// object whose run() it calls (null to run the stored target).
struct ThreadOwnership {
  std::shared_ptr<ThreadState> state;
  void* runner = nullptr;
};

class ThreadRegistry {
 public:
  static ThreadRegistry& instance() {
    static ThreadRegistry* const registry = new ThreadRegistry();
    return *registry;
  }

  ThreadRegistry(const ThreadRegistry&) = delete;
  ThreadRegistry& operator=(const ThreadRegistry&) = delete;

  void add(ThreadState& state) {
    std::lock_guard<std::mutex> hold(mutex_);
    link(state);
  }

  void remove(ThreadState& state) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    unlink(state);
  }

  std::vector<std::shared_ptr<ThreadState>> snapshot() {
    std::lock_guard<std::mutex> hold(mutex_);
    std::vector<std::shared_ptr<ThreadState>> listed;
    listed.reserve(size_);
    // Every listed record has an owner (its running thread, the main-thread slot, or a Thread
    // being started) until it is unlisted, so shared_from_this() cannot fail here.
    for (ThreadState* state = head_; state != nullptr; state = state->registry_next) {
      listed.push_back(state->shared_from_this());
    }
    return listed;
  }

  std::size_t size() {
    std::lock_guard<std::mutex> hold(mutex_);
    return size_;
  }

  // The next number for a default name: Python's single counter behind "Thread-N" and
  // "Dummy-N".
  std::uint64_t next_number() noexcept {
    return counter_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // The record of the calling thread, created now ("MainThread" or "Dummy-N") if it has none.
  ThreadState& current() {
    if (ThreadState* state = current_thread_state) return *state;
    return adopt_current();
  }

  // The main thread's record. Before the main thread has met concur (possible only when concur
  // is first used from a library loaded by another thread) the record exists without ids.
  std::shared_ptr<ThreadState> main_thread() {
    std::lock_guard<std::mutex> hold(mutex_);
    if (!main_) {
      main_ = std::make_shared<ThreadState>("MainThread", /*daemon=*/false,
                                            /*started_here=*/false);
    }
    return main_;
  }

  // Called once by static initialisation: registers the main thread if that is where it runs.
  bool register_initial_thread() {
    if (os_is_initial_thread()) current();
    return true;
  }

  // Makes `ownership->state` the calling thread's record for the rest of its life. When the
  // thread exits, the record is unlisted and marked ended from a pthread key destructor, after
  // the thread's concur::local values are destroyed. With glibc, key destructors run after every
  // C++ thread_local destructor of the thread, so a join() that returns finds all of the
  // thread's thread-local objects destroyed; where thread-locals are emulated (MinGW GCC), C++
  // thread_local destructors run later, when the OS thread ends.
  static void own_current_thread(std::unique_ptr<ThreadOwnership> ownership) noexcept {
    current_thread_state = ownership->state.get();
    ::pthread_setspecific(instance().exit_key_, ownership.release());
  }

 private:
  // The record is unlisted and marked ended in one step under the registry's mutex, which
  // fork() holds across the fork (see the constructor), so a fork()ed child finds the record
  // either listed (and marks it ended itself) or already ended. Done in two steps, a fork
  // between them gave the child a record that was neither, whose join() slept forever (issue 13,
  // item 1). Order: the registry's mutex, then the record's (finish()); nothing takes them the
  // other way round.
  static void release_current_thread(void* raw) noexcept {
    if (raw == nullptr) return;  // winpthreads may call a key's destructor with its null value
    const std::unique_ptr<ThreadOwnership> ownership(static_cast<ThreadOwnership*>(raw));
    // The thread's concur::local values first, whatever the order of pthread keys, so that a
    // join() that returns finds them destroyed.
    LocalThreadTable::exit_current();
    current_thread_state = nullptr;
    ThreadRegistry& registry = instance();
    std::lock_guard<std::mutex> hold(registry.mutex_);
    registry.unlink(*ownership->state);
    CONCUR_SCHEDULE_POINT("thread_registry.release.between_unlist_and_end");
    ownership->state->finish();
  }

  ThreadRegistry() {
    ::pthread_key_create(&exit_key_, &release_current_thread);
    at_fork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
            [] { instance().keep_only_current_after_fork(); });
  }

  ThreadState& adopt_current() {
    const bool is_main = os_is_initial_thread();
    // Python's dummy threads are daemon threads: nobody can wait for them at exit.
    std::shared_ptr<ThreadState> state =
        is_main ? main_thread()
                : std::make_shared<ThreadState>("Dummy-" + std::to_string(next_number()),
                                                /*daemon=*/true, /*started_here=*/false);
    if (!is_main) state->set_dummy(true);
    if (state->phase() == ThreadPhase::created) state->adopt_running();
    add_once(*state);
    if (is_main) {
      current_thread_state = state.get();  // listed for the life of the process
    } else {
      own_current_thread(std::make_unique<ThreadOwnership>(ThreadOwnership{std::move(state)}));
    }
    return *current_thread_state;
  }

  void add_once(ThreadState& state) {
    std::lock_guard<std::mutex> hold(mutex_);
    if (!state.registry_listed) link(state);
  }

  void link(ThreadState& state) noexcept {
    state.registry_prev = tail_;
    state.registry_next = nullptr;
    (tail_ != nullptr ? tail_->registry_next : head_) = &state;
    tail_ = &state;
    state.registry_listed = true;
    ++size_;
  }

  void unlink(ThreadState& state) noexcept {
    if (!state.registry_listed) return;
    (state.registry_prev != nullptr ? state.registry_prev->registry_next : head_) =
        state.registry_next;
    (state.registry_next != nullptr ? state.registry_next->registry_prev : tail_) =
        state.registry_prev;
    state.registry_prev = state.registry_next = nullptr;
    state.registry_listed = false;
    --size_;
  }

  // In the child of fork(): only the forking thread exists. Every other record is marked ended
  // and unlisted; the forking thread becomes the main thread.
  // The mutex is held here: the prepare handler locked it in the forking thread, which is the
  // child's only thread; it is unlocked at the end, not rebuilt (a mutex rebuilt in place looks
  // still held to ThreadSanitizer, which then reports a lock-order inversion with the next
  // registry the child locks).
  void keep_only_current_after_fork() noexcept {
    ThreadState* survivor = current_thread_state;
    for (ThreadState* state = head_; state != nullptr;) {
      ThreadState* next = state->registry_next;
      const bool survives = state == survivor;
      if (!survives) unlink(*state);
      state->reset_after_fork(survives);
      state = next;
    }
    if (survivor == nullptr) {
      main_.reset();
    } else if (main_.get() != survivor) {
      main_ = survivor->shared_from_this();
    }
    mutex_.unlock();
  }

  std::mutex mutex_;
  ThreadState* head_ = nullptr;        // guarded by mutex_
  ThreadState* tail_ = nullptr;        // guarded by mutex_
  std::size_t size_ = 0;               // guarded by mutex_
  std::shared_ptr<ThreadState> main_;  // guarded by mutex_
  std::atomic<std::uint64_t> counter_{0};
  pthread_key_t exit_key_{};
};

// Registers the main thread during static initialisation, before main() runs.
inline const bool initial_thread_registered = ThreadRegistry::instance().register_initial_thread();

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_THREAD_REGISTRY_HPP
