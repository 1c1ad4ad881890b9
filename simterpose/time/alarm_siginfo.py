"""The SIGALRM of alarm(2) and setitimer(ITIMER_REAL) as the kernel's own timer sends it.

Linux's it_real_fn sends it with SEND_SIG_PRIV: si_code SI_KERNEL (0x80), si_pid and si_uid 0
(kernel/time/itimer.c, kernel/signal.c). The emulator sends it with kill(2) at the simulated date
(`Scheduler._dates_reached`), which gives SI_USER with the tracer's pid and uid, and no process may
send another a siginfo whose si_code is positive (rt_sigqueueinfo(2): EPERM). So the siginfo is
rewritten where the program receives it: at its delivery to a handler (PTRACE_SETSIGINFO, see
`Scheduler.on_signal`), in the buffer rt_sigtimedwait(2) fills, in the records a read(2) of a
signalfd returns (`local_files`). A SIGALRM someone else sent keeps its SI_USER and sender.
"""

from __future__ import annotations

import os
import signal
import struct
from typing import Optional

SI_USER = 0
SI_KERNEL = 0x80
SIGINFO_SIZE = 128   # siginfo_t and struct signalfd_siginfo alike
SIGALRM_BIT = 1 << (signal.SIGALRM - 1)   # in a signal mask (bit n-1: signal n)


def _ours(signo: int, code: int, pid: int) -> bool:
    return signo == signal.SIGALRM and code == SI_USER and pid == os.getpid()


def kernel_siginfo(info: bytes) -> Optional[bytes]:
    """`info` (a siginfo_t, x86_64: si_signo, si_errno, si_code at 0, 4, 8; kill's si_pid and
    si_uid at 16 and 20) as the kernel would have sent it, if it is a SIGALRM the emulator sent;
    else None."""
    signo, _errno, code = struct.unpack_from("<iii", info, 0)
    (pid,) = struct.unpack_from("<i", info, 16)
    if not _ours(signo, code, pid):
        return None
    out = bytearray(info)
    struct.pack_into("<i", out, 8, SI_KERNEL)
    struct.pack_into("<iI", out, 16, 0, 0)
    return bytes(out)


def kernel_signalfd_records(data: bytes) -> Optional[bytes]:
    """The struct signalfd_siginfo records a signalfd read returned (128 bytes each: ssi_signo,
    ssi_errno, ssi_code, ssi_pid, ssi_uid at 0, 4, 8, 12, 16; signalfd(2)) with the SIGALRMs the
    emulator sent as the kernel sends them; None if there is none."""
    out = None
    for at in range(0, len(data) - SIGINFO_SIZE + 1, SIGINFO_SIZE):
        signo, _errno, code, pid = struct.unpack_from("<IiiI", data, at)
        if _ours(signo, code, pid):
            if out is None:
                out = bytearray(data)
            struct.pack_into("<iII", out, at + 8, SI_KERNEL, 0, 0)
    return None if out is None else bytes(out)
