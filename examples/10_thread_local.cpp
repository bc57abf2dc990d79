// Lesson 10: per-thread state with concur::local<T>.
//
// Each thread wants its own copy of some state (here, the student its desk is serving) that
// every function it calls can reach. Passing it down through every call is tedious, and a global
// dict keyed by threading.current_thread() needs a lock and is never cleaned up.
// threading.local() gives every thread its own attributes on one shared object:
//
//     import threading
//
//     desk = threading.local()
//
//     def show_student():
//         print(f"{threading.current_thread().name} serves {desk.student}")
//
//     def enrol(name):
//         desk.student = name
//         show_student()
//
//     for name in ("Alice", "Bob", "Carol"):
//         threading.Thread(target=enrol, args=(name,), name=f"desk-{name}").start()
//
// concur::local<T> holds one T per thread, built (here by T's default constructor) on the
// thread's first access and destroyed when the thread exits. Beyond Python, for_each() visits
// every live thread's value and combine() folds them, so per-thread tallies can be added up
// without a shared, locked counter.

#include <concur/barrier.hpp>
#include <concur/event.hpp>
#include <concur/local.hpp>
#include <concur/thread.hpp>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

struct Student {
  std::string name;
  int lessons = 0;
};

concur::local<Student> student;   // each thread sees its own Student
concur::Barrier all_enrolled(4);  // the three desks and main
concur::Event desks_may_close;    // keeps the desks (and their values) alive for main's tally

void show_student() {  // no parameter: it finds the calling thread's own student
  std::printf("%s serves %s, %d lessons\n", concur::current_thread().name().c_str(),
              student->name.c_str(), student->lessons);
}

void enrol(const std::string& name, int lessons) {
  student->name = name;
  for (int i = 0; i < lessons; ++i) ++student->lessons;
  show_student();
  all_enrolled.wait();
  desks_may_close.wait();
}

int main() {
  const std::vector<std::pair<std::string, int>> enrolments{{"Alice", 3}, {"Bob", 2}, {"Carol", 4}};
  std::deque<concur::Thread> desks;  // Threads cannot move, so not a std::vector
  for (const auto& [name, lessons] : enrolments) {
    desks.emplace_back(concur::ThreadOptions{.name = "desk-" + name}, enrol, name, lessons);
    desks.back().start();
  }

  all_enrolled.wait();  // every desk has filled in its own Student
  std::vector<std::string> names;
  student.for_each([&](const Student& s) { names.push_back(s.name); });
  std::sort(names.begin(), names.end());  // for_each's order is the order of first access
  std::printf("students seen by for_each:");
  for (const std::string& name : names) std::printf(" %s", name.c_str());
  std::printf("\n");
  const Student total = student.combine([](Student sum, const Student& s) {
    sum.lessons += s.lessons;
    return sum;
  });
  std::printf("lessons in all, by combine(): %d\n", total.lessons);

  desks_may_close.set();
  for (concur::Thread& desk : desks) desk.join();  // each desk's Student is destroyed with it
  std::printf("main's own student: '%s', %d lessons\n", student->name.c_str(), student->lessons);
  int values = 0;
  student.for_each([&](const Student&) { ++values; });
  std::printf("values left after the desks closed: %d (main's own)\n", values);
}
