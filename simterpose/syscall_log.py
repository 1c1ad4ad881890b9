"""The `.syscalls` log of a scenario process: one line per intercepted syscall (and one more when a
blocked call is finally answered), at its simulated date, with processes named by rank in their tree
so that two runs of a deterministic scenario give byte-identical logs."""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import TextIO

from .tracer.names import python_ptrace_table
from .tracer.results import Blocked, Errno, Value


@lru_cache(maxsize=None)
def arg_count(name: str) -> int:
    """How many arguments a syscall takes (python-ptrace's prototypes, at most 4 shown): the log
    shows only those, not leftover registers (which may hold random values such as the canary)."""
    try:
        SYSCALL_PROTOTYPES = python_ptrace_table("syscall.prototypes").SYSCALL_PROTOTYPES
    except ImportError:  # pragma: no cover - python-ptrace is a dependency
        return 4
    proto = SYSCALL_PROTOTYPES.get(name)
    return 4 if proto is None else min(4, len(proto[1]))


def format_result(result) -> str:
    kind = type(result)  # the result classes are final
    if kind is Value:
        return str(result.value)
    if kind is Errno:
        return f"-1 {errno.errorcode.get(result.errno, result.errno)}"
    return kind.__name__.lower()


CALLS_CACHED = 4096  # formatted "[rank] name(args)" texts kept: a loop repeats the same few calls


class SyscallLog:
    def __init__(self, out: TextIO, vpid):
        self.out = out
        self.vpid = vpid  # pid -> its rank in the tree
        self._date, self._date_text = -1.0, ""   # many calls share a date: formatted once
        # (pid, nr, arguments) -> "[rank] name(args)": a program in a loop makes the same calls
        # with the same arguments (a buffer, a length) over and over; formatting them was most of
        # what logging cost. Cleared when full.
        self._calls: dict[tuple, str] = {}

    def record(self, now: float, sc, result, first: bool) -> None:
        """A call is logged when first answered or blocked, and, if it blocked, once more when
        answered."""
        if first or type(result) is not Blocked:
            if now != self._date:
                self._date, self._date_text = now, f"{now:.9f}"
            key = (sc.pid, sc.nr, sc.orig_args)
            call = self._calls.get(key)
            if call is None:
                rank = self.vpid(sc.pid)
                args = ", ".join(map(hex, sc.orig_args[:arg_count(sc.name)]))
                call = f"[{rank}] {sc.name}({args})"
                if type(rank) is int:  # "pid N" (not in the tree yet) may get a rank later
                    if len(self._calls) >= CALLS_CACHED:
                        self._calls.clear()
                    self._calls[key] = call
            self.out.write(f"{self._date_text} {call} = {format_result(result)}\n")
