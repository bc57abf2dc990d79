// concur/simple_queue.hpp
//
// concur::SimpleQueue, Python's queue.SimpleQueue: an unbounded first-in, first-out queue
// without task tracking or shutdown. put() never blocks; get() blocks while the queue is empty.
//
//   concur::SimpleQueue<std::string> lines;
//   lines.put("hello");
//   std::string line = lines.get();
//
// It is the locked FIFO of concur::Queue (a Lock, a Condition and a std::deque) behind Python's
// smaller interface. Memory ordering: everything a thread did before put() is visible to the
// thread whose get() returns that item.

#ifndef CONCUR_SIMPLE_QUEUE_HPP
#define CONCUR_SIMPLE_QUEUE_HPP

#include <chrono>
#include <concepts>
#include <cstddef>
#include <optional>
#include <utility>

#include "concur/detail/deadline.hpp"
#include "concur/detail/locked_queue_core.hpp"
#include "concur/errors.hpp"

namespace concur {

// SimpleQueue
//
// Python's queue.SimpleQueue.
template <class T>
class SimpleQueue {
 public:
  using value_type = T;

  SimpleQueue() = default;
  SimpleQueue(const SimpleQueue&) = delete;
  SimpleQueue& operator=(const SimpleQueue&) = delete;

  // SimpleQueue::put(item), put_nowait(item)
  //
  // Adds `item` (copied, moved, or built from the argument); never blocks, as the queue is
  // unbounded. Braces work too: `pairs.put({1, 2L})` builds a T (the argument's type defaults
  // to T, since braces have none of their own).
  template <class U = T>
  requires std::constructible_from<T, U&&>
  void put(U&& item) {
    T made(std::forward<U>(item));
    (void)core_.put(std::move(made), detail::never);
  }
  template <class U = T>
  requires std::constructible_from<T, U&&>
  void put_nowait(U&& item) { put(std::forward<U>(item)); }

  // SimpleQueue::emplace(args...)
  //
  // Builds an item from `args` (any constructor of T, explicit ones included) and adds it;
  // never blocks.
  template <class... Args>
  requires std::constructible_from<T, Args&&...>
  void emplace(Args&&... args) {
    T made(std::forward<Args>(args)...);
    (void)core_.put(std::move(made), detail::never);
  }

  // SimpleQueue::get(), get(block), get(timeout), get_nowait()
  //
  // Removes and returns the next item: get() waits while the queue is empty; get(false) and
  // get_nowait() throw Empty instead of waiting; get(timeout) throws Empty after `timeout` (a
  // negative one throws std::invalid_argument).
  T get() { return expect(get_until(detail::never)); }
  T get(bool block) { return expect(get_until(block ? detail::never : detail::steady_time{})); }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    return expect(get_until(detail::deadline_after(timeout)));
  }
  T get_nowait() { return get(false); }

  // SimpleQueue::try_get(), try_get(timeout)
  //
  // As get(false) and get(timeout), returning an empty optional instead of throwing Empty.
  [[nodiscard]] std::optional<T> try_get() { return get_until(detail::steady_time{}); }
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> try_get(std::chrono::duration<Rep, Period> timeout) {
    detail::require_non_negative(timeout, "'timeout' must be a non-negative number");
    return get_until(detail::deadline_after(timeout));
  }

  // SimpleQueue::qsize(), empty()
  //
  // The number of items, and whether there are none (snapshots).
  [[nodiscard]] std::size_t qsize() { return core_.qsize(); }
  [[nodiscard]] bool empty() { return qsize() == 0; }

 private:
  std::optional<T> get_until(detail::steady_time deadline) {
    std::optional<T> out;
    (void)core_.get(out, deadline);
    return out;
  }

  static T expect(std::optional<T>&& item) {
    if (!item) throw Empty();
    return std::move(*item);
  }

  detail::LockedCore<T, detail::FifoStore<T>> core_{0};
};

}  // namespace concur

#endif  // CONCUR_SIMPLE_QUEUE_HPP
