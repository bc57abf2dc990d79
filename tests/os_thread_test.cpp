// Tests of the thread seam's handle conversions (concur/detail/os_thread.hpp) for every shape
// pthread_t takes: this build's own, and, as stand-ins for systems CI does not run, a pointer
// (macOS and the BSDs: `struct _opaque_pthread_t*`), a 32-bit unsigned integer (32-bit glibc),
// a signed 32-bit integer and a small struct. Each stand-in instantiates the same templates that
// from_pthread()/to_pthread() use, so the code that turns a pthread_t into an ident compiles and
// round-trips on those systems too (issue 14, item 2).

#include "concur/detail/os_thread.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <cstdint>
#include <limits>
#include <set>
#include <thread>
#include <type_traits>

#include "concur/thread.hpp"

namespace {

using concur::detail::handle_to_ident;
using concur::detail::ident_to_handle;

// macOS: typedef struct _opaque_pthread_t* pthread_t; FreeBSD: struct pthread*.
struct opaque_pthread;
using pointer_pthread_t = opaque_pthread*;
// 32-bit glibc, musl and bionic on 32-bit targets.
using narrow_pthread_t = std::uint32_t;
using signed_narrow_pthread_t = std::int32_t;
// A handle that is a small struct (as in some pthreads libraries for Windows).
struct struct_pthread_t {
  void* thread;
};

template <class Handle>
Handle round_trip(Handle handle) {
  return ident_to_handle<Handle>(handle_to_ident<Handle>(handle));
}

TEST(OsThreadHandle, PointerHandlesRoundTrip) {
  static_assert(std::is_pointer_v<pointer_pthread_t>);
  alignas(16) static char storage[64];
  const auto a = reinterpret_cast<pointer_pthread_t>(&storage[0]);
  const auto b = reinterpret_cast<pointer_pthread_t>(&storage[16]);
  const auto high =
      reinterpret_cast<pointer_pthread_t>(std::numeric_limits<std::uintptr_t>::max() - 15);
  EXPECT_EQ(round_trip(a), a);
  EXPECT_EQ(round_trip(b), b);
  EXPECT_EQ(round_trip(high), high);
  EXPECT_EQ(round_trip(pointer_pthread_t{nullptr}), nullptr);
  EXPECT_NE(handle_to_ident(a), handle_to_ident(b));
  EXPECT_EQ(handle_to_ident(a), static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(a)));
}

TEST(OsThreadHandle, NarrowIntegerHandlesRoundTrip) {
  for (const narrow_pthread_t value :
       {narrow_pthread_t{0}, narrow_pthread_t{1}, narrow_pthread_t{0xb7f00b40u},
        std::numeric_limits<narrow_pthread_t>::max()}) {
    EXPECT_EQ(round_trip(value), value);
    EXPECT_EQ(handle_to_ident(value), std::uint64_t{value});
  }
  for (const signed_narrow_pthread_t value :
       {signed_narrow_pthread_t{0}, signed_narrow_pthread_t{-1}, signed_narrow_pthread_t{12345},
        std::numeric_limits<signed_narrow_pthread_t>::min(),
        std::numeric_limits<signed_narrow_pthread_t>::max()}) {
    EXPECT_EQ(round_trip(value), value);
  }
  EXPECT_EQ(round_trip(std::numeric_limits<unsigned long>::max()),
            std::numeric_limits<unsigned long>::max());
}

TEST(OsThreadHandle, StructHandlesRoundTrip) {
  static int object;
  const struct_pthread_t handle{&object};
  EXPECT_EQ(round_trip(handle).thread, &object);
  EXPECT_EQ(round_trip(struct_pthread_t{nullptr}).thread, nullptr);
}

// This system's own pthread_t, live: every thread's ident is distinct and gives back a handle
// that names the same thread.
TEST(OsThreadHandle, LiveThreadsRoundTrip) {
  EXPECT_TRUE(::pthread_equal(concur::detail::to_pthread(concur::detail::os_thread_ident()),
                              ::pthread_self()));
  std::set<std::uint64_t> idents{concur::detail::os_thread_ident()};
  for (int i = 0; i < 4; ++i) {
    std::uint64_t ident = 0;
    bool same = false;
    bool initial = true;
    std::thread t([&] {
      ident = concur::detail::os_thread_ident();
      same = ::pthread_equal(concur::detail::to_pthread(ident), ::pthread_self()) != 0;
      initial = concur::detail::os_is_initial_thread();
    });
    t.join();
    EXPECT_TRUE(same);
    EXPECT_FALSE(initial);
    idents.insert(ident);  // a joined thread's ident may be reused by the next one
  }
  EXPECT_GE(idents.size(), 2u);
  EXPECT_TRUE(concur::detail::os_is_initial_thread());
}

// The public face of the same conversion: Thread::ident() and get_ident() agree.
TEST(OsThreadHandle, ThreadIdentMatchesGetIdent) {
  std::uint64_t inside = 0;
  concur::Thread t([&] { inside = concur::get_ident(); });
  t.start();
  t.join();
  ASSERT_TRUE(t.ident().has_value());
  EXPECT_EQ(*t.ident(), inside);
}

}  // namespace
