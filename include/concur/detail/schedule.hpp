// concur/detail/schedule.hpp
//
// Schedule points: the places in every protocol of concur where another thread running first
// could change the outcome (before and after each read-modify-write of a shared word, between
// claiming a slot and filling it, between a release and its wake-up, before sleeping).
//
//   CONCUR_SCHEDULE_POINT("lock.park.before_sleep");
//
// In a normal build a point is nothing at all. In a build that defines
// CONCUR_SCHEDULE_EXPLORATION (concur's `explore` preset) each point may perturb the calling
// thread, so that the windows of a few nanoseconds between two steps, which the operating
// system's scheduler almost never hits, are hit on purpose: the thread is made to yield, spin
// or sleep at random points, more often the lower its priority. The priorities are drawn per
// thread and redrawn at random points, which is the idea of PCT, the probabilistic
// concurrency testing of Burckhardt, Kothari, Musuvathi and Nagarakatte (ASPLOS 2010): a bug
// that needs a few particular threads to be slow at a few particular steps is found with a
// probability that depends on how many such steps there are, not on how narrow the window is.
// folly's DeterministicSchedule and Rust's loom serve the same end by replacing the scheduler
// outright; this mode keeps the real threads, the real futex and the real sanitizers, and only
// stretches the windows.
//
// Every decision comes from a random generator per thread, seeded from one process-wide seed
// and the order in which threads first reach a point. The seed is printed to stderr when the
// first point is reached, and the environment variable CONCUR_SCHEDULE_SEED sets it, so a
// failing run can be replayed with the same perturbations (the operating system's own
// scheduling is not replayed, so a replay is likely, not certain, to fail the same way).
//
// A point never throws, allocates or touches a concur primitive, so it may stand anywhere,
// including inside the lock and wait protocols themselves.

#ifndef CONCUR_DETAIL_SCHEDULE_HPP
#define CONCUR_DETAIL_SCHEDULE_HPP

#include "concur/detail/config.hpp"

#if defined(CONCUR_SCHEDULE_EXPLORATION)

#include <sched.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "concur/detail/spin.hpp"

namespace concur::detail::schedule {

// A small, fast generator (splitmix64): good enough for scheduling decisions.
inline std::uint64_t mix(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The process-wide seed and its generation: set_seed() starts a new generation, and each
// thread re-seeds its own generator at its next point.
struct Global {
  std::atomic<std::uint64_t> seed{0};
  std::atomic<std::uint32_t> generation{0};
  std::atomic<std::uint32_t> threads{0};
  std::atomic<std::uint64_t> points{0};
};

inline Global& global() noexcept {
  static Global* const state = [] {
    auto* g = new Global;  // never destroyed: threads may reach points during exit
    std::uint64_t seed = 0;
    if (const char* text = std::getenv("CONCUR_SCHEDULE_SEED"); text != nullptr && *text) {
      seed = std::strtoull(text, nullptr, 10);
    } else {
      timespec now{};
      ::clock_gettime(CLOCK_REALTIME, &now);
      std::uint64_t entropy = static_cast<std::uint64_t>(now.tv_nsec) ^
                              (static_cast<std::uint64_t>(now.tv_sec) << 20) ^
                              reinterpret_cast<std::uintptr_t>(g);
      seed = mix(entropy) % 1000000000000ull;
    }
    g->seed.store(seed, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "concur: schedule exploration on, seed %llu (replay with "
                 "CONCUR_SCHEDULE_SEED=%llu)\n",
                 static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    return g;
  }();
  return *state;
}

// schedule::seed()
//
// The seed in force (to print beside a failure).
inline std::uint64_t seed() noexcept {
  return global().seed.load(std::memory_order_relaxed);
}

// schedule::set_seed(seed)
//
// Starts a new run of decisions from `seed`: each thread draws a new priority and a new stream
// at its next point, numbered again from the first thread to arrive. For tests that run many
// rounds in one process, each with its own printed seed.
inline void set_seed(std::uint64_t new_seed) noexcept {
  Global& g = global();
  g.seed.store(new_seed, std::memory_order_relaxed);
  g.threads.store(0, std::memory_order_relaxed);
  g.generation.fetch_add(1, std::memory_order_release);
}

// schedule::points()
//
// How many points have been passed in this process (to show that a test exercised them).
inline std::uint64_t points() noexcept {
  return global().points.load(std::memory_order_relaxed);
}

// The number of priority levels; a thread at level p is delayed at a point with probability
// (levels - p) / 64, so from 1 in 8 (the lowest) to 1 in 64 (the highest).
inline constexpr std::uint32_t levels = 8;

struct ThreadState {
  std::uint32_t generation = ~0u;
  std::uint64_t stream = 0;
  std::uint32_t priority = 0;
};

inline void sleep_nanoseconds(long nanoseconds) noexcept {
  timespec pause{nanoseconds / 1000000000, nanoseconds % 1000000000};
  while (::nanosleep(&pause, &pause) != 0) {
  }
}

// Perturbs the calling thread, or not, as its generator says.
inline void perturb(ThreadState& me) noexcept {
  const std::uint64_t draw = mix(me.stream);
  // A priority change point (PCT): now and then a thread becomes slow, or fast.
  if ((draw & 511) == 0) me.priority = static_cast<std::uint32_t>((draw >> 9) % levels);
  if (((draw >> 12) & 63) >= levels - me.priority) return;
  const std::uint32_t kind = static_cast<std::uint32_t>((draw >> 18) & 255);
  const std::uint64_t amount = draw >> 26;
  if (kind < 128) {
    ::sched_yield();  // let another runnable thread have this core now
  } else if (kind < 208) {
    for (std::uint64_t i = amount % 2048; i > 0; --i) cpu_relax();  // a short stall
  } else if (kind < 254) {
    sleep_nanoseconds(1000 + static_cast<long>(amount % 200000));  // 1-200 us: preempted
  } else {
    sleep_nanoseconds(1000000 + static_cast<long>(amount % 9000000));  // 1-10 ms: descheduled
  }
}

// schedule::point(where)
//
// One schedule point. `where` names it for a reader and a debugger; it does not steer anything.
inline void point(const char* where) noexcept {
  (void)where;
  static thread_local ThreadState me;
  Global& g = global();
  g.points.fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t generation = g.generation.load(std::memory_order_acquire);
  if (me.generation != generation) {
    me.generation = generation;
    const std::uint64_t order = g.threads.fetch_add(1, std::memory_order_relaxed);
    me.stream = g.seed.load(std::memory_order_relaxed) * 0x100000001B3ull + order;
    me.priority = static_cast<std::uint32_t>(mix(me.stream) % levels);
  }
  perturb(me);
}

}  // namespace concur::detail::schedule

#define CONCUR_SCHEDULE_POINT(where) ::concur::detail::schedule::point(where)
// True in builds that explore schedules.
#define CONCUR_SCHEDULE_EXPLORING 1

#else

#define CONCUR_SCHEDULE_POINT(where) static_cast<void>(0)
#define CONCUR_SCHEDULE_EXPLORING 0

#endif

#endif  // CONCUR_DETAIL_SCHEDULE_HPP
