// concur/detail/executor/block_cache.hpp
//
// BlockCache: the big byte blocks of one process pool's maps (the encoded items, the results of
// a bulk result type), kept from one map to the next.
//
// Why. A map of a million small items moves megabytes through blocks that a new map would
// allocate afresh, and fresh memory costs far more than the copying into it: the kernel faults
// it in and clears it page by page (on a virtual machine each fault also goes through the host),
// and glibc hands a big block back to the kernel when it is freed. Measured on a 2-vCPU VM, a
// map of 1M int64 at Python's default chunksize spent most of the parent's CPU clearing pages.
// A block kept by the pool is already backed, so the next map only writes into it.
//
// Lifecycle. A block is taken for one map (take()), used, and given back when the map's last
// user lets go (give(), from whichever thread that is: the I/O thread after the last chunk is
// sent, or the consumer when a result stream ends). The pool keeps at most `max_kept_bytes`
// and frees the rest, and everything when it is destroyed.
//
// fork(). A block kept across a fork() is shared copy-on-write with the child, and writing it
// then copies it page by page, which is dearer than fresh memory. So the pool calls forget()
// after it forks a worker, freeing what it kept. A fork() elsewhere in the program (a Process)
// only makes the next write to a kept block slower; nothing reads a kept block's old bytes.
//
// Memory ordering: every member is under mutex_.

#ifndef CONCUR_DETAIL_EXECUTOR_BLOCK_CACHE_HPP
#define CONCUR_DETAIL_EXECUTOR_BLOCK_CACHE_HPP

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "concur/detail/executor/process_protocol.hpp"

namespace concur::detail {

class BlockCache {
 public:
  // Blocks smaller than this are not kept: they come from the heap's free lists, cheaply.
  static constexpr std::size_t min_kept_block = std::size_t{1} << 20;
  // The most a pool keeps between maps: enough for the items and results of a map of a few
  // million scalars; a bigger map's blocks are freed as before.
  static constexpr std::size_t max_kept_bytes = std::size_t{64} << 20;

  // BlockCache::take(size)
  //
  // A block of at least `size` bytes, not zeroed: the smallest kept one that is big enough
  // and not more than four times too big (so that a small map does not hold on to a big
  // block), or a new one from allocate_bytes(). `size` is updated to the block's capacity.
  Bytes take(std::size_t& size) {
    if (size >= min_kept_block) {
      std::lock_guard<std::mutex> hold(mutex_);
      auto best = kept_.end();
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->size >= size && it->size / 4 <= size &&
            (best == kept_.end() || it->size < best->size)) {
          best = it;
        }
      }
      if (best != kept_.end()) {
        Kept found = std::move(*best);
        kept_.erase(best);
        kept_bytes_ -= found.size;
        size = found.size;
        return std::move(found.block);
      }
    }
    return allocate_bytes(size);
  }

  // BlockCache::give(block, size)
  //
  // Takes back a block of `size` bytes that take() handed out: kept when it is big enough to
  // matter and no bigger than the whole budget, making room by freeing the oldest kept ones
  // (the sizes the pool's maps use now matter most); freed otherwise. Blocks are freed outside
  // the lock (a big one is a munmap). Never throws.
  void give(Bytes block, std::size_t size) noexcept {
    if (!block || size < min_kept_block || size > max_kept_bytes) return;
    std::vector<Kept> evicted;
    std::lock_guard<std::mutex> hold(mutex_);
    try {
      kept_.reserve(kept_.size() + 1);
      while (kept_bytes_ + size > max_kept_bytes) {
        evicted.push_back(std::move(kept_.front()));
        kept_.erase(kept_.begin());
        kept_bytes_ -= evicted.back().size;
      }
      kept_.push_back({std::move(block), size});
      kept_bytes_ += size;
    } catch (...) {  // no memory for the bookkeeping: this block is freed
    }
  }

  // BlockCache::forget()
  //
  // Frees every kept block (after a fork(): see above).
  void forget() noexcept {
    std::vector<Kept> gone;
    {
      std::lock_guard<std::mutex> hold(mutex_);
      gone.swap(kept_);
      kept_bytes_ = 0;
    }
  }

  // BlockCache::kept_bytes()
  //
  // The bytes kept now (for tests and diagnostics).
  [[nodiscard]] std::size_t kept_bytes() const {
    std::lock_guard<std::mutex> hold(mutex_);
    return kept_bytes_;
  }

 private:
  struct Kept {
    Bytes block;
    std::size_t size = 0;
  };
  mutable std::mutex mutex_;
  std::vector<Kept> kept_;  // oldest first
  std::size_t kept_bytes_ = 0;
};

// shared_block(cache, size)
//
// A block from `cache` (or a new one when `cache` is null) owned by a shared_ptr that gives it
// back to the cache when the last owner lets go, if the cache still exists then (the pool may
// be gone by the time a map's last reference drops). `size` is updated as take() does.
inline std::shared_ptr<char[]> shared_block(const std::shared_ptr<BlockCache>& cache,
                                            std::size_t& size) {
  if (!cache) return std::shared_ptr<char[]>(allocate_bytes(size));
  Bytes block = cache->take(size);
  const BytesDeleter free_it = block.get_deleter();
  struct GiveBack {
    std::weak_ptr<BlockCache> cache;
    std::size_t size;
    BytesDeleter free_it;
    void operator()(char* data) const noexcept {
      Bytes block(data, free_it);
      if (auto alive = cache.lock()) alive->give(std::move(block), size);
    }
  };
  // Should the shared_ptr's own allocation fail, it calls GiveBack on the block before
  // throwing: nothing leaks.
  return std::shared_ptr<char[]>(block.release(), GiveBack{cache, size, free_it});
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_BLOCK_CACHE_HPP
