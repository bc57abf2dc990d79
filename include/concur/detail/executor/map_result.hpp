// concur/detail/executor/map_result.hpp
//
// What an executor's map() returns (Python's Executor.map): every task is submitted at the
// call, and the results are yielded in the order of the arguments, each waited for when the
// iteration reaches it, within a timeout counted from the call. Destroying the range before the
// end cancels the tasks that have not started, as closing Python's generator does.

#ifndef CONCUR_DETAIL_EXECUTOR_MAP_RESULT_HPP
#define CONCUR_DETAIL_EXECUTOR_MAP_RESULT_HPP

#include <chrono>
#include <cstddef>
#include <iterator>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/deadline.hpp"
#include "concur/detail/executor/future.hpp"

namespace concur {

// MapOptions
//
// The optional arguments of an executor's map(): a timeout counted from the call (Python's
// timeout=), and how many items each task takes (Python's chunksize=; a thread pool ignores
// it, as Python's does).
struct MapOptions {
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
  int chunksize = 1;
};

// MapResult<R>
//
// An input range of R: the results of an executor's map(), in order. Iterating blocks for each
// result; a task's exception is rethrown from the iterator's dereference, TimeoutError when the
// map's timeout passes first. Move-only.
template <class R>
class MapResult {
 public:
  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    using reference = const R&;

    iterator() = default;
    // The current result: waits for it (a timeout gives TimeoutError), rethrows its exception.
    reference operator*() const { return owner_->get(index_); }
    iterator& operator++() {
      owner_->release(index_);
      ++index_;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return it.index_ >= it.owner_->size();
    }

   private:
    friend class MapResult;
    iterator(MapResult* owner) noexcept : owner_(owner) {}
    MapResult* owner_ = nullptr;
    std::size_t index_ = 0;
  };

  MapResult(std::vector<Future<R>> futures, detail::steady_time deadline) noexcept
      : futures_(std::move(futures)), deadline_(deadline) {}
  MapResult(MapResult&&) noexcept = default;
  MapResult& operator=(MapResult&&) noexcept = default;
  ~MapResult() {
    for (auto& future : futures_) {
      if (future.valid()) future.cancel();
    }
  }

  // MapResult::begin(), end()
  //
  // One pass: begin() may be called once.
  iterator begin() noexcept { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

  // MapResult::size()
  //
  // How many results the map yields.
  [[nodiscard]] std::size_t size() const noexcept { return futures_.size(); }

 private:
  const R& get(std::size_t index) {
    Future<R>& future = futures_[index];
    if (deadline_ == detail::never) return future.result();
    return future.result(deadline_ - detail::steady_clock::now());
  }
  // A yielded result is released as the iteration moves on, as Python's generator drops it.
  void release(std::size_t index) noexcept {
    if (index < futures_.size()) futures_[index] = Future<R>();
  }

  std::vector<Future<R>> futures_;
  detail::steady_time deadline_;
};

namespace detail {

// The deadline of a map() call with `options`.
inline steady_time map_deadline(const MapOptions& options) noexcept {
  return options.timeout ? deadline_after(*options.timeout) : never;
}

// Calls submit(elements...) for each position of the ranges in lockstep, until the shortest
// ends (Python's zip(*iterables)).
template <class Submit, class... Ranges>
void for_each_zipped(Submit&& submit, Ranges&&... ranges) {
  auto iterators = std::make_tuple(std::ranges::begin(ranges)...);
  const auto ends = std::make_tuple(std::ranges::end(ranges)...);
  auto any_at_end = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return ((std::get<I>(iterators) == std::get<I>(ends)) || ...);
  };
  constexpr auto indices = std::index_sequence_for<Ranges...>{};
  while (!any_at_end(indices)) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      submit(*std::get<I>(iterators)...);
      (++std::get<I>(iterators), ...);
    }
    (indices);
  }
}

}  // namespace detail

}  // namespace concur

#endif  // CONCUR_DETAIL_EXECUTOR_MAP_RESULT_HPP
