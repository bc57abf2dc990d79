// concur/mp_condition.hpp
//
// concur::mp::Condition, Python's multiprocessing.Condition: a condition variable whose waiters
// and notifiers are threads of any process.
//
//   namespace mp = concur::mp;
//   mp::Condition ready;                   // owns an mp::RLock, as Python's does
//   mp::RawValue<int> items(0);
//   // consumer process:                   // producer process:
//   std::scoped_lock hold(ready);          std::scoped_lock hold(ready);
//   ready.wait_for([&] {                   items.set_value(items.value() + 1);
//     return items.value() > 0; });        ready.notify();
//
// Semantics are concur::Condition's, hence Python's: wait() releases the lock (every level of an
// RLock), sleeps until notified, and takes the lock back; wait(timeout) returns false when it
// timed out; notify(n) wakes n of the threads waiting right now, the longest-waiting first, and
// a notification with nobody waiting is not remembered. Waiting or notifying without holding
// the lock throws UsageError; since mp locks have owners, "holding" is exact here.
//
// The lock. `mp::Condition<>` owns an mp::RLock, in its own block; `mp::Condition c(lock)`
// shares an mp::Lock or mp::RLock (Condition<Lock> or Condition<RLock>, by CTAD), which every
// process must pass for the same lock. Where it lives: as mp::Lock (anonymous and shared with
// the processes forked afterwards, or mp::place and mp::find in a named SharedMemory).
//
// Waiters. The block holds a table of `max_waiters` slots (ConditionOptions, 128 by default, 48
// bytes each); a wait() beyond that many waiting threads throws std::length_error.
//
// A process that dies (detail/shared_waiters.hpp): a waiter killed while it waits is skipped by
// the next notify, which frees its slot, so notify(n) still wakes n live waiters. A holder of
// the lock that dies is reported by the lock (OwnerDied), including to a wait() that is taking
// the lock back: it throws OwnerDied holding the lock, no longer waiting. A sleeping waiter looks
// at the lock at least every 200 ms (SharedWaits::recheck_interval), so a holder's death is
// reported within that time even when nobody else comes by: the first waiter to look takes the
// lock and its wait() throws OwnerDied (unless another thread took the lock first, and got the
// OwnerDied). The death may have cost a notify() the holder was about to make, so the thread
// that gets OwnerDied repairs what the lock guards and calls notify_all() on the conditions
// over that lock, whose waiters then look at the state again. A waiter killed
// after it was notified, before it took the lock back, leaves its notification to the oldest
// live waiter, found within the same 200 ms. A notifier killed between marking a waiter and
// waking it delays that waiter by at most 200 ms.
//
// Linux with a robust futex list, as mp::Lock (std::system_error with ENOSYS elsewhere).
//
// Memory ordering: as concur::Condition's: what a notifier wrote before notify() is visible to
// the waiter it woke once wait() returns, through the lock.

#ifndef CONCUR_MP_CONDITION_HPP
#define CONCUR_MP_CONDITION_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>

#include "concur/condition.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/detail/shared_waiters.hpp"
#include "concur/errors.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

// ConditionOptions
//
// max_waiters: how many threads may wait at once (at least 1).
struct ConditionOptions {
  std::size_t max_waiters = 128;
};

namespace detail_condition {

// The state before the slots: the Condition's own RLock (unused when it shares one) and the
// waiter list's counters.
struct State {
  detail_lock::RecursiveState own_lock;
  concur::detail::SharedWaiterCounts counts;
  std::uint32_t shares_lock = 0;  // 1 when built to share a lock given to its constructor
};

inline constexpr auto kind = concur::detail::SharedKind::condition;

constexpr concur::detail::SharedLayout layout(std::size_t max_waiters) noexcept {
  return {.kind = kind,
          .state_size = sizeof(State),
          .state_align = alignof(State),
          .item_size = sizeof(concur::detail::SharedWaiterSlot),
          .item_align = alignof(concur::detail::SharedWaiterSlot),
          .items = max_waiters};
}

inline std::size_t checked(const ConditionOptions& options) {
  if (options.max_waiters < 1 || options.max_waiters > (1u << 20)) {
    throw std::invalid_argument("Condition: max_waiters must be from 1 to 2^20");
  }
  return options.max_waiters;
}

// How a Condition releases and restores its lock (Python's _release_save, _acquire_restore).
// Their callers hold the lock on entry and exit, which Clang's analysis cannot follow through
// the release and the restore: it is off in these, as in those callers.
template <class L>
struct LockOps;

template <>
struct LockOps<Lock> {
  using Saved = bool;
  static bool owned(const Lock& lock) noexcept { return lock.state_->held_by_caller(); }
  static Saved release_all(Lock& lock) noexcept CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    lock.state_->release();
    return true;
  }
  // Takes the lock back after a wait: looking densely, since a notifier holds it and is about
  // to release it (RobustSpin::dense). OwnerDied as Lock::lock().
  static void restore(Lock& lock, Saved) CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    (void)lock.take(concur::detail::never, concur::detail::RobustSpin::dense);
  }
  static bool holder_died(const Lock& lock) noexcept { return lock.state_->holder_died(); }
};

template <>
struct LockOps<RLock> {
  using Saved = std::uint32_t;
  static bool owned(const RLock& lock) noexcept { return lock.is_owned(); }
  static Saved release_all(RLock& lock) noexcept CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    const std::uint32_t levels = lock.state_->count;
    lock.state_->count = 0;
    lock.state_->lock.release();
    return levels;
  }
  // Takes the lock back with every level, looking densely as Lock's; OwnerDied, holding it with
  // every level, when its holder died.
  static void restore(RLock& lock, Saved levels) CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    try {
      (void)lock.take(concur::detail::never, concur::detail::RobustSpin::dense);
    } catch (const OwnerDied&) {
      lock.state_->count = levels;
      throw;
    }
    lock.state_->count = levels;
  }
  static bool holder_died(const RLock& lock) noexcept { return lock.state_->lock.holder_died(); }
};

}  // namespace detail_condition

// Condition
//
// Python's multiprocessing.Condition over an mp::Lock or mp::RLock. Not movable.
template <class L = RLock>
class CONCUR_CAPABILITY("mutex") Condition : public concur::detail::ConditionWaits<Condition<L>> {
  static_assert(std::is_same_v<L, Lock> || std::is_same_v<L, RLock>,
                "an mp::Condition works with mp::Lock or mp::RLock");
  using Ops = detail_condition::LockOps<L>;
  friend class concur::detail::ConditionWaits<Condition>;
  using State = detail_condition::State;

 public:
  // Condition::shared_size(max_waiters), Condition::shared_alignment
  //
  // The bytes a Condition takes in a SharedMemory (its header included), and the alignment its
  // offset needs.
  static constexpr std::size_t shared_size(
      std::size_t max_waiters = ConditionOptions{}.max_waiters) {
    return detail_condition::layout(max_waiters).size();
  }
  static constexpr std::size_t shared_alignment = detail_condition::layout(1).alignment();

  // Condition::Condition(options)
  //
  // A condition with an RLock of its own, in an anonymous shared block.
  explicit Condition(ConditionOptions options = {}) requires std::is_same_v<L, RLock>
      : block_(std::in_place, detail_condition::layout(detail_condition::checked(options))) {
    build(nullptr);
  }

  // Condition::Condition(lock, options)
  //
  // A condition that shares `lock`, which must outlive it, in an anonymous shared block.
  explicit Condition(L& lock, ConditionOptions options = {})
      : block_(std::in_place, detail_condition::layout(detail_condition::checked(options))) {
    build(&lock);
  }

  // Condition::Condition(mp::place, memory, offset, options)
  // Condition::Condition(mp::place, memory, offset, lock, options)
  //
  // Builds a condition at `offset` in `memory`, with an RLock of its own or sharing `lock`.
  // std::invalid_argument as mp::Lock's.
  Condition(place_t, SharedMemory& memory, std::size_t offset = 0,
            ConditionOptions options = {}) requires std::is_same_v<L, RLock>
      : block_(std::in_place, place, memory, offset,
               detail_condition::layout(detail_condition::checked(options))) {
    build(nullptr);
  }
  Condition(place_t, SharedMemory& memory, std::size_t offset, L& lock,
            ConditionOptions options = {})
      : block_(std::in_place, place, memory, offset,
               detail_condition::layout(detail_condition::checked(options))) {
    build(&lock);
  }

  // Condition::Condition(mp::find, memory, offset)
  // Condition::Condition(mp::find, memory, offset, lock)
  //
  // Uses the condition another process built at `offset` in `memory`: with the RLock in its
  // block, or sharing `lock` (this process's handle of the lock the builder gave). Built the
  // other way, it is refused with std::invalid_argument.
  Condition(find_t, SharedMemory& memory, std::size_t offset = 0) requires std::is_same_v<L, RLock>
      : block_(std::in_place, find, memory, offset, detail_condition::layout(0)) {
    found(nullptr);
  }
  Condition(find_t, SharedMemory& memory, std::size_t offset, L& lock)
      : block_(std::in_place, find, memory, offset, detail_condition::layout(0)) {
    found(&lock);
  }

  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // Condition::lock_ref()
  //
  // The underlying lock.
  [[nodiscard]] L& lock_ref() const noexcept { return *lock_; }

  // Condition::acquire(), acquire(blocking), acquire(timeout), release()
  //
  // Forward to the underlying lock, as Python's Condition does (OwnerDied as the lock's).
  bool acquire() CONCUR_ACQUIRE() { return lock_->acquire(); }
  [[nodiscard]] bool acquire(bool blocking) CONCUR_TRY_ACQUIRE(true) {
    return lock_->acquire(blocking);
  }
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    return lock_->acquire(timeout);
  }
  void release() CONCUR_RELEASE() { lock_->release(); }

  // Condition::lock(), unlock(), try_lock()
  //
  // The standard Lockable names, for std::scoped_lock and std::unique_lock.
  void lock() CONCUR_ACQUIRE() { lock_->lock(); }
  void unlock() CONCUR_RELEASE() { lock_->unlock(); }
  [[nodiscard]] bool try_lock() CONCUR_TRY_ACQUIRE(true) { return lock_->try_lock(); }

  // Condition::wait(), wait(timeout), wait_until(when), wait_for(predicate[, timeout])
  //
  // As concur::Condition's (detail::ConditionWaits, concur/condition.hpp). wait() throws
  // UsageError when the calling thread does not hold the lock; std::length_error when
  // max_waiters threads wait already; OwnerDied, holding the lock and no longer waiting, when a
  // holder of the lock died (see the header comment). Spurious wake-ups do not reach the caller.

  // Condition::notify(n)
  //
  // Wakes up to `n` threads waiting on this condition, in any process (the longest-waiting
  // first); n <= 0 does nothing. Throws UsageError when the calling thread does not hold the
  // lock. Costs no system call when nobody waits.
  void notify(long n = 1) {
    require_owned("cannot notify on un-acquired lock");
    if (n > 0) (void)waiters().notify(static_cast<std::size_t>(n), 0);
  }

  // Condition::notify_all()
  //
  // Wakes every thread waiting on this condition. Throws UsageError when the calling thread
  // does not hold the lock.
  void notify_all() {
    require_owned("cannot notify on un-acquired lock");
    (void)waiters().notify_every(0);
  }

 private:
  void build(L* shared) {
    detail_lock::require_robust_list();
    state_ = new (block_->state()) State();
    state_->shares_lock = shared != nullptr ? 1 : 0;
    for (std::size_t i = 0; i < block_->items_count(); ++i) {
      new (static_cast<concur::detail::SharedWaiterSlot*>(block_->items()) + i)
          concur::detail::SharedWaiterSlot();
    }
    block_->publish();
    bind(shared);
  }

  void found(L* shared) {
    detail_lock::require_robust_list();
    state_ = std::launder(static_cast<State*>(block_->state()));
    if (state_->shares_lock != (shared != nullptr ? 1u : 0u)) {
      throw std::invalid_argument(shared != nullptr
                                      ? "Condition: this one was built with a lock of its own"
                                      : "Condition: this one was built to share a lock; pass it");
    }
    bind(shared);
  }

  void bind(L* shared) {
    if (shared != nullptr) {
      lock_ = shared;
    } else {
      if constexpr (std::is_same_v<L, RLock>) {
        own_lock_.emplace(detail_lock::borrow_t{}, state_->own_lock);
        lock_ = &*own_lock_;
      }
    }
  }

  concur::detail::SharedWaiterList waiters() const noexcept {
    return {state_->counts,
            std::launder(static_cast<concur::detail::SharedWaiterSlot*>(block_->items())),
            block_->items_count(), /*pass_on=*/true};
  }

  void require_owned(const char* message) const {
    if (!Ops::owned(*lock_)) throw UsageError(message);
  }

  // The caller holds the lock on entry and on exit (the run-time check enforces it; the
  // analysis cannot follow the release and the restore).
  //
  // The slot is taken before the lock is released, within one hold: a notify() that follows
  // the release, in any process, finds this waiter. After waking, the waiter takes the lock back
  // before it gives its slot up, so a notifier that marked the slot meanwhile is seen: a waiter
  // that timed out but was notified before it held the lock again returns true, and the
  // notification is not lost to the others.
  //
  // Two deaths end a sleep early, found at a recheck (at least every 200 ms):
  //   - a holder of the lock died: the waiter takes the lock back, which throws OwnerDied, so
  //     the caller learns of it now and repairs what the lock guards (a death that may have
  //     cost a notify() the dead holder was about to make);
  //   - a waiter died notified: the waiter takes the lock back and passes that notification on
  //     (reclaim_dead()); if it went to this waiter, wait() returns true, else it sleeps again,
  //     still in its slot.
  bool wait_deadline(concur::detail::steady_time deadline) CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    require_owned("cannot wait on un-acquired lock");
    if (deadline != concur::detail::never && concur::detail::expired(deadline)) {
      Ops::restore(*lock_, Ops::release_all(*lock_));  // Python's wait(0)
      return false;
    }
    concur::detail::SharedWaiterList list = waiters();
    const std::size_t index = list.enlist();
    if (index == concur::detail::SharedWaiterList::none) {
      throw std::length_error("Condition: max_waiters threads wait already");
    }
    auto look_again = [&] { return Ops::holder_died(*lock_) || list.has_dead_notified(); };
    for (;;) {
      const typename Ops::Saved saved = Ops::release_all(*lock_);
      CONCUR_SCHEDULE_POINT("mp_condition.wait.released");
      const bool notified =
          concur::detail::SharedWaiterList::sleep(list.slot(index), deadline, look_again);
      CONCUR_SCHEDULE_POINT("mp_condition.wait.before_restore");
      try {
        Ops::restore(*lock_, saved);
      } catch (const OwnerDied&) {
        (void)list.delist(index);
        throw;
      }
      if (notified || concur::detail::reached(deadline)) break;
      list.reclaim_dead();
      if (list.notified(index)) break;
    }
    return list.delist(index).notified;
  }

  std::optional<concur::detail::SharedBlock> block_;
  State* state_ = nullptr;
  std::optional<RLock> own_lock_;
  L* lock_ = nullptr;
};

template <class L>
Condition(L&) -> Condition<L>;
template <class L>
Condition(L&, ConditionOptions) -> Condition<L>;

}  // namespace concur::mp

#endif  // CONCUR_MP_CONDITION_HPP
