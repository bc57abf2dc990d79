// concur/detail/heavy_fence.hpp
//
// Asymmetric fences, after Linux's membarrier(2) (the idea behind folly's
// asymmetricThreadFenceHeavy and userspace RCU): a hot path gets by without a fence at all,
// and the rare path that needs one calls heavy_fence(), which makes every thread of the process
// that is running execute a full memory barrier before it returns. After heavy_fence(), every
// store that another thread executed before it is visible to the caller, and every later load
// of another thread sees what the caller stored before it.
//
// concur::Lock uses it so that releasing a lock is a plain store (no locked instruction), while a
// thread about to sleep on the lock pays for the fence: see concur/detail/lock_word.hpp.
//
// Availability is decided once, during static initialisation, by registering the process for
// the expedited private command (Linux 4.14 and later). Where that fails (older kernels,
// seccomp filters, other systems) heavy_fence_available is false and callers keep using
// ordinary read-modify-writes. Registration survives fork().

#ifndef CONCUR_DETAIL_HEAVY_FENCE_HPP
#define CONCUR_DETAIL_HEAVY_FENCE_HPP

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace concur::detail {

#if defined(__linux__) && defined(SYS_membarrier)

inline bool register_heavy_fence() noexcept {
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

// True once the process may use heavy_fence(); false before static initialisation has run
// (and on systems without it), when callers must not rely on it.
inline const bool heavy_fence_available = register_heavy_fence();

// A full memory barrier on every running thread of the process (a few microseconds: it
// interrupts them). Call only where heavy_fence_available is true.
inline void heavy_fence() noexcept {
  ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}

#else

inline constexpr bool heavy_fence_available = false;
inline void heavy_fence() noexcept {}

#endif

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_HEAVY_FENCE_HPP
