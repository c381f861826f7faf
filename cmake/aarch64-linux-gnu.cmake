# Cross build for arm64 Linux with Debian's g++-aarch64-linux-gnu; tests run
# under qemu-user (tools/test-arm64.sh). Only UMI_KERNELS_ONLY builds this way:
# the rest of umi needs libraries this toolchain does not have.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The CPU qemu emulates is chosen by QEMU_CPU in the environment (default
# "max", which has DotProd; e.g. cortex-a72 has not).
# The libraries come from the cross toolchain's folder, first: on a machine that
# also has Debian's arm64 libc (multiarch, /lib/aarch64-linux-gnu) qemu would
# otherwise pair the toolchain's loader with that libc, a different build, and
# the first pthread_create hangs.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
