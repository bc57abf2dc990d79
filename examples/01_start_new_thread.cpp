// Lesson 1: starting a thread the low-level way.
//
// Python's `_thread` module starts a function on a new thread and forgets about it; there is no
// join, so the main thread has to wait some other way. `_thread.exit()` ends a thread early.
//
//     import _thread, time
//
//     def greet(name, times):
//         for i in range(times):
//             print(f"hello {name} ({i + 1}/{times})")
//         if name == "Bob":
//             _thread.exit()          # Bob leaves before saying goodbye
//         print(f"goodbye {name}")
//
//     _thread.start_new_thread(greet, ("Alice", 2))
//     _thread.start_new_thread(greet, ("Bob", 2))
//     time.sleep(1)
//
// concur::start_new_thread(f, args...) returns the new thread's ident; concur::exit_thread()
// ends the calling thread quietly (destructors still run on the way out). Here the main thread
// waits for a counter instead of sleeping a fixed time.

#include <concur/thread.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

std::atomic<int> finished{0};

void greet(const std::string& name, int times) {
  struct CountOnExit {  // runs however the thread ends, exit_thread() included
    ~CountOnExit() { ++finished; }
  } count_on_exit;
  for (int i = 1; i <= times; ++i) std::printf("hello %s (%d/%d)\n", name.c_str(), i, times);
  if (name == "Bob") concur::exit_thread();  // Bob leaves before saying goodbye
  std::printf("goodbye %s\n", name.c_str());
}

int main() {
  // start_new_thread returns the new thread's ident. (An ident may be reused once its thread
  // has ended, so two threads that do not overlap can show the same one.)
  const std::uint64_t alice = concur::start_new_thread(greet, std::string("Alice"), 2);
  const std::uint64_t bob = concur::start_new_thread(greet, std::string("Bob"), 2);
  std::printf("started two threads, idents %s\n", alice != 0 && bob != 0 ? "non-zero" : "missing");

  while (finished < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::printf("both threads are done\n");
}
