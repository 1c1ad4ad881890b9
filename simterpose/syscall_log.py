"""The `.syscalls` log of a scenario process: one line per intercepted syscall (and one more when a
blocked call is finally answered), at its simulated date, with processes named by rank in their tree
so that two runs of a deterministic scenario give byte-identical logs."""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import TextIO

from .tracer.results import Blocked, Errno, Value


@lru_cache(maxsize=None)
def arg_count(name: str) -> int:
    """How many arguments a syscall takes (python-ptrace's prototypes, at most 4 shown): the log
    shows only those, not leftover registers (which may hold random values such as the canary)."""
    try:
        from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    except ImportError:  # pragma: no cover - python-ptrace is a dependency
        return 4
    proto = SYSCALL_PROTOTYPES.get(name)
    return 4 if proto is None else min(4, len(proto[1]))


def format_result(result) -> str:
    if isinstance(result, Value):
        return str(result.value)
    if isinstance(result, Errno):
        return f"-1 {errno.errorcode.get(result.errno, result.errno)}"
    return result.__class__.__name__.lower()


class SyscallLog:
    def __init__(self, out: TextIO, vpid):
        self.out = out
        self.vpid = vpid  # pid -> its rank in the tree
        self._date, self._date_text = -1.0, ""   # many calls share a date: formatted once

    def record(self, now: float, sc, result, first: bool) -> None:
        """A call is logged when first answered or blocked, and, if it blocked, once more when
        answered."""
        if first or type(result) is not Blocked:
            if now != self._date:
                self._date, self._date_text = now, f"{now:.9f}"
            args = ", ".join(map(hex, sc.orig_args[:arg_count(sc.name)]))
            self.out.write(f"{self._date_text} [{self.vpid(sc.pid)}] {sc.name}({args}) = {format_result(result)}\n")
