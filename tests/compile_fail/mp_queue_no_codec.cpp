// Must not compile, with one clear message: an mp::Queue's item that is not trivially copyable
// goes through concur's codec, and this one has none. ctest compiles this file and expects the
// failure and the codec's message, "concur has no codec for this type".

#include <concur/mp_queue.hpp>

struct Opaque {
  Opaque() = default;
  Opaque(const Opaque&) {}
  int value = 0;
};

int main() {
  concur::mp::Queue<Opaque> queue;
  queue.put(Opaque{});
}
