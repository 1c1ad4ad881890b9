"""The one result type a syscall handler returns.

A handler gets a `Syscall` at its seccomp stop and answers with exactly one of:
  Value(v)    the syscall returns v; the kernel runs nothing (emulated in that one stop)
  Errno(e)    the syscall fails with errno e; the kernel runs nothing
  Native()    let the kernel run it (arguments possibly rewritten); `on_exit` asks for the exit stop
              to see, and optionally replace, the kernel's result
  Blocked()   the tracee stays stopped; the policy resumes it later with one of the results above
or raises `Unsupported` to stop the run with an error that names the syscall.
"""

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True, slots=True)
class Value:
    value: int


@dataclass(frozen=True, slots=True)
class Errno:
    errno: int


@dataclass(frozen=True, slots=True)
class Native:
    # Called at the syscall-exit stop as on_exit(syscall, kernel_result); a non-None return value
    # replaces the result the tracee sees.
    on_exit: Optional[Callable] = None


@dataclass(frozen=True, slots=True)
class Blocked:
    """The tracee waits: `on` names the objects (`simterpose.wait.Waitable`) whose change may end the
    wait — only then is the syscall looked at again — and `deadline` the simulated date at which it
    ends anyway (None: no limit). `reason` is for people ("recv fd 3"). `restart`: if a signal
    handler interrupts it, may the call be restarted after the handler (SA_RESTART, signal(7))
    rather than fail with EINTR? `entered`: False when the call has not started yet (a CPU burst or
    a latency is charged before it): a signal then runs its handler first and the call starts
    afterwards, whatever SA_RESTART says, as for a signal arriving just before the syscall."""

    reason: str = ""
    deadline: Optional[float] = None
    on: tuple = ()
    restart: bool = False
    entered: bool = True


Result = Value | Errno | Native | Blocked


class SyscallFailed(Exception):
    """Raised anywhere inside a handler: the syscall fails with this errno (converted in one place,
    the dispatcher)."""

    def __init__(self, errno_: int):
        self.errno = errno_
        super().__init__(errno_)


class Unsupported(Exception):
    """Raised by a handler (or the dispatch table) for a syscall the emulator cannot honour."""

    def __init__(self, syscall_name: str, detail: str = ""):
        self.syscall_name = syscall_name
        msg = f"unsupported syscall {syscall_name}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


VALUE_ZERO = Value(0)
NATIVE = Native()
