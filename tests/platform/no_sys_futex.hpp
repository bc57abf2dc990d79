// Forced in front of a test's sources (-include) to stand in for a 32-bit target that has only
// SYS_futex_time64 (riscv32, and every Linux port added since 5.1): the C library's syscall
// numbers without SYS_futex. The standard library's own futex calls (atomic waits, which expand
// the name where they are defined) are read first, with the name still there; include guards
// keep every header here from being read again, so concur's sees no SYS_futex.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <atomic>
#include <barrier>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <semaphore>
#include <stop_token>
#include <thread>

#undef SYS_futex
