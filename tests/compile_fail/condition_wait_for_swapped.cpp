// Must not compile: Condition::wait_for takes the predicate first, then the timeout, as
// Python's does. The error must say so (issue 12, item 18).

#include <chrono>

#include "concur/condition.hpp"

int main() {
  using namespace std::chrono_literals;
  concur::Condition cond;
  concur::Guard hold(cond);
  bool ready = false;
  return cond.wait_for(10ms, [&] { return ready; }) ? 0 : 1;
}
