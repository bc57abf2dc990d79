// concur/detail/lock_word.hpp
//
// The protocol behind concur::Lock and concur::RLock: a mutual-exclusion lock in one 32-bit
// word that threads park on (a futex on Linux).
//
// The word's bits:
//   HELD      the lock is held
//   PARKED    a thread may be asleep on the word: the releaser must wake one
//   STARVING  a parked thread has waited too long: newcomers must queue
//   the rest  optionally, the holder's name (RLock), zero whenever the lock is free
//
// Two layouts. OwnerLayout packs the flags into the low three bits and names the holder in the
// rest; every change is a compare-and-swap. SplitLayout (concur::Lock on Linux) keeps HELD
// alone in the low byte and the other flags in the next one, so that releasing the lock can be
// a plain one-byte store of zero followed by a load of the flags byte, with no locked
// instruction at all. That is what a spin lock's release costs, and under contention it is
// what keeps the lock with one thread for a burst of acquisitions instead of bouncing it
// between cores. The store can race with a thread that sets PARKED and goes to sleep (x86 lets
// the load of the flags pass the store), so a thread about to sleep first calls heavy_fence()
// (membarrier): afterwards the release's store is visible to the kernel's check of the word, or
// the releaser's load sees PARKED. The sleeper pays a few microseconds on a path that costs a
// system call anyway; the release pays nothing. Where membarrier is unavailable the release
// stays a compare-and-swap. One cost of the store: a release cannot tell atomically that the
// lock was held, so two threads racing to release one held lock may both succeed; releasing a
// free lock is still caught.
//
// Taking a free lock is one compare-and-swap.
//
// Contention. Handing a lock to a sleeping thread costs a wake-up system call and a context
// switch per hand-off, which is what makes a lock that parks at once (glibc's) slow. So, as in
// WebKit's WTF::Lock and Rust's parking_lot, a running thread may take the lock ahead of parked
// ones ("barging"), and a thread that finds the lock held spins before it parks: rounds of
// exponentially longer pauses, then a few rounds of yielding the processor, which on an
// oversubscribed machine lets a preempted holder run and finish. Each attempt is a single
// compare-and-swap that guesses the word free, not a load followed by one: a failed attempt
// learns the word just as well, with one cache-line transfer instead of two. The long backoff
// matters as much: a holder that releases and re-acquires at once keeps the lock for a burst
// while spinners pause, and only then does the lock change hands. A thread woken from parking
// spins again before it parks again.
//
// Fairness. Barging can starve a parked thread, so, as Go's sync.Mutex does, a thread that has
// waited more than a millisecond sets STARVING. From then on only threads that have already
// slept may take the lock, newcomers neither barge nor spin but park behind them, and the futex
// wakes sleepers roughly in arrival order. The thread that set STARVING clears it when it gets
// the lock or gives up.
//
// Why no wake-up is lost (Drepper's rule, from "Futexes Are Tricky"). A release clears HELD and
// PARKED and wakes one sleeper if PARKED was set. The woken thread is then the one responsible
// for the others: it cannot know whether more threads sleep, so whatever it does next, taking
// the lock or parking again, it sets PARKED again. A thread only sleeps on a word that has
// PARKED set, and the kernel compares the whole word before it sleeps, so a release in between
// makes it return at once. At worst this costs one spare wake-up at the end of a contended
// spell. A timed waiter that has slept and gives up may have consumed a wake-up meant for
// another: it leaves PARKED set if the lock is held, or takes the free lock itself.
//
// Memory ordering: a successful acquire is an acquire operation and a release a release
// operation on the word (its low byte), so everything done while holding the lock
// happens-before whatever the next holder does.

#ifndef CONCUR_DETAIL_LOCK_WORD_HPP
#define CONCUR_DETAIL_LOCK_WORD_HPP

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <thread>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/heavy_fence.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"

namespace concur::detail {

struct OwnerLayout {
  static constexpr std::uint32_t held = 1;
  static constexpr std::uint32_t parked = 2;
  static constexpr std::uint32_t starving = 4;
  static constexpr int owner_shift = 3;
  static constexpr bool store_release = false;
};

struct SplitLayout {
  static constexpr std::uint32_t held = 1;          // byte 0, alone
  static constexpr std::uint32_t parked = 0x100;    // byte 1
  static constexpr std::uint32_t starving = 0x200;  // byte 1
  static constexpr int owner_shift = 16;            // (no owner: Lock has none)
  static constexpr bool store_release = std::endian::native == std::endian::little;
};

template <class Layout>
class BasicLockWord {
 public:
  static constexpr std::uint32_t held_bit = Layout::held;
  static constexpr std::uint32_t parked_bit = Layout::parked;
  static constexpr std::uint32_t starving_bit = Layout::starving;
  static constexpr std::uint32_t flag_bits = held_bit | parked_bit | starving_bit;
  static constexpr int owner_shift = Layout::owner_shift;

  // How long a parked thread waits before it asks for fairness.
  static constexpr std::chrono::microseconds starvation_threshold{1000};
  // Spinning: rounds of doubling pauses (1, 2, 4, ... up to max_pauses: some 2,000 pause
  // instructions in all, about 30 us where a pause takes 16 ns), then rounds of yield. Long
  // enough that a contended spell with short critical sections runs without system calls,
  // short enough to cost little before parking when the lock is held for long.
  static constexpr int pause_rounds = 11;
  static constexpr int max_pauses = 1024;
  static constexpr int yield_rounds = 4;

  constexpr BasicLockWord() noexcept = default;

  // Every function that takes the lock takes an `owner`: zero, or a holder's name already
  // shifted by owner_shift (OwnerLayout only).

  // Takes the lock if it is free and nobody starves; never blocks.
  bool try_acquire(std::uint32_t owner = 0) noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    while (!(state & (held_bit | starving_bit))) {
      if (word_.compare_exchange_weak(state, state | held_bit | owner, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // One compare-and-swap from "free, nobody waiting" to held.
  bool try_acquire_free(std::uint32_t owner = 0) noexcept {
    std::uint32_t expected = 0;
    return word_.compare_exchange_strong(expected, held_bit | owner, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  // Takes the lock, waiting until `deadline` at most; false when the deadline passed first.
  bool acquire(steady_time deadline, std::uint32_t owner = 0) noexcept {
    if (CONCUR_LIKELY(try_acquire_free(owner))) return true;
    return acquire_slow(deadline, owner);
  }

  // Releases the lock (held by `owner`, for a lock that names its holder); false, and nothing
  // changed, when it was not held.
  bool release(std::uint32_t owner = 0) noexcept {
    if constexpr (Layout::store_release) {
      if (CONCUR_LIKELY(heavy_fence_available)) return release_by_store();
    }
    if (CONCUR_LIKELY(release_if_sole(owner))) return true;
    return release_slow();
  }

  // Releases the lock if `owner` holds it and nobody waits or starves: one compare-and-swap.
  // False, and nothing changed, otherwise (the caller takes the longer way).
  bool release_if_sole(std::uint32_t owner) noexcept {
    std::uint32_t expected = held_bit | owner;
    return word_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                         std::memory_order_relaxed);
  }

  bool locked() const noexcept { return word_.load(std::memory_order_relaxed) & held_bit; }

  // The holder's name as it was given to acquire (zero when free or unnamed).
  std::uint32_t owner() const noexcept {
    return word_.load(std::memory_order_relaxed) & ~flag_bits;
  }

 private:
  static_assert(Layout::store_release
                    ? Layout::held == 1 && ((Layout::parked | Layout::starving) & 0xff) == 0
                    : true,
                "a store release needs HELD alone in the low byte");

  CONCUR_NOINLINE bool acquire_slow(steady_time deadline, std::uint32_t owner) noexcept {
    if (deadline != never && expired(deadline)) return try_acquire(owner);
    if (spin(/*slept=*/false, owner)) return true;
    return park(deadline, owner);
  }

  // Spins while nobody starves, taking the lock as soon as it is free; true once taken. A thread
  // that has slept keeps PARKED set when it takes the lock (see the rule above).
  bool spin(bool slept, std::uint32_t owner) noexcept {
    const std::uint32_t take = held_bit | owner | (slept ? parked_bit : 0);
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    for (int round = 0; round < pause_rounds + yield_rounds; ++round) {
      if (state & starving_bit) return false;
      // One read-modify-write per attempt, guessing that the lock has been released and the
      // other bits are as they were.
      std::uint32_t expected = state & (parked_bit | starving_bit);
      if (word_.compare_exchange_strong(expected, expected | take, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return true;
      }
      state = expected;
      if (!(state & held_bit)) continue;
      if (round < pause_rounds) {
        for (int i = std::min(1 << round, max_pauses); i > 0; --i) cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    return false;
  }

  bool park(steady_time deadline, std::uint32_t owner) noexcept {
    bool slept = false;
    bool set_starving = false;
    steady_time first_sleep{};
    for (;;) {
      std::uint32_t state = word_.load(std::memory_order_relaxed);
      if (!(state & held_bit) && (slept || !(state & starving_bit))) {
        std::uint32_t next = state | held_bit | owner | (slept ? parked_bit : 0);
        if (set_starving) next &= ~starving_bit;
        if (word_.compare_exchange_weak(state, next, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      if (deadline != never && expired(deadline)) return give_up(slept, set_starving, owner);
      std::uint32_t next = state | parked_bit;
      if (slept && !(state & starving_bit) &&
          steady_clock::now() - first_sleep > starvation_threshold) {
        next |= starving_bit;
      }
      if (next != state) {
        if (!word_.compare_exchange_weak(state, next, std::memory_order_relaxed)) continue;
        if ((next & starving_bit) && !(state & starving_bit)) set_starving = true;
      }
      fence_against_store_release();
      if (!slept) first_sleep = steady_clock::now();
      (void)wait_on_until(word_, next, deadline);
      slept = true;
      if (!set_starving && spin(/*slept=*/true, owner)) return true;
    }
  }

  // At the deadline. A waiter that has slept may have consumed the wake-up meant for another
  // and may own the STARVING bit, so it does not simply leave: if the lock is free it takes it
  // (a success at the deadline), otherwise it makes sure PARKED is set, so that the holder wakes
  // the next sleeper, and drops its STARVING bit. Returns whether it took the lock.
  bool give_up(bool slept, bool set_starving, std::uint32_t owner) noexcept {
    if (!slept) return false;
    const std::uint32_t drop = set_starving ? starving_bit : 0;
    bool fenced = false;
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (!(state & held_bit)) {
        if (word_.compare_exchange_weak(state, (state | held_bit | parked_bit | owner) & ~drop,
                                        std::memory_order_acquire, std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      const std::uint32_t next = (state | parked_bit) & ~drop;
      if (next != state && !word_.compare_exchange_weak(state, next, std::memory_order_relaxed)) {
        continue;
      }
      // Like a sleeper, make sure that a release racing with PARKED either saw it or is seen.
      if (fenced || !uses_store_release()) return false;
      fence_against_store_release();
      fenced = true;
      state = word_.load(std::memory_order_relaxed);
    }
  }

  static bool uses_store_release() noexcept {
    return Layout::store_release && heavy_fence_available;
  }

  // Before sleeping on (or leaving PARKED for) a word whose release may be a plain store.
  static void fence_against_store_release() noexcept {
    if (uses_store_release()) heavy_fence();
  }

  // The word's low byte (HELD) and the byte above it (the other flags), as atomic bytes. Bytes
  // of any object may be accessed as unsigned char, so these views alias the word legitimately.
  std::atomic_ref<unsigned char> low_byte() noexcept {
    return std::atomic_ref<unsigned char>(reinterpret_cast<unsigned char*>(&word_)[0]);
  }
  std::atomic_ref<unsigned char> flags_byte() noexcept {
    return std::atomic_ref<unsigned char>(reinterpret_cast<unsigned char*>(&word_)[1]);
  }

  // SplitLayout's release: a store of zero to the low byte, then a look at the flags byte.
  bool release_by_store() noexcept {
    if (!(low_byte().load(std::memory_order_relaxed) & held_bit)) return false;
    low_byte().store(0, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the load stays after the store
    if (CONCUR_LIKELY(flags_byte().load(std::memory_order_relaxed) == 0)) return true;
    wake_after_store();
    return true;
  }

  CONCUR_NOINLINE void wake_after_store() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    while (state & parked_bit) {
      if (word_.compare_exchange_weak(state, state & ~parked_bit, std::memory_order_relaxed)) {
        wake_one(word_);
        return;
      }
    }
  }

  CONCUR_NOINLINE bool release_slow() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    do {
      if (!(state & held_bit)) return false;
      // PARKED goes with HELD and the owner: the thread woken below sets it again (see the
      // rule above).
    } while (!word_.compare_exchange_weak(state, state & starving_bit, std::memory_order_release,
                                          std::memory_order_relaxed));
    if (state & parked_bit) wake_one(word_);
    return true;
  }

  wait_word word_{0};
};

// RLock's word: the holder named in the word, compare-and-swap releases.
using LockWord = BasicLockWord<OwnerLayout>;

// Lock's word: store releases where the futex and membarrier make them safe.
#if CONCUR_HAS_FUTEX
using PlainLockWord = BasicLockWord<SplitLayout>;
#else
using PlainLockWord = BasicLockWord<OwnerLayout>;
#endif

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_LOCK_WORD_HPP
