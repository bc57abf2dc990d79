// Must not compile, with one clear message (issue 12, item 19): a Process whose callable cannot
// be called with the arguments given. ctest compiles this file and expects the failure and the
// message "cannot be called with".

#include <concur/process.hpp>

#include <string>

int main() {
  concur::Process child([](int n) { return n; }, std::string("not a number"));
  child.start();
  child.join();
}
