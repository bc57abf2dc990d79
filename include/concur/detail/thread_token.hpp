// concur/detail/thread_token.hpp
//
// A small number naming the calling thread among the live threads of the process, for locks
// that name their owner in a 32-bit word beside the lock word (RLock). A thread gets its number
// on first use and gives it back when it exits, so numbers stay small however many threads come and
// go. A fork()ed child keeps its thread's number (thread-local memory is copied), so a lock the
// forking thread held is still its own in the child, as Python's RLock is.

#ifndef CONCUR_DETAIL_THREAD_TOKEN_HPP
#define CONCUR_DETAIL_THREAD_TOKEN_HPP

#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/config.hpp"

namespace concur::detail {

class ThreadTokens {
 public:
  // Tokens are 1 .. max_token (0 means "nobody").
  static constexpr std::uint32_t max_token = (1u << 29) - 1;

  static ThreadTokens& instance() {
    static ThreadTokens* const tokens = new ThreadTokens();  // never destroyed
    return *tokens;
  }

  std::uint32_t take() {
    std::lock_guard<std::mutex> hold(mutex_);
    if (!free_.empty()) {
      const std::uint32_t token = free_.back();
      free_.pop_back();
      return token;
    }
    if (next_ > max_token) throw std::bad_alloc();  // 536 million live threads
    return next_++;
  }

  void give_back(std::uint32_t token) noexcept {
    std::lock_guard<std::mutex> hold(mutex_);
    try {
      free_.push_back(token);
    } catch (...) {
      // Out of memory: the token is simply never reused.
    }
  }

 private:
  ThreadTokens() {
    // A thread that vanished in fork() may have held the mutex.
    at_fork(nullptr, nullptr, [] { new (&instance().mutex_) std::mutex(); });
  }

  std::mutex mutex_;
  std::vector<std::uint32_t> free_;
  std::uint32_t next_ = 1;
};

// The calling thread's token, or 0 before its first use. A plain thread_local, so that reading
// it costs one load and stays valid during the thread's thread_local destructors.
inline thread_local std::uint32_t current_thread_token = 0;

// Takes a token for the calling thread and arranges for it to be given back at thread exit.
// A thread that needs a token again after that (from a later thread_local destructor) takes a
// fresh one, which is then never given back.
CONCUR_NOINLINE inline std::uint32_t take_thread_token() {
  struct GiveBack {
    ~GiveBack() {
      if (current_thread_token != 0) ThreadTokens::instance().give_back(current_thread_token);
      current_thread_token = 0;
    }
  };
  static thread_local GiveBack give_back;
  (void)&give_back;
  current_thread_token = ThreadTokens::instance().take();
  return current_thread_token;
}

// The calling thread's token.
inline std::uint32_t thread_token() {
  if (CONCUR_LIKELY(current_thread_token != 0)) return current_thread_token;
  return take_thread_token();
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_THREAD_TOKEN_HPP
