"""Everything specific to the CPU architecture: the register layout and which register holds what.

Only x86_64 is implemented. An aarch64 port adds its `user_pt_regs` layout and register names here
(and uses PTRACE_GETREGSET, since aarch64 has no PTRACE_GETREGS); nothing else in the tracer names a
register directly.
"""

import ctypes
import platform

MACHINE = platform.machine()
if MACHINE != "x86_64":
    raise ImportError(f"simterpose's tracer supports x86_64 only (this machine is {MACHINE})")

AUDIT_ARCH = 0xC000003E  # AUDIT_ARCH_X86_64, as seen in seccomp data

# Length of the `syscall` instruction: rewinding the instruction pointer by this much re-executes it.
SYSCALL_INSN_LEN = 2


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86_64)."""

    _fields_ = [
        (name, ctypes.c_ulonglong)
        for name in (
            "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
            "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
            "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
        )
    ]


# The syscall ABI: number, arguments in order, return value, instruction and stack pointers.
NR = "orig_rax"
ARGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
RET = "rax"
IP = "rip"
SP = "rsp"
