// Tests of concur/codec.hpp: round trips of the built-in types and of a user type through the
// customization point, and a decoder that refuses malformed input without reading out of
// bounds.

#include "concur/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  bool operator==(const Point&) const = default;
};

// Trivially copyable types that hold pointers (issue 12 item 12), and one the user opts in.
struct Named {
  int id;
  const char* name;
};
struct Nested {
  double weight;
  Named inner;
};
struct Viewed {
  int n;
  std::string_view text;
};
struct Handles {
  int* slots[2];
};
struct Plain {
  int id;
  double values[3];
  struct {
    char tag;
    long count;
  } detail;
};
struct PointerLast {
  Plain plain;
  int count;
  const int* where;
};
struct Buffer {  // more leaves than concur inspects: sent as bytes, as before
  char data[4096];
};
struct Offset {  // a pointer the program knows is meaningful in the other process
  const void* base;
};

// Whether concur has a codec for T (so send(T) and recv<T>() compile).
template <class T>
constexpr bool has_encoder = requires(concur::Writer& w, const T& v) {
  concur::codec<T>::encode(w, v);
};

// A user type whose codec writes nothing at all.
struct Marker {
  bool operator==(const Marker&) const = default;
};

}  // namespace

template <>
struct concur::codec<Offset> : concur::bytes_codec<Offset> {};

template <>
struct concur::codec<Marker> {
  static void encode(concur::Writer&, const Marker&) {}
  static Marker decode(concur::Reader&) { return {}; }
};

template <>
struct concur::codec<Point> {
  static void encode(concur::Writer& out, const Point& p) {
    out.put(p.x);
    out.put(p.y);
    out.put(p.label);
  }
  static Point decode(concur::Reader& in) {
    Point p;
    p.x = in.get<double>();
    p.y = in.get<double>();
    p.label = in.get<std::string>();
    return p;
  }
};

namespace {

template <class T>
void expect_round_trip(const T& value) {
  EXPECT_EQ(concur::decode<T>(concur::encode(value)), value);
}

int decode_error(std::string_view bytes, auto type_tag) {
  using T = typename decltype(type_tag)::type;
  try {
    (void)concur::decode<T>(bytes);
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

template <class T>
struct tag {
  using type = T;
};

TEST(Codec, BuiltInTypesRoundTrip) {
  expect_round_trip(42);
  expect_round_trip(-1.5);
  expect_round_trip(true);
  expect_round_trip(std::string("text with \0 inside", 18));
  expect_round_trip(std::vector<int>{1, 2, 3});
  expect_round_trip(std::deque<std::string>{"a", "bc"});
  expect_round_trip(std::list<double>{0.5, 0.25});
  expect_round_trip(std::array<std::string, 2>{"x", "y"});
  expect_round_trip(std::map<std::string, std::vector<int>>{{"k", {1}}, {"j", {}}});
  expect_round_trip(std::multimap<int, int>{{1, 2}, {1, 3}});
  expect_round_trip(std::unordered_map<int, std::string>{{1, "one"}, {2, "two"}});
  expect_round_trip(std::set<std::string>{"b", "a"});
  expect_round_trip(std::multiset<int>{1, 1, 2});
  expect_round_trip(std::unordered_set<int>{5, 6});
  expect_round_trip(std::pair<int, std::string>{1, "p"});
  expect_round_trip(std::tuple<int, std::optional<std::string>, bool>{1, std::nullopt, false});
  expect_round_trip(std::optional<std::vector<int>>{{4, 5}});
  expect_round_trip(std::optional<int>{});
  expect_round_trip(std::vector<std::vector<std::string>>{{}, {"deep"}});
}

TEST(Codec, UserTypesJoinThroughTheCustomizationPoint) {
  expect_round_trip(Point{1.0, 2.0, "origin-ish"});
  expect_round_trip(std::vector<Point>{{0, 0, "a"}, {1, 1, "b"}});
}

// Issue 12 item 13: values that encode to zero bytes decode, alone and by the million-free
// count check: a container of them is its count and nothing else.
TEST(Codec, TypesThatEncodeToNothingRoundTrip) {
  expect_round_trip(std::tuple<>{});
  expect_round_trip(std::vector<std::tuple<>>(3));
  expect_round_trip(std::vector<std::array<int, 0>>(2));
  expect_round_trip(std::list<std::pair<std::tuple<>, std::tuple<>>>(4));
  expect_round_trip(std::vector<Marker>(5));
  expect_round_trip(std::map<int, std::tuple<>>{{1, {}}, {2, {}}});
  expect_round_trip(std::vector<std::vector<std::tuple<>>>{{}, {{}, {}}});
}

// A hostile count of elements that take no bytes still cannot make the decoder loop or
// allocate without bound.
TEST(Codec, AHostileCountOfEmptyElementsIsRefused) {
  const std::string huge("\0\0\0\0\0\x01\0\0", 8);  // 2^40 elements
  EXPECT_EQ(decode_error(huge, tag<std::vector<std::tuple<>>>{}), EBADMSG);
  EXPECT_EQ(decode_error(huge, tag<std::vector<Marker>>{}), EBADMSG);
  // Many small claims that add up: 4 vectors of 2^30 empty tuples each.
  std::string nested("\x04\0\0\0\0\0\0\0", 8);
  for (int i = 0; i < 4; ++i) nested += std::string("\0\0\0\x40\0\0\0\0", 8);
  EXPECT_EQ(decode_error(nested, tag<std::vector<std::vector<std::tuple<>>>>{}), EBADMSG);
}

// Issue 12 item 12: a type whose bytes hold a pointer means nothing in another process (and a
// received one points where the sender chose); concur refuses it at compile time unless the
// program opts it in.
TEST(Codec, TypesHoldingPointersHaveNoCodecUnlessOptedIn) {
  EXPECT_FALSE(has_encoder<std::string_view>);
  EXPECT_FALSE(has_encoder<std::span<const int>>);
  EXPECT_FALSE(has_encoder<const char*>);
  EXPECT_FALSE(has_encoder<int Plain::*>);
  EXPECT_FALSE(has_encoder<std::nullptr_t>);
  EXPECT_FALSE(has_encoder<Named>);
  EXPECT_FALSE(has_encoder<Nested>);
  EXPECT_FALSE(has_encoder<Viewed>);
  EXPECT_FALSE(has_encoder<Handles>);
  EXPECT_FALSE((has_encoder<std::pair<int, std::string_view>>));
  EXPECT_FALSE(has_encoder<std::vector<const char*>>);
  EXPECT_FALSE(has_encoder<PointerLast>);
  EXPECT_TRUE(has_encoder<Plain>);
  EXPECT_TRUE(has_encoder<Buffer>);
  EXPECT_TRUE((has_encoder<std::array<int, 4>>));
  EXPECT_TRUE(has_encoder<Offset>);
  const Offset sent{&sent};
  EXPECT_EQ(concur::decode<Offset>(concur::encode(sent)).base, &sent);
  expect_round_trip(std::array<int, 2>{3, 4});
  const Plain plain{7, {1.0, 2.0, 3.0}, {'x', 9}};
  const Plain back = concur::decode<Plain>(concur::encode(plain));
  EXPECT_EQ(back.id, 7);
  EXPECT_EQ(back.values[2], 3.0);
  EXPECT_EQ(back.detail.count, 9);
}

TEST(Codec, MalformedInputIsRefused) {
  EXPECT_EQ(decode_error("", tag<int>{}), EBADMSG);                     // too short
  EXPECT_EQ(decode_error("12345", tag<int>{}), EBADMSG);                // trailing bytes
  EXPECT_EQ(decode_error("\x02", tag<bool>{}), EBADMSG);                // not a bool
  EXPECT_EQ(decode_error("\x07", tag<std::optional<int>>{}), EBADMSG);  // bad flag
  EXPECT_EQ(decode_error(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8), tag<std::string>{}),
            EBADMSG);  // a count far past the message: refused before any allocation
  EXPECT_EQ(decode_error(std::string("\x03\0\0\0\0\0\0\0\x01\0\0\0", 12), tag<std::vector<int>>{}),
            EBADMSG);  // three ints claimed, one sent
  EXPECT_EQ(decode_error(std::string("\x01\0\0\0\0\0\0\0", 8), tag<std::vector<std::string>>{}),
            EBADMSG);  // one string claimed, none sent
}

}  // namespace
