// concur/detail/wait_portable.hpp
//
// The portable implementation of the wait/wake seam, for systems without a futex and for builds
// that define CONCUR_PORTABLE_WAIT.
//
// Untimed waits use C++20's std::atomic::wait/notify, which the standard library maps to the
// best primitive it has. One difference from a futex shapes the wake side: a woken
// std::atomic::wait goes back to sleep when the word still holds the value it waited on, so a
// notify_one() can be absorbed by a waiter that went to sleep on the current value just before
// it, while the waiter it was meant for sleeps on. wake_one() therefore notifies every waiter on
// this path; each re-checks its own state, and those with nothing to do sleep again. The futex
// path wakes exactly one. The standard offers no timed atomic wait, so timed waits park in a small
// table of buckets, each a std::mutex and a std::condition_variable, chosen by hashing the
// word's address (the "parking lot" idea of WebKit's WTF::ParkingLot, in its simplest form). A
// timed waiter sleeps in condition_variable::wait_until against the absolute deadline; nothing
// polls.
//
// The handshake between a timed waiter and a waker goes through the bucket's counter of timed
// waiters, with read-modify-writes on both sides: the waiter increments it and then reads the
// word; the waker, having changed the word, adds zero to it. Read-modify-writes on one atomic
// are totally ordered and each reads the one before it, so either the waker's comes first, and
// then (release to acquire) the waiter sees the changed word and does not sleep, or the waiter's
// does, and the waker sees a waiter and takes the bucket's mutex to notify it. No fence is
// needed, which keeps ThreadSanitizer (which does not model fences) exact.
//
// Include concur/detail/wait.hpp instead of this file.

#ifndef CONCUR_DETAIL_WAIT_PORTABLE_HPP
#define CONCUR_DETAIL_WAIT_PORTABLE_HPP

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"

namespace concur::detail::portable {

struct alignas(cache_line_size) ParkingBucket {
  std::mutex mutex;
  std::condition_variable wakeup;
  std::atomic<std::uint32_t> timed_waiters{0};
};

inline constexpr std::size_t parking_bucket_count = 64;

// The bucket for a word's address. The table is created on first use and never destroyed, so a
// thread still waiting while the process exits never touches a destroyed mutex.
inline ParkingBucket& bucket_for(const void* address) noexcept {
  static ParkingBucket* const table = new ParkingBucket[parking_bucket_count];
  const auto bits = reinterpret_cast<std::uintptr_t>(address);
  return table[(bits >> 2) * 0x9E3779B97F4A7C15ull >> 58];
}
static_assert(parking_bucket_count == 64, "bucket_for keeps the top 6 bits of the hash");

inline void wait_on(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  word.wait(expected, std::memory_order_acquire);
}

inline bool wait_on_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                          steady_time deadline) noexcept {
  if (deadline == never) {
    wait_on(word, expected);
    return true;
  }
  ParkingBucket& bucket = bucket_for(&word);
  bucket.timed_waiters.fetch_add(1, std::memory_order_acq_rel);
  bool woken = true;
  {
    std::unique_lock<std::mutex> hold(bucket.mutex);
    if (word.load(std::memory_order_acquire) == expected) {
      woken = bucket.wakeup.wait_until(hold, deadline) == std::cv_status::no_timeout;
    }
  }
  bucket.timed_waiters.fetch_sub(1, std::memory_order_release);
  return woken;
}

inline void wake_timed_waiters(const std::atomic<std::uint32_t>& word) noexcept {
  ParkingBucket& bucket = bucket_for(&word);
  if (bucket.timed_waiters.fetch_add(0, std::memory_order_acq_rel) == 0) return;
  // Taking the mutex orders this wake after any waiter that has read the old word but not yet
  // gone to sleep: that waiter holds the mutex until wait_until releases it atomically.
  { std::lock_guard<std::mutex> hold(bucket.mutex); }
  // The bucket is shared by unrelated words, so every sleeper is woken; the others see their
  // own word unchanged and sleep again.
  bucket.wakeup.notify_all();
}

inline void wake_one(std::atomic<std::uint32_t>& word) noexcept {
  word.notify_all();  // see the note at the top: notify_one could be absorbed
  wake_timed_waiters(word);
}

inline void wake_all(std::atomic<std::uint32_t>& word) noexcept {
  word.notify_all();
  wake_timed_waiters(word);
}

inline void wake(std::atomic<std::uint32_t>& word, int /*count*/) noexcept {
  wake_all(word);
}

}  // namespace concur::detail::portable

#endif  // CONCUR_DETAIL_WAIT_PORTABLE_HPP
