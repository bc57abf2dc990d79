// Must not compile, with one clear message (issue 15): a process pool's task argument must go
// through concur's codec. ctest compiles this file and expects the failure and the message
// "through concur's codec".

#include <concur/process_pool.hpp>

struct Opaque {
  Opaque() = default;
  Opaque(const Opaque&) {}
  int value = 0;
};

int use(Opaque o) {
  return o.value;
}

int main() {
  concur::ProcessPoolExecutor pool(1);
  (void)pool.submit(use, Opaque{});
}
