// concur/detail/queue_core.hpp
//
// What every queue of concur/queue.hpp is built on: the outcome of a put or get, and the two
// cores that implement Python's queue semantics (put/get with block and timeout, task_done and
// join, shutdown and immediate shutdown).
//
//   RingCore    a bounded FIFO on the lock-free ring (concur/detail/mpmc_ring.hpp), with event
//               counts to sleep on when it is full or empty: concur::Queue's fast path.
//   LockedCore  a Lock and three Conditions around a container, exactly as CPython's queue.py
//               does it: for unbounded queues, LIFO and priority order, and items whose moves
//               may throw.
//
// Both take deadlines: `never` blocks, a deadline already past never blocks (Python's
// block=False), anything else is a timeout.

#ifndef CONCUR_DETAIL_QUEUE_CORE_HPP
#define CONCUR_DETAIL_QUEUE_CORE_HPP

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "concur/condition.hpp"
#include "concur/detail/deadline.hpp"
#include "concur/detail/event_count.hpp"
#include "concur/detail/mpmc_ring.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/store_buffer.hpp"
#include "concur/errors.hpp"
#include "concur/lock.hpp"

namespace concur::detail {

enum class QueueStatus { ok, timed_out, shut_down };

inline bool is_past(steady_time deadline) noexcept {
  return deadline != never && expired(deadline);
}

// RingCore
//
// Puts and gets claim ring tickets without locks. A thread that finds the ring full (empty)
// spins briefly, bounded in time and by its deadline (SpinWait), then sleeps on the not_full_
// (not_empty_) event count; every put (get) tells the other side, which costs one load when
// nobody sleeps. Task accounting needs no counter on the hot path: the ring's put ticket already
// counts every item ever put, so unfinished tasks are puts minus task_done() calls.
//
// Wake-ups ("passing the baton", as in Andrews' split binary semaphores). A get is possible when
// the slot at the get ticket holds its item: call it can_get. Exactly two kinds of step make
// can_get true:
//   (a) a producer publishes the slot at the current get ticket;
//   (b) a consumer advances the get ticket (claims) onto a slot that is already published.
// A producer may fill slot t+1 before the producer that claimed t fills t (it was preempted, or
// its move is slow): its wake-up then reaches a consumer that cannot take t+1 (FIFO), which
// sleeps again, and when t is filled the one consumer woken takes t, making can_get true by (b)
// while the others sleep. So every step of kind (a) or (b) is followed by a check: a producer
// notifies not_empty_ after every publish, and a consumer, after every claim, notifies one more
// consumer when consumers wait and can_get() still holds. The mirror image holds for can_put
// (the slot at the put ticket is free): (a') a consumer frees the slot at the put ticket and
// notifies not_full_ after every take, (b') a producer claims onto a free slot and, after every
// claim, notifies one more producer when producers wait and can_put() still holds.
//
// Why no waiter sleeps while can_get holds (can_put is the mirror image). A consumer sleeps only
// after registering with not_empty_ and then finding can_get false with seq_cst loads. Take the
// last step S before the moment in question that made can_get true; its author, after S, loads
// the waiter count (seq_cst; S itself is a seq_cst store or compare-and-swap). By the Dekker pair
// of concur/detail/event_count.hpp, either the sleeper's check saw S (and so it did not sleep on
// this state), or the author saw the sleeper registered and a registered consumer gets a wake-up
// token that it takes after S and re-checks. The woken consumer then either claims the item, and as
// a claimer it checks can_get again (b), or finds the item already claimed by another consumer,
// which checks in its turn. Each item that makes can_get true thus leaves one live consumer
// responsible for it until it is claimed.
//   - "A thread stops for 10 ms between claim and fill": the fill of t is step (a); the claim of
//     t by the consumer it wakes is step (b) when t+1 is already filled, and wakes the next.
//   - "Two puts land before the woken thread runs": the first put hands a wake-up token to one
//     sleeper; the second finds that sleeper already on its way and hands a token to another
//     one if any has none coming (EventCount). If none is left without one, each token's taker
//     re-checks after the second put (the Dekker pair) and, as a claimer, passes the baton.
//   - A waiter that wakes and finds nothing (another thread took the item first) sleeps again
//     only after re-registering and re-checking, so it cannot miss a later step. A timed-out
//     waiter tries one last claim before it reports the timeout.
// After a shutdown, "the ring is drained" (every claimed put has been taken) also ends a get's
// wait; it becomes true by the shutdown itself, which notifies everybody, or by a consumer's
// claim, which then notifies every waiting consumer.
//
// Plain turn stores (x86). Steps (a) and (a') are turn stores, plain on x86, so the notifier's
// load of the waiter count may read before its store is visible, and the Dekker pair above
// does not hold for them as it stands. Two things stand in for it. A waiter reads, after
// registering, whether the ticket it waits on has been claimed by the other side (a put or a
// take in flight). If not, the claim is still to come: a compare-and-swap that follows the
// waiter's load in the single order S and precedes the notifier's load of the waiter count,
// which therefore sees the registration, as in the pair above. If so, the rescue of
// concur/detail/store_buffer.hpp applies: a notifier whose load did not see the registration
// issued its store before it, so the store is visible store_drain_bound after the
// registration, and the waiter checks again then, still registered, before it sleeps on
// (wait_for). A waiter that the load did see is woken (a token handed out by compare-and-swap,
// a locked instruction that makes the store visible before the taker's re-check), or had a
// token coming, which some registered waiter takes; that taker may have registered after the
// load and miss the store, so whatever it does next passes the baton on a claimed item too:
// it sleeps again only after registering anew, and a claim or a timeout wakes one more waiter
// while the next slot is claimed (pass_on_get(), pass_on_put()). Steps (b) and (b') are
// claims, compare-and-swaps, as before.
//   - "The producer stops for 10 ms between its claim and its store": a consumer that registers
//     meanwhile sees the claim, checks again at its rescue, finds nothing and sleeps on; the
//     producer's load, made after the registration in real time, sees it and wakes it.
//   - "A consumer's deadline comes before its rescue": it gives up its registration, so nothing
//     waits on its account; its last try may miss an item whose store is not yet visible, which
//     is a timeout ordered before that put.
template <class T>
class RingCore {
 public:
  explicit RingCore(std::size_t capacity) : ring_(capacity) {}

  // RingCore::put(item, deadline)
  //
  // Puts `item`, waiting (until `deadline`) while the ring is full.
  QueueStatus put(T&& item, steady_time deadline) noexcept {
    std::uint64_t ticket;
    for (bool last_try = false;;) {
      if (ring_.try_claim_put(ticket)) {
        pass_on_put();
        CONCUR_SCHEDULE_POINT("ring_core.put.between_claim_and_fill");
        change_then_notify(not_empty_, 1, [&] { ring_.publish(ticket, std::move(item)); });
        return QueueStatus::ok;
      }
      if (ring_.puts_closed()) return QueueStatus::shut_down;
      if (last_try) {
        pass_on_put();  // a wake-up token this call took must not end with it
        return QueueStatus::timed_out;
      }
      // At the deadline, one last try before reporting the timeout.
      last_try = !wait_to_put(deadline);
    }
  }

  // RingCore::get(out, deadline)
  //
  // Takes the next item into `out`, waiting (until `deadline`) while the ring is empty.
  QueueStatus get(std::optional<T>& out, steady_time deadline) noexcept {
    std::uint64_t ticket;
    for (bool last_try = false;;) {
      if (ring_.try_claim_get(ticket)) {
        pass_on_get();
        CONCUR_SCHEDULE_POINT("ring_core.get.between_claim_and_take");
        change_then_notify(not_full_, 1, [&] { out.emplace(ring_.take(ticket)); });
        return QueueStatus::ok;
      }
      if (drained_after_shutdown()) return QueueStatus::shut_down;
      if (last_try) {
        pass_on_get();  // a wake-up token this call took must not end with it
        return QueueStatus::timed_out;
      }
      last_try = !wait_to_get(deadline);
    }
  }

  // Puts items from [first, last) in order, claiming as many free slots as it can at a time;
  // returns the iterator past the last item put (last, unless shut down or timed out).
  //
  // Items whose construction from *first may throw are built one at a time before their slot
  // is claimed, so that a throw leaves no claimed slot unfilled (consumers would wait on it for
  // ever) and the items before it in the queue.
  template <class It>
  It put_many(It first, It last, steady_time deadline, QueueStatus& status) {
    if constexpr (!std::is_nothrow_constructible_v<T, decltype(std::move(*first))>) {
      status = QueueStatus::ok;
      for (; first != last; ++first) {
        T item(std::move(*first));
        status = put(std::move(item), deadline);
        if (status != QueueStatus::ok) break;
      }
      return first;
    }
    status = QueueStatus::ok;
    bool last_try = false;
    while (first != last) {
      std::uint64_t ticket;
      const std::size_t claimed =
          ring_.try_claim_puts(ticket, static_cast<std::size_t>(std::distance(first, last)));
      if (claimed > 0) {
        pass_on_put();
        change_then_notify(not_empty_, static_cast<int>(claimed), [&] {
          for (std::size_t i = 0; i < claimed; ++i, ++first) {
            CONCUR_SCHEDULE_POINT("ring_core.put_many.between_claim_and_fill");
            T item(std::move(*first));
            ring_.publish(ticket + i, std::move(item));
          }
        });
        continue;
      }
      if (ring_.puts_closed()) {
        status = QueueStatus::shut_down;
        break;
      }
      if (last_try) {
        pass_on_put();
        status = QueueStatus::timed_out;
        break;
      }
      last_try = !wait_to_put(deadline);
    }
    return first;
  }

  // Waits (until `deadline`) for at least one item, then takes up to `max` without waiting.
  //
  // An output whose assignment may throw (a back_inserter whose vector cannot grow) gets one
  // claim per item, each item taken and its slot freed (and a producer told) before it is
  // written: a throw then takes only the item being written with it, as `out = get()` would,
  // and every item after it stays in the queue. A batch claim would leave the tickets claimed
  // after the throw with nobody to take them, their slots full for ever.
  template <class Out>
  std::size_t get_many(Out& out, std::size_t max, steady_time deadline, QueueStatus& status) {
    constexpr bool one_by_one = !noexcept(*out++ = std::declval<T>());
    status = QueueStatus::ok;
    if (max == 0) return 0;
    for (bool last_try = false;;) {
      std::uint64_t ticket;
      const std::size_t claimed = ring_.try_claim_gets(ticket, one_by_one ? 1 : max);
      if (claimed > 0) {
        pass_on_get();
        if constexpr (one_by_one) return deliver_one_by_one(out, ticket, max);
        change_then_notify(not_full_, static_cast<int>(claimed), [&] {
          for (std::size_t i = 0; i < claimed; ++i) {
            CONCUR_SCHEDULE_POINT("ring_core.get_many.between_claim_and_take");
            *out++ = ring_.take(ticket + i);
          }
        });
        return claimed;
      }
      if (drained_after_shutdown()) {
        status = QueueStatus::shut_down;
        return 0;
      }
      if (last_try) {
        pass_on_get();
        status = QueueStatus::timed_out;
        return 0;
      }
      last_try = !wait_to_get(deadline);
    }
  }

  std::size_t qsize() const noexcept { return ring_.size(); }
  std::size_t capacity() const noexcept { return ring_.capacity(); }

  void task_done() {
    // seq_cst: the change that join_until()'s waiters check (see EventCount's contract).
    const std::uint64_t done = done_.fetch_add(1, std::memory_order_seq_cst) + 1;
    const std::uint64_t puts = ring_.puts();
    if (done > puts) {
      done_.fetch_sub(1, std::memory_order_relaxed);
      throw UsageError("task_done() called too many times");
    }
    if (done == puts) tasks_done_.notify_all();
  }

  bool join_until(steady_time deadline) noexcept {
    while (!all_done()) {
      if (!wait_for(
              tasks_done_, deadline, [this] { return all_done(); }, [] { return false; },
              /*spin=*/false)) {
        return all_done();
      }
    }
    return true;
  }

  void shutdown(bool immediate) noexcept {
    ring_.shut_down();
    if (immediate) drop_everything();
    not_empty_.notify_all();
    not_full_.notify_all();
    tasks_done_.notify_all();
  }

  bool is_shutdown() const noexcept { return ring_.is_shut_down(); }

 private:
  bool all_done() const noexcept { return done_.load(std::memory_order_seq_cst) >= ring_.puts(); }

  // After a shutdown, gets drain what is left and then fail; a put claimed before the shutdown
  // may still be on its way, so "left" counts claims, not published items.
  bool drained_after_shutdown() const noexcept {
    return ring_.is_shut_down() && ring_.gets() >= ring_.puts();
  }

  // shutdown(immediate=True): drops every item, each counting as done, as Python does. Puts
  // claimed before the shutdown are waited for, so nothing arrives after it: such a put is
  // between its claim and its publish, and its publish notifies not_empty_, so the wait spins
  // briefly and then sleeps on not_empty_ like a get (a consumer that drains the last claim
  // instead wakes every waiting consumer, see pass_on_get()). No yields, no polling.
  void drop_everything() noexcept {
    for (;;) {
      std::uint64_t ticket;
      const std::size_t claimed = ring_.try_claim_gets(ticket, ring_.capacity());
      for (std::size_t i = 0; i < claimed; ++i) ring_.discard(ticket + i);
      if (claimed > 0) done_.fetch_add(claimed, std::memory_order_seq_cst);
      if (drained_after_shutdown()) return;
      if (claimed == 0) (void)wait_to_get(never);
    }
  }

  // get_many() for an output that may throw: delivers the item of the claimed `ticket`, then
  // claims and delivers ready items one at a time, up to `max` in all; returns how many.
  template <class Out>
  std::size_t deliver_one_by_one(Out& out, std::uint64_t ticket, std::size_t max) {
    for (std::size_t delivered = 0;;) {
      CONCUR_SCHEDULE_POINT("ring_core.get_many.between_claim_and_take");
      std::optional<T> item;
      change_then_notify(not_full_, 1, [&] { item.emplace(ring_.take(ticket)); });
      *out++ = std::move(*item);  // may throw: the queue is whole already
      if (++delivered == max || !ring_.try_claim_get(ticket)) return delivered;
      pass_on_get();
    }
  }

  // The baton of "Wake-ups" above, step (b): after a claim of gets, or a get that timed out,
  // wakes one more consumer if consumers wait and the next item is ready, or (x86) claimed by a
  // put whose turn store may not be visible yet; after a shutdown, wakes every waiting consumer,
  // since this claim may have drained the ring. Costs one load of a line nobody writes while
  // nobody sleeps.
  //
  // Why "claimed" counts, and why a timeout passes the baton too. Wake-up tokens are not
  // addressed: a consumer C2 that registers after a producer's load L of the waiter count may
  // take the token handed out for a consumer C1 that L saw, so that L, finding C1 with a token
  // coming, wakes nobody for its own item. C2 is then responsible for that item, but, having
  // registered after L, it may not see the item's plain turn store yet. If C2 claims an earlier
  // item, or times out, it passes the baton here while the item is only claimed, and the
  // consumer it wakes either sees the item or registers anew and is rescued (wait_for). If C2
  // sleeps again, it registers anew itself.
  void pass_on_get() noexcept {
    CONCUR_SCHEDULE_POINT("ring_core.pass_on_get");
    if (CONCUR_LIKELY(!not_empty_.has_waiters())) return;
    if (ring_.can_get() || (plain_store_publish && ring_.put_in_flight())) {
      not_empty_.notify_one();
    } else if (ring_.is_shut_down()) {
      not_empty_.notify_all();
    }
  }

  // Step (b'): after a claim of puts, or a put that timed out, wakes one more producer if
  // producers wait and the next slot is free, or (x86) claimed by a take whose turn store may not
  // be visible yet (the mirror image of pass_on_get()).
  void pass_on_put() noexcept {
    CONCUR_SCHEDULE_POINT("ring_core.pass_on_put");
    if (CONCUR_LIKELY(!not_full_.has_waiters())) return;
    if (ring_.can_put() || (plain_store_publish && ring_.get_in_flight())) {
      not_full_.notify_one();
    }
  }

  bool can_get_or_drained() const noexcept { return ring_.can_get() || drained_after_shutdown(); }

  // RingCore::wait_to_put(deadline), wait_to_get(deadline)
  //
  // wait_for() until a put (get) may succeed. A take (publish) in flight is one that has
  // claimed the slot at the put (get) ticket and whose turn store may not be visible yet.
  bool wait_to_put(steady_time deadline) noexcept {
    return wait_for(
        not_full_, deadline, [this] { return ring_.can_put(); },
        [this] { return ring_.get_in_flight(); });
  }
  bool wait_to_get(steady_time deadline) noexcept {
    return wait_for(
        not_empty_, deadline, [this] { return can_get_or_drained(); },
        [this] { return ring_.put_in_flight(); });
  }

  // RingCore::wait_for(events, deadline, ready, in_flight, spin)
  //
  // Waits until `ready()` may have become true or `deadline` passes; false on timeout.
  //
  // It first spins, for at most spin_budget and never past `deadline`: a hand-off that arrives
  // within microseconds is far cheaper than a futex round trip, and the first rounds of pauses
  // let the other side get a few items ahead instead of pulling the cache line it writes after
  // every item. It never yields (each sched_yield() can hand the core to a CPU-bound thread for
  // a whole time slice, which is how a 1 ms timeout returned 55 ms late). Then it registers
  // with the event count, re-checks `ready()` (seq_cst loads, see EventCount) and sleeps until
  // notified or the deadline, which an idle queue's waiters do at no CPU cost.
  //
  // The rescue ("Plain turn stores" above). Only a turn store whose claim came before the
  // registration can be missed: a claim after it (a compare-and-swap, in the single order S
  // after the waiter's load of the ticket that showed it unclaimed) is followed by the
  // notifier's load, which then sees the registration. So when `in_flight()` (loads after the
  // registration) finds no such claim, the waiter sleeps untimed; when it finds one, it first
  // sleeps only until store_drain_bound after its registration and checks again, still
  // registered. A timed futex wait costs several times an untimed one on a virtual machine
  // (each arms a timer), which is why the rescue is kept to this case.
  template <class Ready, class InFlight>
  bool wait_for(EventCount& events, steady_time deadline, Ready ready, InFlight in_flight,
                bool spin = true) noexcept {
    if (is_past(deadline)) return false;
    if (spin && spin_for(ready, deadline, spin_budget)) return true;
    events.prepare_wait();
    if (ready()) {
      events.cancel_wait();
      return true;
    }
    CONCUR_SCHEDULE_POINT("ring_core.wait.before_sleep");
    if (plain_store_publish && in_flight()) {
      // Read after the registration, so no earlier than store_drain_bound after it.
      const steady_time rescue_at = steady_clock::now() + store_drain_bound;
      if (rescue_at < deadline) {
        if (events.sleep(rescue_at)) return true;
        CONCUR_SCHEDULE_POINT("ring_core.wait.rescue");
        wait_for_emulated_stores();
        if (ready()) {
          events.cancel_wait();
          return true;
        }
      }
    }
    const bool notified = events.wait(deadline);
    CONCUR_SCHEDULE_POINT("ring_core.wait.after_wake");
    return notified;
  }

  // RingCore::change_then_notify(events, n, change)
  //
  // Runs `change`, ring stores that make puts or gets possible (turn stores: plain on x86),
  // then notifies up to `n` waiters of `events`, keeping the notifier's load of the waiter count
  // after the stores in the code (see concur/detail/store_buffer.hpp for why the hardware may
  // still let it pass them, and the rescue that covers it). An emulating build runs the load
  // first, as the worst case of a store buffer.
  template <class Change>
  void change_then_notify(EventCount& events, int n, Change change) noexcept {
#if CONCUR_EMULATE_STORE_BUFFER
    StoreBufferWindow window;
    const bool waiters = events.has_waiters();
    change();
    window.drain();
    if (waiters) events.notify(n);
#else
    change();
    std::atomic_signal_fence(std::memory_order_seq_cst);
    events.notify(n);
#endif
  }

  // The spin budget. Measured with benchmarks/queue_bench (int items, capacity 1024, 1-4
  // producers and consumers) on a shared, oversubscribed 2-core VM: 2-5 us did best; 20 us cost
  // 10-30%, and 50-200 us halved the throughput, as a longer spin keeps the thread it waits for
  // off the CPU. On a machine with free cores a longer spin only costs CPU.
  static constexpr std::chrono::nanoseconds spin_budget = std::chrono::microseconds(5);

  MpmcRing<T> ring_;
  // Each event count on its own line: consumers write not_empty_ when they register to sleep,
  // and producers read not_full_ after every claim; sharing a line would turn one side's
  // registrations into cache misses for the other side's every put.
  alignas(cache_line_size) EventCount not_empty_;
  alignas(cache_line_size) EventCount not_full_;
  alignas(cache_line_size) EventCount tasks_done_;
  // task_done() calls, plus items dropped by an immediate shutdown.
  alignas(cache_line_size) std::atomic<std::uint64_t> done_{0};
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_QUEUE_CORE_HPP
