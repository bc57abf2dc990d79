// concur/detail/flush_streams.hpp
//
// The output a process has buffered but not yet written, flushed at the two points where it
// would otherwise be lost or doubled: before fork() and before a Process child's _exit().

#ifndef CONCUR_DETAIL_FLUSH_STREAMS_HPP
#define CONCUR_DETAIL_FLUSH_STREAMS_HPP

#include <cstdio>
#include <iostream>

namespace concur::detail {

// Flushes the C++ standard streams (narrow and wide: with std::ios::sync_with_stdio(false) they
// buffer on their own), then every C stdio stream. Called before fork(), so that the child does
// not inherit a copy of unwritten output, and before a Process child's _exit(), which skips the
// destructors and atexit handlers that flush them otherwise (Python's multiprocessing flushes
// sys.stdout and sys.stderr at both points too).
inline void flush_standard_streams() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
    std::wcout.flush();
    std::wcerr.flush();
    std::wclog.flush();
  } catch (...) {  // a stream with exceptions() set whose flush failed: nothing more to do
  }
  std::fflush(nullptr);
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_FLUSH_STREAMS_HPP
