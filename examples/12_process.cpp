// Lesson 12: concur::Process, a function run in a child process.
//
// multiprocessing.Process wraps fork() the way threading.Thread wraps a thread: give it a target
// and its arguments, start() it, join() it. Afterwards `exitcode` says how the child ended: 0
// when the target returned, n after sys.exit(n), 1 after an uncaught exception, -N when signal N
// ended it. cpu_count() tells how many processes could run at once.
//
//     import multiprocessing, os, time
//
//     def work(task):
//         print(f"task {task} runs in {os.getpid()}, child of {os.getppid()}")
//
//     print("cpu_count:", multiprocessing.cpu_count())
//     workers = [multiprocessing.Process(target=work, args=(n,)) for n in range(3)]
//     for p in workers:
//         p.start()
//     for p in workers:
//         p.join()
//     sleeper = multiprocessing.Process(target=time.sleep, args=(10,))
//     sleeper.start()
//     sleeper.terminate()
//     sleeper.join()
//     print("exitcode after terminate():", sleeper.exitcode)   # -15
//
// The arguments are copied into the Process, and the child sees the parent's memory as it was
// at start(). exitcode() is a std::optional<int>, empty while the child runs. A target that
// returns an int sets the exit code; concur::exit_process(n) is sys.exit(n). An exception that
// escapes the target is written to the child's stderr as "Process NAME:" and its message.

#include <concur/process.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <stdexcept>
#include <string>
#include <thread>

void work(int task, pid_t parent) {
  const bool mine = concur::getppid() == parent;
  std::printf("task %d runs in pid %d, child of main: %s\n", task,
              static_cast<int>(concur::getpid()), mine ? "yes" : "no");
}

int exitcode_after(concur::Process& child) {
  child.start();
  child.join();
  return child.exitcode().value();
}

int main() {
  std::printf("cpu_count() = %d\n", concur::cpu_count());
  std::printf("process_cpu_count() <= cpu_count(): %s\n",
              concur::process_cpu_count() <= concur::cpu_count() ? "yes" : "no");

  std::deque<concur::Process> workers;  // Processes cannot move, so not a std::vector
  for (int task = 1; task <= 3; ++task) {
    workers.emplace_back(work, task, concur::getpid());
    workers.back().start();
  }
  for (concur::Process& worker : workers) {
    worker.join();
    std::printf("%s (pid %d) joined, exitcode %d\n", worker.name().c_str(),
                static_cast<int>(worker.pid().value()), worker.exitcode().value());
  }

  concur::Process returns_normally([] {});
  concur::Process returns_three([] { return 3; });
  concur::Process exits_with_seven([] { concur::exit_process(7); });
  concur::Process throws({.name = "faulty"}, [] { throw std::runtime_error("out of chalk"); });
  std::printf("exitcode after a normal return: %d\n", exitcode_after(returns_normally));
  std::printf("exitcode after returning 3: %d\n", exitcode_after(returns_three));
  std::printf("exitcode after exit_process(7): %d\n", exitcode_after(exits_with_seven));
  std::printf("exitcode after an uncaught exception: %d\n", exitcode_after(throws));

  concur::Process sleeper([] { std::this_thread::sleep_for(std::chrono::seconds(10)); });
  sleeper.start();
  std::printf("sleeper alive: %s, exitcode while running: %s\n", sleeper.is_alive() ? "yes" : "no",
              sleeper.exitcode() ? "set" : "none");
  sleeper.terminate();
  sleeper.join();
  std::printf("exitcode after terminate(): %d\n", sleeper.exitcode().value());
}
