// Tests of concur/detail/executor/block_cache.hpp: the big blocks a process pool keeps from one
// map to the next. What is kept, what is handed to whom, the budget, and that a map over a
// reused block never shows the previous map's bytes (a reused block is not cleared).

#include "concur/detail/executor/block_cache.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/executor/process_results.hpp"
#include "concur/detail/executor/process_worker.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::detail::BlockCache;
using concur::detail::Bytes;
using concur_test::Watchdog;

constexpr std::size_t MiB = std::size_t{1} << 20;

TEST(BlockCache, HandsABigBlockBackToTheNextTake) {
  BlockCache cache;
  std::size_t size = 3 * MiB;
  Bytes first = cache.take(size);
  ASSERT_NE(first, nullptr);
  EXPECT_GE(size, 3 * MiB);
  const char* where = first.get();
  cache.give(std::move(first), size);
  EXPECT_EQ(cache.kept_bytes(), size);
  std::size_t again = 5 * MiB / 2;
  Bytes second = cache.take(again);
  EXPECT_EQ(second.get(), where);
  EXPECT_EQ(again, size);  // the kept block's whole capacity
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

TEST(BlockCache, KeepsNoSmallBlock) {
  BlockCache cache;
  std::size_t size = 512 * 1024;
  Bytes small = cache.take(size);
  cache.give(std::move(small), size);
  EXPECT_EQ(cache.kept_bytes(), 0u);
  cache.give(nullptr, 4 * MiB);  // nothing to keep
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

// A small map does not take a block more than four times its size, and a block bigger than
// the whole budget is not kept.
TEST(BlockCache, MatchesSizesAndKeepsToItsBudget) {
  BlockCache cache;
  std::size_t big = 16 * MiB;
  Bytes block = cache.take(big);
  const char* where = block.get();
  cache.give(std::move(block), big);
  std::size_t small = 2 * MiB;
  Bytes other = cache.take(small);
  EXPECT_NE(other.get(), where);
  EXPECT_EQ(cache.kept_bytes(), big);
  std::size_t fits = 4 * MiB;
  EXPECT_EQ(cache.take(fits).get(), where);

  std::size_t huge = BlockCache::max_kept_bytes + 2 * MiB;
  Bytes too_big = cache.take(huge);
  cache.give(std::move(too_big), huge);
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

// Past the budget the oldest kept blocks make room for the newest.
TEST(BlockCache, FreesTheOldestToMakeRoom) {
  BlockCache cache;
  std::vector<const char*> where;
  std::vector<Bytes> blocks;
  const std::size_t size = BlockCache::max_kept_bytes / 8 * 3;  // two fit, not three
  for (int i = 0; i < 3; ++i) {
    std::size_t s = size;
    blocks.push_back(cache.take(s));
    ASSERT_EQ(s, size);
    where.push_back(blocks.back().get());
  }
  for (auto& b : blocks) cache.give(std::move(b), size);
  EXPECT_EQ(cache.kept_bytes(), 2 * size);
  std::size_t s1 = size, s2 = size, s3 = size;
  Bytes a = cache.take(s1);
  Bytes b = cache.take(s2);
  EXPECT_NE(a.get(), where[0]);
  EXPECT_NE(b.get(), where[0]);
  EXPECT_NE(a.get(), b.get());
  Bytes c = cache.take(s3);  // none kept: a new one
  EXPECT_NE(c.get(), a.get());
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

// A kept block is a mapping wiped in children: a fork() (a pool starting its workers) shares
// none of its pages copy-on-write, and the parent's bytes stay as they were.
TEST(BlockCache, AKeptBlockIsEmptyInAChild) {
  Watchdog dog("AKeptBlockIsEmptyInAChild", 60s);
  BlockCache cache;
  std::size_t size = 2 * MiB;
  Bytes block = cache.take(size);
  char* where = block.get();
  std::memset(where, 'x', size);
  cache.give(std::move(block), size);
  ASSERT_EQ(cache.kept_bytes(), size) << "no MADV_WIPEONFORK here: nothing is kept";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    bool empty = true;
    for (std::size_t i = 0; i < size; i += 4096) empty = empty && where[i] == 0;
    ::_exit(empty ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child saw the parent's bytes";
  std::size_t again = size;
  Bytes same = cache.take(again);
  ASSERT_EQ(same.get(), where);
  EXPECT_EQ(same[0], 'x');
  EXPECT_EQ(same[size - 1], 'x');
}

// A child forked while another thread uses the shared cache finds its lock free: the cache is
// held across fork(). Each child takes and gives a block under alarm(5); without the fork
// handlers, a fork that lands while the other thread holds the lock leaves it held for ever in
// the child.
TEST(BlockCache, AChildForkedDuringUseCanUseIt) {
  Watchdog dog("AChildForkedDuringUseCanUseIt", 120s);
  const std::shared_ptr<BlockCache>& cache = BlockCache::shared();
  std::atomic<bool> stop{false};
  std::thread user([&] {
    while (!stop.load()) {
      std::size_t size = 2 * MiB;
      Bytes block = cache->take(size);
      cache->give(std::move(block), size);
    }
  });
  int hung = 0;
  for (int i = 0; i < 200; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::alarm(5);
      std::size_t size = 2 * MiB;
      Bytes block = cache->take(size);
      cache->give(std::move(block), size);
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++hung;
      break;  // one is enough to know
    }
  }
  stop = true;
  user.join();
  EXPECT_EQ(hung, 0) << "children stuck on the cache's lock";
}

TEST(BlockCache, ForgetFreesEverything) {
  BlockCache cache;
  std::size_t s1 = 2 * MiB, s2 = 6 * MiB;
  Bytes a = cache.take(s1);
  Bytes b = cache.take(s2);
  cache.give(std::move(a), s1);
  cache.give(std::move(b), s2);
  EXPECT_EQ(cache.kept_bytes(), s1 + s2);
  cache.forget();
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

// shared_block's block goes back when its last owner lets go, and is simply freed when the
// cache is gone by then (ASan checks the latter).
TEST(BlockCache, ASharedBlockGoesBackWithItsLastOwner) {
  auto cache = std::make_shared<BlockCache>();
  std::size_t size = 2 * MiB;
  std::shared_ptr<char[]> block = concur::detail::shared_block(cache, size);
  const char* where = block.get();
  std::shared_ptr<char[]> copy = block;
  block.reset();
  EXPECT_EQ(cache->kept_bytes(), 0u);
  copy.reset();
  EXPECT_EQ(cache->kept_bytes(), size);
  std::size_t again = size;
  EXPECT_EQ(cache->take(again).get(), where);

  std::size_t orphan_size = 2 * MiB;
  std::shared_ptr<char[]> orphan = concur::detail::shared_block(cache, orphan_size);
  orphan[0] = 'x';
  cache.reset();
  orphan.reset();

  std::size_t plain_size = 2 * MiB;
  EXPECT_NE(concur::detail::shared_block(nullptr, plain_size), nullptr);
}

// The process pools' maps through one WorkerPool, as mp::Pool::imap and
// ProcessPoolExecutor::map run them.
std::int64_t square64(std::int64_t x) {
  return x * x;
}
std::int64_t plus_one(std::int64_t x) {
  return x + 1;
}
std::int64_t fail_at_12345(std::int64_t x) {
  if (x == 12345) throw std::invalid_argument("item 12345");
  return -x;
}

template <class F>
concur::detail::ResultStream<std::int64_t> start_map(concur::detail::WorkerPool& core, F fn,
                                                     const std::vector<std::int64_t>& items,
                                                     std::size_t chunksize) {
  using namespace concur::detail;
  auto sink =
      std::make_shared<IMapSink<std::int64_t>>(items.size(), chunksize, true, core.blocks());
  auto jobs = chunk_jobs<F, std::int64_t, false>(process_callable_bits(fn), items, items.size(),
                                                 chunksize, sink, core.blocks());
  core.submit(std::move(jobs), "closed");
  return ResultStream<std::int64_t>(std::move(sink));
}

// Waits (up to 20 s) until `cache` keeps `bytes`: the items' block goes back from the I/O
// thread once its last chunk is sent, which may be after the last result is read.
bool kept_within(const BlockCache& cache, std::size_t bytes) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (cache.kept_bytes() != bytes) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(BlockCache, ConsecutiveMapsReuseTheBlocksAndNeverShowOldResults) {
  Watchdog dog("ConsecutiveMapsReuseTheBlocksAndNeverShowOldResults", 120s);
  BlockCache::shared()->forget();  // what other tests in this program left
  concur::detail::WorkerPool core(2, {}, 0);
  std::vector<std::int64_t> items(300000);  // 2.4 MB of items, and of results
  std::iota(items.begin(), items.end(), std::int64_t{0});
  EXPECT_EQ(core.blocks(), BlockCache::shared());
  EXPECT_EQ(core.blocks()->kept_bytes(), 0u);
  {
    auto stream = start_map(core, square64, items, 1000);
    for (std::int64_t i = 0; i < 300000; ++i) ASSERT_EQ(stream.next(), i * i);
    EXPECT_EQ(stream.next(), std::nullopt);
  }
  // The items' block and the results' block: 4 MiB each (whole huge pages).
  ASSERT_TRUE(kept_within(*core.blocks(), 8 * MiB)) << core.blocks()->kept_bytes();
  {
    auto stream = start_map(core, plus_one, items, 7000);
    for (std::int64_t i = 0; i < 300000; ++i) ASSERT_EQ(stream.next(), i + 1);
  }
  // Reused, not added to: still the same two blocks.
  ASSERT_TRUE(kept_within(*core.blocks(), 8 * MiB)) << core.blocks()->kept_bytes();
  {
    // The failed chunk's place in the reused results block still holds the last map's
    // results; they must never be handed out.
    auto stream = start_map(core, fail_at_12345, items, 1000);
    for (std::int64_t i = 0; i < 12000; ++i) ASSERT_EQ(stream.next(), -i);
    EXPECT_THROW((void)stream.next(), concur::RemoteError);
    for (std::int64_t i = 13000; i < 300000; ++i) ASSERT_EQ(stream.next(), -i);
    EXPECT_EQ(stream.next(), std::nullopt);
  }
  ASSERT_TRUE(kept_within(*core.blocks(), 8 * MiB)) << core.blocks()->kept_bytes();
  core.close();
  core.join();
}

// A pool made after another finds the blocks that one kept: its workers' fork() does not
// empty the cache, and its first map reuses them.
TEST(BlockCache, ANewPoolFindsTheBlocksOfTheOneBefore) {
  Watchdog dog("ANewPoolFindsTheBlocksOfTheOneBefore", 120s);
  BlockCache::shared()->forget();
  std::vector<std::int64_t> items(300000);
  std::iota(items.begin(), items.end(), std::int64_t{0});
  {
    concur::detail::WorkerPool first(2, {}, 0);
    auto stream = start_map(first, square64, items, 5000);
    for (std::int64_t i = 0; i < 300000; ++i) ASSERT_EQ(stream.next(), i * i);
    ASSERT_TRUE(kept_within(*BlockCache::shared(), 4 * MiB)) << "the items' block";
  }
  ASSERT_TRUE(kept_within(*BlockCache::shared(), 8 * MiB)) << BlockCache::shared()->kept_bytes();
  concur::detail::WorkerPool second(2, {}, 0);
  EXPECT_EQ(BlockCache::shared()->kept_bytes(), 8 * MiB);
  {
    auto stream = start_map(second, plus_one, items, 5000);
    EXPECT_EQ(BlockCache::shared()->kept_bytes(), 0u) << "the new map took both blocks";
    for (std::int64_t i = 0; i < 300000; ++i) ASSERT_EQ(stream.next(), i + 1);
  }
  ASSERT_TRUE(kept_within(*BlockCache::shared(), 8 * MiB)) << BlockCache::shared()->kept_bytes();
  second.close();
  second.join();
}

// Maps whose workers are replaced as they go (each replacement a fork()) stay right.
TEST(BlockCache, MapsStayRightWhileWorkersAreReplaced) {
  Watchdog dog("MapsStayRightWhileWorkersAreReplaced", 120s);
  BlockCache::shared()->forget();
  concur::detail::WorkerPool core(2, {}, 5);
  std::vector<std::int64_t> items(200000);
  std::iota(items.begin(), items.end(), std::int64_t{0});
  for (int round = 0; round < 6; ++round) {
    auto stream = start_map(core, round % 2 == 0 ? square64 : plus_one, items, 20000);
    for (std::int64_t i = 0; i < 200000; ++i) {
      ASSERT_EQ(stream.next(), round % 2 == 0 ? i * i : i + 1) << round;
    }
    EXPECT_EQ(stream.next(), std::nullopt);
  }
  EXPECT_LE(core.blocks()->kept_bytes(), BlockCache::max_kept_bytes);
  core.close();
  core.join();
}

}  // namespace
