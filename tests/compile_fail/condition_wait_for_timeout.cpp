// Must not compile: Condition::wait_for takes a predicate (Python's names); the timed wait is
// wait(timeout). The error must say so (issue 12, item 18).

#include <chrono>

#include "concur/condition.hpp"

int main() {
  using namespace std::chrono_literals;
  concur::Condition cond;
  concur::Guard hold(cond);
  return cond.wait_for(10ms) ? 0 : 1;  // a std::condition_variable habit
}
