// concur/detail/executor/work_queue.hpp
//
// The thread pool's queue of tasks: an unbounded first-in first-out list of intrusive nodes (the
// tasks themselves, so a submit allocates nothing more) that any number of threads push without
// a lock and that consumers pop one at a time under a lock.
//
// Push is Dmitry Vyukov's intrusive MPSC queue: one exchange on the tail, then a store that
// links the previous tail to the new node. Consumers take `pop_lock_` to pop, so to them it is a
// single-consumer queue; the lock is held for a few loads and stores, and the submitting
// threads never touch it.
//
// The one gap: between a producer's exchange and its link, the list is cut (the consumer sees
// no next node though the tail moved on). pop() reports that as `in_flight`, not `empty`. A
// consumer never waits for the link by spinning on it: if the producer was preempted right
// there, that could take a whole time slice. It goes to sleep on the pool's event count instead
// (thread_pool.hpp): the producer notifies after its link, so the consumer is woken once the
// node is reachable:
//
//   producer                         consumer
//   tail.exchange(node)
//                                    pop(): head has no next, tail != head -> in_flight
//                                    events.prepare_wait(); pop() again -> in_flight; sleep
//   prev->next = node (seq_cst)
//   events.notify_one()  ----------> wakes, pops node
//
// Memory ordering: the link is a seq_cst store and pop() reads links with seq_cst loads, as the
// event count's contract asks of the change a notifier makes and the check a waiter does
// (event_count.hpp). The exchange is acq_rel: the node's contents (the task, its arguments) are
// written before it and read after the consumer's load of the link that the exchange
// precedes; the link store is a release of them too.

#ifndef CONCUR_DETAIL_EXECUTOR_WORK_QUEUE_HPP
#define CONCUR_DETAIL_EXECUTOR_WORK_QUEUE_HPP

#include <atomic>

#include "concur/detail/executor/future_state.hpp"
#include "concur/detail/schedule.hpp"
#include "concur/lock.hpp"

namespace concur::detail {

class WorkQueue {
 public:
  enum class PopStatus { got, empty, in_flight };

  WorkQueue() noexcept : tail_(&stub_), head_(&stub_) {}
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // WorkQueue::push(node)
  //
  // Appends `node` (not in any queue). Wait-free: one exchange and one store.
  void push(QueueNode* node) noexcept {
    node->queue_next.store(nullptr, std::memory_order_relaxed);
    QueueNode* prev = tail_.exchange(node, std::memory_order_acq_rel);
    // Here the list is cut until the next store (see the header comment).
    CONCUR_SCHEDULE_POINT("work_queue.push.before_link");
    prev->queue_next.store(node, std::memory_order_seq_cst);
  }

  // WorkQueue::pop(out)
  //
  // Takes the oldest node into `out`: `got`; or `empty`; or `in_flight` when a push has begun
  // and not yet linked its node (the queue is not empty, but nothing can be taken yet).
  PopStatus pop(QueueNode*& out) noexcept {
    pop_lock_.lock();
    const PopStatus status = pop_locked(out);
    pop_lock_.unlock();
    return status;
  }

  // WorkQueue::pop_some(out, max)
  //
  // Takes up to `max` of the oldest nodes into out[0..), oldest first, under one hold of the pop
  // lock; returns how many (0 when the queue is empty or its next node is in flight).
  int pop_some(QueueNode** out, int max) noexcept {
    pop_lock_.lock();
    int taken = 0;
    while (taken < max) {
      taken += take_linked(out + taken, max - taken);
      if (taken == max || pop_locked(out[taken]) != PopStatus::got) break;
      ++taken;
    }
    pop_lock_.unlock();
    return taken;
  }

  // WorkQueue::maybe_nonempty()
  //
  // A seq_cst peek for sleepers' checks: true if a node is or is about to be in the queue.
  //
  // The head matters too: a consumer that found the head's link cut (in_flight) and had put the
  // stub back at the tail leaves head -> ... -> stub = tail, with the stub unlinked, and every
  // node before the stub still queued:
  //
  //   consumer (pop lock)                          producer
  //   head = X; X.next == null, tail == X
  //                                                tail.exchange(Y) -> X   (X.next not linked)
  //   push(stub): tail.exchange(stub) -> Y, Y.next = stub
  //   X.next == null -> in_flight (head stays X)
  //                                                X.next = Y; notify: nobody registered
  //   register; tail == stub, stub.next == null: "empty" -> sleep, with X and Y queued
  //
  // (found by Stress.ThreadPoolBurst under schedule exploration: both workers asleep, a task
  // pending). A head that is not the stub is a node not yet popped. The consumer's seq_cst
  // store of the head precedes its exchange and its look at X.next, which precedes the
  // producer's link and notify: so a sleeper's check that comes after that notify in the single
  // order sees the head.
  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return head_.load(std::memory_order_seq_cst) != &stub_ ||
           tail_.load(std::memory_order_seq_cst) != &stub_ ||
           stub_.queue_next.load(std::memory_order_seq_cst) != nullptr;
  }

 private:
  PopStatus pop_locked(QueueNode*& out) noexcept {
    QueueNode* head = head_.load(std::memory_order_relaxed);  // only consumers write it
    QueueNode* next = head->queue_next.load(std::memory_order_seq_cst);
    if (head == &stub_) {
      if (next == nullptr) {
        return tail_.load(std::memory_order_seq_cst) == &stub_ ? PopStatus::empty
                                                               : PopStatus::in_flight;
      }
      head_.store(next, std::memory_order_seq_cst);
      head = next;
      next = head->queue_next.load(std::memory_order_seq_cst);
    }
    if (next != nullptr) {
      head_.store(next, std::memory_order_seq_cst);
      out = head;
      return PopStatus::got;
    }
    // `head` is the last linked node: if it is also the tail, put the stub behind it so that
    // it can be taken without leaving the list empty of nodes.
    if (tail_.load(std::memory_order_seq_cst) != head) return PopStatus::in_flight;
    CONCUR_SCHEDULE_POINT("work_queue.pop.before_stub");  // a push may come in here
    push(&stub_);
    next = head->queue_next.load(std::memory_order_seq_cst);
    if (next != nullptr) {
      head_.store(next, std::memory_order_seq_cst);
      out = head;
      return PopStatus::got;
    }
    return PopStatus::in_flight;
  }

  // Under the pop lock: takes up to `max` nodes that have a successor, with one store of the head
  // for them all (pop_locked() stores it once per node); returns how many. Stops at the stub and
  // at the last linked node, which need pop_locked()'s care. Meanwhile the head in memory is a
  // node already taken, not the stub, so a sleeper's maybe_nonempty() can only err towards
  // "nonempty" (one more look), never towards "empty"; and the head is stored before any later
  // pop_locked() puts the stub back, as that function's proof asks.
  int take_linked(QueueNode** out, int max) noexcept {
    QueueNode* head = head_.load(std::memory_order_relaxed);
    int taken = 0;
    for (; taken < max && head != &stub_; ++taken) {
      QueueNode* next = head->queue_next.load(std::memory_order_seq_cst);
      if (next == nullptr) break;
      out[taken] = head;
      head = next;
    }
    if (taken > 0) head_.store(head, std::memory_order_seq_cst);
    return taken;
  }

  alignas(64) std::atomic<QueueNode*> tail_;  // producers
  // Consumers, under pop_lock_; sleepers read it too (maybe_nonempty()).
  alignas(64) std::atomic<QueueNode*> head_;
  QueueNode stub_;
  Lock pop_lock_;
};

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_EXECUTOR_WORK_QUEUE_HPP
