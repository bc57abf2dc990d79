// concur/mp_semaphore.hpp
//
// concur::mp::Semaphore and mp::BoundedSemaphore: Python's multiprocessing.Semaphore and
// BoundedSemaphore, shared by processes.
//
//   namespace mp = concur::mp;
//   mp::BoundedSemaphore slots(4);        // at most four workers download at a time
//   // in each worker process:
//   for (;;) {
//     std::scoped_lock hold(slots);       // or slots.acquire() ... slots.release()
//     download_next();
//   }
//
// The protocol is concur::Semaphore's (concur/semaphore.hpp), on a word in shared memory with
// the shared futex (detail/shared_waits.hpp).
// Where they live: as mp::Lock (an anonymous block shared with the processes forked afterwards,
// or mp::place and mp::find in a named SharedMemory, behind the header).
//
// A process that dies. A semaphore's units have no owner, so nothing can tell a unit that a
// dead process took from one it gave away: a process killed between its acquire() and its
// release() keeps its unit for ever, as with Python's. What concur does promise: no waiter is
// left asleep by a death, since a process killed between its release() and the wake
// call costs a waiter at most SharedWaits::recheck_interval (200 ms) of delay; a waiter with a
// timeout returns at its timeout. Use an mp::Lock where the holder's death must be known.
//
// Linux; these need no robust futex list (so QEMU's user mode runs them too).
//
// Memory ordering: as the threading primitives', across processes: release() happens-before the
// acquire() that takes its unit.

#ifndef CONCUR_MP_SEMAPHORE_HPP
#define CONCUR_MP_SEMAPHORE_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "concur/detail/deadline.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/detail/shared_waits.hpp"
#include "concur/errors.hpp"
#include "concur/mp_lock.hpp"
#include "concur/semaphore.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

namespace detail_semaphore {

// A semaphore's shared state: the threading semaphore's word, and its bound (the largest
// count for a Semaphore).
struct State {
  State(std::uint32_t value, bool with_bound) noexcept
      : word(value),
        bound(with_bound ? value : concur::detail::SemaphoreWord::count_mask),
        bounded(with_bound) {}
  concur::detail::BasicSemaphoreWord<concur::detail::SharedWaits> word;
  std::uint32_t bound;
  bool bounded;
};

using Home = detail_lock::Home<State, /*robust=*/false>;
inline constexpr auto kind = concur::detail::SharedKind::semaphore;

// What Semaphore and BoundedSemaphore share: everything but the constructors.
class Basic {
 public:
  // Bytes it takes in a SharedMemory (header included), and the alignment its offset needs.
  static constexpr std::size_t shared_size = Home::layout(kind).size();
  static constexpr std::size_t shared_alignment = Home::layout(kind).alignment();

  Basic(const Basic&) = delete;
  Basic& operator=(const Basic&) = delete;

  // acquire(), acquire(blocking), acquire(timeout)
  //
  // Python's acquire(block, timeout), as concur::Semaphore's: blocks until the count is
  // positive and decrements it; with false, only if it is positive now; with a timeout, until
  // it has passed (false; a negative timeout counts as zero).
  bool acquire() noexcept {
    (void)state_->word.acquire(concur::detail::never);
    return true;
  }
  [[nodiscard]] bool acquire(bool blocking) noexcept {
    return blocking ? acquire() : state_->word.try_acquire();
  }
  template <class Rep, class Period>
  [[nodiscard]] bool acquire(std::chrono::duration<Rep, Period> timeout) noexcept {
    return state_->word.acquire(concur::detail::deadline_after(timeout));
  }

  // release(n)
  //
  // Adds `n` (default 1) and wakes up to `n` waiters in any process. `n` < 1 throws
  // std::invalid_argument; past the bound, a BoundedSemaphore throws UsageError (Python's
  // ValueError, "semaphore or lock released too many times") and a Semaphore past 2^31 - 1
  // std::overflow_error, changing nothing.
  void release(std::int64_t n = 1) {
    const std::uint32_t units = concur::detail::checked_release_count(n);
    if (!state_->word.release(units, state_->bound)) {
      if (state_->bounded) throw UsageError("semaphore or lock released too many times");
      throw std::overflow_error("semaphore count overflow");
    }
  }

  // get_value()
  //
  // The count now (Python's get_value()); a snapshot.
  [[nodiscard]] std::int64_t get_value() const noexcept { return state_->word.value(); }

  // lock(), try_lock(), unlock()
  //
  // The standard Lockable names of acquire(), acquire(false) and release(), for
  // std::scoped_lock.
  void lock() noexcept { (void)acquire(); }
  [[nodiscard]] bool try_lock() noexcept { return acquire(false); }
  void unlock() { release(); }

 protected:
  Basic(std::int64_t value, bool bounded)
      : state_(kind, concur::detail::checked_initial_value(value), bounded) {}
  Basic(place_t, SharedMemory& memory, std::size_t offset, std::int64_t value, bool bounded)
      : state_(place, memory, offset, kind, concur::detail::checked_initial_value(value), bounded) {
  }
  Basic(find_t, SharedMemory& memory, std::size_t offset) : state_(find, memory, offset, kind) {}
  ~Basic() = default;

 private:
  Home state_;
};

}  // namespace detail_semaphore

// Semaphore
//
// Python's multiprocessing.Semaphore(value=1). Not movable.
class Semaphore : public detail_semaphore::Basic {
 public:
  // Semaphore(value), Semaphore(mp::place, memory, offset, value), Semaphore(mp::find, ...)
  //
  // A semaphore with count `value` (std::invalid_argument when negative), in an anonymous
  // shared block, or placed in or found in a named SharedMemory (as mp::Lock's).
  explicit Semaphore(std::int64_t value = 1) : Basic(value, false) {}
  Semaphore(place_t, SharedMemory& memory, std::size_t offset = 0, std::int64_t value = 1)
      : Basic(place, memory, offset, value, false) {}
  Semaphore(find_t, SharedMemory& memory, std::size_t offset = 0) : Basic(find, memory, offset) {}
};

// BoundedSemaphore
//
// Python's multiprocessing.BoundedSemaphore(value=1): release() past the initial value throws
// UsageError. Not movable.
class BoundedSemaphore : public detail_semaphore::Basic {
 public:
  // BoundedSemaphore(value), and the place and find forms
  //
  // As Semaphore's; the bound is `value`.
  explicit BoundedSemaphore(std::int64_t value = 1) : Basic(value, true) {}
  BoundedSemaphore(place_t, SharedMemory& memory, std::size_t offset = 0, std::int64_t value = 1)
      : Basic(place, memory, offset, value, true) {}
  BoundedSemaphore(find_t, SharedMemory& memory, std::size_t offset = 0)
      : Basic(find, memory, offset) {}
};

}  // namespace concur::mp

#endif  // CONCUR_MP_SEMAPHORE_HPP
