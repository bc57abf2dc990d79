// Lesson 11: fork(), getpid() and getppid().
//
// fork() is called once and returns twice: the system copies the calling process, and both
// copies go on from the same spot. The child gets 0; the parent gets the child's pid, so a parent
// can keep track of many children while each child asks getppid() for its parent.
//
//     import os
//
//     print(f"parent {os.getpid()} is about to fork")
//     pid = os.fork()
//     if pid == 0:
//         print(f"child: my pid is {os.getpid()}, my parent is {os.getppid()}")
//         os._exit(0)
//     else:
//         print(f"parent: my child is {pid}")
//         os.waitpid(pid, 0)
//
// concur::fork() flushes stdio before it forks, so text still waiting in the buffer is not
// written twice, once by each process. The child ends with _exit(), which skips the atexit
// handlers and static destructors that belong to the parent, so it flushes its own output first.
// The parent reaps the child with waitpid(), which also waits until all of its output is
// written; the child reports whether getppid() matched through its exit status.

#include <concur/process.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

int main() {
  const pid_t parent = concur::getpid();
  std::printf("parent %d is about to fork\n", static_cast<int>(parent));

  const pid_t pid = concur::fork();
  if (pid == 0) {
    const pid_t my_parent = concur::getppid();
    std::printf("child: fork() returned 0, my pid is %d\n", static_cast<int>(concur::getpid()));
    std::printf("child: my parent is %d\n", static_cast<int>(my_parent));
    std::fflush(stdout);
    ::_exit(my_parent == parent ? 0 : 1);
  }

  std::printf("parent: fork() returned %d, my child's pid\n", static_cast<int>(pid));
  int status = 0;
  ::waitpid(pid, &status, 0);
  const bool matched = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("parent: child's parent matches me: %s\n", matched ? "yes" : "no");
}
