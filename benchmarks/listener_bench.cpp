// Listener and Client over TCP on 127.0.0.1: concur::connection's against plain blocking sockets
// and against Python's multiprocessing.connection (benchmarks/listener_python.py, when python3
// was found at configure time).
//
// Scenarios:
//   rtt-64B-tcp     a 64-byte message sent and echoed back, on a connection made with an authkey
//                   (the round trips start after the handshake and a few warm-up trips); a
//                   thread on the accepted end echoes (recv_bytes, then send_bytes). Time per
//                   round trip. Rows: concur (Client against Listener::accept()); raw sockets
//                   (blocking TCP sockets with TCP_NODELAY on both ends, as concur's; the
//                   4-byte length header and the payload written in one send() and read back
//                   the same way, so the same 68 bytes cross the wire; no handshake); Python
//                   (Client and Listener, send_bytes and recv_bytes, the echo in a thread too).
//                   The concur and raw rows pin the client and the echo to two different CPUs,
//                   the same two in both rows (see PinnedToCpu); Python's runs unpinned.
//   connect-auth    connections made one after the other with an authkey on both sides: the time
//                   from the Client() call until both Client() and the accepting thread's
//                   accept() have returned (each side stamps the moment its call returned; the
//                   later one ends the interval); both ends are closed after the interval, before
//                   the next Client() call, so closing is not timed. Rows: concur, Python. concur's
//                   Listener sends the "{sha256}" challenge; Python's is its own version's
//                   (HMAC-MD5 without a digest name before 3.12, "{sha256}" from 3.12), printed
//                   under the tables.
//   connect-noauth  the same without an authkey (no target): concur, Python, and raw sockets
//                   (socket() + connect() against accept(), TCP_NODELAY on both ends).
//
// Targets (ratios of medians within one run): the 64-byte round trip at most 1.1x raw
// sockets' time; set-up with authentication at most 0.5x Python's time. After the summaries the
// program prints each target with its numbers and whether it holds.
//
// CPU per operation (bench_support.hpp) is the whole process's, the echoing or accepting thread
// included (for a set-up, over its interval: closing is not counted); Python's is its
// interpreter's (time.process_time, every thread, over the same intervals). Every repetition
// makes its own listener, threads and connections outside the timed region.
//
// No repetition can hang: a side that fails wakes the other (a failed Client() is followed by
// a connection that closes at once, which ends the accepting thread's accept()), and a
// handshake waits at most its handshake_timeout (10 s).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include <concur/listener.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "bench_targets.hpp"

namespace {

using concur_bench::Kind;
using concur_bench::scaled;
using Clock = std::chrono::steady_clock;
namespace connection = concur::connection;

constexpr std::size_t kMessageSize = 64;
constexpr long kWarmUp = 10;  // round trips, or connections, before the clock starts
const char* const kAuthkey = "concur-bench";
const char* const kHost = "127.0.0.1";

long round_trips() {
  return scaled(5000);
}
long connections() {
  return scaled(200);
}

const char* const kConcur = "concur";
const char* const kRaw = "raw sockets";
const char* const kPython = "python";

const char* const kRoundTrip = "rtt-64B-tcp";
const char* const kConnectAuth = "connect-auth";
const char* const kConnectNoAuth = "connect-noauth";

// Skips the row, saying why on stderr too (a row with errors shows no aggregates).
void skip(benchmark::State& state, const std::string& row, const std::string& why) {
  std::fprintf(stderr, "listener_bench: %s: %s\n", row.c_str(), why.c_str());
  state.SkipWithError(why.c_str());
}

// What a repetition's operations took: wall seconds, and the process's CPU seconds when the
// body measured them itself (negative: timed() takes them over the whole body).
struct Spent {
  double wall = 0;
  double cpu = -1;
};

// One repetition (the row runs one iteration, with manual time): `body` does `ops` operations
// and returns what they took (its whole run, or the sum of the intervals it timed itself); the
// row reports the seconds per operation and the process's CPU per operation. An exception from
// `body` skips the row with its message.
template <class Body>
void timed(benchmark::State& state, const char* scenario, const char* contender, long ops,
           Body body) {
  for (auto _ : state) {
    const concur_bench::Cost before = concur_bench::Cost::now();
    Spent spent;
    try {
      spent = body();
    } catch (const std::exception& error) {
      skip(state, std::string(scenario) + "/" + contender, error.what());
      break;
    }
    concur_bench::Cost after = concur_bench::Cost::now();
    if (spent.cpu >= 0) after.cpu = before.cpu + spent.cpu;
    concur_bench::set_cost(state, before, after, static_cast<double>(ops));
    const double per_op = spent.wall / static_cast<double>(ops);
    state.SetIterationTime(per_op);
    concur_bench::recorded()[{scenario, contender}].push_back(per_op);
  }
}

double seconds_between(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

// ---- raw sockets ----------------------------------------------------------------------------

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// An owned descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

void no_delay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    throw_errno("setsockopt(TCP_NODELAY)");
  }
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A listening TCP socket on 127.0.0.1 at a free port (SO_REUSEADDR, as Python's Listener sets).
struct RawListener {
  Fd fd;
  std::uint16_t port = 0;

  RawListener() : fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd.get() < 0) throw_errno("socket");
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address = loopback(0);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      throw_errno("bind");
    }
    if (::listen(fd.get(), 1) != 0) throw_errno("listen");
    socklen_t length = sizeof address;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw_errno("getsockname");
    }
    port = ntohs(address.sin_port);
  }

  Fd accept() const {
    for (;;) {
      Fd accepted(::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (accepted.get() >= 0) {
        no_delay(accepted.get());
        return accepted;
      }
      if (errno != EINTR) throw_errno("accept");
    }
  }
};

Fd raw_connect(std::uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket");
  const sockaddr_in address = loopback(port);
  while (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EINTR) throw_errno("connect");
  }
  no_delay(fd.get());
  return fd;
}

// Sends every byte in as few send() calls as the kernel allows; false on a closed peer.
bool send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Receives exactly `size` bytes; false at end of stream or on an error.
bool recv_all(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Ends an accept() that waits on `port`: a connection that closes at once (a concur Listener's
// handshake then fails at once).
void wake_accept(std::uint16_t port) {
  try {
    raw_connect(port);
  } catch (const std::exception&) {
  }
}

// ---- round trips ----------------------------------------------------------------------------

// Both round-trip rows put the client and the echoing thread on two different CPUs (the first
// two this process may use), the same two for both rows: where the scheduler would place them
// changes a round trip by a quarter here (both on one CPU, or one on each), and it must not
// decide a comparison between rows. The thread's CPU set comes back when the object goes.
// With fewer than two CPUs nothing is pinned.
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int which) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::pthread_getaffinity_np(::pthread_self(), sizeof allowed, &allowed) != 0 ||
        CPU_COUNT(&allowed) < 2) {
      return;
    }
    saved_ = allowed;
    int seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &allowed) || seen++ != which) continue;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pinned_ = ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) == 0;
      return;
    }
  }
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;
  ~PinnedToCpu() {
    if (pinned_) ::pthread_setaffinity_np(::pthread_self(), sizeof saved_, &saved_);
  }

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
};
constexpr int kClientCpu = 0;
constexpr int kEchoCpu = 1;

// The frame of one message: Python's 4-byte big-endian length, then the payload.
constexpr std::size_t kFrameSize = 4 + kMessageSize;

void round_trip_raw(benchmark::State& state) {
  RawListener listener;
  const PinnedToCpu client_cpu(kClientCpu);
  std::thread echo([&listener] {
    const PinnedToCpu echo_cpu(kEchoCpu);
    try {
      Fd accepted = listener.accept();
      char frame[kFrameSize];
      while (recv_all(accepted.get(), frame, sizeof frame) &&
             send_all(accepted.get(), frame, sizeof frame)) {
      }
    } catch (const std::exception&) {
    }
  });
  std::optional<Fd> client;
  try {
    client.emplace(raw_connect(listener.port));
  } catch (...) {
    wake_accept(listener.port);  // the echo thread's accept() must end before it is joined
    echo.join();
    throw;
  }
  char frame[kFrameSize] = {0, 0, 0, static_cast<char>(kMessageSize)};
  std::memset(frame + 4, 'x', kMessageSize);
  const int fd = client->get();
  auto trip = [&] {
    if (!send_all(fd, frame, sizeof frame) || !recv_all(fd, frame, sizeof frame)) {
      throw std::runtime_error("the echo failed");
    }
  };
  const long trips = round_trips();
  bool warm = true;
  try {
    for (long i = 0; i < kWarmUp; ++i) trip();
  } catch (const std::exception& error) {
    skip(state, std::string(kRoundTrip) + "/" + kRaw, error.what());
    warm = false;
  }
  if (warm) {
    timed(state, kRoundTrip, kRaw, trips, [&] {
      const auto start = Clock::now();
      for (long i = 0; i < trips; ++i) trip();
      return Spent{seconds_between(start, Clock::now())};
    });
  }
  client.reset();  // the echo ends at end of stream
  echo.join();
}

void round_trip_concur(benchmark::State& state) {
  connection::Listener listener({kHost, 0}, {.authkey = std::string(kAuthkey)});
  const PinnedToCpu client_cpu(kClientCpu);
  std::thread echo([&listener] {
    const PinnedToCpu echo_cpu(kEchoCpu);
    try {
      concur::Connection accepted = listener.accept();
      for (;;) accepted.send_bytes(accepted.recv_bytes());  // ends with EOFError
    } catch (const std::exception&) {
    }
  });
  concur::Connection client;  // closed until connected
  try {
    client = connection::Client(listener.address(), {.authkey = std::string(kAuthkey)});
  } catch (...) {
    wake_accept(listener.address().port());  // ends the echo thread's accept()
    echo.join();
    throw;
  }
  std::string message(kMessageSize, 'x');
  auto trip = [&] {
    client.send_bytes(message);
    message = client.recv_bytes();
  };
  const long trips = round_trips();
  bool warm = true;
  try {
    for (long i = 0; i < kWarmUp; ++i) trip();
  } catch (const std::exception& error) {
    skip(state, std::string(kRoundTrip) + "/" + kConcur, error.what());
    warm = false;
  }
  if (warm) {
    timed(state, kRoundTrip, kConcur, trips, [&] {
      const auto start = Clock::now();
      for (long i = 0; i < trips; ++i) trip();
      const double seconds = seconds_between(start, Clock::now());
      if (message.size() != kMessageSize) throw std::runtime_error("the echo came back changed");
      return Spent{seconds};
    });
  }
  client.close();  // the echo ends with EOFError
  echo.join();
}

// ---- connection set-up ----------------------------------------------------------------------

// A thread that accepts `total` connections one after the other, keeps them until take(), and
// stamps the moment each accept() returned; the first failure, or stop() and the next accept(),
// ends it.
template <class Conn>
class Acceptor {
 public:
  template <class AcceptOne>
  Acceptor(long total, AcceptOne accept_one)
      : thread_([this, total, accept_one] {
          for (long i = 0; i < total; ++i) {
            try {
              Conn accepted = accept_one();
              const auto returned = Clock::now();
              std::lock_guard<std::mutex> hold(mutex_);
              connections_.push_back(std::move(accepted));
              stamps_.push_back(returned);
            } catch (...) {
              std::lock_guard<std::mutex> hold(mutex_);
              error_ = std::current_exception();
            }
            changed_.notify_one();
            std::lock_guard<std::mutex> hold(mutex_);
            if (error_ || stopped_) return;
          }
        }) {}
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;
  // The thread must be able to end: every connection made, or its accept() woken.
  ~Acceptor() { thread_.join(); }

  // Takes connection `i` (accepted already) from the thread, to close it.
  Conn take(long i) {
    std::lock_guard<std::mutex> hold(mutex_);
    return std::move(connections_[static_cast<std::size_t>(i)]);
  }

  // Makes the thread end after its next accept() (which the caller then wakes).
  void stop() {
    std::lock_guard<std::mutex> hold(mutex_);
    stopped_ = true;
  }

  // Waits until connection `i` (from 0) has been accepted; returns the moment its accept()
  // returned. Rethrows the acceptor's failure.
  Clock::time_point accepted(long i) {
    std::unique_lock<std::mutex> hold(mutex_);
    changed_.wait(hold, [&] { return error_ || static_cast<long>(stamps_.size()) > i; });
    if (error_) std::rethrow_exception(error_);
    return stamps_[static_cast<std::size_t>(i)];
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Conn> connections_;
  std::vector<Clock::time_point> stamps_;
  std::exception_ptr error_;
  bool stopped_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

// One row of set-ups: kWarmUp connections, then connections() timed ones, one after the
// other, each timed from the connect_one() call until both it and the acceptor's accept() have
// returned, with the process's CPU over the same interval; then both ends are closed, before
// the next one starts and outside the interval (so memory and descriptors are reused, as in a
// server that lives on).
template <class Conn, class AcceptOne, class ConnectOne>
void connect_rows(benchmark::State& state, const char* scenario, const char* contender,
                  std::uint16_t port, AcceptOne accept_one, ConnectOne connect_one) {
  const long count = connections();
  Acceptor<Conn> acceptor(kWarmUp + count, accept_one);
  auto one = [&](long i) {
    const double cpu_before = concur_bench::process_cpu_seconds();
    const auto start = Clock::now();
    auto connect_or_stop = [&] {
      try {
        return connect_one();
      } catch (...) {
        acceptor.stop();  // its accept() must end before it is joined
        wake_accept(port);
        throw;
      }
    };
    Spent spent;
    {
      Conn client = connect_or_stop();
      const auto returned = Clock::now();
      const auto accepted = acceptor.accepted(i);
      spent = Spent{seconds_between(start, std::max(returned, accepted)),
                    concur_bench::process_cpu_seconds() - cpu_before};
    }  // the client's end closes here
    Conn server_end = acceptor.take(i);
    return spent;
  };
  try {
    for (long i = 0; i < kWarmUp; ++i) one(i);
  } catch (const std::exception& error) {
    skip(state, std::string(scenario) + "/" + contender, error.what());
    return;
  }
  timed(state, scenario, contender, count, [&] {
    Spent total{0, 0};
    for (long i = kWarmUp; i < kWarmUp + count; ++i) {
      const Spent spent = one(i);
      total.wall += spent.wall;
      total.cpu += spent.cpu;
    }
    return total;
  });
}

void connect_concur(benchmark::State& state, bool authenticate) {
  std::optional<std::string> key;
  if (authenticate) key = kAuthkey;
  connection::Listener listener({kHost, 0}, {.authkey = key});
  const connection::Address address = listener.address();
  connect_rows<concur::Connection>(
      state, authenticate ? kConnectAuth : kConnectNoAuth, kConcur, address.port(),
      [&listener] { return listener.accept(); },
      [&address, &key] { return connection::Client(address, {.authkey = key}); });
}

void connect_raw(benchmark::State& state) {
  RawListener listener;
  const std::uint16_t port = listener.port;
  connect_rows<Fd>(
      state, kConnectNoAuth, kRaw, port, [&listener] { return listener.accept(); },
      [port] { return raw_connect(port); });
}

// ---- Python's multiprocessing.connection ----------------------------------------------------

#ifdef CONCUR_BENCH_PYTHON
// The interpreter configure time found may be a launcher that takes most of a second to start
// the real one (pyenv's shim); it is asked once for the real executable, which the rows then
// run, and for its version. Empty when it does not answer.
struct Python {
  std::string executable;
  std::string version;  // "3.11.7"
};

const Python& python_found() {
  static const Python found = [] {
    Python python;
    const std::string command = std::string("'") + CONCUR_BENCH_PYTHON +
                                "' -c 'import sys; print(sys.executable); "
                                "print(\"%d.%d.%d\" % sys.version_info[:3])'";
    if (std::FILE* output = ::popen(command.c_str(), "r")) {
      char line[4096];
      if (std::fgets(line, sizeof line, output)) python.executable = line;
      if (std::fgets(line, sizeof line, output)) python.version = line;
      ::pclose(output);
    }
    for (std::string* text : {&python.executable, &python.version}) {
      while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
    }
    if (python.executable.find('\'') != std::string::npos) python.executable.clear();
    return python;
  }();
  return found;
}

// One run of benchmarks/listener_python.py: its wall seconds per round trip (or connection)
// are the row's time, its CPU per round trip (or connection) the row's CPU/op.
void python(benchmark::State& state, const char* scenario, const char* mode, long count,
            bool authenticate) {
  const std::string& executable = python_found().executable;
  const std::string command =
      "'" + (executable.empty() ? std::string(CONCUR_BENCH_PYTHON) : executable) + "' '" +
      CONCUR_BENCH_SOURCE_DIR + "/listener_python.py' --seconds --mode " + mode + " --count " +
      std::to_string(count) + " --authkey '" + (authenticate ? kAuthkey : "") + "'";
  concur_bench::measure_script(state, scenario, kPython, Kind::time_per_op, command);
}
#endif

// The Python the rows ran and the challenge its Listener sends ("" when none ran).
std::string python_described() {
#ifdef CONCUR_BENCH_PYTHON
  if (concur_bench::recorded_median(kConnectAuth, kPython) == 0 &&
      concur_bench::recorded_median(kRoundTrip, kPython) == 0) {
    return "";
  }
  const Python& python = python_found();
  int major = 0;
  int minor = 0;
  if (std::sscanf(python.version.c_str(), "%d.%d", &major, &minor) != 2) {
    return std::string("Python at ") + CONCUR_BENCH_PYTHON + " (its version unknown)";
  }
  const bool sha256 = major > 3 || (major == 3 && minor >= 12);
  return "Python " + python.version + " (" + python.executable + "), whose Listener sends " +
         (sha256 ? "the {sha256} challenge, as concur's does" : "the legacy HMAC-MD5 challenge");
#else
  return "";
#endif
}

// ---- registration and the target check ------------------------------------------------------

void register_all() {
  // Every row runs one repetition per iteration, timed by itself; an exception (a listener that
  // cannot bind, a failed Client()) skips the row with its message instead of ending the program.
  auto add = [](const char* scenario, const char* contender, auto row) {
    const std::string name = std::string(scenario) + "/" + contender;
    benchmark::RegisterBenchmark(name.c_str(),
                                 [name, row](benchmark::State& state) {
                                   try {
                                     row(state);
                                   } catch (const std::exception& error) {
                                     skip(state, name, error.what());
                                   }
                                 })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  add(kRoundTrip, kConcur, round_trip_concur);
  add(kRoundTrip, kRaw, round_trip_raw);
#ifdef CONCUR_BENCH_PYTHON
  add(kRoundTrip, kPython,
      [](benchmark::State& state) { python(state, kRoundTrip, "roundtrip", round_trips(), true); });
#endif
  for (bool authenticate : {true, false}) {
    const char* scenario = authenticate ? kConnectAuth : kConnectNoAuth;
    add(scenario, kConcur,
        [authenticate](benchmark::State& state) { connect_concur(state, authenticate); });
#ifdef CONCUR_BENCH_PYTHON
    add(scenario, kPython, [scenario, authenticate](benchmark::State& state) {
      python(state, scenario, "connect", connections(), authenticate);
    });
#endif
  }
  add(kConnectNoAuth, kRaw, connect_raw);
}

void print_targets() {
  auto& check = concur_bench::check_target;
  std::printf("\nTarget check (medians of the repetitions)\n");
  check("(1)", Kind::time_per_op, kRoundTrip, kConcur, kRaw, 1.1);
  check("(2)", Kind::time_per_op, kConnectAuth, kConcur, kPython, 0.5);
  const std::string described = python_described();
  if (!described.empty()) std::printf("  python: %s\n", described.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // run() sets this too, but the registrations below already need it.
  concur_bench::short_run = concur_bench::short_run_asked(argc, argv);
  register_all();
  using concur_bench::Metric;
  const std::string trips = std::to_string(round_trips());
  const std::string count = std::to_string(connections());
  return concur_bench::run(
      argc, argv,
      {{"64-byte round trip over TCP on 127.0.0.1 after authentication, echoed by a thread; " +
            trips + " per repetition (target: concur <= 1.1x raw sockets)",
        kRaw,
        Metric::time,
        {kRoundTrip}},
       {"Connection set-up on 127.0.0.1, from Client() until Client() and accept() have "
        "returned; " +
            count + " per repetition (target: concur <= 0.5x Python with authentication)",
        kPython,
        Metric::time,
        {kConnectAuth, kConnectNoAuth}},
       {"Connection set-up without authentication, against raw sockets (no target)",
        kRaw,
        Metric::time,
        {kConnectNoAuth}}},
      /*default_repetitions=*/5, print_targets);
}
