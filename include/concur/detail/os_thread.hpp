// concur/detail/os_thread.hpp
//
// The platform seam for threads: starting a detached OS thread, the calling thread's identifiers,
// and the name the OS shows in `top -H`, `ps -L` and debuggers. POSIX threads everywhere; Linux
// adds kernel thread ids (gettid) and 15-character names set with pthread_setname_np.

#ifndef CONCUR_DETAIL_OS_THREAD_HPP
#define CONCUR_DETAIL_OS_THREAD_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur threads need POSIX threads"
#endif

#include <pthread.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace concur::detail {

// A pthread_t as an integer ident, and back.
inline std::uint64_t from_pthread(pthread_t handle) noexcept {
  if constexpr (std::is_pointer_v<pthread_t>) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(handle));
  } else {
    return static_cast<std::uint64_t>(handle);
  }
}

inline pthread_t to_pthread(std::uint64_t ident) noexcept {
  if constexpr (std::is_pointer_v<pthread_t>) {
    return reinterpret_cast<pthread_t>(static_cast<std::uintptr_t>(ident));
  } else {
    return static_cast<pthread_t>(ident);
  }
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

inline const int native_id_forgotten_after_fork =
    ::pthread_atfork(nullptr, nullptr, &os_forget_native_id);

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

// True when the calling thread is the process's initial thread.
inline bool os_is_initial_thread() noexcept {
#if defined(__linux__)
  return os_thread_native_id() == static_cast<std::uint64_t>(::getpid());
#else
  return ::pthread_main_np() != 0;
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
