// concur/errors.hpp
//
// The exceptions concur throws, mapped from the ones Python raises:
//
//   Python                                         concur
//   RuntimeError / AssertionError for misuse       UsageError        (a std::logic_error)
//   ValueError for a bad argument                  std::invalid_argument
//   OverflowError (RLock's count, past 2^32 - 1)   std::overflow_error
//   queue.Empty, queue.Full, queue.ShutDown        Empty, Full, ShutDown
//   threading.BrokenBarrierError                   BrokenBarrierError
//   EOFError, multiprocessing.BufferTooShort       EOFError, BufferTooShort
//   concurrent.futures.TimeoutError                TimeoutError
//   concurrent.futures.CancelledError              CancelledError
//   concurrent.futures.InvalidStateError           InvalidStateError
//   concurrent.futures.BrokenExecutor, its         BrokenExecutor, BrokenThreadPool,
//     BrokenThreadPool and BrokenProcessPool         BrokenProcessPool
//   multiprocessing.AuthenticationError            AuthenticationError
//   (none: mp.Lock's holder died, Python hangs)    OwnerDied
//   OSError, BrokenPipeError                       std::system_error carrying the errno
//
// Empty, Full, ShutDown, BrokenBarrierError, EOFError, BufferTooShort, OwnerDied and the futures'
// errors derive from concur::Error, which derives from std::runtime_error: they report a state of
// the world that a correct program meets and handles. UsageError reports a bug in the calling
// program.

#ifndef CONCUR_ERRORS_HPP
#define CONCUR_ERRORS_HPP

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace concur {

// UsageError
//
// A primitive was used against its contract: releasing a lock that is not held, starting a
// thread twice, joining a thread before it started or from itself, waiting on a condition
// without holding its lock, calling task_done() once too often, releasing a bounded semaphore
// past its initial value. Python raises RuntimeError (or AssertionError) for these.
class UsageError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Error
//
// The base of the exceptions that report an expected condition rather than a bug.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Empty
//
// A non-blocking or timed get() found the queue empty (Python's queue.Empty).
class Empty : public Error {
 public:
  Empty() : Error("queue is empty") {}
  using Error::Error;
};

// Full
//
// A non-blocking or timed put() found the queue full (Python's queue.Full).
class Full : public Error {
 public:
  Full() : Error("queue is full") {}
  using Error::Error;
};

// ShutDown
//
// The queue was shut down: put() always throws it, get() once the queue is empty (Python's
// queue.ShutDown).
class ShutDown : public Error {
 public:
  ShutDown() : Error("queue is shut down") {}
  using Error::Error;
};

// BrokenBarrierError
//
// A barrier was broken by a timeout, an abort(), a reset() while threads waited, or an action
// that threw (Python's threading.BrokenBarrierError).
class BrokenBarrierError : public Error {
 public:
  BrokenBarrierError() : Error("barrier is broken") {}
  using Error::Error;
};

// EOFError
//
// The other end of a connection was closed and nothing is left to read (Python's EOFError).
class EOFError : public Error {
 public:
  EOFError() : Error("end of file: the other end of the connection is closed") {}
  using Error::Error;
};

// BufferTooShort
//
// recv_bytes_into() was given a buffer smaller than the message. The whole message is kept in
// the exception, so nothing is lost (Python's multiprocessing.BufferTooShort, whose args[0] is
// the message).
class BufferTooShort : public Error {
 public:
  explicit BufferTooShort(std::string message)
      : Error("buffer too short for the message"), message_(std::move(message)) {}

  // BufferTooShort::message()
  //
  // The complete message that did not fit.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// TimeoutError
//
// A timed wait on a Future (result(), exception(), as_completed(), an executor's map() or an
// AsyncResult's get()) ran out of time before the result was there (Python's
// concurrent.futures.TimeoutError and multiprocessing.TimeoutError).
class TimeoutError : public Error {
 public:
  TimeoutError() : Error("timed out waiting for the result") {}
  using Error::Error;
};

// CancelledError
//
// The result of a Future that was cancelled before it ran (Python's
// concurrent.futures.CancelledError).
class CancelledError : public Error {
 public:
  CancelledError() : Error("the future was cancelled") {}
  using Error::Error;
};

// InvalidStateError
//
// A Future's result or exception was set when it was already done or cancelled (Python's
// concurrent.futures.InvalidStateError).
class InvalidStateError : public Error {
 public:
  InvalidStateError() : Error("the future is already done") {}
  using Error::Error;
};

// BrokenExecutor
//
// An executor can no longer run work: Python's concurrent.futures.BrokenExecutor. The pending
// Futures of a broken executor hold it, and submit() throws it.
class BrokenExecutor : public Error {
 public:
  BrokenExecutor() : Error("the executor is broken") {}
  using Error::Error;
};

// BrokenThreadPool
//
// A ThreadPoolExecutor's worker failed in its initializer (Python's
// concurrent.futures.thread.BrokenThreadPool).
class BrokenThreadPool : public BrokenExecutor {
 public:
  BrokenThreadPool()
      : BrokenExecutor("a thread initializer failed, the thread pool is not usable anymore") {}
  using BrokenExecutor::BrokenExecutor;
};

// BrokenProcessPool
//
// A worker process of a ProcessPoolExecutor or mp::Pool ended abruptly (killed, or exited
// outside a task), or failed in its initializer (Python's
// concurrent.futures.process.BrokenProcessPool; Python's multiprocessing.Pool hangs instead).
class BrokenProcessPool : public BrokenExecutor {
 public:
  BrokenProcessPool() : BrokenExecutor("a process in the process pool was terminated abruptly") {}
  using BrokenExecutor::BrokenExecutor;
};

// AuthenticationError
//
// The authkey handshake of a Listener or Client failed: the peer's HMAC was wrong or used a
// digest that is not allowed, the peer broke the protocol, hung up, or did not answer in time
// (Python's multiprocessing.AuthenticationError; see concur/listener.hpp).
class AuthenticationError : public Error {
 public:
  using Error::Error;
};

// OwnerDied
//
// No Python counterpart (Python's multiprocessing.Lock hangs instead): the previous holder of a
// process-shared lock (mp::Lock, mp::RLock, the lock of an mp::Value or mp::Array) died holding
// it. The thread that gets this error holds the lock: what the lock protects may have been left
// half changed, so it repairs that, then releases the lock, which is whole again.
class OwnerDied : public Error {
 public:
  OwnerDied() : Error("the previous holder of the lock died while holding it") {}
};

namespace detail {

// Throws std::system_error for `error` (an errno value), naming the operation that failed.
[[noreturn]] inline void throw_system_error(int error, const char* what) {
  throw std::system_error(error, std::generic_category(), what);
}

// Throws std::system_error for the current errno.
[[noreturn]] inline void throw_errno(const char* what) {
  throw_system_error(errno, what);
}

}  // namespace detail

}  // namespace concur

#endif  // CONCUR_ERRORS_HPP
