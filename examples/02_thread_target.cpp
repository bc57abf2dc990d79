// Lesson 2: concur::Thread with a target function and its arguments.
//
// `threading.Thread(target=f, args=(...))` wraps a function in a thread object that can be
// started, named, counted and joined. `threading.enumerate()` lists the live threads.
//
//     import threading, time
//
//     def sing(song, verses):
//         for verse in range(verses):
//             print(f"{threading.current_thread().name}: {song}, verse {verse + 1}")
//             time.sleep(0.01)
//
//     t = threading.Thread(target=sing, args=("Daisy Bell", 3))
//     t.start()
//     print("threads running:", len(threading.enumerate()))
//     t.join()
//     print("threads running:", len(threading.enumerate()))
//
// The arguments are copied into the thread when it is built, as std::thread does. Unnamed
// threads get Python's default name, "Thread-N (sing)"; the function's name is shown when the
// program exports its symbols (this example is linked with -rdynamic for that).

#include <concur/thread.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

void sing(const std::string& song, int verses) {
  for (int verse = 1; verse <= verses; ++verse) {
    std::printf("%s: %s, verse %d\n", concur::current_thread().name().c_str(), song.c_str(), verse);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int main() {
  concur::Thread singer(sing, std::string("Daisy Bell"), 3);
  concur::Thread named({.name = "choir"}, sing, std::string("Frere Jacques"), 2);

  singer.start();
  named.start();
  std::printf("threads running: %zu\n", concur::enumerate().size());  // main + 2
  for (const concur::ThreadHandle& thread : concur::enumerate()) {
    std::printf("  %s\n", thread.name().c_str());
  }

  singer.join();
  named.join();
  std::printf("threads running after join: %zu\n", concur::active_count());  // main only
}
