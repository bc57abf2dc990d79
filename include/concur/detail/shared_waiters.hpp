// concur/detail/shared_waiters.hpp
//
// SharedWaiterList: the queue of sleeping waiters behind mp::Condition and mp::Barrier, in shared
// memory, where a waiter's process may die at any instruction.
//
// The threading Condition keeps a list of nodes on its waiters' stacks; between processes there
// are no shared pointers, so the list is a fixed table of slots after the object's state. A
// waiter takes a free slot (under the object's lock), sleeps on the slot's word with the lock
// released, and gives the slot back once it holds the lock again. A notifier (holding the lock)
// marks the oldest waiting slots notified and wakes each: notify(n) wakes exactly n waiters
// when n or more wait, oldest first, as threading.Condition does.
//
// A waiter that dies. Each slot's word is a robust futex word that names its waiter: while a
// thread waits, the slot is linked into that thread's robust list (robust_list.hpp), exactly as
// a held mp::Lock is. If the thread ends while it waits, the kernel writes FUTEX_OWNER_DIED into
// the word, and the next notifier skips the slot and frees it: a dead waiter never swallows a
// notification meant for a live one, and never keeps its slot. The word's states:
//
//   0                          free
//   tid                        thread `tid` waits
//   tid | FUTEX_WAITERS        notified (FUTEX_WAITERS is the kernel's bit; here it only marks)
//   FUTEX_OWNER_DIED [| ...]   its waiter died; free to take
//
// A waiter killed after it was notified, before it took the lock back, leaves the word
// FUTEX_OWNER_DIED | FUTEX_WAITERS: a notification nobody received. With `pass_on` (a
// Condition), whoever frees that slot gives the notification to the oldest live waiter instead,
// and sleeping waiters look for such slots at every recheck (has_dead_notified()), so that the
// notification is not lost when nobody else comes by. Without (a Barrier, whose notifications
// belong to one round), the slot is only freed.
//
// Deaths between two steps:
//   - enlist: `pending` names the slot before its word takes the caller's id, so a death before
//     the link is covered (the kernel treats the pending slot as listed).
//   - delist: the same, before the unlink, until the word is 0.
//   - a notifier killed between its mark and its wake call: the waiter sleeps at most
//     SharedWaits::recheck_interval before it looks at its word again.
//   - the counters (`enlisted`, `high`) only ever err upward (each is raised before, and lowered
//     after, the word's change), which costs a longer scan, never a missed waiter.
//
// Memory ordering: every slot and counter is changed with the object's lock held, which orders
// them; the one read without the lock, a sleeping waiter's look at its word, is an acquire
// against the notifier's release, though what the notifier wrote is in any case the lock's to
// publish, since the waiter takes the lock before it returns.

#ifndef CONCUR_DETAIL_SHARED_WAITERS_HPP
#define CONCUR_DETAIL_SHARED_WAITERS_HPP

#if !defined(__linux__)
#error "concur/detail/shared_waiters.hpp is Linux only"
#endif

#include <linux/futex.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_list.hpp"
#include "concur/detail/robust_lock.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/shared_waits.hpp"
#include "concur/detail/spin.hpp"

namespace concur::detail {

// One waiter's place; the items of a Condition's or Barrier's block.
struct SharedWaiterSlot {
  RobustSlot owner;           // the word, and the links of its waiter's robust list
  std::uint32_t ticket = 0;   // order of arrival, while the word is not 0
  std::uint32_t outcome = 0;  // what the notifier left for the waiter (Barrier: released, broken)
};

// The list's counters, in the object's state.
struct SharedWaiterCounts {
  std::uint32_t next_ticket = 0;
  std::uint32_t enlisted = 0;  // slots not free: an upper bound (see the header comment)
  std::uint32_t high = 0;      // slots at or past `high` have never been used
  std::uint32_t unused = 0;
};

// SharedWaiterList
//
// A view of the counters and the slots of one object. Every member but sleep() is called with
// the object's lock held.
class SharedWaiterList {
 public:
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  // How long a waiter spins before it sleeps: a Barrier's round between running processes ends
  // within microseconds.
  static constexpr std::chrono::microseconds spin_budget{20};

  SharedWaiterList(SharedWaiterCounts& counts, SharedWaiterSlot* slots, std::size_t capacity,
                   bool pass_on) noexcept
      : counts_(counts), slots_(slots), capacity_(capacity), pass_on_(pass_on) {}

  SharedWaiterSlot& slot(std::size_t index) const noexcept { return slots_[index]; }

  // SharedWaiterList::enlist()
  //
  // Takes a free slot for the calling thread, linked into its robust list, and returns its
  // index; `none` when every slot is taken by a live waiter.
  std::size_t enlist() noexcept {
    reclaim_dead();
    for (std::size_t i = 0; i < capacity_; ++i) {
      std::atomic<std::uint32_t>& word = slots_[i].owner.word();
      if (word.load(std::memory_order_relaxed) != 0) continue;
      ++counts_.enlisted;
      if (i >= counts_.high) counts_.high = static_cast<std::uint32_t>(i + 1);
      slots_[i].ticket = counts_.next_ticket++;
      slots_[i].outcome = 0;
      RobustHead* const head = robust_head();
      robust_pending(head, &slots_[i].owner);
      CONCUR_SCHEDULE_POINT("shared_waiters.enlist.before_store");
      word.store(current_tid(), std::memory_order_relaxed);
      robust_link(head, slots_[i].owner);
      robust_pending(head, nullptr);
      return i;
    }
    return none;
  }

  // SharedWaiterList::notify(n, outcome)
  //
  // Marks up to `n` waiting slots notified with `outcome`, oldest first, and wakes their
  // waiters; frees the slots of dead waiters it meets. Returns how many it notified.
  std::size_t notify(std::size_t n, std::uint32_t outcome) noexcept {
    if (n == 0 || counts_.enlisted == 0) return 0;
    reclaim_dead();
    if (n >= counts_.enlisted) return notify_every(outcome);
    std::size_t done = 0;
    while (done < n) {
      const std::size_t oldest = find_oldest();
      if (oldest == none) break;
      if (mark(oldest, outcome)) ++done;
    }
    return done;
  }

  // SharedWaiterList::notify_every(outcome)
  //
  // notify() for every waiter.
  std::size_t notify_every(std::uint32_t outcome) noexcept {
    std::size_t done = 0;
    for (std::size_t i = 0; i < counts_.high; ++i) {
      const std::uint32_t seen = slots_[i].owner.word().load(std::memory_order_relaxed);
      if ((seen & FUTEX_OWNER_DIED) != 0) {
        free_dead(i);  // notified or not: every live waiter is notified now
      } else if (seen != 0 && (seen & FUTEX_WAITERS) == 0 && mark(i, outcome)) {
        ++done;
      }
    }
    return done;
  }

  // SharedWaiterList::reclaim_dead()
  //
  // Frees the slots of dead waiters; with `pass_on`, the notification a dead waiter never
  // received goes to the oldest live waiter.
  void reclaim_dead() noexcept {
    std::size_t owed = 0;
    for (std::size_t i = 0; i < counts_.high; ++i) {
      const std::uint32_t seen = slots_[i].owner.word().load(std::memory_order_relaxed);
      if ((seen & FUTEX_OWNER_DIED) == 0) continue;
      if ((seen & FUTEX_WAITERS) != 0) ++owed;
      free_dead(i);
    }
    while (pass_on_ && owed != 0) {
      const std::size_t oldest = find_oldest();
      if (oldest == none) break;
      if (mark(oldest, 0)) --owed;
    }
  }

  // SharedWaiterList::has_dead_notified()
  //
  // Without the lock: whether a waiter died notified, leaving a notification for reclaim_dead()
  // to pass on.
  [[nodiscard]] bool has_dead_notified() const noexcept {
    constexpr std::uint32_t dead_notified = FUTEX_OWNER_DIED | FUTEX_WAITERS;
    for (std::size_t i = 0; i < capacity_; ++i) {
      const std::uint32_t seen = slots_[i].owner.word().load(std::memory_order_relaxed);
      if ((seen & dead_notified) == dead_notified) return true;
    }
    return false;
  }

  // SharedWaiterList::notified(index)
  //
  // Whether slot `index` has been notified.
  [[nodiscard]] bool notified(std::size_t index) const noexcept {
    return (slots_[index].owner.word().load(std::memory_order_acquire) & FUTEX_WAITERS) != 0;
  }

  // SharedWaiterList::sleep(slot, deadline, give_up)
  //
  // Without the lock: waits until the slot is notified (true), or `deadline` passes or
  // `give_up()`, asked at every look (at least every SharedWaits::recheck_interval), is true
  // (false).
  template <class GiveUp>
  static bool sleep(SharedWaiterSlot& slot, steady_time deadline, GiveUp give_up) noexcept {
    std::atomic<std::uint32_t>& word = slot.owner.word();
    auto notified = [&] { return (word.load(std::memory_order_acquire) & FUTEX_WAITERS) != 0; };
    if (spin_for(notified, deadline, spin_budget)) return true;
    for (;;) {
      const std::uint32_t seen = word.load(std::memory_order_acquire);
      if ((seen & FUTEX_WAITERS) != 0) return true;
      if (reached(deadline) || give_up()) return false;
      CONCUR_SCHEDULE_POINT("shared_waiters.sleep.before_sleep");
      (void)SharedWaits::wait_until(word, seen, deadline);
    }
  }

  // What a waiter found when it gave its slot back.
  struct Left {
    bool notified;
    std::uint32_t outcome;
  };

  // SharedWaiterList::delist(index)
  //
  // Gives the calling thread's slot back (the lock held again): unlinks it and frees it. Says
  // whether it was notified (a waiter that timed out may have been notified since) and with what.
  Left delist(std::size_t index) noexcept {
    SharedWaiterSlot& mine = slots_[index];
    std::atomic<std::uint32_t>& word = mine.owner.word();
    const Left left{(word.load(std::memory_order_acquire) & FUTEX_WAITERS) != 0, mine.outcome};
    RobustHead* const head = robust_head();
    robust_pending(head, &mine.owner);
    robust_unlink(head, mine.owner);
    CONCUR_SCHEDULE_POINT("shared_waiters.delist.before_free");
    word.store(0, std::memory_order_relaxed);
    robust_pending(head, nullptr);
    --counts_.enlisted;
    return left;
  }

 private:
  // The waiting slot with the oldest ticket, freeing dead ones on the way; `none` if none.
  std::size_t find_oldest() noexcept {
    std::size_t oldest = none;
    std::uint32_t oldest_age = 0;
    for (std::size_t i = 0; i < counts_.high; ++i) {
      const std::uint32_t seen = slots_[i].owner.word().load(std::memory_order_relaxed);
      if (seen == 0 || (seen & FUTEX_WAITERS) != 0) continue;
      if ((seen & FUTEX_OWNER_DIED) != 0) {
        free_dead(i);
        continue;
      }
      // Tickets wrap: the age (next - ticket) orders them while fewer than 2^32 wait.
      const std::uint32_t age = counts_.next_ticket - slots_[i].ticket;
      if (oldest == none || age > oldest_age) {
        oldest = i;
        oldest_age = age;
      }
    }
    return oldest;
  }

  // Marks slot `index` notified and wakes its waiter; false if its waiter died just now (the
  // kernel's write won the race), in which case the slot is freed.
  bool mark(std::size_t index, std::uint32_t outcome) noexcept {
    std::atomic<std::uint32_t>& word = slots_[index].owner.word();
    slots_[index].outcome = outcome;
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    while ((seen & FUTEX_OWNER_DIED) == 0) {
      if (word.compare_exchange_weak(seen, seen | FUTEX_WAITERS, std::memory_order_release,
                                     std::memory_order_relaxed)) {
        CONCUR_SCHEDULE_POINT("shared_waiters.notify.before_wake");
        SharedWaits::wake(word, 1);
        return true;
      }
    }
    free_dead(index);
    return false;
  }

  // Frees the slot of a waiter that died while it waited (its word says FUTEX_OWNER_DIED).
  void free_dead(std::size_t index) noexcept {
    slots_[index].owner.word().store(0, std::memory_order_relaxed);
    --counts_.enlisted;
  }

  SharedWaiterCounts& counts_;
  SharedWaiterSlot* slots_;
  std::size_t capacity_;
  bool pass_on_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SHARED_WAITERS_HPP
