// The consumer program: includes concur, starts a thread, and says what it saw.
#include <concur/concur.hpp>

#include <cstdio>
#include <string>

int main() {
  std::string seen;
  concur::Thread worker({.name = "consumer-worker"},
                        [&seen] { seen = concur::current_thread().name(); });
  worker.start();
  worker.join();
  std::printf("consumer ok: concur %d.%d.%d, thread %s ran\n", CONCUR_VERSION_MAJOR,
              CONCUR_VERSION_MINOR, CONCUR_VERSION_PATCH, seen.c_str());
  return seen == "consumer-worker" ? 0 : 1;
}
