// concur/mp_queue.hpp
//
// concur::mp::Queue<T>, mp::JoinableQueue<T> and mp::SimpleQueue<T>, Python's
// multiprocessing.Queue, JoinableQueue and SimpleQueue: first-in, first-out queues between
// processes, whose items live in shared memory.
//
//   namespace mp = concur::mp;
//   mp::Queue<int> jobs(1024);                       // made before the workers start
//   concur::Process worker([&] {
//     for (int job; (job = jobs.get()) >= 0;) handle(job);
//   });
//   worker.start();
//   for (int i = 0; i < 100; ++i) jobs.put(i);
//   jobs.put(-1);
//   worker.join();
//
// Where they live: as mp::Lock, in anonymous shared memory (a large ring in a mapping of its
// own), shared with the processes forked after they were made, or placed in (mp::place) and
// found in (mp::find) a named SharedMemory, behind the header that refuses another kind, layout
// or item type.
//
// Items. A trivially copyable T is copied byte for byte into a ring of T. Any other T goes
// through concur's codec (concur/codec.hpp: strings, vectors, maps, tuples, optionals, nested,
// and the types given a codec), as Python's pickles any object: put() encodes the item in the
// calling process and copies the encoding into a ring of bytes, get() copies it out and decodes
// it. Such a queue takes mp::Queue<std::string>, mp::Queue<std::vector<double>>, or
// mp::Queue<std::pair<int, std::string>> as readily as mp::Queue<int>.
//
// Size. The ring holds `maxsize` items; Python's maxsize 0 ("unbounded") gets a ring of
// `unbounded_capacity` items (65536), or the capacity given in QueueOptions. Unlike Python's, a
// put() into a full ring of an "unbounded" queue waits for room, and put(timeout) throws Full.
// Encoded items also share a ring of QueueOptions::bytes bytes (1 MiB unless told), and a put()
// waits while it has no room for the encoding; an item whose encoding is larger than the whole
// ring can never fit, and its put() throws std::length_error at once (Python sends any size
// through a pipe; a ring in shared memory has a size, as Boost.Interprocess's message_queue's
// max_msg_size).
//
// A process that dies. Every change to the ring is published by one store, and its lock is
// robust (detail/mp_queue_core.hpp): a process killed at any point, inside a put() or get()
// included, never leaves the others hanging, and no item whose put() returned is lost or
// duplicated (except the one a get() of the dead process had taken). No error is reported,
// since there is nothing to repair. A get() whose decoding throws (a codec of the program's
// own that refuses the bytes) has removed the item: the exception carries the loss. Python's
// multiprocessing.Queue can hang after a producer's death, and loses what its feeder thread had not
// yet flushed.
//
// No feeder thread. put() has stored the item in shared memory when it returns, so Python's
// join_thread() and cancel_join_thread() have nothing to do; they are here, as no-ops, for code
// that calls them. close() marks this process's Queue object closed: its put() and get() then
// throw std::invalid_argument, as Python's raise ValueError.
//
// Linux, as mp::Lock.
//
// Memory ordering: everything a process did before put() is visible to the process whose get()
// returns that item.

#ifndef CONCUR_MP_QUEUE_HPP
#define CONCUR_MP_QUEUE_HPP

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "concur/codec.hpp"

#include "concur/detail/deadline.hpp"
#include "concur/detail/mp_queue_core.hpp"
#include "concur/detail/shared_block.hpp"
#include "concur/errors.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

// QueueOptions
//
// Python's Queue(maxsize), the ring's size when maxsize is 0, and the bytes that encoded items
// share.
struct QueueOptions {
  // Python's maxsize: put() waits while the queue holds this many; 0: as many as `capacity`.
  std::size_t maxsize = 0;
  // The ring's size when maxsize is 0.
  std::size_t capacity = 65536;
  // The bytes the encodings of items that go through the codec share (unused for trivially
  // copyable items); the largest item's encoding must fit.
  std::size_t bytes = std::size_t{1} << 20;
};

namespace detail_queue {

// Whether T's bytes are the item (a ring of T), or its codec's encoding (a ring of records).
template <class T>
inline constexpr bool copies_bytes = std::is_trivially_copyable_v<T>;

// Whether T can be an item: trivially copyable, or with a codec (else check_codec's message
// stops the compilation, saying how to give T one).
template <class T>
constexpr bool queueable() {
  if constexpr (copies_bytes<T>) {
    return true;
  } else {
    return concur::detail::check_codec<T>();
  }
}

template <class T>
using Storage =
    std::conditional_t<copies_bytes<T>, concur::detail::FixedSlots<T>, concur::detail::RecordRing>;

// The queue types' common body: the block, the core, and Python's members.
template <class T>
class QueueBase {
  static_assert(!std::is_const_v<T> && !std::is_reference_v<T> && std::is_object_v<T>,
                "mp::Queue's items are values: no const, no references");
  static_assert(queueable<T>(), "mp::Queue's items are trivially copyable or have a codec");
  using State = concur::detail::MpQueueState;
  using Core = concur::detail::MpQueueCore<Storage<T>>;
  static constexpr concur::detail::SharedKind kind =
      copies_bytes<T> ? concur::detail::SharedKind::queue : concur::detail::SharedKind::codec_queue;
  static constexpr std::size_t item_align =
      copies_bytes<T> ? alignof(T) : alignof(concur::detail::RecordRing::Slot);

 public:
  using value_type = T;

  // The ring's size when maxsize is 0.
  static constexpr std::size_t unbounded_capacity = QueueOptions{}.capacity;

  // Bytes the queue takes in a SharedMemory (for a ring of `capacity` items, or the ring the
  // options give), and the alignment its offset needs.
  static std::size_t shared_size(std::size_t capacity) {
    return shared_size(QueueOptions{.maxsize = 0, .capacity = capacity});
  }
  static std::size_t shared_size(const QueueOptions& options) {
    return shape(ring_size(options), options.bytes).size();
  }
  static constexpr std::size_t shared_alignment = alignof(State) > item_align ? alignof(State)
                                                                              : item_align;

  // put(item), put(item, timeout), put_nowait(item), try_put(item)
  //
  // Python's put(): adds `item`, waiting while the queue is full; with a timeout, throws Full
  // when there is still no room once it has passed (a negative timeout throws
  // std::invalid_argument); put_nowait() throws Full at once, try_put() returns false.
  void put(const T& item) { (void)put_until(item, concur::detail::never); }
  template <class Rep, class Period>
  void put(const T& item, std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    if (!put_until(item, concur::detail::deadline_after(timeout))) throw Full();
  }
  void put_nowait(const T& item) {
    if (!try_put(item)) throw Full();
  }
  [[nodiscard]] bool try_put(const T& item) {
    return put_until(item, concur::detail::steady_time::min());
  }

  // get(), get(timeout), get_nowait(), try_get()
  //
  // Python's get(): removes and returns the oldest item, waiting while there is none; with a
  // timeout, throws Empty once it has passed; get_nowait() throws Empty at once, try_get()
  // returns an empty optional.
  [[nodiscard]] T get() { return std::move(*get_until(concur::detail::never)); }
  template <class Rep, class Period>
  [[nodiscard]] T get(std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    std::optional<T> item = get_until(concur::detail::deadline_after(timeout));
    if (!item) throw Empty();
    return std::move(*item);
  }
  [[nodiscard]] T get_nowait() {
    std::optional<T> item = try_get();
    if (!item) throw Empty();
    return std::move(*item);
  }
  [[nodiscard]] std::optional<T> try_get() { return get_until(concur::detail::steady_time::min()); }

  // qsize(), empty(), full()
  //
  // Snapshots of the number of items, as Python's (which also say they are approximate).
  // full() counts items only: a queue of encoded items may also be out of bytes for the next
  // one, and its put_nowait() then throws Full though full() said false.
  [[nodiscard]] std::size_t qsize() const noexcept { return core_.size(); }
  [[nodiscard]] bool empty() const noexcept { return core_.size() == 0; }
  [[nodiscard]] bool full() const noexcept { return core_.size() >= core_.bound(); }

  // maxsize()
  //
  // Python's maxsize: 0 for a queue made without one.
  [[nodiscard]] std::size_t maxsize() const noexcept { return state().maxsize; }

  // close(), join_thread(), cancel_join_thread()
  //
  // close() closes this process's object: its put() and get() throw std::invalid_argument
  // (Python's ValueError); the queue and the other processes' objects go on. The other two are
  // Python's members for its feeder thread, which concur does not need: no-ops, except that
  // join_thread() before close() throws UsageError, as Python's asserts.
  void close() noexcept { closed_ = true; }
  void join_thread() const {
    if (!closed_) throw UsageError("join_thread() before close()");
  }
  void cancel_join_thread() const noexcept {}

 protected:
  // The block: a ring of `capacity` T, or for encoded items a slot table and `bytes` of arena,
  // counted as bytes. Found with 0 items: the block's own count is used, and checked.
  static concur::detail::SharedLayout shape(std::size_t capacity, std::size_t bytes) {
    const std::size_t items = copies_bytes<T> ? capacity
                              : capacity == 0
                                  ? 0
                                  : concur::detail::RecordRing::bytes_for(capacity, bytes);
    return {.kind = kind,
            .state_size = sizeof(State),
            .state_align = alignof(State),
            .item_size = copies_bytes<T> ? sizeof(T) : 1,
            .item_align = item_align,
            .items = items,
            .item_type = concur::detail::type_fingerprint<T>()};
  }

  static std::size_t ring_size(const QueueOptions& options) {
    if (options.maxsize == 0 && options.capacity == 0) {
      throw std::invalid_argument("an mp::Queue needs a capacity of at least 1");
    }
    if (!copies_bytes<T> && options.bytes == 0) {
      throw std::invalid_argument("an mp::Queue of encoded items needs at least 1 byte");
    }
    return options.maxsize != 0 ? options.maxsize : options.capacity;
  }

  explicit QueueBase(const QueueOptions& options)
      : block_(shape(ring_size(options), options.bytes)), core_(build(options)) {}
  QueueBase(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options)
      : block_(place, memory, offset, shape(ring_size(options), options.bytes)),
        core_(build(options)) {}
  QueueBase(find_t, SharedMemory& memory, std::size_t offset)
      : block_(find, memory, offset, shape(0, 0)), core_(found()) {}

  Core& core() noexcept { return core_; }
  void check_open() const {
    if (closed_) throw std::invalid_argument("Queue is closed");
  }

 private:
  State& state() const noexcept { return *std::launder(static_cast<State*>(block_.state())); }

  Storage<T> storage(const State& state) const noexcept {
    if constexpr (copies_bytes<T>) {
      return {state, std::launder(static_cast<T*>(block_.items()))};
    } else {
      return {state, block_.items()};
    }
  }

  Core build(const QueueOptions& options) {
    detail_lock::require_robust_list();
    State* made = new (block_.state()) State;
    made->capacity = ring_size(options);
    made->maxsize = options.maxsize;
    made->arena_bytes = copies_bytes<T> ? 0 : options.bytes;
    block_.publish();
    return {*made, storage(*made)};
  }
  Core found() {
    detail_lock::require_robust_list();
    const State& found = state();
    const std::size_t expected =
        copies_bytes<T> ? found.capacity
                        : concur::detail::RecordRing::bytes_for(found.capacity, found.arena_bytes);
    if (found.capacity == 0 || block_.items_count() != expected) {
      throw std::invalid_argument("the mp::Queue found there has a ring of another size");
    }
    return {state(), storage(found)};
  }

  bool put_until(const T& item, concur::detail::steady_time deadline) {
    check_open();
    if constexpr (copies_bytes<T>) {
      return core_.put(item, deadline);
    } else {
      Writer out;
      out.put(item);
      const std::string& bytes = out.bytes();
      if (bytes.size() > state().arena_bytes) {
        throw std::length_error("an item of " + std::to_string(bytes.size()) +
                                " encoded bytes is larger than the mp::Queue's ring of " +
                                std::to_string(state().arena_bytes) +
                                " (make it larger with QueueOptions::bytes)");
      }
      return core_.put(std::string_view(bytes), deadline);
    }
  }
  std::optional<T> get_until(concur::detail::steady_time deadline) {
    check_open();
    if constexpr (copies_bytes<T>) {
      alignas(T) unsigned char bytes[sizeof(T)];
      if (!core_.get(static_cast<void*>(bytes), deadline)) return std::nullopt;
      return std::bit_cast<T>(bytes);
    } else {
      std::string bytes;
      if (!core_.get(bytes, deadline)) return std::nullopt;
      Reader in(bytes);
      std::optional<T> item(in.get<T>());
      if (in.remaining() != 0) Reader::malformed("bytes left after an mp::Queue item");
      return item;
    }
  }

  concur::detail::SharedBlock block_;
  mutable Core core_;
  bool closed_ = false;
};

}  // namespace detail_queue

// Queue
//
// Python's multiprocessing.Queue(maxsize). Not movable.
template <class T>
class Queue : public detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  // Queue(maxsize), Queue(options)
  //
  // A queue in an anonymous shared mapping, shared with the processes forked from now on.
  // Throws std::system_error: ENOSYS without a robust futex list, or mmap's error.
  explicit Queue(std::size_t maxsize = 0) : Base(QueueOptions{.maxsize = maxsize}) {}
  explicit Queue(const QueueOptions& options) : Base(options) {}

  // Queue(mp::place, memory, offset, options), Queue(mp::find, memory, offset)
  //
  // Built in, or found in, a named SharedMemory (see mp::Lock's).
  Queue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  Queue(find_t, SharedMemory& memory, std::size_t offset = 0) : Base(find, memory, offset) {}

  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
};

// JoinableQueue
//
// Python's multiprocessing.JoinableQueue(maxsize): a Queue whose consumers mark each item done
// with task_done(), and whose join() waits until every item put has been. Not movable.
template <class T>
class JoinableQueue : public detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  // JoinableQueue(maxsize), JoinableQueue(options), and the place and find forms
  //
  // As Queue's.
  explicit JoinableQueue(std::size_t maxsize = 0) : Base(QueueOptions{.maxsize = maxsize}) {}
  explicit JoinableQueue(const QueueOptions& options) : Base(options) {}
  JoinableQueue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  JoinableQueue(find_t, SharedMemory& memory, std::size_t offset = 0)
      : Base(find, memory, offset) {}

  JoinableQueue(const JoinableQueue&) = delete;
  JoinableQueue& operator=(const JoinableQueue&) = delete;

  // JoinableQueue::task_done()
  //
  // Marks one item done. UsageError when every item put is done already (Python's
  // ValueError, "task_done() called too many times").
  void task_done() {
    if (!this->core().task_done()) throw UsageError("task_done() called too many times");
  }

  // JoinableQueue::join(), join(timeout)
  //
  // Waits until every item put has been marked done; with a timeout, returns whether that
  // happened in time (an addition to Python's).
  void join() { (void)this->core().join(concur::detail::never); }
  template <class Rep, class Period>
  [[nodiscard]] bool join(std::chrono::duration<Rep, Period> timeout) {
    concur::detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    return this->core().join(concur::detail::deadline_after(timeout));
  }

  // JoinableQueue::unfinished_tasks()
  //
  // Items put and not yet marked done (Python's private _unfinished_tasks).
  [[nodiscard]] std::size_t unfinished_tasks() { return this->core().unfinished(); }
};

// SimpleQueue
//
// Python's multiprocessing.SimpleQueue: put(), get(), empty(), close(), over a ring of
// `unbounded_capacity` items (put() waits while it is full). Not movable.
template <class T>
class SimpleQueue : private detail_queue::QueueBase<T> {
  using Base = detail_queue::QueueBase<T>;

 public:
  using value_type = T;
  using Base::close;
  using Base::empty;
  using Base::get;
  using Base::put;
  using Base::shared_alignment;
  using Base::shared_size;

  // SimpleQueue(), SimpleQueue(options), and the place and find forms
  //
  // As Queue's (maxsize is not Python's here: only the ring's capacity counts).
  SimpleQueue() : Base(QueueOptions{}) {}
  explicit SimpleQueue(const QueueOptions& options) : Base(options) {}
  SimpleQueue(place_t, SharedMemory& memory, std::size_t offset, const QueueOptions& options = {})
      : Base(place, memory, offset, options) {}
  SimpleQueue(find_t, SharedMemory& memory, std::size_t offset = 0) : Base(find, memory, offset) {}

  SimpleQueue(const SimpleQueue&) = delete;
  SimpleQueue& operator=(const SimpleQueue&) = delete;
};

}  // namespace concur::mp

#endif  // CONCUR_MP_QUEUE_HPP
