// Lesson 3: a thread class that overrides run().
//
// The third way to make a thread: subclass `threading.Thread`, give the thread a name in the
// constructor, and put its work in `run()`.
//
//     import threading
//
//     class Countdown(threading.Thread):
//         def __init__(self, name, start):
//             threading.Thread.__init__(self, name=name)
//             self.start_at = start
//
//         def run(self):
//             for n in range(self.start_at, 0, -1):
//                 print(f"{self.name}: {n}")
//             print(f"{self.name}: liftoff")
//
//     rocket = Countdown("rocket", 3)
//     rocket.start()
//     rocket.join()
//
// In C++ the derived class passes its options to concur::Thread's constructor and overrides
// `void run()`. Its destructor joins: a derived class's members are destroyed before
// ~Thread() runs, so a thread that uses them must be joined while they still exist.

#include <concur/thread.hpp>

#include <cstdio>
#include <string>

class Countdown : public concur::Thread {
 public:
  Countdown(std::string name, int start) : Thread({.name = std::move(name)}), start_(start) {}
  ~Countdown() override {
    if (is_alive()) join();
  }

  void run() override {
    for (int n = start_; n > 0; --n) std::printf("%s: %d\n", name().c_str(), n);
    std::printf("%s: liftoff\n", name().c_str());
  }

 private:
  int start_;
};

int main() {
  Countdown rocket("rocket", 3);
  rocket.start();
  rocket.join();
  std::printf("%s ended; alive: %s\n", rocket.name().c_str(), rocket.is_alive() ? "yes" : "no");
}
