// The check for lesson 14, examples/14_echo_server.cpp, which ctest cannot check by its output
// alone: this program starts the built example (CONCUR_ECHO_SERVER_PATH), reads the port it
// prints, and drives it with clients: 256 at once, each echoing 100 messages of random sizes;
// clients that vanish mid-message; a stop with SIGTERM and a restart on the same port while a
// connection to it lingers in TIME_WAIT; and the --clients N mode. After each, the server must
// have no zombie children. Every wait has a deadline, so a bug fails a test instead of hanging
// it, and the server is asked to die with the test (PR_SET_PDEATHSIG) should the test crash.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/posix_io.hpp"
#include "proc_children.hpp"
#include "test_support.hpp"

#ifndef CONCUR_ECHO_SERVER_PATH
#error "define CONCUR_ECHO_SERVER_PATH as the path of the built 14_echo_server example"
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using concur::detail::UniqueFd;
using concur_test::children_of;
using concur_test::eventually;
using concur_test::scaled;

// Milliseconds left until `deadline`, for poll(2).
int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
}

// Waits for `events` on `fd` until `deadline`; the revents, 0 on timeout.
short wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int rc = ::poll(&entry, 1, ms_left(deadline));
    if (rc > 0) return entry.revents;
    if (rc == 0 && Clock::now() >= deadline) return 0;
    if (rc < 0 && errno != EINTR) return POLLERR;
  }
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// `size` random bytes.
std::string random_bytes(std::mt19937_64& random, std::size_t size) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t word = random();
    std::memcpy(&bytes[i], &word, std::min<std::size_t>(8, size - i));
  }
  return bytes;
}

// A client connection on a non-blocking socket. Each call returns "" when all went well, and
// otherwise what went wrong; none waits past its deadline.
class Client {
 public:
  std::string connect(int port, Clock::time_point deadline) {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return errno_text("socket");
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&server), sizeof server) == 0) return "";
    if (errno != EINPROGRESS) return errno_text("connect");
    if (wait_for(fd_.get(), POLLOUT, deadline) == 0) return "connect timed out";
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    return error == 0 ? "" : std::string("connect: ") + std::strerror(error);
  }

  // Sends `message` and reads back as many bytes into `back`, writing and reading as the
  // socket allows, so that neither side's buffers can fill up both ways.
  std::string exchange(const std::string& message, std::string& back, Clock::time_point deadline) {
    back.assign(message.size(), '\0');
    std::size_t sent = 0;
    std::size_t got = 0;
    while (got < message.size()) {
      const short events = static_cast<short>(POLLIN | (sent < message.size() ? POLLOUT : 0));
      const short ready = wait_for(fd_.get(), events, deadline);
      if (ready == 0) return "echo timed out";
      if (sent < message.size() && (ready & (POLLOUT | POLLERR | POLLHUP))) {
        const ssize_t n =
            ::send(fd_.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
        if (n > 0) sent += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return errno_text("send");
      }
      if (ready & (POLLIN | POLLERR | POLLHUP)) {
        const ssize_t n = ::recv(fd_.get(), back.data() + got, back.size() - got, 0);
        if (n == 0) return "the server closed the connection mid-echo";
        if (n > 0) got += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return errno_text("recv");
      }
    }
    return "";
  }

  // Reads exactly `expected.size()` bytes and compares them with `expected`.
  std::string expect_bytes(const std::string& expected, Clock::time_point deadline) {
    std::string got;
    while (got.size() < expected.size()) {
      if (wait_for(fd_.get(), POLLIN, deadline) == 0) return "no echo in time";
      char buffer[256];
      const ssize_t n =
          ::recv(fd_.get(), buffer, std::min(sizeof buffer, expected.size() - got.size()), 0);
      if (n == 0) return "the server closed the connection";
      if (n > 0) got.append(buffer, static_cast<std::size_t>(n));
      if (n < 0 && errno != EAGAIN && errno != EINTR) return errno_text("recv");
    }
    return got == expected ? "" : "the echo differs from the message";
  }

  // Waits for the server to close its end, expecting no more bytes.
  std::string expect_end(Clock::time_point deadline) {
    for (;;) {
      if (wait_for(fd_.get(), POLLIN, deadline) == 0) return "the server did not hang up";
      char byte;
      const ssize_t n = ::recv(fd_.get(), &byte, 1, 0);
      if (n == 0) return "";
      if (n > 0) return "a byte nobody sent";
      if (errno != EAGAIN && errno != EINTR) return errno_text("recv at the end");
    }
  }

  // Hangs up politely: no more to send, then wait for the server to close its end.
  std::string hang_up(Clock::time_point deadline) {
    if (::shutdown(fd_.get(), SHUT_WR) != 0) return errno_text("shutdown");
    return expect_end(deadline);
  }

  // Sends what the socket takes of `bytes` within `limit`, reading nothing.
  void send_some(const std::string& bytes, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    std::size_t sent = 0;
    while (sent < bytes.size() && wait_for(fd_.get(), POLLOUT, deadline) != 0) {
      const ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return;
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
  }

  // Closes with an RST instead of a FIN (SO_LINGER with a zero timeout).
  void reset() {
    const linger abort{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    fd_.reset();
  }

  void close() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

// A short message echoed by a fresh client: "" when it came back intact.
std::string echo_once(int port, std::size_t size = 1000) {
  const auto deadline = Clock::now() + concur_test::generous;
  std::mt19937_64 random(size);
  const std::string message = random_bytes(random, size);
  std::string back;
  Client client;
  std::string error = client.connect(port, deadline);
  if (error.empty()) error = client.exchange(message, back, deadline);
  if (error.empty() && back != message) error = "the echo differs from the message";
  if (error.empty()) error = client.hang_up(deadline);
  return error;
}

std::string describe(const std::vector<std::pair<pid_t, char>>& children) {
  std::string text = std::to_string(children.size()) + " children (pid and state):";
  for (std::size_t i = 0; i < children.size() && i < 20; ++i) {
    text += " " + std::to_string(children[i].first) + children[i].second;
  }
  return children.size() > 20 ? text + " ..." : text;
}

// How many TCP connections with local port `port` are in TIME_WAIT (/proc/net/tcp, state 06).
int time_waits_on(int port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the header
  int count = 0;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const std::size_t colon = local.find(':');
    if (colon == std::string::npos) continue;
    if (std::stoi(local.substr(colon + 1), nullptr, 16) == port && state == "06") ++count;
  }
  return count;
}

// The example server, started with its stdout and stderr on pipes.
class Server {
 public:
  explicit Server(const std::vector<std::string>& args) {
    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) {
      ADD_FAILURE() << errno_text("pipe2");
      return;
    }
    out_.reset(out[0]);
    err_.reset(err[0]);
    const UniqueFd out_write(out[1]);
    const UniqueFd err_write(err[1]);
    std::vector<std::string> words{CONCUR_ECHO_SERVER_PATH};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {                       // the child: only async-signal-safe calls until exec
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // should this test crash, the server dies with it
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (pid_ < 0) ADD_FAILURE() << errno_text("fork");
  }

  ~Server() { kill_now(); }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& out() const { return out_text_; }
  const std::string& err() const { return err_text_; }
  bool running() const { return pid_ > 0 && !status_; }

  // Reads the "listening on 127.0.0.1:PORT" line and returns the port, or 0 after a failure.
  int read_port() {
    const auto deadline = Clock::now() + concur_test::generous;
    while (out_text_.find('\n') == std::string::npos) {
      if (wait_for(out_.get(), POLLIN, deadline) == 0) break;
      if (!read_into(out_.get(), out_text_)) break;  // end of file: the server is gone
    }
    const std::string prefix = "listening on 127.0.0.1:";
    const std::size_t end = out_text_.find('\n');
    const std::string digits = end == std::string::npos || out_text_.rfind(prefix, 0) != 0
                                   ? ""
                                   : out_text_.substr(prefix.size(), end - prefix.size());
    if (digits.empty() || digits.size() > 5 ||
        digits.find_first_not_of("0123456789") != digits.npos) {
      ADD_FAILURE() << "no 'listening on' line first; stdout: " << out_text_
                    << "\nstderr: " << drain_err();
      return 0;
    }
    port_ = std::stoi(digits);
    EXPECT_GT(port_, 0);
    return port_;
  }

  // Waits at most `limit` for the server to exit; its wait status, or empty on timeout. Reads
  // what is left of its output.
  std::optional<int> wait_exit(std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (!status_ && Clock::now() < deadline) {
      int status = 0;
      const pid_t rc = ::waitpid(pid_, &status, WNOHANG);
      if (rc == pid_) status_ = status;
      if (rc == 0) std::this_thread::sleep_for(2ms);
      if (rc < 0 && errno != EINTR) break;
    }
    while (read_into(out_.get(), out_text_)) {
    }
    drain_err();
    return status_;
  }

  // Sends SIGTERM and expects a clean exit within `limit`, with the summary as its last line.
  void stop(int clients, std::chrono::seconds limit = 10s) {
    ASSERT_EQ(::kill(pid_, SIGTERM), 0);
    expect_clean_exit(clients, limit);
  }

  void expect_clean_exit(int clients, std::chrono::seconds limit) {
    const std::optional<int> status = wait_exit(limit);
    ASSERT_TRUE(status) << "the server did not exit within " << limit.count() << " s";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "wait status " << *status << "; stderr: " << err_text_;
    EXPECT_EQ(out_text_, "listening on 127.0.0.1:" + std::to_string(port_) + "\nserved " +
                             std::to_string(clients) + (clients == 1 ? " client\n" : " clients\n"));
    EXPECT_EQ(err_text_, "") << "the server must not complain";
  }

  void kill_now() {
    if (!running()) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
  }

 private:
  // Appends what `fd` has now to `text`; false at end of file or when nothing is there.
  static bool read_into(int fd, std::string& text) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n > 0) {
        text.append(buffer, static_cast<std::size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }

  const std::string& drain_err() {
    while (read_into(err_.get(), err_text_)) {
    }
    return err_text_;
  }

  pid_t pid_ = -1;
  int port_ = 0;
  UniqueFd out_;
  UniqueFd err_;
  std::string out_text_;
  std::string err_text_;
  std::optional<int> status_;
};

class EchoServer : public ::testing::Test {
 protected:
  // Starts the server with `args` and reads its port; kill()ed in TearDown if still running.
  Server& start(const std::vector<std::string>& args = {}) {
    servers_.push_back(std::make_unique<Server>(args));
    servers_.back()->read_port();
    return *servers_.back();
  }

  void TearDown() override {
    for (auto& server : servers_) server->kill_now();
  }

  // Expects that `server` soon has no children left, zombies or not.
  static void expect_children_reaped(Server& server) {
    std::vector<std::pair<pid_t, char>> left;
    const bool reaped = eventually(
        [&] {
          left = children_of(server.pid());
          return left.empty();
        },
        10s);
    EXPECT_TRUE(reaped) << "the server kept " << describe(left);
  }

 private:
  std::vector<std::unique_ptr<Server>> servers_;
};

TEST_F(EchoServer, RefusesABadCommandLine) {
  Server server({"not-a-port"});
  const std::optional<int> status = server.wait_exit(concur_test::generous);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << *status;
  EXPECT_NE(server.err().find("usage:"), std::string::npos) << server.err();
  EXPECT_EQ(server.out(), "");
}

// 256 clients connected at once, each echoing messages of random sizes up to 64 KiB.
TEST_F(EchoServer, ServesManyClientsAtOnce) {
  Server& server = start();
  ASSERT_GT(server.port(), 0);
  constexpr int kClients = 256;
  const int messages = static_cast<int>(scaled(100));
  const auto deadline = Clock::now() + 120s;

  std::atomic<int> connected{0};
  std::atomic<int> failures{0};
  std::atomic<int> mismatches{0};
  std::atomic<long long> bytes{0};
  std::mutex errors_mutex;
  std::string first_error;
  std::latch all_connected(kClients);  // so that all 256 connections are open at once
  std::latch first_round(kClients);    // every client has had one message echoed (or failed)
  std::latch resume(1);                // the children have been counted

  auto run_client = [&](int index) {
    std::mt19937_64 random(static_cast<std::uint64_t>(index) + 1);
    std::uniform_int_distribution<std::size_t> sizes(1, 65536);
    Client client;
    std::string error = client.connect(server.port(), deadline);
    if (error.empty()) ++connected;
    all_connected.arrive_and_wait();
    bool paused = false;
    auto pause_once = [&] {
      if (paused) return;
      paused = true;
      first_round.count_down();
      resume.wait();
    };
    std::string back;
    for (int i = 0; i < messages && error.empty(); ++i) {
      const std::string message = random_bytes(random, sizes(random));
      error = client.exchange(message, back, deadline);
      if (error.empty() && back != message) ++mismatches;
      bytes += static_cast<long long>(message.size());
      pause_once();
    }
    pause_once();
    if (error.empty()) error = client.hang_up(Clock::now() + concur_test::generous);
    if (!error.empty()) {
      ++failures;
      std::lock_guard<std::mutex> hold(errors_mutex);
      if (first_error.empty()) first_error = "client " + std::to_string(index) + ": " + error;
    }
  };

  const auto began = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(run_client, i);
  first_round.wait();
  const auto while_connected = children_of(server.pid());  // one child per client
  resume.count_down();
  for (std::thread& client : clients) client.join();
  const auto seconds = std::chrono::duration<double>(Clock::now() - began).count();
  std::printf("%d clients x %d messages (%lld MiB) echoed in %.2f s\n", kClients, messages,
              bytes.load() >> 20, seconds);

  EXPECT_EQ(connected, kClients);
  EXPECT_EQ(failures, 0) << first_error;
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(while_connected.size(), static_cast<std::size_t>(kClients))
      << describe(while_connected);
  expect_children_reaped(server);
  EXPECT_EQ(echo_once(server.port()), "") << "the server no longer serves";
  server.stop(kClients + 1);
}

// Clients that leave mid-message, without reading their echo, or with a reset: each child
// ends quietly, and the server goes on serving.
TEST_F(EchoServer, SurvivesClientsThatVanish) {
  Server& server = start();
  ASSERT_GT(server.port(), 0);
  const auto deadline = Clock::now() + concur_test::generous;
  std::mt19937_64 random(14);
  const std::string big = random_bytes(random, 4 << 20);

  Client silent;  // connects and leaves without a word
  ASSERT_EQ(silent.connect(server.port(), deadline), "");
  silent.close();

  Client halfway;  // half a message, then a clean close without reading the echo
  ASSERT_EQ(halfway.connect(server.port(), deadline), "");
  halfway.send_some(big.substr(0, 30000), 1s);
  halfway.close();

  Client flooding;  // sends until every buffer is full (the child stuck writing), then leaves
  ASSERT_EQ(flooding.connect(server.port(), deadline), "");
  flooding.send_some(big, 300ms);
  flooding.close();

  Client resetting;  // sends, then resets the connection
  ASSERT_EQ(resetting.connect(server.port(), deadline), "");
  resetting.send_some(big.substr(0, 100000), 300ms);
  resetting.reset();

  expect_children_reaped(server);
  EXPECT_EQ(echo_once(server.port(), 70000), "");
  expect_children_reaped(server);
  server.stop(5);
}

// SIGTERM stops the server cleanly; it starts again at once on the same port, although a
// connection that the server's side closed first keeps that port in TIME_WAIT.
TEST_F(EchoServer, StopsOnSigtermAndRestartsOnTheSamePort) {
  Server& first = start();
  const int port = first.port();
  ASSERT_GT(port, 0);
  const auto deadline = Clock::now() + concur_test::generous;

  Client client;
  std::string back;
  ASSERT_EQ(client.connect(port, deadline), "");
  ASSERT_EQ(client.exchange("ping", back, deadline), "");
  EXPECT_EQ(back, "ping");
  std::vector<std::pair<pid_t, char>> children;
  ASSERT_TRUE(eventually([&] {
    children = children_of(first.pid());
    return children.size() == 1;
  })) << describe(children);
  ASSERT_EQ(::kill(children[0].first, SIGKILL), 0);  // the server's side closes first...
  EXPECT_EQ(client.expect_end(deadline), "");
  client.close();  // ...so its end of the connection waits in TIME_WAIT
  EXPECT_TRUE(eventually([&] { return time_waits_on(port) > 0; }, 5s));
  expect_children_reaped(first);
  EXPECT_EQ(echo_once(port), "");
  first.stop(2);

  {  // Without SO_REUSEADDR the port could not be bound now: the restart below needs it.
    const UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in where{};
    where.sin_family = AF_INET;
    where.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    where.sin_port = htons(static_cast<std::uint16_t>(port));
    const int rc = ::bind(probe.get(), reinterpret_cast<sockaddr*>(&where), sizeof where);
    EXPECT_TRUE(rc != 0 && errno == EADDRINUSE) << "a TIME_WAIT connection should hold the port";
  }

  Server& second = start({std::to_string(port)});
  ASSERT_EQ(second.port(), port);
  EXPECT_EQ(echo_once(port), "");
  second.stop(1);
}

// --clients N: serves N clients (here three at once), then exits by itself.
TEST_F(EchoServer, ClientsModeServesThatManyAndExits) {
  Server& server = start({"--clients", "3"});
  ASSERT_GT(server.port(), 0);
  const auto deadline = Clock::now() + concur_test::generous;
  Client clients[3];
  for (Client& client : clients) ASSERT_EQ(client.connect(server.port(), deadline), "");
  std::mt19937_64 random(3);
  for (Client& client : clients) {
    const std::string message = random_bytes(random, 50000);
    std::string back;
    ASSERT_EQ(client.exchange(message, back, deadline), "");
    EXPECT_TRUE(back == message);
  }
  for (Client& client : clients) EXPECT_EQ(client.hang_up(deadline), "");
  server.expect_clean_exit(3, 10s);
  Client late;  // the listening socket is closed now
  EXPECT_NE(late.connect(server.port(), deadline), "");
}

// --idle SECONDS: a client that sends nothing for that long is disconnected, and its child ends
// (issue 12, item 15). Before, an idle client held a process forever.
TEST_F(EchoServer, DisconnectsIdleClients) {
  Server& server = start({"--idle", "1"});
  ASSERT_GT(server.port(), 0);
  const auto began = Clock::now();
  Client idle;
  ASSERT_EQ(idle.connect(server.port(), began + concur_test::generous), "");
  std::string back;
  ASSERT_EQ(idle.exchange("hello", back, began + concur_test::generous), "");
  EXPECT_EQ(idle.expect_end(began + concur_test::generous), "");
  EXPECT_GE(Clock::now() - began, 900ms) << "disconnected before the idle timeout";
  expect_children_reaped(server);
  EXPECT_EQ(echo_once(server.port()), "") << "a busy client is not idle";
  server.stop(2);
}

// --max-children N: the server serves at most N clients at once; the next one waits (in the
// listening socket's backlog) until a child has ended, and is then served (issue 12, item 15).
TEST_F(EchoServer, ServesAtMostMaxChildrenAtOnce) {
  Server& server = start({"--max-children", "2"});
  ASSERT_GT(server.port(), 0);
  const auto deadline = Clock::now() + concur_test::generous;
  Client first;
  Client second;
  Client third;
  std::string back;
  ASSERT_EQ(first.connect(server.port(), deadline), "");
  ASSERT_EQ(first.exchange("1", back, deadline), "");
  ASSERT_EQ(second.connect(server.port(), deadline), "");
  ASSERT_EQ(second.exchange("2", back, deadline), "");
  ASSERT_EQ(third.connect(server.port(), deadline), "");  // the kernel's backlog accepts it
  EXPECT_EQ(third.exchange("3", back, Clock::now() + 500ms), "echo timed out")
      << "a third client was served beside two";
  EXPECT_LE(children_of(server.pid()).size(), 2u);
  EXPECT_EQ(first.hang_up(deadline), "");
  EXPECT_EQ(third.expect_bytes("3", deadline), "");  // echoed once the third client is served
  ASSERT_EQ(third.exchange("4", back, deadline), "");
  EXPECT_EQ(back, "4");
  EXPECT_EQ(second.hang_up(deadline), "");
  EXPECT_EQ(third.hang_up(deadline), "");
  expect_children_reaped(server);
  server.stop(3);
}

// SIGTERM stops accepting and waits for the clients still connected; a second SIGTERM ends their
// children, and the server exits cleanly (issue 12, item 15). Before, the second signal was
// ignored and the server waited for an idle client forever.
TEST_F(EchoServer, ASecondSignalEndsTheChildren) {
  Server& server = start();
  ASSERT_GT(server.port(), 0);
  const auto deadline = Clock::now() + concur_test::generous;
  Client lingering;
  std::string back;
  ASSERT_EQ(lingering.connect(server.port(), deadline), "");
  ASSERT_EQ(lingering.exchange("still here", back, deadline), "");
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  EXPECT_FALSE(server.wait_exit(1s)) << "the first signal must wait for the connected client";
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  EXPECT_EQ(lingering.expect_end(deadline), "");
  server.expect_clean_exit(1, 10s);
}

}  // namespace
