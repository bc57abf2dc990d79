// Lesson 6: a Condition lets threads wait until shared data is the way they need it.
//
// A Condition is a lock plus a waiting room. A thread takes the lock and checks the data; if it
// cannot go on, wait() releases the lock and sleeps until another thread, having changed the
// data under the lock, calls notify() (one waiter) or notify_all(). The woken thread takes the
// lock back and checks again. Here a producer keeps the stock under 20 and a consumer only takes
// from a stock above 5.
//
//     import threading
//
//     stock = 0
//     cond = threading.Condition()         # its own RLock inside
//
//     def producer(rounds):
//         global stock
//         for _ in range(rounds):
//             with cond:
//                 while stock >= 20:
//                     cond.wait()
//                 stock += 5
//                 print("produced 5, stock", stock)
//                 cond.notify()
//
//     def consumer(rounds):
//         global stock
//         for _ in range(rounds):
//             with cond:
//                 cond.wait_for(lambda: stock > 5)
//                 stock -= 3
//                 print("consumed 3, stock", stock)
//                 cond.notify()
//
// concur::Condition has the same members; concur::Guard holds its lock as `with cond:` does.
// Instead of looping forever with sleep(1), each thread runs a fixed number of rounds: 12 times
// 5 made and 18 times 3 taken, so the consumer's last round still finds more than 5 (it waits
// for the producer's last round) and 6 are left at the end.

#include <concur/condition.hpp>
#include <concur/lock.hpp>
#include <concur/thread.hpp>

#include <cstdio>
#include <functional>

constexpr int production_rounds = 12;   // 5 made in each
constexpr int consumption_rounds = 18;  // 3 taken in each

struct Store {
  concur::Condition<> changed;  // owns an RLock, as Python's Condition() does
  int stock = 0;                // guarded by changed
};

void produce(Store& store) {
  for (int round = 0; round < production_rounds; ++round) {
    concur::Guard hold(store.changed);
    while (store.stock >= 20) store.changed.wait();  // releases the lock while it sleeps
    store.stock += 5;
    std::printf("produced 5, stock %d\n", store.stock);
    store.changed.notify();  // the consumer may be waiting for more than 5
  }
}

void consume(Store& store) {
  for (int round = 0; round < consumption_rounds; ++round) {
    concur::Guard hold(store.changed);
    store.changed.wait_for([&] { return store.stock > 5; });  // the same loop, written for us
    store.stock -= 3;
    std::printf("consumed 3, stock %d\n", store.stock);
    store.changed.notify();  // the producer may be waiting for less than 20
  }
}

int main() {
  Store store;
  concur::Thread producer(produce, std::ref(store));
  concur::Thread consumer(consume, std::ref(store));
  producer.start();
  consumer.start();
  producer.join();
  consumer.join();
  std::printf("left at the end: %d (made %d, took %d)\n", store.stock, 5 * production_rounds,
              3 * consumption_rounds);
}
