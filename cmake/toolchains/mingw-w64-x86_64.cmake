# Cross-building for 64-bit Windows with MinGW-w64 (GCC with posix threads, winpthreads), for
# example on Debian with g++-mingw-w64-x86-64-posix:
#   cmake -S . -B build/mingw --toolchain cmake/toolchains/mingw-w64-x86_64.cmake
# Programs built this way run on Windows, or under Wine. concur's waits there use
# WaitOnAddress, in Synchronization.lib, so consumers link `synchronization` (concur::concur
# does not add it yet; see .ci/windows for the build CI checks).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++-posix)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR wine)
