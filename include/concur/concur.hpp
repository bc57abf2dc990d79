// concur/concur.hpp
//
// The umbrella header: includes every public concur header. concur gives C++ the toolbox of
// Python's `threading`, `queue` and `multiprocessing` modules, with Python's names and
// semantics and C++'s idioms. Include the one header you need (concur/thread.hpp, ...) to keep
// compile times down, or this one for everything.

#ifndef CONCUR_CONCUR_HPP
#define CONCUR_CONCUR_HPP

// The version of this copy of concur; CMake reads it from here.
#define CONCUR_VERSION_MAJOR 0
#define CONCUR_VERSION_MINOR 1
#define CONCUR_VERSION_PATCH 0
#define CONCUR_VERSION \
  (CONCUR_VERSION_MAJOR * 10000 + CONCUR_VERSION_MINOR * 100 + CONCUR_VERSION_PATCH)

#include "concur/barrier.hpp"
#include "concur/codec.hpp"
#include "concur/condition.hpp"
#include "concur/detail/config.hpp"
#include "concur/errors.hpp"
#include "concur/event.hpp"
#include "concur/futures.hpp"
#include "concur/local.hpp"
#include "concur/lock.hpp"
#include "concur/queue.hpp"
#include "concur/rlock.hpp"
#include "concur/semaphore.hpp"
#include "concur/simple_queue.hpp"
#include "concur/thread.hpp"
#include "concur/timer.hpp"

// Processes, pipes and connections need fork() and POSIX descriptors.
#if CONCUR_POSIX
#include "concur/connection.hpp"
#include "concur/pool.hpp"
#include "concur/process.hpp"
#include "concur/process_pool.hpp"
#include "concur/shared_memory.hpp"
#endif

// The process-shared primitives need Linux's futexes (the locks, conditions, barriers, values
// and queues its robust futex list).
#if defined(__linux__)
#include "concur/mp_barrier.hpp"
#include "concur/mp_condition.hpp"
#include "concur/mp_event.hpp"
#include "concur/mp_lock.hpp"
#include "concur/mp_queue.hpp"
#include "concur/mp_semaphore.hpp"
#include "concur/shared_ctypes.hpp"
#endif

#endif  // CONCUR_CONCUR_HPP
