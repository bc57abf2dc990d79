// concur/detail/event_count.hpp
//
// An event count (after Dmitry Vyukov's eventcount and folly's EventCount, with wake-ups kept as
// tokens as a counting semaphore keeps its units): lets threads sleep until some lock-free
// condition may have become true, while the threads that make it true pay one load unless
// somebody sleeps.
//
//   Waiter                                   Notifier
//   events.prepare_wait();                   make the condition true (a seq_cst store or RMW)
//   if (condition) { events.cancel_wait(); } events.notify_one();   // or notify(n), notify_all()
//   else events.wait(deadline);
//
// State: one 32-bit word that threads sleep on (a futex), holding the number of registered
// waiters and the number of wake-up tokens handed out and not yet taken (tokens <= waiters). A
// notify hands out a token only when some registered waiter has none coming, and then wakes one
// sleeper; a waiter leaves wait() by taking a token (or at its deadline). So a notifier that
// finds every registered waiter already on its way (a woken thread not yet scheduled) costs one
// load, not a system call: without this, a producer that keeps putting while a woken consumer
// waits for a CPU would make one futex call per item. A token cannot be lost: it stays in the
// word until a registered thread takes it, a waiter never sleeps while a token is there (the
// word it sleeps on holds the count of tokens), and every thread that takes one re-checks the
// condition afterwards (wait() returns true, or cancel_wait() follows a true check).
//
// Contract: the notifier makes its change with a memory_order_seq_cst store or read-modify-write,
// sequenced before notify_*(); the waiter's check after prepare_wait() reads the words notifiers
// change with seq_cst loads. No asymmetric fence (membarrier) is used: it interrupts every CPU
// running the process and takes a machine-wide lock, on a path whose rate grows with load.
//
// Memory ordering (the Dekker pair, in the C++ model). Let R be a waiter's registration (a
// seq_cst fetch_add on the word), C its check, M the notifier's change and L the notifier's
// seq_cst load of the word. R is sequenced before C and M before L, so all four lie in the single
// total order S of seq_cst operations in those orders. If L does not see R, L is
// coherence-ordered before R, so L precedes R in S; then M precedes C in S, and C, a seq_cst
// load of the word M wrote, reads M's value or a later one: the waiter sees the change. If L
// sees R, either some registered waiter has no token coming, and the notifier hands one out (a
// seq_cst compare-and-swap) and wakes; or every registered waiter already has one coming. In
// both cases the tokens present after L are taken by read-modify-writes that come after L in
// the word's modification order (and in S), each followed by a re-check: M precedes that
// re-check in S, so the re-check sees the change. Every modification of the word is a
// read-modify-write, so a thread that takes a token also synchronizes with the notifier that
// handed it out (a release sequence) and sees everything it did before notify_*().
//
// On x86 a seq_cst store is an exchange and a seq_cst load a plain load; on Arm they are stlr and
// ldar, which are ordered with each other. At most 65,535 threads may wait on one event count.

#ifndef CONCUR_DETAIL_EVENT_COUNT_HPP
#define CONCUR_DETAIL_EVENT_COUNT_HPP

#include <atomic>
#include <climits>
#include <cstdint>

#include "concur/detail/config.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/wait.hpp"

namespace concur::detail {

class EventCount {
 public:
  // EventCount::prepare_wait()
  //
  // Registers the caller as a waiter (a seq_cst read-modify-write). The caller must then check
  // its condition with seq_cst loads and call either cancel_wait() or wait().
  void prepare_wait() noexcept {
    CONCUR_SCHEDULE_POINT("event_count.prepare.before_register");
    word_.fetch_add(one_waiter, std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("event_count.prepare.after_register");
  }

  // EventCount::cancel_wait()
  //
  // Undoes prepare_wait() when the condition turned out true. If every registered waiter has a
  // token coming, the caller takes one with it (it acts on the condition itself, which is what
  // the token asks of its taker), so that tokens never outnumber waiters.
  void cancel_wait() noexcept {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
      std::uint32_t next = word - one_waiter;
      if (tokens(word) == waiters(word)) next -= one_token;
      if (word_.compare_exchange_weak(word, next, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
        return;
      }
    }
  }

  // EventCount::wait(deadline)
  //
  // Sleeps until a token is there to take (a notify after prepare_wait()), or the deadline;
  // false when the deadline passed with no token. The caller re-checks its condition either way.
  bool wait(steady_time deadline = never) noexcept {
    while (!sleep(deadline)) {
      if (leave()) return false;
    }
    return true;
  }

  // EventCount::sleep(deadline)
  //
  // As wait(), except that at the deadline the caller stays registered: it must then re-check
  // its condition and call cancel_wait(), sleep() or wait() (the rescue of
  // concur/detail/store_buffer.hpp is a sleep() to a short deadline, a re-check and a wait()).
  bool sleep(steady_time deadline) noexcept {
    CONCUR_SCHEDULE_POINT("event_count.wait.before_sleep");
    std::uint32_t word = word_.load(std::memory_order_seq_cst);
    for (;;) {
      if (tokens(word) > 0) {
        // Take a token and leave (a seq_cst read-modify-write, before the caller's re-check).
        if (word_.compare_exchange_weak(word, word - one_waiter - one_token,
                                        std::memory_order_seq_cst, std::memory_order_seq_cst)) {
          CONCUR_SCHEDULE_POINT("event_count.wait.took_token");
          return true;
        }
        continue;
      }
      // No token: sleep while the word stays as it is (any notify changes it).
      if (!wait_on_until(word_, word, deadline)) {
        word = word_.load(std::memory_order_seq_cst);
        if (tokens(word) > 0) continue;  // a notify came at the deadline: take its token
        return false;
      }
      CONCUR_SCHEDULE_POINT("event_count.wait.after_wake");
      word = word_.load(std::memory_order_seq_cst);
    }
  }

  // EventCount::notify_one(), notify_all()
  //
  // Wakes one (or every) registered waiter that has no token coming, if any; otherwise costs
  // one load.
  void notify_one() noexcept { notify(1); }
  void notify_all() noexcept { notify(INT_MAX); }

  // EventCount::notify(n)
  //
  // Hands out up to `n` tokens, one to each registered waiter that has none coming, and wakes as
  // many sleepers. The caller made its change with a seq_cst store or read-modify-write before
  // calling (see the contract above).
  void notify(int n) noexcept {
    CONCUR_SCHEDULE_POINT("event_count.notify.before_check");
    std::uint32_t word = word_.load(std::memory_order_seq_cst);
    std::uint32_t handed = 0;
    for (;;) {
      const std::uint32_t without = waiters(word) - tokens(word);
      if (CONCUR_LIKELY(without == 0)) return;
      handed = n <= 0                                    ? 0
               : static_cast<std::uint32_t>(n) < without ? static_cast<std::uint32_t>(n)
                                                         : without;
      if (handed == 0) return;
      CONCUR_SCHEDULE_POINT("event_count.notify.before_token");
      if (word_.compare_exchange_weak(word, word + handed * one_token, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        break;
      }
    }
    CONCUR_SCHEDULE_POINT("event_count.notify.before_wake");
    if (handed == 1) {
      wake_one(word_);
    } else {
      wake(word_, handed > INT_MAX ? INT_MAX : static_cast<int>(handed));
    }
  }

  // EventCount::has_waiters()
  //
  // Whether some registered waiter has no token coming, right now: a seq_cst load, so that a
  // thread that made a condition true with a seq_cst store or read-modify-write and then finds
  // none knows that every waiter will see its change (the same pair as notify()).
  bool has_waiters() const noexcept {
    const std::uint32_t word = word_.load(std::memory_order_seq_cst);
    return waiters(word) != tokens(word);
  }

 private:
  // Unregisters a waiter whose deadline passed; false (still registered) if a token has come,
  // which the caller's next sleep() takes at once.
  bool leave() noexcept {
    std::uint32_t word = word_.load(std::memory_order_seq_cst);
    while (tokens(word) == 0) {
      if (word_.compare_exchange_weak(word, word - one_waiter, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        return true;
      }
    }
    return false;
  }

  static constexpr std::uint32_t one_waiter = 1;
  static constexpr std::uint32_t one_token = std::uint32_t{1} << 16;
  static std::uint32_t waiters(std::uint32_t word) noexcept { return word & 0xffffu; }
  static std::uint32_t tokens(std::uint32_t word) noexcept { return word >> 16; }

  wait_word word_{0};  // tokens << 16 | waiters
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EVENT_COUNT_HPP
