// concur/detail/at_fork.hpp
//
// The one place where concur registers fork handlers. Every registry that must survive fork()
// (its mutex held across the fork, or rebuilt in the child) calls at_fork() instead of
// pthread_atfork() directly, for two reasons: some thread libraries define pthread_atfork as a
// macro (winpthreads, MinGW-w64's), which a qualified `::pthread_atfork(` call cannot expand;
// and where there is no fork() (Windows) there is nothing to register.

#ifndef CONCUR_DETAIL_AT_FORK_HPP
#define CONCUR_DETAIL_AT_FORK_HPP

#include <atomic>
#include <cstdint>

#include "concur/detail/config.hpp"

#if CONCUR_POSIX
#include <pthread.h>
#endif

namespace concur::detail {

// Registers `prepare` (run in the forking thread before fork()), `parent` (in the parent after
// it) and `child` (in the child after it); any may be null. Returns 0 or an error number. A
// no-op returning 0 where the system has no fork().
inline int at_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
#if CONCUR_POSIX
  // Unqualified on purpose: pthread_atfork may be a macro.
  return pthread_atfork(prepare, parent, child);
#else
  (void)prepare;
  (void)parent;
  (void)child;
  return 0;
#endif
}

// fork_generation()
//
// How many fork()s lie between the program's first process and this one, modulo 2^16: a
// child's is its parent's plus one. Memory that fork() copies keeps what the parent wrote, so a
// value stamped with the generation tells a copy from something this process wrote: the
// STARVING flag of a lock (lock_word.hpp) whose setter, a thread of the parent, did not come
// along. Relaxed: the child's handler runs before fork() returns there, before any other
// thread of the child exists.
inline std::atomic<std::uint32_t> fork_generation_counter{0};
inline void advance_fork_generation() noexcept {
  fork_generation_counter.fetch_add(1, std::memory_order_relaxed);
}
inline const int fork_generation_registered = at_fork(nullptr, nullptr, &advance_fork_generation);
inline std::uint32_t fork_generation() noexcept {
  return fork_generation_counter.load(std::memory_order_relaxed) & 0xffffu;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_AT_FORK_HPP
