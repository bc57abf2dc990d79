// concur/detail/executor/state_cache.hpp
//
// Recycles the memory of future states (future_state.hpp), which are small (64 bytes for an
// empty task), made by the million and freed in bursts.
//
// Why not just the heap. A program that submits a million tasks and keeps their futures holds
// 64 MB of states; when it drops them, the C library gives that memory back to the kernel
// (glibc trims its heaps as soon as 128 KiB at their top are free), and the next burst pays a
// page fault for every 4 KiB it touches again: 16,000 faults, 7.5 us each on a virtual machine,
// more than the tasks themselves cost. Keeping the blocks and handing them out again costs
// nothing of the sort, so the next burst runs on warm memory.
//
// Design: Bonwick's magazines (the per-CPU layer of the Solaris slab allocator, "Magazines and
// Vmem", 2001), with threads for CPUs. Blocks come in size classes of 32 bytes up to 256. Each
// thread keeps, per class, a `loaded` stack of at most kBatch free blocks and a `spare` stack
// that is either empty or full. A free pushes on `loaded`; when it is full it becomes the spare,
// and a spare that was already full goes to the process-wide depot, as one chain. An allocation
// pops from `loaded`; when it is empty the full spare takes its place, or else a full chain
// comes from the depot, or else one block from the heap. So the depot's lock is taken at most
// once per kBatch operations of a thread, and a block freed on another thread than the one that
// made it (a future dropped by its consumer) comes back through the depot.
//
// Bounded: the depot keeps at most CONCUR_FUTURE_CACHE_BYTES of free blocks, every class
// together (default 64 MiB, a million empty tasks' states, the size of the burst above); a
// chain that would pass the bound goes back to the heap, block by block. With each thread's two
// stacks, that bounds what the cache holds; it never holds more than the program had live at its
// peak. A thread's stacks go to the depot when it exits.
//
// fork(): the depot's locks are held across fork() (at_fork.hpp), so the child finds the depot
// whole, with the forking thread's stacks; the other threads' stacks are not in the child, nor
// are the blocks in them.
//
// AddressSanitizer: a block in the cache is poisoned except for its two link words, so a use of
// a freed state is still reported (unless it touches only the first 16 bytes).
//
// Memory ordering: a block freed on one thread and reused on another passes through the depot,
// whose lock orders the free (and everything the freeing thread did with the state before) before
// the reuse; the state's own release_ref() is an acq_rel RMW, so the last user's accesses happen
// before the free. Blocks that stay on one thread need no ordering.

#ifndef CONCUR_DETAIL_EXECUTOR_STATE_CACHE_HPP
#define CONCUR_DETAIL_EXECUTOR_STATE_CACHE_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "concur/detail/at_fork.hpp"
#include "concur/lock.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define CONCUR_STATE_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONCUR_STATE_CACHE_ASAN 1
#endif
#endif
#ifdef CONCUR_STATE_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef CONCUR_FUTURE_CACHE_BYTES
#define CONCUR_FUTURE_CACHE_BYTES (std::size_t{64} << 20)
#endif

namespace concur::detail::state_cache {

inline constexpr std::size_t kGrain = 32;     // size classes are multiples of this
inline constexpr std::size_t kClasses = 8;    // up to 256 bytes; larger states use the heap
inline constexpr std::uint32_t kBatch = 256;  // blocks per stack and per depot chain
inline constexpr std::size_t kMaxBlock = kGrain * kClasses;

// A free block: its first word links the blocks of a stack or chain, its second links the
// chains of the depot.
struct FreeBlock {
  FreeBlock* next;
  FreeBlock* next_chain;
};
static_assert(sizeof(FreeBlock) <= kGrain, "the smallest block must hold its two links");
static_assert(kGrain % alignof(std::max_align_t) == 0,
              "every class's blocks must keep the heap's alignment");

// The class of a block of `size` bytes (0 < size <= kMaxBlock), and a class's block size.
constexpr std::size_t class_of(std::size_t size) noexcept {
  return (size - 1) / kGrain;
}
constexpr std::size_t block_size(std::size_t cls) noexcept {
  return (cls + 1) * kGrain;
}

// Poisoning under AddressSanitizer: the links stay readable, the rest is off limits.
inline void poison(FreeBlock* block, std::size_t size) noexcept {
#ifdef CONCUR_STATE_CACHE_ASAN
  ASAN_POISON_MEMORY_REGION(reinterpret_cast<char*>(block) + sizeof(FreeBlock),
                            size - sizeof(FreeBlock));
#else
  (void)block;
  (void)size;
#endif
}
inline void unpoison(void* block, std::size_t size) noexcept {
#ifdef CONCUR_STATE_CACHE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(block, size);
#else
  (void)block;
  (void)size;
#endif
}

// A stack of free blocks of one class, linked through FreeBlock::next.
struct Stack {
  FreeBlock* head = nullptr;
  std::uint32_t count = 0;
};

// Returns the blocks of a chain to the heap. (The global operator delete is called unsized
// throughout: its sized form exists only where sized deallocation is on, which Clang 14 leaves
// off by default.)
inline void release_chain(FreeBlock* chain, std::size_t size) noexcept {
  while (chain != nullptr) {
    FreeBlock* next = chain->next;
    unpoison(chain, size);
    ::operator delete(static_cast<void*>(chain));
    chain = next;
  }
}

// Depot
//
// The process-wide store of full chains (kBatch blocks each), one stack of chains per class,
// each under its own lock. Never destroyed, so that threads exiting after main() returns can
// still hand it their blocks.
class Depot {
 public:
  static Depot& instance() noexcept {
    static Depot* const depot = make();
    return *depot;
  }

  // Depot::put(cls, chain)
  //
  // Stores a full chain of class `cls`, or gives it back to the heap when the depot is at its
  // bound. The bound is on the bytes of every class together; a class with no chain may always
  // keep one, and puts of different classes at the same moment may each pass it by one chain.
  void put(std::size_t cls, FreeBlock* chain) noexcept {
    const std::size_t bytes = chain_bytes(cls);
    Shelf& shelf = shelves_[cls];
    shelf.lock.lock();
    if (shelf.chains == 0 ||
        held_bytes_.load(std::memory_order_relaxed) + bytes <= CONCUR_FUTURE_CACHE_BYTES) {
      held_bytes_.fetch_add(bytes, std::memory_order_relaxed);
      chain->next_chain = shelf.top;
      shelf.top = chain;
      ++shelf.chains;
      shelf.lock.unlock();
      return;
    }
    shelf.lock.unlock();
    release_chain(chain, block_size(cls));
  }

  // Depot::take(cls)
  //
  // A full chain of class `cls`, or null when the depot has none.
  FreeBlock* take(std::size_t cls) noexcept {
    Shelf& shelf = shelves_[cls];
    shelf.lock.lock();
    FreeBlock* chain = shelf.top;
    if (chain != nullptr) {
      shelf.top = chain->next_chain;
      --shelf.chains;
      held_bytes_.fetch_sub(chain_bytes(cls), std::memory_order_relaxed);
    }
    shelf.lock.unlock();
    return chain;
  }

  // The number of full chains of class `cls` the depot holds now (for tests).
  std::size_t chains(std::size_t cls) noexcept {
    Shelf& shelf = shelves_[cls];
    shelf.lock.lock();
    const std::size_t chains = shelf.chains;
    shelf.lock.unlock();
    return chains;
  }

  // The bytes of free blocks the depot holds now, every class together (for tests).
  std::size_t held_bytes() const noexcept { return held_bytes_.load(std::memory_order_relaxed); }

  // The most chains of class `cls` the depot keeps when it holds no other class, at least one.
  static std::size_t max_chains(std::size_t cls) noexcept {
    const std::size_t chains = CONCUR_FUTURE_CACHE_BYTES / chain_bytes(cls);
    return chains > 0 ? chains : 1;
  }
  static constexpr std::size_t chain_bytes(std::size_t cls) noexcept {
    return block_size(cls) * kBatch;
  }

 private:
  struct alignas(64) Shelf {
    Lock lock;
    FreeBlock* top = nullptr;
    std::size_t chains = 0;
  };

  static Depot* make() {
    auto* depot = new Depot;
    // The locks are held across fork(), so the child's depot is never caught half-changed.
    // The child makes its locks anew rather than releasing them: a lock's word may still hold
    // flags that the parent's waiting threads set (STARVING: newcomers must queue), which no
    // thread of the child will ever clear (found by StateCache.AChildForkedDuringChurnUsesTheCache:
    // the child hung in take(), the lock free but STARVING).
    at_fork([] { instance().lock_all(); }, [] { instance().unlock_all(); },
            [] { instance().renew_locks(); });
    return depot;
  }
  // Every shelf's lock at once, around fork() (beyond what -Wthread-safety can follow).
  void lock_all() noexcept CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    for (Shelf& shelf : shelves_) shelf.lock.lock();
  }
  void unlock_all() noexcept CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    for (Shelf& shelf : shelves_) shelf.lock.unlock();
  }
  void renew_locks() noexcept CONCUR_NO_THREAD_SAFETY_ANALYSIS {
    for (Shelf& shelf : shelves_) new (&shelf.lock) Lock();
  }

  Shelf shelves_[kClasses];
  std::atomic<std::size_t> held_bytes_{0};
};

// ThreadCache
//
// One thread's two stacks per class. Its destructor hands them to the depot when the thread
// exits; a state freed later in that thread's exit (by another thread_local's destructor) goes
// straight to the heap.
class ThreadCache {
 public:
  ThreadCache() noexcept = default;
  ThreadCache(const ThreadCache&) = delete;
  ThreadCache& operator=(const ThreadCache&) = delete;
  ~ThreadCache() {
    gone() = true;
    for (std::size_t cls = 0; cls < kClasses; ++cls) {
      flush(cls, loaded_[cls]);
      flush(cls, spare_[cls]);
    }
  }

  // Whether this thread's cache has been destroyed (trivially destructible, so safe to read
  // during the thread's exit).
  static bool& gone() noexcept {
    thread_local bool flag = false;
    return flag;
  }

  void* allocate(std::size_t cls) {
    Stack& loaded = loaded_[cls];
    if (loaded.count == 0 && !refill(cls)) return ::operator new(block_size(cls));
    FreeBlock* block = loaded.head;
    loaded.head = block->next;
    --loaded.count;
    unpoison(block, block_size(cls));
    return block;
  }

  void deallocate(void* memory, std::size_t cls) noexcept {
    Stack& loaded = loaded_[cls];
    if (loaded.count == kBatch) {
      Stack& spare = spare_[cls];
      if (spare.count != 0) Depot::instance().put(cls, spare.head);
      spare = loaded;
      loaded = Stack{};
    }
    auto* block = static_cast<FreeBlock*>(memory);
    block->next = loaded.head;
    loaded.head = block;
    ++loaded.count;
    poison(block, block_size(cls));
  }

 private:
  // Fills the empty `loaded` stack from the full spare or from the depot.
  bool refill(std::size_t cls) noexcept {
    Stack& spare = spare_[cls];
    if (spare.count != 0) {
      loaded_[cls] = spare;
      spare = Stack{};
      return true;
    }
    FreeBlock* chain = Depot::instance().take(cls);
    if (chain == nullptr) return false;
    loaded_[cls] = Stack{chain, kBatch};
    return true;
  }

  // Hands a stack to the depot at the thread's exit: a full one as a chain, a partial one to
  // the heap (the depot holds full chains only).
  static void flush(std::size_t cls, Stack& stack) noexcept {
    if (stack.count == kBatch) {
      Depot::instance().put(cls, stack.head);
    } else {
      release_chain(stack.head, block_size(cls));
    }
    stack = Stack{};
  }

  Stack loaded_[kClasses];
  Stack spare_[kClasses];
};

inline ThreadCache* this_thread_cache() noexcept {
  if (ThreadCache::gone()) return nullptr;
  thread_local ThreadCache cache;
  return &cache;
}

// allocate(size), deallocate(memory, size)
//
// Memory for a state of `size` bytes, and its return; `size` must be the same in both, as a
// sized operator delete gives it.
inline void* allocate(std::size_t size) {
  if (size == 0 || size > kMaxBlock) return ::operator new(size);
  const std::size_t cls = class_of(size);
  ThreadCache* cache = this_thread_cache();
  return cache != nullptr ? cache->allocate(cls) : ::operator new(block_size(cls));
}
inline void deallocate(void* memory, std::size_t size) noexcept {
  if (memory == nullptr) return;
  if (size == 0 || size > kMaxBlock) {
    ::operator delete(memory);
    return;
  }
  const std::size_t cls = class_of(size);
  ThreadCache* cache = this_thread_cache();
  if (cache != nullptr) {
    cache->deallocate(memory, cls);
  } else {
    ::operator delete(memory);
  }
}

}  // namespace concur::detail::state_cache

#endif  // CONCUR_DETAIL_EXECUTOR_STATE_CACHE_HPP
