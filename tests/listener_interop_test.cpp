// concur's Listener and Client against Python's multiprocessing.connection, in real Python
// processes: every Python 3 this machine has (found when the test runs, one per version), both
// ways round (a Python Listener with a concur Client, a concur Listener with a Python Client),
// over TCP, a Unix socket path and a Linux abstract name, with the right key, a wrong key and
// none, and byte messages of 0 B, 1 B, 64 KiB and 1 MiB each way. Pythons up to 3.11 challenge
// with 20 random bytes and a bare HMAC-MD5; 3.12 and later with the {sha256} form: both work.
//
// The Python end is listener_interop.py: one interpreter per version and direction, driven a
// command a line (its header describes the commands). Every wait here has a deadline, and the
// interpreters are killed when a test fails (and die with this program should it crash).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "concur/errors.hpp"
#include "concur/listener.hpp"
#include "test_support.hpp"

#ifndef CONCUR_LISTENER_INTEROP_PY
#error "CONCUR_LISTENER_INTEROP_PY must name listener_interop.py"
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace cn = concur::connection;

// How long a Python may take to answer a command (or a concur end to see the next step): far
// more than any step needs, on a loaded 2-CPU machine with ten interpreters to run.
constexpr auto reply_limit = 60s;

// The sizes of the byte messages exchanged each way.
const std::vector<std::size_t> message_sizes{0, 1, 64 * 1024, 1024 * 1024};

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// A Python interpreter running `args`, its stdin and stdout (with stderr) on pipes.
class PythonProcess {
 public:
  PythonProcess(const std::string& interpreter, const std::vector<std::string>& args) {
    static const bool sigpipe_ignored = [] {
      ::signal(SIGPIPE, SIG_IGN);  // a write to a Python that died fails, and does not kill us
      return true;
    }();
    (void)sigpipe_ignored;
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
      ADD_FAILURE() << errno_text("pipe2");
      return;
    }
    if (::pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << errno_text("pipe2");
      ::close(in[0]);
      ::close(in[1]);
      return;
    }
    std::vector<std::string> words{interpreter};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {                       // the child: only async-signal-safe calls until exec
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // should this test crash, the Python dies with it
      if (::getppid() != parent) ::_exit(127);
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(out[1], STDERR_FILENO);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = out[0];
    if (pid_ < 0) {
      ADD_FAILURE() << errno_text("fork");
      close_pipes();
    }
  }

  PythonProcess(const PythonProcess&) = delete;
  PythonProcess& operator=(const PythonProcess&) = delete;

  ~PythonProcess() {
    kill();
    close_pipes();
  }

  // Sends one command line; false (after a failure) when the Python is gone.
  bool write_line(const std::string& line) {
    const std::string text = line + "\n";
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(in_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << errno_text("writing to the Python") << "; its output: " << transcript();
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  // The next line of output (without its newline), or nothing when `limit` passes or the
  // output ends first.
  std::optional<std::string> read_line(Clock::duration limit = reply_limit) {
    const auto deadline = Clock::now() + limit;
    std::size_t end = pending_.find('\n');
    while (end == std::string::npos) {
      if (!read_some(deadline)) return std::nullopt;
      end = pending_.find('\n');
    }
    std::string line = pending_.substr(0, end);
    pending_.erase(0, end + 1);
    return line;
  }

  // Everything the Python wrote so far (and what it has written since, if it is there now).
  std::string transcript() {
    while (read_some(Clock::now())) {
    }
    return "\n--- output of the Python ---\n" + everything_ + "--- end ---";
  }

  // Closes its stdin (it then exits) and waits at most `limit`; its exit code, or nothing
  // (after killing it) when it did not exit normally in time.
  std::optional<int> finish(Clock::duration limit = reply_limit) {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
    const auto deadline = Clock::now() + limit;
    while (pid_ > 0 && Clock::now() < deadline) {
      int status = 0;
      const pid_t rc = ::waitpid(pid_, &status, WNOHANG);
      if (rc == pid_) {
        pid_ = -1;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return std::nullopt;
      }
      if (rc < 0 && errno != EINTR) break;
      std::this_thread::sleep_for(2ms);
    }
    kill();
    return std::nullopt;
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

 private:
  // Reads what the pipe has, waiting until `deadline`; false on timeout or end of output.
  bool read_some(Clock::time_point deadline) {
    if (out_ < 0) return false;
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd entry{out_, POLLIN, 0};
      const int ready = ::poll(&entry, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      char buffer[4096];
      const ssize_t n = ::read(out_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      pending_.append(buffer, static_cast<std::size_t>(n));
      everything_.append(buffer, static_cast<std::size_t>(n));
      return true;
    }
  }

  void close_pipes() {
    if (in_ >= 0) ::close(in_);
    if (out_ >= 0) ::close(out_);
    in_ = out_ = -1;
  }

  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::string pending_;     // read, not yet returned by read_line
  std::string everything_;  // all read, for failure messages
};

// A Python 3 found on this machine.
struct Interpreter {
  std::string path;
  int major = 0;
  int minor = 0;
  std::string form;  // its challenge: "legacy" (bare HMAC-MD5) or "sha256" ({sha256} prefix)
  std::string version() const { return std::to_string(major) + "." + std::to_string(minor); }
};

// Where Pythons live: /usr/bin and /usr/local/bin (python3, python3.N), pyenv's versions
// ($PYENV_ROOT, ~/.pyenv), and python3 on PATH. Only files that exist and can be run.
std::vector<std::string> candidate_paths() {
  namespace fs = std::filesystem;
  std::vector<std::string> found;
  const auto add = [&found](const fs::path& path) {
    std::error_code error;
    if (!fs::is_regular_file(path, error) || ::access(path.c_str(), X_OK) != 0) return;
    if (std::find(found.begin(), found.end(), path.string()) == found.end()) {
      found.push_back(path.string());
    }
  };
  const auto sorted_entries = [](const fs::path& dir) {
    std::vector<fs::path> entries;
    std::error_code error;
    for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
      entries.push_back(it->path());
    }
    std::sort(entries.begin(), entries.end());
    return entries;
  };
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    add(fs::path(dir) / "python3");
    for (const fs::path& entry : sorted_entries(dir)) {
      const std::string name = entry.filename().string();  // python3.N, not python3.N-config
      if (name.rfind("python3.", 0) == 0 && name.size() > 8 &&
          name.find_first_not_of("0123456789", 8) == std::string::npos) {
        add(entry);
      }
    }
  }
  std::vector<fs::path> roots;
  if (const char* root = std::getenv("PYENV_ROOT"); root && *root) roots.emplace_back(root);
  if (const char* home = std::getenv("HOME"); home && *home)
    roots.push_back(fs::path(home) / ".pyenv");
  for (const fs::path& root : roots) {
    for (const fs::path& version : sorted_entries(root / "versions"))
      add(version / "bin" / "python3");
  }
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    for (std::size_t start = 0; start <= dirs.size();) {
      const std::size_t colon = std::min(dirs.find(':', start), dirs.size());
      if (colon > start) add(fs::path(dirs.substr(start, colon - start)) / "python3");
      start = colon + 1;
    }
  }
  return found;
}

// Every distinct Python 3 version here whose multiprocessing.connection imports, oldest first;
// the first path found for each version. Found once per program (the probes run together).
const std::vector<Interpreter>& pythons() {
  static const std::vector<Interpreter> found = [] {
    const char* probe =
        "import sys; v = sys.version_info; import multiprocessing.connection as c; "
        "print('%d.%d %s' % (v[0], v[1], 'sha256' if hasattr(c, '_ALLOWED_DIGESTS') else "
        "'legacy'))";
    const std::vector<std::string> paths = candidate_paths();
    std::vector<std::unique_ptr<PythonProcess>> probes;
    for (const std::string& path : paths) {
      probes.push_back(
          std::make_unique<PythonProcess>(path, std::vector<std::string>{"-c", probe}));
    }
    // One deadline for all: a candidate that hangs costs reply_limit once, not once each.
    const auto deadline = Clock::now() + reply_limit;
    std::vector<Interpreter> result;
    std::string skipped;
    for (std::size_t i = 0; i < paths.size(); ++i) {
      const std::optional<std::string> line = probes[i]->read_line(deadline - Clock::now());
      const std::optional<int> code = probes[i]->finish(deadline - Clock::now());
      Interpreter python;
      python.path = paths[i];
      char form[16] = {};
      if (!line || code != 0 ||
          std::sscanf(line->c_str(), "%d.%d %15s", &python.major, &python.minor, form) != 3 ||
          python.major != 3) {
        // Not a Python 3, or one without multiprocessing.connection.
        skipped += " " + paths[i] + (line ? " (" + line->substr(0, 60) + ")" : "");
        continue;
      }
      python.form = form;
      const bool seen = std::any_of(result.begin(), result.end(), [&](const Interpreter& other) {
        return other.minor == python.minor;
      });
      if (!seen) result.push_back(python);
    }
    std::sort(result.begin(), result.end(),
              [](const Interpreter& a, const Interpreter& b) { return a.minor < b.minor; });
    std::string line = "Pythons (" + std::to_string(result.size()) + "):";
    for (const Interpreter& python : result) {
      line += " " + python.version() + " (" + python.form + " challenge, " + python.path + ")";
    }
    if (!skipped.empty()) line += "; skipped:" + skipped;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    return result;
  }();
  return found;
}

// pattern(tag, size): SHA-256 of "TAG:SIZE:I" for I = 0, 1, ..., cut to `size` bytes, as
// listener_interop.py makes them.
const std::string& pattern(const std::string& tag, std::size_t size) {
  static std::map<std::pair<std::string, std::size_t>, std::string> made;
  std::string& bytes = made[{tag, size}];
  if (bytes.size() == size) return bytes;
  bytes.clear();
  for (std::size_t i = 0; bytes.size() < size; ++i) {
    const std::string input = tag + ":" + std::to_string(size) + ":" + std::to_string(i);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("EVP_Digest failed");
    }
    bytes.append(reinterpret_cast<const char*>(digest), length);
  }
  bytes.resize(size);
  return bytes;
}

std::string hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  for (const unsigned char byte : bytes) {
    text += digits[byte >> 4];
    text += digits[byte & 15];
  }
  return text;
}

// The script's forms of an address, a key and the sizes.
std::string address_word(const cn::Address& address) {
  if (address.family() == cn::Family::af_inet) {
    return "inet:" + address.host() + ":" + std::to_string(address.port());
  }
  return "unix:" + hex(address.path());
}
std::string key_word(const std::optional<std::string>& key) {
  return key ? "key:" + hex(*key) : "none";
}
std::string sizes_word() {
  std::string text;
  for (const std::size_t size : message_sizes)
    text += (text.empty() ? "" : ",") + std::to_string(size);
  return text;
}

// Whether `got` is `want`, said without printing a megabyte.
bool expect_message(const std::string& got, const std::string& want, const char* what) {
  if (got == want) return true;
  const auto diff = std::mismatch(got.begin(), got.end(), want.begin(), want.end());
  ADD_FAILURE() << what << ": got " << got.size() << " bytes, want " << want.size()
                << "; they differ from byte " << (diff.first - got.begin());
  return false;
}

// The exchange, from the client's side: sends pattern("c2s", n), expects pattern("s2c", n).
bool exchange_as_client(cn::Connection& connection) {
  for (const std::size_t size : message_sizes) {
    SCOPED_TRACE("message of " + std::to_string(size) + " bytes");
    connection.send_bytes(pattern("c2s", size));
    if (!connection.poll(reply_limit)) {
      ADD_FAILURE() << "no answer within " << reply_limit.count() << " s";
      return false;
    }
    if (!expect_message(connection.recv_bytes(), pattern("s2c", size), "the server's answer")) {
      return false;
    }
  }
  return true;
}

// The exchange, from the server's side; then the client closes, having sent nothing more.
bool exchange_as_server(cn::Connection& connection) {
  for (const std::size_t size : message_sizes) {
    SCOPED_TRACE("message of " + std::to_string(size) + " bytes");
    if (!connection.poll(reply_limit)) {
      ADD_FAILURE() << "no message within " << reply_limit.count() << " s";
      return false;
    }
    if (!expect_message(connection.recv_bytes(), pattern("c2s", size), "the client's message")) {
      return false;
    }
    connection.send_bytes(pattern("s2c", size));
  }
  if (!connection.poll(reply_limit)) {
    ADD_FAILURE() << "the client did not close within " << reply_limit.count() << " s";
    return false;
  }
  try {
    const std::string extra = connection.recv_bytes();
    ADD_FAILURE() << "a message of " << extra.size() << " bytes after the exchange";
    return false;
  } catch (const concur::EOFError&) {
    return true;
  }
}

// A fresh directory for Unix socket paths, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string base = std::filesystem::temp_directory_path().string();
    if (base.size() > 60) base = "/tmp";  // a socket path must fit in sun_path (108 bytes)
    std::string name = base + "/concur-interop-XXXXXX";
    if (::mkdtemp(name.data()) == nullptr) ADD_FAILURE() << errno_text("mkdtemp");
    path_ = name;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The three kinds of address, each a fresh one: TCP on 127.0.0.1 (port 0: any free port), a
// Unix socket path in `dir`, and a Linux abstract name (a leading NUL byte).
struct Place {
  const char* name;
  cn::Address (*make)(const TempDir& dir, int serial);
};
const Place places[] = {
    {"TCP", [](const TempDir&, int) { return cn::Address("127.0.0.1", 0); }},
    {"Unix socket path",
     [](const TempDir& dir, int serial) {
       return cn::Address(dir.path() + "/socket-" + std::to_string(serial));
     }},
    {"abstract Unix socket",
     [](const TempDir&, int serial) {
       return cn::Address(std::string(1, '\0') + "concur-interop-" + std::to_string(::getpid()) +
                          "-" + std::to_string(serial));
     }},
};

struct KeyCase {
  const char* name;
  std::optional<std::string> listener_key;
  std::optional<std::string> client_key;
  bool refused;  // both sides fail with AuthenticationError
};
// Keys are bytes: a NUL and a byte over 127 among them.
const KeyCase key_cases[] = {
    {"right key", std::string("k\0\xff-secret", 10), std::string("k\0\xff-secret", 10), false},
    {"wrong key", std::string("k\0\xff-secret", 10), std::string("k\0\xff-secreT", 10), true},
    {"no key", std::nullopt, std::nullopt, false},
};

// Reads listener_interop.py's first line; false (after a failure) unless it says ready, with
// the version and the form of challenge found by the probe.
bool expect_ready(PythonProcess& script, const Interpreter& python) {
  const std::optional<std::string> ready = script.read_line();
  const std::string want = "ready " + python.version() + " " + python.form;
  if (ready != want) {
    ADD_FAILURE() << "want '" << want << "' first" << script.transcript();
    return false;
  }
  return true;
}

// Reads the script's result line and expects `want`.
bool expect_result(PythonProcess& script, const std::string& want) {
  const std::optional<std::string> line = script.read_line();
  if (line != "result " + want) {
    ADD_FAILURE() << "want 'result " << want << "' from the Python" << script.transcript();
    return false;
  }
  return true;
}

void expect_clean_exit(PythonProcess& script) {
  script.write_line("quit");
  EXPECT_EQ(script.finish(), 0) << "the Python did not exit cleanly" << script.transcript();
}

// Waits at most `limit` for a client to knock, then accept()s it (which may throw).
cn::Connection accept_within(cn::Listener& listener, Clock::duration limit = reply_limit) {
  pollfd entry{listener.fileno(), POLLIN, 0};
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    const int ready = ::poll(&entry, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
    if (ready > 0) return listener.accept();
    if (ready == 0) throw std::runtime_error("no client came to the Listener in time");
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
  }
}

// One Python client, `key`, at `listener`: accepted and exchanged with, or refused on both sides.
bool serve_python_client(PythonProcess& script, cn::Listener& listener,
                         const std::optional<std::string>& key, bool refused) {
  if (!script.write_line("connect " + address_word(listener.address()) + " " + key_word(key) + " " +
                         sizes_word())) {
    return false;
  }
  try {
    cn::Connection connection = accept_within(listener);
    if (refused) {
      ADD_FAILURE() << "accept() took a client with the wrong key";
      return false;
    }
    if (!exchange_as_server(connection)) return false;
  } catch (const concur::AuthenticationError& error) {
    if (!refused) {
      ADD_FAILURE() << "accept() threw AuthenticationError: " << error.what();
      return false;
    }
  } catch (const std::exception& error) {
    ADD_FAILURE() << "accept() or the exchange threw: " << error.what() << script.transcript();
    return false;
  }
  return expect_result(script, refused ? "auth-error" : "ok");
}

TEST(ListenerInterop, FindsPythons) {
  // Run once here so that the list is printed under this test's name too.
  EXPECT_FALSE(pythons().empty()) << "no Python 3 with multiprocessing.connection was found";
  for (const Interpreter& python : pythons()) {
    EXPECT_EQ(python.form, python.minor >= 12 ? "sha256" : "legacy")
        << "Python " << python.version() << " at " << python.path;
  }
}

// A Python Listener, a concur Client.
TEST(ListenerInterop, PythonListenerConcurClient) {
  for (const Interpreter& python : pythons()) {
    SCOPED_TRACE("Python " + python.version() + " (" + python.form + " challenge) at " +
                 python.path);
    PythonProcess script(python.path, {"-u", CONCUR_LISTENER_INTEROP_PY});
    if (!expect_ready(script, python)) continue;
    const TempDir dir;
    int serial = 0;
    bool ok = true;
    for (const Place& place : places) {
      for (const KeyCase& keys : key_cases) {
        if (!ok) break;
        SCOPED_TRACE(std::string(place.name) + ", " + keys.name);
        cn::Address address = place.make(dir, serial++);
        ok = script.write_line("serve " + address_word(address) + " " +
                               key_word(keys.listener_key) + " " + sizes_word());
        if (!ok) break;
        const std::optional<std::string> listening = script.read_line();
        int port = -1;
        if (!listening || std::sscanf(listening->c_str(), "listening %d", &port) != 1) {
          ADD_FAILURE() << "want 'listening PORT'" << script.transcript();
          ok = false;
          break;
        }
        if (address.family() == cn::Family::af_inet) {
          address = cn::Address("127.0.0.1", static_cast<std::uint16_t>(port));
        }
        try {
          cn::Connection connection = cn::Client(address, {.authkey = keys.client_key});
          if (keys.refused) {
            ADD_FAILURE() << "Client() returned with the wrong key";
            ok = false;
          } else {
            ok = exchange_as_client(connection);
          }
        } catch (const concur::AuthenticationError& error) {
          if (!keys.refused) {
            ADD_FAILURE() << "Client() threw AuthenticationError: " << error.what();
            ok = false;
          }
        } catch (const std::exception& error) {
          ADD_FAILURE() << "Client() or the exchange threw: " << error.what();
          ok = false;
        }
        // The connection is closed: the Python expects end of file after the exchange.
        if (ok) ok = expect_result(script, keys.refused ? "auth-error" : "ok");
      }
    }
    if (ok) expect_clean_exit(script);
  }
}

// A concur Listener, a Python Client. After a client with the wrong key, the same Listener
// takes a client with the right one, and hears from that client only.
TEST(ListenerInterop, ConcurListenerPythonClient) {
  for (const Interpreter& python : pythons()) {
    SCOPED_TRACE("Python " + python.version() + " (" + python.form + " challenge) at " +
                 python.path);
    PythonProcess script(python.path, {"-u", CONCUR_LISTENER_INTEROP_PY});
    if (!expect_ready(script, python)) continue;
    const TempDir dir;
    int serial = 0;
    bool ok = true;
    for (const Place& place : places) {
      for (const KeyCase& keys : key_cases) {
        if (!ok) break;
        SCOPED_TRACE(std::string(place.name) + ", " + keys.name);
        const cn::Address address = place.make(dir, serial++);
        {
          cn::Listener listener(address, {.authkey = keys.listener_key});
          ok = serve_python_client(script, listener, keys.client_key, keys.refused);
          if (ok && keys.refused) {
            SCOPED_TRACE("then a client with the right key");
            ok = serve_python_client(script, listener, keys.listener_key, false);
          }
        }
        if (address.family() == cn::Family::af_unix && address.path()[0] != '\0') {
          EXPECT_FALSE(std::filesystem::exists(address.path()))
              << "the closed Listener left its socket file";
        }
      }
    }
    if (ok) expect_clean_exit(script);
  }
}

// Clients that do not speak the protocol: a wrong answer in a well-formed message, bytes that
// are not a message, half a message, nothing at all, a hang-up. accept() throws
// AuthenticationError for each (the silent ones after the handshake timeout) and closes them,
// then accepts a good Python client.
TEST(ListenerInterop, ConcurListenerRefusesBadClients) {
  constexpr auto handshake_timeout = 300ms;
  for (const Interpreter& python : pythons()) {
    SCOPED_TRACE("Python " + python.version() + " at " + python.path);
    PythonProcess script(python.path, {"-u", CONCUR_LISTENER_INTEROP_PY});
    if (!expect_ready(script, python)) continue;
    const std::string key = "secret";
    cn::Listener listener(cn::Address("127.0.0.1", 0),
                          {.authkey = key, .handshake_timeout = handshake_timeout});
    bool ok = true;
    for (const char* mode : {"framed", "unframed", "partial", "silent", "hangup"}) {
      SCOPED_TRACE(std::string("a client that is ") + mode);
      ok = script.write_line("raw " + address_word(listener.address()) + " " + mode);
      if (!ok) break;
      const auto start = Clock::now();
      try {
        (void)accept_within(listener);
        ADD_FAILURE() << "accept() took it";
        ok = false;
      } catch (const concur::AuthenticationError&) {
        const auto took = Clock::now() - start;
        if (std::strcmp(mode, "silent") == 0 || std::strcmp(mode, "partial") == 0) {
          EXPECT_GE(took, handshake_timeout - 10ms) << "accept() gave up before its timeout";
        }
        EXPECT_LT(took, concur_test::generous) << "accept() took too long";
      } catch (const std::exception& error) {
        ADD_FAILURE() << "accept() threw: " << error.what();
        ok = false;
      }
      if (!ok) break;
      // The Python saw the connection closed (it reads until then).
      ok = expect_result(script, "closed");
      if (!ok) break;
    }
    if (ok) {
      SCOPED_TRACE("then a good client");
      ok = serve_python_client(script, listener, key, false);
    }
    if (ok) expect_clean_exit(script);
  }
}

}  // namespace
