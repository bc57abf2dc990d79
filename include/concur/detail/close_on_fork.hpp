// concur/detail/close_on_fork.hpp
//
// Close-on-fork for concur's connection descriptors: POSIX.1-2024's FD_CLOFORK, which Linux
// lacks, emulated for the descriptors concur owns. ForkFd owns a descriptor as UniqueFd does,
// and also enters it in a process-wide registry; concur::fork() calls close_on_fork_in_child()
// in the child, which closes every registered descriptor marked close-on-fork there. Nothing
// else changes for the child: descriptors that are not marked are inherited as fork(2) does,
// and a raw ::fork() closes nothing.
//
// Which descriptors are marked. The problem (issue 12 item 9): the natural process pool
//
//   for each worker: auto [parent_end, child_end] = Pipe();
//                    Process p(worker, std::move(child_end)); p.start(); keep parent_end;
//   later: send each worker its jobs, close its parent_end, join it
//
// hangs, because every later child inherits the parent's ends to the earlier workers (and each
// worker its own parent_end), so a worker that reads until end of file never sees it. Only the
// Pipe knows which of its ends went where, so the rules are about Pipe pairs:
//
//   1. An end of a Pipe is marked close-on-fork once its peer end has been closed in this
//      process while the end itself stays open.
//   2. If that peer had been moved (into a Process's arguments, typically) before it was
//      closed here, closing the end also shuts its socket down (shutdown(SHUT_RDWR)), for every
//      copy: the peer sees end of file even though a child inherited a copy of this end.
//
// Why rule 1. After Pipe() both ends are in this process, and a child forked now may need
// either (a lambda that captures an end by reference; an end in a Process's arguments): neither
// is marked, so nothing changes for programs that pass ends the way Python's documentation
// does (by reference, or as arguments, then close the child's end in the parent). Once one end
// is closed here while the other stays open, the open end talks to another process (the closed
// end lives on in a child that inherited it, as after Process::start() drops its copy of a
// moved-in argument) or to nobody. It is this process's own side of a conversation with one
// particular process; a sibling forked later has no use for it, and holding it would keep the
// conversation from ever seeing end of file. This is parent_end above, for later workers.
//
// Why rule 2. Rule 1 acts at the next fork; the child that got the peer was forked while both
// ends were open, so it holds a copy of this end too (worker i holds parent_end i), and a close
// here would leave that copy open. Only a shutdown ends the stream for all copies. It is safe
// when the child holding the peer is the only other holder, which is what moving the peer away
// says: the end was given to one child (Process's arguments are moved in and dropped here at
// start()), while an end shared with several children is normally captured by reference (never
// moved: Pipe() builds its ends in place). Rule 2 is what makes the natural program above end.
//
// What the rules never close or shut down: an end whose peer is still open in this process (so
// a lambda that captures the child's end by reference keeps working, and so does the child's
// end passed as a Process argument); a descriptor given to Connection(fd) (it has no peer); a
// descriptor a child already holds (rule 1 acts at the next fork, in the new child only).
//
// The patterns the rules cannot tell apart from the pool, and how to say what is meant:
//   - handing a child an end whose peer already lives in another process (a pipeline: the
//     producer started with the write end moved in, then the consumer with the read end). That
//     end is marked, so the consumer's child finds it closed: it gets a clear error (the
//     registry remembers that the fork closed it, so the number is never used or closed again,
//     even once reused), and Connection::set_close_on_fork(false) before starting the consumer
//     says "this end goes to a child" (it also turns rule 2 off for that end). Process can do
//     this for its arguments itself: keep_in_child(argument) on each one.
//   - an end shared with children forked earlier, whose peer was moved away and closed here:
//     closing it here shuts it down for them too; set_close_on_fork(false) keeps it plain.
//
// Locking: one mutex guards the registry; pthread_atfork holds it across every fork(), so the
// child never sees the list half-changed and finds the mutex free. Creating, moving and closing
// a ForkFd costs one allocation and the mutex at creation and close, nothing per message.
//
// POSIX only.

#ifndef CONCUR_DETAIL_CLOSE_ON_FORK_HPP
#define CONCUR_DETAIL_CLOSE_ON_FORK_HPP

#include "concur/detail/at_fork.hpp"
#include "concur/detail/config.hpp"

#if !CONCUR_POSIX
#error "concur's close-on-fork registry needs a POSIX system"
#endif

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>

#include "concur/detail/schedule.hpp"

namespace concur::detail {

// One registered descriptor. Lives on the heap so that the ForkFd owning it can move freely.
struct ForkNode {
  enum class Mode : std::uint8_t { by_rule, always_close, never_close };

  int fd = -1;
  ForkNode* peer = nullptr;  // the other end of its Pipe, while open in this process
  ForkNode* prev = nullptr;  // the registry's list
  ForkNode* next = nullptr;
  Mode mode = Mode::by_rule;
  bool moved = false;           // its ForkFd was moved (to a Process's arguments, say)
  bool peer_gone = false;       // the peer was closed in this process while this end was open
  bool peer_was_moved = false;  // ... and had been moved before (rule 2)
  bool closed_by_fork = false;  // in a child: close_on_fork_in_child() closed it

  bool marked() const noexcept {
    return mode == Mode::always_close || (mode == Mode::by_rule && peer_gone);
  }
  bool shut_down_on_close() const noexcept {
    return mode == Mode::by_rule && peer_gone && peer_was_moved;
  }
};

// The process-wide list of registered descriptors.
class ForkRegistry {
 public:
  // The registry, created on first use (and never destroyed: Connections in static storage may
  // close after other statics are gone).
  static ForkRegistry& instance() {
    static ForkRegistry* const registry = [] {
      auto* made = new ForkRegistry;
      existing_slot().store(made, std::memory_order_release);
      return made;
    }();
    return *registry;
  }

  // The registry if any descriptor was ever registered, else nullptr (the fork hook's fast
  // path: a program without Connections pays one load).
  static ForkRegistry* existing() noexcept {
    return existing_slot().load(std::memory_order_acquire);
  }

  std::mutex& mutex() noexcept { return mutex_; }

  // With mutex() held.
  void insert(ForkNode* node) noexcept {
    node->prev = &head_;
    node->next = head_.next;
    head_.next->prev = node;
    head_.next = node;
  }
  void erase(ForkNode* node) noexcept {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = nullptr;
  }
  template <class F>
  void for_each(F&& visit) noexcept {
    for (ForkNode* node = head_.next; node != &head_; node = node->next) visit(node);
  }

 private:
  ForkRegistry() noexcept {
    head_.prev = head_.next = &head_;
    // Held across fork() by whichever thread forks: the child's copy of the list is whole, and
    // its mutex is released by the child's handler (the forking thread is the child's only
    // thread, and the owner of the lock there).
    at_fork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
            [] { instance().mutex_.unlock(); });
  }

  static std::atomic<ForkRegistry*>& existing_slot() noexcept {
    static std::atomic<ForkRegistry*> slot{nullptr};
    return slot;
  }

  std::mutex mutex_;
  ForkNode head_;  // sentinel of a circular list
};

// ForkFd
//
// Owns a registered descriptor: UniqueFd's interface, plus its Pipe peer and its close-on-fork
// mark. get() is -1 once closed, including in a child where the fork closed it.
class ForkFd {
 public:
  ForkFd() noexcept = default;

  // Takes `fd`. Throws std::bad_alloc before taking anything (the caller still owns `fd`).
  explicit ForkFd(int fd) : node_(new ForkNode) {
    node_->fd = fd;
    ForkRegistry& registry = ForkRegistry::instance();
    std::lock_guard<std::mutex> hold(registry.mutex());
    registry.insert(node_);
  }

  // Moves record that they happened (rule 2). Only the owner writes `moved`, and the registry
  // reads it only while that owner closes its own end: no lock needed.
  ForkFd(ForkFd&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {
    if (node_ != nullptr) node_->moved = true;
  }
  ForkFd& operator=(ForkFd&& other) noexcept {
    if (this != &other) {
      reset();
      node_ = std::exchange(other.node_, nullptr);
      if (node_ != nullptr) node_->moved = true;
    }
    return *this;
  }
  ForkFd(const ForkFd&) = delete;
  ForkFd& operator=(const ForkFd&) = delete;
  ~ForkFd() { reset(); }

  int get() const noexcept { return node_ != nullptr ? node_->fd : -1; }
  explicit operator bool() const noexcept { return get() >= 0; }

  // Whether a fork closed this descriptor in this (child) process.
  bool closed_by_fork() const noexcept { return node_ != nullptr && node_->closed_by_fork; }

  // Closes the descriptor and leaves the registry; the peer, if open, becomes close-on-fork
  // (rule 1, and rule 2 if this end had been moved; a shutdown first if rule 2 applies to this
  // end). The close happens under the registry's mutex, so a concurrent fork sees the
  // descriptor either registered and open, or neither (never a closed number, which the child
  // might find reused). close() is not retried on EINTR (see UniqueFd::reset).
  void reset() noexcept {
    if (node_ == nullptr) return;
    {
      ForkRegistry& registry = ForkRegistry::instance();
      std::lock_guard<std::mutex> hold(registry.mutex());
      CONCUR_SCHEDULE_POINT("close_on_fork.reset.locked");
      registry.erase(node_);
      if (node_->peer != nullptr) {
        node_->peer->peer_gone = true;
        node_->peer->peer_was_moved = node_->moved;
        node_->peer->peer = nullptr;
      }
      if (node_->fd >= 0) {
        if (node_->shut_down_on_close()) ::shutdown(node_->fd, SHUT_RDWR);  // ENOTSOCK: fine
        ::close(node_->fd);
      }
    }
    delete node_;
    node_ = nullptr;
  }

  // Makes this end (open) and `first` (open, built just before) the two ends of one Pipe.
  void link_to(ForkNode* first) noexcept {
    std::lock_guard<std::mutex> hold(ForkRegistry::instance().mutex());
    first->peer = node_;
    node_->peer = first;
  }
  ForkNode* node() const noexcept { return node_; }

  // Whether the next fork's child closes this descriptor.
  bool close_on_fork() const noexcept {
    if (node_ == nullptr) return false;
    std::lock_guard<std::mutex> hold(ForkRegistry::instance().mutex());
    return node_->marked();
  }

  // Overrides the rule for this descriptor: true always closes it in children, false never.
  void set_close_on_fork(bool close) noexcept {
    if (node_ == nullptr) return;
    std::lock_guard<std::mutex> hold(ForkRegistry::instance().mutex());
    node_->mode = close ? ForkNode::Mode::always_close : ForkNode::Mode::never_close;
  }

 private:
  ForkNode* node_ = nullptr;
};

// close_on_fork_in_child()
//
// In a child just forked (concur::fork() calls it): closes every registered descriptor marked
// close-on-fork, and records that the fork closed it. The child is single-threaded here and
// the atfork handler has released the mutex; taking it anyway costs nothing and keeps the
// thread-safety story simple.
inline void close_on_fork_in_child() noexcept {
  ForkRegistry* registry = ForkRegistry::existing();
  if (registry == nullptr) return;
  std::lock_guard<std::mutex> hold(registry->mutex());
  registry->for_each([](ForkNode* node) {
    if (node->fd >= 0 && node->marked()) {
      ::close(node->fd);
      node->fd = -1;
      node->closed_by_fork = true;
    }
  });
}

// keep_in_child(argument)
//
// For Process: called on each argument stored for the child, it exempts a Connection (any type
// with set_close_on_fork) from close-on-fork, since the child is where it is meant to go.
// Anything else is left alone.
template <class T>
void keep_in_child(T& argument) noexcept {
  if constexpr (requires { argument.set_close_on_fork(false); }) {
    argument.set_close_on_fork(false);
  }
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_CLOSE_ON_FORK_HPP
