// concur/detail/thread_token.hpp
//
// A small number naming the calling thread among the live threads of the process, for locks
// that name their owner in a 32-bit word beside the lock word (RLock). A thread gets its number
// on first use and gives it back when it exits, so numbers stay small however many threads come and
// go. A fork()ed child keeps its thread's number (thread-local memory is copied), so a lock the
// forking thread held is still its own in the child, as Python's RLock is.

#ifndef CONCUR_DETAIL_THREAD_TOKEN_HPP
#define CONCUR_DETAIL_THREAD_TOKEN_HPP

#include <pthread.h>

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

  // The key whose value is the calling thread's token: its destructor gives the token back at
  // thread exit.
  pthread_key_t key() const noexcept { return key_; }

 private:
  // The key's destructor. The token travels as the key's value, so giving it back reads no
  // thread-local object; it resets current_thread_token, which only its own thread reads (where
  // thread-locals are emulated and their storage is already freed, the write allocates it
  // afresh, harmlessly).
  static void give_back_at_exit(void* raw) noexcept;

  ThreadTokens() {
    if (pthread_key_create(&key_, &give_back_at_exit) != 0) throw std::bad_alloc();
    // A thread that vanished in fork() may have held the mutex.
    at_fork(nullptr, nullptr, [] { new (&instance().mutex_) std::mutex(); });
  }

  pthread_key_t key_{};
  std::mutex mutex_;
  std::vector<std::uint32_t> free_;
  std::uint32_t next_ = 1;
};

// The calling thread's token, or 0 before its first use. A plain thread_local, so that reading
// it costs one load and stays valid during the thread's thread_local destructors.
inline thread_local std::uint32_t current_thread_token = 0;

inline void ThreadTokens::give_back_at_exit(void* raw) noexcept {
  if (raw == nullptr) return;  // winpthreads may call a key's destructor with its null value
  current_thread_token = 0;
  instance().give_back(static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(raw)));
}

// Takes a token for the calling thread and arranges for it to be given back at thread exit,
// through a pthread key rather than a thread_local with a destructor (issue 14, item 5: where
// thread-locals are emulated, such a destructor runs after their storage is freed). With glibc
// the key's destructor runs after every C++ thread_local destructor, so the token stays valid
// through them; a thread that needs a token again after that (from another key's destructor)
// takes a fresh one, given back by the next round of key destructors.
CONCUR_NOINLINE inline std::uint32_t take_thread_token() {
  ThreadTokens& tokens = ThreadTokens::instance();
  const std::uint32_t token = tokens.take();
  if (pthread_setspecific(tokens.key(), reinterpret_cast<void*>(std::uintptr_t{token})) != 0) {
    tokens.give_back(token);
    throw std::bad_alloc();
  }
  current_thread_token = token;
  return token;
}

// The calling thread's token.
inline std::uint32_t thread_token() {
  if (CONCUR_LIKELY(current_thread_token != 0)) return current_thread_token;
  return take_thread_token();
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_THREAD_TOKEN_HPP
