// concur/detail/at_fork.hpp
//
// The one place where concur registers fork handlers. Every registry that must survive fork()
// (its mutex held across the fork, or rebuilt in the child) calls at_fork() instead of
// pthread_atfork() directly, for two reasons: some thread libraries define pthread_atfork as a
// macro (winpthreads, MinGW-w64's), which a qualified `::pthread_atfork(` call cannot expand;
// and where there is no fork() (Windows) there is nothing to register.

#ifndef CONCUR_DETAIL_AT_FORK_HPP
#define CONCUR_DETAIL_AT_FORK_HPP

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

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_AT_FORK_HPP
