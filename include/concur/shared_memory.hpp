// concur/shared_memory.hpp
//
// Python's multiprocessing.shared_memory.SharedMemory: a block of memory with a name, which any
// process may map by that name (POSIX shared memory: shm_open(3) and mmap(2)).
//
//   namespace mp = concur::mp;
//   mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096});
//   std::memcpy(block.buf().data(), "hello", 5);
//   // in another process, given block.name():
//   mp::SharedMemory same(name);                               // SharedMemory(name)
//   std::string_view text(reinterpret_cast<const char*>(same.buf().data()), 5);
//
// The block is raw bytes, as Python's is, so a concur process and a Python process can share
// one: the same names ("psm_" and 8 hex digits when none is given), the same /dev/shm objects,
// nothing added at the front.
//
// Lifecycle. A SharedMemory maps the block from construction until close() or destruction.
// The name stays until unlink(); the memory stays until the name is gone and every process has
// unmapped it. With `track` (the default), the process that created the block unlinks its name
// when its SharedMemory is destroyed, unless unlink() was called: Python's resource tracker
// does the same at the end of the program that created it, and only there (a process that
// merely attaches never unlinks, as with Python 3.13's track=False for attachers). A fork()ed
// child's copy of the object never unlinks either. Without `track`, the name stays until some
// process calls unlink(). A process killed by a signal unlinks nothing: its name stays in
// /dev/shm until unlinked (Python's tracker, a process of its own, would unlink it).
//
// Errors, as Python raises them: std::invalid_argument for a size of 0 when creating, no name
// when attaching, or attaching to an empty block (ValueError); std::system_error with the
// errno from the system (OSError): EEXIST when creating a name that exists, ENOENT when
// attaching to or unlinking a name that does not, EINVAL for a name with a '/' after the first
// character, EACCES, ENOMEM. UsageError for buf() after close().
//
// Memory ordering: none of its own. Bytes written through one mapping are in the same memory as
// every other mapping's; threads and processes that share them order their accesses with
// atomics or the process-shared primitives placed in the block.
//
// POSIX only.

#ifndef CONCUR_SHARED_MEMORY_HPP
#define CONCUR_SHARED_MEMORY_HPP

#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur/shared_memory.hpp needs a POSIX system (shm_open)"
#endif

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "concur/detail/posix_io.hpp"
#include "concur/errors.hpp"

namespace concur::mp {

// SharedMemoryOptions
//
// Python's SharedMemory(name=None, create=False, size=0, *, track=True), as designated
// initializers: SharedMemory(SharedMemoryOptions{.create = true, .size = 1024}).
struct SharedMemoryOptions {
  // The block's name, without a leading '/'; none (only with `create`): a new unique name.
  std::optional<std::string> name = std::nullopt;
  // Make a new block; the name must not exist yet.
  bool create = false;
  // The new block's size in bytes; ignored when attaching.
  std::size_t size = 0;
  // The process that creates the block unlinks its name when its object is destroyed.
  bool track = true;
};

// SharedMemory
//
// A mapping of one named block (see the header comment). Movable, not copyable: each object
// unmaps what it mapped once.
class SharedMemory {
 public:
  // SharedMemory(options)
  //
  // Creates a block of `options.size` bytes, zero-filled (`create`), under `options.name` or a
  // new unique name; or attaches to the block named `options.name`, whatever its size. See the
  // header comment for what throws.
  explicit SharedMemory(const SharedMemoryOptions& options)
      : creator_(options.create ? ::getpid() : 0), track_(options.track) {
    if (options.create && options.size == 0) {
      throw std::invalid_argument("'size' must be a positive number different from zero");
    }
    if (!options.create && !options.name) {
      throw std::invalid_argument("'name' can only be None if create=True");
    }
    if (options.create && options.size > std::size_t(std::numeric_limits<off_t>::max())) {
      detail::throw_system_error(EFBIG, "ftruncate");
    }
    detail::UniqueFd fd = open(options);
    try {
      map(fd.get(), options);
    } catch (...) {
      if (options.create) (void)::shm_unlink(path_.c_str());  // as Python does: leave nothing
      throw;
    }
  }

  // SharedMemory(name)
  //
  // Attaches to the block named `name`: SharedMemory(SharedMemoryOptions{.name = name}).
  explicit SharedMemory(std::string name)
      : SharedMemory(SharedMemoryOptions{.name = std::move(name)}) {}

  SharedMemory(SharedMemory&& other) noexcept
      : path_(std::move(other.path_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(other.size_),
        creator_(std::exchange(other.creator_, 0)),
        track_(other.track_),
        unlinked_(other.unlinked_) {}
  SharedMemory& operator=(SharedMemory&& other) noexcept {
    if (this != &other) {
      release();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = other.size_;
      creator_ = std::exchange(other.creator_, 0);
      track_ = other.track_;
      unlinked_ = other.unlinked_;
    }
    return *this;
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  // Unmaps the block; with `track`, in the process that created it, also unlinks the name
  // (unless unlink() was called).
  ~SharedMemory() { release(); }

  // SharedMemory::name()
  //
  // The block's name, without the leading '/' (as Python reports it): what another process
  // passes to attach.
  [[nodiscard]] std::string name() const { return path_.empty() ? path_ : path_.substr(1); }

  // SharedMemory::size()
  //
  // The block's size in bytes: the size it was created with, or found when attached. It stays
  // after close(), as Python's does.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // SharedMemory::buf()
  //
  // The block's bytes (Python's memoryview `buf`), valid until close() or destruction. Throws
  // UsageError after close().
  [[nodiscard]] std::span<std::byte> buf() const {
    if (data_ == nullptr) throw UsageError("SharedMemory: buf() after close()");
    return {static_cast<std::byte*>(data_), size_};
  }

  // SharedMemory::close()
  //
  // Unmaps the block in this process; the block and its name stay. Closing twice does nothing.
  void close() noexcept {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
  }

  // SharedMemory::unlink()
  //
  // Removes the name, so that no other process can attach; the memory goes when every process
  // that maps it has closed it. Python's unlink(): call it once, in one process. Throws
  // std::system_error (ENOENT when the name is already gone).
  void unlink() {
    unlinked_ = true;  // tried: the destructor does not try again
    if (::shm_unlink(path_.c_str()) != 0) detail::throw_errno("shm_unlink");
  }

 private:
  // Python's names: "/psm_" and 8 hex digits (4 random bytes), 14 characters in all.
  static std::string unique_path() {
    static thread_local std::mt19937 random{std::random_device{}()};
    char text[16];
    std::snprintf(text, sizeof text, "/psm_%08x", static_cast<unsigned>(random()));
    return text;
  }

  // Opens (or creates) the block's object and sets path_. The descriptor is only needed until
  // the block is mapped.
  detail::UniqueFd open(const SharedMemoryOptions& options) {
    const int flags = options.create ? O_CREAT | O_EXCL | O_RDWR : O_RDWR;
    for (;;) {
      path_ = options.name ? "/" + *options.name : unique_path();
      const int fd = ::shm_open(path_.c_str(), flags, 0600);  // close-on-exec, as POSIX says
      if (fd >= 0) return detail::UniqueFd(fd);
      if (errno == EEXIST && !options.name) continue;  // a new name was taken: draw another
      detail::throw_errno("shm_open");
    }
  }

  // Sizes a new block, then maps the whole block.
  void map(int fd, const SharedMemoryOptions& options) {
    if (options.create) {
      while (::ftruncate(fd, static_cast<off_t>(options.size)) != 0) {
        if (errno != EINTR) detail::throw_errno("ftruncate");
      }
    }
    struct stat status {};
    if (::fstat(fd, &status) != 0) detail::throw_errno("fstat");
    size_ = static_cast<std::size_t>(status.st_size);
    if (size_ == 0) throw std::invalid_argument("cannot mmap an empty file");
    void* data = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) detail::throw_errno("mmap");
    data_ = data;
  }

  void release() noexcept {
    close();
    if (track_ && creator_ != 0 && creator_ == ::getpid() && !unlinked_) {
      (void)::shm_unlink(path_.c_str());
    }
    creator_ = 0;
  }

  std::string path_;  // with the leading '/', as shm_open() takes it
  void* data_ = nullptr;
  std::size_t size_ = 0;
  pid_t creator_;  // the process that created the block; 0 when attached (or moved from)
  bool track_;
  bool unlinked_ = false;
};

}  // namespace concur::mp

#endif  // CONCUR_SHARED_MEMORY_HPP
