"""A thin ctypes layer over ptrace(2).

Why not python-ptrace's bindings: they lack the seccomp constants (PTRACE_O_TRACESECCOMP,
PTRACE_EVENT_SECCOMP), EXITKILL and SEIZE, their PtraceDebugger fails on seccomp stops, and their
getregs allocates a new structure per call. The hot path here is one GETREGS (into a preallocated
structure), maybe one SETREGS and one CONT per stop, so the functions are declared once with argtypes.
"""

import ctypes
import errno
import os

from .arch import Regs

PTRACE_TRACEME = 0
PTRACE_PEEKUSER = 3
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SETSIGINFO = 0x4203

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEVFORKDONE = 0x20
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7

# waitpid flags not exported by the os module.
WALL = 0x40000000      # __WALL: threads and processes alike
WNOTHREAD = 0x20000000  # __WNOTHREAD: only tracees of the calling thread (one tracer per SimGrid actor)

SYSCALL_STOP_SIG = 0x80 | 5  # SIGTRAP | 0x80 with PTRACE_O_TRACESYSGOOD

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_ptrace.restype = ctypes.c_long


class TraceeGone(Exception):
    """The task died while we were operating on it (e.g. SIGKILL from outside)."""


class PtraceError(OSError):
    pass


class TaskVanished(PtraceError, TraceeGone):
    """ptrace failed with ESRCH on a task we hold stopped: it was killed meanwhile (a SIGKILL from
    outside, or ours when a run is interrupted). Both a PtraceError and a TraceeGone, so that every
    operation on a vanished task ends as one (`Tracer._dispatch` forgets it; its exit follows)."""


def _check(rc: int, what: str, tid: int) -> int:
    if rc == -1:
        _fail(what, tid)
    return rc


def _fail(what: str, tid: int) -> None:
    """Raise for a ptrace call that returned -1 (errno 0: a PEEK's legitimate -1, no error)."""
    e = ctypes.get_errno()
    if e:
        kind = TaskVanished if e == errno.ESRCH else PtraceError
        raise kind(e, f"ptrace({what}, {tid}): {os.strerror(e)}")


def setoptions(tid: int, options: int) -> None:
    _check(_ptrace(PTRACE_SETOPTIONS, tid, None, options), "SETOPTIONS", tid)


# The hot path (a few calls per syscall stop) tests the result inline: a call less each.
def cont(tid: int, sig: int = 0) -> None:
    if _ptrace(PTRACE_CONT, tid, None, sig) == -1:
        _fail("CONT", tid)


def syscall(tid: int, sig: int = 0) -> None:
    """Resume, stopping at the next syscall entry/exit (here: the exit of the current syscall)."""
    if _ptrace(PTRACE_SYSCALL, tid, None, sig) == -1:
        _fail("SYSCALL", tid)


def getregs(tid: int, regs: Regs) -> None:
    if _ptrace(PTRACE_GETREGS, tid, None, ctypes.addressof(regs)) == -1:
        _fail("GETREGS", tid)


def setregs(tid: int, regs: Regs) -> None:
    if _ptrace(PTRACE_SETREGS, tid, None, ctypes.addressof(regs)) == -1:
        _fail("SETREGS", tid)


# A fresh buffer per call keeps these safe when several tracer threads exist.
def geteventmsg(tid: int, msg: "ctypes.c_ulong | None" = None) -> int:
    if msg is None:
        msg = ctypes.c_ulong()
    _check(_ptrace(PTRACE_GETEVENTMSG, tid, None, ctypes.addressof(msg)), "GETEVENTMSG", tid)
    return msg.value


def getsiginfo(tid: int) -> bytes:
    """The siginfo_t (128 bytes) of the signal a task is stopped for (ptrace(2) PTRACE_GETSIGINFO)."""
    siginfo = ctypes.create_string_buffer(128)
    _check(_ptrace(PTRACE_GETSIGINFO, tid, None, ctypes.addressof(siginfo)), "GETSIGINFO", tid)
    return siginfo.raw


def setsiginfo(tid: int, siginfo: bytes) -> None:
    """Replace the siginfo_t of the signal a task is stopped for (delivered as changed)."""
    buf = ctypes.create_string_buffer(siginfo, 128)
    _check(_ptrace(PTRACE_SETSIGINFO, tid, None, ctypes.addressof(buf)), "SETSIGINFO", tid)


def is_group_stop(tid: int) -> bool:
    """A stop by a stopping signal is either its delivery or the group-stop that follows; only the
    latter makes GETSIGINFO fail with EINVAL (ptrace(2), "Group-stop")."""
    siginfo = ctypes.create_string_buffer(128)
    rc = _ptrace(PTRACE_GETSIGINFO, tid, None, ctypes.addressof(siginfo))
    return rc == -1 and ctypes.get_errno() == errno.EINVAL
