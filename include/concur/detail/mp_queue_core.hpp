// concur/detail/mp_queue_core.hpp
//
// The shared ring behind mp::Queue, mp::JoinableQueue and mp::SimpleQueue: items in shared
// memory and a few counters, all guarded by one robust lock (detail/robust_lock.hpp).
//
//   put: lock; wait while full; copy the item into slot tail % capacity; tail += 1; unlock;
//        wake a getter if one sleeps
//   get: lock; wait while empty; copy slot head % capacity out; head += 1; unlock;
//        wake a putter if one sleeps
//
// Two storages hold the items. FixedSlots<T>: an array of `capacity` T, for trivially copyable
// T, whose bytes are the item. RecordRing: items of any length (a codec's encoding), as a slot
// table of `capacity` (position, length) records and an arena of bytes used as a ring:
//
//   slots: [ item head: pos 100, len 12 | item head+1: pos 112, len 40 | ... | item tail-1 ]
//   arena: bytes at positions 100 .. end of item tail-1, modulo the arena's size
//
// Positions only grow (64 bits never wrap), so the bytes in use are exactly from the oldest
// item's position to the newest item's end: nothing but head and tail needs publishing, and a
// put waits while either the count bound or the arena's free bytes say there is no room.
//
// A process killed anywhere: every change a reader could see is one store (tail += 1 publishes
// a fully copied item and its slot record; head += 1 takes one; task_done's done += 1 finishes
// one), so the state is consistent at every instruction. The robust lock makes sure the death never
// leaves the lock held: the next holder takes it, finds OWNER_DIED, and goes on, since there is
// nothing to repair. What is lost is only what the dead process was holding in its own memory: an
// item it had got (as with Python), or one it was still copying in (never published).
//
// A putter that finds the queue full spins until the getters have taken a batch of items (an
// eighth of the bound, at most 64), not just one: taking the lock for every single slot that
// frees keeps the lock's line and the getters' next slot bouncing between the two sides, a
// convoy that measured 2 to 3 times slower per item. Its spin ends at its budget regardless, so
// a getter that takes one item and stops delays the putter by at most spin_budget. (Getters do
// not batch: an item put alone must not wait.)
//
// Sleeping. A thread that finds the queue empty (full) spins for up to spin_budget watching
// tail (head) move without the lock, then counts itself in sleeping_getters (sleeping_putters),
// reads put_seq (get_seq) under the lock, unlocks and sleeps on that word with a shared futex.
// A put bumps put_seq under the lock when a getter sleeps, and wakes one after unlocking: a
// getter that has not yet slept sees the word changed and does not sleep (no lost wake-up). A
// process killed between its unlock and its wake, or while counted as a sleeper, could leave a
// waiter asleep beside an item, or a count too high: so every sleep is at most recheck_interval
// long, after which the waiter looks again. A death costs a waiter at most that much delay,
// never a hang; a count left too high costs later puts a wake-up call each, nothing more. In a
// RecordRing a get wakes every sleeping putter, not one: the bytes it frees may fit a small item
// and not a large one, and the putter woken must not be the only one that could have gone on.
//
// Memory ordering: the lock orders everything; tail and head are atomics only so that spinning
// threads may read them without it (relaxed: they look again under the lock).

#ifndef CONCUR_DETAIL_MP_QUEUE_CORE_HPP
#define CONCUR_DETAIL_MP_QUEUE_CORE_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <system_error>

#include "concur/detail/deadline.hpp"
#include "concur/detail/robust_lock.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/detail/spin.hpp"
#include "concur/detail/wait_futex.hpp"

namespace concur::detail {

// MpQueueState
//
// The counters of one queue, in its shared block; the items (or the slot table and the arena)
// follow it.
struct MpQueueState {
  RobustLock lock;
  std::uint64_t capacity = 0;                      // slots in the ring
  std::uint64_t maxsize = 0;                       // Python's maxsize; 0: as many as the ring holds
  std::uint64_t arena_bytes = 0;                   // a RecordRing's arena; 0 for FixedSlots
  alignas(64) std::atomic<std::uint64_t> tail{0};  // items put, ever
  std::atomic<std::uint32_t> put_seq{0};           // futex word of sleeping getters
  std::uint32_t sleeping_getters = 0;
  alignas(64) std::atomic<std::uint64_t> head{0};  // items got, ever
  std::atomic<std::uint32_t> get_seq{0};           // futex word of sleeping putters
  std::uint32_t sleeping_putters = 0;
  // JoinableQueue: tasks finished, ever (unfinished = tail - done), and its joiners' word.
  alignas(64) std::uint64_t done = 0;
  std::atomic<std::uint32_t> done_seq{0};
  std::uint32_t sleeping_joiners = 0;
};

// FixedSlots<T>
//
// A storage of `capacity` T (trivially copyable): put copies an item's bytes in, get out.
template <class T>
class FixedSlots {
 public:
  using In = T;
  static constexpr bool wakes_every_putter = true;

  FixedSlots(const MpQueueState& state, T* items) noexcept : state_(state), items_(items) {}

  [[nodiscard]] bool fits(std::uint64_t, std::uint64_t, const T&) const noexcept { return true; }
  void write(std::uint64_t tail, const T& item) noexcept {
    std::memcpy(static_cast<void*>(items_ + tail % state_.capacity), &item, sizeof(T));
  }
  // Copies the item's sizeof(T) bytes to `out`.
  void read(std::uint64_t head, void* out) const noexcept {
    std::memcpy(out, static_cast<const void*>(items_ + head % state_.capacity), sizeof(T));
  }

 private:
  const MpQueueState& state_;
  T* items_;
};

// RecordRing
//
// A storage of byte strings of any length: the slot table and the arena (see the header).
class RecordRing {
 public:
  using In = std::string_view;
  static constexpr bool wakes_every_putter = true;

  // Where one item's bytes are.
  struct Slot {
    std::uint64_t position;
    std::uint64_t length;
  };

  // The bytes the slot table and the arena take, following the state.
  static std::size_t bytes_for(std::size_t capacity, std::size_t arena_bytes) noexcept {
    return capacity * sizeof(Slot) + arena_bytes;
  }

  // `memory` holds the slot table (state.capacity slots), then the arena (state.arena_bytes).
  RecordRing(const MpQueueState& state, void* memory) noexcept
      : state_(state),
        slots_(static_cast<Slot*>(memory)),
        arena_(static_cast<unsigned char*>(memory) + state.capacity * sizeof(Slot)) {}

  // Whether `item` fits beside the items from head to tail.
  [[nodiscard]] bool fits(std::uint64_t tail, std::uint64_t head,
                          std::string_view item) const noexcept {
    const std::uint64_t used = tail == head ? 0 : end_of(tail) - slot(head).position;
    return used <= state_.arena_bytes && item.size() <= state_.arena_bytes - used;
  }
  void write(std::uint64_t tail, std::string_view item) noexcept {
    const std::uint64_t position = end_of(tail);
    copy_in(position, item.data(), item.size());
    CONCUR_SCHEDULE_POINT("mp_queue.record.bytes_before_slot");
    slots_[tail % state_.capacity] = Slot{position, item.size()};
  }
  // Replaces `out` with the item's bytes. Throws std::bad_alloc, or std::system_error(EBADMSG)
  // for a slot record that cannot be right (a process that scribbled over the queue).
  void read(std::uint64_t head, std::string& out) const {
    const Slot record = slot(head);
    if (record.length > state_.arena_bytes) {
      throw std::system_error(EBADMSG, std::generic_category(), "mp::Queue record out of range");
    }
    out.resize(record.length);
    copy_out(record.position, out.data(), record.length);
  }

 private:
  const Slot& slot(std::uint64_t index) const noexcept { return slots_[index % state_.capacity]; }

  // Where the item before `tail` ends: the position the next one starts at.
  std::uint64_t end_of(std::uint64_t tail) const noexcept {
    if (tail == 0) return 0;
    const Slot& last = slot(tail - 1);
    return last.position + last.length;
  }

  void copy_in(std::uint64_t position, const char* bytes, std::size_t length) noexcept {
    const std::size_t at = position % state_.arena_bytes;
    const std::size_t first = std::min<std::size_t>(length, state_.arena_bytes - at);
    if (first != 0) std::memcpy(arena_ + at, bytes, first);
    if (length != first) std::memcpy(arena_, bytes + first, length - first);
  }
  void copy_out(std::uint64_t position, char* bytes, std::size_t length) const noexcept {
    const std::size_t at = position % state_.arena_bytes;
    const std::size_t first = std::min<std::size_t>(length, state_.arena_bytes - at);
    if (first != 0) std::memcpy(bytes, arena_ + at, first);
    if (length != first) std::memcpy(bytes + first, arena_, length - first);
  }

  const MpQueueState& state_;
  Slot* slots_;
  unsigned char* arena_;
};

// MpQueueCore
//
// The operations on one queue's state, over a Storage (FixedSlots<T> or RecordRing).
template <class Storage>
class MpQueueCore {
 public:
  using In = typename Storage::In;
  static constexpr std::chrono::microseconds spin_budget{20};
  static constexpr std::chrono::milliseconds recheck_interval{200};

  MpQueueCore(MpQueueState& state, Storage storage) noexcept : state_(state), storage_(storage) {}

  // Puts `item`, waiting until `deadline` for room; false if there was none by then. The
  // caller has made sure that the item fits in an empty storage.
  bool put(const In& item, steady_time deadline) noexcept {
    bool spun = false;
    Held held(state_.lock);
    for (;;) {
      const std::uint64_t tail = state_.tail.load(std::memory_order_relaxed);
      const std::uint64_t head = state_.head.load(std::memory_order_relaxed);
      if (tail - head < bound() && storage_.fits(tail, head, item)) {
        storage_.write(tail, item);
        CONCUR_SCHEDULE_POINT("mp_queue.put.copied_before_publish");
        state_.tail.store(tail + 1, std::memory_order_relaxed);
        const bool wake = state_.sleeping_getters != 0;
        if (wake) state_.put_seq.fetch_add(1, std::memory_order_relaxed);
        held.release();
        CONCUR_SCHEDULE_POINT("mp_queue.put.released_before_wake");
        if (wake) futex::shared_wake(state_.put_seq, 1);
        return true;
      }
      if (reached(deadline)) return false;
      if (!spun) {
        spun = true;
        held.release();
        const std::uint64_t batch = std::clamp<std::uint64_t>(bound() / 8, 1, 64);  // see above
        spin_for([&] { return state_.head.load(std::memory_order_relaxed) - head >= batch; },
                 deadline, spin_budget);
        held.acquire();
        continue;
      }
      sleep(held, state_.get_seq, state_.sleeping_putters, deadline);
    }
  }

  // Passes the oldest item to storage.read(head, out) and removes it, waiting until `deadline`
  // for one; false if there was none. What read() throws leaves the item in the queue.
  template <class Out>
  bool get(Out&& out, steady_time deadline) {
    bool spun = false;
    Held held(state_.lock);
    for (;;) {
      const std::uint64_t head = state_.head.load(std::memory_order_relaxed);
      const std::uint64_t tail = state_.tail.load(std::memory_order_relaxed);
      if (tail != head) {
        storage_.read(head, out);
        CONCUR_SCHEDULE_POINT("mp_queue.get.copied_before_take");
        state_.head.store(head + 1, std::memory_order_relaxed);
        const bool wake = state_.sleeping_putters != 0;
        if (wake) state_.get_seq.fetch_add(1, std::memory_order_relaxed);
        held.release();
        CONCUR_SCHEDULE_POINT("mp_queue.get.released_before_wake");
        if (wake) futex::shared_wake(state_.get_seq, Storage::wakes_every_putter ? INT_MAX : 1);
        return true;
      }
      if (reached(deadline)) return false;
      if (!spun) {
        spun = true;
        held.release();
        spin_for([&] { return state_.tail.load(std::memory_order_relaxed) != tail; }, deadline,
                 spin_budget);
        held.acquire();
        continue;
      }
      sleep(held, state_.put_seq, state_.sleeping_getters, deadline);
    }
  }
  // Items in the queue now (a snapshot).
  [[nodiscard]] std::uint64_t size() const noexcept {
    const std::uint64_t head = state_.head.load(std::memory_order_relaxed);
    const std::uint64_t tail = state_.tail.load(std::memory_order_relaxed);
    return tail >= head ? tail - head : 0;
  }
  [[nodiscard]] std::uint64_t bound() const noexcept {
    return state_.maxsize != 0 ? state_.maxsize : state_.capacity;
  }

  // JoinableQueue::task_done(): false when every item put has been marked done already.
  bool task_done() noexcept {
    Held held(state_.lock);
    if (state_.done == state_.tail.load(std::memory_order_relaxed)) return false;
    ++state_.done;
    const bool all = state_.done == state_.tail.load(std::memory_order_relaxed);
    const bool wake = all && state_.sleeping_joiners != 0;
    if (wake) state_.done_seq.fetch_add(1, std::memory_order_relaxed);
    held.release();
    if (wake) futex::shared_wake(state_.done_seq, INT_MAX);
    return true;
  }

  // JoinableQueue::join(): waits until every item put has been marked done.
  bool join(steady_time deadline) noexcept {
    Held held(state_.lock);
    for (;;) {
      if (state_.done == state_.tail.load(std::memory_order_relaxed)) return true;
      if (reached(deadline)) return false;
      sleep(held, state_.done_seq, state_.sleeping_joiners, deadline);
    }
  }

  // Items put but not yet marked done.
  [[nodiscard]] std::uint64_t unfinished() noexcept {
    Held held(state_.lock);
    return state_.tail.load(std::memory_order_relaxed) - state_.done;
  }

 private:
  // The queue's lock, held for a scope. A previous holder that died left nothing to repair
  // (see the header comment), so OWNER_DIED is simply cleared by taking the lock.
  class Held {
   public:
    explicit Held(RobustLock& lock) noexcept : lock_(lock) { acquire(); }
    ~Held() {
      if (held_) lock_.release();
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    void acquire() noexcept {
      (void)lock_.acquire_until(never);
      held_ = true;
    }
    void release() noexcept {
      lock_.release();
      held_ = false;
    }

   private:
    RobustLock& lock_;
    bool held_ = false;
  };

  // Sleeps on `word` (counted in `sleepers`) until woken, the deadline, or recheck_interval;
  // returns holding the lock again.
  static void sleep(Held& held, std::atomic<std::uint32_t>& word, std::uint32_t& sleepers,
                    steady_time deadline) noexcept {
    ++sleepers;
    const std::uint32_t seen = word.load(std::memory_order_relaxed);
    held.release();
    CONCUR_SCHEDULE_POINT("mp_queue.sleep.released_before_sleep");
    const steady_time recheck = deadline_after(recheck_interval);
    (void)futex::shared_wait_until(word, seen, std::min(deadline, recheck));
    held.acquire();
    --sleepers;
  }

  MpQueueState& state_;
  Storage storage_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_MP_QUEUE_CORE_HPP
