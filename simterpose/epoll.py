"""epoll(7) over simulated and real descriptors, with Linux's semantics, waiting in simulated time.

An epoll instance of a tracee is a real kernel epoll (epoll_create runs natively), but only the
descriptors the kernel can judge are registered in it: pipes, files, eventfds, unix sockets,
terminals. Descriptors whose readiness the simulation decides (simulated sockets, timerfds, epoll
sets holding such descriptors) are kept out of the kernel's interest list — their real descriptor
would report the wrong thing (a loopback socket holds data before its simulated arrival; a
full-mediation socket is an unconnected AF_UNIX socket) — and registered here instead.

epoll_wait then merges both halves:
  * the kernel's half is asked with an injected zero-timeout epoll_wait into the caller's own
    event buffer, so edge triggering, EPOLLONESHOT, EPOLLEXCLUSIVE and auto-removal on close are
    the kernel's own;
  * the simulated half follows epoll(7) here: level-triggered entries report while ready;
    edge-triggered ones report when ready *and* something happened to the file since their last
    report (the file's `edge_token()` changed: data arrived, window space opened, a connection
    completed, a timer expired — the events for which the kernel calls a socket's wake-up
    callbacks); EPOLLONESHOT disarms an entry until EPOLL_CTL_MOD; an entry dies with the last
    descriptor of its open file (fs/eventpoll.c: interest is keyed by (file, fd) and removed by
    eventpoll_release when the file is released; a dup'ed descriptor keeps it alive);
  * a caller with nothing to report waits in simulated time: until its timeout, a simulated file
    it watches changes, or (kernel half) any tracee ran something natively.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .net.fdtable import SimulatedFile
from .tracer import names
from .tracer.results import Blocked, Errno, Native, Value
from .wait import Waitable

if TYPE_CHECKING:
    from .emulator import ScenarioProcess

EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
EPOLLRDNORM, EPOLLWRNORM, EPOLLRDHUP = 0x40, 0x100, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_INPUT_FLAGS = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET
EP_MAX_EVENTS = 0x7FFFFFFF // 12   # fs/eventpoll.c: INT_MAX / sizeof(struct epoll_event)
O_CLOEXEC = 0o2000000
EVENT = struct.Struct("<IQ")          # struct epoll_event is packed on x86_64: 12 bytes
NR = names.number


@dataclass(eq=False)
class EpollEntry:
    """One simulated descriptor in an interest list (an `epitem` of fs/eventpoll.c)."""

    fd: int
    file: object           # the SimulatedFile (or EpollSet) the descriptor referred to at ADD
    events: int            # the registered mask, flags included
    data: int              # epoll_data, returned as is
    armed: bool = True     # False once an EPOLLONESHOT entry reported, until EPOLL_CTL_MOD
    last_token: object = None  # the file's edge token at the last report (edge-triggered only)

    @property
    def alive(self) -> bool:
        return self.file.refs > 0


class EpollSet(Waitable):
    """The simulated half of one epoll instance (an open file: shared by dup, fork, threads)."""

    def __init__(self):
        self.refs = 0
        self.entries: dict[int, EpollEntry] = {}   # by descriptor number, registration order
        self.native: set[int] = set()              # descriptors the kernel's half holds

    def live_entries(self) -> list[EpollEntry]:
        dead = [fd for fd, e in self.entries.items() if not e.alive]
        for fd in dead:
            del self.entries[fd]
        return list(self.entries.values())

    @property
    def simulated(self) -> bool:
        return bool(self.live_entries())

    # As a member of another epoll set (or of poll/select): readable while some simulated entry
    # would report. The kernel half is judged by the kernel (see EpollPolicy._nested_native).
    def revents(self, events: int) -> int:
        return events & (EPOLLIN | EPOLLRDNORM) if any(_report(e) for e in self.live_entries()) else 0

    def edge_token(self) -> object:
        return tuple(_token(e.file) for e in self.live_entries())

    def look_again(self) -> Optional[float]:
        return _earliest(*(e.file.look_again() for e in self.live_entries()))

    def sources(self) -> list:
        return [e.file for e in self.live_entries() if isinstance(e.file, Waitable)]


def _token(file) -> object:
    return file.edge_token()


def _poll_mask(events: int) -> int:
    # What to ask the file: the registered events, plus what epoll always reports (epoll_ctl(2)).
    return (events & ~EPOLL_INPUT_FLAGS) | EPOLLERR | EPOLLHUP


def _report(e: EpollEntry) -> int:
    """The events this entry would report now (0: none), without consuming an edge."""
    if not e.armed:
        return 0
    rev = e.file.revents(_poll_mask(e.events))
    if not rev:
        return 0
    if e.events & EPOLLET and e.last_token == _token(e.file):
        return 0   # nothing happened to the file since this edge was reported
    return rev


def _earliest(*dates: Optional[float]) -> Optional[float]:
    known = [d for d in dates if d is not None]
    return min(known) if known else None


class EpollPolicy:
    """epoll_create/ctl/wait of one scenario process tree; descriptors live in the net policy's
    per-process table (`FdTable`)."""

    def __init__(self, owner: "ScenarioProcess"):
        self.owner = owner

    def _table(self, sc):
        return self.owner.net.table(sc.process)

    def _epoll(self, sc, fd: int) -> Optional[EpollSet]:
        obj = self._table(sc).get(fd)
        return obj if isinstance(obj, EpollSet) else None

    # -- epoll_create(2) ---------------------------------------------------------------------
    def epoll_create(self, sc):
        cloexec = sc.name == "epoll_create1" and bool(sc.iarg(0) & O_CLOEXEC)

        def created(sc_, fd):
            if fd >= 0:
                self._table(sc_).add(fd, EpollSet(), cloexec)
            return None

        return Native(on_exit=created)

    epoll_create1 = epoll_create

    # -- epoll_ctl(2) ------------------------------------------------------------------------
    def epoll_ctl(self, sc):
        epfd, op, fd = sc.iarg(0), sc.iarg(1), sc.iarg(2)
        ep = self._epoll(sc, epfd)
        if ep is None:
            return Native()   # not an epoll set (or not ours): the kernel gives EBADF/EINVAL
        target = self._table(sc).get(fd)
        if isinstance(target, EpollSet) and not target.simulated:
            target = None     # a nested set the kernel can judge entirely: let it hold it
        elif not isinstance(target, (SimulatedFile, EpollSet)):
            target = None     # a real file the table follows for other reasons (/dev/urandom)
        if target is None:
            return self._ctl_native(sc, ep, op, fd)
        if fd == epfd or target is ep:
            return Errno(errno.EINVAL)
        ev = None
        if op in (EPOLL_CTL_ADD, EPOLL_CTL_MOD):
            ev = EVENT.unpack(sc.mem.read(sc.arg(3), EVENT.size))
        entry = ep.entries.get(fd)
        if entry is not None and not (entry.alive and entry.file is target):
            del ep.entries[fd]   # the descriptor number now names another file
            entry = None
        if op == EPOLL_CTL_ADD:
            if entry is not None:
                return Errno(errno.EEXIST)
            ep.entries[fd] = EpollEntry(fd, target, ev[0], ev[1])
        elif op == EPOLL_CTL_MOD:
            if entry is None:
                return Errno(errno.ENOENT)
            if ev[0] & EPOLLEXCLUSIVE or entry.events & EPOLLEXCLUSIVE:
                return Errno(errno.EINVAL)   # epoll_ctl(2): EXCLUSIVE cannot be modified
            entry.events, entry.data, entry.armed, entry.last_token = ev[0], ev[1], True, None
        elif op == EPOLL_CTL_DEL:
            if entry is None:
                return Errno(errno.ENOENT)
            del ep.entries[fd]
        else:
            return Errno(errno.EINVAL)
        ep.notify()   # waiters in epoll_wait on this set (and sets that nest it) look again
        return Value(0)

    def _ctl_native(self, sc, ep: EpollSet, op: int, fd: int):
        def done(sc_, ret):
            if ret == 0:
                if op == EPOLL_CTL_DEL:
                    ep.native.discard(fd)
                else:
                    ep.native.add(fd)
                ep.notify()
            return None

        return Native(on_exit=done)

    # -- epoll_wait(2), epoll_pwait(2), epoll_pwait2(2) ----------------------------------------
    def epoll_wait(self, sc):
        timeout_ms = sc.iarg(3)
        return self._wait(sc, None if timeout_ms < 0 else timeout_ms / 1000)

    epoll_pwait = epoll_wait

    def epoll_pwait2(self, sc):
        timeout = None
        if sc.arg(3):
            sec, nsec = sc.mem.read_timespec(sc.arg(3))
            timeout = sec + nsec / 1e9
        return self._wait(sc, timeout)

    def _wait(self, sc, timeout_s: Optional[float]):
        ep = self._epoll(sc, sc.iarg(0))
        if ep is None:
            return Native()
        net = self.owner.net
        entries = ep.live_entries()
        if not entries and sc.state is None and net._kernel_may_wait(sc, sorted(ep.native), timeout_s):
            return Native()   # nothing simulated, nothing shared with another tracee: the kernel waits
        maxevents = sc.iarg(2)
        if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
            return Errno(errno.EINVAL)
        n = 0
        if ep.native:
            # The kernel's half first, into the caller's own buffer, without waiting.
            n = self.owner.tracer.inject(sc, NR("epoll_wait"), sc.iarg(0), sc.arg(1), maxevents, 0)
            if n < 0:
                return Errno(-n)
        out = []
        for e in entries:
            if n + len(out) >= maxevents:
                break
            rev = self._report(sc, e)
            if rev:
                out.append(EVENT.pack(rev, e.data))
                if e.events & EPOLLET:
                    e.last_token = _token(e.file)
                if e.events & EPOLLONESHOT:
                    e.armed = False
        if out:
            sc.mem.write(sc.arg(1) + n * EVENT.size, b"".join(out))
        if n or out:
            return Value(n + len(out))
        deadline = net._wait_deadline(sc, timeout_s)
        if deadline is not None and self.owner.now() >= deadline:
            return Value(0)
        on = [ep]
        for e in entries:
            on.extend([*e.file.sources(), e.file] if isinstance(e.file, EpollSet) else
                      [e.file] if isinstance(e.file, Waitable) else [])
        if ep.native or any(isinstance(e.file, EpollSet) and e.file.native for e in entries):
            on.append(self.owner.emulation.scheduler.native_files)
        look_again = _earliest(*(e.file.look_again() for e in entries if e.armed))
        return Blocked(sc.name, _earliest(deadline, look_again), on=tuple(on), restart=False)

    def _report(self, sc, e: EpollEntry) -> int:
        rev = _report(e)
        if not rev and isinstance(e.file, EpollSet) and e.file.native and e.armed and e.events & EPOLLIN:
            rev = self._nested_native(sc, e)
        return rev

    def _nested_native(self, sc, e: EpollEntry) -> int:
        # A nested set with a kernel half: the kernel says whether that half has events (POLLIN on
        # the inner epoll descriptor), asked through the caller's descriptor for it.
        ready = self.owner.net._native_revents(sc, [(e.fd, EPOLLIN)])
        return ready.get(e.fd, 0) & EPOLLIN

