/* Byte streams of the host program: POSIX on the build machine (host_io_posix.c), Linux system calls
 * under qemu-riscv32 for the RISC-V build (host_io_rv32.c, which also provides the start-up code). */
#pragma once

#include <stddef.h>

long host_read(void *buf, size_t len);        /* from stdin; bytes read, 0 at the end, < 0 on error */
long host_write(const void *buf, size_t len); /* to stdout */
