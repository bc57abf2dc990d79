// concur/detail/spin.hpp
//
// Spin-waiting: the CPU's pause hint and a spin bounded in time. A lock or queue spins briefly
// before it parks because a hand-off that completes within a few hundred nanoseconds is far
// cheaper than a futex round trip (two system calls and a context switch); it stops spinning
// quickly because on an oversubscribed machine the thread it waits for may need this very core.
//
// The rules every spin in concur follows (SpinWait enforces them):
//   - The budget is a time, never a count of pause instructions: a pause takes about 10 cycles
//     on some x86 cores and about 140 on others, and Arm's hint differs again.
//   - A spin never runs past the caller's deadline, so a timed wait returns on time.
//   - A spin never ends in rounds of sched_yield(): on a busy machine each yield can hand the
//     core to a CPU-bound thread for a whole time slice, which is how a 1 ms timed wait turns
//     into 50 ms. A thread that has spun its budget parks in the kernel, which wakes it on time.

#ifndef CONCUR_DETAIL_SPIN_HPP
#define CONCUR_DETAIL_SPIN_HPP

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "concur/detail/deadline.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace concur::detail {

// Tells the CPU that this is a spin-wait loop: on x86 `pause` (lets the sibling hyper-thread run
// and avoids a memory-order mis-speculation when the loop exits). On 64-bit Arm `isb`, as Rust's
// spin_loop hint does: `yield` is a no-op on Neoverse cores, while `isb` stalls for a few tens
// of cycles, which is what a spin loop wants; `yield` on 32-bit Arm.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("isb sy" ::: "memory");
#elif defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// SpinWait
//
// A spin bounded in time: rounds of pause instructions, doubling from one up to
// `max_pauses_per_round`, until `budget` has passed since the spin began or `deadline` comes,
// whichever is first. The clock (steady_clock, a vDSO read of some 20 ns) is read only once the
// rounds have grown to a few dozen pauses, so a wait that ends within the first few hundred
// nanoseconds costs no clock read at all.
//
//   SpinWait spin(deadline, std::chrono::microseconds(20));
//   while (!ready()) {
//     if (!spin.pause()) { park(); break; }
//   }
class SpinWait {
 public:
  // Pauses per round stop doubling here: about 0.1 to 1.5 us a round, short enough to notice a
  // change promptly and long enough that the clock reads cost little.
  static constexpr std::uint32_t max_pauses_per_round = 64;
  // Rounds before the first clock read: 1 + 2 + ... + 16 = 31 pauses, at most a few
  // microseconds on the slowest pause.
  static constexpr std::uint32_t rounds_before_clock = 5;

  // SpinWait::SpinWait(deadline, budget)
  //
  // A spin that ends `budget` after its first clock read or at `deadline`, whichever is first.
  constexpr SpinWait(steady_time deadline, std::chrono::nanoseconds budget) noexcept
      : deadline_(deadline), budget_(budget) {}

  // SpinWait::pause()
  //
  // Spins one round and returns true, or returns false (without spinning) once the budget or
  // the deadline is used up; the caller then parks.
  bool pause() noexcept {
    if (rounds_ >= rounds_before_clock && !time_left()) return false;
    for (std::uint32_t i = pauses_; i > 0; --i) cpu_relax();
    if (pauses_ < max_pauses_per_round) pauses_ *= 2;
    ++rounds_;
    return true;
  }

  // SpinWait::rounds()
  //
  // How many rounds have been spun.
  [[nodiscard]] std::uint32_t rounds() const noexcept { return rounds_; }

 private:
  bool time_left() noexcept {
    const steady_time now = steady_clock::now();
    if (end_ == steady_time{}) {
      // deadline_ - now only once deadline_ is ahead: a deadline at the far past end of the
      // clock (steady_time::min()) would overflow the subtraction.
      end_ = deadline_ <= now || budget_ >= deadline_ - now ? deadline_ : now + budget_;
    }
    return now < end_;
  }

  steady_time deadline_;
  std::chrono::nanoseconds budget_;
  steady_time end_{};
  std::uint32_t rounds_ = 0;
  std::uint32_t pauses_ = 1;
};

// SpacedSpin
//
// A spin for a waiter whose every look at a shared word costs the thread it waits for. A load of
// a line that another core is writing takes the line from that core, and the writer's next store
// stalls until the line comes back: some 50 ns between cores of one chip, 250 ns and more between
// the vCPUs of some virtual machines. A waiter that looks every few pauses (SpinWait) makes a
// holder that takes and releases a lock in a loop pay that stall on nearly every round, and
// catches the lock in the few nanoseconds it is free, so the lock and the data it guards cross
// between cores on every other round. Looks spaced by a time of the order of a microsecond cost the
// holder a few percent and let it run in long stretches: the classic backoff of test-and-set
// locks (Anderson; Mellor-Crummey and Scott), with a floor set in time rather than in pauses.
//
// Between looks only the clock is read (the vDSO's, which touches no shared line). The spacing
// starts at `first_interval` and doubles up to 8 times that, so that many waiters on one line
// thin out their looks; the whole spin ends `budget` after it began, or at `deadline`.
//
//   SpacedSpin spin(deadline, std::chrono::microseconds(20), std::chrono::microseconds(1));
//   while (!free()) {
//     if (!spin.pause()) { park(); break; }
//   }
class SpacedSpin {
 public:
  // SpacedSpin::SpacedSpin(deadline, budget, first_interval)
  //
  // A spin that ends `budget` after its first pause() or at `deadline`, whichever is first.
  constexpr SpacedSpin(steady_time deadline, std::chrono::nanoseconds budget,
                       std::chrono::nanoseconds first_interval) noexcept
      : deadline_(deadline),
        budget_(budget),
        interval_(first_interval),
        last_(first_interval * 8) {}

  // SpacedSpin::pause()
  //
  // Waits one interval and returns true, or returns false (without waiting) once the budget or
  // the deadline is used up; the caller then parks.
  bool pause() noexcept {
    steady_time now = steady_clock::now();
    if (end_ == steady_time{}) {
      end_ = deadline_ <= now || budget_ >= deadline_ - now ? deadline_ : now + budget_;
    }
    if (now >= end_) return false;
    const steady_time next = end_ - now <= interval_ ? end_ : now + interval_;
    if (interval_ < last_) interval_ *= 2;
    do {
      cpu_relax();
      cpu_relax();
      now = steady_clock::now();
    } while (now < next);
    return true;
  }

 private:
  steady_time deadline_;
  std::chrono::nanoseconds budget_;
  std::chrono::nanoseconds interval_;
  std::chrono::nanoseconds last_;
  steady_time end_{};
};

// Spins until `done()` returns true, for at most `budget` and never past `deadline`. Returns
// the last value of `done()`; a caller that gets false goes on to park.
template <class Predicate>
bool spin_for(Predicate done, steady_time deadline,
              std::chrono::nanoseconds budget) noexcept(noexcept(done())) {
  SpinWait spin(deadline, budget);
  while (!done()) {
    if (!spin.pause()) return done();
  }
  return true;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SPIN_HPP
