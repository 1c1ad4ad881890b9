"""Waits that run under a temporary signal mask: ppoll, pselect6, epoll_pwait, epoll_pwait2 (and
rt_sigsuspend, whose mask the time policy keeps in `Syscall.state`).

The kernel installs the call's mask for the duration of the wait and restores the caller's after
the handler of the signal that ended it has run (set_user_sigmask / restore_saved_sigmask_unless,
kernel/signal.c; ppoll(2), pselect(2), epoll_wait(2)). A program blocks a signal everywhere except
in its wait (the race-free way to wait for a signal and descriptors at once): the signal must then
end the wait, and its handler run. A task we hold stopped cannot take a signal, and only the kernel
can install that mask and restore the old one after the handler; so once such a signal is pending,
the call is handed to the kernel with nothing left to wait for (no descriptors, or the kernel half
of an epoll set) and a tiny timeout: the kernel sees the signal before it would sleep, returns
EINTR and runs the handler under the right mask.
"""

from __future__ import annotations

import struct
from typing import Optional

from .tracer.memory import MemoryError_

# syscall name -> index of its `const sigset_t *sigmask` argument (and sigsetsize after it)
_SIGMASK_ARG = {"ppoll": 3, "epoll_pwait": 4, "epoll_pwait2": 4}
_KERNEL_SIGSET = 8   # sizeof(kernel sigset_t) on x86_64: any other size is EINVAL for the kernel


def wait_mask(sc) -> Optional[int]:
    """The temporary mask `sc` waits under (bit n-1: signal n), or None if it has none."""
    if sc.name == "rt_sigsuspend":
        return sc.state if isinstance(sc.state, int) else None
    try:
        if sc.name == "pselect6":
            if not sc.arg(5):
                return None
            ptr, size = struct.unpack("<QQ", sc.mem.read(sc.arg(5), 16))  # {sigset_t *ss; size_t len}
        elif sc.name in _SIGMASK_ARG:
            i = _SIGMASK_ARG[sc.name]
            ptr, size = sc.arg(i), sc.arg(i + 1)
        else:
            return None
        if not ptr or size != _KERNEL_SIGSET:
            return None
        return sc.mem.read_u64(ptr)
    except MemoryError_:
        return None  # the kernel will answer EFAULT itself


def hand_to_kernel(sc, scratch) -> None:
    """Rewrite `sc` (stopped at its entry, a signal deliverable under its mask pending) so that the
    kernel returns at once with EINTR after installing the mask. `scratch(data) -> address` puts
    bytes in the task's own page. The arguments are put back at the exit stop (`Syscall.dirty`).

    A positive timeout, not zero: with a zero timeout epoll returns 0 before it looks at signals
    (ep_poll, fs/eventpoll.c); with any other timeout every one of these calls checks for a pending
    signal before it sleeps (do_poll, fs/select.c), so it never sleeps."""
    tiny = scratch(struct.pack("<qq", 0, 1))   # struct timespec {0 s, 1 ns}
    if sc.name == "ppoll":
        sc.set_arg(1, 0)        # no descriptors
        sc.set_arg(2, tiny)
    elif sc.name == "pselect6":
        sc.set_arg(0, 0)        # nfds 0
        sc.set_arg(4, tiny)
    elif sc.name == "epoll_pwait":
        sc.set_arg(3, 1)        # 1 ms: only the kernel half of the set is in the kernel's list
    elif sc.name == "epoll_pwait2":
        sc.set_arg(3, tiny)
