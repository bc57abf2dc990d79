// concur/detail/shared_arena.hpp
//
// Where the anonymous blocks of concur::mp objects live (detail/shared_block.hpp): a Lock's
// block is a few hundred bytes, and a mapping of its own per object would cost a page each and,
// worse, one of the 65530 mappings Linux allows a process (vm.max_map_count): a program that
// makes a hundred thousand mp::Value objects would fail. Small blocks are cut from shared
// chunks of 64 KiB instead, as Python's multiprocessing.heap cuts its objects from arenas.
//
//   chunk (MAP_SHARED | MAP_ANONYMOUS, 64 KiB): [ block | block | block | ... free ... ]
//                                                 ^ bump pointer moves right only
//
// Two rules make sharing a chunk as safe as a mapping per object:
//   - A chunk is only ever cut forwards: a freed block is never handed out again. A process
//     that destroys its mp::Lock while a child it forked still uses that Lock must not get the
//     same bytes back for its next object, or the two would be one lock in two guises. A chunk
//     is unmapped (in this process only) once every block cut from it here is freed.
//   - A process cuts only from chunks it mapped itself: after fork() the child's bookkeeping is
//     a copy of its parent's, and were it to go on cutting from the parent's current chunk, the
//     two would hand out the same shared bytes. Each chunk records the fork generation
//     (detail/at_fork.hpp) that mapped it; a process of another generation maps a new one.
// Blocks larger than an eighth of a chunk get a mapping of their own, as before.
//
// The bookkeeping is private memory under a std::mutex, held across fork() by at_fork
// handlers so that a child never inherits it locked. Chunks are never shared by name, so
// nothing is left behind when the processes end.

#ifndef CONCUR_DETAIL_SHARED_ARENA_HPP
#define CONCUR_DETAIL_SHARED_ARENA_HPP

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "concur/detail/at_fork.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// SharedArena
//
// The process's one arena (instance()).
class SharedArena {
 public:
  static constexpr std::size_t chunk_size = std::size_t{64} * 1024;
  static constexpr std::size_t largest_cut = chunk_size / 8;
  static constexpr std::size_t largest_alignment = 4096;

  // A block handed out: its bytes, and the chunk it was cut from (null: a mapping of its own).
  struct Chunk;
  struct Block {
    void* base = nullptr;
    Chunk* chunk = nullptr;
  };

  static SharedArena& instance() {
    // Never destroyed: objects with static storage may free their blocks after exit() began.
    static SharedArena* const arena = new SharedArena;
    return *arena;
  }

  // SharedArena::allocate(size, alignment)
  //
  // Zeroed shared bytes, never handed out before. Throws std::system_error (mmap's error).
  Block allocate(std::size_t size, std::size_t alignment) {
    if (size > largest_cut || alignment > largest_alignment) return {map(size), nullptr};
    std::scoped_lock hold(mutex_);
    std::size_t offset = current_ == nullptr ? 0 : align_up(current_->used, alignment);
    if (current_ == nullptr || current_->generation != fork_generation() ||
        offset + size > chunk_size) {
      auto fresh = std::make_unique<Chunk>(Chunk{nullptr, 0, 0, fork_generation()});
      fresh->base = map(chunk_size);
      retire(current_);
      current_ = fresh.release();
      offset = 0;
    }
    current_->used = offset + size;
    ++current_->live;
    return {static_cast<std::byte*>(current_->base) + offset, current_};
  }

  // SharedArena::release(block, size)
  //
  // Frees a block of `size` bytes in this process; its chunk is unmapped here once nothing cut
  // from it is left (never reused: see the header).
  void release(const Block& block, std::size_t size) noexcept {
    if (block.chunk == nullptr) {
      ::munmap(block.base, size);
      return;
    }
    std::scoped_lock hold(mutex_);
    --block.chunk->live;
    if (block.chunk != current_) retire(block.chunk);
  }

  struct Chunk {
    void* base;
    std::size_t used;
    std::size_t live;
    std::uint32_t generation;
  };

 private:
  SharedArena() { (void)at_fork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork); }

  static std::size_t align_up(std::size_t n, std::size_t a) noexcept { return (n + a - 1) / a * a; }

  static void* map(std::size_t size) {
    void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) throw_errno("mmap");
    return memory;
  }

  // Unmaps `chunk` here if nothing cut from it is left; called under the mutex.
  static void retire(Chunk* chunk) noexcept {
    if (chunk == nullptr || chunk->live != 0) return;
    ::munmap(chunk->base, chunk_size);
    delete chunk;
  }

  static void lock_for_fork() { instance().mutex_.lock(); }
  static void unlock_after_fork() { instance().mutex_.unlock(); }

  std::mutex mutex_;
  Chunk* current_ = nullptr;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SHARED_ARENA_HPP
