// concur/mp_event.hpp
//
// concur::mp::Event, Python's multiprocessing.Event: a flag that threads of any process wait
// for.
//
//   namespace mp = concur::mp;
//   mp::Event ready;                      // before the worker starts
//   // worker process:                    // parent:
//   ready.wait();                         prepare();
//   go();                                 ready.set();
//
// The protocol is concur::Event's (concur/event.hpp) on a word in shared memory with the shared
// futex (detail/shared_waits.hpp). Where it lives: as mp::Lock (an anonymous block shared with
// the processes forked afterwards, or mp::place and mp::find in a named SharedMemory).
//
// A process that dies: a set() that is killed between its change to the word and its wake call
// costs the waiters at most SharedWaits::recheck_interval (200 ms); nothing else can hang.
//
// Linux; it needs no robust futex list.
//
// Memory ordering: set() happens-before a wait() that returns true, across processes.

#ifndef CONCUR_MP_EVENT_HPP
#define CONCUR_MP_EVENT_HPP

#include <chrono>
#include <cstddef>

#include "concur/detail/shared_block.hpp"
#include "concur/detail/shared_waits.hpp"
#include "concur/event.hpp"
#include "concur/mp_lock.hpp"
#include "concur/shared_memory.hpp"

namespace concur::mp {

// Event
//
// Python's multiprocessing.Event: set(), clear(), is_set(), wait(), wait(timeout), between
// processes. Not movable.
class Event {
  using State = concur::BasicEvent<concur::detail::SharedWaits>;
  using Home = detail_lock::Home<State, /*robust=*/false>;
  static constexpr auto kind = concur::detail::SharedKind::event;

 public:
  // Event::shared_size, Event::shared_alignment
  //
  // As mp::Lock's.
  static constexpr std::size_t shared_size = Home::layout(kind).size();
  static constexpr std::size_t shared_alignment = Home::layout(kind).alignment();

  // Event(), Event(mp::place, memory, offset), Event(mp::find, memory, offset)
  //
  // An event whose flag is not set, in an anonymous shared block, or placed in or found in a
  // named SharedMemory.
  Event() : state_(kind) {}
  Event(place_t, SharedMemory& memory, std::size_t offset = 0)
      : state_(place, memory, offset, kind) {}
  Event(find_t, SharedMemory& memory, std::size_t offset = 0)
      : state_(find, memory, offset, kind) {}

  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Event::set(), clear(), is_set()
  //
  // As concur::Event's: set() wakes every waiter in every process.
  void set() noexcept { state_->set(); }
  void clear() noexcept { state_->clear(); }
  [[nodiscard]] bool is_set() const noexcept { return state_->is_set(); }

  // Event::wait(), wait(timeout)
  //
  // Blocks until the flag is set (true), or the timeout has passed (false; a negative timeout
  // counts as zero).
  bool wait() noexcept { return state_->wait(); }
  template <class Rep, class Period>
  [[nodiscard]] bool wait(std::chrono::duration<Rep, Period> timeout) noexcept {
    return state_->wait(timeout);
  }

 private:
  Home state_;
};

}  // namespace concur::mp

#endif  // CONCUR_MP_EVENT_HPP
