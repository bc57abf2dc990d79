// Lesson 7: a Queue does the locking and waiting of lesson 6 for you.
//
// queue.Queue(maxsize) is a thread-safe FIFO: put() waits while it is full, get() waits while it
// is empty. task_done() tells the queue that a got item has been dealt with, and join() waits
// until every item ever put has been. shutdown() (Python 3.13) stops the consumers: once the
// queue is empty, their get() raises queue.ShutDown.
//
//     import threading, queue
//
//     products = queue.Queue(maxsize=20)    # a producer waits while 20 are waiting
//
//     def consumer():
//         try:
//             while True:
//                 item = products.get()
//                 ...                       # use the item
//                 products.task_done()
//         except queue.ShutDown:
//             pass
//
//     for item in range(1, 61):
//         products.put(item)
//     products.join()                       # every item has been used
//     products.shutdown()                   # wakes the consumers, which stop
//
// concur::Queue<T> has the same members and throws concur::ShutDown, so the Python above can
// be written word for word with try/catch. C++ has two shorter ways to say "until the queue is
// shut down", without an exception:
//
//     for (int item : concur::drain(products)) { ... }      // a range-for over what comes
//     while (auto item = products.next()) { ... *item ... }  // std::optional, empty at the end
//
// Each waits for the next item as get() does, and ends where get() would throw ShutDown: once
// the queue is shut down and every item put before that has been taken (at once after
// shutdown(true), which drops them). Here two producers put items 1..60 and three consumers
// add up what they get; whoever gets which item, the sums add up to 1 + 2 + ... + 60 = 1830.

#include <concur/queue.hpp>
#include <concur/thread.hpp>

#include <cstdio>
#include <deque>
#include <functional>
#include <vector>

constexpr int item_count = 60;
constexpr int consumer_count = 3;

// Puts first, first + step, first + 2 * step, ... up to item_count.
void produce(concur::Queue<int>& products, int first, int step) {
  for (int item = first; item <= item_count; item += step) products.put(item);
}

void consume(concur::Queue<int>& products, int number, long& sum, int& count) {
  for (int item : concur::drain(products)) {  // waits while the queue is empty
    sum += item;
    ++count;
    products.task_done();
  }
  std::printf("consumer %d stopped: the queue was shut down\n", number);
}

int main() {
  concur::Queue<int> products(20);
  std::vector<long> sums(consumer_count, 0);
  std::vector<int> counts(consumer_count, 0);
  std::deque<concur::Thread> consumers;  // a Thread cannot move, and a deque never moves it
  for (int i = 0; i < consumer_count; ++i) {
    consumers.emplace_back(consume, std::ref(products), i + 1, std::ref(sums[i]),
                           std::ref(counts[i]));
    consumers.back().start();
  }

  concur::Thread odd(produce, std::ref(products), 1, 2);
  concur::Thread even(produce, std::ref(products), 2, 2);
  odd.start();
  even.start();
  odd.join();
  even.join();

  products.join();  // returns once task_done() was called for every item
  std::printf("every item was processed; %zu left in the queue\n", products.qsize());
  products.shutdown();
  for (concur::Thread& consumer : consumers) consumer.join();

  long sum = 0;
  int count = 0;
  for (int i = 0; i < consumer_count; ++i) {
    sum += sums[i];
    count += counts[i];
  }
  std::printf("consumed %d items, checksum %ld (expected %d)\n", count, sum,
              item_count * (item_count + 1) / 2);
}
