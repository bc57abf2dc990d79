// concur/codec.hpp
//
// How Connection::send(x) and recv<T>() turn values into bytes and back. Built in: trivially
// copyable types, std::string, std::vector, std::deque, std::list, std::array, std::map,
// std::multimap, std::unordered_map, std::set, std::multiset, std::unordered_set, std::pair,
// std::tuple and std::optional, nested freely. Other types join in by specialising
// concur::codec:
//
//   struct Point { double x, y; std::string label; };
//   template <> struct concur::codec<Point> {
//     static void encode(concur::Writer& out, const Point& p) {
//       out.put(p.x); out.put(p.y); out.put(p.label);
//     }
//     static Point decode(concur::Reader& in) {
//       Point p;
//       p.x = in.get<double>(); p.y = in.get<double>(); p.label = in.get<std::string>();
//       return p;
//     }
//   };
//
// A trivially copyable type whose bytes hold a pointer (a raw pointer, std::string_view,
// std::span, or an aggregate with such a field, found field by field) has no codec: its bytes
// mean nothing in another process, and a received one would point where the sender chose.
// Sending one stops the compilation with a message saying so; send an owning type instead
// (std::string, std::vector), or opt the type in when its bytes do make sense there:
//
//   template <> struct concur::codec<Handle> : concur::bytes_codec<Handle> {};
//
// (A class with private members cannot be looked into: one that hides a pointer, other than
// the standard views, is sent as bytes; give it a codec of its own.) A type with no codec at
// all stops the compilation with a message saying how to add one. has_codec<T> tells whether
// T has one.
//
// The encoding is concur's own (not Python's pickle; byte messages are what Python and concur
// share): a trivially copyable value is its bytes (see above for pointers), a bool one checked
// byte, a container its element count (8 bytes, little-endian) and then its elements, a pair,
// tuple or array its parts in order, an optional a checked flag byte and its value. It is meant for
// processes of the same program on the same machine. The decoder trusts nothing: every length
// is checked against the bytes that actually arrived before anything is read or allocated, and
// a malformed message throws std::system_error(EBADMSG).

#ifndef CONCUR_CODEC_HPP
#define CONCUR_CODEC_HPP

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "concur/errors.hpp"

namespace concur {

// codec
//
// The customization point: specialise it with static encode(Writer&, const T&) and
// static T decode(Reader&) for a type concur does not know.
template <class T, class Enable = void>
struct codec;

class Writer;
class Reader;

// has_codec<T>
//
// Whether concur can send and receive a T (built in, or through a specialisation of codec).
// Containers, pairs, tuples, arrays and optionals have one when their parts do.
template <class T>
concept has_codec = requires(Writer& out, Reader& in, const T& value) {
  codec<T>::encode(out, value);
  codec<T>::decode(in);
};

namespace detail {

template <class T>
constexpr bool raw_bytes_safe();

// Explains, at the call that needs it, why a type cannot be sent (issue 12 item 19): one
// static_assert with a message, instead of pages about an incomplete codec<T>.
template <class T>
constexpr bool check_codec() {
  constexpr bool holds_pointer = std::is_trivially_copyable_v<T> && !raw_bytes_safe<T>();
  static_assert(has_codec<T> || !holds_pointer,
                "concur cannot send this type: its bytes hold a pointer (a raw pointer, "
                "std::string_view, std::span, or a member of such a type), which means nothing "
                "in another process. Send an owning type (std::string, std::vector), or opt the "
                "type in if its bytes do make sense there: template <> struct "
                "concur::codec<T> : concur::bytes_codec<T> {};");
  static_assert(has_codec<T> || holds_pointer,
                "concur has no codec for this type (or for a type inside it). Add one: "
                "template <> struct concur::codec<T> { static void encode(concur::Writer&, "
                "const T&); static T decode(concur::Reader&); }; (see concur/codec.hpp)");
  return has_codec<T>;
}

}  // namespace detail

// Writer
//
// Appends encoded values to a byte string.
class Writer {
 public:
  Writer() = default;

  // Writer(bytes)
  //
  // Appends after `bytes` (a buffer reused from an earlier take(), or a header written first).
  explicit Writer(std::string bytes) noexcept : bytes_(std::move(bytes)) {}

  // Writer::put(value)
  //
  // Encodes `value` with its codec.
  template <class T>
  void put(const T& value) {
    using U = std::remove_cv_t<T>;
    if constexpr (detail::check_codec<U>()) codec<U>::encode(*this, value);
  }

  // Writer::put_bytes(data, size)
  //
  // Appends raw bytes.
  void put_bytes(const void* data, std::size_t size) {
    bytes_.append(static_cast<const char*>(data), size);
  }

  // Writer::put_count(n)
  //
  // Appends an element count (8 bytes, little-endian).
  void put_count(std::uint64_t n) {
    unsigned char raw[8];
    for (int i = 0; i < 8; ++i) raw[i] = static_cast<unsigned char>(n >> (8 * i));
    put_bytes(raw, sizeof raw);
  }

  // Writer::reserve(more)
  //
  // Makes room for `more` bytes beyond the encoding so far, so that the puts that follow do
  // not reallocate (a bulk encoder that knows its size).
  void reserve(std::size_t more) { bytes_.reserve(bytes_.size() + more); }

  // Writer::size(), truncate(size)
  //
  // The bytes written so far; truncate() drops every byte after the first `size` (to undo the
  // encoding of a value that failed part way).
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }
  void truncate(std::size_t size) noexcept {
    if (size < bytes_.size()) bytes_.resize(size);
  }

  // Writer::bytes()
  //
  // The encoding so far.
  [[nodiscard]] const std::string& bytes() const noexcept { return bytes_; }
  [[nodiscard]] std::string take() noexcept { return std::move(bytes_); }

 private:
  std::string bytes_;
};

// Reader
//
// Decodes values from a byte string, refusing to read past its end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) noexcept : bytes_(bytes) {}

  // Reader::get<T>()
  //
  // Decodes a T with its codec.
  template <class T>
  T get() {
    using U = std::remove_cv_t<T>;
    if constexpr (detail::check_codec<U>()) {
      return codec<U>::decode(*this);
    } else {
      std::terminate();  // not reached: check_codec has stopped the compilation
    }
  }

  // Reader::get_bytes(data, size)
  //
  // Copies the next `size` raw bytes out; throws when fewer are left.
  void get_bytes(void* data, std::size_t size) {
    require(size);
    std::memcpy(data, bytes_.data() + position_, size);
    position_ += size;
  }

  // The most elements that encode to no bytes at all (std::tuple<>, a user type whose codec
  // writes nothing) that one message may hold: without a limit, a hostile count of them could
  // make the decoder loop and allocate without bound.
  static constexpr std::size_t max_empty_elements = std::size_t{1} << 20;

  // Reader::get_count(smallest_element)
  //
  // Reads an element count and checks it against what is left: each element takes at least
  // `smallest_element` bytes, so a hostile count cannot make the decoder allocate more than the
  // message's own size. With `smallest_element` 0 (elements that may take no bytes), the count
  // may exceed the bytes left by at most what remains of max_empty_elements; the container's
  // decoder then reports each element that took no bytes to empty_element().
  std::size_t get_count(std::size_t smallest_element) {
    unsigned char raw[8];
    get_bytes(raw, sizeof raw);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(raw[i]) << (8 * i);
    if (smallest_element > 0 ? n > remaining() / smallest_element : n > remaining() + empty_left_) {
      malformed("element count larger than the message");
    }
    return static_cast<std::size_t>(n);
  }

  // Reader::empty_element()
  //
  // Counts one decoded element that took no bytes against max_empty_elements; throws once the
  // message has used them up.
  void empty_element() {
    if (empty_left_ == 0) malformed("too many elements that take no bytes");
    --empty_left_;
  }

  // Reader::remaining()
  //
  // Bytes not yet decoded.
  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - position_; }

  // Reader::malformed(what)
  //
  // Throws the decoder's error.
  [[noreturn]] static void malformed(const char* what) {
    throw std::system_error(EBADMSG, std::generic_category(), what);
  }

 private:
  void require(std::size_t size) const {
    if (size > remaining()) malformed("message shorter than its contents");
  }

  std::string_view bytes_;
  std::size_t position_ = 0;
  std::size_t empty_left_ = max_empty_elements;
};

namespace detail {

// The fewest bytes an encoded T can take (a guard for counts; never more than the truth).
template <class T>
struct is_std_composite : std::false_type {};
template <class A, class B>
struct is_std_composite<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct is_std_composite<std::tuple<Ts...>> : std::true_type {};
template <class T>
struct is_std_composite<std::optional<T>> : std::true_type {};
template <class T, std::size_t N>
struct is_std_composite<std::array<T, N>> : std::true_type {};

// Views: classes that are known to hold a pointer in their bytes.
template <class T>
struct is_view : std::false_type {};
template <class C, class Tr>
struct is_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t N>
struct is_view<std::span<T, N>> : std::true_type {};

// Field-by-field inspection of aggregates (the idea of Boost.PFR: an aggregate's fields are
// found by brace-initialising it from objects that convert to anything). Here the probes
// convert only to types that are not aggregates, so brace elision opens every aggregate field
// (a struct, an array, a std::array) down to its scalar leaves: `leaf` counts them, and
// `safe_leaf`, which converts only to leaves whose bytes hold no pointer, initialises the same
// number exactly when none of them does. (Probes that converted to aggregates would let an
// unsafe one be opened by elision and its pointer left to default initialisation.)
struct leaf {
  template <class U>
  requires(!std::is_aggregate_v<U>) operator U()
      const noexcept;  // never defined: unevaluated use only
};
struct safe_leaf {
  template <class U>
  requires(!std::is_aggregate_v<U> && raw_bytes_safe<U>()) operator U() const noexcept;
};
template <class T, class Probe, std::size_t... I>
constexpr bool brace_initialises(std::index_sequence<I...>) {
  return requires {
    T{(static_cast<void>(I), Probe{})...};
  };
}
// Aggregates with more leaves than this are not inspected (a large buffer would cost the
// compiler dearly); they count as safe.
inline constexpr std::size_t max_inspected_leaves = 128;
template <class T, std::size_t N = 0>
constexpr std::size_t leaf_count() {
  if constexpr (N > max_inspected_leaves ||
                !brace_initialises<T, leaf>(std::make_index_sequence<N + 1>{})) {
    return N;
  } else {
    return leaf_count<T, N + 1>();
  }
}

// Whether T's bytes hold no pointer that concur can see: not a pointer, member pointer,
// nullptr_t or view, and, for an array or an aggregate, none in its elements or fields. A class
// with private members cannot be looked into; it counts as safe unless it is a known view, and
// so does an aggregate of more than max_inspected_leaves scalars.
template <class T>
constexpr bool raw_bytes_safe() {
  if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_null_pointer_v<T> ||
                is_view<std::remove_cv_t<T>>::value) {
    return false;
  } else if constexpr (std::is_array_v<T>) {
    return raw_bytes_safe<std::remove_all_extents_t<T>>();
  } else if constexpr (std::is_class_v<T> && std::is_aggregate_v<T>) {
    constexpr std::size_t leaves = leaf_count<T>();
    if constexpr (leaves > max_inspected_leaves) {
      return true;
    } else {
      return brace_initialises<T, safe_leaf>(std::make_index_sequence<leaves>{});
    }
  } else {
    return true;
  }
}

// The types sent as their raw bytes: trivially copyable, and neither a type holding a pointer
// (meaningless in another process: see raw_bytes_safe), nor bool (not every byte is a bool),
// nor a standard composite (encoded part by part, so that a hostile byte cannot forge an
// optional's flag).
template <class T>
inline constexpr bool is_raw = std::is_trivially_copyable_v<T> && !std::is_same_v<T, bool> &&
                               !is_std_composite<T>::value && raw_bytes_safe<T>();

template <class T>
struct is_basic_string : std::false_type {};
template <class C, class Tr, class A>
struct is_basic_string<std::basic_string<C, Tr, A>> : std::true_type {};

template <class T>
struct is_sequence;
template <class T>
struct is_associative;

// The fewest bytes an encoded T can take: a guard for counts, so never more than the truth
// (0 where it cannot be known: a user's codec may write nothing, as std::tuple<> does).
template <class T>
constexpr std::size_t min_encoded_size();

template <class T>
struct min_size_of {
  static constexpr std::size_t value = 0;
};
template <class A, class B>
struct min_size_of<std::pair<A, B>> {
  static constexpr std::size_t value = min_encoded_size<A>() + min_encoded_size<B>();
};
template <class... Ts>
struct min_size_of<std::tuple<Ts...>> {
  static constexpr std::size_t value = (std::size_t{0} + ... + min_encoded_size<Ts>());
};
template <class T, std::size_t N>
struct min_size_of<std::array<T, N>> {
  static constexpr std::size_t value = N * min_encoded_size<T>();
};
template <class T>
struct min_size_of<std::optional<T>> {
  static constexpr std::size_t value = 1;  // the flag
};

// Whether codec<T> is the raw-bytes codec below (a user's specialisation of codec for a
// trivially copyable type takes precedence over it, and may write anything).
template <class T>
concept uses_raw_codec = requires {
  typename codec<T>::concur_raw_bytes;
};

template <class T>
constexpr std::size_t min_encoded_size() {
  if constexpr (uses_raw_codec<T>) {
    return sizeof(T);
  } else if constexpr (std::is_same_v<T, bool>) {
    return 1;
  } else if constexpr (is_basic_string<T>::value || is_sequence<T>::value ||
                       is_associative<T>::value) {
    return 8;  // the count
  } else {
    return min_size_of<T>::value;
  }
}

// Decodes one element of a container of Ts, counting it against the message's allowance of
// elements that take no bytes when it took none.
template <class T>
T get_element(Reader& in) {
  if constexpr (min_encoded_size<T>() == 0) {
    const std::size_t before = in.remaining();
    T item = in.get<T>();
    if (in.remaining() == before) in.empty_element();
    return item;
  } else {
    return in.get<T>();
  }
}

template <class C>
void encode_range(Writer& out, const C& items) {
  out.put_count(static_cast<std::uint64_t>(std::size(items)));
  // The cast turns a proxy element (std::vector<bool>'s) into the value it stands for, so that
  // the codec is chosen for the value type, not for the proxy.
  for (const auto& item : items) out.put(static_cast<const typename C::value_type&>(item));
}

template <class T>
struct is_sequence : std::false_type {};
template <class T, class A>
struct is_sequence<std::vector<T, A>> : std::true_type {};
template <class T, class A>
struct is_sequence<std::deque<T, A>> : std::true_type {};
template <class T, class A>
struct is_sequence<std::list<T, A>> : std::true_type {};

template <class T>
struct is_associative : std::false_type {};
template <class K, class V, class C, class A>
struct is_associative<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class C, class A>
struct is_associative<std::multimap<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_associative<std::unordered_map<K, V, H, E, A>> : std::true_type {};
template <class K, class C, class A>
struct is_associative<std::set<K, C, A>> : std::true_type {};
template <class K, class C, class A>
struct is_associative<std::multiset<K, C, A>> : std::true_type {};
template <class K, class H, class E, class A>
struct is_associative<std::unordered_set<K, H, E, A>> : std::true_type {};

// What a map or set stores, as it is encoded: (key, value) pairs without the const, or keys.
template <class M, class = void>
struct stored_element {
  using type = typename M::key_type;
};
template <class M>
struct stored_element<M, std::void_t<typename M::mapped_type>> {
  using type = std::pair<typename M::key_type, typename M::mapped_type>;
};

}  // namespace detail

// bytes_codec<T>
//
// A trivially copyable T sent as its bytes. concur uses it for such types that hold no pointer;
// a program opts in a type that does, when its bytes make sense in the other process:
//   template <> struct concur::codec<Handle> : concur::bytes_codec<Handle> {};
template <class T>
struct bytes_codec {
  static_assert(std::is_trivially_copyable_v<T>, "bytes_codec needs a trivially copyable type");
  using concur_raw_bytes = void;  // see detail::uses_raw_codec
  static void encode(Writer& out, const T& value) { out.put_bytes(&value, sizeof value); }
  static T decode(Reader& in) {
    T value;
    in.get_bytes(&value, sizeof value);
    return value;
  }
};

// Trivially copyable values that hold no pointer (and that no more specific codec claims).
template <class T>
struct codec<T, std::enable_if_t<detail::is_raw<T>>> : bytes_codec<T> {};

template <>
struct codec<bool> {
  static void encode(Writer& out, bool value) { out.put(static_cast<std::uint8_t>(value)); }
  static bool decode(Reader& in) {
    const auto byte = in.get<std::uint8_t>();
    if (byte > 1) Reader::malformed("bad bool");
    return byte == 1;
  }
};

template <class C, class Tr, class A>
struct codec<std::basic_string<C, Tr, A>> {
  static_assert(std::is_trivially_copyable_v<C>);
  static void encode(Writer& out, const std::basic_string<C, Tr, A>& text) {
    out.put_count(text.size());
    out.put_bytes(text.data(), text.size() * sizeof(C));
  }
  static std::basic_string<C, Tr, A> decode(Reader& in) {
    std::basic_string<C, Tr, A> text(in.get_count(sizeof(C)), C{});
    in.get_bytes(text.data(), text.size() * sizeof(C));
    return text;
  }
};

// vector, deque, list.
template <class S>
requires detail::is_sequence<S>::value && has_codec<typename S::value_type>
struct codec<S> {
  using T = typename S::value_type;
  static void encode(Writer& out, const S& items) { detail::encode_range(out, items); }
  static S decode(Reader& in) {
    const std::size_t n = in.get_count(detail::min_encoded_size<T>());
    S items;
    for (std::size_t i = 0; i < n; ++i) items.push_back(detail::get_element<T>(in));
    return items;
  }
};

// Maps and sets: their elements (pairs for maps), inserted back in order.
template <class M>
requires detail::is_associative<M>::value && has_codec<typename detail::stored_element<M>::type>
struct codec<M> {
  using Stored = typename detail::stored_element<M>::type;
  static void encode(Writer& out, const M& items) {
    out.put_count(items.size());
    for (const auto& item : items) out.put(Stored(item));
  }
  static M decode(Reader& in) {
    const std::size_t n = in.get_count(detail::min_encoded_size<Stored>());
    M items;
    for (std::size_t i = 0; i < n; ++i) {
      auto inserted = items.insert(detail::get_element<Stored>(in));
      if constexpr (std::is_same_v<decltype(inserted), std::pair<typename M::iterator, bool>>) {
        // An encoder never writes a key twice into a map or set: such a message is forged.
        if (!inserted.second) Reader::malformed("duplicate key");
      }
    }
    return items;
  }
};

template <class T, std::size_t N>
requires has_codec<T>
struct codec<std::array<T, N>> {
  static void encode(Writer& out, const std::array<T, N>& items) {
    for (const auto& item : items) out.put(item);
  }
  static std::array<T, N> decode(Reader& in) {
    std::array<T, N> items;
    for (auto& item : items) item = in.get<T>();
    return items;
  }
};

template <class A, class B>
requires has_codec<A> && has_codec<B>
struct codec<std::pair<A, B>> {
  static void encode(Writer& out, const std::pair<A, B>& p) {
    out.put(p.first);
    out.put(p.second);
  }
  static std::pair<A, B> decode(Reader& in) {
    A first = in.get<A>();
    B second = in.get<B>();
    return {std::move(first), std::move(second)};
  }
};

template <class... Ts>
requires(has_codec<Ts>&&...) struct codec<std::tuple<Ts...>> {
  static void encode(Writer& out, const std::tuple<Ts...>& t) {
    std::apply([&](const auto&... parts) { (out.put(parts), ...); }, t);
  }
  static std::tuple<Ts...> decode(Reader& in) {
    return std::tuple<Ts...>{in.get<Ts>()...};  // braces: left to right
  }
};

template <class T>
requires has_codec<T>
struct codec<std::optional<T>> {
  static void encode(Writer& out, const std::optional<T>& value) {
    out.put(static_cast<std::uint8_t>(value.has_value()));
    if (value) out.put(*value);
  }
  static std::optional<T> decode(Reader& in) {
    switch (in.get<std::uint8_t>()) {
      case 0:
        return std::nullopt;
      case 1:
        return in.get<T>();
      default:
        Reader::malformed("bad optional flag");
    }
  }
};

// Encodes `value` as one message's bytes.
template <class T>
std::string encode(const T& value) {
  Writer out;
  out.put(value);
  return out.take();
}

// Decodes one message's bytes as a T; the message must hold exactly one T.
template <class T>
T decode(std::string_view bytes) {
  Reader in(bytes);
  T value = in.get<T>();
  if (in.remaining() != 0) Reader::malformed("trailing bytes after the value");
  return value;
}

}  // namespace concur

#endif  // CONCUR_CODEC_HPP
