// concur/mp_lock.hpp
//
// concur::mp::Lock and concur::mp::RLock, Python's multiprocessing.Lock and RLock: locks shared
// by processes, which a process killed while holding one never leaves locked.
//
//   namespace mp = concur::mp;
//   mp::Lock lock;                        // before the children are started
//   concur::Process child([&] {
//     std::scoped_lock hold(lock);        // excludes the parent and every other child
//     ...
//   });
//
// Where they live. A Lock made with no arguments lives in anonymous shared memory (a block cut
// from a chunk of 64 KiB that this process mapped, never handed out twice: see
// detail/shared_arena.hpp), so it is shared with every process forked after it was made (a
// Process, a Pool's workers, concur::fork()), as Python's are. `mp::Lock(mp::place, memory,
// offset)` builds one in a named mp::SharedMemory instead, and `mp::Lock(mp::find, memory, offset)`
// uses the one another process built there (see detail/shared_block.hpp: the block starts with a
// header, and a block of another kind, layout or version is refused with std::invalid_argument).
// The SharedMemory must outlive the Lock that uses it.
//
// A holder that dies. When a thread or process ends while holding the lock (SIGKILL, a crash,
// _exit), the kernel marks the lock (Linux's robust futex list: detail/robust_lock.hpp). The
// next acquire takes the lock and throws concur::OwnerDied: its caller holds the lock and
// repairs what it protects, then releases it, and the lock is whole again. So nothing ever hangs
// on a dead process; Python's multiprocessing.Lock, a semaphore with no owner, hangs instead.
//
//   try {
//     lock.acquire();
//   } catch (const concur::OwnerDied&) {
//     repair(shared_state);              // the lock is held here
//   }
//   ... lock.release();
//
// A lock with an owner. The kernel can only mark a lock that names its holder, so these locks
// are owned: only the thread that acquired one may release it (UsageError otherwise), where
// Python lets any process release a multiprocessing.Lock. A thread that acquires a Lock it
// already holds waits for itself, as in Python (forever, or until its timeout).
//
// Linux with glibc, on targets where glibc's robust list is doubly linked (x86-64, arm64 and
// most 64-bit ones). Elsewhere, and where the kernel or an emulator has no robust list, the
// constructors throw std::system_error(ENOSYS): concur offers no process-shared lock that a
// dead process could leave locked.
//
// Memory ordering: as concur::Lock's. A successful acquire is an acquire operation and a
// release a release operation, across processes: what one holder wrote in shared memory
// happens-before what the next holder reads.

#ifndef CONCUR_MP_LOCK_HPP
#define CONCUR_MP_LOCK_HPP

#include "concur/detail/config.hpp"

#if !defined(__linux__)
#error "concur/mp_lock.hpp needs Linux (robust futexes)"
#endif

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_lock.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/errors.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

namespace detail_condition {
template <class L>
struct LockOps;  // mp::Condition's access to the locks' state (mp_condition.hpp)
}  // namespace detail_condition

namespace detail_lock {

using concur::detail::RobustAcquired;
using concur::detail::RobustSpin;

// Throws ENOSYS where a process-shared lock could not be recovered from a dead holder.
inline void require_robust_list() {
  if (!concur::detail::robust_list_available()) {
    concur::detail::throw_system_error(ENOSYS, "mp: no robust futex list on this system");
  }
}

// Builds (from `args`) or finds a `State` in its own block, or borrows one that lives in another
// object's block (the lock of an mp::Value or mp::Array). With `robust`, only where a robust
// futex list is (ENOSYS elsewhere).
template <class State, bool robust = true>
class Home {
 public:
  template <class... Args>
  explicit Home(concur::detail::SharedKind kind, Args&&... args)
      : block_(std::in_place, layout(kind)) {
    build(std::forward<Args>(args)...);
  }
  template <class... Args>
  Home(place_t, SharedMemory& memory, std::size_t offset, concur::detail::SharedKind kind,
       Args&&... args)
      : block_(std::in_place, place, memory, offset, layout(kind)) {
    build(std::forward<Args>(args)...);
  }
  Home(find_t, SharedMemory& memory, std::size_t offset, concur::detail::SharedKind kind)
      : block_(std::in_place, find, memory, offset, layout(kind)) {
    if (robust) require_robust_list();
    state_ = std::launder(static_cast<State*>(block_->state()));
  }
  explicit Home(State& borrowed) noexcept : state_(&borrowed) {}

  static constexpr concur::detail::SharedLayout layout(concur::detail::SharedKind kind) {
    return {.kind = kind, .state_size = sizeof(State), .state_align = alignof(State)};
  }

  State& operator*() const noexcept { return *state_; }
  State* operator->() const noexcept { return state_; }

 private:
  template <class... Args>
  void build(Args&&... args) {
    if (robust) require_robust_list();
    state_ = new (block_->state()) State(std::forward<Args>(args)...);
    block_->publish();
  }

  std::optional<concur::detail::SharedBlock> block_;
  State* state_ = nullptr;
};

// The state of an RLock: the robust word and the holder's recursion count. Only the holder
// reads or writes the count, and holders follow one another through the word's acquire and
// release, so a plain integer serves.
struct RecursiveState {
  concur::detail::RobustLock lock;
  std::uint32_t count = 0;
};

struct borrow_t {
  explicit borrow_t() = default;
};

}  // namespace detail_lock

// Lock
//
// Python's multiprocessing.Lock, owned and recoverable (see the header comment). Not movable.
class CONCUR_CAPABILITY("mutex") Lock {
  using State = concur::detail::RobustLock;
  static constexpr auto kind = concur::detail::SharedKind::lock;

 public:
  // Lock::shared_size, Lock::shared_alignment
  //
  // The bytes a Lock takes in a SharedMemory (its header included), and the alignment its
  // offset needs.
  static constexpr std::size_t shared_size = detail_lock::Home<State>::layout(kind).size();
  static constexpr std::size_t shared_alignment =
      detail_lock::Home<State>::layout(kind).alignment();

  // Lock::Lock()
  //
  // An unlocked lock in anonymous shared memory, shared with the processes forked from now
  // on. Throws std::system_error: ENOSYS without a robust futex list, or the
  // error of mmap(2).
  Lock() : state_(kind) {}

  // Lock::Lock(mp::place, memory, offset)
  //
  // Builds an unlocked lock at `offset` in `memory`, for other processes to find. Throws
  // std::invalid_argument when the offset is misaligned, the block too small, or a concur
  // object is already there.
  Lock(place_t, SharedMemory& memory, std::size_t offset = 0)
      : state_(place, memory, offset, kind) {}

  // Lock::Lock(mp::find, memory, offset)
  //
  // Uses the lock another process built at `offset` in `memory`. Throws std::invalid_argument
  // when no Lock of this build's layout is there.
  Lock(find_t, SharedMemory& memory, std::size_t offset = 0) : state_(find, memory, offset, kind) {}

  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Lock::~Lock()
  //
  // Unmaps the lock (other processes keep theirs). Destroyed while the calling thread holds it,
  // the lock is marked as a dead holder's: the next acquirer gets OwnerDied.
  ~Lock() { state_->abandon(); }

  // Lock::acquire()
  //
  // Blocks until the lock is acquired; returns true. Throws OwnerDied, holding the lock, when
  // the previous holder died holding it.
  bool acquire() CONCUR_ACQUIRE() { return take(concur::detail::never); }

  // Lock::acquire(blocking)
  //
  // With `blocking` true, as acquire(). With false, takes the lock only if it is free now.
  [[nodiscard]] bool acquire(bool blocking) CONCUR_TRY_ACQUIRE(true) {
    return take(blocking ? concur::detail::never : concur::detail::steady_time::min());
  }

  // Lock::acquire(timeout)
  //
  // Blocks until the lock is acquired (true) or `timeout` has passed (false). A negative
  // timeout throws std::invalid_argument (Python's ValueError). OwnerDied as acquire().
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    concur::detail::require_non_negative(timeout, "Lock.acquire: timeout must be non-negative");
    return take(concur::detail::deadline_after(timeout));
  }

  // Lock::release()
  //
  // Releases the lock and wakes one waiter, in any process. Throws UsageError unless the
  // calling thread holds it.
  void release() CONCUR_RELEASE() {
    if (!state_->held_by_caller()) {
      throw UsageError(state_->locked() ? "release of a mp.Lock held by another thread"
                                        : "release unlocked lock");
    }
    state_->release();
  }

  // Lock::locked()
  //
  // Whether some thread of some process holds the lock right now; a snapshot.
  [[nodiscard]] bool locked() const noexcept { return state_->locked(); }

  // Lock::lock(), Lock::try_lock(), Lock::unlock()
  //
  // The standard Lockable names of acquire(), acquire(false) and release(), for
  // std::scoped_lock and std::unique_lock. lock() and try_lock() throw OwnerDied as acquire().
  void lock() CONCUR_ACQUIRE() { (void)take(concur::detail::never); }
  [[nodiscard]] bool try_lock() CONCUR_TRY_ACQUIRE(true) { return acquire(false); }
  void unlock() CONCUR_RELEASE() { release(); }

  // Lock::try_lock_for(), Lock::try_lock_until()
  //
  // The standard TimedLockable members: a zero or negative duration tries once; a clock other
  // than steady_clock is followed as the standard asks.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout)
      CONCUR_TRY_ACQUIRE(true) {
    return take(concur::detail::deadline_after(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> when)
      CONCUR_TRY_ACQUIRE(true) {
    for (;;) {
      if (take(concur::detail::to_steady_deadline(when))) return true;
      if (concur::detail::reached(when)) return false;
    }
  }

 private:
  CONCUR_ALWAYS_INLINE bool take(concur::detail::steady_time deadline,
                                 detail_lock::RobustSpin spin = detail_lock::RobustSpin::spaced)
      CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    switch (state_->acquire_until(deadline, spin)) {
      case detail_lock::RobustAcquired::taken:
        return true;
      case detail_lock::RobustAcquired::owner_died:
        throw OwnerDied();
      case detail_lock::RobustAcquired::timed_out:
        break;
    }
    return false;
  }

  template <class>
  friend struct detail_condition::LockOps;

  detail_lock::Home<State> state_;
};

// RLock
//
// Python's multiprocessing.RLock: the thread that holds it may acquire it again; it is free once
// that thread has released it as many times. Recoverable as Lock is: when the holder died, the
// next acquirer gets OwnerDied holding the lock once (its count is 1, whatever the dead holder's
// was). Not movable.
class CONCUR_CAPABILITY("mutex") CONCUR_REENTRANT_CAPABILITY RLock {
  using State = detail_lock::RecursiveState;
  static constexpr auto kind = concur::detail::SharedKind::rlock;

 public:
  // RLock::shared_size, RLock::shared_alignment
  //
  // As Lock's.
  static constexpr std::size_t shared_size = detail_lock::Home<State>::layout(kind).size();
  static constexpr std::size_t shared_alignment =
      detail_lock::Home<State>::layout(kind).alignment();

  // RLock::RLock(), RLock(mp::place, memory, offset), RLock(mp::find, memory, offset)
  //
  // As Lock's constructors.
  RLock() : state_(kind) {}
  RLock(place_t, SharedMemory& memory, std::size_t offset = 0)
      : state_(place, memory, offset, kind) {}
  RLock(find_t, SharedMemory& memory, std::size_t offset = 0)
      : state_(find, memory, offset, kind) {}

  // RLock(borrow, state): the lock of an mp::Value or mp::Array, in that object's block.
  RLock(detail_lock::borrow_t, detail_lock::RecursiveState& state) noexcept : state_(state) {}

  RLock(const RLock&) = delete;
  RLock& operator=(const RLock&) = delete;

  // RLock::~RLock()
  //
  // As Lock's: held by the caller, the lock is marked as a dead holder's.
  ~RLock() { state_->lock.abandon(); }

  // RLock::acquire()
  //
  // Takes the lock, or takes it once more when the calling thread holds it; returns true.
  // Throws OwnerDied, holding the lock once, when the previous holder died holding it;
  // std::overflow_error past 2^32 - 1 holds.
  bool acquire() CONCUR_ACQUIRE() { return take(concur::detail::never); }

  // RLock::acquire(blocking), RLock::acquire(timeout)
  //
  // As Lock's, and as acquire() for the holder.
  [[nodiscard]] bool acquire(bool blocking) CONCUR_TRY_ACQUIRE(true) {
    return take(blocking ? concur::detail::never : concur::detail::steady_time::min());
  }
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) CONCUR_TRY_ACQUIRE(true) {
    concur::detail::require_non_negative(timeout, "RLock.acquire: timeout must be non-negative");
    return take(concur::detail::deadline_after(timeout));
  }

  // RLock::release()
  //
  // Gives up one hold; the last frees the lock. Throws UsageError unless the calling thread
  // holds it (Python: "cannot release un-acquired lock").
  void release() CONCUR_RELEASE() {
    if (!state_->lock.held_by_caller()) throw UsageError("cannot release un-acquired lock");
    if (--state_->count == 0) state_->lock.release();
  }

  // RLock::locked()
  //
  // Whether some thread of some process holds the lock right now; a snapshot.
  [[nodiscard]] bool locked() const noexcept { return state_->lock.locked(); }

  // RLock::is_owned()
  //
  // Whether the calling thread holds it (Python's RLock._is_owned(), which Condition uses).
  [[nodiscard]] bool is_owned() const noexcept { return state_->lock.held_by_caller(); }

  // RLock::lock(), try_lock(), unlock(), try_lock_for(), try_lock_until()
  //
  // The standard names, as Lock's.
  void lock() CONCUR_ACQUIRE() { (void)take(concur::detail::never); }
  [[nodiscard]] bool try_lock() CONCUR_TRY_ACQUIRE(true) { return acquire(false); }
  void unlock() CONCUR_RELEASE() { release(); }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout)
      CONCUR_TRY_ACQUIRE(true) {
    return take(concur::detail::deadline_after(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(std::chrono::time_point<Clock, Duration> when)
      CONCUR_TRY_ACQUIRE(true) {
    for (;;) {
      if (take(concur::detail::to_steady_deadline(when))) return true;
      if (concur::detail::reached(when)) return false;
    }
  }

 private:
  bool take(concur::detail::steady_time deadline,
            detail_lock::RobustSpin spin = detail_lock::RobustSpin::spaced)
      CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    if (state_->lock.held_by_caller()) {
      if (state_->count == std::numeric_limits<std::uint32_t>::max()) {
        throw std::overflow_error("RLock: too many acquisitions");
      }
      ++state_->count;
      return true;
    }
    switch (state_->lock.acquire_until(deadline, spin)) {
      case detail_lock::RobustAcquired::taken:
        state_->count = 1;
        return true;
      case detail_lock::RobustAcquired::owner_died:
        state_->count = 1;
        throw OwnerDied();
      case detail_lock::RobustAcquired::timed_out:
        break;
    }
    return false;
  }

  template <class>
  friend struct detail_condition::LockOps;

  detail_lock::Home<State> state_;
};

}  // namespace concur::mp

#endif  // CONCUR_MP_LOCK_HPP
