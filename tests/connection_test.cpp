// Tests of concur/connection.hpp: Python's Pipe and Connection semantics, its wire format
// (checked against a real python3), end-of-file and broken-pipe handling, EINTR, and typed
// messages between processes and threads.
//
// The ends of a Pipe are named through references to the returned pair, not a structured
// binding: Clang 14 cannot capture a structured binding in a lambda.

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
#include <memory>
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
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
  EXPECT_TRUE(a.readable() && a.writable() && b.readable() && b.writable());
  a.send_bytes("ping");
  EXPECT_EQ(b.recv_bytes(), "ping");
  b.send_bytes("pong");
  EXPECT_EQ(a.recv_bytes(), "pong");
}

TEST(Pipe, OneWayEndsRefuseTheWrongDirection) {
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
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
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
  a.send_bytes("");
  a.send_bytes("after");
  EXPECT_EQ(b.recv_bytes(), "");
  EXPECT_EQ(b.recv_bytes(), "after");
}

TEST(Connection, MaxlengthRefusesLongerMessagesAndLeavesTheConnectionUnreadable) {
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
  a.send_bytes("short");
  EXPECT_EQ(b.recv_bytes(5), "short");
  EXPECT_THROW((void)b.recv_bytes(-1), std::invalid_argument);
  a.send_bytes("too long");
  EXPECT_EQ(error_of([&] { (void)b.recv_bytes(3); }), EMSGSIZE);
  a.send_bytes("next");
  EXPECT_THROW((void)b.recv_bytes(), std::system_error);  // unfit for reading, as in Python
}

TEST(Connection, RecvBytesIntoFillsTheBufferOrThrowsBufferTooShort) {
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
    auto reader_writer = Pipe(duplex);
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
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
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
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
    auto reader_writer = Pipe(duplex);
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
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
      auto reader_writer = os_pipe();
      auto& reader = reader_writer.first;
      auto& writer = reader_writer.second;
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
      auto reader_writer = kind == 2 ? os_pipe() : Pipe(kind == 1);
      auto& reader = reader_writer.first;
      auto& writer = reader_writer.second;
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
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
  raw_write(writer.fileno(), std::string("\0\0\0\x0a"
                                         "abc",
                                         7));  // claims 10, sends 3
  writer.close();
  EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EPROTO);
  auto r2_w2 = Pipe(false);
  auto& r2 = r2_w2.first;
  auto& w2 = r2_w2.second;
  raw_write(w2.fileno(), std::string("\0\0", 2));  // half a header
  w2.close();
  EXPECT_EQ(error_of([&] { (void)r2.recv_bytes(); }), EPROTO);
}

TEST(Connection, AClosedHandleThrowsOnUse) {
  auto a_b = Pipe();
  auto& a = a_b.first;
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
    auto reader_writer = Pipe(duplex);
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
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
    auto reader_writer = Pipe(duplex);
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
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
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
  raw_write(writer.fileno(), std::string("\xff\xff\xff\xff\0\0\0\0\0\0\0\x05"
                                         "hello",
                                         17));
  EXPECT_EQ(reader.recv_bytes(), "hello");
}

TEST(Connection, AHostileLengthNeitherReadsOutOfBoundsNorAllocates) {
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
  reader.set_max_message_size(1 << 20);
  raw_write(writer.fileno(), std::string("\x40\0\0\0", 4));  // claims 1 GiB
  EXPECT_EQ(error_of([&] { (void)reader.recv_bytes(); }), EMSGSIZE);
  auto r2_w2 = Pipe(false);
  auto& r2 = r2_w2.first;
  auto& w2 = r2_w2.second;
  raw_write(w2.fileno(), std::string("\x80\0\0\0", 4));  // negative, not -1
  EXPECT_EQ(error_of([&] { (void)r2.recv_bytes(); }), EBADMSG);
  auto r3_w3 = Pipe();
  auto& r3 = r3_w3.first;
  auto& w3 = r3_w3.second;
  w3.send_bytes(std::string("\x05\0\0\0\0\0\0\0ab", 10));  // a string claiming 5 bytes, 2 sent
  EXPECT_EQ(error_of([&] { (void)r3.recv<std::string>(); }), EBADMSG);
}

TEST(Connection, TypedMessagesRoundTrip) {
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
  auto parent_end_child_end = Pipe();
  auto& parent_end = parent_end_child_end.first;
  auto& child_end = parent_end_child_end.second;
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

// ---- close-on-fork (issue 12 item 9)

// A worker of the pool below: adds up the numbers it receives until end of file; the sum is
// its exit code.
int add_until_eof(Connection& end) {
  int sum = 0;
  for (;;) {
    try {
      sum += end.recv<int>();
    } catch (const EOFError&) {
      return sum;
    }
  }
}

// The natural process pool: one Pipe per worker, the worker's end moved into its Process, the
// parent keeping its own end; then the parent feeds each worker, closes that worker's end and
// joins it, in order. Without close-on-fork, every later worker inherits the parent's ends to
// the earlier ones, so worker 0 never sees end of file while worker 1 lives, and the join
// times out (each worker is later terminated, so the test ends either way).
TEST(CloseOnFork, TheNaturalProcessPoolEndsWithoutClosingEndsByHand) {
  concur_test::Watchdog watchdog("process pool", std::chrono::seconds(120));
  constexpr int workers = 4;
  for (bool duplex : {true, false}) {
    struct Worker {
      std::unique_ptr<concur::Process> process;
      Connection end;  // the parent's
    };
    std::vector<Worker> pool;
    for (int i = 0; i < workers; ++i) {
      auto [first, second] = Pipe(duplex);  // duplex: either end; one-way: (reader, writer)
      auto process = std::make_unique<concur::Process>(add_until_eof, std::move(first));
      process->start();
      pool.push_back({std::move(process), std::move(second)});
    }
    std::vector<bool> ended(workers, false);
    for (int i = 0; i < workers; ++i) {
      for (int n = 1; n <= i + 3; ++n) pool[i].end.send(n);
      pool[i].end.close();
      ended[i] = pool[i].process->join(10s);
      EXPECT_TRUE(ended[i]) << "worker " << i << " (duplex " << duplex << ") never saw end of file";
    }
    for (int i = 0; i < workers; ++i) {
      if (!ended[i]) pool[i].process->terminate();
      pool[i].process->join();
      if (ended[i]) {
        EXPECT_EQ(pool[i].process->exitcode(), (i + 3) * (i + 4) / 2);
      }
    }
  }
}

// The rule never closes an end that a child's own code uses: a lambda capturing the child's
// end by reference keeps working, while the parent's end to an earlier worker (whose peer
// went to that worker) is closed in the new child.
TEST(CloseOnFork, ALambdaCapturingItsEndByReferenceKeepsWorking) {
  concur_test::Watchdog watchdog("by-reference lambda", std::chrono::seconds(60));
  auto earlier_parent_earlier_child = Pipe();
  auto& earlier_parent = earlier_parent_earlier_child.first;
  auto& earlier_child = earlier_parent_earlier_child.second;
  concur::Process earlier(add_until_eof, std::move(earlier_child));
  earlier.start();
  EXPECT_TRUE(earlier_parent.close_on_fork());  // its peer lives in `earlier` only

  auto parent_end_child_end = Pipe();

  auto& parent_end = parent_end_child_end.first;

  auto& child_end = parent_end_child_end.second;
  EXPECT_FALSE(parent_end.close_on_fork());
  EXPECT_FALSE(child_end.close_on_fork());
  concur::Process child([&]() -> int {
    if (child_end.closed()) return 10;
    if (!earlier_parent.closed()) return 11;  // the fork closed it here
    const int got = child_end.recv<int>();
    child_end.send(got + 1);
    return 0;
  });
  child.start();
  parent_end.send(41);
  EXPECT_EQ(parent_end.recv<int>(), 42);
  ASSERT_TRUE(child.join(20s));
  EXPECT_EQ(child.exitcode(), 0);
  // The parent's own copy is untouched.
  earlier_parent.send(5);
  earlier_parent.close();
  ASSERT_TRUE(earlier.join(20s));
  EXPECT_EQ(earlier.exitcode(), 5);
}

// An end whose peer already lives in another process, handed to a second child (a pipeline),
// needs set_close_on_fork(false); without it the child gets a clear error, and the number the
// fork closed is never closed again, even once it is reused.
TEST(CloseOnFork, SetCloseOnForkFalseHandsAMarkedEndToAChild) {
  concur_test::Watchdog watchdog("pipeline", std::chrono::seconds(60));
  auto reader_writer = Pipe(false);
  auto& reader = reader_writer.first;
  auto& writer = reader_writer.second;
  concur::Process producer(
      [](Connection& out) {
        for (int n = 1; n <= 3; ++n) out.send(n);
      },
      std::move(writer));
  producer.start();
  ASSERT_TRUE(reader.close_on_fork());

  concur::Process without([&]() -> int {
    if (!reader.closed()) return 10;
    int error = 0;
    try {
      (void)reader.recv<int>();
    } catch (const std::system_error& e) {
      error = e.code().value();
    }
    if (error != EBADF) return 11;
    // The closed number, reused, must survive the Connection's end.
    const int reused = ::dup(STDERR_FILENO);
    reader.close();
    return ::fcntl(reused, F_GETFD) == -1 ? 12 : 0;
  });
  without.start();
  ASSERT_TRUE(without.join(20s));
  EXPECT_EQ(without.exitcode(), 0);

  reader.set_close_on_fork(false);
  EXPECT_FALSE(reader.close_on_fork());
  concur::Process consumer(add_until_eof, std::move(reader));
  consumer.start();
  ASSERT_TRUE(consumer.join(20s));
  EXPECT_EQ(consumer.exitcode(), 6);
  ASSERT_TRUE(producer.join(20s));
}

// The pipeline started one stage at a time, each end moved into the Process that uses it: the
// reader's partner is already in the producer (and closed here) when the consumer starts, so
// the reader is close-on-fork, but a Connection passed as a Process's argument is that child's
// to use, and the Process exempts it. Before the exemption the consumer failed with EBADF
// unless the program called set_close_on_fork(false) itself.
TEST(CloseOnFork, APipelineStartedStageByStageNeedsNoCallByHand) {
  concur_test::Watchdog watchdog("pipeline by arguments", std::chrono::seconds(60));
  auto reader_writer = Pipe(false);
  concur::Process producer(
      [](Connection& out) {
        for (int n = 1; n <= 3; ++n) out.send(n);
      },
      std::move(reader_writer.second));
  producer.start();
  concur::Process consumer(add_until_eof, std::move(reader_writer.first));
  consumer.start();
  ASSERT_TRUE(consumer.join(20s));
  EXPECT_EQ(consumer.exitcode(), 6);
  ASSERT_TRUE(producer.join(20s));
}

// Two children talking over one Pipe, each capturing its end by reference, while the parent
// closes both of its copies: nothing may be closed or shut down under them (neither end was
// moved away, so closing them here is a plain close).
TEST(CloseOnFork, ChildrenSharingAPipeByReferenceOutliveTheParentsCopies) {
  concur_test::Watchdog watchdog("pipe between children", std::chrono::seconds(60));
  auto left_right = Pipe();
  auto& left = left_right.first;
  auto& right = left_right.second;
  concur::Process asker([&]() -> int {
    left.send(20);
    return left.recv<int>() == 21 ? 0 : 1;
  });
  concur::Process answerer([&] { right.send(right.recv<int>() + 1); });
  asker.start();
  answerer.start();
  left.close();
  right.close();
  ASSERT_TRUE(asker.join(20s));
  ASSERT_TRUE(answerer.join(20s));
  EXPECT_EQ(asker.exitcode(), 0);
  EXPECT_EQ(answerer.exitcode(), 0);
}

// What Process may do for its arguments: keep_in_child exempts a Connection and ignores the
// rest.
TEST(CloseOnFork, KeepInChildExemptsConnectionsOnly) {
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
  b.close();
  EXPECT_TRUE(a.close_on_fork());
  concur::detail::keep_in_child(a);
  EXPECT_FALSE(a.close_on_fork());
  int plain = 3;
  concur::detail::keep_in_child(plain);
  EXPECT_EQ(plain, 3);
  Connection none;
  concur::detail::keep_in_child(none);  // closed: nothing to do, nothing thrown
  EXPECT_FALSE(none.close_on_fork());
}

TEST(Connection, ManyMessagesBetweenThreadsArriveInOrder) {
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
    auto reader_writer = Pipe(duplex);
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
    const int count = static_cast<int>(concur_test::scaled(3000, 10));
    auto message = [](int i) {
      const std::size_t sizes[] = {0, 1, 3, 4, 5, 4091, 4092, 4096, 4100, 8191, 20000, 70000};
      const std::size_t size = sizes[(static_cast<std::size_t>(i) * 7) % std::size(sizes)];
      std::string text(size, '\0');
      for (std::size_t k = 0; k < size; ++k) text[k] = static_cast<char>(i + k * 13);
      return text;
    };
    std::thread sender([&] {
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
  auto a_b = Pipe();
  auto& a = a_b.first;
  auto& b = a_b.second;
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
  auto mine_theirs = Pipe();
  auto& mine = mine_theirs.first;
  auto& theirs = mine_theirs.second;
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

// ---- connection::wait (Python's multiprocessing.connection.wait) ----------------------------

TEST(ConnectionWait, ReturnsTheReadyOnesInTheOrderGiven) {
  auto [a1, b1] = concur::Pipe();
  auto [a2, b2] = concur::Pipe();
  auto [a3, b3] = concur::Pipe();
  a3.send_bytes("three");
  a2.send_bytes("two");
  std::vector<concur::Connection*> all{&b1, &b2, &b3};
  const auto ready = concur::connection::wait(all, std::chrono::seconds(5));
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0], &b2);
  EXPECT_EQ(ready[1], &b3);
}

TEST(ConnectionWait, TimesOutEmptyAndCountsANegativeTimeoutAsZero) {
  auto [a, b] = concur::Pipe();
  std::vector<concur::Connection*> one{&b};
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(concur::connection::wait(one, std::chrono::milliseconds(50)).empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
  EXPECT_TRUE(concur::connection::wait(one, std::chrono::milliseconds(-5)).empty());
  a.send_bytes("x");
  EXPECT_EQ(concur::connection::wait(one, std::chrono::milliseconds(-5)).size(), 1u);
}

TEST(ConnectionWait, WakesForAMessageFromAnotherThreadAndForEndOfFile) {
  auto [a, b] = concur::Pipe();
  std::vector<concur::Connection*> one{&b};
  std::thread sender([&a = a] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    a.send_bytes("late");
    a.close();
  });
  ASSERT_EQ(concur::connection::wait(one).size(), 1u);
  EXPECT_EQ(b.recv_bytes(), "late");
  sender.join();
  ASSERT_EQ(concur::connection::wait(one).size(), 1u);  // end of file is ready
  EXPECT_THROW((void)b.recv_bytes(), concur::EOFError);
}

// Two messages arrive in one read: the second sits in the Connection's buffer, where poll(2)
// cannot see it, and still counts as ready.
TEST(ConnectionWait, ABufferedMessageIsReady) {
  auto [a, b] = concur::Pipe();
  a.send_bytes("first");
  a.send_bytes("second");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(b.recv_bytes(), "first");
  std::vector<concur::Connection*> one{&b};
  ASSERT_EQ(concur::connection::wait(one, std::chrono::seconds(0)).size(), 1u);
  EXPECT_EQ(b.recv_bytes(), "second");
}

TEST(ConnectionWait, DescriptorsAndBadInput) {
  auto [a, b] = concur::Pipe();
  a.send_bytes("fd");
  std::vector<int> fds{a.fileno(), b.fileno()};
  const auto ready = concur::connection::wait(std::span<const int>(fds), std::chrono::seconds(5));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], b.fileno());
  std::vector<int> negative{-1};
  EXPECT_THROW((void)concur::connection::wait(std::span<const int>(negative)),
               std::invalid_argument);
  std::vector<concur::Connection*> null{nullptr};
  EXPECT_THROW((void)concur::connection::wait(null), std::invalid_argument);
  a.close();
  std::vector<concur::Connection*> closed{&a};
  EXPECT_THROW((void)concur::connection::wait(closed), std::system_error);
  const int stale = b.fileno();
  b.close();
  std::vector<int> not_open{stale};
  EXPECT_THROW(
      (void)concur::connection::wait(std::span<const int>(not_open), std::chrono::seconds(1)),
      std::system_error);
}

}  // namespace
