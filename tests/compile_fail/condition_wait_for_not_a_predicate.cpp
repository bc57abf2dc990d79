// Must not compile: Condition::wait_for's argument must be callable with no arguments and give
// something testable as a bool; the error must name the constraint (issue 12, item 18).

#include "concur/condition.hpp"

int main() {
  concur::Condition cond;
  concur::Guard hold(cond);
  return cond.wait_for(42) ? 0 : 1;
}
