// Must not compile, with one clear message (issue 12, item 19): a Connection passed to a Process
// without std::move. Connections cannot be copied; the Process stores its own copy of every
// argument, so a move-only argument must be moved in. ctest compiles this file and expects the
// failure and the message "pass it with std::move".

#include <concur/connection.hpp>
#include <concur/process.hpp>

int main() {
  auto [parent_end, child_end] = concur::Pipe();
  concur::Process child([](concur::Connection& end) { end.send(1); }, child_end);
  child.start();
  child.join();
  return parent_end.recv<int>() == 1 ? 0 : 1;
}
