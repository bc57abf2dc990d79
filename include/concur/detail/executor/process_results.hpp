// concur/detail/executor/process_results.hpp
//
// The sinks that receive a process pool's results (see process_worker.hpp): AsyncState (one
// value or an exception, waited for with a deadline), ApplySink (one task), MapSink (a whole
// map, chunk by chunk, into one vector) and IMapSink (results handed out one by one, in order
// or in completion order, as imap, imap_unordered and ProcessPoolExecutor::map do).
//
// Waiting blocks on a std::condition_variable: no polling. The I/O thread fills the sinks
// (deliver, fail); any thread waits on them.
//
// POSIX only.

#ifndef CONCUR_DETAIL_EXECUTOR_PROCESS_RESULTS_HPP
#define CONCUR_DETAIL_EXECUTOR_PROCESS_RESULTS_HPP

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/detail/executor/block_cache.hpp"
#include "concur/detail/executor/process_protocol.hpp"
#include "concur/detail/executor/process_worker.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// Waits on `cv` under `hold` until `ready()` or `deadline`; true when ready.
template <class Pred>
bool wait_until_ready(std::condition_variable& cv, std::unique_lock<std::mutex>& hold,
                      steady_time deadline, Pred ready) {
  if (deadline == never) {
    cv.wait(hold, ready);
    return true;
  }
  return cv.wait_until(hold, deadline, ready);
}

// AsyncState<R>
//
// One result (R, or nothing for void) or one exception, set once.
template <class R>
class AsyncState {
 public:
  using Stored = std::conditional_t<std::is_void_v<R>, char, R>;

  void set_value(Stored value) {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (ready_) return;
      value_.emplace(std::move(value));
      ready_ = true;
    }
    CONCUR_SCHEDULE_POINT("process_result.set");
    cv_.notify_all();
  }
  void set_error(const TaskFailure& failure) {
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (ready_) return;
      error_.emplace(failure);
      ready_ = true;
    }
    CONCUR_SCHEDULE_POINT("process_result.set");
    cv_.notify_all();
  }

  bool wait_until(steady_time deadline) {
    std::unique_lock<std::mutex> hold(mutex_);
    return wait_until_ready(cv_, hold, deadline, [this] { return ready_; });
  }
  bool ready() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return ready_;
  }
  bool successful() const {
    std::lock_guard<std::mutex> hold(mutex_);
    if (!ready_) throw UsageError("the result is not ready");
    return !error_.has_value();
  }
  // The value once ready: throws TimeoutError at the deadline, or the task's exception.
  const Stored& get_until(steady_time deadline) {
    std::unique_lock<std::mutex> hold(mutex_);
    if (!wait_until_ready(cv_, hold, deadline, [this] { return ready_; })) throw TimeoutError();
    if (error_) error_->raise();
    return *value_;
  }
  // The value moved out (for a caller that owns the only handle).
  Stored take() {
    std::unique_lock<std::mutex> hold(mutex_);
    wait_until_ready(cv_, hold, never, [this] { return ready_; });
    if (error_) error_->raise();
    return std::move(*value_);
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool ready_ = false;
  std::optional<Stored> value_;
  std::optional<TaskFailure> error_;
};

// ApplySink<R>: one task, one result (apply_async).
template <class R>
class ApplySink final : public TaskSink, public AsyncState<R> {
 public:
  void deliver(std::size_t, std::string_view payload) override {
    try {
      if constexpr (std::is_void_v<R>) {
        this->set_value(0);
      } else {
        Reader in(payload);
        this->set_value(in.get<R>());
      }
    } catch (...) {
      this->set_error(TaskFailure::current());
    }
  }
  void fail(std::size_t, const TaskFailure& failure) override { this->set_error(failure); }
};

// MapSink<R>: `chunks` tasks of `chunksize` items (the last one shorter) into one vector
// (map, starmap, map_async). The first failure makes the whole result an error at once, as in
// Python.
template <class R>
class MapSink final : public TaskSink, public AsyncState<std::vector<R>> {
 public:
  MapSink(std::size_t items, std::size_t chunksize)
      : items_(items), chunksize_(chunksize), left_(chunk_count(items, chunksize)) {
    parts_.resize(items);
    if (left_ == 0) this->set_value({});
  }

  static std::size_t chunk_count(std::size_t items, std::size_t chunksize) {
    return chunksize == 0 ? 0 : (items + chunksize - 1) / chunksize;
  }

  void deliver(std::size_t slot, std::string_view payload) override {
    const std::size_t first = slot * chunksize_;
    const std::size_t count = std::min(chunksize_, items_ - first);
    try {
      // Each chunk fills its own elements: only the count needs the lock.
      if constexpr (is_bulk_v<R> && Parts::direct) {
        copy_bulk_results<R>(payload, count, parts_.items.data() + first);
      } else {
        Reader in(payload);
        for (std::size_t i = 0; i < count; ++i) parts_.set(first + i, in.get<R>());
      }
    } catch (...) {
      this->set_error(TaskFailure::current());
      return;
    }
    bool last;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      last = --left_ == 0;
    }
    if (last) {
      std::vector<R> out;
      try {
        out = parts_.take();
      } catch (...) {
        this->set_error(TaskFailure::current());
        return;
      }
      this->set_value(std::move(out));
    }
  }
  void fail(std::size_t, const TaskFailure& failure) override { this->set_error(failure); }

 private:
  const std::size_t items_;
  const std::size_t chunksize_;
  std::mutex mutex_;
  std::size_t left_;
  // The results as they arrive: straight into the vector when R can be made empty first.
  struct Parts {
    static constexpr bool direct = std::is_default_constructible_v<R>;
    std::conditional_t<direct, std::vector<R>, std::vector<std::optional<R>>> items;
    void resize(std::size_t n) {
      items.reserve(n);
      advise_fresh_pages(items.data(), n * sizeof(items[0]));  // empty: nothing to keep
      items.resize(n);
    }
    void set(std::size_t i, R&& value) {
      if constexpr (direct) {
        items[i] = std::move(value);
      } else {
        items[i].emplace(std::move(value));
      }
    }
    std::vector<R> take() {
      if constexpr (direct) {
        return std::move(items);
      } else {
        std::vector<R> out;
        out.reserve(items.size());
        for (auto& item : items) out.push_back(std::move(*item));
        return out;
      }
    }
  };
  Parts parts_;
};

// IMapSink<R>: results handed out one at a time, in order (imap, ProcessPoolExecutor::map) or
// as chunks complete (imap_unordered). A failed chunk yields its exception once, in its place.
template <class R>
class IMapSink final : public TaskSink {
 public:
  // `blocks`, when given, is the pools' BlockCache: a bulk result type's buffer comes from it
  // and goes back to it when the sink is destroyed.
  IMapSink(std::size_t items, std::size_t chunksize, bool ordered,
           const std::shared_ptr<BlockCache>& blocks = nullptr)
      : items_(items), chunksize_(chunksize), ordered_(ordered) {
    if (ordered_) chunks_.resize(MapSink<R>::chunk_count(items, chunksize));
    if constexpr (bulk) {
      std::size_t bytes = std::max<std::size_t>(items * sizeof(R), 1);
      results_ = shared_block(blocks, bytes);
    }
  }

  void deliver(std::size_t slot, std::string_view payload) override {
    Chunk chunk;
    chunk.count = std::min(chunksize_, items_ - slot * chunksize_);
    try {
      const std::size_t count = chunk.count;
      if constexpr (bulk) {
        // Straight into the stream's one buffer for all results, each chunk in its place.
        char* to = results_.get() + slot * chunksize_ * sizeof(R);
        copy_bulk_results<R>(payload, count, to);
        chunk.bulk = to;
      } else {
        Reader in(payload);
        chunk.values.reserve(count);
        for (std::size_t i = 0; i < count; ++i) chunk.values.push_back(in.get<R>());
      }
    } catch (...) {
      chunk.values.clear();
      chunk.bulk = nullptr;
      chunk.error.emplace(TaskFailure::current());
    }
    arrive(slot, std::move(chunk));
  }
  void fail(std::size_t slot, const TaskFailure& failure) override {
    Chunk chunk;
    chunk.count = std::min(chunksize_, items_ - slot * chunksize_);
    chunk.error.emplace(failure);
    arrive(slot, std::move(chunk));
  }

  // The next result: nullopt at the end; throws TimeoutError at the deadline (nothing is
  // consumed then), or a failed chunk's exception (which is then consumed).
  //
  // The chunk being handed out, and the counts of what was taken, belong to the one consumer
  // (ResultStream is not thread-safe), so its results are taken without the lock, which guards
  // only the chunks still arriving: one lock per chunk, not one per result. That fast path is
  // kept small enough to be inlined into the consumer's loop (a call into the whole function
  // per result cost 8 ns of the 10 ns a result took to hand out); the rest is out of line.
  std::optional<R> next_until(steady_time deadline) {
    if (std::optional<R> value = take_from_current()) return value;
    return next_chunk_until(deadline);
  }

  // Whether every result has been handed out (a failed chunk counts as all its items): the end
  // of the stream, known without waiting.
  bool exhausted() const noexcept {
    return consumed_ >= items_;  // the consumer's own count (see next_until())
  }

 private:
  // next_until() once the current chunk is used up: waits for the next one and takes its first
  // result.
  CONCUR_NOINLINE std::optional<R> next_chunk_until(steady_time deadline) {
    std::unique_lock<std::mutex> hold(mutex_);
    for (;;) {
      if (std::optional<R> value = take_from_current()) return value;
      current_.reset();
      position_ = 0;
      if (taken_chunks_ == chunk_total()) return std::nullopt;
      // waiting_ is read and written under mutex_: arrive() sees it set before this thread
      // sleeps, so a chunk that arrives meanwhile wakes it.
      waiting_ = true;
      const bool ready = wait_until_ready(cv_, hold, deadline, [this] { return next_ready(); });
      waiting_ = false;
      if (!ready) throw TimeoutError();
      Chunk chunk = take_next();
      ++taken_chunks_;
      if (chunk.error) {
        consumed_ += chunk.count;
        chunk.error->raise();
      }
      current_.emplace(std::move(chunk));
    }
  }

  // A bulk result type's results are copied into one buffer for the whole stream (allocated
  // untouched, on huge pages when big), not into a vector per chunk.
  static constexpr bool bulk = is_bulk_v<R> && std::is_default_constructible_v<R>;

  struct Chunk {
    std::size_t count = 0;  // items in the chunk
    std::vector<R> values;
    const char* bulk = nullptr;  // or its results in results_
    std::optional<TaskFailure> error;
  };

  std::size_t chunk_total() const { return MapSink<R>::chunk_count(items_, chunksize_); }

  // Wakes the consumer only when it waits for this chunk (ordered) or for any (unordered): a
  // stream of small results then costs no wake-up per result while the consumer is busy or
  // waits for an earlier chunk.
  void arrive(std::size_t slot, Chunk&& chunk) {
    bool wake;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      if (ordered_) {
        chunks_[slot].emplace(std::move(chunk));
      } else {
        arrived_.push_back(std::move(chunk));
      }
      wake = waiting_ && (!ordered_ || slot == taken_chunks_);
    }
    CONCUR_SCHEDULE_POINT("process_imap.arrive");
    if (wake) cv_.notify_all();
  }

  bool next_ready() const {
    return ordered_ ? chunks_[taken_chunks_].has_value() : !arrived_.empty();
  }

  Chunk take_next() {
    if (ordered_) {
      Chunk chunk = std::move(*chunks_[taken_chunks_]);
      chunks_[taken_chunks_].reset();
      return chunk;
    }
    Chunk chunk = std::move(arrived_.front());
    arrived_.pop_front();
    return chunk;
  }

  // The next result of the chunk being handed out, if it has one left.
  std::optional<R> take_from_current() {
    if constexpr (bulk) {
      if (current_ && current_->bulk != nullptr && position_ < current_->count) {
        ++consumed_;
        R value;
        std::memcpy(static_cast<void*>(&value), current_->bulk + sizeof(R) * position_++,
                    sizeof(R));
        return value;
      }
    } else if (current_ && position_ < current_->values.size()) {
      ++consumed_;
      return std::move(current_->values[position_++]);
    }
    return std::nullopt;
  }

  const std::size_t items_;
  const std::size_t chunksize_;
  const bool ordered_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::optional<Chunk>> chunks_;  // ordered: by chunk index
  std::deque<Chunk> arrived_;                 // unordered: in completion order
  std::shared_ptr<char[]> results_;           // bulk: every result, in item order
  std::size_t taken_chunks_ = 0;
  std::optional<Chunk> current_;
  std::size_t position_ = 0;
  std::size_t consumed_ = 0;  // results handed out, a failed chunk's items included
  bool waiting_ = false;      // the consumer is in next_until's wait
};

// ResultStream<R>
//
// The results of an imap, imap_unordered or ProcessPoolExecutor::map, one at a time: an input
// range (`for (R& r : stream)`) whose iterator blocks for each next result when dereferenced,
// and next() for the explicit form. A failed task's exception is thrown in place of its
// results (once for a whole chunk, as Python does); the stream then goes on with the next
// task. Results taken are gone: iterate once. Not thread-safe (one consumer).
template <class R>
class ResultStream {
 public:
  explicit ResultStream(std::shared_ptr<IMapSink<R>> sink, steady_time deadline = never)
      : sink_(std::move(sink)), deadline_(deadline) {}

  // ResultStream::next(), next(timeout)
  //
  // The next result, or nullopt after the last. Throws TimeoutError when it does not come by
  // the deadline (the stream's own, for ProcessPoolExecutor::map with a timeout; or `timeout`
  // from now, Python's IMapIterator.next(timeout)), or the task's exception.
  std::optional<R> next() { return sink_->next_until(deadline_); }
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    return sink_->next_until(std::min(deadline_, deadline_after(timeout)));
  }

  // ResultStream::iterator
  //
  // Waits for a result when dereferenced (throwing its task's exception there, as the lead's
  // thread MapResult does); ++ moves on (taking the result first if it was never looked at).
  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ResultStream* stream) : stream_(stream) {}
    R& operator*() const {
      fetch();
      return *current_;
    }
    R* operator->() const { return &**this; }
    iterator& operator++() {
      if (!fetched_) fetch();
      fetched_ = false;
      current_.reset();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return !it.fetched_ && it.stream_->exhausted();
    }

   private:
    void fetch() const {
      if (fetched_) {
        if (!current_) throw UsageError("this result threw: move on with ++");
        return;
      }
      fetched_ = true;
      current_ = stream_->next();
    }
    ResultStream* stream_ = nullptr;
    mutable bool fetched_ = false;
    mutable std::optional<R> current_;
  };

  // ResultStream::exhausted()
  //
  // Whether every result has been handed out (known without waiting).
  [[nodiscard]] bool exhausted() const { return sink_->exhausted(); }

  // ResultStream::begin(), end()
  //
  // begin() waits for the first result.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  std::shared_ptr<IMapSink<R>> sink_;
  steady_time deadline_;
};

// Python's default chunksize for map: len / (4 * processes), rounded up; 0 for no items.
inline std::size_t default_chunksize(std::size_t items, int processes) {
  const std::size_t per = static_cast<std::size_t>(processes) * 4;
  return items / per + (items % per != 0 ? 1 : 0);
}

// The number of items in a forward range (its size when it knows it). Written without
// std::ranges::distance, which libc++ 14 lacks.
template <class Range>
std::size_t range_count(Range& items) {
  if constexpr (requires { std::size(items); }) {
    return static_cast<std::size_t>(std::size(items));
  } else {
    std::size_t n = 0;
    for (auto it = std::ranges::begin(items); it != std::ranges::end(items); ++it) ++n;
    return n;
  }
}

// The tasks of a map: chunks of `chunksize` items of `items`, each its own job with slot i,
// their payloads encoded in one pass into one block that they share (for bulk items in
// contiguous memory, of the exact size and on huge pages).
//
// `blocks`, when given, is the pools' BlockCache: the block of bulk items comes from it and goes
// back to it once the last chunk has been sent.
template <class F, class Item, bool Unpack, class Range>
std::vector<PoolJob> chunk_jobs(std::uint64_t fn, const Range& items, std::size_t count,
                                std::size_t chunksize, const std::shared_ptr<TaskSink>& sink,
                                const std::shared_ptr<BlockCache>& blocks = nullptr) {
  std::vector<PoolJob> jobs;
  if (chunksize == 0) return jobs;
  const std::size_t chunks = (count + chunksize - 1) / chunksize;
  jobs.reserve(chunks);
  std::vector<std::size_t> ends;
  ends.reserve(chunks);
  std::shared_ptr<const void> keep;
  const char* data = nullptr;
  using It = decltype(std::ranges::begin(items));
  if (payload_bytes<Item>(count, chunks) < chunks * 64) {
    // Small chunks (chunksize 1): each payload in its own string, short enough to need no
    // allocation of its own, and no shared block to count references to.
    auto first = std::ranges::begin(items);
    for (std::size_t start = 0, slot = 0; start < count; start += chunksize, ++slot) {
      Writer out;
      first = encode_items<Item>(out, first, std::min(chunksize, count - start));
      TaskCall call;
      call.invoker = &run_items<F, Item, Unpack>;
      call.fn = fn;
      call.payload.own = out.take();
      jobs.push_back({sink, slot, std::move(call)});
    }
    return jobs;
  }
  if constexpr (is_bulk_v<Item> && std::contiguous_iterator<It> &&
                std::is_same_v<std::remove_cv_t<std::iter_value_t<It>>, Item>) {
    std::size_t capacity = std::max<std::size_t>(payload_bytes<Item>(count, chunks), 1);
    std::shared_ptr<char[]> block = shared_block(blocks, capacity);
    const Item* from = std::to_address(std::ranges::begin(items));
    std::size_t at = 0;
    for (std::size_t start = 0; start < count; start += chunksize) {
      const std::size_t n = std::min(chunksize, count - start);
      char raw[sizeof(std::uint64_t)];
      for (std::size_t i = 0; i < sizeof raw; ++i) raw[i] = static_cast<char>(n >> (8 * i));
      std::memcpy(block.get() + at, raw, sizeof raw);
      std::memcpy(block.get() + at + sizeof raw, from + start, n * sizeof(Item));
      at += sizeof raw + n * sizeof(Item);
      ends.push_back(at);
    }
    data = block.get();
    keep = std::move(block);
  } else {
    std::string buffer;
    reserve_huge(buffer, payload_bytes<Item>(count, chunks));
    Writer out(std::move(buffer));
    auto first = std::ranges::begin(items);
    for (std::size_t start = 0; start < count; start += chunksize) {
      first = encode_items<Item>(out, first, std::min(chunksize, count - start));
      ends.push_back(out.size());
    }
    auto block = std::make_shared<const std::string>(out.take());
    data = block->data();
    keep = std::move(block);
  }
  std::size_t begin = 0;
  for (std::size_t slot = 0; slot < chunks; ++slot) {
    TaskCall call;
    call.invoker = &run_items<F, Item, Unpack>;
    call.fn = fn;
    call.payload.keep = keep;
    call.payload.view = std::string_view(data + begin, ends[slot] - begin);
    jobs.push_back({sink, slot, std::move(call)});
    begin = ends[slot];
  }
  return jobs;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_PROCESS_RESULTS_HPP
