// concur/detail/store_buffer.hpp
//
// Publishing with a plain store on x86, and the rescue that makes it safe without a fence.
//
// Several protocols pair a change with a look for sleepers, against a waiter's registration and
// check (the Dekker pair of concur/detail/event_count.hpp):
//
//   Notifier                                  Waiter
//   S  store: make the condition true          R  register (a read-modify-write)
//   L  load the waiter count; wake if any      C  check the condition; sleep if false
//
// With S and L sequentially consistent, L sees R or C sees S. On x86 a sequentially consistent
// store is an xchg, a locked instruction that waits for the store buffer to drain; a plain
// store does not wait, and L may then read the count while S still sits in the store buffer,
// invisible to C: both can miss, and the waiter sleeps through the change.
//
// The rescue. x86's order (total store order) lets a load pass only earlier stores of its own
// thread, and a store leaves the store buffer within nanoseconds (an interrupt or a context
// switch drains it at once). If L did not see R, L read the count before R was made, so S had
// been issued before R; store_drain_bound after R, S is visible to every CPU. So a waiter that
// registers with R, checks and finds nothing, sleeps at first only until store_drain_bound after
// R, and then checks again (still registered) before it sleeps on. Every plain S is thereby
// covered: a waiter that L saw is woken by the notifier as before, and one that L did not see
// re-checks after S is visible. The cost is one extra wake-up for a sleep longer than the bound
// (an idle waiter), none on the hot path; concur::Lock uses the same argument for its store
// release (concur/detail/lock_word.hpp).
//
// The compiler must keep L after S: a release store followed by a load of another word may be
// reordered by the C++ rules, so the notifier puts a signal fence (no instruction) between them.
// Elsewhere (Arm, POWER, RISC-V) stores stay sequentially consistent and there is no rescue.
//
// Schedule exploration. The sanitizers and the explore preset cannot make a store linger in a
// store buffer, so builds with CONCUR_SCHEDULE_EXPLORATION emulate the worst it can do: the
// notifier runs L before S (StoreBufferWindow), and the rescue first waits until no emulated
// store is pending, which is what store_drain_bound promises on real hardware. A waiter that
// skipped its rescue would then sleep through the change, and the stress tests' watchdogs see
// it.

#ifndef CONCUR_DETAIL_STORE_BUFFER_HPP
#define CONCUR_DETAIL_STORE_BUFFER_HPP

#include <atomic>
#include <chrono>
#include <thread>

#include "concur/detail/config.hpp"

namespace concur::detail {

#if defined(__x86_64__) || defined(__i386__)
inline constexpr bool plain_store_publish = true;
#else
inline constexpr bool plain_store_publish = false;
#endif

// The order of a publishing store: release where the rescue covers it, seq_cst elsewhere.
inline constexpr std::memory_order publish_order =
    plain_store_publish ? std::memory_order_release : std::memory_order_seq_cst;

// How long after its registration a waiter re-checks (see "The rescue"): far longer than any
// store buffer drains, short enough that an idle waiter's extra wake-up costs nothing that shows.
inline constexpr std::chrono::microseconds store_drain_bound{100};

#if defined(CONCUR_SCHEDULE_EXPLORATION) && (defined(__x86_64__) || defined(__i386__))
#define CONCUR_EMULATE_STORE_BUFFER 1
#else
#define CONCUR_EMULATE_STORE_BUFFER 0
#endif

#if CONCUR_EMULATE_STORE_BUFFER
// The number of emulated stores issued and not yet visible (see "Schedule exploration").
inline std::atomic<int>& pending_emulated_stores() noexcept {
  static std::atomic<int> pending{0};
  return pending;
}

// Marks a notifier's emulated store as pending from before its L to after its S.
class StoreBufferWindow {
 public:
  StoreBufferWindow() noexcept { pending_emulated_stores().fetch_add(1); }
  ~StoreBufferWindow() { drain(); }
  void drain() noexcept {
    if (open_) pending_emulated_stores().fetch_sub(1);
    open_ = false;
  }
  StoreBufferWindow(const StoreBufferWindow&) = delete;
  StoreBufferWindow& operator=(const StoreBufferWindow&) = delete;

 private:
  bool open_ = true;
};

// The rescue's precondition in an emulating build: every store issued before now is visible.
inline void wait_for_emulated_stores() noexcept {
  while (pending_emulated_stores().load() > 0) std::this_thread::yield();
}
#else
inline void wait_for_emulated_stores() noexcept {}
#endif

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_STORE_BUFFER_HPP
