// The shape of the example at the top of concur/connection.hpp: a structured binding from
// Pipe(), one end used by a Process's lambda. C++20 lets a lambda capture a structured binding,
// but Clang before 16 does not implement that ("reference to local binding declared in
// enclosing function"); an init-capture names the binding in an expression, which every
// compiler accepts. ctest compiles this with clang++-14 when it is installed (issue 12, item
// 21).

#include <string>

#include "concur/connection.hpp"
#include "concur/process.hpp"

int main() {
  auto [parent_end, child_end] = concur::Pipe();  // duplex: a Unix socket pair
  concur::Process child([&end = child_end] { end.send(std::string("hello")); });
  child.start();
  std::string greeting = parent_end.recv<std::string>();
  child.join();
  return greeting == "hello" ? 0 : 1;
}
