// libFuzzer target for the authentication handshake of concur's Listener and Client
// (concur/listener.hpp): a hostile peer sends arbitrary bytes to an endpoint that runs
// deliver_challenge (the Listener's half) or answer_challenge (the Client's half). Every input
// must end in success or in AuthenticationError, EOFError or std::system_error — never a crash,
// a hang, a read out of bounds, or an allocation sized by a length header the peer chose.
//
// Beyond not crashing, each outcome is compared with a model of CPython's handshake
// (multiprocessing/connection.py) on concur's framing, computed here from the input alone:
//   - which of success, AuthenticationError, EOFError or std::system_error it must be;
//   - what the endpoint sent back: answer_challenge's exact HMAC response (computed here with
//     OpenSSL), deliver_challenge's challenge ("#CHALLENGE#{digest}" and 40 random bytes, never
//     the same twice) followed by "#FAILURE#" exactly when the response was refused;
//   - deliver_challenge never succeeds (the input cannot know the HMAC of a random challenge);
//   - a message longer than 256 bytes is refused before its payload is read (its length header
//     may say anything up to 2^64 - 1), and while the endpoint works no single allocation
//     exceeds 4 KiB (the connection's own read buffer): a buffer sized from a lying header
//     aborts with the allocating stack.
// Set CONCUR_HANDSHAKE_LOOSE=1 to keep only the safety checks (no model comparison).
//
// Input: byte 0 picks the endpoint and the circumstances, byte 1 the chunk size, the rest is
// the stream the endpoint reads.
//   byte 0, bit 0     0: answer_challenge (Client side), 1: deliver_challenge (Listener side)
//   byte 0, bits 1-2  0: the stream is written whole, then the peer shuts down its writing
//                        side (the endpoint reads end of file after it, and can still send);
//                     1: written whole, then the peer closes (the endpoint's sends fail, EPIPE);
//                     2, 3: written by another thread in chunks of byte 1 + 1 bytes while the
//                        endpoint reads, then shut down (reads that return part of a message).
//   byte 0, bits 3-4  the key: empty, "secret", 64 bytes (a SHA-256 block), 200 bytes (longer
//                     than any block, so HMAC hashes it first).
//   byte 0, bits 5-7  deliver_challenge's digest name, modulo 5: sha256, md5, sha384, sha3_256,
//                     sha3_384.
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
#include <sanitizer/allocator_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
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

// answer_challenge: a challenge frame, the response, a welcome frame.
Expected model_answer(std::string_view stream, std::string_view key, bool peer_closed) {
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
Outcome model_deliver(std::string_view stream, bool peer_closed) {
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
  // OpenSSL fetches and caches each digest on first use: do it now, outside the guard.
  for (const auto name : digest_names) (void)hmac(name, "warm up", "warm up");
  if (__sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook) == 0) {
    fail("could not install the allocation hooks");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned options = data[0];
  const bool deliver = (options & 1) != 0;
  const unsigned delivery = (options >> 1) & 3;
  const bool peer_closes = delivery == 1;
  const bool threaded = delivery >= 2;
  const std::size_t chunk = std::size_t{data[1]} + 1;
  const std::string key = key_of(options >> 3);
  const std::string_view digest_name = digest_names[(options >> 5) % digest_names.size()];
  std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (stream.size() > max_stream) stream = stream.substr(0, max_stream);

  auto ends = concur::Pipe();  // not a structured binding: Clang 14 cannot capture those
  concur::Connection& endpoint = std::get<0>(ends);
  concur::Connection& peer = std::get<1>(ends);
  const int peer_fd = peer.fileno();

  // The peer: the whole stream at once (it fits in the socket's buffer), or chunk by chunk from
  // a thread. The thread stops at the first failed send: once the endpoint is done it is closed,
  // so a writer that filled the buffer is woken with EPIPE rather than left blocked.
  std::thread writer;
  if (threaded) {
    writer = std::thread([stream, chunk, peer_fd] {
      for (std::size_t at = 0; at < stream.size(); at += chunk) {
        if (!send_all(peer_fd, stream.substr(at, chunk))) return;
        std::this_thread::yield();
      }
      ::shutdown(peer_fd, SHUT_WR);
    });
  } else {
    if (!send_all(peer_fd, stream)) fail("could not write the stream");
    if (peer_closes) {
      peer.close();
    } else {
      ::shutdown(peer_fd, SHUT_WR);
    }
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
  const std::string sent = peer_closes ? std::string() : drain(peer_fd);

  if (deliver && outcome == Outcome::success) {
    fail("deliver_challenge accepted a response", printable(stream));
  }
  if (loose) return 0;

  if (deliver) {
    const Outcome expected = model_deliver(stream, peer_closes);
    if (expected != outcome) {
      fail("deliver_challenge ended unlike Python's", std::string("expected ") + name_of(expected) +
                                                          ", got " + name_of(outcome) + " (" +
                                                          message + ")");
    }
    if (peer_closes) return 0;
    // The challenge: "#CHALLENGE#{name}" and 40 random bytes, in one frame.
    const std::string prefix = std::string(challenge_tag) + "{" + std::string(digest_name) + "}";
    const std::size_t challenge_size = prefix.size() + challenge_random;
    std::string_view rest = sent;
    const Frame challenge = take_frame(rest);
    if (!challenge.payload || challenge.payload->size() != challenge_size ||
        !challenge.payload->starts_with(prefix)) {
      fail("deliver_challenge sent a malformed challenge", printable(sent));
    }
    static std::string last_random;
    const std::string random(challenge.payload->substr(prefix.size()));
    if (random == last_random) fail("deliver_challenge sent the same challenge twice");
    last_random = random;
    // Then "#FAILURE#" exactly when a whole response was read and refused.
    const std::string expected_rest =
        expected == Outcome::authentication_error ? frame(failure) : std::string();
    if (rest != expected_rest) {
      fail("deliver_challenge answered unlike Python's",
           "expected '" + printable(expected_rest) + "', sent '" + printable(rest) + "'");
    }
  } else {
    const Expected expected = model_answer(stream, key, peer_closes);
    if (expected.outcome != outcome) {
      fail("answer_challenge ended unlike Python's", std::string("expected ") +
                                                         name_of(expected.outcome) + ", got " +
                                                         name_of(outcome) + " (" + message + ")");
    }
    if (!peer_closes && sent != expected.sent) {
      fail("answer_challenge sent unlike Python's",
           "expected '" + printable(expected.sent) + "', sent '" + printable(sent) + "'");
    }
  }
  return 0;
}
