# Cross build for 32-bit x86 Linux (glibc) with Debian's g++-i686-linux-gnu, with 64-bit time_t
# and off_t (_TIME_BITS=64, _FILE_OFFSET_BITS=64: glibc 2.34 and later), the ABI of Debian's
# newest 32-bit ports. Programs are linked statically and run through qemu-i386-static, since
# not every x86-64 kernel runs 32-bit programs; CMAKE_CROSSCOMPILING_EMULATOR lets ctest run
# them through QEMU. Used by .ci/cross.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(CMAKE_C_COMPILER i686-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER i686-linux-gnu-g++)
set(CMAKE_C_FLAGS_INIT "-D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64")
set(CMAKE_CXX_FLAGS_INIT "-D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-i386-static)
set(CMAKE_FIND_ROOT_PATH /usr/i686-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
