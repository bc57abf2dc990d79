// concur/event.hpp
//
// concur::Event, Python's threading.Event: a flag that threads wait for.
//
//   concur::Event ready;
//   // worker                      // controller
//   ready.wait();                   prepare();
//   go();                           ready.set();
//
// set() sets the flag and wakes every waiting thread; clear() resets it; wait() returns at once
// while the flag is set and otherwise sleeps until set() (or, for wait(timeout), the timeout).
// As in Python, a thread that was waiting when set() came returns true even if clear() followed
// at once.
//
// One 32-bit word: the flag, a "somebody sleeps" bit, and a generation that every set() bumps.
// is_set() and wait() on a set event are one atomic load; set() on an event nobody waits for is
// one compare-and-swap and no system call. A waiter spins for up to 20 microseconds before it
// sleeps (detail::SpinWait: bounded in time and by the wait's deadline, and never yielding, so
// a timed wait returns on time however busy the machine), so a hand-off between running
// threads costs no system call either; each thread shortens its spins while they do not pay
// (when the setting thread waits for this very core) and lengthens them again when they do.
//
// Why no wake-up is lost. A waiter that is about to sleep sets the sleepers bit with a
// compare-and-swap and sleeps on the word's value with the bit; set() replaces the word (flag,
// new generation, bit cleared) with a compare-and-swap and wakes every sleeper if the value it
// replaced had the bit:
//
//   waiter                                   set()
//   CAS word: w -> w | sleepers              CAS word: w' -> (w' + generation) | set
//   futex_wait(word, w | sleepers)           if (w' & sleepers) futex_wake(word, all)
//
// The compare-and-swaps on the one word are ordered. If the waiter's comes first, set()
// replaces a value with the bit and wakes; the futex wait, atomic against the wake, either
// finds the word changed or is woken. If set()'s comes first, the waiter's fails or sees the
// flag (or the new generation) and returns without sleeping. Clearing the bit in set() is safe
// because set() wakes every sleeper at once, and each woken waiter either returns (any set()
// since its wait began ends it) or, woken spuriously, sets the bit again before it sleeps again.
//
// Memory ordering: set() is a release and a wait() that returns true an acquire, so everything
// the setting thread did before set() is visible after wait() returns true.

#ifndef CONCUR_EVENT_HPP
#define CONCUR_EVENT_HPP

#include <atomic>
#include <chrono>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait.hpp"

namespace concur {

// BasicEvent
//
// The event's protocol, waiting through `Waits` (detail::ProcessWaits for concur::Event; the
// shared futex for mp::Event).
template <class Waits>
class BasicEvent {
 public:
  // Event::Event()
  //
  // An event whose flag is not set.
  constexpr BasicEvent() noexcept = default;

  BasicEvent(const BasicEvent&) = delete;
  BasicEvent& operator=(const BasicEvent&) = delete;

  // Event::is_set()
  //
  // Whether the flag is set (Python's is_set()). One acquire load.
  [[nodiscard]] bool is_set() const noexcept {
    return word_.load(std::memory_order_acquire) & set_bit;
  }

  // Event::set()
  //
  // Sets the flag and wakes every thread waiting for it. Setting a set event does nothing.
  void set() noexcept {
    std::uint32_t state = word_.load(std::memory_order_relaxed);
    do {
      if (state & set_bit) return;
      CONCUR_SCHEDULE_POINT("event.set.before_cas");
    } while (!word_.compare_exchange_weak(state,
                                          ((state + one_generation) | set_bit) & ~sleepers_bit,
                                          std::memory_order_release, std::memory_order_relaxed));
    if (state & sleepers_bit) {
      CONCUR_SCHEDULE_POINT("event.set.before_wake");
      Waits::wake_all(word_);
    }
  }

  // Event::clear()
  //
  // Resets the flag; later wait() calls block until the next set().
  void clear() noexcept {
    CONCUR_SCHEDULE_POINT("event.clear");
    word_.fetch_and(~set_bit, std::memory_order_relaxed);
  }

  // Event::wait()
  //
  // Blocks until the flag is set; returns true.
  bool wait() noexcept { return wait_until(detail::never); }

  // Event::wait(timeout)
  //
  // Blocks until the flag is set or `timeout` has passed; returns true when it was set (also if
  // cleared again right after), false on timeout. A negative timeout counts as zero.
  template <class Rep, class Period>
  [[nodiscard]] bool wait(std::chrono::duration<Rep, Period> timeout) noexcept {
    return wait_until(detail::deadline_after(timeout));
  }

 private:
  static constexpr std::uint32_t set_bit = 1;
  static constexpr std::uint32_t sleepers_bit = 2;
  static constexpr std::uint32_t one_generation = 4;
  // How long a waiter spins before it sleeps, at most.
  static constexpr std::uint32_t max_spin_ns = 20000;

  // The calling thread's spin budget, in nanoseconds, adapted to how its recent spins went:
  // doubled (plus a microsecond) after a spin that saw the event set, up to max_spin_ns, and
  // halved after one that ran out. Spinning pays when the setting thread runs on another core
  // and costs the whole budget when it waits for this one (an oversubscribed machine), so each
  // thread learns which case it is in, as glibc's adaptive mutex does per mutex (an Event has
  // no room for it: it is four bytes). The budget bounds the time spin; SpinWait always spins
  // its first few rounds (some 31 pauses) before it reads the clock.
  static std::uint32_t& spin_ns() noexcept {
    static thread_local std::uint32_t budget = max_spin_ns;
    return budget;
  }

  // Spins while the event stays unsignalled since `start`, within the thread's budget and the
  // deadline; true once signalled.
  bool spin(std::uint32_t start, detail::steady_time deadline) const noexcept {
    std::uint32_t& budget = spin_ns();
    const bool seen =
        detail::spin_for([&] { return signalled(word_.load(std::memory_order_acquire), start); },
                         deadline, std::chrono::nanoseconds(budget));
    if (seen) {
      budget = budget >= max_spin_ns / 2 ? max_spin_ns : budget * 2 + 1000;
    } else if (deadline == detail::never || !detail::expired(deadline)) {
      budget /= 2;  // ran out of budget, not of time: spinning did not pay
    }
    return seen;
  }

  bool wait_until(detail::steady_time deadline) noexcept {
    std::uint32_t state = word_.load(std::memory_order_acquire);
    if (CONCUR_LIKELY(state & set_bit)) return true;
    return wait_slow(state & ~sleepers_bit, deadline);
  }

  // True once a set() has happened since `start` was read: the flag is up or the generation
  // has moved on.
  static bool signalled(std::uint32_t now, std::uint32_t start) noexcept {
    return (now & set_bit) || (now & ~(set_bit | sleepers_bit)) != start;
  }

  CONCUR_NOINLINE bool wait_slow(std::uint32_t start, detail::steady_time deadline) noexcept {
    if (deadline != detail::never && detail::expired(deadline)) return false;
    CONCUR_SCHEDULE_POINT("event.wait.before_spin");
    if (spin(start, deadline)) return true;
    for (;;) {
      std::uint32_t state = word_.load(std::memory_order_acquire);
      if (signalled(state, start)) return true;
      if (!(state & sleepers_bit)) {
        CONCUR_SCHEDULE_POINT("event.wait.before_sleepers_cas");
        if (!word_.compare_exchange_weak(state, state | sleepers_bit, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
          continue;
        }
      }
      CONCUR_SCHEDULE_POINT("event.wait.before_sleep");
      const bool woken = Waits::wait_until(word_, state | sleepers_bit, deadline);
      CONCUR_SCHEDULE_POINT("event.wait.after_wake");
      if (!woken) return signalled(word_.load(std::memory_order_acquire), start);
    }
  }

  detail::wait_word word_{0};
};

// Event
//
// Python's threading.Event. Four bytes, constant-initialisable, not movable.
using Event = BasicEvent<detail::ProcessWaits>;

}  // namespace concur

#endif  // CONCUR_EVENT_HPP
