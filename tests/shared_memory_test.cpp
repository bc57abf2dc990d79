// Tests for concur/shared_memory.hpp: mp::SharedMemory, Python's shared_memory.SharedMemory.
// Every block a test makes is gone from /dev/shm when the test ends (checked by each test that
// makes one), and a Python end attaches to a concur block and a concur end to a Python block
// when python3 is on the PATH.

#include "concur/shared_memory.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "concur/process.hpp"

namespace {

namespace mp = concur::mp;

// Whether /dev/shm holds the object named `name` (Linux keeps POSIX shared memory there).
bool exists(const std::string& name) {
  struct stat status {};
  return ::stat(("/dev/shm/" + name).c_str(), &status) == 0;
}

std::string text_at(const mp::SharedMemory& block, std::size_t size) {
  return {reinterpret_cast<const char*>(block.buf().data()), size};
}

void write_text(const mp::SharedMemory& block, const std::string& text) {
  std::memcpy(block.buf().data(), text.data(), text.size());
}

int system_error_code(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

TEST(SharedMemory, CreatesZeroedBlocksWithPythonsNames) {
  std::set<std::string> names;
  for (int i = 0; i < 20; ++i) {
    mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 3000});
    const std::string name = block.name();
    EXPECT_EQ(name.size(), 12u) << name;  // "psm_" and 8 hex digits, as Python's
    EXPECT_EQ(name.rfind("psm_", 0), 0u) << name;
    EXPECT_EQ(name.find_first_not_of("0123456789abcdef", 4), std::string::npos) << name;
    EXPECT_EQ(block.size(), 3000u);
    for (std::byte b : block.buf()) ASSERT_EQ(b, std::byte{0});
    EXPECT_TRUE(exists(name));
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 20u);
  for (const std::string& name : names) EXPECT_FALSE(exists(name)) << "left behind: " << name;
}

TEST(SharedMemory, AnAttachedBlockIsTheSameMemory) {
  mp::SharedMemory made(mp::SharedMemoryOptions{.create = true, .size = 100});
  mp::SharedMemory attached(made.name());
  EXPECT_EQ(attached.size(), 100u);
  EXPECT_EQ(attached.name(), made.name());
  EXPECT_NE(attached.buf().data(), made.buf().data()) << "two mappings";
  write_text(made, "written by one");
  EXPECT_EQ(text_at(attached, 14), "written by one");
  write_text(attached, "and the other!");
  EXPECT_EQ(text_at(made, 14), "and the other!");
}

TEST(SharedMemory, ProcessesShareTheBlockBothWays) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 4096, .track = true});
  write_text(block, "from the parent");
  const std::string name = block.name();
  concur::Process child([name]() -> int {
    mp::SharedMemory mine(name);  // attached: its destruction unlinks nothing
    if (text_at(mine, 15) != "from the parent") return 2;
    write_text(mine, "from the child!");
    return 0;
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_EQ(text_at(block, 15), "from the child!");
  EXPECT_TRUE(exists(name)) << "a process that attached unlinked the name";
  block.close();
  EXPECT_TRUE(exists(name)) << "close() keeps the name";
}

// A child forked with the creator's object in its memory (concur::fork returns in the child,
// whose scopes then end) does not unlink: only the creating process does.
TEST(SharedMemory, AForkedCopyOfTheCreatorDoesNotUnlink) {
  std::string name;
  {
    mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 64});
    name = block.name();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      { mp::SharedMemory moved = std::move(block); }  // destroyed in the child
      mp::SharedMemory again(name);                   // still there
      std::_Exit(again.size() == 64 ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_TRUE(exists(name));
  }
  EXPECT_FALSE(exists(name)) << "the creator's destruction unlinks";
}

TEST(SharedMemory, UntrackedBlocksStayUntilUnlinked) {
  std::string name;
  {
    mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 10, .track = false});
    name = block.name();
  }
  ASSERT_TRUE(exists(name)) << "an untracked block outlives its object";
  mp::SharedMemory again(name);
  EXPECT_EQ(again.size(), 10u);
  again.unlink();
  EXPECT_FALSE(exists(name));
  EXPECT_EQ(system_error_code([&] { again.unlink(); }), ENOENT);
  EXPECT_EQ(system_error_code([&] { mp::SharedMemory gone(name); }), ENOENT);
}

TEST(SharedMemory, UnlinkRemovesTheNameNotTheMemory) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 50});
  mp::SharedMemory attached(block.name());
  block.unlink();
  EXPECT_FALSE(exists(block.name()));
  write_text(block, "still shared");
  EXPECT_EQ(text_at(attached, 12), "still shared");
}

TEST(SharedMemory, NamesGivenByTheCaller) {
  const std::string name = "concur_test_" + std::to_string(::getpid());
  {
    mp::SharedMemory block(mp::SharedMemoryOptions{.name = name, .create = true, .size = 8192});
    EXPECT_EQ(block.name(), name);
    EXPECT_EQ(block.size(), 8192u);
    EXPECT_EQ(system_error_code([&] {
                mp::SharedMemory(mp::SharedMemoryOptions{.name = name, .create = true, .size = 1});
              }),
              EEXIST);
    EXPECT_TRUE(exists(name)) << "a refused create leaves the existing block alone";
  }
  EXPECT_FALSE(exists(name));
}

TEST(SharedMemory, BadArgumentsAreRefusedAsPythonRefusesThem) {
  EXPECT_THROW(mp::SharedMemory(mp::SharedMemoryOptions{.create = true, .size = 0}),
               std::invalid_argument);
  EXPECT_THROW(mp::SharedMemory(mp::SharedMemoryOptions{}), std::invalid_argument);
  EXPECT_EQ(system_error_code([] { mp::SharedMemory("concur_no_such_block"); }), ENOENT);
  EXPECT_EQ(system_error_code([] { mp::SharedMemory("a/b"); }), EINVAL);
  EXPECT_EQ(system_error_code([] {
              mp::SharedMemory(mp::SharedMemoryOptions{.create = true, .size = ~std::size_t{0}});
            }),
            EFBIG);
  // An empty block (made outside SharedMemory) cannot be mapped: Python's ValueError.
  const std::string name = "concur_empty_" + std::to_string(::getpid());
  const int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_THROW(mp::SharedMemory{name}, std::invalid_argument);
  ::shm_unlink(("/" + name).c_str());
}

TEST(SharedMemory, CloseThenBufIsAUsageError) {
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 10});
  block.close();
  block.close();  // twice: nothing
  EXPECT_THROW((void)block.buf(), concur::UsageError);
  EXPECT_EQ(block.size(), 10u);
}

TEST(SharedMemory, MovesCarryTheBlockAndItsName) {
  mp::SharedMemory first(mp::SharedMemoryOptions{.create = true, .size = 16});
  const std::string name = first.name();
  write_text(first, "moved");
  mp::SharedMemory second = std::move(first);
  EXPECT_EQ(second.name(), name);
  EXPECT_EQ(text_at(second, 5), "moved");
  EXPECT_TRUE(exists(name)) << "the moved-from object unlinked";
  mp::SharedMemory third(mp::SharedMemoryOptions{.create = true, .size = 16});
  const std::string third_name = third.name();
  third = std::move(second);  // the block third held goes: its name is unlinked
  EXPECT_FALSE(exists(third_name));
  EXPECT_EQ(third.name(), name);
  EXPECT_TRUE(exists(name));
}

// A Python process attaches to a concur block, and concur to a Python block (python3 on the
// PATH; skipped without one).
TEST(SharedMemory, PythonSharesBlocksWithConcur) {
  if (std::system("python3 -c 'import multiprocessing.shared_memory' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no python3 with multiprocessing.shared_memory";
  }
  mp::SharedMemory block(mp::SharedMemoryOptions{.create = true, .size = 32});
  write_text(block, "from concur");
  // Python before 3.13 registers an attached block with its resource tracker, which would
  // unlink it when that Python exits: the script unregisters it, as 3.13's track=False does.
  const std::string script =
      "from multiprocessing import shared_memory, resource_tracker\n"
      "m = shared_memory.SharedMemory('" +
      block.name() +
      "')\n"
      "resource_tracker.unregister(m._name, 'shared_memory')\n"
      "assert bytes(m.buf[:11]) == b'from concur', bytes(m.buf[:11])\n"
      "m.buf[:11] = b'from python'\n"
      "m.close()\n"
      "p = shared_memory.SharedMemory(create=True, size=20)\n"
      "resource_tracker.unregister(p._name, 'shared_memory')\n"
      "p.buf[:6] = b'python'\n"
      "print(p.name)\n"
      "p.close()\n";
  std::FILE* python = ::popen(("python3 -c \"" + script + "\"").c_str(), "r");
  ASSERT_NE(python, nullptr);
  char line[128] = {};
  const bool got = std::fgets(line, sizeof line, python) != nullptr;
  ASSERT_EQ(::pclose(python), 0);
  ASSERT_TRUE(got);
  EXPECT_EQ(text_at(block, 11), "from python");
  std::string python_name(line);
  python_name.erase(python_name.find_last_not_of("\n") + 1);
  mp::SharedMemory theirs(python_name);
  EXPECT_EQ(text_at(theirs, 6), "python");
  theirs.unlink();
  EXPECT_FALSE(exists(python_name));
}

}  // namespace
