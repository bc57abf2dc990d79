// concur/detail/shared_block.hpp
//
// Where a process-shared object of concur::mp lives: a block of shared memory that starts with
// a header saying what it holds, followed by the object's state and, for an Array, its items.
//
//   [ SharedHeader, 64 bytes | state (a lock, a count, ...) | items (Array<T>'s T[n]) ]
//
// A block is either anonymous, cut from shared memory mapped MAP_SHARED | MAP_ANONYMOUS by the
// process that makes it (detail/shared_arena.hpp: the processes fork()ed after that share it;
// it has no name, so nothing is ever left behind), or placed at an offset in a named
// mp::SharedMemory, where an unrelated process finds it.
//
// The header is what makes a find safe: its magic says "a concur object, fully built", and its
// layout version, kind, and the sizes and alignments of the state and the items must all equal
// those the finding process's build expects. Anything else (no object yet, another kind, another
// version of concur, a 32-bit build against a 64-bit one) is refused with
// std::invalid_argument, never misread.
//
// Lifecycle: place() writes the header with the magic still 0, the caller constructs the state
// in the block, then publish() stores the magic with release ordering. find() loads the magic
// with acquire ordering, so a finder that sees it also sees the built state. Finding an object
// before its placer has published it is refused (std::invalid_argument, "not placed yet"): the
// processes agree on the order by other means (a Pipe, a Process started afterwards).

#ifndef CONCUR_DETAIL_SHARED_BLOCK_HPP
#define CONCUR_DETAIL_SHARED_BLOCK_HPP

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

#include "concur/detail/shared_arena.hpp"
#include "concur/errors.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

// mp::place, mp::find
//
// The tags that choose where a process-shared object lives (every constructor without a tag
// makes an anonymous block, shared with the processes forked afterwards):
//
//   mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
//   mp::Lock lock(mp::place, block);        // builds a Lock at offset 0 of the block
//   // in another process that attached `block` by its name:
//   mp::Lock same(mp::find, block);         // uses the Lock built there
//
// An offset places several objects in one block: each type has `shared_size` (Array has
// `shared_size(n)`) and `shared_alignment`, and offsets must be multiples of the alignment.
struct place_t {
  explicit place_t() = default;
};
inline constexpr place_t place{};

struct find_t {
  explicit find_t() = default;
};
inline constexpr find_t find{};

}  // namespace concur::mp

namespace concur::detail {

// What a block holds, as its header records it.
enum class SharedKind : std::uint32_t {
  lock = 1,
  rlock = 2,
  value = 3,
  array = 4,
  raw_value = 5,
  raw_array = 6,
  queue = 7,      // mp::Queue, JoinableQueue and SimpleQueue share one layout
  semaphore = 8,  // mp::Semaphore and BoundedSemaphore
  event = 9,
  condition = 10,
  barrier = 11,
  codec_queue = 12,  // the queues of items that go through the codec
};

inline const char* shared_kind_name(std::uint32_t kind) noexcept {
  switch (static_cast<SharedKind>(kind)) {
    case SharedKind::lock:
      return "mp::Lock";
    case SharedKind::rlock:
      return "mp::RLock";
    case SharedKind::value:
      return "mp::Value";
    case SharedKind::array:
      return "mp::Array";
    case SharedKind::raw_value:
      return "mp::RawValue";
    case SharedKind::raw_array:
      return "mp::RawArray";
    case SharedKind::queue:
      return "mp::Queue";
    case SharedKind::semaphore:
      return "mp::Semaphore";
    case SharedKind::event:
      return "mp::Event";
    case SharedKind::condition:
      return "mp::Condition";
    case SharedKind::barrier:
      return "mp::Barrier";
    case SharedKind::codec_queue:
      return "mp::Queue (of encoded items)";
  }
  return "an unknown kind of object";
}

// type_fingerprint<T>()
//
// A 64-bit name for a type that is the same in every process built for the same ABI, by GCC or
// Clang alike: the FNV-1a hash of its mangled name. 0 without RTTI, where it cannot be had;
// a find checks it only when both sides have one. (Sizes and alignments alone cannot tell an
// int from a float.)
template <class T>
std::uint64_t type_fingerprint() noexcept {
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const char* c = typeid(T).name(); *c != 0; ++c) {
    hash = (hash ^ static_cast<unsigned char>(*c)) * 0x100000001b3ull;
  }
  return hash;
#else
  return 0;
#endif
}

// SharedLayout
//
// The shape of one object's block: its kind, its state's size and alignment, and its items'.
struct SharedLayout {
  SharedKind kind;
  std::size_t state_size;
  std::size_t state_align;
  std::size_t item_size = 0;
  std::size_t item_align = 1;
  std::size_t items = 0;
  // Names the item type (type_fingerprint<T>()); 0 for none, or where it cannot be named.
  std::uint64_t item_type = 0;

  static constexpr std::size_t align_up(std::size_t n, std::size_t a) noexcept {
    return (n + a - 1) / a * a;
  }
  [[nodiscard]] constexpr std::size_t state_offset() const noexcept;
  [[nodiscard]] constexpr std::size_t items_offset() const noexcept {
    return align_up(state_offset() + state_size, item_align);
  }
  // Bytes the block takes.
  [[nodiscard]] constexpr std::size_t size() const noexcept {
    return items_offset() + item_size * items;
  }
  // The alignment the block's start needs.
  [[nodiscard]] constexpr std::size_t alignment() const noexcept;
};

// SharedHeader
//
// The first 64 bytes of every block. Every field but the magic is written before the magic is
// published and never changes afterwards.
struct alignas(64) SharedHeader {
  // "concur" and the version of this header's own layout; 0 until the object is built.
  static constexpr std::uint64_t expected_magic = 0x01'72'75'63'6e'6f'63'00ull;
  // The version of the objects' layouts: raised whenever any kind's state changes its form.
  static constexpr std::uint32_t layout_version = 2;

  std::atomic<std::uint64_t> magic{0};
  std::uint32_t version = 0;
  std::uint32_t kind = 0;
  std::uint64_t state_size = 0;
  std::uint64_t state_align = 0;
  std::uint64_t item_size = 0;
  std::uint64_t item_align = 0;
  std::uint64_t items = 0;
  std::uint64_t item_type = 0;
};

static_assert(sizeof(SharedHeader) == 64, "the header's size is part of the layout");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the magic is read by other processes: no lock may stand behind it");

constexpr std::size_t SharedLayout::state_offset() const noexcept {
  return align_up(sizeof(SharedHeader), state_align);
}
constexpr std::size_t SharedLayout::alignment() const noexcept {
  std::size_t a = alignof(SharedHeader);
  if (state_align > a) a = state_align;
  if (item_align > a) a = item_align;
  return a;
}

// SharedBlock
//
// One object's block: owns an anonymous mapping, or borrows a place in a SharedMemory (which
// must outlive it). Move-only.
class SharedBlock {
 public:
  // An anonymous block, shared with the processes forked after it was made.
  explicit SharedBlock(const SharedLayout& layout) : layout_(layout), owned_(true) {
    bytes_ = layout.size();
    anonymous_ = SharedArena::instance().allocate(bytes_, layout.alignment());
    base_ = static_cast<std::byte*>(anonymous_.base);
    write_header();
  }

  // A block built at `offset` in `memory`; publish() once the state is built.
  SharedBlock(mp::place_t, mp::SharedMemory& memory, std::size_t offset, const SharedLayout& layout)
      : layout_(layout) {
    base_ = locate(memory, offset);
    if (header().magic.load(std::memory_order_acquire) != 0) {
      throw std::invalid_argument(at(offset) + " already holds " + describe() +
                                  ": use mp::find to use it");
    }
    write_header();
  }

  // The block another process built at `offset` in `memory`, checked against `layout`. An
  // array's layout may give 0 items: the block's own count is then used.
  SharedBlock(mp::find_t, mp::SharedMemory& memory, std::size_t offset, const SharedLayout& layout)
      : layout_(layout) {
    base_ = locate(memory, offset);
    check(offset);
    if (layout_.items == 0 && header().items != 0) {
      // An array found without knowing its length: the placer's length, checked to fit.
      layout_.items = static_cast<std::size_t>(header().items);
      if (header().items > (memory.buf().size() - offset) / (layout_.item_size | 1)) {
        throw std::invalid_argument(at(offset) + " holds " + describe() + " longer than the block");
      }
      (void)locate(memory, offset);
    }
  }

  SharedBlock(SharedBlock&& other) noexcept
      : layout_(other.layout_),
        base_(std::exchange(other.base_, nullptr)),
        bytes_(other.bytes_),
        owned_(other.owned_),
        anonymous_(other.anonymous_) {}
  SharedBlock& operator=(SharedBlock&&) = delete;
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;

  ~SharedBlock() {
    if (owned_ && base_ != nullptr) SharedArena::instance().release(anonymous_, bytes_);
  }

  [[nodiscard]] void* state() const noexcept { return base_ + layout_.state_offset(); }
  [[nodiscard]] void* items() const noexcept { return base_ + layout_.items_offset(); }
  [[nodiscard]] std::size_t items_count() const noexcept { return layout_.items; }

  // Marks the block built: finders may use it from now on.
  void publish() noexcept {
    header().magic.store(SharedHeader::expected_magic, std::memory_order_release);
  }

 private:
  SharedHeader& header() const noexcept {
    return *std::launder(reinterpret_cast<SharedHeader*>(base_));
  }

  static std::string at(std::size_t offset) {
    return "the shared memory at offset " + std::to_string(offset);
  }

  std::byte* locate(mp::SharedMemory& memory, std::size_t offset) const {
    const auto buffer = memory.buf();
    if (offset % layout_.alignment() != 0) {
      throw std::invalid_argument("offset " + std::to_string(offset) + " is not a multiple of " +
                                  std::to_string(layout_.alignment()) + ", the alignment of " +
                                  shared_kind_name(std::uint32_t(layout_.kind)));
    }
    if (offset > buffer.size() || buffer.size() - offset < layout_.size()) {
      throw std::invalid_argument(std::string(shared_kind_name(std::uint32_t(layout_.kind))) +
                                  " needs " + std::to_string(layout_.size()) + " bytes at offset " +
                                  std::to_string(offset) + "; the block has " +
                                  std::to_string(buffer.size()));
    }
    if (reinterpret_cast<std::uintptr_t>(buffer.data() + offset) % layout_.alignment() != 0) {
      throw std::invalid_argument("the shared memory is not aligned for this object");
    }
    return buffer.data() + offset;
  }

  void write_header() noexcept {
    auto* h = new (base_) SharedHeader;
    h->version = SharedHeader::layout_version;
    h->kind = static_cast<std::uint32_t>(layout_.kind);
    h->state_size = layout_.state_size;
    h->state_align = layout_.state_align;
    h->item_size = layout_.item_size;
    h->item_align = layout_.item_align;
    h->items = layout_.items;
    h->item_type = layout_.item_type;
  }

  // What the header there describes, in words.
  std::string describe() const {
    const SharedHeader& h = header();
    return std::string("a concur ") + shared_kind_name(h.kind) + " (layout version " +
           std::to_string(h.version) + ")";
  }

  void check(std::size_t offset) const {
    const SharedHeader& h = header();
    const std::uint64_t magic = h.magic.load(std::memory_order_acquire);
    const char* wanted = shared_kind_name(std::uint32_t(layout_.kind));
    if (magic != SharedHeader::expected_magic) {
      throw std::invalid_argument(at(offset) + " holds no concur object" +
                                  (magic == 0 ? " (not placed yet?)" : "") + "; expected " +
                                  wanted);
    }
    if (h.version != SharedHeader::layout_version) {
      throw std::invalid_argument(at(offset) + " holds " + describe() + "; this build reads " +
                                  "layout version " + std::to_string(SharedHeader::layout_version));
    }
    if (h.kind != static_cast<std::uint32_t>(layout_.kind)) {
      throw std::invalid_argument(at(offset) + " holds " + describe() + ", not " + wanted);
    }
    if (h.state_size != layout_.state_size || h.state_align != layout_.state_align ||
        h.item_size != layout_.item_size || h.item_align != layout_.item_align ||
        (layout_.items != 0 && h.items != layout_.items) ||
        (layout_.item_type != 0 && h.item_type != 0 && h.item_type != layout_.item_type)) {
      throw std::invalid_argument(at(offset) + " holds " + describe() +
                                  " whose item type, sizes or alignments differ from this "
                                  "build's (another type, length, compiler or architecture)");
    }
  }

  SharedLayout layout_;
  std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
  bool owned_ = false;
  SharedArena::Block anonymous_;  // where an owned block came from
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_SHARED_BLOCK_HPP
