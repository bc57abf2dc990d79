// Tests of concur/connection.hpp: Python's Pipe and Connection semantics, its wire format
// (checked against a real python3), end-of-file and broken-pipe handling, EINTR, and typed
// messages between processes and threads.

#include "concur/connection.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "concur/process.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using concur::BufferTooShort;
using concur::Connection;
using concur::EOFError;
using concur::Pipe;

int error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

// Writes raw bytes to a descriptor, for hand-made (or broken) frames.
void raw_write(int fd, std::string_view bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

TEST(Pipe, DuplexEndsReadAndWriteBothWays) {
  auto [a, b] = Pipe();
  EXPECT_TRUE(a.readable() && a.writable() && b.readable() && b.writable());
  a.send_bytes("ping");
  EXPECT_EQ(b.recv_bytes(), "ping");
  b.send_bytes("pong");
  EXPECT_EQ(a.recv_bytes(), "pong");
}

TEST(Pipe, OneWayEndsRefuseTheWrongDirection) {
  auto [reader, writer] = Pipe(false);
  EXPECT_TRUE(reader.readable());
  EXPECT_FALSE(reader.writable());
  EXPECT_FALSE(writer.readable());
  EXPECT_TRUE(writer.writable());
  EXPECT_EQ(error_of([&] { reader.send_bytes("x"); }), EBADF);
  EXPECT_EQ(error_of([&] { (void)writer.recv_bytes(); }), EBADF);
  EXPECT_EQ(error_of([&] { (void)writer.poll(); }), EBADF);
  writer.send_bytes("one way");
  EXPECT_EQ(reader.recv_bytes(), "one way");
}

TEST(Connection, SendBytesChecksOffsetAndSizeAsPythonDoes) {
  auto [a, b] = Pipe();
  const std::string data = "0123456789";
  a.send_bytes(data, 2);
  EXPECT_EQ(b.recv_bytes(), "23456789");
  a.send_bytes(data, 3, 4);
  EXPECT_EQ(b.recv_bytes(), "3456");
  a.send_bytes(data, 10);
  EXPECT_EQ(b.recv_bytes(), "");
  EXPECT_THROW(a.send_bytes(data, -1), std::invalid_argument);
  EXPECT_THROW(a.send_bytes(data, 11), std::invalid_argument);
  EXPECT_THROW(a.send_bytes(data, 0, -1), std::invalid_argument);
  EXPECT_THROW(a.send_bytes(data, 5, 6), std::invalid_argument);
  EXPECT_FALSE(b.poll());  // nothing was sent by the refused calls
}

TEST(Connection, EmptyMessagesAreMessages) {
  auto [a, b] = Pipe();
  a.send_bytes("");
  a.send_bytes("after");
  EXPECT_EQ(b.recv_bytes(), "");
  EXPECT_EQ(b.recv_bytes(), "after");
}

TEST(Connection, MaxlengthRefusesLongerMessagesAndLeavesTheConnectionUnreadable) {
  auto [a, b] = Pipe();
  a.send_bytes("short");
  EXPECT_EQ(b.recv_bytes(5), "short");
  EXPECT_THROW((void)b.recv_bytes(-1), std::invalid_argument);
  a.send_bytes("too long");
  EXPECT_EQ(error_of([&] { (void)b.recv_bytes(3); }), EMSGSIZE);
  a.send_bytes("next");
  EXPECT_THROW((void)b.recv_bytes(), std::system_error);  // unfit for reading, as in Python
}

TEST(Connection, RecvBytesIntoFillsTheBufferOrThrowsBufferTooShort) {
  auto [a, b] = Pipe();
  std::string buffer(8, '.');
  a.send_bytes("abc");
  EXPECT_EQ(b.recv_bytes_into(buffer, 2), 3u);
  EXPECT_EQ(buffer, "..abc...");
  a.send_bytes("longer than that");
  try {
    (void)b.recv_bytes_into(buffer, 4);
    ADD_FAILURE() << "no BufferTooShort";
  } catch (const BufferTooShort& e) {
    EXPECT_EQ(e.message(), "longer than that");  // nothing lost
  }
  EXPECT_THROW((void)b.recv_bytes_into(buffer, 9), std::invalid_argument);
  EXPECT_THROW((void)b.recv_bytes_into(buffer, -1), std::invalid_argument);
  a.send_bytes("ok");  // still usable after BufferTooShort
  EXPECT_EQ(b.recv_bytes(), "ok");
}

TEST(Connection, PollWaitsForDataOrEndOfFile) {
  auto [a, b] = Pipe();
  EXPECT_FALSE(b.poll());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(b.poll(30ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_FALSE(b.poll(-1s));
  a.send_bytes("x");
  EXPECT_TRUE(b.poll(concur_test::generous));
  EXPECT_EQ(b.recv_bytes(), "x");
  a.close();
  EXPECT_TRUE(b.poll(concur_test::generous));  // end of file is readable
}

TEST(Connection, QueuedMessagesArriveThenEofError) {
  for (bool duplex : {true, false}) {
    auto [reader, writer] = Pipe(duplex);
    writer.send_bytes("one");
    writer.send(std::string("two"));
    writer.close();
    EXPECT_EQ(reader.recv_bytes(), "one");
    EXPECT_EQ(reader.recv<std::string>(), "two");
    EXPECT_THROW((void)reader.recv_bytes(), EOFError);
    EXPECT_THROW((void)reader.recv_bytes(), EOFError);
  }
}

// Issue 12 item 14: a one-way Pipe is a socket pair (so that sends use MSG_NOSIGNAL, with no
// extra system call), with the unused direction shut down in the kernel, as a pipe's would be.
TEST(Pipe, OneWayEndsAreSocketsThatRefuseTheOtherDirection) {
  auto [reader, writer] = Pipe(false);
  int type = 0;
  socklen_t length = sizeof type;
  EXPECT_EQ(::getsockopt(writer.fileno(), SOL_SOCKET, SO_TYPE, &type, &length), 0);
  EXPECT_EQ(type, SOCK_STREAM);
  EXPECT_EQ(::send(reader.fileno(), "x", 1, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
  char byte = 0;
  EXPECT_EQ(::recv(writer.fileno(), &byte, 1, MSG_DONTWAIT), 0);  // nothing can ever come
  writer.send_bytes("still one way");
  EXPECT_EQ(reader.recv_bytes(), "still one way");
}

TEST(Connection, SendingToAClosedPeerThrowsEpipeAndTheProcessLives) {
  for (bool duplex : {true, false}) {
    auto [reader, writer] = Pipe(duplex);
    reader.close();
    EXPECT_EQ(error_of([&] { writer.send_bytes("nobody listens"); }), EPIPE);
    EXPECT_EQ(error_of([&] { writer.send(42); }), EPIPE);
  }
  // A pending SIGPIPE must not be left behind either.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
}

// A real pipe given to Connection(fd) is written with SIGPIPE blocked around each write (both
// kinds of Pipe() are socket pairs, written with MSG_NOSIGNAL instead).
std::pair<Connection, Connection> os_pipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return {Connection(fds[0], true, false), Connection(fds[1], false, true)};
}

TEST(Connection, WritingToAPipeLeavesTheSignalMaskAsItWas) {
  // In a thread of its own, so that this test's mask changes stay there.
  std::thread([] {
    sigset_t pipe_only, before, after;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    for (bool caller_blocks : {false, true}) {
      if (caller_blocks) pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
      pthread_sigmask(SIG_SETMASK, nullptr, &before);
      auto [reader, writer] = os_pipe();
      writer.send_bytes("fine");
      reader.close();
      EXPECT_EQ(error_of([&] { writer.send_bytes("gone"); }), EPIPE);
      pthread_sigmask(SIG_SETMASK, nullptr, &after);
      EXPECT_EQ(sigismember(&before, SIGPIPE), sigismember(&after, SIGPIPE));
      if (caller_blocks) {
        // A thread that blocks SIGPIPE itself gets what a raw write gives it: a pending signal.
        const timespec zero{0, 0};
        EXPECT_EQ(sigtimedwait(&pipe_only, nullptr, &zero), SIGPIPE);
        pthread_sigmask(SIG_UNBLOCK, &pipe_only, nullptr);
      }
    }
  }).join();
}

TEST(Connection, IgnoreSigpipeIgnoresItProcessWideAndSendsStillReportEpipe) {
  // In a child process: ignore_sigpipe() changes the whole process, and this one runs the
  // other tests. The child reports which check failed through its exit code.
  concur::Process child([]() -> int {
    concur::ignore_sigpipe();
    struct sigaction now {};
    if (sigaction(SIGPIPE, nullptr, &now) != 0 || now.sa_handler != SIG_IGN) return 10;
    for (int kind = 0; kind < 3; ++kind) {
      auto [reader, writer] = kind == 2 ? os_pipe() : Pipe(kind == 1);
      writer.send_bytes("fine");
      if (reader.recv_bytes() != "fine") return 11;
      reader.close();
      if (error_of([&] { writer.send_bytes("gone"); }) != EPIPE) return 12;
    }
    return 0;
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST(Connection, EndOfFileInsideAMessageThrows) {
  auto [reader, writer] = Pipe(false);
  raw_write(writer.fileno(), std::string("\0\0\0\x0a"
                                         "abc",
                                         7));  // claims 10, sends 3
  writer.close();
  EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EPROTO);
  auto [r2, w2] = Pipe(false);
  raw_write(w2.fileno(), std::string("\0\0", 2));  // half a header
  w2.close();
  EXPECT_EQ(error_of([&] { (void)r2.recv_bytes(); }), EPROTO);
}

TEST(Connection, AClosedHandleThrowsOnUse) {
  auto [a, b] = Pipe();
  a.close();
  EXPECT_TRUE(a.closed());
  a.close();  // twice: nothing
  EXPECT_EQ(error_of([&] { a.send_bytes("x"); }), EBADF);
  EXPECT_EQ(error_of([&] { (void)a.recv_bytes(); }), EBADF);
  EXPECT_EQ(error_of([&] { (void)a.fileno(); }), EBADF);
  EXPECT_EQ(error_of([&] { (void)a.poll(); }), EBADF);
  Connection none;
  EXPECT_TRUE(none.closed());
  EXPECT_THROW(Connection(-1), std::invalid_argument);
}

// Issue 12 item 10: a refused handle stays the caller's, open.
TEST(Connection, ARefusedHandleStaysOpenAndTheCallers) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  EXPECT_THROW(Connection(fds[0], false, false), std::invalid_argument);
  EXPECT_NE(::fcntl(fds[0], F_GETFD), -1) << "the refused descriptor was closed";
  raw_write(fds[1], "x");
  char byte = 0;
  EXPECT_EQ(::read(fds[0], &byte, 1), 1);
  ::close(fds[0]);
  ::close(fds[1]);
}

// Issue 12 item 11: an error in the middle of a frame (here EAGAIN on a non-blocking
// descriptor, after the header and part of the payload) leaves the stream out of step; the
// connection must refuse further reads rather than take payload bytes for a header.
TEST(Connection, AnErrorInsideAMessageLeavesTheConnectionUnreadable) {
  for (bool duplex : {true, false}) {
    auto [reader, writer] = Pipe(duplex);
    ASSERT_EQ(::fcntl(reader.fileno(), F_SETFL, ::fcntl(reader.fileno(), F_GETFL) | O_NONBLOCK), 0);
    // A frame of 10 bytes whose last 7 look like a frame of their own: "\0\0\0\1X" + "yz".
    raw_write(writer.fileno(), std::string("\0\0\0\x0a"
                                           "abc",
                                           7));
    EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EAGAIN);
    raw_write(writer.fileno(), std::string("\0\0\0\x01Xyz", 7));
    writer.send_bytes("next");
    int second = 0;
    std::string got;
    try {
      got = reader.recv_bytes();
    } catch (const std::system_error& e) {
      second = e.code().value();
    }
    EXPECT_NE(second, 0) << "read a message out of step: \"" << got << "\"";
    EXPECT_THROW((void)reader.poll(), std::system_error);
  }
}

// Before any byte of a message is taken, an error leaves the stream in step: a non-blocking
// reader that finds nothing may try again.
TEST(Connection, AnErrorBetweenMessagesLeavesTheConnectionReadable) {
  for (bool duplex : {true, false}) {
    auto [reader, writer] = Pipe(duplex);
    ASSERT_EQ(::fcntl(reader.fileno(), F_SETFL, ::fcntl(reader.fileno(), F_GETFL) | O_NONBLOCK), 0);
    EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EAGAIN);
    writer.send_bytes("first");
    EXPECT_EQ(reader.recv_bytes(), "first");
    EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EAGAIN);
    writer.send_bytes("second");
    std::string into(16, '.');
    EXPECT_EQ(reader.recv_bytes_into(into), 6u);
  }
}

TEST(Connection, ReadsTheLongFormatOfPythonsFraming) {
  // Python sends -1 and an 8-byte length for messages over 2 GiB; the decoder reads that form
  // whatever the size.
  auto [reader, writer] = Pipe(false);
  raw_write(writer.fileno(), std::string("\xff\xff\xff\xff\0\0\0\0\0\0\0\x05"
                                         "hello",
                                         17));
  EXPECT_EQ(reader.recv_bytes(), "hello");
}

TEST(Connection, AHostileLengthNeitherReadsOutOfBoundsNorAllocates) {
  auto [reader, writer] = Pipe(false);
  reader.set_max_message_size(1 << 20);
  raw_write(writer.fileno(), std::string("\x40\0\0\0", 4));  // claims 1 GiB
  EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EMSGSIZE);
  auto [r2, w2] = Pipe(false);
  raw_write(w2.fileno(), std::string("\x80\0\0\0", 4));  // negative, not -1
  EXPECT_EQ(error_of([&] { (void)r2.recv_bytes(); }), EBADMSG);
  auto [r3, w3] = Pipe();
  w3.send_bytes(std::string("\x05\0\0\0\0\0\0\0ab", 10));  // a string claiming 5 bytes, 2 sent
  EXPECT_EQ(error_of([&] { (void)r3.recv<std::string>(); }), EBADMSG);
}

TEST(Connection, TypedMessagesRoundTrip) {
  auto [a, b] = Pipe();
  using Record = std::tuple<int, std::string, std::optional<double>, std::vector<bool>>;
  const std::map<std::string, std::vector<Record>> sent = {
      {"first", {{1, "one", 1.5, {true, false}}, {2, "", std::nullopt, {}}}}, {"empty", {}}};
  a.send(sent);
  a.send(3.25);
  a.send(std::pair<int, std::string>{7, "seven"});
  EXPECT_EQ(b.recv<decltype(sent)>(), sent);
  EXPECT_EQ(b.recv<double>(), 3.25);
  EXPECT_EQ((b.recv<std::pair<int, std::string>>()), (std::pair<int, std::string>{7, "seven"}));
  a.send(1);
  EXPECT_EQ(error_of([&] { (void)b.recv<std::int64_t>(); }), EBADMSG);  // wrong size
}

TEST(Connection, SixteenMebibyteMessagesBetweenProcesses) {
  auto [parent_end, child_end] = Pipe();
  std::string big(16 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + i / 4096);
  concur::Process child([&] {
    const std::string got = child_end.recv_bytes();
    child_end.send_bytes(got);  // echo it back
    return got == big ? 0 : 1;
  });
  child.start();
  parent_end.send_bytes(big);
  const std::string echoed = parent_end.recv_bytes();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_TRUE(echoed == big);
}

TEST(Connection, ManyMessagesBetweenThreadsArriveInOrder) {
  auto [a, b] = Pipe();
  const int count = static_cast<int>(concur_test::scaled(20000, 10));
  std::thread sender([&] {
    for (int i = 0; i < count; ++i) {
      if (i % 2 == 0) {
        a.send(i);
      } else {
        a.send_bytes(std::to_string(i));
      }
    }
  });
  for (int i = 0; i < count; ++i) {
    if (i % 2 == 0) {
      ASSERT_EQ(b.recv<int>(), i);
    } else {
      ASSERT_EQ(b.recv_bytes(), std::to_string(i));
    }
  }
  sender.join();
}

// Sizes around and across the receiver's 4 KiB read buffer, mixed, so that headers and payloads
// straddle every boundary: each message must arrive whole, in order, byte for byte.
TEST(Connection, MessagesOfMixedSizesSurviveTheReadBuffer) {
  for (bool duplex : {true, false}) {
    auto [reader, writer] = Pipe(duplex);
    const int count = static_cast<int>(concur_test::scaled(3000, 10));
    auto message = [](int i) {
      const std::size_t sizes[] = {0, 1, 3, 4, 5, 4091, 4092, 4096, 4100, 8191, 20000, 70000};
      const std::size_t size = sizes[(static_cast<std::size_t>(i) * 7) % std::size(sizes)];
      std::string text(size, '\0');
      for (std::size_t k = 0; k < size; ++k) text[k] = static_cast<char>(i + k * 13);
      return text;
    };
    std::thread sender([&writer = writer, count, &message] {
      for (int i = 0; i < count; ++i) writer.send_bytes(message(i));
    });
    std::string into(70000, '\0');
    for (int i = 0; i < count; ++i) {
      const std::string expected = message(i);
      if (i % 3 == 0) {
        const std::size_t n = reader.recv_bytes_into(into);
        ASSERT_EQ(n, expected.size()) << "message " << i;
        ASSERT_EQ(into.compare(0, n, expected), 0) << "message " << i;
      } else {
        ASSERT_EQ(reader.recv_bytes(), expected) << "message " << i;
      }
    }
    sender.join();
    EXPECT_FALSE(reader.poll());
  }
}

void ignore_signal(int) {}

TEST(Connection, BlockingCallsRetryAfterSignals) {
  struct sigaction action {};
  action.sa_handler = &ignore_signal;  // no SA_RESTART: reads fail with EINTR
  struct sigaction old {};
  ::sigaction(SIGUSR1, &action, &old);
  auto [a, b] = Pipe();
  std::atomic<bool> done{false};
  std::string got;
  pthread_t receiver_thread{};
  std::thread receiver([&] {
    receiver_thread = ::pthread_self();
    got = b.recv_bytes();
    done = true;
  });
  std::this_thread::sleep_for(20ms);
  for (int i = 0; i < 5; ++i) {
    ::pthread_kill(receiver.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_FALSE(done);
  a.send_bytes("after the signals");
  receiver.join();
  EXPECT_EQ(got, "after the signals");
  ::sigaction(SIGUSR1, &old, nullptr);
}

TEST(Connection, TalksToPythonsMultiprocessingConnection) {
  if (std::system("python3 -c 'import multiprocessing.connection' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not available";
  }
  auto [mine, theirs] = Pipe();
  const int fd = theirs.fileno();
  const pid_t pid = concur::fork();
  if (pid == 0) {
    ::fcntl(fd, F_SETFD, 0);  // let python3 inherit this end
    const std::string script =
        "import sys\n"
        "from multiprocessing.connection import Connection\n"
        "c = Connection(int(sys.argv[1]))\n"
        "while True:\n"
        "    m = c.recv_bytes()\n"
        "    if m == b'stop': break\n"
        "    c.send_bytes(m[::-1])\n"
        "c.send_bytes(b'')\n"
        "c.send_bytes(b'x' * 300000)\n";
    ::execlp("python3", "python3", "-c", script.c_str(), std::to_string(fd).c_str(), nullptr);
    ::_exit(127);
  }
  theirs.close();
  mine.send_bytes("hello python");
  EXPECT_EQ(mine.recv_bytes(), "nohtyp olleh");
  mine.send_bytes(std::string(70000, 'y') + "z");  // past 64 KiB: Python's other branch
  EXPECT_EQ(mine.recv_bytes(), "z" + std::string(70000, 'y'));
  mine.send_bytes("stop");
  EXPECT_EQ(mine.recv_bytes(), "");
  EXPECT_EQ(mine.recv_bytes(), std::string(300000, 'x'));
  EXPECT_THROW((void)mine.recv_bytes(), EOFError);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
