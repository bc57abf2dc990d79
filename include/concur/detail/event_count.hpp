// concur/detail/event_count.hpp
//
// An event count (Dmitry Vyukov's design, as in folly's EventCount): lets threads sleep until
// some lock-free condition may have become true, while the threads that make it true pay
// nothing unless somebody sleeps.
//
//   Waiter                                   Notifier
//   const auto key = events.prepare_wait();  make the condition true (a store)
//   if (condition) { events.cancel_wait(); } events.notify_one();   // or notify_all()
//   else events.wait(key, deadline);
//
// The waiter registers, then reads the epoch, then checks the condition; the notifier changes
// the condition, then looks at the waiter count, and bumps the epoch and wakes sleepers only
// if there are any. Between "change the condition" and "look at the count" the notifier needs a
// store-load barrier, or the two sides could each miss the other. Where the asymmetric fence is
// available (concur/detail/heavy_fence.hpp) the waiter, whose path costs a system call anyway,
// pays for it with heavy_fence() and the notifier's check stays a plain load; elsewhere the
// notifier's check is a read-modify-write.
//
// Memory ordering: a waiter that returns from wait() (or sees the epoch change) sees everything
// the notifier did before notify_*().

#ifndef CONCUR_DETAIL_EVENT_COUNT_HPP
#define CONCUR_DETAIL_EVENT_COUNT_HPP

#include <atomic>
#include <climits>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/heavy_fence.hpp"
#include "concur/detail/wait.hpp"

namespace concur::detail {

class EventCount {
 public:
  // EventCount::prepare_wait()
  //
  // Registers the caller as a waiter and returns the key to wait() with. The caller must then
  // check its condition and call either cancel_wait() or wait().
  std::uint32_t prepare_wait() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (heavy_fence_available) heavy_fence();
    return epoch_.load(std::memory_order_acquire);
  }

  // EventCount::cancel_wait()
  //
  // Undoes prepare_wait() when the condition turned out true.
  void cancel_wait() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }

  // EventCount::wait(key, deadline)
  //
  // Sleeps until a notify after prepare_wait(), or the deadline; false when the deadline passed
  // with no notify. May return true spuriously: the caller re-checks its condition.
  bool wait(std::uint32_t key, steady_time deadline = never) noexcept {
    bool notified = true;
    while (epoch_.load(std::memory_order_acquire) == key) {
      if (!wait_on_until(epoch_, key, deadline)) {
        notified = epoch_.load(std::memory_order_acquire) != key;
        break;
      }
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return notified;
  }

  // EventCount::notify_one(), notify_all()
  //
  // Wakes one (or every) registered waiter, if any; otherwise costs one load.
  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(INT_MAX); }

  // EventCount::notify(n)
  //
  // Wakes up to `n` registered waiters.
  void notify(int n) noexcept {
    // Without the waiter's heavy fence, a read-modify-write (a full barrier) stands in for the
    // store-load barrier; a fence instruction would do too, but ThreadSanitizer cannot see one.
    const std::uint32_t waiting = heavy_fence_available
                                      ? waiters_.load(std::memory_order_relaxed)
                                      : waiters_.fetch_add(0, std::memory_order_seq_cst);
    if (CONCUR_LIKELY(waiting == 0)) return;
    epoch_.fetch_add(1, std::memory_order_release);
    wake(epoch_, n);
  }

  // EventCount::has_waiters()
  //
  // Whether any thread is registered right now (a snapshot).
  bool has_waiters() const noexcept { return waiters_.load(std::memory_order_relaxed) != 0; }

 private:
  wait_word epoch_{0};
  std::atomic<std::uint32_t> waiters_{0};
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EVENT_COUNT_HPP
