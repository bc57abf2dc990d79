// Lesson 9: joining with a timeout, and daemon threads.
//
// join() makes one thread wait until another has finished; given a timeout, it gives up after
// that long, so the waiter is never stuck for good. At exit Python waits for every non-daemon
// thread, while a daemon thread (`setDaemon(True)`, or `daemon=True`) is abandoned: it dies with
// the program.
//
//     import threading, time
//
//     def slow_task():
//         time.sleep(0.2)
//         print("slow task: done")
//
//     def watch():
//         while True:
//             time.sleep(0.01)
//
//     slow = threading.Thread(target=slow_task)
//     slow.start()
//     slow.join(0.05)
//     print("alive after join(0.05):", slow.is_alive())
//     slow.join()
//
//     watcher = threading.Thread(target=watch)
//     watcher.setDaemon(True)
//     watcher.start()
//     print("main: leaving, the watcher is still running")
//
// join(timeout) returns true once the thread has ended (Python returns None and you ask
// is_alive()); here the slow task also waits for main's go-ahead, so the first join times out
// for certain. Where Python waits for non-daemon threads at exit, a started non-daemon
// concur::Thread is joined by its destructor; a daemon Thread's destructor leaves the thread
// running, and returning from main ends the process, daemon threads included. A daemon thread
// may still run while static objects are destroyed, so it must not use them: this one sleeps.

#include <concur/event.hpp>
#include <concur/thread.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

using namespace std::chrono_literals;

concur::Event go_ahead;  // keeps the slow task running until main has seen a join time out

void slow_task() {
  go_ahead.wait();
  std::this_thread::sleep_for(100ms);
  std::printf("slow task: done\n");
}

std::atomic<bool> saved{false};

void save_work() {
  std::this_thread::sleep_for(50ms);
  saved = true;
}

void watch() {  // never returns; it touches nothing, so it can be abandoned at any moment
  for (;;) std::this_thread::sleep_for(10ms);
}

int main() {
  concur::Thread slow(slow_task);
  slow.start();
  const bool ended_early = slow.join(50ms);
  std::printf("join(50ms) returned %s, alive: %s\n", ended_early ? "true" : "false",
              slow.is_alive() ? "yes" : "no");
  go_ahead.set();
  const bool ended = slow.join(5s);
  std::printf("join(5s) returned %s, alive: %s\n", ended ? "true" : "false",
              slow.is_alive() ? "yes" : "no");

  {
    concur::Thread saver(save_work);  // not a daemon: its destructor waits for it
    saver.start();
  }
  std::printf("after the saver's scope, work saved: %s\n", saved ? "yes" : "no");

  concur::Thread watcher(watch);
  watcher.set_daemon(true);  // or: concur::Thread watcher({.daemon = true}, watch);
  watcher.start();
  std::printf("watcher is a daemon: %s\n", watcher.daemon() ? "yes" : "no");
  std::printf("join(20ms) on the watcher returned %s\n", watcher.join(20ms) ? "true" : "false");
  std::printf("main: returning while the watcher still runs\n");
}
