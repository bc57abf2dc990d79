// concur/detail/executor/helper_event.hpp
//
// HelperEvent, where the thread pool's threads that wait for a task of their own pool sleep
// (thread_pool.hpp).

#ifndef CONCUR_DETAIL_EXECUTOR_HELPER_EVENT_HPP
#define CONCUR_DETAIL_EXECUTOR_HELPER_EVENT_HPP

#include <atomic>
#include <cstdint>

#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait.hpp"

namespace concur::detail {

// HelperEvent
//
// Where pool threads that wait for a task of their pool sleep: an event count with epochs (the
// original form of Dmitry Vyukov's eventcount). Unlike EventCount's wake-up tokens, which any
// registered thread may take, an epoch wakes exactly the threads that registered before it
// moved. That matters here because helpers wait for different things (each its own task):
// with tokens, a helper whose task is not done could take, re-register and take again the token
// meant for one whose task is done, which would then sleep on with its task finished.
//
// One 32-bit word: the epoch in the high 16 bits, the number of registered sleepers in the low
// 16. A notify that finds sleepers moves the epoch and clears the count in one compare-and-swap
// (the sleepers it wakes are no longer registered), so the next notify costs one load until
// somebody registers again: a burst of submits wakes a sleeping helper once, not once per
// submit.
//
//   helper                                     notifier (a completer, a submitter)
//   key = prepare_wait()   (count + 1)         make the change (seq_cst)
//   if (condition) cancel_wait();              notify_all(): count > 0 ? epoch + 1, count = 0,
//   else wait(key, deadline);                                wake all
//
// Memory ordering: the Dekker pair of event_count.hpp. If the notifier's seq_cst load of the
// word misses a helper's registration (a seq_cst read-modify-write), the load precedes it in the
// single order S, so the change precedes the helper's check, which sees it. Otherwise the
// notifier moves the epoch: the helper sleeps only while the word still holds its epoch, so it
// does not sleep, or is woken. A helper whose epoch has moved was taken off the count by the
// notifier, and does not take itself off again. The epoch is 16 bits: a helper could miss its
// wake-up only if 65,536 notifies, each after a fresh registration, came between its
// registration and its sleep (at most 65,535 helpers may wait, as on an EventCount).
class HelperEvent {
 public:
  // HelperEvent::prepare_wait()
  //
  // Registers the caller; returns its epoch, the key for cancel_wait() or wait().
  std::uint32_t prepare_wait() noexcept {
    const std::uint32_t word = word_.fetch_add(1, std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("helper_event.after_register");
    return epoch(word);
  }

  // HelperEvent::cancel_wait(key)
  //
  // Undoes prepare_wait() when the condition turned out true.
  void cancel_wait(std::uint32_t key) noexcept { leave(key); }

  // HelperEvent::wait(key, deadline)
  //
  // Sleeps until a notify moves the epoch past `key`, or the deadline; false at the deadline.
  bool wait(std::uint32_t key, steady_time deadline) noexcept {
    std::uint32_t word = word_.load(std::memory_order_acquire);
    while (epoch(word) == key) {
      if (!wait_on_until(word_, word, deadline)) {
        if (leave(key)) return false;  // still registered: a timeout
        return true;                   // a notify came at the deadline
      }
      word = word_.load(std::memory_order_acquire);
    }
    return true;
  }

  // HelperEvent::notify_all()
  //
  // Wakes every registered helper; one load when there is none.
  void notify_all() noexcept {
    std::uint32_t word = word_.load(std::memory_order_seq_cst);
    for (;;) {
      if ((word & count_mask) == 0) return;
      CONCUR_SCHEDULE_POINT("helper_event.before_bump");
      const std::uint32_t next = (word & ~count_mask) + epoch_one;  // epoch + 1, count 0
      if (word_.compare_exchange_weak(word, next, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        wake_all(word_);
        return;
      }
    }
  }

 private:
  static constexpr std::uint32_t count_mask = 0xffff;
  static constexpr std::uint32_t epoch_one = 0x10000;

  static std::uint32_t epoch(std::uint32_t word) noexcept { return word >> 16; }

  // Takes the caller off the count if its epoch is still current; false if a notify took it
  // off already.
  bool leave(std::uint32_t key) noexcept {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    while (epoch(word) == key) {
      if (word_.compare_exchange_weak(word, word - 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }

  wait_word word_{0};
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_HELPER_EVENT_HPP
