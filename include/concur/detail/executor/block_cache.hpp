// concur/detail/executor/block_cache.hpp
//
// BlockCache: the big byte blocks of the process pools' maps (the encoded items, the results of
// a bulk result type, the buffers the I/O thread reads results into), kept from one map to the
// next.
//
// Why. A map of a million small items moves megabytes through blocks that a new map would
// allocate afresh, and fresh memory costs far more than the copying into it: the kernel faults
// it in and clears it page by page (on a virtual machine each fault also goes through the host),
// and glibc hands a big block back to the kernel when it is freed. Measured on a 2-vCPU VM, a
// map of 1M int64 at Python's default chunksize spent most of the parent's CPU clearing pages.
// A kept block is already backed, so the next map only writes into it.
//
// Lifecycle. A block is taken for one map (take()), used, and given back when the map's last
// user lets go (give(), from whichever thread that is: the I/O thread after the last chunk is
// sent, or the consumer when a result stream ends). One cache serves every pool of the program
// (BlockCache::shared()), so that a pool made for one batch of work and destroyed after it,
// as Python's `with Pool() as pool:` is used, finds the blocks of the one before: a new
// pool's first map otherwise ran 2x to 9x slower than its second, here. It keeps at most
// `max_kept_bytes` (the items and results of a map of about 2M scalars), freeing the oldest
// first; what it keeps stays until the program ends (or forget()).
//
// fork(). A pool forks its workers while blocks are kept, and a block shared copy-on-write
// with a child is dearer to write than fresh memory (every page is copied on its first write).
// So a kept block is a mapping of its own, marked MADV_WIPEONFORK (Linux 4.14): a child gets
// empty pages there, and the parent's pages stay its own. Where that mark cannot be had, blocks
// come from allocate_bytes() and are freed, not kept. A block is never handed to another
// process: only this process's maps read it.
//
// Memory ordering: every member is under mutex_.

#ifndef CONCUR_DETAIL_EXECUTOR_BLOCK_CACHE_HPP
#define CONCUR_DETAIL_EXECUTOR_BLOCK_CACHE_HPP

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/executor/process_protocol.hpp"

namespace concur::detail {

// map_keepable_block(size)
//
// A block of at least `size` bytes (updated to its length: whole 2 MiB pages) in a private
// anonymous mapping of its own, 2 MiB-aligned, advised for huge pages and wiped in children
// (MADV_WIPEONFORK); null where any of that fails (no such madvise before Linux 4.14, or not
// Linux). Its deleter unmaps it.
inline Bytes map_keepable_block(std::size_t& size) noexcept {
#if defined(MADV_WIPEONFORK)
  const std::size_t length = (size + huge_page_size - 1) & ~(huge_page_size - 1);
  const std::size_t span = length + huge_page_size;  // room to align the start
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return Bytes(nullptr, BytesDeleter{});
  const auto begin = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (begin + huge_page_size - 1) & ~(huge_page_size - 1);
  // Unmap the slack before and after the aligned part.
  if (aligned > begin) (void)::munmap(raw, aligned - begin);
  const std::uintptr_t tail = aligned + length;
  if (begin + span > tail) (void)::munmap(reinterpret_cast<void*>(tail), begin + span - tail);
  auto* data = reinterpret_cast<char*>(aligned);
  if (::madvise(data, length, MADV_WIPEONFORK) != 0) {
    (void)::munmap(data, length);
    return Bytes(nullptr, BytesDeleter{});
  }
  advise_huge_pages(data, length);
  size = length;
  return Bytes(data, BytesDeleter{false, length});
#else
  (void)size;
  return Bytes(nullptr, BytesDeleter{});
#endif
}

class BlockCache {
 public:
  // Blocks smaller than this are not kept: they come from the heap's free lists, cheaply.
  static constexpr std::size_t min_kept_block = std::size_t{1} << 20;
  // The most kept between maps; a bigger map's blocks are freed as before.
  static constexpr std::size_t max_kept_bytes = std::size_t{32} << 20;

  // BlockCache::shared()
  //
  // The cache of every process pool in the program. Each pool holds a reference, so the cache
  // outlives every pool, even one destroyed during static destruction. Its lock is held across
  // fork() (at_fork.hpp), so that a child forked while a pool's thread held it (a Process
  // started during a map) finds it free, and can run pools of its own.
  static const std::shared_ptr<BlockCache>& shared() {
    static const std::shared_ptr<BlockCache> cache = [] {
      auto made = std::make_shared<BlockCache>();
      at_fork([] { shared()->mutex_.lock(); }, [] { shared()->mutex_.unlock(); },
              [] { shared()->mutex_.unlock(); });
      return made;
    }();
    return cache;
  }

  // BlockCache::take(size)
  //
  // A block of at least `size` bytes, not zeroed: the smallest kept one that is big enough
  // and not more than four times too big (so that a small map does not hold on to a big
  // block), else a new one that can be kept (map_keepable_block()), else one from
  // allocate_bytes(). `size` is updated to the block's capacity.
  Bytes take(std::size_t& size) {
    if (size >= min_kept_block) {
      if (Bytes found = take_kept(size)) return found;
      std::size_t length = size;
      if (Bytes fresh = map_keepable_block(length)) {
        size = length;
        return fresh;
      }
    }
    return allocate_bytes(size);
  }

  // BlockCache::give(block, size)
  //
  // Takes back a block of `size` bytes that take() handed out: kept when it is big enough to
  // matter and no bigger than the whole budget, making room by freeing the oldest kept ones
  // (the sizes the maps use now matter most); freed otherwise. Blocks are freed outside
  // the lock (a big one is a munmap). Never throws.
  void give(Bytes block, std::size_t size) noexcept {
    if (!block || block.get_deleter().mapped == 0 || size > max_kept_bytes) return;
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
  // Frees every kept block (for tests, and for a program that wants the memory back).
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
  // The smallest kept block that fits `size` (see take()), or null.
  Bytes take_kept(std::size_t& size) {
    std::lock_guard<std::mutex> hold(mutex_);
    auto best = kept_.end();
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->size >= size && it->size / 4 <= size &&
          (best == kept_.end() || it->size < best->size)) {
        best = it;
      }
    }
    if (best == kept_.end()) return Bytes(nullptr, BytesDeleter{});
    Kept found = std::move(*best);
    kept_.erase(best);
    kept_bytes_ -= found.size;
    size = found.size;
    return std::move(found.block);
  }

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
