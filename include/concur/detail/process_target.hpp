// concur/detail/process_target.hpp
//
// What a concur::Process runs in its child: the callable and its arguments, stored in the Process
// at construction (copied or moved, as std::thread stores them), called in the child with lvalues
// of the stored copies, and turned into an exit code. make_process_target() checks the arguments
// first, so that a mistake costs one line of compiler output, not two hundred from inside
// std::tuple (issue 12, item 19).

#ifndef CONCUR_DETAIL_PROCESS_TARGET_HPP
#define CONCUR_DETAIL_PROCESS_TARGET_HPP

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "concur/detail/close_on_fork.hpp"

namespace concur::detail {

// The callable a Process runs in its child, with its arguments bound; returns the exit code.
class ProcessTarget {
 public:
  virtual ~ProcessTarget() = default;
  virtual int operator()() = 0;
};

template <class F, class... Args>
class BoundProcessTarget final : public ProcessTarget {
 public:
  template <class G, class... As>
  explicit BoundProcessTarget(G&& callable, As&&... arguments)
      : parts_(std::forward<G>(callable), std::forward<As>(arguments)...) {
    // A Connection among the arguments is meant for this child: close-on-fork must not take it
    // from it (detail/close_on_fork.hpp).
    std::apply([](auto&, auto&... stored) { (keep_in_child(stored), ...); }, parts_);
  }

  int operator()() override {
    return std::apply(
        [](auto& callable, auto&... arguments) -> int {
          using Result = std::invoke_result_t<F&, Args&...>;
          if constexpr (std::is_convertible_v<Result, int>) {
            return static_cast<int>(std::invoke(callable, arguments...));
          } else {
            std::invoke(callable, arguments...);
            return 0;
          }
        },
        parts_);
  }

 private:
  std::tuple<F, Args...> parts_;
};

// The target for Process(f, args...), after a static_assert per way the arguments can fail; when
// one fails, nothing else is instantiated (no cascade of errors from std::tuple).
template <class F, class... Args>
std::unique_ptr<ProcessTarget> make_process_target(F&& f, Args&&... args) {
  constexpr bool storable_f = std::is_constructible_v<std::decay_t<F>, F>;
  constexpr bool storable_args = (std::is_constructible_v<std::decay_t<Args>, Args> && ...);
  constexpr bool callable = std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>;
  static_assert(storable_f,
                "concur::Process(f, args...): f cannot be copied into the Process; pass it with "
                "std::move");
  static_assert(storable_args,
                "concur::Process(f, args...): an argument cannot be copied into the Process (a "
                "Connection, a unique_ptr: move-only); pass it with std::move");
  static_assert(!storable_f || !storable_args || callable,
                "concur::Process(f, args...): f cannot be called with these arguments (the child "
                "calls f with lvalues of the Process's own copies of args)");
  if constexpr (storable_f && storable_args && callable) {
    return std::make_unique<BoundProcessTarget<std::decay_t<F>, std::decay_t<Args>...>>(
        std::forward<F>(f), std::forward<Args>(args)...);
  } else {
    return nullptr;
  }
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_PROCESS_TARGET_HPP
