// concur/detail/executor/unique_futures.hpp
//
// The futures of a list, each once, in their first order: what wait() and as_completed() work
// on, as Python's wait() and as_completed() make a set of their argument first. A list of a
// million futures is common (every task of a batch), so this is done without a node per entry:
//   - by no work at all, when the states lie in a few increasing runs of addresses;
//   - by a GranuleSet, a bitmap over the states' addresses kept in blocks, when they lie in
//     few regions of memory, as states recycled by the state cache (state_cache.hpp) do;
//   - by an open-addressing table of the state pointers otherwise.

#ifndef CONCUR_DETAIL_EXECUTOR_UNIQUE_FUTURES_HPP
#define CONCUR_DETAIL_EXECUTOR_UNIQUE_FUTURES_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "concur/detail/executor/future.hpp"
#include "concur/errors.hpp"

namespace concur::detail {

// Whether the increasing runs of addresses that start at `run_begin[0..runs)` (each ending where
// the next begins) cover ranges of addresses that do not overlap: then no address repeats, with
// no need to merge them. The usual case: states taken from fresh memory, or from a few regions.
template <class At>
bool runs_apart(const std::size_t* run_begin, std::size_t runs, At at) noexcept {
  for (std::size_t r = 0; r < runs; ++r) {
    for (std::size_t q = 0; q < r; ++q) {
      const bool before = at(run_begin[r + 1] - 1) < at(run_begin[q]);
      const bool after = at(run_begin[r]) > at(run_begin[q + 1] - 1);
      if (!before && !after) return false;
    }
  }
  return true;
}

// Whether no state of `futures` repeats, decided without a table when their states lie in a few
// strictly increasing runs of addresses: futures submitted one after another from one thread
// usually do, as the heap hands out mostly increasing addresses. Within a run nothing repeats;
// across runs a repeat shows as two equal heads when the runs are merged. Reads the handles in
// order and touches no state. False (not known) for more runs than it merges, or an invalid
// handle.
template <class T>
bool known_without_repeats(const std::vector<Future<T>>& futures) noexcept {
  constexpr std::size_t max_runs = 8;
  std::size_t run_begin[max_runs + 1];
  std::size_t runs = 0;
  auto at = [&](std::size_t i) {
    return reinterpret_cast<std::uintptr_t>(FutureAccess::state(futures[i]));
  };
  for (std::size_t i = 0; i < futures.size(); ++i) {
    if (at(i) == 0) return false;
    if (i == 0 || at(i) <= at(i - 1)) {
      if (runs == max_runs) return false;
      run_begin[runs++] = i;
    }
  }
  run_begin[runs] = futures.size();
  if (runs_apart(run_begin, runs, at)) return true;
  // Merge the runs by their heads: every address is taken once, in increasing order, so two
  // equal addresses are taken one right after the other.
  std::size_t head[max_runs];
  for (std::size_t r = 0; r < runs; ++r) head[r] = run_begin[r];
  std::uintptr_t last = 0;
  for (std::size_t taken = 0; taken < futures.size(); ++taken) {
    std::size_t lowest = max_runs;
    for (std::size_t r = 0; r < runs; ++r) {
      if (head[r] < run_begin[r + 1] && (lowest == max_runs || at(head[r]) < at(head[lowest]))) {
        lowest = r;
      }
    }
    if (at(head[lowest]) == last) return false;
    last = at(head[lowest]++);
  }
  return true;
}

// GranuleSet
//
// A set of state addresses: one bit per 16-byte granule of memory (two distinct states are at
// least sizeof(StateBase) bytes apart, so never share a bit), the bits of each 64 KiB block of
// addresses made on the block's first use and found through an open-addressing table of block
// numbers, with the last block used looked at first. States recycled by the state cache come
// back in short runs from a few compact regions, which may lie far apart in the address space
// (each thread's heap is elsewhere): a million of them take a few hundred kilobytes here, where
// the table of pointers takes 16 MB and misses the cache on nearly every look. It gives up
// (insert() returns `over_budget`) rather than take more than `max_blocks` blocks, for states
// scattered too thinly for bits to pay.
class GranuleSet {
 public:
  enum class Insert { added, present, over_budget };

  explicit GranuleSet(std::size_t max_blocks) : max_blocks_(max_blocks) {}

  // GranuleSet::table_slots()
  //
  // The size of the table of blocks (for tests: it stays at most twice the blocks made).
  [[nodiscard]] std::size_t table_slots() const noexcept { return slots_.size(); }

  // GranuleSet::insert(address)
  //
  // Adds the granule of `address`: `added` if it was not in the set, `present` if it was.
  Insert insert(std::uintptr_t address) {
    const std::uintptr_t block_number = address >> block_shift;
    if (block_number != last_number_ || blocks_ == 0) {
      const std::optional<std::size_t> found = find_or_add(block_number);
      if (!found) return Insert::over_budget;
      last_number_ = block_number;
      last_block_ = *found;
    }
    const std::uintptr_t granule = (address & (block_bytes - 1)) >> granule_shift;
    std::uint64_t& word = bits_[last_block_ * words_per_block + granule / 64];
    const std::uint64_t mask = std::uint64_t{1} << (granule % 64);
    if ((word & mask) != 0) return Insert::present;
    word |= mask;
    return Insert::added;
  }

 private:
  static constexpr unsigned granule_shift = 4;
  static constexpr unsigned block_shift = 16;
  static constexpr std::uintptr_t block_bytes = std::uintptr_t{1} << block_shift;
  static constexpr std::size_t words_per_block = (block_bytes >> granule_shift) / 64;
  static_assert(sizeof(StateBase) >= (std::size_t{1} << granule_shift),
                "distinct states must fall in distinct granules");

  // The index of the block `number`, made (zeroed) if new; nothing when that is one too many.
  // The table grows only for a block that is added: a refusal at the budget costs nothing.
  std::optional<std::size_t> find_or_add(std::uintptr_t number) {
    std::size_t at = 0;
    if (!slots_.empty()) {
      for (at = slot_of(number); slots_[at].used; at = (at + 1) & (slots_.size() - 1)) {
        if (slots_[at].number == number) return slots_[at].block;
      }
    }
    if (blocks_ == max_blocks_) return std::nullopt;
    if (2 * (blocks_ + 1) > slots_.size()) {
      grow();
      for (at = slot_of(number); slots_[at].used; at = (at + 1) & (slots_.size() - 1)) {
      }
    }
    slots_[at] = Slot{number, blocks_, true};
    bits_.resize(bits_.size() + words_per_block, 0);
    return blocks_++;
  }

  std::size_t slot_of(std::uintptr_t number) const noexcept {
    return static_cast<std::size_t>((number * 0x9E3779B97F4A7C15ull) >> 32) & (slots_.size() - 1);
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : 2 * old.size(), Slot{});
    for (const Slot& slot : old) {
      if (!slot.used) continue;
      std::size_t at = slot_of(slot.number);
      while (slots_[at].used) at = (at + 1) & (slots_.size() - 1);
      slots_[at] = slot;
    }
  }

  struct Slot {
    std::uintptr_t number = 0;
    std::size_t block = 0;
    bool used = false;
  };

  const std::size_t max_blocks_;
  std::vector<Slot> slots_;          // block number -> block, at most half full
  std::vector<std::uint64_t> bits_;  // words_per_block words per block
  std::size_t blocks_ = 0;
  std::uintptr_t last_number_ = 0;
  std::size_t last_block_ = 0;
};

// The state of `future`; UsageError for a handle with none (checked in the loops below, which
// read the state anyway, rather than in a pass of its own).
template <class T>
const void* state_to_wait_on(const Future<T>& future) {
  const void* state = FutureAccess::state(future);
  if (state == nullptr) throw UsageError("wait() or as_completed() on a Future with no state");
  return state;
}

// The futures of `futures`, each once, in their first order, with a GranuleSet of at most
// `max_blocks` blocks; nothing if that is too few. UsageError for an invalid handle.
template <class T>
std::optional<std::vector<Future<T>>> unique_by_granules(const std::vector<Future<T>>& futures,
                                                         std::size_t max_blocks) {
  GranuleSet seen(max_blocks);
  std::vector<Future<T>> unique;
  unique.reserve(futures.size());
  for (const Future<T>& future : futures) {
    switch (seen.insert(reinterpret_cast<std::uintptr_t>(state_to_wait_on(future)))) {
      case GranuleSet::Insert::added:
        unique.push_back(future);
        break;
      case GranuleSet::Insert::present:
        break;
      case GranuleSet::Insert::over_budget:
        return std::nullopt;
    }
  }
  return unique;
}

// The futures of `futures`, each once, in their first order: with an open-addressing set of
// the state pointers (no allocation per entry), at most half full. UsageError for an invalid
// handle.
template <class T>
std::vector<Future<T>> unique_by_table(const std::vector<Future<T>>& futures) {
  std::vector<Future<T>> unique;
  unique.reserve(futures.size());
  std::size_t capacity = 16;
  while (capacity < 2 * futures.size()) capacity *= 2;
  std::vector<const void*> seen(capacity, nullptr);
  for (const Future<T>& future : futures) {
    const void* state = state_to_wait_on(future);
    std::size_t slot = (reinterpret_cast<std::uintptr_t>(state) >> 4) * 0x9E3779B97F4A7C15ull;
    for (slot &= capacity - 1; seen[slot] != nullptr && seen[slot] != state;
         slot = (slot + 1) & (capacity - 1)) {
    }
    if (seen[slot] == nullptr) {
      seen[slot] = state;
      unique.push_back(future);
    }
  }
  return unique;
}

// The blocks a GranuleSet may take for a list of `count` futures: as many bytes as the table
// would (16 per future: 512-byte blocks, one per 32 futures), and at least a few blocks.
inline std::size_t granule_budget(std::size_t count) noexcept {
  return count / 32 + 16;
}

// The futures of `futures`, each once, in their first order; UsageError for an invalid handle.
template <class T>
std::vector<Future<T>> unique_futures(const std::vector<Future<T>>& futures) {
  if (known_without_repeats(futures)) return futures;  // false for an invalid handle
  if (auto unique = unique_by_granules(futures, granule_budget(futures.size())))
    return *std::move(unique);
  return unique_by_table(futures);
}

// Whether no state of `futures` repeats, told without copying a handle (a copy is an atomic
// increment on its state, a cache miss per future in a long list): true when
// known_without_repeats() says so, or a GranuleSet within unique_futures()'s budget sees every
// state once. False for a repeat, or states too scattered to tell this way; every handle is
// checked only when it returns true (unique_futures() checks them in the other cases).
// UsageError for an invalid handle.
template <class T>
bool without_repeats(const std::vector<Future<T>>& futures) {
  if (known_without_repeats(futures)) return true;
  GranuleSet seen(granule_budget(futures.size()));
  for (const Future<T>& future : futures) {
    const auto address = reinterpret_cast<std::uintptr_t>(state_to_wait_on(future));
    if (seen.insert(address) != GranuleSet::Insert::added) return false;
  }
  return true;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_UNIQUE_FUTURES_HPP
