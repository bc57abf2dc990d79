// Lesson 13: talking to a child process over a Pipe.
//
// multiprocessing.Pipe() returns two connected ends; what one end send()s, the other recv()s,
// whole messages at a time. By default both ends can send and receive; Pipe(False) makes the
// first end read-only and the second write-only. recv() raises EOFError once the other end is
// closed and every message already sent has been read.
//
//     from multiprocessing import Process, Pipe
//
//     def double(conn):
//         while True:
//             try:
//                 conn.send(conn.recv() * 2)
//             except EOFError:
//                 break
//
//     parent_end, child_end = Pipe()
//     child = Process(target=double, args=(child_end,))
//     child.start()
//     parent_end.send(21)
//     print(parent_end.recv())    # 42
//     parent_end.close()
//     child.join()
//
// concur's send(x) and recv<T>() encode values with concur/codec.hpp (numbers, strings,
// containers, tuples, ...; both ends name the type), and send_bytes()/recv_bytes() carry raw
// bytes in Python's own framing. A forked child holds copies of both ends, so each process
// closes the end it does not use: while any copy of an end is open, the other end sees no EOF.

#include <concur/connection.hpp>
#include <concur/process.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

using Stats = std::tuple<int, int, int>;  // lowest, highest, sum

// The child's side: answers each request, then echoes byte messages until the parent hangs up.
int serve(concur::Connection& parent_end, concur::Connection& child_end) {
  parent_end.close();  // the child's copy of the parent's end
  child_end.send(child_end.recv<int>() * 2);
  std::string word = child_end.recv<std::string>();
  for (char& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  child_end.send(word);
  const auto numbers = child_end.recv<std::vector<int>>();
  const auto [lowest, highest] = std::minmax_element(numbers.begin(), numbers.end());
  int sum = 0;
  for (int n : numbers) sum += n;
  child_end.send(Stats{*lowest, *highest, sum});
  int echoed = 0;
  try {
    for (;; ++echoed) child_end.send_bytes("echo:" + child_end.recv_bytes());
  } catch (const concur::EOFError&) {
    std::printf("child: EOFError after %d byte messages, the parent hung up\n", echoed);
  }
  return echoed;  // the exit code
}

void send_squares(concur::Connection& reader, concur::Connection& writer) {
  reader.close();
  for (int n = 1; n <= 4; ++n) writer.send(n * n);
}

int main() {
  auto [parent_end, child_end] = concur::Pipe();
  concur::Process child(serve, std::ref(parent_end), std::ref(child_end));
  child.start();
  child_end.close();  // the parent's copy of the child's end

  parent_end.send(21);
  std::printf("sent 21, got back %d\n", parent_end.recv<int>());
  parent_end.send(std::string("pipe"));
  std::printf("sent \"pipe\", got back \"%s\"\n", parent_end.recv<std::string>().c_str());
  parent_end.send(std::vector<int>{4, 8, 15, 16, 23, 42});
  const auto [lowest, highest, sum] = parent_end.recv<Stats>();
  std::printf("sent 6 numbers, got back lowest %d, highest %d, sum %d\n", lowest, highest, sum);
  for (const char* text : {"ping", "", "bytes"}) {  // an empty message is a message too
    parent_end.send_bytes(text);
    std::printf("sent bytes '%s', got back '%s'\n", text, parent_end.recv_bytes().c_str());
  }
  parent_end.close();
  child.join();
  std::printf("child's exitcode (byte messages echoed): %d\n", child.exitcode().value());

  auto [reader, writer] = concur::Pipe(false);  // one way: reader <- writer
  concur::Process squares(send_squares, std::ref(reader), std::ref(writer));
  squares.start();
  writer.close();
  std::printf("one-way pipe, reader.writable(): %s\n", reader.writable() ? "true" : "false");
  try {
    reader.send(0);
  } catch (const std::system_error& error) {
    std::printf("send on the read end: %s\n", error.what());
  }
  std::printf("squares from the child:");
  try {
    for (;;) std::printf(" %d", reader.recv<int>());
  } catch (const concur::EOFError&) {
    std::printf(", then EOFError\n");
  }
  squares.join();
}
