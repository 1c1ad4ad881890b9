"""Sending a signal with a chosen siginfo: rt_sigqueueinfo(2) / rt_tgsigqueueinfo(2), through ctypes.

Python's os.kill and signal.pthread_kill send SI_USER/SI_TKILL signals without a payload; a timer's
expiry must carry SI_TIMER, the timer id and its sigev_value, as the kernel's own would. The kernel
lets another process send such a siginfo because its si_code is negative (rt_sigqueueinfo(2)).
"""

from __future__ import annotations

import ctypes
import os

SYS_tgkill = 234
SYS_rt_sigqueueinfo = 129
SYS_rt_tgsigqueueinfo = 297

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def queue_signal(pid: int, tid: int, signo: int, siginfo: bytes) -> None:
    """Send `signo` with `siginfo` (128 bytes) to process `pid`, or to its thread `tid` if non-zero.
    Raises ProcessLookupError if the target is gone, OSError otherwise."""
    buf = ctypes.create_string_buffer(siginfo, 128)
    if tid:
        rc = _libc.syscall(SYS_rt_tgsigqueueinfo, ctypes.c_long(pid), ctypes.c_long(tid),
                           ctypes.c_long(signo), buf)
    else:
        rc = _libc.syscall(SYS_rt_sigqueueinfo, ctypes.c_long(pid), ctypes.c_long(signo), buf)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def tgkill(pid: int, tid: int, signo: int) -> None:
    """Send `signo` to thread `tid` of process `pid` (tgkill(2)): os.kill would let any thread of
    the process take it. Raises ProcessLookupError if the thread is gone, OSError otherwise."""
    rc = _libc.syscall(SYS_tgkill, ctypes.c_long(pid), ctypes.c_long(tid), ctypes.c_long(signo))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))   # ESRCH gives ProcessLookupError
