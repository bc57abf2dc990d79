// A standalone regression program for MinGW-w64 under Wine (issue 14, item 5), run by
// .ci/windows: where thread-locals are emulated (MinGW GCC's emutls), the storage of every
// thread_local is freed by a pthread key destructor and C++ thread_local destructors run after
// it, so concur::local's and the thread tokens' thread-exit paths, which wrote through pointers
// to thread-locals, corrupted the heap (4 runs out of 4 crashed under Wine 8 before the fix).
// Many threads each build values of many locals (past the first 64 slots) and take a thread
// token (an uncontended RLock), then exit while the locals live on; every value must be
// destroyed exactly once. Nothing here blocks in concur's wait path, so the program does not
// depend on std::atomic::wait under Wine. Exit status 0 on success.

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "concur/local.hpp"
#include "concur/rlock.hpp"

namespace {

std::atomic<long> built{0};
std::atomic<long> destroyed{0};

struct Counted {
  std::string payload = std::string(100, 'x');
  Counted() { built.fetch_add(1); }
  Counted(const Counted&) = delete;
  ~Counted() { destroyed.fetch_add(1); }
};

}  // namespace

int main() {
  constexpr int locals_per_round = 70;
  for (int round = 0; round < 100; ++round) {
    std::vector<std::unique_ptr<concur::local<Counted>>> locals;
    for (int i = 0; i < locals_per_round; ++i) {
      locals.push_back(std::make_unique<concur::local<Counted>>());
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < locals_per_round; i += 3) locals[i]->get().payload += "y";
        concur::RLock mine;  // takes the thread's token
        mine.acquire();
        mine.release();
      });
    }
    for (std::thread& thread : threads) thread.join();
    locals.clear();
  }
  if (built.load() == 0 || built.load() != destroyed.load()) {
    std::fprintf(stderr, "FAIL: %ld values built, %ld destroyed\n", built.load(), destroyed.load());
    return 1;
  }
  std::printf("ok: %ld values built and destroyed\n", built.load());
  return 0;
}
