// concur/detail/executor/process_protocol.hpp
//
// What a process pool sends to its workers and back (shared by concur::mp::Pool and
// concur::ProcessPoolExecutor), and which functions a worker may run.
//
// A worker is a fork() of the parent, so the parent's code is already there: a task names its
// function by address. A task's function must therefore be a function pointer or a callable
// type with no state (std::is_empty_v, default-constructible: a lambda without captures), which
// the worker makes anew; anything else would need its state sent, and stops the compilation
// with a message saying so. Arguments and results go through concur's codec (concur/codec.hpp).
//
// Wire format. Both directions use Python's Connection framing (a 4-byte big-endian length, or
// -1 and an 8-byte length), one frame holding a batch of records, so that many small tasks cost
// one write and one read. All integers are little-endian.
//   task record   (parent -> worker): u64 id, u64 invoker address, u64 function address (0 for
//                 a stateless type), u64 payload length, payload = u64 item count, then each
//                 item's encoding.
//   result record (worker -> parent): u64 id, u8 status (0: results, 1: an exception, 2: the
//                 initializer failed), u32 run time in microseconds (saturated), u64 payload
//                 length, payload = each result's encoding (nothing for void), or for an
//                 exception the codec encoding of two strings: its type name and its what().
// The invoker is an instantiation of run_items<> for the task's function and argument types: the
// worker calls it by address, as it calls the function.
//
// POSIX only.

#ifndef CONCUR_DETAIL_EXECUTOR_PROCESS_PROTOCOL_HPP
#define CONCUR_DETAIL_EXECUTOR_PROCESS_PROTOCOL_HPP

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "concur/codec.hpp"
#include "concur/detail/names.hpp"
#include "concur/errors.hpp"

namespace concur {

// RemoteError
//
// A task run by a process pool's worker threw: the parent gets this, carrying the text of the
// exception's what() and its type's name (demangled), since a C++ exception object cannot cross
// a process boundary. Python re-raises the original exception type (it pickles it); concur
// raises RemoteError for every type, a concur::Error (so a std::runtime_error) whose what() is
// the original what(). Python's multiprocessing.pool.RemoteTraceback plays the same part.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, const std::string& message)
      : Error(message), type_name_(std::move(type_name)) {}

  // RemoteError::type_name()
  //
  // The name of the exception's type in the worker ("std::invalid_argument"), or a description
  // for an exception that was not derived from std::exception.
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

namespace detail {

// Whether a worker process can run an F without being sent any state: a function pointer, or
// a class type with no state that it can make anew.
template <class F>
inline constexpr bool is_process_callable_v =
    (std::is_pointer_v<std::decay_t<F>> &&
     std::is_function_v<std::remove_pointer_t<std::decay_t<F>>>) ||
    (std::is_class_v<std::decay_t<F>> && std::is_empty_v<std::decay_t<F>> &&
     std::is_default_constructible_v<std::decay_t<F>>);

// One static_assert with a message for each way a task can be unfit for a process pool, at the
// call that submits it (rather than pages of template errors).
template <class F>
constexpr bool check_process_callable() {
  static_assert(is_process_callable_v<F>,
                "a process pool runs its task in a forked worker, which cannot receive code or "
                "captured state: pass a function pointer or a callable type with no state (a "
                "lambda without captures); send any data as arguments");
  return is_process_callable_v<F>;
}

template <class T>
constexpr bool check_process_value() {
  static_assert(has_codec<T>,
                "a process pool sends task arguments and results through concur's codec, and "
                "this type has none: use a type concur can encode (see concur/codec.hpp) or "
                "specialise concur::codec for it");
  return has_codec<T>;
}

// The function a worker runs for a task: decodes `payload` (an item count and the items), calls
// the function named by `fn` on each item, appends each result's encoding to `out` (after what
// `out` already holds, which it leaves alone). On an exception, what it appended is the
// exception's type name and text instead; returns false then.
using Invoker = bool (*)(std::uint64_t fn, std::string_view payload, Writer& out);

template <class F>
decltype(auto) process_callable(std::uint64_t fn) {
  using D = std::decay_t<F>;
  if constexpr (std::is_pointer_v<D>) {
    return reinterpret_cast<D>(static_cast<std::uintptr_t>(fn));
  } else {
    (void)fn;
    return D{};
  }
}

template <class F>
std::uint64_t process_callable_bits(const F& f) {
  using D = std::decay_t<F>;
  if constexpr (std::is_pointer_v<D>) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(static_cast<D>(f)));
  } else {
    (void)f;
    return 0;
  }
}

// The result type of a task calling F on an Item (unpacked when Unpack: starmap, apply).
template <class F, class Item, bool Unpack>
struct process_result;
template <class F, class Item>
struct process_result<F, Item, false> {
  using type = std::decay_t<std::invoke_result_t<std::decay_t<F>&, Item>>;
};
template <class F, class Item>
struct process_result<F, Item, true> {
  using type =
      std::decay_t<decltype(std::apply(std::declval<std::decay_t<F>&>(), std::declval<Item>()))>;
};

// The type an argument travels as: its decayed type, but a C string as a std::string (its
// pointer would mean nothing in the worker).
template <class T>
struct sent {
  using type = std::decay_t<T>;
};
template <class T>
requires(std::is_same_v<std::decay_t<T>, const char*> ||
         std::is_same_v<std::decay_t<T>, char*>) struct sent<T> {
  using type = std::string;
};
template <class T>
using sent_t = typename sent<T>::type;
template <class F, class Item, bool Unpack>
using process_result_t = typename process_result<F, Item, Unpack>::type;

// Appends the exception in flight as a failure payload.
inline void encode_current_exception(Writer& out) {
  std::string type = "unknown exception (not derived from std::exception)";
  std::string text = type;
  try {
    throw;
  } catch (const std::exception& e) {
    type = demangle(typeid(e).name());
    text = e.what();
  } catch (...) {
#if defined(__GNUG__)
    if (const std::type_info* t = abi::__cxa_current_exception_type()) {
      type = demangle(t->name()) + " (not derived from std::exception)";
      text = type;
    }
#endif
  }
  out.put(type);
  out.put(text);
}

// TaskFailure
//
// Why a task has no result, as plain data: each waiter throws a fresh exception made from it,
// so that no exception object is shared between threads (the I/O thread that learns of the
// failure and each thread that waits for the result each have their own).
struct TaskFailure {
  enum class Kind { remote, broken, cancelled, system, other };
  Kind kind = Kind::other;
  std::string type_name;  // remote: the exception's type in the worker
  std::string message;
  int code = 0;  // system: the errno value

  [[noreturn]] void raise() const {
    switch (kind) {
      case Kind::remote:
        throw RemoteError(type_name, message);
      case Kind::broken:
        throw BrokenProcessPool(message);
      case Kind::cancelled:
        throw CancelledError();
      case Kind::system:
        throw std::system_error(code, std::generic_category(), message);
      case Kind::other:
        break;
    }
    throw Error(message);
  }
  std::exception_ptr make_exception_ptr() const {
    try {
      raise();
    } catch (...) {
      return std::current_exception();
    }
  }

  // The exception in flight (in the parent: a result that could not be decoded, or memory).
  static TaskFailure current() noexcept {
    TaskFailure failure;
    try {
      throw;
    } catch (const std::system_error& e) {
      failure.kind = Kind::system;
      failure.code = e.code().value();
      failure.message = e.what();
    } catch (const std::exception& e) {
      failure.message = e.what();
    } catch (...) {
      failure.message = "unknown exception";
    }
    return failure;
  }
  static TaskFailure broken(std::string message) {
    TaskFailure failure;
    failure.kind = Kind::broken;
    failure.message = std::move(message);
    return failure;
  }
};

// Decodes a failure payload (a worker's exception).
inline TaskFailure decode_remote_error(std::string_view payload) {
  TaskFailure failure;
  try {
    Reader in(payload);
    failure.type_name = in.get<std::string>();
    failure.message = in.get<std::string>();
    failure.kind = TaskFailure::Kind::remote;
  } catch (...) {
    failure = TaskFailure::current();
  }
  return failure;
}

// Whether a T's codec encoding is its bytes (the codec's raw-bytes codec, or a program's
// bytes_codec): an array of them encodes as one block, copied whole.
template <class T>
inline constexpr bool is_bulk_v = uses_raw_codec<T>;

// Calls f on one item, unpacked when Unpack.
template <bool Unpack, class Fn, class Item>
decltype(auto) call_item(Fn&& f, Item&& item) {
  if constexpr (Unpack) {
    return std::apply(std::forward<Fn>(f), std::forward<Item>(item));
  } else {
    return std::invoke(std::forward<Fn>(f), std::forward<Item>(item));
  }
}

// Results of a bulk type, gathered in a small array and appended a block at a time (one
// append per block rather than one per result).
template <class R>
class BulkResults {
 public:
  explicit BulkResults(Writer& out) noexcept : out_(out) {}
  void push(const R& value) {
    std::memcpy(block_ + used_ * sizeof(R), &value, sizeof(R));
    if (++used_ == per_block) flush();
  }
  void flush() {
    out_.put_bytes(block_, used_ * sizeof(R));
    used_ = 0;
  }

 private:
  static constexpr std::size_t per_block = sizeof(R) >= 4096 ? 1 : 4096 / sizeof(R);
  Writer& out_;
  std::size_t used_ = 0;
  alignas(R) unsigned char block_[per_block * sizeof(R)];
};

// Runs the task on `count` items read by next_item(), appending each result to `out`.
template <class F, class Item, bool Unpack, class Next>
void run_each(std::uint64_t fn, std::uint64_t count, Next next_item, Writer& out) {
  using R = process_result_t<F, Item, Unpack>;
  auto&& f = process_callable<F>(fn);
  if constexpr (std::is_void_v<R>) {
    for (std::uint64_t i = 0; i < count; ++i) call_item<Unpack>(f, next_item());
  } else if constexpr (is_bulk_v<R>) {
    out.reserve(static_cast<std::size_t>(count) * sizeof(R));
    BulkResults<R> results(out);
    for (std::uint64_t i = 0; i < count; ++i) {
      results.push(static_cast<const R&>(call_item<Unpack>(f, next_item())));
    }
    results.flush();
  } else {
    for (std::uint64_t i = 0; i < count; ++i) {
      out.put(static_cast<const R&>(call_item<Unpack>(f, next_item())));
    }
  }
}

// The invoker: decodes the items (a bulk type straight from the payload's bytes), runs the
// task on each, and appends the results to `out` after what it already holds. On an exception
// the results appended so far are dropped and the exception's description takes their place.
template <class F, class Item, bool Unpack>
bool run_items(std::uint64_t fn, std::string_view payload, Writer& out) noexcept {
  const std::size_t start = out.size();
  try {
    try {
      Reader in(payload);
      const std::uint64_t count = in.get<std::uint64_t>();
      if constexpr (is_bulk_v<Item>) {
        if (count > in.remaining() / sizeof(Item) || in.remaining() != count * sizeof(Item)) {
          Reader::malformed("task items do not match their count");
        }
        const char* at = payload.data() + sizeof(std::uint64_t);
        run_each<F, Item, Unpack>(
            fn, count,
            [&at] {
              Item item;
              std::memcpy(&item, at, sizeof(Item));
              at += sizeof(Item);
              return item;
            },
            out);
      } else {
        run_each<F, Item, Unpack>(
            fn, count, [&in] { return in.get<Item>(); }, out);
      }
      return true;
    } catch (...) {
      out.truncate(start);
      encode_current_exception(out);
      return false;
    }
  } catch (...) {  // out of memory while describing the exception
    out.truncate(start);
    return false;
  }
}

// advise_huge_pages(data, size)
//
// Asks the kernel to back the whole 2 MiB pages inside [data, data + size) with huge pages
// (Linux's MADV_HUGEPAGE; a no-op elsewhere, for small buffers, or when refused). A process
// pool moves megabytes of items and results through buffers that are new, or copy-on-write
// after a fork(): on small pages every 4 KiB of them costs a page fault when first written,
// many microseconds each on a virtual machine, which came to more than all the copying.
inline void advise_huge_pages(const void* data, std::size_t size) noexcept {
#if defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  if (size < huge) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + huge - 1) & ~(huge - 1);
  const std::uintptr_t last = (begin + size) & ~(huge - 1);
  if (last > first) {
    (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)size;
#endif
}

// Bytes from allocate_bytes(): 2 MiB-aligned whole huge pages when big, else plain; or a
// mapping of their own, `mapped` bytes long (BlockCache's blocks, block_cache.hpp).
inline constexpr std::size_t huge_page_size = std::size_t{2} << 20;
struct BytesDeleter {
  bool aligned = false;
  std::size_t mapped = 0;
  void operator()(char* data) const noexcept {
    if (mapped != 0) {
      (void)::munmap(data, mapped);
    } else if (aligned) {
      ::operator delete[](data, std::align_val_t{huge_page_size});
    } else {
      delete[] data;
    }
  }
};
using Bytes = std::unique_ptr<char[], BytesDeleter>;

// advise_fresh_pages(data, size)
//
// For a big buffer whose contents do not matter yet (capacity just reserved): asks for huge
// pages (advise_huge_pages), and drops the whole pages it holds (MADV_DONTNEED), so that
// writing it faults in fresh pages, huge where they can be, instead of copying page by page
// what a fork() left shared (memory the heap takes back after a fork is copy-on-write: every
// 4 KiB written is then a fault, a copy and a TLB flush on every CPU). Only pages entirely
// inside the buffer are touched; the allocator's own bytes around it are not.
inline void advise_fresh_pages(void* data, std::size_t size) noexcept {
#if defined(MADV_DONTNEED) && defined(MADV_HUGEPAGE)
  if (size < (std::size_t{1} << 20)) return;
  advise_huge_pages(data, size);
  constexpr std::uintptr_t page = 4096;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + page - 1) & ~(page - 1);
  const std::uintptr_t last = (begin + size) & ~(page - 1);
  if (last > first) (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
#else
  (void)data;
  (void)size;
#endif
}

// allocate_bytes(size)
//
// Uninitialised bytes, untouched (so they cost nothing until written): at least 1 MiB is
// rounded up to whole 2 MiB huge pages, aligned to them and advised as such, so that every
// part of the buffer can be a huge page; `size` is updated to what was allocated.
inline Bytes allocate_bytes(std::size_t& size) {
  if (size >= (std::size_t{1} << 20)) {
    size = (size + huge_page_size - 1) & ~(huge_page_size - 1);
    auto* data = static_cast<char*>(::operator new[](size, std::align_val_t{huge_page_size}));
    advise_fresh_pages(data, size);  // may be heap memory a fork() left shared
    return Bytes(data, BytesDeleter{true});
  }
  return Bytes(new char[size], BytesDeleter{false});
}

// Reserves room for `size` bytes in `bytes`, on huge pages when that is big.
inline void reserve_huge(std::string& bytes, std::size_t size) {
  if (bytes.capacity() >= size) return;
  bytes.reserve(size);
  advise_fresh_pages(bytes.data() + bytes.size(), bytes.capacity() - bytes.size());
}

// Little-endian integers in a byte string.
template <class U>
void put_le(std::string& out, U value) {
  char raw[sizeof(U)];
  for (std::size_t i = 0; i < sizeof(U); ++i) raw[i] = static_cast<char>(value >> (8 * i));
  out.append(raw, sizeof raw);
}
template <class U>
U get_le(const char* data) noexcept {
  U value = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    value |= static_cast<U>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  return value;
}

inline constexpr std::size_t task_header_size = 32;
inline constexpr std::size_t result_header_size = 21;
inline constexpr std::uint8_t result_ok = 0;
inline constexpr std::uint8_t result_exception = 1;
inline constexpr std::uint8_t result_init_failed = 2;

// Bytes owned here, or a view into a block that a shared owner keeps alive (the chunks of a
// map share one encoded block; a big payload is sent from it, not copied).
struct SharedBytes {
  std::string own;                   // when `keep` is empty
  std::shared_ptr<const void> keep;  // or `view`, which lies in the block `keep` keeps alive
  std::string_view view;

  [[nodiscard]] std::string_view bytes() const noexcept {
    if (keep) return view;
    return own;
  }
};

// A task as the parent queues it: the invoker and function, and its payload (the items): its
// own, or a part of a block that it shares with the other chunks of its map (one buffer for
// all of them, encoded in one pass).
struct TaskCall {
  Invoker invoker = nullptr;
  std::uint64_t fn = 0;
  SharedBytes payload;

  [[nodiscard]] std::string_view bytes() const noexcept { return payload.bytes(); }
};

// Appends the header of the task record for task `id` to `out` (its payload follows).
inline void append_task_header(std::string& out, std::uint64_t id, const TaskCall& call) {
  put_le<std::uint64_t>(out, id);
  put_le<std::uint64_t>(out,
                        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(call.invoker)));
  put_le<std::uint64_t>(out, call.fn);
  put_le<std::uint64_t>(out, call.bytes().size());
}

// Appends a task payload for the `count` items from `first` to `out`: the count, then the
// items (a bulk Item in contiguous memory as one block). Returns the iterator past them.
template <class Item, class It>
It encode_items(Writer& out, It first, std::size_t count) {
  out.put(static_cast<std::uint64_t>(count));
  if constexpr (is_bulk_v<Item> && std::contiguous_iterator<It> &&
                std::is_same_v<std::remove_cv_t<std::iter_value_t<It>>, Item>) {
    if (count > 0) out.put_bytes(std::to_address(first), count * sizeof(Item));
    return first + static_cast<std::iter_difference_t<It>>(count);
  } else {
    for (std::size_t i = 0; i < count; ++i, ++first) out.put(static_cast<const Item&>(*first));
    return first;
  }
}

// The fewest bytes the payloads of `count` items in `tasks` tasks take (exact for bulk items).
template <class Item>
std::size_t payload_bytes(std::size_t count, std::size_t tasks) {
  return tasks * sizeof(std::uint64_t) + count * std::max<std::size_t>(min_encoded_size<Item>(), 1);
}

// Builds the call for one item.
template <class F, class Item, bool Unpack>
TaskCall make_single_call(std::uint64_t fn, const Item& item) {
  TaskCall call;
  call.invoker = &run_items<F, Item, Unpack>;
  call.fn = fn;
  Writer out;
  out.put(std::uint64_t{1});
  out.put(item);
  call.payload.own = out.take();
  return call;
}

// Copies `count` results of a bulk type R from a result payload to `to` (uninitialised
// storage is fine: R is trivially copyable); throws when the payload does not hold exactly
// that many.
template <class R>
void copy_bulk_results(std::string_view payload, std::size_t count, void* to) {
  if (count > payload.size() / sizeof(R) || payload.size() != count * sizeof(R)) {
    Reader::malformed("results do not match their count");
  }
  if (count > 0) std::memcpy(to, payload.data(), count * sizeof(R));
}

// Decodes `count` results of type R from a result payload (R may be void: nothing to decode).
template <class R, class Sink>
void decode_results(std::string_view payload, std::size_t count, Sink&& sink) {
  Reader in(payload);
  for (std::size_t i = 0; i < count; ++i) {
    if constexpr (std::is_void_v<R>) {
      sink(i);
    } else {
      sink(i, in.get<R>());
    }
  }
}

}  // namespace detail
}  // namespace concur

#endif  // CONCUR_DETAIL_EXECUTOR_PROCESS_PROTOCOL_HPP
