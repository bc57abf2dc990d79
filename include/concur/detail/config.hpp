// concur/detail/config.hpp
//
// Platform detection and the few macros every other header uses. Nothing here is part of the
// public interface except the switches documented below.
//
// Switches a user may define (consistently, in every translation unit of a program):
//
//   CONCUR_PORTABLE_WAIT   Use the portable wait/wake path (std::atomic::wait plus a parking
//                          table for timed waits) even where the Linux futex is available.
//                          Non-Linux systems always use the portable path.
//
//   CONCUR_FUTURE_CACHE_BYTES
//                          The most memory of finished futures' states that concur keeps for
//                          reuse, in bytes (default 64 MiB: a million empty tasks' states); see
//                          concur/detail/executor/state_cache.hpp. 0 keeps one batch per size.
//
// Clang thread-safety annotations (CONCUR_CAPABILITY and friends) expand to Clang's attributes
// when the compiler has them and to nothing elsewhere, so `-Wthread-safety` works on code that
// uses concur's locks.

#ifndef CONCUR_DETAIL_CONFIG_HPP
#define CONCUR_DETAIL_CONFIG_HPP

#if __cplusplus < 202002L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 202002L)
#error "concur needs C++20 or later: compile with -std=c++20"
#endif

#if defined(__linux__) && !defined(CONCUR_PORTABLE_WAIT)
#define CONCUR_HAS_FUTEX 1
#else
#define CONCUR_HAS_FUTEX 0
#endif

#if defined(__unix__) || defined(__APPLE__)
#define CONCUR_POSIX 1
#else
#define CONCUR_POSIX 0
#endif

#if defined(__has_attribute)
#define CONCUR_HAS_ATTRIBUTE(x) __has_attribute(x)
#else
#define CONCUR_HAS_ATTRIBUTE(x) 0
#endif

#if defined(__clang__) && CONCUR_HAS_ATTRIBUTE(capability)
#define CONCUR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define CONCUR_THREAD_ANNOTATION(x)
#endif

// A class that is a lock ("capability" in Clang's vocabulary).
#define CONCUR_CAPABILITY(name) CONCUR_THREAD_ANNOTATION(capability(name))
// A capability that its holder may acquire again (Clang 20 and later; older versions analyse a
// reentrant lock as a plain one, and warn on a second acquisition inside one function).
#if defined(__clang__) && CONCUR_HAS_ATTRIBUTE(reentrant_capability)
#define CONCUR_REENTRANT_CAPABILITY CONCUR_THREAD_ANNOTATION(reentrant_capability)
#else
#define CONCUR_REENTRANT_CAPABILITY
#endif
// A RAII class that holds a capability for its lifetime.
#define CONCUR_SCOPED_CAPABILITY CONCUR_THREAD_ANNOTATION(scoped_lockable)
// A data member that may be touched only while the named capability is held.
#define CONCUR_GUARDED_BY(x) CONCUR_THREAD_ANNOTATION(guarded_by(x))
// A pointer whose pointee may be touched only while the named capability is held.
#define CONCUR_PT_GUARDED_BY(x) CONCUR_THREAD_ANNOTATION(pt_guarded_by(x))
// A function that must be called with the capabilities held.
#define CONCUR_REQUIRES(...) CONCUR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// A function that acquires the capabilities (or `this` when none is named).
#define CONCUR_ACQUIRE(...) CONCUR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
// A function that releases the capabilities (or `this` when none is named).
#define CONCUR_RELEASE(...) CONCUR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// A function that acquires the capability when it returns the given value.
#define CONCUR_TRY_ACQUIRE(...) CONCUR_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// A function that must be called without the capabilities held.
#define CONCUR_EXCLUDES(...) CONCUR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// A function that asserts at run time that the capability is held.
#define CONCUR_ASSERT_CAPABILITY(x) CONCUR_THREAD_ANNOTATION(assert_capability(x))
// A function that returns a reference to the given capability.
#define CONCUR_RETURN_CAPABILITY(x) CONCUR_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off inside one function (for the lock implementations themselves).
#define CONCUR_NO_THREAD_SAFETY_ANALYSIS CONCUR_THREAD_ANNOTATION(no_thread_safety_analysis)

#if defined(__GNUC__) || defined(__clang__)
#define CONCUR_LIKELY(x) __builtin_expect(!!(x), 1)
#define CONCUR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CONCUR_NOINLINE __attribute__((noinline))
#define CONCUR_COLD __attribute__((noinline, cold))
// For a lock's fast path, a few instructions that a call would double: inlined even where the
// compiler's size heuristics would not (a lock used in many places of one program).
#define CONCUR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CONCUR_LIKELY(x) (x)
#define CONCUR_UNLIKELY(x) (x)
#define CONCUR_NOINLINE
#define CONCUR_COLD
#define CONCUR_ALWAYS_INLINE inline
#endif

namespace concur::detail {

// The size that keeps two independently written atomics from sharing a cache line. A fixed 64
// rather than std::hardware_destructive_interference_size, whose value may differ between
// compiler flags and so cannot appear in a header-only library's layouts.
inline constexpr unsigned cache_line_size = 64;

// Asks the CPU to bring the line of `address` into the cache, to be written: for loops over
// long lists of pointers, whose every element misses. Only a hint; it never faults.
inline void prefetch_for_write(const void* address) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address, 1);
#else
  (void)address;
#endif
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_CONFIG_HPP
