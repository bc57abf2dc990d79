// Must not compile, with one clear message (issue 15): a process pool's task cannot capture
// state, since a forked worker receives no code. ctest compiles this file and expects the
// failure and the message "cannot receive code or captured state".

#include <concur/pool.hpp>

#include <vector>

int main() {
  concur::mp::Pool pool(1);
  int offset = 3;
  (void)pool.map([offset](int x) { return x + offset; }, std::vector<int>{1, 2});
}
