// Lesson 17: a C++ worker for a Python job server, over TCP with an authkey.
//
// Lessons 13 and 16 sent messages between processes that one program forked. Python's
// multiprocessing.connection goes further: a Listener waits on a TCP port (or a Unix socket)
// and a Client connects to it from any process, on any host, in any program that speaks the
// same wire format; with an authkey, both ends first prove that they know the key (an HMAC
// challenge each way), and then they exchange messages as over a Pipe. Here the server is a
// Python program, 17_job_server.py, and the worker is this C++ program, which does what this
// Python worker would do:
//
//     import os, sys
//     from multiprocessing.connection import Client
//
//     def run(op, argument):
//         if op == "square":
//             return str(int(argument) ** 2)
//         if op == "upper":
//             return argument.upper()
//         if op == "words":
//             return str(len(argument.split()))
//         return "error: no such job"
//
//     authkey = os.environ.get("CONCUR_JOB_AUTHKEY", "concur lesson 17").encode()
//     with Client((sys.argv[1], int(sys.argv[2])), authkey=authkey) as conn:
//         done = 0
//         while (message := conn.recv_bytes().decode()) != "stop":
//             job_id, op, argument = message.split(" ", 2)
//             conn.send_bytes(f"{job_id} {run(op, argument)}".encode())
//             done += 1
//     print(f"worker: stopped after {done} jobs")
//
// concur::connection::Client is Python's Client: it connects, runs the handshake (Python 3.12's
// and later, or the older one of Python 3.11 and before, whichever the server speaks) and
// returns a concur::Connection, the Connection of lesson 13, with send_bytes and recv_bytes. A
// wrong key throws concur::AuthenticationError, as Python raises
// multiprocessing.AuthenticationError.
//
// The messages are bytes, in a text format both sides parse ("<id> <op> <argument>", the reply
// "<id> <result>", then "stop"). Python's send() and recv() pickle their objects, and a C++
// program cannot read pickles: byte messages, whose framing concur and Python share, are the
// common ground.
//
// Usage: 17_job_worker host port. The authkey is the environment variable CONCUR_JOB_AUTHKEY,
// or the demo key "concur lesson 17", as in the server. To try it by hand:
//     python3 examples/17_job_server.py                  # prints "listening on 127.0.0.1:PORT"
//     build/test/examples/17_job_worker 127.0.0.1 PORT   # in another terminal

#include <concur/listener.hpp>

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>

namespace connection = concur::connection;  // reads as `from multiprocessing import connection`

namespace {

// The whole of `text` as a number, or `fallback` if it is not one (or does not fit).
template <class Number>
Number parse(std::string_view text, Number fallback) {
  Number number{};
  const char* const last = text.data() + text.size();
  const auto [end, error] = std::from_chars(text.data(), last, number);
  return error == std::errc{} && end == last ? number : fallback;
}

// One job: the result of `op` on `argument`, as text.
std::string run(std::string_view op, std::string_view argument) {
  if (op == "square") {
    const long long n = parse(argument, std::numeric_limits<long long>::min());
    if (n == std::numeric_limits<long long>::min()) return "error: not a number";
    if (n > 3'037'000'499 || n < -3'037'000'499) return "error: too big";  // n * n overflows
    return std::to_string(n * n);
  }
  if (op == "upper") {
    std::string text(argument);
    for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return text;
  }
  if (op == "words") {
    int words = 0;
    bool in_word = false;
    for (const char c : argument) {
      const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
      words += !space && !in_word ? 1 : 0;
      in_word = !space;
    }
    return std::to_string(words);
  }
  return "error: no such job";
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint16_t port = argc == 3 ? parse<std::uint16_t>(argv[2], 0) : 0;
  if (port == 0) {
    std::fprintf(stderr, "usage: %s host port\n", argv[0]);
    return 2;
  }
  const char* key = std::getenv("CONCUR_JOB_AUTHKEY");
  const std::string authkey = key != nullptr ? key : "concur lesson 17";

  try {
    concur::Connection conn = connection::Client({argv[1], port}, {.authkey = authkey});
    std::printf("worker: connected to %s:%u, authenticated\n", argv[1], unsigned{port});
    int done = 0;
    for (std::string message; (message = conn.recv_bytes()) != "stop"; ++done) {
      // "<id> <op> <argument>": the argument is the rest of the line, spaces and all.
      const std::size_t first = message.find(' ');
      const std::size_t second = message.find(' ', first + 1);
      if (first == std::string::npos || second == std::string::npos) {
        std::fprintf(stderr, "worker: malformed job: '%s'\n", message.c_str());
        return 1;
      }
      const std::string job_id = message.substr(0, first);
      const std::string_view op = std::string_view(message).substr(first + 1, second - first - 1);
      const std::string result = run(op, std::string_view(message).substr(second + 1));
      conn.send_bytes(job_id + " " + result);
      std::printf("worker: job %s: %s -> %s\n", job_id.c_str(), message.c_str() + first + 1,
                  result.c_str());
    }
    std::printf("worker: stopped after %d jobs\n", done);
  } catch (const concur::AuthenticationError& error) {
    std::fprintf(stderr, "worker: AuthenticationError: %s\n", error.what());
    return 1;
  } catch (const concur::EOFError&) {
    std::fprintf(stderr, "worker: the server hung up without saying stop\n");
    return 1;
  } catch (const std::system_error& error) {  // refused, unreachable, reset, ...
    std::fprintf(stderr, "worker: %s\n", error.what());
    return 1;
  }
}
