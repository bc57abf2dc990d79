// Lesson 8: an Event lets threads wait for a signal.
//
// threading.Event holds a flag, false at first. wait() blocks until some thread calls set(),
// which sets the flag and wakes every waiting thread at once; is_set() reads the flag, and
// wait(timeout) gives up after the timeout, returning False. Here runners wait at the start line
// until the main thread fires the starting signal.
//
//     import threading
//
//     class Runner(threading.Thread):
//         def __init__(self, name, start_signal):
//             threading.Thread.__init__(self, name=name)
//             self.start_signal = start_signal
//
//         def run(self):
//             self.start_signal.wait()        # blocks until set()
//             print(f"{self.name}: off")
//
//     start_signal = threading.Event()
//     print(start_signal.wait(0.01))         # False: nobody has set it
//     runners = [Runner(f"runner {i}", start_signal) for i in range(1, 4)]
//     for runner in runners: runner.start()
//     start_signal.set()
//
// concur::Event has the same members; wait(timeout) takes a std::chrono duration. The runners
// count how many got past wait() so that main can show nobody started before set().

#include <concur/event.hpp>
#include <concur/thread.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <string>
#include <thread>

using namespace std::chrono_literals;

class Runner : public concur::Thread {
 public:
  Runner(std::string name, concur::Event& start_signal, std::atomic<int>& started)
      : Thread({.name = std::move(name)}), start_signal_(start_signal), started_(started) {}
  ~Runner() override {
    if (is_alive()) join();
  }

  void run() override {
    start_signal_.wait();  // blocks until main calls set()
    ++started_;
    std::printf("%s: off\n", name().c_str());
  }

 private:
  concur::Event& start_signal_;
  std::atomic<int>& started_;
};

int main() {
  concur::Event start_signal;
  std::printf("before set: is_set %s, wait(10ms) %s\n", start_signal.is_set() ? "true" : "false",
              start_signal.wait(10ms) ? "true" : "false");

  std::atomic<int> started{0};
  std::deque<Runner> runners;  // a Thread cannot move, and a deque never moves it
  for (int i = 1; i <= 3; ++i) {
    runners.emplace_back("runner " + std::to_string(i), start_signal, started);
  }
  for (Runner& runner : runners) runner.start();

  std::this_thread::sleep_for(20ms);  // time for the runners to reach the start line
  std::printf("runners started before set: %d\n", started.load());
  start_signal.set();  // wakes them all
  for (Runner& runner : runners) runner.join();

  std::printf("after set: is_set %s, wait(10ms) %s, runners started: %d\n",
              start_signal.is_set() ? "true" : "false", start_signal.wait(10ms) ? "true" : "false",
              started.load());
}
