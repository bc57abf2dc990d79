// Tests of concur/listener.hpp between concur endpoints: addresses, the authkey handshake in
// both its forms, hostile and silent peers, and errors. The matrix against real Python
// processes is in listener_interop_test.cpp.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <concur/listener.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace {

namespace cx = concur::connection;
using namespace std::chrono_literals;

// Bytes that depend on their position and a seed: a message's content is checked, not only
// its length.
std::string pattern(std::size_t size, unsigned seed) {
  std::string bytes(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (char& byte : bytes) {
    x = x * 1664525u + 1013904223u;
    byte = static_cast<char>(x >> 24);
  }
  return bytes;
}

// A raw TCP socket connected to `port` on 127.0.0.1: a peer that does not follow the protocol.
concur::detail::UniqueFd raw_client(std::uint16_t port) {
  return concur::detail::connected_socket(concur::detail::inet_address("127.0.0.1", port));
}

void write_raw(int fd, std::string_view bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

TEST(Listener, TcpWithoutKeyRoundTripAndAddresses) {
  cx::Listener listener({"127.0.0.1", 0});
  EXPECT_EQ(listener.address().family(), cx::Family::af_inet);
  EXPECT_EQ(listener.address().host(), "127.0.0.1");
  ASSERT_NE(listener.address().port(), 0);
  EXPECT_FALSE(listener.last_accepted().has_value());
  EXPECT_GE(listener.fileno(), 0);
  std::thread client([address = listener.address()] {
    cx::Connection connection = cx::Client(address);
    connection.send_bytes("ping");
    EXPECT_EQ(connection.recv_bytes(), "pong");
  });
  cx::Connection connection = listener.accept();
  EXPECT_EQ(connection.recv_bytes(), "ping");
  connection.send_bytes("pong");
  client.join();
  ASSERT_TRUE(listener.last_accepted().has_value());
  EXPECT_EQ(listener.last_accepted()->host(), "127.0.0.1");
  EXPECT_NE(listener.last_accepted()->port(), 0);
}

TEST(Listener, RightKeyCarriesMessagesOfEverySizeBothWays) {
  cx::Listener listener({"127.0.0.1", 0}, {.authkey = "secret"});
  const std::size_t sizes[] = {0, 1, 64 * 1024, 1024 * 1024};
  std::thread client([&] {
    cx::Connection connection = cx::Client(listener.address(), {.authkey = "secret"});
    for (std::size_t size : sizes) {
      connection.send_bytes(pattern(size, 1));
      EXPECT_EQ(connection.recv_bytes(), pattern(size, 2)) << size;
    }
  });
  cx::Connection connection = listener.accept();
  for (std::size_t size : sizes) {
    EXPECT_EQ(connection.recv_bytes(), pattern(size, 1)) << size;
    connection.send_bytes(pattern(size, 2));
  }
  client.join();
}

TEST(Listener, EmptyKeyIsAKey) {
  cx::Listener listener({"127.0.0.1", 0}, {.authkey = std::string()});
  std::thread client([&] {
    EXPECT_THROW(cx::Client(listener.address(), {.authkey = "x"}), concur::AuthenticationError);
    cx::Connection ok = cx::Client(listener.address(), {.authkey = std::string()});
    ok.send_bytes("in");
  });
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  EXPECT_EQ(listener.accept().recv_bytes(), "in");
  client.join();
}

TEST(Listener, WrongKeyFailsOnBothSidesAndNothingElseIsExchanged) {
  cx::Listener listener({"127.0.0.1", 0}, {.authkey = "right"});
  std::thread client([&] {
    EXPECT_THROW(cx::Client(listener.address(), {.authkey = "wrong"}), concur::AuthenticationError);
  });
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  client.join();
  // The Listener accepts again as before.
  std::thread good([&] { cx::Client(listener.address(), {.authkey = "right"}).send_bytes("ok"); });
  EXPECT_EQ(listener.accept().recv_bytes(), "ok");
  good.join();
}

TEST(Listener, KeyOnOneSideOnly) {
  // The Listener challenges a client that expects nothing: the client's first message is not
  // an answer, and the client's first receive is the challenge (as with Python).
  cx::Listener keyed({"127.0.0.1", 0}, {.authkey = "k"});
  std::thread plain([&] {
    cx::Connection connection = cx::Client(keyed.address());
    connection.send_bytes("hello");
    EXPECT_TRUE(connection.recv_bytes().starts_with("#CHALLENGE#{sha256}"));
  });
  EXPECT_THROW(keyed.accept(), concur::AuthenticationError);
  plain.join();

  // A client with a key and a Listener without: no challenge comes, the client gives up.
  cx::Listener open({"127.0.0.1", 0});
  std::thread keyed_client([&] {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(cx::Client(open.address(), {.authkey = "k", .handshake_timeout = 200ms}),
                 concur::AuthenticationError);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  });
  cx::Connection accepted = open.accept();
  keyed_client.join();
}

TEST(Listener, GarbageAndOversizedAnswersAreRefusedThenTheListenerGoesOn) {
  cx::Listener listener({"127.0.0.1", 0}, {.authkey = "k", .handshake_timeout = 5000ms});
  const std::uint16_t port = listener.address().port();
  // A length of 2 GiB - 1: refused from the header, before anything is allocated or read.
  std::thread huge([&] {
    auto fd = raw_client(port);
    write_raw(fd.get(), std::string("\x7f\xff\xff\xff", 4));
    char sink[512];
    while (::recv(fd.get(), sink, sizeof sink, 0) > 0) {
    }
  });
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  huge.join();
  // 257 bytes: one over the cap.
  std::thread over([&] {
    cx::Connection connection(raw_client(port).release());
    (void)connection.recv_bytes();  // the challenge
    connection.send_bytes(std::string(257, 'x'));
  });
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  over.join();
  // Random bytes as an answer.
  std::thread noise([&] {
    cx::Connection connection(raw_client(port).release());
    (void)connection.recv_bytes();
    connection.send_bytes(pattern(48, 7));
    EXPECT_EQ(connection.recv_bytes(), "#FAILURE#");
  });
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  noise.join();
  std::thread good([&] { cx::Client(listener.address(), {.authkey = "k"}).send_bytes("fine"); });
  EXPECT_EQ(listener.accept().recv_bytes(), "fine");
  good.join();
}

TEST(Listener, SilentAndTricklingClientsTimeOut) {
  cx::Listener listener({"127.0.0.1", 0}, {.authkey = "k", .handshake_timeout = 300ms});
  const std::uint16_t port = listener.address().port();
  {
    auto silent = raw_client(port);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(listener.accept(), concur::AuthenticationError);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 10s);
  }
  // A header that promises 200 bytes, then a byte every 50 ms: the deadline covers the whole
  // handshake, not each read, so this cannot hold accept() for 200 x 50 ms.
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    auto fd = raw_client(port);
    write_raw(fd.get(), std::string("\0\0\0\xc8", 4));
    for (int i = 0; i < 200 && !stop.load(); ++i) {
      if (::send(fd.get(), "x", 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(50ms);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(listener.accept(), concur::AuthenticationError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  stop = true;
  trickle.join();
  std::thread good([&] { cx::Client(listener.address(), {.authkey = "k"}).send_bytes("next"); });
  EXPECT_EQ(listener.accept().recv_bytes(), "next");
  good.join();
}

TEST(Listener, UnixSocketFileIsRemovedOnClose) {
  char directory[] = "/tmp/concur-listener-test-XXXXXX";
  ASSERT_NE(::mkdtemp(directory), nullptr);
  const std::string path = std::string(directory) + "/s";
  {
    cx::Listener listener(path.c_str(), {.authkey = "k"});
    EXPECT_EQ(listener.address().family(), cx::Family::af_unix);
    EXPECT_EQ(listener.address().path(), path);
    EXPECT_TRUE(exists(path));
    // A second Listener on the same path is refused, as Python's bind is.
    try {
      cx::Listener second(path);
      ADD_FAILURE() << "bound twice";
    } catch (const std::system_error& error) {
      EXPECT_EQ(error.code().value(), EADDRINUSE);
    }
    std::thread client([&] { cx::Client(path, {.authkey = "k"}).send_bytes("unix"); });
    EXPECT_EQ(listener.accept().recv_bytes(), "unix");
    client.join();
    ASSERT_TRUE(listener.last_accepted().has_value());
    EXPECT_EQ(listener.last_accepted()->path(), "");  // an unnamed peer
  }
  EXPECT_FALSE(exists(path));
  ::rmdir(directory);
}

#if defined(__linux__)
TEST(Listener, AbstractNamespace) {
  const std::string name = std::string(1, '\0') + "concur-test-" + std::to_string(::getpid());
  cx::Listener listener(name);
  EXPECT_EQ(listener.address().path(), name);
  EXPECT_EQ(listener.address().str(), "@" + name.substr(1));
  std::thread client([&] { cx::Client(name).send_bytes("abstract"); });
  EXPECT_EQ(listener.accept().recv_bytes(), "abstract");
  client.join();
}
#endif

TEST(Listener, DefaultListenerUsesAFreshUnixPathAndRemovesIt) {
  std::string path;
  {
    cx::Listener listener;
    path = listener.address().path();
    EXPECT_EQ(listener.address().family(), cx::Family::af_unix);
    EXPECT_TRUE(exists(path));
    std::thread client([&] { cx::Client(path).send_bytes("default"); });
    EXPECT_EQ(listener.accept().recv_bytes(), "default");
    client.join();
    cx::Listener moved(std::move(listener));
    EXPECT_EQ(listener.fileno(), -1);
    EXPECT_TRUE(exists(path));
  }
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(path.substr(0, path.rfind('/'))));
}

TEST(Listener, ErrorsAreClear) {
  // Nobody listens on a port that was just closed.
  std::uint16_t port;
  {
    cx::Listener listener({"127.0.0.1", 0});
    port = listener.address().port();
  }
  try {
    cx::Client({"127.0.0.1", port});
    ADD_FAILURE() << "connected to a closed port";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), ECONNREFUSED);
  }
  try {
    cx::Client("/nonexistent/concur/socket");
    ADD_FAILURE() << "connected to a missing path";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), ENOENT);
  }
  EXPECT_THROW(cx::Client({"no-such-host.invalid", 1}), std::system_error);
  EXPECT_THROW(cx::Client(std::string(200, 'p')), std::invalid_argument);
  EXPECT_THROW(cx::Client(std::string()), std::invalid_argument);
  EXPECT_THROW(cx::Client(std::string("a\0b", 3)), std::invalid_argument);
  EXPECT_THROW(cx::Listener({"127.0.0.1", 0}, {.handshake_timeout = -1ms}), std::invalid_argument);
  EXPECT_THROW(cx::Client({"127.0.0.1", 1}, {.handshake_timeout = -1ms}), std::invalid_argument);
  EXPECT_THROW(cx::Address(static_cast<const char*>(nullptr)), std::invalid_argument);
  cx::Listener closed({"127.0.0.1", 0});
  closed.close();
  closed.close();
  EXPECT_THROW(closed.accept(), std::system_error);
  auto [a, b] = concur::Pipe();
  EXPECT_THROW(cx::deliver_challenge(a, "k", "sha512"), std::invalid_argument);
}

// deliver_challenge and answer_challenge over a Pipe, with every digest a challenger may name.
TEST(Listener, EveryAllowedDigest) {
  for (const char* digest : {"md5", "sha256", "sha384", "sha3_256", "sha3_384"}) {
    SCOPED_TRACE(digest);
    auto [challenger, answerer] = concur::Pipe();
    std::thread answer([&answerer = answerer] { cx::answer_challenge(answerer, "key"); });
    cx::deliver_challenge(challenger, "key", digest);
    answer.join();
  }
}

// The legacy form, as Python 3.11 and older speak it, played by hand: a 20-byte challenge
// gets a bare 16-byte HMAC-MD5, and a bare 16-byte answer to a current challenge is checked
// as HMAC-MD5 of the whole challenge, "{sha256}" included.
TEST(Listener, LegacyFormBothWays) {
  const std::string key = "legacy";
  {
    auto [old_listener, client] = concur::Pipe();
    std::thread answer([&client = client, &key] { cx::answer_challenge(client, key); });
    const std::string nonce = pattern(20, 3);
    old_listener.send_bytes("#CHALLENGE#" + nonce);
    const std::string reply = old_listener.recv_bytes(256);
    EXPECT_EQ(reply.size(), 16u);
    EXPECT_EQ(reply, concur::detail::hmac("md5", key, nonce));
    old_listener.send_bytes("#WELCOME#");
    answer.join();
  }
  {
    auto [listener, old_client] = concur::Pipe();
    std::thread deliver([&listener = listener, &key] { cx::deliver_challenge(listener, key); });
    const std::string message = old_client.recv_bytes(256);
    ASSERT_TRUE(message.starts_with("#CHALLENGE#{sha256}"));
    const std::string challenge = message.substr(11);
    EXPECT_EQ(challenge.size(), 8u + 40u);
    old_client.send_bytes(concur::detail::hmac("md5", key, challenge));
    EXPECT_EQ(old_client.recv_bytes(256), "#WELCOME#");
    deliver.join();
  }
  {
    // A short legacy challenge is refused: fewer than 20 bytes.
    auto [listener, client] = concur::Pipe();
    listener.send_bytes("#CHALLENGE#short");
    EXPECT_THROW(cx::answer_challenge(client, key), concur::AuthenticationError);
  }
}

// The Client's side of a handshake between two concur ends: its own challenge goes out with
// its answer, before the welcome (four one-way trips instead of Python's six). The listener
// here is played by hand in Python's strict order, as a Python Listener of any version reads.
TEST(Listener, ClientSendsItsChallengeWithItsAnswer) {
  const std::string key = "k";
  auto [listener_end, client_end] = concur::Pipe();
  std::thread client(
      [&client_end = client_end, &key] { concur::detail::connect_handshake(client_end, key); });
  const std::string ours = "{sha256}" + pattern(40, 1);
  listener_end.send_bytes("#CHALLENGE#" + ours);
  EXPECT_EQ(listener_end.recv_bytes(256), "{sha256}" + concur::detail::hmac("sha256", key, ours));
  // No welcome yet, and the client's challenge is already here (one in Python's order would
  // wait for the welcome: the poll would time out).
  EXPECT_TRUE(listener_end.poll(2s));
  listener_end.send_bytes("#WELCOME#");
  const std::string theirs = listener_end.recv_bytes(256);
  ASSERT_TRUE(theirs.starts_with("#CHALLENGE#{sha256}"));
  EXPECT_EQ(theirs.size(), 11u + 8u + 40u);
  listener_end.send_bytes("{sha256}" + concur::detail::hmac("sha256", key, theirs.substr(11)));
  EXPECT_EQ(listener_end.recv_bytes(256), "#WELCOME#");
  client.join();
}

// The Listener's side: a client that sent its challenge with its answer (a concur Client) gets
// the welcome and the Listener's answer together; a client in Python's order (welcome first,
// then its challenge) gets the same bytes. A malformed early challenge is refused after the
// welcome, as in Python's order.
TEST(Listener, ListenerServesBothClientOrders) {
  const std::string key = "k";
  // together: answer and challenge in one write (a concur Client). stalled: the challenge
  // written 10 ms after the answer, before the welcome is read (a concur Client whose second
  // segment is late): the Listener then usually finds nothing buffered, and takes Python's order
  // (the bytes are the same either way). python: the challenge only after the welcome.
  enum class Order { together, stalled, python };
  for (const Order order : {Order::together, Order::stalled, Order::python}) {
    SCOPED_TRACE(static_cast<int>(order));
    auto [listener_end, client_end] = concur::Pipe();
    std::thread accept([&listener_end = listener_end, &key] {
      concur::detail::accept_handshake(listener_end, key);
    });
    const std::string message = client_end.recv_bytes(256);
    ASSERT_TRUE(message.starts_with("#CHALLENGE#{sha256}"));
    const std::string answer = "{sha256}" + concur::detail::hmac("sha256", key, message.substr(11));
    const std::string ours = "{sha256}" + pattern(40, 2);
    if (order == Order::together) {
      concur::detail::ConnectionAccess::send_two(client_end, answer, "#CHALLENGE#" + ours);
    } else {
      client_end.send_bytes(answer);
    }
    if (order == Order::stalled) {
      std::this_thread::sleep_for(10ms);
      client_end.send_bytes("#CHALLENGE#" + ours);
    }
    EXPECT_EQ(client_end.recv_bytes(256), "#WELCOME#");
    if (order == Order::python) client_end.send_bytes("#CHALLENGE#" + ours);
    EXPECT_EQ(client_end.recv_bytes(256), "{sha256}" + concur::detail::hmac("sha256", key, ours));
    client_end.send_bytes("#WELCOME#");
    accept.join();
  }
  auto [listener_end, client_end] = concur::Pipe();
  std::thread accept([&listener_end = listener_end, &key] {
    EXPECT_THROW(concur::detail::accept_handshake(listener_end, key), concur::AuthenticationError);
  });
  const std::string message = client_end.recv_bytes(256);
  concur::detail::ConnectionAccess::send_two(
      client_end, "{sha256}" + concur::detail::hmac("sha256", key, message.substr(11)),
      "#CHALLENGE#short");
  EXPECT_EQ(client_end.recv_bytes(256), "#WELCOME#");
  accept.join();
  // The Listener would drop the socket after the failure: nothing else was sent.
  listener_end.close();
  EXPECT_THROW((void)client_end.recv_bytes(256), concur::EOFError);
}

}  // namespace
