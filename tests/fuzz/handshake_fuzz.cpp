// libFuzzer target for the authentication handshake of concur's Listener and Client
// (concur/listener.hpp): a hostile peer sends arbitrary bytes to an endpoint that runs
// deliver_challenge (the Listener's half), answer_challenge (the Client's half), or the whole of
// Listener::accept() or Client() with an authkey. Every input must end in success or in
// AuthenticationError, EOFError or std::system_error — never a crash, a hang, a read out of
// bounds, or an allocation sized by a length header the peer chose.
//
// Beyond not crashing, each outcome is compared with a model of CPython's handshake
// (multiprocessing/connection.py) on concur's framing, computed here from the input alone. The
// framing is Connection's, which parts from CPython's in two corners: a negative length other
// than -1 is std::system_error (CPython reads an empty message, so its deliver_challenge
// answers "#FAILURE#"), and so is an end of file right after a header (CPython: EOFError). The
// model checks:
//   - which of success, AuthenticationError, EOFError or std::system_error it must be (accept()
//     and Client() turn every failure into AuthenticationError);
//   - what the endpoint sent back: answer_challenge's exact HMAC response (computed here with
//     OpenSSL), deliver_challenge's challenge ("#CHALLENGE#{digest}" and 40 random bytes, never
//     the same twice) followed by "#FAILURE#" exactly when a whole response was refused;
//   - deliver_challenge, accept() and Client() never succeed (the input cannot know the HMAC of
//     a random challenge);
//   - a message longer than 256 bytes is refused before its payload is read (its length header
//     may say anything up to 2^64 - 1), and while the endpoint works no single allocation
//     exceeds 4 KiB (the connection's own read buffer): a buffer sized from a lying header
//     aborts with the allocating stack.
// Set CONCUR_HANDSHAKE_LOOSE=1 to keep only the safety checks (no model comparison), and
// CONCUR_HANDSHAKE_TRACE=1 to print, for deliver_challenge and answer_challenge, how each input
// ended and the bytes the endpoint sent (to compare with CPython's own functions by hand).
//
// Input: byte 0 picks the endpoint and the circumstances, byte 1 the chunk size, the rest is
// the stream the endpoint reads.
//   byte 0, bit 0     0: the Client's side (answer_challenge first), 1: the Listener's side
//                     (deliver_challenge first).
//   byte 0, bits 1-2  0: the stream is written whole, then the peer shuts down its writing
//                        side (the endpoint reads end of file after it, and can still send);
//                     1: written whole, then the peer closes (the endpoint's sends fail, EPIPE);
//                     2, 3: written by another thread in chunks of byte 1 + 1 bytes while the
//                        endpoint reads, then shut down (reads that return part of a message).
//   byte 0, bits 3-4  the key: empty, "secret", 64 bytes (a SHA-256 block), 200 bytes (longer
//                     than any block, so HMAC hashes it first).
//   byte 0, bits 5-7  0-4: deliver_challenge or answer_challenge on a Pipe, deliver_challenge
//                        naming sha256, md5, sha384, sha3_256 or sha3_384;
//                     5, 6: Listener::accept() or Client() on an abstract Unix socket;
//                     7: the same with a handshake_timeout of 10 ms and a peer that, instead of
//                        shutting down, stays connected and silent after its stream.
// The stream is cut at 8 KiB, so that writing it whole never fills the socket's buffer.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -pthread -I include \
//       tests/fuzz/handshake_fuzz.cpp -lcrypto -o handshake_fuzz
//   mkdir -p corpus && ./handshake_fuzz -max_len=4096 -timeout=10 \
//       -dict=tests/fuzz/handshake.dict -max_total_time=600 corpus tests/fuzz/handshake_corpus
//
// (-jobs=N -workers=N runs several at once; a crash leaves crash-<sha1> to replay with
// ./handshake_fuzz crash-<sha1>.)

#include <concur/connection.hpp>
#include <concur/errors.hpp>
#include <concur/listener.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sanitizer/allocator_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

namespace {

using namespace std::string_view_literals;

constexpr std::size_t max_stream = 8 * 1024;
constexpr std::size_t allocation_cap = 4 * 1024;
constexpr std::size_t max_message = 256;  // what both halves accept, as in Python
constexpr std::size_t challenge_random = 40;

constexpr auto challenge_tag = "#CHALLENGE#"sv;
constexpr auto welcome = "#WELCOME#"sv;
constexpr auto failure = "#FAILURE#"sv;

bool loose = false;
bool trace = false;

// ---- The allocation guard: armed on the endpoint's thread while it runs the handshake.

thread_local bool guard_armed = false;

void malloc_hook(const volatile void*, std::size_t size) {
  if (guard_armed && size > allocation_cap) {
    guard_armed = false;
    std::fprintf(stderr, "handshake_fuzz: the handshake allocated %zu bytes at once (cap %zu)\n",
                 size, allocation_cap);
    __sanitizer_print_stack_trace();
    std::abort();
  }
}
void free_hook(const volatile void*) {}

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "handshake_fuzz: %s%s%s\n", what, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

// ---- The model: CPython's handshake over concur's framing.

// Reads one frame as concur's Connection::recv_bytes(256) does: a 4-byte big-endian length, or
// -1 and an 8-byte length; other negative lengths, lengths over 256 and a stream that ends inside
// the frame are errors. Returns the payload; `eof` tells a clean end of stream from the rest.
struct Frame {
  std::optional<std::string_view> payload;
  bool eof = false;
};
Frame take_frame(std::string_view& stream) {
  if (stream.empty()) return {std::nullopt, true};
  if (stream.size() < 4) return {};
  std::uint64_t length = 0;
  for (int i = 0; i < 4; ++i) length = (length << 8) | static_cast<unsigned char>(stream[i]);
  std::size_t header = 4;
  if (length == 0xffffffffu) {
    if (stream.size() < 12) return {};
    length = 0;
    for (int i = 4; i < 12; ++i) length = (length << 8) | static_cast<unsigned char>(stream[i]);
    header = 12;
  } else if (length > 0x7fffffff) {
    return {};
  }
  if (length > max_message) return {};
  if (stream.size() - header < length) return {};
  const std::string_view payload = stream.substr(header, static_cast<std::size_t>(length));
  stream.remove_prefix(header + static_cast<std::size_t>(length));
  return {payload, false};
}

// Python's _get_digest_name_and_payload: "" for the legacy 16- and 20-byte forms, the name of
// "{name}..." for an allowed name within the first ten bytes, nothing otherwise.
std::optional<std::string_view> digest_of(std::string_view message) {
  if (message.size() == 16 || message.size() == 20) return ""sv;
  if (message.empty() || message[0] != '{') return std::nullopt;
  const std::size_t curly = message.substr(0, 10).find('}', 1);
  if (curly == std::string_view::npos) return std::nullopt;
  const std::string_view name = message.substr(1, curly - 1);
  for (const auto allowed : {"md5"sv, "sha256"sv, "sha384"sv, "sha3_256"sv, "sha3_384"sv}) {
    if (name == allowed) return name;
  }
  return std::nullopt;
}

const EVP_MD* evp_of(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  fail("no such digest", std::string(name));
}

std::string hmac(std::string_view name, std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  static const unsigned char no_key = 0;
  const unsigned char* key_bytes =
      key.empty() ? &no_key : reinterpret_cast<const unsigned char*>(key.data());
  if (HMAC(evp_of(name), key_bytes, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out,
           &size) == nullptr) {
    fail("HMAC failed", std::string(name));
  }
  return std::string(reinterpret_cast<const char*>(out), size);
}

// Python's _create_response.
std::string response_to(std::string_view key, std::string_view message, std::string_view name) {
  if (name.empty()) return hmac("md5", key, message);
  return "{" + std::string(name) + "}" + hmac(name, key, message);
}

std::string frame(std::string_view payload) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>(payload.size() >> (24 - 8 * i));
  bytes += payload;
  return bytes;
}

enum class Outcome { success, authentication_error, eof_error, system_error, send_failed };

const char* name_of(Outcome outcome) {
  switch (outcome) {
    case Outcome::success:
      return "success";
    case Outcome::authentication_error:
      return "AuthenticationError";
    case Outcome::eof_error:
      return "EOFError";
    case Outcome::system_error:
      return "std::system_error";
    case Outcome::send_failed:
      return "std::system_error(EPIPE)";
  }
  return "?";
}

Outcome framing_error(const Frame& frame) {
  return frame.eof ? Outcome::eof_error : Outcome::system_error;
}

struct Expected {
  Outcome outcome;
  std::string sent;  // answer_challenge: what the endpoint sends (before a failed send)
};

// answer_challenge: a challenge frame, the response, a welcome frame. Takes what it reads from
// `stream`.
Expected model_answer(std::string_view& stream, std::string_view key, bool peer_closed) {
  const Frame challenge = take_frame(stream);
  if (!challenge.payload) return {framing_error(challenge), {}};
  if (!challenge.payload->starts_with(challenge_tag)) return {Outcome::authentication_error, {}};
  const std::string_view message = challenge.payload->substr(challenge_tag.size());
  if (message.size() < 20) return {Outcome::authentication_error, {}};
  const auto name = digest_of(message);
  if (!name) return {Outcome::authentication_error, {}};
  if (peer_closed) return {Outcome::send_failed, {}};
  std::string sent = frame(response_to(key, message, *name));
  const Frame reply = take_frame(stream);
  if (!reply.payload) return {framing_error(reply), std::move(sent)};
  if (*reply.payload != welcome) return {Outcome::authentication_error, std::move(sent)};
  return {Outcome::success, std::move(sent)};
}

// deliver_challenge: the challenge goes out first, then one response frame comes in, which can
// only be wrong.
Outcome model_deliver(std::string_view& stream, bool peer_closed) {
  if (peer_closed) return Outcome::send_failed;
  const Frame response = take_frame(stream);
  if (!response.payload) return framing_error(response);
  return Outcome::authentication_error;
}

// ---- The endpoint and its peer.

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

// Everything the endpoint sent, once it is closed.
std::string drain(int fd) {
  std::string bytes;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return bytes;
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

std::string printable(std::string_view bytes) {
  std::string out;
  char hex[5];
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out += c;
    } else {
      std::snprintf(hex, sizeof hex, "\\x%02x", byte);
      out += hex;
    }
  }
  return out;
}

std::string key_of(unsigned choice) {
  switch (choice % 4) {
    case 0:
      return {};
    case 1:
      return "secret";
    case 2:
      return std::string(64, 'k');
    default: {
      std::string key(200, '\0');
      for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(i * 7 + 1);
      return key;
    }
  }
}

constexpr std::array<std::string_view, 5> digest_names = {"sha256", "md5", "sha384", "sha3_256",
                                                          "sha3_384"};

// Runs `handshake` on the endpoint, the allocation guard armed; returns how it ended.
template <class F>
std::pair<Outcome, std::string> run_endpoint(F handshake) {
  guard_armed = true;
  std::pair<Outcome, std::string> result{Outcome::success, {}};
  try {
    handshake();
  } catch (const concur::AuthenticationError& error) {
    result = {Outcome::authentication_error, error.what()};
  } catch (const concur::EOFError& error) {
    result = {Outcome::eof_error, error.what()};
  } catch (const std::system_error& error) {
    const bool pipe = error.code() == std::errc::broken_pipe;
    result = {pipe ? Outcome::send_failed : Outcome::system_error, error.what()};
  } catch (const concur::Error& error) {
    guard_armed = false;
    fail("the handshake threw another concur::Error", error.what());
  } catch (const std::exception& error) {
    guard_armed = false;
    fail("the handshake threw an exception outside its contract", error.what());
  } catch (...) {
    guard_armed = false;
    fail("the handshake threw something that is not a std::exception");
  }
  guard_armed = false;
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* value = std::getenv("CONCUR_HANDSHAKE_LOOSE");
  loose = value != nullptr && *value != '\0' && *value != '0';
  trace = std::getenv("CONCUR_HANDSHAKE_TRACE") != nullptr;
  // OpenSSL fetches and caches each digest on first use: do it now, outside the guard.
  for (const auto name : digest_names) (void)hmac(name, "warm up", "warm up");
  if (__sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook) == 0) {
    fail("could not install the allocation hooks");
  }
  return 0;
}

namespace {

// How the peer ends its stream.
enum class End {
  shut_down,  // shuts its writing side: the endpoint reads end of file, and can still send
  close,      // closes: the endpoint's sends fail
  silent,     // stays connected and says nothing more: only a deadline ends the handshake
};

// Writes `stream` to `fd` whole (chunk 0: it fits in the socket's buffer) or chunk by chunk,
// then ends it. Stops at the first failed send: once the endpoint is done it is closed, so a
// writer that filled the buffer is woken with EPIPE rather than left blocked.
void feed(concur::Connection& peer, std::string_view stream, std::size_t chunk, End end) {
  const int fd = peer.fileno();
  if (chunk == 0) chunk = stream.size();
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    if (!send_all(fd, stream.substr(at, chunk))) return;
    if (chunk < stream.size()) std::this_thread::yield();
  }
  if (end == End::close) {
    peer.close();
  } else if (end == End::shut_down) {
    ::shutdown(fd, SHUT_WR);
  }
}

// Checks that `sent` starts with a challenge frame naming `digest_name` and 40 random bytes,
// unlike any before; takes it off `sent`.
void take_challenge(std::string_view& sent, std::string_view digest_name, const char* who) {
  const std::string prefix = std::string(challenge_tag) + "{" + std::string(digest_name) + "}";
  const std::string_view whole = sent;
  const Frame challenge = take_frame(sent);
  if (!challenge.payload || challenge.payload->size() != prefix.size() + challenge_random ||
      !challenge.payload->starts_with(prefix)) {
    fail(who, "sent a malformed challenge: '" + printable(whole) + "'");
  }
  static std::string last_random;
  const std::string random(challenge.payload->substr(prefix.size()));
  if (random == last_random) fail(who, "sent the same challenge twice");
  last_random = random;
}

// After a challenge: "#FAILURE#" exactly when a whole response was read and refused.
void check_verdict(std::string_view sent, Outcome deliver_outcome, const char* who) {
  const std::string expected =
      deliver_outcome == Outcome::authentication_error ? frame(failure) : std::string();
  if (sent != expected) {
    fail(who, "answered unlike Python's: expected '" + printable(expected) + "', sent '" +
                  printable(sent) + "'");
  }
}

void check_outcome(Outcome expected, Outcome got, const std::string& message, const char* who) {
  if (expected != got) {
    fail(who, std::string("ended unlike Python's: expected ") + name_of(expected) + ", got " +
                  name_of(got) + " (" + message + ")");
  }
}

std::string abstract_name() {
  return std::string(1, '\0') + "concur-handshake-fuzz-" + std::to_string(::getpid());
}

// deliver_challenge or answer_challenge on one end of a Pipe.
void fuzz_half(bool deliver, std::string_view stream, std::size_t chunk, End end,
               const std::string& key, std::string_view digest_name) {
  auto ends = concur::Pipe();  // not a structured binding: Clang 14 cannot capture those
  concur::Connection& endpoint = std::get<0>(ends);
  concur::Connection& peer = std::get<1>(ends);
  const int peer_fd = peer.fileno();

  std::thread writer;
  if (chunk > 0) {
    writer = std::thread([&peer, stream, chunk, end] { feed(peer, stream, chunk, end); });
  } else {
    feed(peer, stream, 0, end);
  }
  const auto [outcome, message] = run_endpoint([&] {
    if (deliver) {
      concur::connection::deliver_challenge(endpoint, key, digest_name);
    } else {
      concur::connection::answer_challenge(endpoint, key);
    }
  });
  endpoint.close();
  if (writer.joinable()) writer.join();
  const bool closed = end == End::close;
  const std::string sent = closed ? std::string() : drain(peer_fd);

  const char* who = deliver ? "deliver_challenge" : "answer_challenge";
  if (trace) {
    std::string hex;
    for (const char c : sent) {
      char digits[3];
      std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned char>(c));
      hex += digits;
    }
    std::fprintf(stderr, "handshake_fuzz: trace %s %s %s\n", who, name_of(outcome), hex.c_str());
  }
  if (deliver && outcome == Outcome::success) fail(who, "accepted a response");
  if (loose) return;
  if (deliver) {
    const Outcome expected = model_deliver(stream, closed);
    check_outcome(expected, outcome, message, who);
    if (closed) return;
    std::string_view rest = sent;
    take_challenge(rest, digest_name, who);
    check_verdict(rest, expected, who);
  } else {
    const Expected expected = model_answer(stream, key, closed);
    check_outcome(expected.outcome, outcome, message, who);
    if (!closed && sent != expected.sent) {
      fail(who, "sent unlike Python's: expected '" + printable(expected.sent) + "', sent '" +
                    printable(sent) + "'");
    }
  }
}

// Listener::accept() with an authkey (deliver_challenge, then answer_challenge, under
// handshake_timeout), its client the hostile peer. Every failure is an AuthenticationError.
void fuzz_accept(std::string_view stream, std::size_t chunk, End end, const std::string& key,
                 std::chrono::milliseconds timeout) {
  concur::connection::Listener listener(abstract_name(),
                                        {.authkey = key, .handshake_timeout = timeout});
  concur::Connection peer = concur::connection::Client(listener.address());
  const int peer_fd = peer.fileno();
  std::thread writer;
  if (chunk > 0) {
    writer = std::thread([&peer, stream, chunk, end] { feed(peer, stream, chunk, end); });
  } else {
    feed(peer, stream, 0, end);
  }
  const auto [outcome, message] = run_endpoint([&] { (void)listener.accept(); });
  if (writer.joinable()) writer.join();
  const bool closed = end == End::close;
  const std::string sent = closed ? std::string() : drain(peer_fd);

  const char* who = "Listener::accept";
  if (outcome == Outcome::success) fail(who, "accepted a client that cannot know the key");
  if (loose) return;
  check_outcome(Outcome::authentication_error, outcome, message, who);
  // With a silent peer the deadline may strike at any point of a slow stream.
  if (closed || end == End::silent) return;
  std::string_view rest = sent;
  take_challenge(rest, "sha256", who);
  check_verdict(rest, model_deliver(stream, false), who);
}

// Client() with an authkey (its answer and its own challenge in one write, then the verdict), under
// handshake_timeout, its listener the hostile peer. Every failure is an AuthenticationError.
void fuzz_client(std::string_view stream, std::size_t chunk, End end, const std::string& key,
                 std::chrono::milliseconds timeout) {
  concur::connection::Listener listener(abstract_name());
  concur::Connection peer;
  std::thread server([&] {
    // Bounded: if Client() never connects, the fuzzer reports it rather than hanging.
    pollfd waiting{listener.fileno(), POLLIN, 0};
    if (::poll(&waiting, 1, 10000) != 1) fail("Client() never connected");
    peer = listener.accept();
    feed(peer, stream, chunk, end);
  });
  const auto [outcome, message] = run_endpoint([&] {
    (void)concur::connection::Client(listener.address(),
                                     {.authkey = key, .handshake_timeout = timeout});
  });
  server.join();
  const bool closed = end == End::close;
  const std::string sent = closed ? std::string() : drain(peer.fileno());

  const char* who = "Client";
  if (outcome == Outcome::success) fail(who, "accepted a listener that cannot know the key");
  if (loose) return;
  check_outcome(Outcome::authentication_error, outcome, message, who);
  if (closed || end == End::silent) return;
  // The answer to the listener's challenge, as answer_challenge sends it, and with it (in the
  // same write, before any welcome) the client's own challenge; then, once welcomed, the
  // verdict on the listener's answer.
  const Expected answer = model_answer(stream, key, false);
  std::string_view rest = sent;
  if (!rest.starts_with(answer.sent)) {
    fail(who, "sent unlike Python's: expected '" + printable(answer.sent) + "', sent '" +
                  printable(sent) + "'");
  }
  rest.remove_prefix(answer.sent.size());
  if (!answer.sent.empty()) take_challenge(rest, "sha256", who);
  if (answer.outcome != Outcome::success) {
    if (!rest.empty()) fail(who, "went on after a failed answer: '" + printable(rest) + "'");
    return;
  }
  check_verdict(rest, model_deliver(stream, false), who);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned options = data[0];
  const bool deliver = (options & 1) != 0;
  const unsigned delivery = (options >> 1) & 3;
  const std::size_t chunk = delivery >= 2 ? std::size_t{data[1]} + 1 : 0;
  const std::string key = key_of(options >> 3);
  const unsigned variant = options >> 5;
  std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (stream.size() > max_stream) stream = stream.substr(0, max_stream);

  End end = delivery == 1 ? End::close : End::shut_down;
  if (variant < digest_names.size()) {
    fuzz_half(deliver, stream, chunk, end, key, digest_names[variant]);
    return 0;
  }
  // Variants 5 to 7: the whole of accept() or Client(); 7 with a silent peer and a deadline of
  // 10 ms (the endpoint gives up, as a real one does with a client that stops talking).
  std::chrono::milliseconds timeout{10000};
  if (variant == 7) {
    if (end == End::shut_down) end = End::silent;
    timeout = std::chrono::milliseconds{10};
  }
  if (deliver) {
    fuzz_accept(stream, chunk, end, key, timeout);
  } else {
    fuzz_client(stream, chunk, end, key, timeout);
  }
  return 0;
}
