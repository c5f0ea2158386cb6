/*
 * Start-up and I/O of the RISC-V host program under qemu-riscv32 (Linux user mode), linked against
 * picolibc without its crt0 (which writes machine-mode CSRs): the kernel's stack, gp from the linker,
 * tp at a zeroed thread-local block (picolibc keeps errno there), and read/write/exit system calls.
 */
#include "host_io.h"

int main(void);
void host_start(void);

static long syscall3(long number, long a, long b, long c)
{
    register long a0 __asm__("a0") = a;
    register long a1 __asm__("a1") = b;
    register long a2 __asm__("a2") = c;
    register long a7 __asm__("a7") = number;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

long host_read(void *buf, size_t len) { return syscall3(63, 0, (long)buf, (long)len); }
long host_write(const void *buf, size_t len) { return syscall3(64, 1, (long)buf, (long)len); }

void _exit(int code);
void _exit(int code)
{
    for (;;) {
        syscall3(93, code, 0, 0);
    }
}

static char tls_block[4096] __attribute__((aligned(64)));

void host_start(void)
{
    __asm__ volatile("mv tp, %0" : : "r"(tls_block));
    _exit(main());
}

__asm__(".global _start\n_start:\n.option push\n.option norelax\nla gp, __global_pointer$\n.option pop\n"
        "call host_start\n");
