// concur/detail/mpmc_ring.hpp
//
// The bounded multi-producer multi-consumer ring behind concur::Queue: a fixed array of slots,
// each with a "turn" word, and two 64-bit tickets (the next put and the next get), after Dmitry
// Vyukov's bounded MPMC queue and rigtorp's MPMCQueue.
//
// Ticket t uses slot t % capacity in lap t / capacity. A slot's turn is 2*lap while it waits
// for lap's item and 2*lap + 1 while it holds it. A producer claims ticket t only once slot t
// is free for its lap (its turn is 2*lap), with one compare-and-swap on the put ticket; it then
// moves the item in and sets the turn to 2*lap + 1. A consumer does the mirror image. Because
// a ticket is claimed only when its slot is ready, a claim never waits: timed and non-blocking
// calls simply do not claim, and shutdown can stop new claims at once. The ring never blocks;
// concur::Queue sleeps on event counts around it.
//
// The top bit of the put ticket marks the ring as shut down: once it is set, no put can be
// claimed, so every item in the ring was put before the shutdown. A flag on the ring's
// read-only line repeats it for readers: a consumer that waits on an empty ring asks "shut
// down?" in every round of its spin, and reading the put ticket there would pull the line the
// producers claim on away from them on every round.
//
// Memory ordering: every access to a ticket is sequentially consistent, and so is every load of
// a turn. The turns alone need only release (set) and acquire (read), so that the consumer that
// takes an item sees it fully constructed and the producer that reuses a slot sees it fully
// destroyed. The rest is for concur::Queue's sleepers, which pair each change that can make a
// put or a get possible (setting a turn, claiming a ticket, shutting down) with a load of a
// waiter count, and each re-check after waking with the change that woke them (the Dekker pair
// argued in concur/detail/event_count.hpp): that argument needs seq_cst on both sides. The turn
// stores are the exception: on x86 they are plain release stores (publish_order), and the
// waiters' rescue of concur/detail/store_buffer.hpp stands in for the order a seq_cst store
// would give; an xchg per turn cost a quarter of the single-producer single-consumer
// throughput. Elsewhere they are seq_cst. The claims are locked compare-and-swaps on x86, full
// barriers already; on Arm the seq_cst loads become ldar.

#ifndef CONCUR_DETAIL_MPMC_RING_HPP
#define CONCUR_DETAIL_MPMC_RING_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "concur/detail/config.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/store_buffer.hpp"

namespace concur::detail {

template <class T>
class MpmcRing {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "the ring moves items in and out without a way back: moves must not throw");

 public:
  static constexpr std::uint64_t shut_down_bit = std::uint64_t{1} << 63;

  explicit MpmcRing(std::size_t capacity)
      : capacity_(capacity),
        power_of_two_((capacity & (capacity - 1)) == 0),
        shift_(power_of_two_ ? static_cast<unsigned>(__builtin_ctzll(capacity)) : 0),
        slots_(new Slot[capacity]) {}

  MpmcRing(const MpmcRing&) = delete;
  MpmcRing& operator=(const MpmcRing&) = delete;

  ~MpmcRing() {
    std::uint64_t ticket = tail_.load(std::memory_order_relaxed);
    const std::uint64_t end = head_.load(std::memory_order_relaxed) & ~shut_down_bit;
    for (; ticket != end; ++ticket) slot(ticket).item()->~T();
  }

  std::size_t capacity() const noexcept { return capacity_; }

  // Claims the next put ticket if its slot is free; false when the ring is full or shut down
  // (see shut_down()).
  bool try_claim_put(std::uint64_t& ticket) noexcept { return try_claim_puts(ticket, 1) == 1; }

  // Claims up to `wanted` consecutive put tickets whose slots are free, in one
  // compare-and-swap; returns how many (0 when full or shut down) and the first in `first`.
  std::size_t try_claim_puts(std::uint64_t& first, std::size_t wanted) noexcept {
    std::uint64_t head = head_.load(std::memory_order_seq_cst);
    for (;;) {
      if (head & shut_down_bit) return 0;
      std::size_t ready = 0;
      while (ready < wanted && ready < capacity_ && put_ready(head + ready)) ++ready;
      if (ready == 0) {
        const std::uint64_t again = head_.load(std::memory_order_seq_cst);
        if (again == head) return 0;  // the slot still holds last lap's item: full
        head = again;
        continue;
      }
      CONCUR_SCHEDULE_POINT("mpmc_ring.claim_puts.before_cas");
      if (head_.compare_exchange_weak(head, head + ready, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        CONCUR_SCHEDULE_POINT("mpmc_ring.claim_puts.after_cas");
        first = head;
        return ready;
      }
    }
  }

  // Moves `value` into the slot of a claimed put ticket and hands it to consumers (a
  // sequentially consistent store: see "Memory ordering" above).
  void publish(std::uint64_t ticket, T&& value) noexcept {
    Slot& s = slot(ticket);
    ::new (s.item()) T(std::move(value));
    CONCUR_SCHEDULE_POINT("mpmc_ring.publish.before_turn");
    s.turn.store(2 * lap(ticket) + 1, publish_order);
  }

  // Claims the next get ticket if its slot holds an item; false when the ring is empty.
  bool try_claim_get(std::uint64_t& ticket) noexcept { return try_claim_gets(ticket, 1) == 1; }

  // Claims up to `wanted` consecutive get tickets whose slots hold items.
  std::size_t try_claim_gets(std::uint64_t& first, std::size_t wanted) noexcept {
    std::uint64_t tail = tail_.load(std::memory_order_seq_cst);
    for (;;) {
      std::size_t ready = 0;
      while (ready < wanted && ready < capacity_ && get_ready(tail + ready)) ++ready;
      if (ready == 0) {
        const std::uint64_t again = tail_.load(std::memory_order_seq_cst);
        if (again == tail) return 0;  // empty
        tail = again;
        continue;
      }
      CONCUR_SCHEDULE_POINT("mpmc_ring.claim_gets.before_cas");
      if (tail_.compare_exchange_weak(tail, tail + ready, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        CONCUR_SCHEDULE_POINT("mpmc_ring.claim_gets.after_cas");
        first = tail;
        return ready;
      }
    }
  }

  // Moves the item out of the slot of a claimed get ticket and frees the slot for the next lap.
  T take(std::uint64_t ticket) noexcept {
    Slot& s = slot(ticket);
    T* item = s.item();
    T value(std::move(*item));
    item->~T();
    CONCUR_SCHEDULE_POINT("mpmc_ring.take.before_turn");
    s.turn.store(2 * lap(ticket) + 2, publish_order);
    return value;
  }

  // Destroys the item of a claimed get ticket without moving it anywhere.
  void discard(std::uint64_t ticket) noexcept {
    Slot& s = slot(ticket);
    s.item()->~T();
    s.turn.store(2 * lap(ticket) + 2, publish_order);
  }

  // Stops all further put claims; returns the put ticket count at that moment.
  std::uint64_t shut_down() noexcept {
    const std::uint64_t before = head_.fetch_or(shut_down_bit, std::memory_order_seq_cst);
    CONCUR_SCHEDULE_POINT("mpmc_ring.shut_down.before_flag");
    // Between the two, a put already fails to claim and a reader of the flag still sees the
    // ring open: the put retries (can_put() is true at once), the reader may go to sleep, and
    // the caller's notify after this store wakes it (the flag store is the change it pairs with).
    shut_down_flag_.store(true, std::memory_order_seq_cst);
    return before & ~shut_down_bit;
  }

  // Whether puts are refused: a load of the put ticket, for producers (whose line it is).
  bool puts_closed() const noexcept {
    return head_.load(std::memory_order_seq_cst) & shut_down_bit;
  }

  // Whether shut_down() has finished: a load of a line nobody writes until then.
  bool is_shut_down() const noexcept { return shut_down_flag_.load(std::memory_order_seq_cst); }

  // Put tickets claimed so far: every item ever put (a put claims only what it completes).
  std::uint64_t puts() const noexcept {
    return head_.load(std::memory_order_seq_cst) & ~shut_down_bit;
  }

  // Get tickets claimed so far.
  std::uint64_t gets() const noexcept { return tail_.load(std::memory_order_seq_cst); }

  // The number of items, approximately while others put and get (as Python's qsize()).
  std::size_t size() const noexcept {
    const std::uint64_t tail = gets();
    const std::uint64_t head = puts();
    if (head <= tail) return 0;
    return head - tail > capacity_ ? capacity_ : static_cast<std::size_t>(head - tail);
  }

  // Whether a put has claimed the slot at the get ticket (its item may not be visible yet), for a
  // consumer that found the ring empty: a load of the get ticket, then of the put ticket.
  bool put_in_flight() const noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_seq_cst);
    return puts() > tail;
  }

  // Whether a get has claimed the item in the slot at the put ticket (its slot may not be visibly
  // free yet), for a producer that found the ring full: a load of the put ticket, then of the get
  // ticket.
  bool get_in_flight() const noexcept {
    const std::uint64_t head = puts();
    return gets() + capacity_ > head;
  }

  // Whether a put (or a shutdown error) or a get could be claimed right now, for waiters
  // re-checking: sequentially consistent loads of the ticket and then of its slot's turn.
  bool can_put() const noexcept {
    const std::uint64_t head = head_.load(std::memory_order_seq_cst);
    return (head & shut_down_bit) ||
           slot(head).turn.load(std::memory_order_seq_cst) == 2 * lap(head);
  }
  bool can_get() const noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_seq_cst);
    return slot(tail).turn.load(std::memory_order_seq_cst) == 2 * lap(tail) + 1;
  }

 private:
  struct Slot {
    std::atomic<std::uint32_t> turn{0};
    alignas(T) unsigned char storage[sizeof(T)];
    T* item() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  std::size_t index(std::uint64_t ticket) const noexcept {
    return power_of_two_ ? static_cast<std::size_t>(ticket & (capacity_ - 1))
                         : static_cast<std::size_t>(ticket % capacity_);
  }
  std::uint32_t lap(std::uint64_t ticket) const noexcept {
    return static_cast<std::uint32_t>(power_of_two_ ? ticket >> shift_ : ticket / capacity_);
  }
  Slot& slot(std::uint64_t ticket) const noexcept { return slots_[index(ticket)]; }

  bool put_ready(std::uint64_t ticket) const noexcept {
    return slot(ticket).turn.load(std::memory_order_seq_cst) == 2 * lap(ticket);
  }
  bool get_ready(std::uint64_t ticket) const noexcept {
    return slot(ticket).turn.load(std::memory_order_seq_cst) == 2 * lap(ticket) + 1;
  }

  const std::size_t capacity_;
  const bool power_of_two_;
  const unsigned shift_;
  const std::unique_ptr<Slot[]> slots_;
  std::atomic<bool> shut_down_flag_{false};  // set once, after the put ticket's bit
  alignas(cache_line_size) std::atomic<std::uint64_t> head_{0};  // next put ticket
  alignas(cache_line_size) std::atomic<std::uint64_t> tail_{0};  // next get ticket
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_MPMC_RING_HPP
