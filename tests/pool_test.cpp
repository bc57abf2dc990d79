// Tests of concur/pool.hpp: mp::Pool with Python's multiprocessing.Pool semantics (map,
// starmap, imap, imap_unordered, apply, apply_async, map_async, close, terminate, join,
// initializer, maxtasksperchild), and what concur adds: a killed worker breaks the pool
// instead of hanging it, workers never hang on inherited descriptors, an idle pool uses no CPU.
// Every test that forks runs under a watchdog and leaves no child unreaped.

#include "concur/pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <list>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "proc_children.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
namespace mp = concur::mp;
using concur::BrokenProcessPool;
using concur::RemoteError;
using concur::UsageError;
using concur_test::Watchdog;

int square(int x) {
  return x * x;
}
long long add(int a, long long b) {
  return a + b;
}
int fail_on_three(int x) {
  if (x % 1000 == 3) throw std::invalid_argument("three: " + std::to_string(x));
  return x;
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int worker_pid(int) {
  return static_cast<int>(::getpid());
}
std::string repeat(std::string s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

int g_initialized = 0;
void init_plain() {
  g_initialized = 42;
}
void init_with(int value, std::string text) {
  g_initialized = value + static_cast<int>(text.size());
}
void init_throws() {
  throw std::runtime_error("initializer failed on purpose");
}
int read_initialized(int) {
  return g_initialized;
}

// How many of this process's descriptors are sockets, and how many are pidfds.
std::pair<int, int> sockets_and_pidfds(int) {
  int sockets = 0, pidfds = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    const std::string target(link, static_cast<std::size_t>(n));
    if (target.rfind("socket:", 0) == 0) ++sockets;
    if (target.find("pidfd") != std::string::npos) ++pidfds;
  }
  return {sockets, pidfds};
}

std::vector<int> iota(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

using concur_test::reaped;

TEST(PoolTest, MapChecksumsOverChunksizes) {
  Watchdog dog("MapChecksumsOverChunksizes", 60s);
  mp::Pool pool(2);
  EXPECT_EQ(pool.processes(), 2);
  const auto items = iota(concur_test::scaled(4000, 4));
  for (int chunksize : {1, 3, 64, 0}) {
    const std::vector<int> out = pool.map(square, items, chunksize);
    ASSERT_EQ(out.size(), items.size());
    for (std::size_t i = 0; i < items.size(); ++i) ASSERT_EQ(out[i], items[i] * items[i]);
  }
  // A lambda without captures, and strings both ways.
  const auto words = pool.map([](int x) { return std::to_string(x); }, items, 7);
  for (std::size_t i = 0; i < items.size(); ++i) ASSERT_EQ(words[i], std::to_string(items[i]));
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
}

std::int64_t square64(std::int64_t x) {
  return x * x;
}
struct Sample {  // trivially copyable without pointers: sent as its bytes, a chunk in one block
  std::int32_t index;
  double half;
};
Sample sample_of(std::int64_t x) {
  return Sample{static_cast<std::int32_t>(x), static_cast<double>(x) / 2};
}
std::int64_t fail_at_12345(std::int64_t x) {
  if (x == 12345) throw std::invalid_argument("item " + std::to_string(x));
  return x;
}
std::string tagged(std::string s) {
  return "<" + s + ">";
}

std::vector<std::int64_t> iota64(std::size_t n) {
  std::vector<std::int64_t> v(n);
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

// Items and results that are their bytes go a chunk at a time as one block: every result in
// its place, whatever the chunk boundaries (uneven last chunk, one chunk, one item a chunk).
TEST(PoolTest, BulkMapsKeepEveryResultInPlace) {
  Watchdog dog("BulkMapsKeepEveryResultInPlace", 60s);
  mp::Pool pool(2);
  const std::size_t n = 100003;
  const auto items = iota64(n);
  for (int chunksize : {0, 1000, 99999, 100003, 200000, 7}) {
    const std::vector<std::int64_t> out = pool.map(square64, items, chunksize);
    ASSERT_EQ(out.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], items[i] * items[i]) << i;
  }
  const std::vector<Sample> samples = pool.map(sample_of, items, 4096);
  ASSERT_EQ(samples.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(samples[i].index, static_cast<std::int32_t>(i));
    ASSERT_EQ(samples[i].half, static_cast<double>(i) / 2);
  }
  // imap and imap_unordered through the same path.
  std::int64_t expected = 0;
  for (std::int64_t value : pool.imap(square64, items, 777)) {
    ASSERT_EQ(value, expected * expected);
    ++expected;
  }
  ASSERT_EQ(expected, static_cast<std::int64_t>(n));
  std::vector<std::int64_t> unordered;
  for (std::int64_t value : pool.imap_unordered(square64, items, 5000)) unordered.push_back(value);
  std::sort(unordered.begin(), unordered.end());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(unordered[i], items[i] * items[i]);
  // A range that is not contiguous goes item by item, to the same results.
  const std::list<std::int64_t> listed(items.begin(), items.begin() + 3001);
  const auto from_list = pool.map(square64, listed, 100);
  ASSERT_EQ(from_list.size(), 3001u);
  for (std::size_t i = 0; i < 3001; ++i) ASSERT_EQ(from_list[i], items[i] * items[i]);
}

// A bulk chunk whose task throws part way fails as a whole, with the exception of the item
// that threw; imap yields it once in the chunk's place and goes on with the next chunk.
TEST(PoolTest, BulkChunkWithAnExceptionFailsAtItsPlace) {
  Watchdog dog("BulkChunkWithAnExceptionFailsAtItsPlace", 60s);
  mp::Pool pool(2);
  const auto items = iota64(20000);
  for (int chunksize : {0, 1000, 12345, 12346}) {
    try {
      (void)pool.map(fail_at_12345, items, chunksize);
      ADD_FAILURE() << "map did not throw";
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.type_name(), "std::invalid_argument");
      EXPECT_EQ(std::string(e.what()), "item 12345");
    }
  }
  auto stream = pool.imap(fail_at_12345, items, 1000);
  std::int64_t expected = 0;
  for (; expected < 12000; ++expected) ASSERT_EQ(stream.next(), expected);
  EXPECT_THROW(stream.next(), RemoteError);  // the chunk [12000, 13000), once
  for (expected = 13000; expected < 20000; ++expected) ASSERT_EQ(stream.next(), expected);
  EXPECT_EQ(stream.next(), std::nullopt);
  EXPECT_EQ(pool.map(square64, iota64(3), 1), (std::vector<std::int64_t>{0, 1, 4}));
}

// Types that are not their bytes (std::string) share one encoded block for a map's chunks.
TEST(PoolTest, StringsThroughChunkedMaps) {
  Watchdog dog("StringsThroughChunkedMaps", 60s);
  mp::Pool pool(2);
  std::vector<std::string> words;
  for (int i = 0; i < 20001; ++i)
    words.push_back(std::string(static_cast<std::size_t>(i % 50), 'a' + i % 26) +
                    std::to_string(i));
  for (int chunksize : {0, 1, 333, 20001}) {
    const auto out = pool.map(tagged, words, chunksize);
    ASSERT_EQ(out.size(), words.size());
    for (std::size_t i = 0; i < words.size(); ++i) ASSERT_EQ(out[i], "<" + words[i] + ">");
  }
  std::size_t i = 0;
  for (const std::string& out : pool.imap(tagged, words, 64))
    ASSERT_EQ(out, "<" + words[i++] + ">");
  EXPECT_EQ(i, words.size());
}

TEST(PoolTest, StarmapUnpacksTuplesAndPairs) {
  Watchdog dog("StarmapUnpacksTuplesAndPairs", 60s);
  mp::Pool pool(2);
  std::vector<std::tuple<int, long long>> tuples;
  std::vector<std::pair<int, long long>> pairs;
  for (int i = 0; i < 2000; ++i) {
    tuples.emplace_back(i, 1000000000000LL * i);
    pairs.emplace_back(i, -i);
  }
  const auto sums = pool.starmap(add, tuples, 5);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(sums[i], i + 1000000000000LL * i);
  const auto zeros = pool.starmap_async(add, pairs).get();
  for (long long z : zeros) ASSERT_EQ(z, 0);
}

TEST(PoolTest, ImapInOrderAndUnorderedByCompletion) {
  Watchdog dog("ImapInOrderAndUnorderedByCompletion", 60s);
  mp::Pool pool(2);
  const auto items = iota(3000);
  for (int chunksize : {1, 4, 100}) {
    int expected = 0;
    for (int value : pool.imap(square, items, chunksize)) {
      ASSERT_EQ(value, expected * expected);
      ++expected;
    }
    ASSERT_EQ(expected, 3000);
    std::multiset<int> seen;
    for (int value : pool.imap_unordered(square, items, chunksize)) seen.insert(value);
    std::multiset<int> want;
    for (int i : items) want.insert(i * i);
    ASSERT_EQ(seen, want);
  }
  // imap_unordered hands out the quick task before the slow one queued ahead of it.
  auto stream = pool.imap_unordered(sleep_ms, std::vector<int>{400, 1});
  EXPECT_EQ(stream.next(), 1);
  EXPECT_EQ(stream.next(), 400);
  EXPECT_EQ(stream.next(), std::nullopt);
  EXPECT_THROW((void)pool.imap(square, items, 0), std::invalid_argument);
}

TEST(PoolTest, ApplyAsyncManyResults) {
  Watchdog dog("ApplyAsyncManyResults", 60s);
  mp::Pool pool(2);
  std::vector<mp::AsyncResult<int>> results;
  for (int i = 0; i < 1000; ++i) results.push_back(pool.apply_async(square, i));
  long long sum = 0;
  for (auto& r : results) sum += r.get();
  long long want = 0;
  for (long long i = 0; i < 1000; ++i) want += i * i;
  EXPECT_EQ(sum, want);
  EXPECT_EQ(pool.apply(repeat, std::string("ab"), 3), "ababab");
  auto nothing = pool.apply_async([](int) {}, 1);
  nothing.get();
  EXPECT_TRUE(nothing.ready());
  EXPECT_TRUE(nothing.successful());
}

TEST(PoolTest, ExceptionsComeBackAsRemoteError) {
  Watchdog dog("ExceptionsComeBackAsRemoteError", 60s);
  mp::Pool pool(2);
  try {
    (void)pool.map(fail_on_three, iota(2000), 10);
    ADD_FAILURE() << "map did not throw";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(std::string(e.what()).rfind("three: ", 0), 0u) << e.what();
  }
  auto r = pool.apply_async(fail_on_three, 3);
  r.wait();
  EXPECT_TRUE(r.ready());
  EXPECT_FALSE(r.successful());
  EXPECT_THROW(r.get(), RemoteError);
  EXPECT_THROW(r.get(), concur::Error);  // again: the result is kept
  // imap yields the exception in the failed item's place, then goes on.
  auto stream = pool.imap(fail_on_three, std::vector<int>{1, 2, 3, 4});
  EXPECT_EQ(stream.next(), 1);
  EXPECT_EQ(stream.next(), 2);
  EXPECT_THROW(stream.next(), RemoteError);
  EXPECT_EQ(stream.next(), 4);
  EXPECT_EQ(stream.next(), std::nullopt);
  // The pool still works.
  EXPECT_EQ(pool.apply(square, 9), 81);
}

TEST(PoolTest, TimeoutsAndReadiness) {
  Watchdog dog("TimeoutsAndReadiness", 60s);
  mp::Pool pool(1);
  auto slow = pool.apply_async(sleep_ms, 600);
  EXPECT_FALSE(slow.ready());
  EXPECT_THROW((void)slow.successful(), UsageError);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)slow.get(50ms), concur::TimeoutError);
  EXPECT_FALSE(slow.wait(10ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_EQ(slow.get(10s), 600);
  EXPECT_TRUE(slow.wait(0ms));
  auto stream = pool.imap(sleep_ms, std::vector<int>{500});
  EXPECT_THROW((void)stream.next(20ms), concur::TimeoutError);
  EXPECT_EQ(stream.next(10s), 500);
}

TEST(PoolTest, CloseJoinTerminate) {
  Watchdog dog("CloseJoinTerminate", 60s);
  std::vector<pid_t> pids;
  {
    mp::Pool pool(2);
    pids = pool.pids();
    ASSERT_EQ(pids.size(), 2u);
    EXPECT_THROW(pool.join(), UsageError);
    auto queued = pool.map_async(sleep_ms, std::vector<int>{50, 50, 50, 50}, 1);
    pool.close();
    EXPECT_THROW((void)pool.apply_async(square, 1), UsageError);
    EXPECT_THROW((void)pool.map(square, iota(3)), UsageError);
    pool.join();  // the queued tasks run first
    EXPECT_TRUE(queued.ready());
    EXPECT_EQ(queued.get(), (std::vector<int>{50, 50, 50, 50}));
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
  }
  {
    mp::Pool pool(2);
    pids = pool.pids();
    auto pending = pool.map_async(sleep_ms, std::vector<int>(8, 5000), 1);
    const auto start = std::chrono::steady_clock::now();
    pool.terminate();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
    EXPECT_THROW((void)pending.get(), BrokenProcessPool);
    pool.join();  // allowed after terminate()
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
    EXPECT_THROW((void)pool.apply_async(square, 1), UsageError);
  }
  {
    // The destructor terminates, as leaving Python's `with Pool()` block does.
    std::optional<mp::AsyncResult<int>> pending;
    {
      mp::Pool pool(1);
      pids = pool.pids();
      pending.emplace(pool.apply_async(sleep_ms, 5000));
    }
    EXPECT_THROW((void)pending->get(), BrokenProcessPool);
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
  }
  EXPECT_THROW(mp::Pool(-1), std::invalid_argument);
  EXPECT_THROW(mp::Pool(0), std::invalid_argument);
  EXPECT_THROW(mp::Pool(mp::PoolOptions{.processes = 1, .maxtasksperchild = 0}),
               std::invalid_argument);
}

TEST(PoolTest, InitializerRunsInEachWorker) {
  Watchdog dog("InitializerRunsInEachWorker", 60s);
  {
    mp::Pool pool({.processes = 2, .initializer = init_plain});
    for (int v : pool.map(read_initialized, iota(50), 1)) EXPECT_EQ(v, 42);
  }
  {
    mp::Pool pool({.processes = 2, .initializer = concur::bind_initializer(init_with, 10, "abc")});
    for (int v : pool.map(read_initialized, iota(50), 1)) EXPECT_EQ(v, 13);
  }
  {
    mp::Pool pool({.processes = 2, .initializer = init_throws});
    try {
      (void)pool.apply(square, 2);
      ADD_FAILURE() << "a pool whose initializer throws ran a task";
    } catch (const BrokenProcessPool& e) {
      EXPECT_NE(std::string(e.what()).find("initializer failed on purpose"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW((void)pool.apply_async(square, 2), BrokenProcessPool);
    pool.close();
    pool.join();
  }
  EXPECT_EQ(g_initialized, 0);  // only the workers ran it
}

TEST(PoolTest, MaxTasksPerChildReplacesWorkers) {
  Watchdog dog("MaxTasksPerChildReplacesWorkers", 60s);
  mp::Pool pool({.processes = 2, .maxtasksperchild = 3});
  const auto pids = pool.map(worker_pid, iota(60), 1);
  const std::set<int> distinct(pids.begin(), pids.end());
  EXPECT_GE(distinct.size(), 20u);  // 60 tasks, at most 3 each
  for (int pid : distinct) {
    EXPECT_LE(std::count(pids.begin(), pids.end(), pid), 3);
  }
  // Chunks count as one task each.
  const auto chunked = pool.map(worker_pid, iota(60), 10);
  EXPECT_GE(std::set<int>(chunked.begin(), chunked.end()).size(), 2u);
  EXPECT_EQ(pool.apply(square, 5), 25);  // not broken
  const auto alive = pool.pids();
  pool.close();
  pool.join();
  for (pid_t pid : alive) EXPECT_TRUE(reaped(pid));
}

// The natural program: a pool in a program that has its own pipes, processes and threads.
TEST(PoolTest, NaturalProgramDoesNotHang) {
  Watchdog dog("NaturalProgramDoesNotHang", 60s);
  // A reader process started before the pool, which reads until end of file.
  auto [parent_end, child_end] = concur::Pipe();
  concur::Process reader(
      [](concur::Connection& end) {
        try {
          for (;;) (void)end.recv_bytes();
        } catch (const concur::EOFError&) {
        }
        return 0;
      },
      std::move(child_end));
  reader.start();
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load()) std::this_thread::sleep_for(1ms);
  });
  {
    mp::Pool pool(2);
    EXPECT_EQ(pool.map(square, iota(100)).size(), 100u);
    // The workers must not hold the reader's pipe: closing it here ends the reader.
    parent_end.send_bytes("x");
    parent_end.close();
    EXPECT_TRUE(reader.join(10s));
    EXPECT_EQ(reader.exitcode(), 0);
    // A child forked by a raw fork() holds copies of everything, the pool's ends included;
    // close() still ends the workers (the parent shuts its sockets down).
    const pid_t holder = ::fork();
    if (holder == 0) {
      ::pause();
      ::_exit(0);
    }
    pool.close();
    pool.join();
    ::kill(holder, SIGKILL);
    ::waitpid(holder, nullptr, 0);
  }
  stop = true;
  busy.join();
}

// Each worker holds its own socket and nothing of the other workers' or the parent's (which
// would keep a worker from seeing end of file), including workers started as replacements.
TEST(PoolTest, WorkersHoldOnlyTheirOwnSocket) {
  Watchdog dog("WorkersHoldOnlyTheirOwnSocket", 60s);
  mp::Pool pool({.processes = 3, .maxtasksperchild = 4});
  for (const auto& [sockets, pidfds] : pool.map(sockets_and_pidfds, iota(40), 1)) {
    EXPECT_EQ(sockets, 1);
    EXPECT_EQ(pidfds, 0);
  }
}

// Messages far larger than a socket's buffer, both ways, in chunks and alone.
TEST(PoolTest, LargeMessagesBothWays) {
  Watchdog dog("LargeMessagesBothWays", 60s);
  mp::Pool pool(2);
  const int copies = static_cast<int>(concur_test::scaled(5000, 5));  // 1 MB at least
  const std::string big = pool.apply(repeat, std::string(1000, 'x'), copies);
  EXPECT_EQ(big.size(), 1000u * static_cast<std::size_t>(copies));
  std::vector<std::string> inputs;
  for (int i = 0; i < 24; ++i) inputs.push_back(std::string(200000, static_cast<char>('a' + i)));
  const auto lengths = pool.map([](std::string s) { return s.size() + (s[0] - 'a'); }, inputs, 5);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(lengths[static_cast<std::size_t>(i)], 200000u + i);
}

// A worker killed at a random moment breaks the pool: the pending results throw
// BrokenProcessPool within a bounded time, and the pool closes cleanly.
TEST(PoolTest, KilledWorkerBreaksThePool) {
  Watchdog dog("KilledWorkerBreaksThePool", 90s);
  std::mt19937 random(20260415);
  const int iterations = concur_test::scaled(20, 4);
  int broke_pending = 0;
  for (int iteration = 0; iteration < iterations; ++iteration) {
    mp::Pool pool(2);
    const auto pids = pool.pids();
    auto pending = pool.map_async(sleep_ms, std::vector<int>(200, 1), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 40));
    ::kill(pids[random() % pids.size()], SIGKILL);
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)pending.get(20s);
    } catch (const BrokenProcessPool&) {
      ++broke_pending;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    // Whether or not the map had finished, the death breaks the pool.
    EXPECT_TRUE(concur_test::eventually([&] {
      try {
        (void)pool.apply(square, 3);
        return false;
      } catch (const BrokenProcessPool&) {
        return true;
      }
    }));
    EXPECT_THROW((void)pool.map(square, iota(3)), BrokenProcessPool);
    pool.close();
    pool.join();
    for (pid_t pid : pids) EXPECT_TRUE(reaped(pid));
  }
  EXPECT_GT(broke_pending, 0);  // 200 tasks of 1 ms on 2 workers outlast a kill within 40 ms
}

// CPU time used by process `pid` (utime + stime in /proc/PID/stat), in clock ticks.
long cpu_ticks(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto end = text.rfind(')');
  if (end == std::string::npos) return 0;
  std::istringstream fields(text.substr(end + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

double self_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

TEST(PoolTest, IdlePoolUsesNoCpu) {
  Watchdog dog("IdlePoolUsesNoCpu", 60s);
  mp::Pool pool(2);
  (void)pool.map(square, iota(1000), 1);
  std::this_thread::sleep_for(50ms);
  const auto pids = pool.pids();
  long workers_before = 0;
  for (pid_t pid : pids) workers_before += cpu_ticks(pid);
  const double self_before = self_cpu_seconds();
  std::this_thread::sleep_for(300ms);
  const double self_used = self_cpu_seconds() - self_before;
  long workers_used = 0;
  for (pid_t pid : pids) workers_used += cpu_ticks(pid);
  workers_used -= workers_before;
  // < 5 ms per second is the goal; 300 ms may cost 1.5 ms. Generous: 20 ms for this process
  // (the watchdog's thread and the test itself included), at most one clock tick per worker.
  EXPECT_LT(self_used, 0.020);
  EXPECT_LE(workers_used, static_cast<long>(pids.size()));
}

// A pool's workers end when the program that made the pool ends without closing it.
TEST(PoolTest, WorkersExitWhenTheParentDies) {
  auto [read_end, write_end] = concur::Pipe(false);
  // Forked while this is the only thread (the watchdog starts after): the child starts a
  // pool's thread, which ThreadSanitizer allows only after a single-threaded fork.
  const pid_t middle = concur::fork();
  if (middle == 0) {
    read_end.close();
    auto* pool = new mp::Pool(2);  // never destroyed: the process ends without closing it
    (void)pool->map(square, iota(10));
    std::vector<int> pids;
    for (pid_t pid : pool->pids()) pids.push_back(static_cast<int>(pid));
    write_end.send(pids);
    ::_exit(0);
  }
  Watchdog dog("WorkersExitWhenTheParentDies", 60s);
  write_end.close();
  const auto pids = read_end.recv<std::vector<int>>();
  ASSERT_EQ(pids.size(), 2u);
  ASSERT_EQ(::waitpid(middle, nullptr, 0), middle);
  // The orphans see end of file and exit; whoever adopts them reaps them (or they stay
  // zombies, which have exited too).
  for (int pid : pids) {
    EXPECT_TRUE(concur_test::eventually([&] {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      const auto end = text.rfind(')');
      return text.empty() || (end != std::string::npos && text[end + 2] == 'Z');
    })) << "worker "
        << pid << " still runs";
  }
}

}  // namespace
