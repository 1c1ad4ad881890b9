"""What the emulator reads about tracees in /proc (proc(5)): pending signals, descriptor kinds."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

_SIGNAL_MASKS = re.compile(rb"^(SigPnd|ShdPnd|SigBlk|SigIgn):\s*([0-9a-f]+)", re.M)


@dataclass(frozen=True)
class SignalState:
    pending: int   # bit n-1 set: signal n pending for the thread or its process
    blocked: int
    ignored: int

    def deliverable(self, mask: Optional[int] = None) -> int:
        """Signals the kernel would deliver on the way back to user space (with `mask` as the
        blocked set if given, e.g. rt_sigsuspend's)."""
        blocked = self.blocked if mask is None else mask
        return self.pending & ~blocked & ~self.ignored


def signal_state(pid: int, tid: int) -> Optional[SignalState]:
    """From /proc/PID/task/TID/status; None if the task is gone."""
    try:
        fd = os.open(f"/proc/{pid}/task/{tid}/status", os.O_RDONLY)
        try:
            status = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    m = {k: int(v, 16) for k, v in _SIGNAL_MASKS.findall(status)}
    return SignalState(m.get(b"SigPnd", 0) | m.get(b"ShdPnd", 0), m.get(b"SigBlk", 0), m.get(b"SigIgn", 0))


def lowest_signal(bits: int) -> int:
    """The signal the kernel delivers first among `bits` (lowest number first, as for standard signals)."""
    return (bits & -bits).bit_length()


def fd_target(pid: int, fd: int) -> Optional[str]:
    """readlink /proc/PID/fd/FD: "pipe:[123]", "socket:[456]", "anon_inode:[eventfd]", a path..."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _fdinfo_field(pid: int, fd: int, key: bytes, base: int) -> Optional[int]:
    """The number on the line of /proc/PID/fdinfo/FD that starts with `key`, read in `base`; None
    if the descriptor or the line is not there."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1], base)
    except (OSError, ValueError, IndexError):
        pass
    return None


def fd_flags(pid: int, fd: int) -> int:
    """The open file's status flags (O_NONBLOCK...) from /proc/PID/fdinfo/FD (octal), 0 if unknown."""
    return _fdinfo_field(pid, fd, b"flags:", 8) or 0


def signalfd_mask(pid: int, fd: int) -> Optional[int]:
    """The signals a signalfd takes (bit n-1: signal n), from the `sigmask:` line of
    /proc/PID/fdinfo/FD (hexadecimal, as in /proc/PID/status); None if fd is not a signalfd."""
    return _fdinfo_field(pid, fd, b"sigmask:", 16)


def shared_mapping_key(pid: int, addr: int) -> Optional[tuple]:
    """If `addr` lies in a MAP_SHARED mapping of process `pid`, the identity of that byte whatever
    process maps it: (device, inode, offset in the object); else None (a private mapping, or `addr`
    unmapped). From /proc/PID/maps (proc(5)); anonymous shared memory is a shmem inode too."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            for line in f:
                fields = line.split(None, 5)
                start_s, _, end_s = fields[0].partition(b"-")
                start, end = int(start_s, 16), int(end_s, 16)
                if start <= addr < end:
                    if fields[1][3:4] != b"s":
                        return None
                    return (fields[3].decode(), int(fields[4]), int(fields[2], 16) + addr - start)
    except (OSError, ValueError, IndexError):
        return None
    return None


def task_state(tid: int) -> tuple[Optional[str], Optional[int]]:
    """(state letter from /proc/TID/stat — R running, S sleeping, D disk sleep, t traced...; the
    number of the syscall it is blocked in, from /proc/TID/syscall, or None), (None, None) if the
    task is gone. proc(5)."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0].decode()
        with open(f"/proc/{tid}/syscall", "rb") as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return None, None
    try:
        return state, int(first)
    except ValueError:   # "running"
        return state, None


def task_comm(tid: int) -> str:
    """The task's command name (/proc/TID/comm, proc(5)), "?" if it is gone."""
    try:
        with open(f"/proc/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def current_cpu() -> int:
    """The CPU the calling thread last ran on: field 39 ("processor") of /proc/thread-self/stat,
    proc(5). The fields after the command name (in parentheses, which may hold spaces) are split."""
    with open("/proc/thread-self/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[36])
