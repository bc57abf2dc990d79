// concur/detail/lock_word.hpp
//
// The protocol behind concur::Lock and concur::RLock: a mutual-exclusion lock in one 32-bit
// word that threads park on (a futex on Linux).
//
// The word's bits:
//   HELD      the lock is held
//   PARKED    a thread may be asleep on the word: the releaser must wake one
//   STARVING  a parked thread has waited too long: newcomers must queue
//   CAS_MODE  (SplitLayout only) release by compare-and-swap, not by a store: see below
//   the top 16 bits: with STARVING, the fork generation of the thread that set it (see
//   "Across fork()"); zero otherwise
//
// Two layouts. CasLayout packs the flags into the low three bits; every change is a
// compare-and-swap. SplitLayout (concur::Lock on Linux) keeps HELD
// alone in the low byte and the other flags in the byte above it, so that an uncontended
// release can be a plain one-byte store with no locked instruction: 13.6 ns for an acquire and
// release on the machine the library is tuned on, against 24 ns with a compare-and-swap
// release and 27.5 ns for std::mutex.
//
// Taking a free lock is one compare-and-swap.
//
// Spinning. Handing a lock to a sleeping thread costs a wake-up system call and a context
// switch, which is what makes a lock that parks at once (glibc's) slow under contention. So,
// as in WebKit's WTF::Lock and Rust's parking_lot, a running thread may take the lock ahead of
// parked ones ("barging"), and a thread that finds the lock held spins before it parks. The
// spin is a detail::SpinWait: doubling pauses bounded by spin_budget of time and by the
// caller's deadline, never ending in sched_yield(), with attempts further apart the longer it
// spins. Each attempt is a single compare-and-swap
// that guesses the word free, not a load followed by one: a failed attempt learns the word
// just as well, with one cache-line transfer instead of two. A thread woken from parking spins
// again before it parks again.
//
// Fairness: what a Lock promises. No FIFO order: a running thread may overtake parked ones
// (barging). But no waiter is overtaken for ever, as in Go's sync.Mutex: a parked thread that
// wakes and finds the lock taken more than starvation_threshold (1 ms) after it first slept
// sets STARVING. While STARVING is set, no newcomer takes the lock, even a free one:
// acquire(false) and try_lock() fail, and acquire() neither barges nor spins but parks. Only
// threads that have already slept in their current acquire may take it; the futex wakes
// sleepers of equal priority in the order they went to sleep; and a thread that got the lock
// and asks again is a newcomer and queues behind. So the starving thread is overtaken only by
// threads that were already waiting when it starved, not by threads that keep arriving. (A
// timed waiter at its deadline, having slept, may take a free lock regardless: that ends its
// wait.) The thread that set STARVING clears it when it gets the lock or gives up.
//
// Why no wake-up is lost (Drepper's rule, from "Futexes Are Tricky"). A release clears HELD and
// PARKED and wakes one sleeper if PARKED was set. The woken thread is then the one responsible
// for the others: it cannot know whether more threads sleep, so whatever it does next, taking
// the lock or parking again, it sets PARKED again. A thread only sleeps on a word that has
// PARKED set, and the kernel compares the whole word before it sleeps, so a release in between
// makes it return at once. A timed waiter that has slept and gives up may have consumed a
// wake-up meant for another: it takes the lock if it is free, or leaves PARKED set if not.
//
// The store release, and why it needs no fence. With compare-and-swap releases the above is
// the whole argument: every change of the word is a read-modify-write, totally ordered. A
// store release is not, and on x86 the load that follows the store can be satisfied before
// the store leaves the store buffer. The release (release_by_store) therefore goes:
//   L   load the word; if byte 1 is non-zero, release by compare-and-swap instead;
//   S   store 0 to byte 0 (release order);
//   L2  load byte 1 (never before S: the order in the code is what makes this work);
//       if non-zero, clear PARKED with a read-modify-write and wake one if it was set.
// And a waiter that sets PARKED (park, give_up) also sets CAS_MODE in the same
// compare-and-swap; a CAS release that finds neither PARKED nor STARVING clears CAS_MODE, so a
// lock whose contention has passed goes back to store releases. Take a releaser R and a waiter
// P whose compare-and-swap C_P sets PARKED while R holds the lock.
//   - If L saw byte 1 non-zero, R releases by compare-and-swap: ordered with C_P.
//   - If L2 saw byte 1 non-zero, R's read-modify-write comes after S (a locked instruction
//     drains the store buffer); it is ordered with C_P, so it either sees PARKED and wakes, or
//     comes first, and then S is visible to C_P, whose expected value (HELD set) fails.
//   - If L2 saw byte 1 zero although C_P set it, then L2 read the word before the first
//     compare-and-swap C_M of R's holding period that changed byte 1 (L saw it zero, and only a
//     release clears a flag). C_M set CAS_MODE, and the thread M that made it owes a rescue:
//     it re-reads the word no sooner than rescue_delay after C_M, before it sleeps untimed or
//     leaves. S was issued before L2, so by then it is visible (a store buffer drains in
//     nanoseconds; an interrupt or a context switch drains it at once). Then M either finds the
//     lock free and takes it keeping PARKED, so that its release wakes P, or finds it held by a
//     later holder, whose acquire kept PARKED and whose release therefore wakes, or finds PARKED
//     cleared by a release that woke a thread now responsible in turn. M keeps its promise by
//     sleeping its first sleeps with a timeout at C_M + rescue_delay (and, if its own deadline
//     comes first, by waiting that long in give_up, so a timed acquire that turned CAS mode on
//     may return up to rescue_delay late). A waiter that finds CAS_MODE already set sleeps
//     untimed: M covers it, and any release that loads the word after C_M takes the CAS path.
//   - If R is held up between L and S (preempted for 10 ms, say), M's rescue finds the lock
//     still held and M sleeps untimed; R's L2 then runs after C_M and sees it.
//   - Two releases before a woken thread runs: the first clears PARKED and wakes P; a barger's
//     CAS release finds no PARKED and clears CAS_MODE; the next holder releases by store. P, if
//     it parks again, sets CAS_MODE itself and owes the rescue; if it takes the lock, it keeps
//     PARKED. Either way the sleepers behind it are P's responsibility, as in Drepper's rule.
// The cost of entering CAS mode is at most one timed futex wait, rescue_delay long, and only
// when nobody wakes M first; there is no fence and no membarrier. The argument uses x86's
// total store order (a load may pass an earlier store to another address, nothing else), so
// store releases are used on x86 only; elsewhere SplitLayout releases by compare-and-swap. A
// store release cannot tell atomically that the lock was held, so two threads racing to release
// one held lock (a bug) may both succeed; releasing a free lock is still caught.
//
// Across fork(). The child gets a copy of the word with only the forking thread: a STARVING
// flag set by a parent's waiter has no owner there to clear it, and newcomers would queue
// behind nobody for ever (found by forking while a waiter starved: the child's release left
// the word at STARVING | CAS_MODE, and its next acquire slept for good). So the waiter that
// sets STARVING stamps the word's top half with its process's fork generation (at_fork.hpp),
// and whoever reads STARVING with another generation clears it before going on, in the same
// compare-and-swap way as every flag change. A copied PARKED flag only costs a wake-up of
// nobody, and a copied CAS_MODE a compare-and-swap release, until a release clears them. (A
// chain of 65,536 forks brings a generation round again; a copy that old is not a concern.)
//
// Memory ordering: a successful acquire is an acquire operation and a release a release
// operation on the word (its low byte), so everything done while holding the lock
// happens-before whatever the next holder does. The flag updates order nothing (relaxed).

#ifndef CONCUR_DETAIL_LOCK_WORD_HPP
#define CONCUR_DETAIL_LOCK_WORD_HPP

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"

namespace concur::detail {

// atomic_byte_ref: atomic access to one byte of a wider object, the byte views of SplitLayout's
// store release. This is the one place where concur needs std::atomic_ref, which not every
// C++20 standard library has: libc++ gained it only in version 19. Where the library has it
// (__cpp_lib_atomic_ref: libstdc++ from GCC 10, libc++ from 19), atomic_byte_ref is
// std::atomic_ref<unsigned char>; elsewhere a class with the same two members on the GCC and
// Clang __atomic builtins, which is what both libraries' atomic_ref is made of, so the code
// generated is the same.
#if defined(__cpp_lib_atomic_ref)
using atomic_byte_ref = std::atomic_ref<unsigned char>;
#elif defined(__GNUC__) || defined(__clang__)
class atomic_byte_ref {
 public:
  explicit atomic_byte_ref(unsigned char& byte) noexcept : byte_(&byte) {}

  // atomic_byte_ref::store()
  //
  // Stores `value` into the byte with `order` (relaxed, release or seq_cst).
  void store(unsigned char value, std::memory_order order) const noexcept {
    __atomic_store_n(byte_, value, builtin_order(order));
  }

  // atomic_byte_ref::load()
  //
  // Loads the byte with `order` (relaxed, acquire or seq_cst).
  unsigned char load(std::memory_order order) const noexcept {
    return __atomic_load_n(byte_, builtin_order(order));
  }

 private:
  // The builtins' constants; a constant `order` folds to one of them when inlined.
  static constexpr int builtin_order(std::memory_order order) noexcept {
    switch (order) {
      case std::memory_order_relaxed:
        return __ATOMIC_RELAXED;
      case std::memory_order_consume:
      case std::memory_order_acquire:
        return __ATOMIC_ACQUIRE;
      case std::memory_order_release:
        return __ATOMIC_RELEASE;
      case std::memory_order_acq_rel:
        return __ATOMIC_ACQ_REL;
      default:
        return __ATOMIC_SEQ_CST;
    }
  }

  unsigned char* byte_;
};
#else
#error "concur needs std::atomic_ref or the GCC/Clang __atomic builtins"
#endif

struct CasLayout {
  static constexpr std::uint32_t held = 1;
  static constexpr std::uint32_t parked = 2;
  static constexpr std::uint32_t starving = 4;
  static constexpr std::uint32_t cas_mode = 0;  // always compare-and-swap
  static constexpr bool store_release = false;
};

struct SplitLayout {
  static constexpr std::uint32_t held = 1;          // byte 0, alone
  static constexpr std::uint32_t parked = 0x100;    // byte 1
  static constexpr std::uint32_t starving = 0x200;  // byte 1
  static constexpr std::uint32_t cas_mode = 0x400;  // byte 1
#if defined(__x86_64__) || defined(__i386__)
  static constexpr bool store_release = true;
#else
  static constexpr bool store_release = false;
#endif
};

template <class Layout>
class BasicLockWord {
 public:
  static constexpr std::uint32_t held_bit = Layout::held;
  static constexpr std::uint32_t parked_bit = Layout::parked;
  static constexpr std::uint32_t starving_bit = Layout::starving;
  static constexpr std::uint32_t cas_mode_bit = Layout::cas_mode;
  // STARVING's stamp: the setter's fork generation (see "Across fork()").
  static constexpr unsigned generation_shift = 16;
  static constexpr std::uint32_t generation_bits = 0xffff0000u;
  static constexpr std::uint32_t starving_bits = starving_bit | generation_bits;
  static_assert(((Layout::held | Layout::parked | Layout::starving | Layout::cas_mode) &
                 generation_bits) == 0,
                "the flags stay out of the generation's half of the word");

  // STARVING as a waiter of this process sets it: the flag and the stamp.
  static std::uint32_t starving_stamp() noexcept {
    return starving_bit | (fork_generation() << generation_shift);
  }

  // How long a parked thread waits before it asks for fairness.
  static constexpr std::chrono::microseconds starvation_threshold{1000};
  // How long a thread that finds the lock held spins before it parks (less if its deadline
  // comes first). A futex hand-off costs some 5-10 us of system calls and a context switch on
  // both sides, so a spin of about twice that pays off whenever the holder is running and its
  // critical section is short, and costs little when the lock is held for long. When the holder
  // is descheduled, the spinner's core is better given back soon: the budget is time, not
  // rounds, so it stays short on a busy machine.
  static constexpr std::chrono::microseconds spin_budget{20};
  // How long after turning CAS mode on a waiter re-reads the word (see "The store release").
  static constexpr std::chrono::microseconds rescue_delay{100};

  constexpr BasicLockWord() noexcept = default;

  // BasicLockWord::try_acquire()
  //
  // Takes the lock if it is free and nobody starves; never blocks.
  bool try_acquire() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    // starving_here() first: it may reload `state`, and HELD is then tested on the new value
    // (tested before, a word taken meanwhile would be "taken" again by the no-op CAS below).
    while (!starving_here(state) && !(state & held_bit)) {
      CONCUR_SCHEDULE_POINT("lock.try_acquire.before_cas");
      if (word_.compare_exchange_weak(state, state | held_bit, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // BasicLockWord::try_acquire_free()
  //
  // One compare-and-swap from "free, no flags" to held.
  bool try_acquire_free() noexcept {
    CONCUR_SCHEDULE_POINT("lock.acquire.before_cas");
    std::uint32_t expected = 0;
    return word_.compare_exchange_strong(expected, held_bit, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  // BasicLockWord::acquire()
  //
  // Takes the lock, waiting until `deadline` at most; false when the deadline passed first.
  bool acquire(steady_time deadline) noexcept {
    if (CONCUR_LIKELY(try_acquire_free())) return true;
    return acquire_slow(deadline);
  }

  // BasicLockWord::release()
  //
  // Releases the lock; false, and nothing changed, when it was not held.
  bool release() noexcept {
    if constexpr (Layout::store_release) {
      return release_by_store();
    } else {
      if (CONCUR_LIKELY(release_if_sole())) return true;
      return release_slow();
    }
  }

  // BasicLockWord::release_if_sole()
  //
  // Releases the lock if it is held and no flag is set: one compare-and-swap. False, and
  // nothing changed, otherwise (the caller takes the longer way).
  bool release_if_sole() noexcept {
    CONCUR_SCHEDULE_POINT("lock.release.before_cas");
    std::uint32_t expected = held_bit;
    return word_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                         std::memory_order_relaxed);
  }

  // BasicLockWord::locked()
  //
  // Whether the lock is held right now.
  bool locked() const noexcept { return word_.load(std::memory_order_relaxed) & held_bit; }

 private:
  static_assert(Layout::store_release
                    ? Layout::held == 1 &&
                          ((Layout::parked | Layout::starving | Layout::cas_mode) & 0xff) == 0 &&
                          std::endian::native == std::endian::little
                    : true,
                "a store release needs HELD alone in the low byte");

  static constexpr std::uint32_t byte1_flags = parked_bit | starving_bit | cas_mode_bit;

  CONCUR_NOINLINE bool acquire_slow(steady_time deadline) noexcept {
    if (deadline != never && expired(deadline)) return try_acquire();
    if (spin(deadline, /*slept=*/false)) return true;
    return park(deadline);
  }

  // Spins while nobody starves, taking the lock as soon as it is free, for spin_budget at most
  // and never past `deadline`; true once taken. A thread that has slept keeps PARKED set when
  // it takes the lock (Drepper's rule).
  bool spin(steady_time deadline, bool slept) noexcept {
    const std::uint32_t take = held_bit | (slept ? parked_bit : 0);
    SpinWait wait(deadline, spin_budget);
    unsigned burst = 1;  // SpinWait rounds per attempt
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (starving_here(state)) return false;
      // One read-modify-write per attempt, guessing that the lock has been released and the
      // flags are as they were.
      std::uint32_t expected = state & (parked_bit | cas_mode_bit);
      CONCUR_SCHEDULE_POINT("lock.spin.before_cas");
      if (word_.compare_exchange_strong(expected, expected | take, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return true;
      }
      state = expected;
      if (!(state & held_bit)) continue;
      // Back off longer after each failed attempt once the rounds are at their longest (up to
      // 16 rounds, some 1,000 pauses, between attempts): a holder that releases and takes the
      // lock again at once keeps it for a burst instead of losing the cache line to spinners.
      for (unsigned i = 0; i < burst; ++i) {
        if (!wait.pause()) return false;
      }
      if (wait.rounds() >= 7 && burst < 16) burst *= 2;
    }
  }

  // Parks until the lock is taken or `deadline` passes (then give_up decides).
  bool park(steady_time deadline) noexcept {
    bool slept = false;
    bool set_starving = false;
    steady_time first_sleep{};
    steady_time rescue_at{};  // while not {}, this thread owes a re-read at that time
    for (;;) {
      std::uint32_t state = word_.load(std::memory_order_relaxed);
      const bool starving = starving_here(state);
      if (!(state & held_bit) && (slept || !starving)) {
        std::uint32_t next = state | held_bit | (slept ? parked_bit : 0);
        if (set_starving) next &= ~starving_bits;
        CONCUR_SCHEDULE_POINT("lock.park.before_take");
        if (word_.compare_exchange_weak(state, next, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      if (deadline != never && expired(deadline)) {
        return give_up(slept, set_starving, rescue_at);
      }
      std::uint32_t next = state | parked_bit | cas_mode_bit;
      if (slept && !starving && steady_clock::now() - first_sleep > starvation_threshold) {
        next |= starving_stamp();
      }
      if (next != state) {
        CONCUR_SCHEDULE_POINT("lock.park.before_flag_cas");
        if (!word_.compare_exchange_weak(state, next, std::memory_order_relaxed)) continue;
        CONCUR_SCHEDULE_POINT("lock.park.after_flag_cas");
        if ((next & starving_bit) && !(state & starving_bit)) set_starving = true;
        if (turned_cas_mode_on(state, next)) rescue_at = steady_clock::now() + rescue_delay;
      }
      if (!slept) first_sleep = steady_clock::now();
      CONCUR_SCHEDULE_POINT("lock.park.before_sleep");
      // Interleaving: a waiter that turned CAS mode on sleeps at most until its rescue, so a
      // store release it cannot see yet is found by the re-read at the top of the loop.
      (void)wait_on_until(word_, next,
                          rescue_at == steady_time{} ? deadline : std::min(deadline, rescue_at));
      CONCUR_SCHEDULE_POINT("lock.park.after_wake");
      slept = true;
      if (rescue_at != steady_time{} && steady_clock::now() >= rescue_at) rescue_at = {};
      if (!set_starving && spin(deadline, /*slept=*/true)) return true;
    }
  }

  // At the deadline. A waiter that has slept may have consumed the wake-up meant for another
  // and may own the STARVING bit, so it does not simply leave: if the lock is free it takes it
  // (a success at the deadline), otherwise it makes sure PARKED is set, so that the holder wakes
  // the next sleeper, and drops its STARVING bit. A waiter that owes a rescue first waits for
  // it. Returns whether it took the lock.
  bool give_up(bool slept, bool set_starving, steady_time rescue_at) noexcept {
    if (!slept) return false;  // it never set a flag (every flag CAS is followed by a sleep)
    const std::uint32_t drop = set_starving ? starving_bits : 0;
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (!(state & held_bit)) {
        CONCUR_SCHEDULE_POINT("lock.give_up.before_take");
        if (word_.compare_exchange_weak(state, (state | held_bit | parked_bit) & ~drop,
                                        std::memory_order_acquire, std::memory_order_relaxed)) {
          return true;
        }
        continue;
      }
      if (rescue_at != steady_time{}) {
        // The rescue this thread owes: a store release may still be on its way (see above).
        CONCUR_SCHEDULE_POINT("lock.give_up.rescue");
        (void)wait_on_until(word_, state, rescue_at);
        if (steady_clock::now() >= rescue_at) rescue_at = {};
        state = word_.load(std::memory_order_relaxed);
        continue;
      }
      const std::uint32_t next = (state | parked_bit | cas_mode_bit) & ~drop;
      if (next == state) return false;
      CONCUR_SCHEDULE_POINT("lock.give_up.before_flag_cas");
      if (!word_.compare_exchange_weak(state, next, std::memory_order_relaxed)) continue;
      if (!turned_cas_mode_on(state, next)) return false;
      rescue_at = steady_clock::now() + rescue_delay;
      state = next;
    }
  }

  // Whether `state` (the word as last loaded) has STARVING set by a waiter of this process. A
  // STARVING flag copied by fork() from a parent is cleared first, `state` following the word
  // (see "Across fork()").
  bool starving_here(std::uint32_t& state) noexcept {
    while ((state & starving_bit) && (state >> generation_shift) != fork_generation()) {
      const std::uint32_t cleared = state & ~starving_bits;
      CONCUR_SCHEDULE_POINT("lock.before_drop_copied_starving");
      if (word_.compare_exchange_weak(state, cleared, std::memory_order_relaxed)) state = cleared;
    }
    return (state & starving_bit) != 0;
  }

  // Whether a waiter's compare-and-swap from `before` to `after` turned CAS mode on, which
  // makes it owe a rescue.
  static bool turned_cas_mode_on(std::uint32_t before, std::uint32_t after) noexcept {
    return Layout::store_release && (after & cas_mode_bit) && !(before & cas_mode_bit);
  }

  // The word's low byte (HELD) and the byte above it (the other flags), as atomic bytes. Bytes
  // of any object may be accessed as unsigned char, so these views alias the word legitimately.
  atomic_byte_ref low_byte() noexcept {
    return atomic_byte_ref(reinterpret_cast<unsigned char*>(&word_)[0]);
  }
  atomic_byte_ref flags_byte() noexcept {
    return atomic_byte_ref(reinterpret_cast<unsigned char*>(&word_)[1]);
  }

  // SplitLayout's release: L, S and L2 of "The store release" above.
  bool release_by_store() noexcept {
    const std::uint32_t state = word_.load(std::memory_order_relaxed);  // L
    if (!(state & held_bit)) return false;
    if (CONCUR_UNLIKELY(state & byte1_flags)) return release_slow();
    CONCUR_SCHEDULE_POINT("lock.release.before_store");
    low_byte().store(0, std::memory_order_release);  // S
    // L2 must stay after S in the code; the hardware may still satisfy it first (x86), which
    // the rescue covers.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("lock.release.between_store_and_load");
    if (CONCUR_LIKELY(flags_byte().load(std::memory_order_relaxed) == 0)) return true;  // L2
    wake_after_store();
    return true;
  }

  // After a store release that saw a flag: one read-modify-write (ordered with every waiter's
  // compare-and-swap, and behind the store) clears PARKED; wake one if it was set.
  CONCUR_NOINLINE void wake_after_store() noexcept {
    CONCUR_SCHEDULE_POINT("lock.release.before_flag_rmw");
    const std::uint32_t before = word_.fetch_and(~parked_bit, std::memory_order_relaxed);
    if (before & parked_bit) {
      CONCUR_SCHEDULE_POINT("lock.release.before_wake");
      wake_one(word_);
    }
  }

  // The compare-and-swap release: clears HELD and PARKED (the thread woken below sets
  // PARKED again, by Drepper's rule); keeps STARVING; keeps CAS_MODE unless neither PARKED nor
  // STARVING was set, which puts an uncontended lock back to store releases.
  CONCUR_NOINLINE bool release_slow() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    std::uint32_t next = 0;
    do {
      if (!(state & held_bit)) return false;
      next = (state & (parked_bit | starving_bit)) ? state & (starving_bits | cas_mode_bit) : 0;
      CONCUR_SCHEDULE_POINT("lock.release.before_cas");
    } while (!word_.compare_exchange_weak(state, next, std::memory_order_release,
                                          std::memory_order_relaxed));
    if (state & parked_bit) {
      CONCUR_SCHEDULE_POINT("lock.release.before_wake");
      wake_one(word_);
    }
    return true;
  }

  wait_word word_{0};
};

// The word of Lock and RLock: store releases where the futex and x86's store order make them
// safe, compare-and-swap releases elsewhere.
#if CONCUR_HAS_FUTEX
using PlainLockWord = BasicLockWord<SplitLayout>;
#else
using PlainLockWord = BasicLockWord<CasLayout>;
#endif

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_LOCK_WORD_HPP
