// concur/detail/spin.hpp
//
// Spin-waiting: the CPU's pause hint and a bounded exponential backoff. A lock or queue spins
// briefly before it parks because a handoff that completes within a few hundred nanoseconds is
// far cheaper than a futex round trip (two system calls and a context switch); it stops spinning
// quickly because on an oversubscribed machine the thread it waits for may need this very core.

#ifndef CONCUR_DETAIL_SPIN_HPP
#define CONCUR_DETAIL_SPIN_HPP

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace concur::detail {

// Tells the CPU that this is a spin-wait loop: on x86 `pause` (lets the sibling hyper-thread run
// and avoids a memory-order mis-speculation when the loop exits), `yield` on Arm.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Backoff
//
// Exponential backoff for a spin loop: each call to pause() spins twice as long as the previous
// one, up to `max_pauses` pause instructions per call; after `spin_rounds` calls it yields the
// CPU instead. exhausted() tells the caller that spinning has not paid off and it should park.
//
//   Backoff backoff;
//   while (!try_acquire()) {
//     if (backoff.exhausted()) { park(); backoff.reset(); continue; }
//     backoff.pause();
//   }
class Backoff {
 public:
  // Backoff::Backoff()
  //
  // `spin_rounds` pause() calls spin before exhausted() turns true; each spins at most
  // `max_pauses` pause instructions.
  constexpr explicit Backoff(std::uint32_t spin_rounds = 10, std::uint32_t max_pauses = 64) noexcept
      : rounds_left_(spin_rounds), rounds_(spin_rounds), max_pauses_(max_pauses) {}

  // Backoff::pause()
  //
  // Spins for the current step and doubles the next one; once the spin rounds are used up,
  // yields the processor instead.
  void pause() noexcept {
    if (rounds_left_ == 0) {
      std::this_thread::yield();
      return;
    }
    --rounds_left_;
    for (std::uint32_t i = 0; i < pauses_; ++i) cpu_relax();
    if (pauses_ < max_pauses_) pauses_ *= 2;
  }

  // Backoff::exhausted()
  //
  // True once every spin round has been used.
  [[nodiscard]] bool exhausted() const noexcept { return rounds_left_ == 0; }

  // Backoff::reset()
  //
  // Starts over with the shortest spin.
  void reset() noexcept {
    rounds_left_ = rounds_;
    pauses_ = 1;
  }

 private:
  std::uint32_t rounds_left_;
  std::uint32_t rounds_;
  std::uint32_t max_pauses_;
  std::uint32_t pauses_ = 1;
};

// Spins (with backoff) until `done()` returns true or `spin_rounds` rounds have passed. Returns
// the last value of `done()`; a caller that gets false goes on to park.
template <class Predicate>
bool spin_until(Predicate done, std::uint32_t spin_rounds = 10) noexcept(noexcept(done())) {
  Backoff backoff(spin_rounds);
  while (!done()) {
    if (backoff.exhausted()) return false;
    backoff.pause();
  }
  return true;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SPIN_HPP
