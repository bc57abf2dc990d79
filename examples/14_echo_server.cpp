// Lesson 14: a forking TCP echo server, one Process per client.
//
// The tutorial ends with a network server. The parent only accepts connections; for each client
// it starts a multiprocessing.Process that sends back whatever the client sends until the client
// hangs up, so a slow client never holds up the others.
//
//     import socket, sys
//     from multiprocessing import Process
//
//     def echo(conn):
//         while data := conn.recv(65536):
//             conn.sendall(data)
//
//     server = socket.socket()
//     server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
//     server.bind(("127.0.0.1", int(sys.argv[1])))
//     server.listen()
//     while True:
//         conn, address = server.accept()
//         Process(target=echo, args=(conn,)).start()
//         conn.close()                    # the child has its own copy now
//
// concur::Process forks, so the child inherits the accepted socket as a plain descriptor; it
// closes the listening socket and echoes. The parent closes its copy of the client's socket at
// once, or the client would never see the connection end. A finished child stays a zombie until
// its parent waits for it, so the parent reaps as it goes: a SIGCHLD handler only wakes the
// accept loop (it writes to a pipe that poll() watches: the "self-pipe trick"), and the loop
// asks each child's exitcode(), which reaps it. It never calls waitpid(-1): each Process reaps
// its own child. SIGINT and SIGTERM wake the loop the same way; the server then stops
// accepting and waits for every child to finish its client; a second SIGINT or SIGTERM ends the
// children (terminate()) instead of waiting for them. Then it prints a summary and exits with 0.
// (Ctrl-C in a terminal interrupts the children too, which end at once.)
//
// A server must not let its clients exhaust it: a child disconnects a client that has sent
// nothing for --idle seconds (60 by default; 0: never), also when the client stops reading its
// echo; and at most --max-children clients (256 by default) are served at once: the next one
// waits in the listening socket's backlog until a child has ended.
//
// Usage: 14_echo_server [port] [--clients N] [--idle SECONDS] [--max-children N] [--any]. It
// listens on 127.0.0.1 (--any: on every address); port 0, the default, lets the kernel choose,
// and the chosen port is printed. --clients N serves N clients, then stops by itself.

#include <concur/process.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <list>
#include <string>
#include <system_error>

namespace {

int wake_pipe[2] = {-1, -1};  // the signal handler writes each signal's number here
const int handled_signals[] = {SIGINT, SIGTERM, SIGCHLD};

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void on_signal(int number) {
  const int saved = errno;
  const char byte = static_cast<char>(number);
  (void)!::write(wake_pipe[1], &byte, 1);  // non-blocking: if the pipe is full, it wakes anyway
  errno = saved;
}

// Blocks (SIG_BLOCK) or unblocks (SIG_UNBLOCK) the handled signals.
void hold_signals(int how) {
  sigset_t set;
  sigemptyset(&set);
  for (int number : handled_signals) sigaddset(&set, number);
  ::pthread_sigmask(how, &set, nullptr);
}

void install_handlers() {
  if (::pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) fail("pipe2");
  struct sigaction action {};
  action.sa_handler = on_signal;
  action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&action.sa_mask);
  for (int number : handled_signals) ::sigaction(number, &action, nullptr);
  hold_signals(SIG_UNBLOCK);   // in case whoever started the server blocked them
  ::signal(SIGPIPE, SIG_IGN);  // a vanished client (or reader of stdout) is an error, not death
}

// Empties the wake-up pipe; true if SIGINT or SIGTERM was among the signals it carried.
bool drain_wake_pipe() {
  bool stop = false;
  char bytes[64];
  ssize_t n;
  while ((n = ::read(wake_pipe[0], bytes, sizeof bytes)) > 0 || (n < 0 && errno == EINTR)) {
    for (ssize_t i = 0; i < n; ++i) stop = stop || bytes[i] != SIGCHLD;
  }
  return stop;
}

// Sends all of `data`, however many send() calls it takes; false once the client has gone.
bool send_all(int socket, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(socket, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;  // EPIPE, ECONNRESET: nobody to echo to
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// The child: drops what belongs to the parent, then echoes until the client hangs up, or until
// it has been idle for `idle_seconds` (0: no limit): sent nothing, or read nothing of its echo.
int serve_client(int client, int listener, int idle_seconds) {
  ::close(listener);
  ::close(wake_pipe[0]);
  ::close(wake_pipe[1]);
  for (int number : handled_signals) ::signal(number, SIG_DFL);
  hold_signals(SIG_UNBLOCK);  // held since before fork(): see start_child()
  if (idle_seconds > 0) {     // a send() blocked that long on a client that reads nothing fails
    const timeval limit{idle_seconds, 0};
    ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  }
  char buffer[65536];
  for (;;) {
    pollfd ready{client, POLLIN, 0};
    const int rc = ::poll(&ready, 1, idle_seconds > 0 ? idle_seconds * 1000 : -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) break;  // idle for too long
    const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // 0: the client closed its end; < 0: the connection broke
    if (!send_all(client, buffer, static_cast<std::size_t>(n))) break;
  }
  ::close(client);
  return 0;
}

// Starts a child for `client`, then closes the parent's copy of its socket. The signals are held
// back across fork() until the child has put back their default actions: a SIGTERM meant for the
// child must not run the parent's handler there and wake the parent's loop.
bool start_child(std::list<concur::Process>& children, int client, int listener, int idle_seconds) {
  bool started = true;
  hold_signals(SIG_BLOCK);
  try {
    children.emplace_back(serve_client, client, listener, idle_seconds).start();
  } catch (const std::system_error& error) {  // out of processes: drop this client, go on
    children.pop_back();
    std::fprintf(stderr, "cannot serve a client: %s\n", error.what());
    started = false;
  }
  hold_signals(SIG_UNBLOCK);
  ::close(client);
  return started;
}

// Reaps the children that have ended (exitcode() reaps a finished child and never waits for a
// running one) and drops their Process objects, so the list holds only running children. The
// SIGCHLD of a child that ends after this has looked at it wakes the next poll() through the
// wake-up pipe, so none is missed.
void reap_finished(std::list<concur::Process>& children) {
  std::erase_if(children, [](concur::Process& child) { return child.exitcode().has_value(); });
}

// A listening TCP socket on `address`:`port`; prints where it listens.
int open_listener(in_addr_t address, int port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listener < 0) fail("socket");
  const int on = 1;  // bind even while old connections to this port linger in TIME_WAIT
  if (::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) fail("setsockopt");
  sockaddr_in where{};
  where.sin_family = AF_INET;
  where.sin_addr.s_addr = address;
  where.sin_port = htons(static_cast<std::uint16_t>(port));
  socklen_t length = sizeof where;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&where), length) != 0) fail("bind");
  if (::listen(listener, SOMAXCONN) != 0) fail("listen");
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&where), &length);  // the chosen port
  char text[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &where.sin_addr, text, sizeof text);
  std::printf("listening on %s:%d\n", text, ntohs(where.sin_port));
  std::fflush(stdout);  // whoever started the server may be waiting for this line on a pipe
  return listener;
}

// What the command line asks for.
struct Settings {
  int limit = 0;           // --clients: stop after this many (0: no limit)
  int idle_seconds = 60;   // --idle: disconnect a client idle this long (0: never)
  int max_children = 256;  // --max-children: serve at most this many clients at once
};

// Waits for a signal (or, with `listener` >= 0, a client); true if SIGINT or SIGTERM came.
bool wait_for_event(int listener, bool& client_waiting) {
  pollfd ready[2] = {{wake_pipe[0], POLLIN, 0}, {listener, POLLIN, 0}};
  const int count = listener >= 0 ? 2 : 1;
  client_waiting = false;
  if (::poll(ready, count, -1) < 0) {
    if (errno == EINTR) return false;
    fail("poll");
  }
  client_waiting = count == 2 && (ready[1].revents & POLLIN);
  return (ready[0].revents & POLLIN) && drain_wake_pipe();
}

// Serves clients until SIGINT or SIGTERM, or until `limit` have come; then waits for every child
// (a second SIGINT or SIGTERM terminates them) and returns how many clients were served.
int serve(int listener, const Settings& settings) {
  std::list<concur::Process> children;
  int served = 0;
  bool stopping = false;
  while (!stopping && (settings.limit == 0 || served < settings.limit)) {
    // At the cap, the listening socket is not watched: new clients wait in its backlog, and the
    // SIGCHLD of a child that ends wakes this loop.
    const bool room = static_cast<int>(children.size()) < settings.max_children;
    bool client_waiting = false;
    stopping = wait_for_event(room ? listener : -1, client_waiting);
    reap_finished(children);
    if (stopping || !client_waiting) continue;
    const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client >= 0) {
      served += start_child(children, client, listener, settings.idle_seconds) ? 1 : 0;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
      fail("accept4");
    }
  }
  ::close(listener);  // no new clients; those already here are served to the end...
  bool ending = false;
  while (reap_finished(children), !children.empty()) {
    bool unused = false;
    if (wait_for_event(-1, unused) && !ending) {  // ...unless a second signal comes
      ending = true;
      for (concur::Process& child : children) child.terminate();
    }
  }
  return served;
}

// A number of at most `max` from the command line, or -1.
int parse_number(const std::string& text, int max) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != text.npos) {
    return -1;
  }
  const int number = std::stoi(text);
  return number <= max ? number : -1;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  Settings settings;
  in_addr_t address = htonl(INADDR_LOOPBACK);
  auto valid = [&] {
    return port >= 0 && settings.limit >= 0 && settings.idle_seconds >= 0 &&
           settings.max_children >= 1;
  };
  for (int i = 1; i < argc && valid(); ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--any") {
      address = htonl(INADDR_ANY);
    } else if (arg == "--clients") {
      settings.limit = parse_number(value, 1'000'000'000);
      if (settings.limit == 0) settings.limit = -1;  // N must be at least 1
      ++i;
    } else if (arg == "--idle") {
      settings.idle_seconds = parse_number(value, 1'000'000);
      ++i;
    } else if (arg == "--max-children") {
      settings.max_children = parse_number(value, 1'000'000);
      ++i;
    } else {
      port = parse_number(arg, 65535);
    }
  }
  if (!valid()) {
    std::fprintf(stderr,
                 "usage: %s [port] [--clients N] [--idle SECONDS] [--max-children N] [--any]\n",
                 argv[0]);
    return 2;
  }
  try {
    install_handlers();
    const int served = serve(open_listener(address, port), settings);
    std::printf("served %d client%s\n", served, served == 1 ? "" : "s");
  } catch (const std::system_error& error) {
    std::fprintf(stderr, "%s: %s\n", argv[0], error.what());
    return 1;
  }
}
