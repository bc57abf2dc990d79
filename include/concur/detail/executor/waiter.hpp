// concur/detail/executor/waiter.hpp
//
// Waiting for many futures at once: concur::wait() and concur::as_completed() (Python's
// concurrent.futures.wait and as_completed, whose _Waiter objects this follows in spirit).
//
// A Waiter is a list of finished states and an event count. wait() and as_completed() put one
// WaitNode (a Listener) on each future that is not done; the thread that completes a future
// runs its node, which appends the state to the Waiter's list under the Waiter's lock and
// notifies. The waiting thread checks the list under the same lock after registering on the
// event count, so it cannot miss an append: an append after its check is followed by a notify
// that sees its registration (the lock orders the two critical sections, and the notify's load
// of the event count comes after the appender's unlock).
//
// Lifetime: the Waiter is reference-counted by the waiting side and by each node. When the wait
// ends, the waiting side takes back the nodes that have not run (remove_listener); a node it
// cannot take back is running or about to run in a completing thread, and keeps the Waiter
// alive until it is done with it.
//
// A pool thread that waits here helps its pool while work is queued (one task at a time,
// re-checking between tasks), so that wait() and as_completed() inside a task cannot starve the
// tasks they wait for.

#ifndef CONCUR_DETAIL_EXECUTOR_WAITER_HPP
#define CONCUR_DETAIL_EXECUTOR_WAITER_HPP

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/config.hpp"
#include "concur/detail/event_count.hpp"
#include "concur/detail/executor/future.hpp"
#include "concur/detail/executor/unique_futures.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"

namespace concur {

// ReturnWhen
//
// When wait() returns: Python's FIRST_COMPLETED, FIRST_EXCEPTION and ALL_COMPLETED.
enum class ReturnWhen { first_completed, first_exception, all_completed };

// DoneAndNotDone<T>
//
// What wait() returns: the futures that are done and those that are not (Python's named
// tuple of two sets; here vectors in the order given, without duplicates).
template <class T>
struct DoneAndNotDone {
  std::vector<Future<T>> done;
  std::vector<Future<T>> not_done;
};

namespace detail {

class Waiter {
 public:
  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Called by a WaitNode in the thread that completed `state`.
  void notify(StateBase& state) noexcept {
    lock_.lock();
    finished_.push_back(&state);
    if (state.status() == FutureStatus::finished && state.error()) ++failed_;
    lock_.unlock();
    events_.notify_one();
  }

  // The finished states so far (copied under the lock), and how many of them threw.
  struct Snapshot {
    std::size_t finished;
    std::size_t failed;
  };
  Snapshot snapshot() noexcept {
    lock_.lock();
    const Snapshot snap{finished_.size(), failed_};
    lock_.unlock();
    return snap;
  }
  StateBase* finished_at(std::size_t index) noexcept {
    lock_.lock();
    StateBase* state = finished_[index];
    lock_.unlock();
    return state;
  }

  // Waits until `ready(snapshot())` or the deadline; true when ready. A pool thread runs queued
  // tasks of its pool meanwhile.
  template <class Ready>
  bool wait_until(Ready ready, steady_time deadline) noexcept {
    TaskPool* pool = current_task_pool();
    for (;;) {
      if (ready(snapshot())) return true;
      if (pool != nullptr && pool->run_one()) continue;
      events_.prepare_wait();
      if (ready(snapshot())) {
        events_.cancel_wait();
        return true;
      }
      if (!events_.wait(deadline)) return ready(snapshot());
    }
  }

 private:
  std::atomic<std::uint32_t> refs_{1};
  Lock lock_;
  std::vector<StateBase*> finished_;
  std::size_t failed_ = 0;
  EventCount events_;
};

class WaitNode final : public Listener {
 public:
  explicit WaitNode(Waiter* waiter) noexcept : waiter_(waiter) { waiter_->add_ref(); }
  void on_done(StateBase& state) noexcept override {
    waiter_->notify(state);
    waiter_->release();
    delete this;
  }
  // Taken back before it ran.
  void discard() noexcept {
    waiter_->release();
    delete this;
  }

 private:
  Waiter* waiter_;
};

// A Waiter registered on every state of a list of futures that is not done yet; unregisters
// in its destructor.
template <class T>
class Registration {
 public:
  explicit Registration(const std::vector<Future<T>>& futures) : waiter_(new Waiter) {
    nodes_.reserve(futures.size());
    for (const Future<T>& future : futures) {
      auto* node = new WaitNode(waiter_);
      nodes_.emplace_back(FutureAccess::state(future), node);
      FutureAccess::state(future)->add_listener(node);
    }
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration() {
    for (auto& [state, node] : nodes_) {
      if (state->remove_listener(node)) node->discard();
    }
    waiter_->release();
  }
  Waiter& waiter() const noexcept { return *waiter_; }

 private:
  Waiter* waiter_;
  std::vector<std::pair<StateBase*, WaitNode*>> nodes_;
};

// Waits for every future of `list` (no state in it twice) until `deadline`, and sorts them
// into done and not done in the same pass: one look at each state, where waiting, checking and
// copying in passes of their own looked three times (a cache miss each, for a list longer than
// the cache holds). A `List` that is not const is the caller's own copy, and is moved from.
//
// The pass starts at once, from the first: while it goes over the futures that are done, the
// workers finish the rest on the other cores. At the first that is not done, it waits for the
// last one first: a pool starts one submitter's tasks about in the order they came, so once the
// last is done most others are, and a waiter that catches up with the workers sleeps about
// once, not once per task it reaches before its worker does.
template <class T, class List>
DoneAndNotDone<T> wait_for_all(List& list, steady_time deadline) {
  DoneAndNotDone<T> result;
  result.done.reserve(list.size());
  bool in_time = true;  // the deadline has not passed (as far as a wait has seen)
  bool waited_for_last = false;
  constexpr std::size_t ahead = 16;  // states prefetched ahead of the one looked at
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto& future = list[i];
    if (i + ahead < list.size()) prefetch_for_write(FutureAccess::state(list[i + ahead]));
    StateBase& state = *FutureAccess::state(future);
    // Every one is waited for (a pool thread helps its pool for each) until the deadline
    // passes; after that, each is only looked at.
    bool done = state.done();
    if (!done && in_time && !waited_for_last) {
      waited_for_last = true;
      in_time = wait_for_state(*FutureAccess::state(list.back()), deadline);
      done = state.done();
    }
    if (!done && in_time) {
      in_time = wait_for_state(state, deadline);
      done = in_time || state.done();
    }
    auto& into = done ? result.done : result.not_done;
    if constexpr (std::is_const_v<List>) {
      into.push_back(future);
    } else {
      into.push_back(std::move(future));
    }
  }
  return result;
}

template <class T>
DoneAndNotDone<T> wait_futures(const std::vector<Future<T>>& futures, steady_time deadline,
                               ReturnWhen return_when) {
  if (return_when == ReturnWhen::all_completed) {
    // Every one must be done: wait for each in turn, with no listener to install and remove.
    // A list without repeats (the usual: every task of a batch) is waited for as it is.
    if (without_repeats(futures)) return wait_for_all<T>(futures, deadline);
    std::vector<Future<T>> unique = unique_futures(futures);
    return wait_for_all<T>(unique, deadline);
  }
  std::vector<Future<T>> unique = unique_futures(futures);
  const std::size_t total = unique.size();
  auto ready = [&](Waiter::Snapshot snap) {
    if (return_when == ReturnWhen::first_completed) return snap.finished > 0 || total == 0;
    return snap.failed > 0 || snap.finished == total;  // first_exception
  };
  {
    Registration<T> registration(unique);
    registration.waiter().wait_until(ready, deadline);
  }
  DoneAndNotDone<T> result;
  for (Future<T>& future : unique) {
    (future.done() ? result.done : result.not_done).push_back(std::move(future));
  }
  return result;
}

}  // namespace detail

// AsCompleted<T>
//
// What as_completed() returns: an input range of Future<T>& in the order the futures finish.
// Not copyable or movable (iterate it where as_completed() returned it).
template <class T>
class AsCompleted {
 public:
  class iterator {
   public:
    using value_type = Future<T>;
    using difference_type = std::ptrdiff_t;
    using reference = Future<T>&;

    iterator() = default;
    reference operator*() const noexcept { return owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.at_end();
    }

   private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* owner) noexcept : owner_(owner) {}
    bool at_end() const noexcept { return owner_->finished(); }
    AsCompleted* owner_ = nullptr;
  };

  AsCompleted(const std::vector<Future<T>>& futures, detail::steady_time deadline)
      : futures_(detail::unique_futures(futures)), registration_(futures_), deadline_(deadline) {}
  AsCompleted(const AsCompleted&) = delete;
  AsCompleted& operator=(const AsCompleted&) = delete;

  // AsCompleted::begin()
  //
  // Waits for the first future to be done (TimeoutError at the deadline). One pass.
  iterator begin() {
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  bool finished() const noexcept { return !current_.valid(); }

  void advance() {
    if (yielded_ == futures_.size()) {
      current_ = Future<T>();
      return;
    }
    detail::Waiter& waiter = registration_.waiter();
    const std::size_t want = yielded_ + 1;
    if (!waiter.wait_until([want](detail::Waiter::Snapshot snap) { return snap.finished >= want; },
                           deadline_)) {
      throw TimeoutError(std::to_string(futures_.size() - yielded_) + " (of " +
                         std::to_string(futures_.size()) + ") futures unfinished");
    }
    auto* state = static_cast<detail::FutureState<T>*>(waiter.finished_at(yielded_));
    state->add_ref();
    current_ = detail::FutureAccess::adopt(state);
    ++yielded_;
  }

  std::vector<Future<T>> futures_;
  detail::Registration<T> registration_;
  detail::steady_time deadline_;
  std::size_t yielded_ = 0;
  Future<T> current_;
};

}  // namespace concur

#endif  // CONCUR_DETAIL_EXECUTOR_WAITER_HPP
