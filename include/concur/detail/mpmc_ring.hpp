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
// claimed, so every item in the ring was put before the shutdown.
//
// Memory ordering: setting a slot's turn is a release and reading it an acquire, so the
// consumer that takes an item sees it fully constructed, and the producer that reuses the slot
// sees it fully destroyed.

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
    std::uint64_t head = head_.load(std::memory_order_relaxed);
    for (;;) {
      if (head & shut_down_bit) return 0;
      std::size_t ready = 0;
      while (ready < wanted && ready < capacity_ && put_ready(head + ready)) ++ready;
      if (ready == 0) {
        const std::uint64_t again = head_.load(std::memory_order_relaxed);
        if (again == head) return 0;  // the slot still holds last lap's item: full
        head = again;
        continue;
      }
      if (head_.compare_exchange_weak(head, head + ready, std::memory_order_relaxed)) {
        first = head;
        return ready;
      }
    }
  }

  // Moves `value` into the slot of a claimed put ticket and hands it to consumers.
  void publish(std::uint64_t ticket, T&& value) noexcept {
    Slot& s = slot(ticket);
    ::new (s.item()) T(std::move(value));
    s.turn.store(2 * lap(ticket) + 1, std::memory_order_release);
  }

  // Claims the next get ticket if its slot holds an item; false when the ring is empty.
  bool try_claim_get(std::uint64_t& ticket) noexcept { return try_claim_gets(ticket, 1) == 1; }

  // Claims up to `wanted` consecutive get tickets whose slots hold items.
  std::size_t try_claim_gets(std::uint64_t& first, std::size_t wanted) noexcept {
    std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    for (;;) {
      std::size_t ready = 0;
      while (ready < wanted && ready < capacity_ && get_ready(tail + ready)) ++ready;
      if (ready == 0) {
        const std::uint64_t again = tail_.load(std::memory_order_relaxed);
        if (again == tail) return 0;  // empty
        tail = again;
        continue;
      }
      if (tail_.compare_exchange_weak(tail, tail + ready, std::memory_order_relaxed)) {
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
    s.turn.store(2 * lap(ticket) + 2, std::memory_order_release);
    return value;
  }

  // Destroys the item of a claimed get ticket without moving it anywhere.
  void discard(std::uint64_t ticket) noexcept {
    Slot& s = slot(ticket);
    s.item()->~T();
    s.turn.store(2 * lap(ticket) + 2, std::memory_order_release);
  }

  // Stops all further put claims; returns the put ticket count at that moment.
  std::uint64_t shut_down() noexcept {
    return head_.fetch_or(shut_down_bit, std::memory_order_acq_rel) & ~shut_down_bit;
  }

  bool is_shut_down() const noexcept {
    return head_.load(std::memory_order_acquire) & shut_down_bit;
  }

  // Put tickets claimed so far: every item ever put (a put claims only what it completes).
  std::uint64_t puts() const noexcept {
    return head_.load(std::memory_order_acquire) & ~shut_down_bit;
  }

  // Get tickets claimed so far.
  std::uint64_t gets() const noexcept { return tail_.load(std::memory_order_acquire); }

  // The number of items, approximately while others put and get (as Python's qsize()).
  std::size_t size() const noexcept {
    const std::uint64_t tail = gets();
    const std::uint64_t head = puts();
    if (head <= tail) return 0;
    return head - tail > capacity_ ? capacity_ : static_cast<std::size_t>(head - tail);
  }

  // Whether a put or a get could be claimed right now (for waiters re-checking).
  bool can_put() const noexcept {
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    return (head & shut_down_bit) || put_ready(head);
  }
  bool can_get() const noexcept { return get_ready(tail_.load(std::memory_order_acquire)); }

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
    return slot(ticket).turn.load(std::memory_order_acquire) == 2 * lap(ticket);
  }
  bool get_ready(std::uint64_t ticket) const noexcept {
    return slot(ticket).turn.load(std::memory_order_acquire) == 2 * lap(ticket) + 1;
  }

  const std::size_t capacity_;
  const bool power_of_two_;
  const unsigned shift_;
  const std::unique_ptr<Slot[]> slots_;
  alignas(cache_line_size) std::atomic<std::uint64_t> head_{0};  // next put ticket
  alignas(cache_line_size) std::atomic<std::uint64_t> tail_{0};  // next get ticket
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_MPMC_RING_HPP
