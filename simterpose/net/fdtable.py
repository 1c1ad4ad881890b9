"""Which of a process's file descriptors are simulated: sockets, timerfds, epoll sets watching them,
descriptors open on /dev/random or /dev/urandom (`simterpose.randomness.RandomDevice`).

The table follows the kernel's rules: dup'ed and inherited descriptors share one open file (here:
one object with a reference count); fork copies the table; exec drops close-on-exec entries; exit
closes everything. When the last reference to a socket goes, the socket is closed in the simulation
(FIN to the peer, listener unbound).
"""

from __future__ import annotations

from typing import Callable, Optional

from ..tracer.results import Native


class FdTable:
    def __init__(self, on_last_close: Callable[[object], None]):
        self.entries: dict[int, list] = {}   # fd -> [object, cloexec]
        self._on_last_close = on_last_close

    def get(self, fd: int) -> Optional[object]:
        e = self.entries.get(fd)
        return None if e is None else e[0]

    def add(self, fd: int, obj, cloexec: bool = False) -> None:
        self.remove(fd)  # the kernel reused the number: the old entry is gone
        obj.refs += 1
        self.entries[fd] = [obj, cloexec]

    def remove(self, fd: int) -> None:
        e = self.entries.pop(fd, None)
        if e is not None:
            obj = e[0]
            obj.refs -= 1
            if obj.refs <= 0:
                self._on_last_close(obj)

    def dup(self, old: int, new: int, cloexec: bool = False) -> None:
        obj = self.get(old)
        if obj is None:
            self.remove(new)
        else:
            self.add(new, obj, cloexec)

    def set_cloexec(self, fd: int, value: bool) -> None:
        e = self.entries.get(fd)
        if e is not None:
            e[1] = value

    def fork(self) -> "FdTable":
        child = FdTable(self._on_last_close)
        for fd, (obj, cloexec) in self.entries.items():
            obj.refs += 1
            child.entries[fd] = [obj, cloexec]
        return child

    def exec(self) -> None:
        for fd in [fd for fd, (_, cloexec) in self.entries.items() if cloexec]:
            self.remove(fd)

    def close_all(self) -> None:
        for fd in list(self.entries):
            self.remove(fd)


class SimulatedFile:
    """A descriptor whose readiness the simulation decides (a socket, a timerfd)."""

    refs = 0
    nonblocking = False

    def revents(self, events: int) -> int:
        """poll(2) bits among `events` (plus POLLERR/POLLHUP) that hold now."""
        raise NotImplementedError

    def edge_token(self) -> object:
        """Changes whenever something happened that would wake the file's waiters in the kernel
        (data arrived, space opened, a timer expired...): what edge-triggered epoll reports on."""
        return getattr(self, "notified", 0)

    def look_again(self):
        """A simulated date before which readiness may change without anyone being notified."""
        return None

    def read(self, sc):
        """read(2) on it (sockets have their own, richer paths)."""
        raise NotImplementedError

    def ioctl(self, sc, request: int):
        """ioctl(2) on it (sockets have their own path): by default the kernel's descriptor
        answers (FIONBIO, FIOCLEX... are the VFS's, alike for every file)."""
        return Native()
