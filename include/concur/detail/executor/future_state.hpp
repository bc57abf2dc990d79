// concur/detail/executor/future_state.hpp
//
// The shared state behind a Future: one heap object that is at once the task (what a pool runs),
// the future's result (a value or an exception), and its list of listeners (done callbacks and
// the waiters of wait() and as_completed()). A task submitted to a thread pool is one allocation.
//
// Lifecycle (Python's concurrent.futures states):
//
//   pending --claim()--> running --finish()--> finished
//      \--cancel()--> cancelled
//
// claim() is a compare-and-swap from pending, so exactly one thread runs a task even when a pool
// worker pops it while a waiting thread claims it to run it inline (see thread_pool.hpp); the
// loser drops it. cancel() succeeds only from pending. finished and cancelled are terminal.
//
// The status word (32 bits, the word that result() sleeps on):
//   bits 0-1  the state
//   bit 2     sleepers: some thread sleeps on the word (set by the sleeper, with a CAS)
//   bit 3     listeners: the listener list may be non-empty (set under the listener lock)
//   bit 4     helpers: a pool thread waits for this state on its pool's helper event count
// The thread that moves the state to a terminal one does so with a CAS that keeps the flag bits,
// and so learns from the old value whom to wake: it wakes sleepers (wake_all) only when bit 2 was
// set, fires the listeners only when bit 3 was set, and notifies the pool's helpers only when
// bit 4 was set; a future nobody waits on costs one CAS to complete.
//
// Why no wake-up is lost. A sleeper sets bit 2 with a CAS on the word and then sleeps only while
// the word still holds the value it wrote. If the completer's CAS comes first in the word's
// modification order, the sleeper's CAS fails (the word changed) and it re-reads a terminal
// state; if the sleeper's CAS comes first, the completer's CAS reads bit 2 and wakes. Listeners:
// add_listener() sets bit 3 with a fetch_or under the listener lock and learns from its old value
// whether the state was already terminal (then it runs the listener itself); otherwise the
// completer's CAS comes later in the modification order, reads bit 3, and takes the list under
// the same lock, after the adder has linked its node. So each listener runs exactly once.
//
// Memory ordering: the result (or exception) is written before the completing CAS, a release;
// every reader of the result first loads the word with acquire and sees a terminal state, so it
// sees the result. Listeners run after the CAS, in the completing thread (or in the adding
// thread if the state was already done), in the order they were added.

#ifndef CONCUR_DETAIL_EXECUTOR_FUTURE_STATE_HPP
#define CONCUR_DETAIL_EXECUTOR_FUTURE_STATE_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/executor/state_cache.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"

namespace concur::detail {

class StateBase;

// A node of an intrusive first-in first-out queue of tasks (work_queue.hpp).
struct QueueNode {
  std::atomic<QueueNode*> queue_next{nullptr};
};

// Listener
//
// Something to run once when a state becomes terminal: a done callback, or the notification of
// a wait() or as_completed() waiter. Owned by the state's list until it runs; run() is given
// the state and must then delete itself (or hand itself on).
class Listener {
 public:
  virtual ~Listener() = default;
  virtual void on_done(StateBase& state) noexcept = 0;
  Listener* next_listener = nullptr;
};

// The pool a task belongs to, as seen by a state: whom to notify when a helping pool thread
// waits for the state (see thread_pool.hpp).
class HelperSignal {
 public:
  virtual void notify_helpers() noexcept = 0;

 protected:
  ~HelperSignal() = default;
};

enum class FutureStatus : std::uint32_t { pending = 0, running = 1, cancelled = 2, finished = 3 };

class StateBase : public QueueNode {
 public:
  static constexpr std::uint32_t state_mask = 3;
  static constexpr std::uint32_t sleepers_bit = 4;
  static constexpr std::uint32_t listeners_bit = 8;
  static constexpr std::uint32_t helpers_bit = 16;

  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;

  // Every state's memory comes from, and goes back to, the state cache (state_cache.hpp), so a
  // burst of tasks reuses the memory of the last one. The destructor is virtual, so a delete
  // gives the dynamic type's size. Over-aligned states use the heap.
  static void* operator new(std::size_t size) { return state_cache::allocate(size); }
  static void operator delete(void* memory, std::size_t size) noexcept {
    state_cache::deallocate(memory, size);
  }
  static void* operator new(std::size_t size, std::align_val_t align) {
    return ::operator new(size, align);
  }
  static void operator delete(void* memory, std::size_t, std::align_val_t align) noexcept {
    ::operator delete(memory, align);
  }

  // References: every Future handle, the pool's queue while the task is queued, a Promise.
  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // The same while no other thread can reach the state yet (the pool's queue reference,
  // taken before the push that publishes the task): a plain store, not a read-modify-write.
  void add_ref_unpublished() noexcept {
    refs_.store(refs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void release_ref() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  [[nodiscard]] FutureStatus status() const noexcept {
    return static_cast<FutureStatus>(word_.load(std::memory_order_acquire) & state_mask);
  }
  [[nodiscard]] bool done() const noexcept {
    return terminal(word_.load(std::memory_order_acquire));
  }

  // The pool whose threads may run this task inline while they wait for it (null for a state
  // made by a Promise).
  [[nodiscard]] HelperSignal* owner() const noexcept { return owner_; }

  // StateBase::claim()
  //
  // pending -> running, Python's set_running_or_notify_cancel(): true when the caller is now the
  // one thread that runs the task; false when it was cancelled or another thread claimed it.
  bool claim() noexcept {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    while ((word & state_mask) == static_cast<std::uint32_t>(FutureStatus::pending)) {
      CONCUR_SCHEDULE_POINT("future.claim");
      if (word_.compare_exchange_weak(word,
                                      word | static_cast<std::uint32_t>(FutureStatus::running),
                                      std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // StateBase::run_claimed()
  //
  // Runs the task after a successful claim(); the task's result or exception completes the
  // state. Only states that are tasks have a body; a Promise's state never gets here.
  virtual void run_claimed() noexcept {}

  // StateBase::cancel()
  //
  // pending -> cancelled, waking everyone. True if the state is cancelled after the call (it
  // was pending or already cancelled), false if it is running or finished, as Python's cancel().
  bool cancel() noexcept {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint32_t state = word & state_mask;
      if (state == static_cast<std::uint32_t>(FutureStatus::cancelled)) return true;
      if (state != static_cast<std::uint32_t>(FutureStatus::pending)) return false;
      if (complete_from(word, FutureStatus::cancelled)) return true;
    }
  }

  // StateBase::wait_until(deadline)
  //
  // Blocks until the state is terminal or the deadline passes; true when it is terminal. Spins
  // a few microseconds first: a short task on an idle pool finishes within that time, and a
  // sleep and a wake cost two system calls.
  bool wait_until(steady_time deadline) const noexcept {
    if (spin_for([this] { return done(); }, deadline, std::chrono::microseconds(20))) return true;
    std::uint32_t word = word_.load(std::memory_order_acquire);
    while (!terminal(word)) {
      if ((word & sleepers_bit) == 0) {
        if (!word_.compare_exchange_weak(word, word | sleepers_bit, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
          continue;
        }
        word |= sleepers_bit;
      }
      CONCUR_SCHEDULE_POINT("future.before_sleep");
      if (!wait_on_until(word_, word, deadline)) return done();
      word = word_.load(std::memory_order_acquire);
    }
    return true;
  }

  // StateBase::mark_helper_waiting()
  //
  // Asks the completer to notify the owner pool's helpers (bit 4). False if the state is
  // already terminal. A seq_cst read-modify-write: it is the helper's registration in the sense
  // of event_count.hpp's contract, the completer's CAS being the change it waits for.
  bool mark_helper_waiting() noexcept {
    const std::uint32_t old = word_.fetch_or(helpers_bit, std::memory_order_seq_cst);
    return !terminal(old);
  }

  // StateBase::add_listener(listener)
  //
  // Runs `listener` once the state is terminal: at once in the caller if it already is,
  // otherwise in the thread that completes it.
  void add_listener(Listener* listener) noexcept {
    listeners_lock_.lock();
    const std::uint32_t old = word_.fetch_or(listeners_bit, std::memory_order_acq_rel);
    if (terminal(old)) {
      listeners_lock_.unlock();
      listener->on_done(*this);
      return;
    }
    // Kept in reverse order of addition; fire_listeners() reverses it back.
    listener->next_listener = listeners_;
    listeners_ = listener;
    listeners_lock_.unlock();
  }

  // StateBase::remove_listener(listener)
  //
  // Unlinks a listener that has not run; false if it is not in the list (it ran, or is about to
  // run in the completing thread: the caller must then let it run).
  bool remove_listener(Listener* listener) noexcept {
    listeners_lock_.lock();
    for (Listener** link = &listeners_; *link != nullptr; link = &(*link)->next_listener) {
      if (*link == listener) {
        *link = listener->next_listener;
        listeners_lock_.unlock();
        return true;
      }
    }
    listeners_lock_.unlock();
    return false;
  }

  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

  // StateBase::fail(error)
  //
  // Completes the state with an exception: from running (the normal path), or from pending (a
  // Promise's state). Throws InvalidStateError when already terminal. Only the one producer may
  // complete a state: the thread whose claim() succeeded, or for a state that is not a task,
  // the holder of its Promise (set_value() and fail() are not meant to race each other).
  void fail(std::exception_ptr error) {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    if (terminal(word)) throw InvalidStateError();
    error_ = std::move(error);
    while (!complete_from(word, FutureStatus::finished)) {
      if (terminal(word)) throw InvalidStateError();
    }
  }

 protected:
  explicit StateBase(HelperSignal* owner) noexcept : owner_(owner) {}
  virtual ~StateBase() = default;

  std::uint32_t load_word() const noexcept { return word_.load(std::memory_order_relaxed); }

  static bool terminal(std::uint32_t word) noexcept {
    return (word & state_mask) >= static_cast<std::uint32_t>(FutureStatus::cancelled);
  }

  // Moves the state from the one in `word` to `to` (terminal), keeping the flag bits; on
  // success wakes whoever the flags name. `word` is updated on failure.
  bool complete_from(std::uint32_t& word, FutureStatus to) noexcept {
    CONCUR_SCHEDULE_POINT("future.before_complete");
    const std::uint32_t next = (word & ~state_mask) | static_cast<std::uint32_t>(to);
    if (!word_.compare_exchange_weak(word, next, std::memory_order_seq_cst,
                                     std::memory_order_relaxed)) {
      return false;
    }
    CONCUR_SCHEDULE_POINT("future.after_complete");
    if ((word & sleepers_bit) != 0) wake_all(word_);
    if ((word & helpers_bit) != 0 && owner_ != nullptr) owner_->notify_helpers();
    if ((word & listeners_bit) != 0) fire_listeners();
    return true;
  }

 private:
  void fire_listeners() noexcept {
    listeners_lock_.lock();
    Listener* list = listeners_;
    listeners_ = nullptr;
    listeners_lock_.unlock();
    Listener* in_order = nullptr;
    while (list != nullptr) {
      Listener* next = list->next_listener;
      list->next_listener = in_order;
      in_order = list;
      list = next;
    }
    while (in_order != nullptr) {
      Listener* next = in_order->next_listener;
      in_order->on_done(*this);
      in_order = next;
    }
  }

  mutable wait_word word_{0};
  std::atomic<std::uint32_t> refs_{1};
  Lock listeners_lock_;
  Listener* listeners_ = nullptr;
  HelperSignal* owner_;
  std::exception_ptr error_;
};

// FutureState<T>
//
// A state with room for a T (nothing for void).
template <class T>
class FutureState : public StateBase {
 public:
  explicit FutureState(HelperSignal* owner = nullptr) noexcept : StateBase(owner) {}

  // FutureState::set_value(args...)
  //
  // Completes the state with a value. Throws InvalidStateError when already terminal (the value
  // is then not stored).
  template <class... Args>
  void set_value(Args&&... args) {
    std::uint32_t word = load_word();
    if (terminal(word)) throw InvalidStateError();
    value_.emplace(std::forward<Args>(args)...);
    while (!complete_from(word, FutureStatus::finished)) {
      if (terminal(word)) {
        value_.reset();
        throw InvalidStateError();
      }
    }
  }

  // The value of a finished state that did not fail.
  [[nodiscard]] const T& value() const noexcept { return *value_; }

 private:
  std::optional<T> value_;
};

template <>
class FutureState<void> : public StateBase {
 public:
  explicit FutureState(HelperSignal* owner = nullptr) noexcept : StateBase(owner) {}

  void set_value() {
    std::uint32_t word = load_word();
    if (terminal(word)) throw InvalidStateError();
    while (!complete_from(word, FutureStatus::finished)) {
      if (terminal(word)) throw InvalidStateError();
    }
  }
  void value() const noexcept {}
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_FUTURE_STATE_HPP
