// concur/detail/os_thread.hpp
//
// The platform seam for threads: starting a detached OS thread, the calling thread's identifiers,
// and the name the OS shows in `top -H`, `ps -L` and debuggers. POSIX threads everywhere (on
// Windows, MinGW-w64's winpthreads); Linux adds kernel thread ids (gettid) and 15-character names
// set with pthread_setname_np.
//
// pthread_t is an opaque type: an unsigned long on Linux/glibc, a 32-bit integer on some 32-bit
// C libraries, a pointer on macOS and the BSDs, an uintptr_t in winpthreads. Every conversion
// between it and concur's 64-bit ident goes through handle_to_ident() / ident_to_handle(), which
// are templates over the handle type so that each branch is only instantiated for a type it fits
// (tests/os_thread_test.cpp instantiates them with pointer and 32-bit handles).

#ifndef CONCUR_DETAIL_OS_THREAD_HPP
#define CONCUR_DETAIL_OS_THREAD_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX && !(defined(__has_include) && __has_include(<pthread.h>))
#error "concur threads need POSIX threads (on Windows: MinGW-w64 with winpthreads)"
#endif

#include <pthread.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#elif defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#include <pthread_np.h>  // pthread_main_np
#endif

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "concur/detail/at_fork.hpp"

namespace concur::detail {

// A thread handle as a 64-bit ident, and back, for any handle type: an integer of any width and
// signedness (converted modulo 2^64 and back, so every value survives), a pointer (through
// uintptr_t), or a trivially copyable value of at most 8 bytes (its bytes). Templates, so that
// only the branch for `Handle` is instantiated.
template <class Handle>
std::uint64_t handle_to_ident(Handle handle) noexcept {
  static_assert(sizeof(Handle) <= sizeof(std::uint64_t), "a thread handle wider than 64 bits");
  if constexpr (std::is_pointer_v<Handle>) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(handle));
  } else if constexpr (std::is_integral_v<Handle> || std::is_enum_v<Handle>) {
    return static_cast<std::uint64_t>(handle);
  } else {
    static_assert(std::is_trivially_copyable_v<Handle>, "a thread handle that cannot be copied");
    std::uint64_t ident = 0;
    std::memcpy(&ident, &handle, sizeof handle);
    return ident;
  }
}

template <class Handle>
Handle ident_to_handle(std::uint64_t ident) noexcept {
  static_assert(sizeof(Handle) <= sizeof(std::uint64_t), "a thread handle wider than 64 bits");
  if constexpr (std::is_pointer_v<Handle>) {
    return reinterpret_cast<Handle>(static_cast<std::uintptr_t>(ident));
  } else if constexpr (std::is_integral_v<Handle> || std::is_enum_v<Handle>) {
    return static_cast<Handle>(ident);
  } else {
    static_assert(std::is_trivially_copyable_v<Handle>, "a thread handle that cannot be copied");
    static_assert(std::is_default_constructible_v<Handle>, "a thread handle with no default");
    Handle handle{};
    std::memcpy(&handle, &ident, sizeof handle);
    return handle;
  }
}

// This system's pthread_t as an ident, and back.
inline std::uint64_t from_pthread(pthread_t handle) noexcept {
  return handle_to_ident<pthread_t>(handle);
}

inline pthread_t to_pthread(std::uint64_t ident) noexcept {
  return ident_to_handle<pthread_t>(ident);
}

// The calling thread's ident (Python's threading.get_ident(): the pthread_t as an integer).
inline std::uint64_t os_thread_ident() noexcept {
  return from_pthread(::pthread_self());
}

#if defined(__linux__)
// The calling thread's kernel id, cached after the first call (0: not yet asked). A fork()ed
// child's thread has a new id, so the child's copy of the cache is cleared.
inline thread_local std::uint64_t cached_native_id = 0;
#endif

// Forgets the cached kernel id; the child of fork() calls it.
inline void os_forget_native_id() noexcept {
#if defined(__linux__)
  cached_native_id = 0;
#endif
}

inline const int native_id_forgotten_after_fork = at_fork(nullptr, nullptr, &os_forget_native_id);

// The calling thread's id as the kernel knows it (Python's threading.get_native_id()).
inline std::uint64_t os_thread_native_id() noexcept {
#if defined(__linux__)
  if (CONCUR_UNLIKELY(cached_native_id == 0)) {
    cached_native_id = static_cast<std::uint64_t>(::syscall(SYS_gettid));
  }
  return cached_native_id;
#else
  return os_thread_ident();
#endif
}

#if !defined(__linux__) && !defined(__APPLE__) && !defined(__FreeBSD__) && \
    !defined(__OpenBSD__) && !defined(__DragonFly__)
// Where the system cannot say which thread is the initial one (Windows, NetBSD, others), the
// thread that runs static initialisation is taken for it: that is the initial thread, unless
// concur is first loaded by a library that another thread dlopen()s.
inline const std::uint64_t initial_thread_ident = from_pthread(::pthread_self());
#endif

// True when the calling thread is the process's initial thread.
inline bool os_is_initial_thread() noexcept {
#if defined(__linux__)
  return os_thread_native_id() == static_cast<std::uint64_t>(::getpid());
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
  return ::pthread_main_np() != 0;
#else
  return os_thread_ident() == initial_thread_ident;
#endif
}

// The longest thread name the OS keeps (Linux: 16 bytes with the terminating NUL).
inline constexpr std::size_t os_thread_name_max = 15;

// Sets the OS-visible name of the thread `ident` (the calling thread or another live thread of
// this process), cut to what the OS keeps. Failures are ignored: the name is a debugging aid.
inline void os_set_thread_name(std::uint64_t ident, std::string_view name) noexcept {
  char buffer[os_thread_name_max + 1] = {};
  std::memcpy(buffer, name.data(),
              name.size() < os_thread_name_max ? name.size() : os_thread_name_max);
#if defined(__linux__)
  ::pthread_setname_np(to_pthread(ident), buffer);
#elif defined(__APPLE__)
  if (ident == os_thread_ident()) ::pthread_setname_np(buffer);
#else
  (void)ident;
  (void)buffer;
#endif
}

// A test seam: when set, os_start_thread() calls it first and, when it returns an error number,
// fails with that number instead of creating a thread, as pthread_create does under a memory or
// thread limit. For tests only: null in normal use, where it costs one load per start.
using os_start_fault = int (*)();
inline std::atomic<os_start_fault> os_start_thread_fault{nullptr};

// Starts `entry(argument)` on a new thread, joinable or detached. Returns 0 and the new
// thread's ident, or the error number from pthread_create (EAGAIN when the system is out of
// threads).
inline int os_start_thread(void* (*entry)(void*), void* argument, bool detached,
                           std::uint64_t& ident) noexcept {
  if (const os_start_fault fault = os_start_thread_fault.load(std::memory_order_acquire)) {
    if (const int rc = fault(); rc != 0) return rc;
  }
  pthread_attr_t attributes;
  if (int rc = ::pthread_attr_init(&attributes); rc != 0) return rc;
  if (detached) ::pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_t handle;
  const int rc = ::pthread_create(&handle, &attributes, entry, argument);
  ::pthread_attr_destroy(&attributes);
  if (rc == 0) ident = from_pthread(handle);
  return rc;
}

// Waits for the joinable thread `ident` to exit and releases its resources (its stack goes back
// to the C library's cache for the next thread).
inline void os_join_thread(std::uint64_t ident) noexcept {
  ::pthread_join(to_pthread(ident), nullptr);
}

// Lets the joinable thread `ident` release its own resources when it exits.
inline void os_detach_thread(std::uint64_t ident) noexcept {
  ::pthread_detach(to_pthread(ident));
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_OS_THREAD_HPP
