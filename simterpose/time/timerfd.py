"""timerfd in simulated time.

timerfd_create still creates a real timerfd in the tracee (so the descriptor number, close, dup,
fork, exec and epoll registration behave as the kernel's), but it is never armed: settime/gettime,
its expirations, read() and its readiness in poll/select/epoll are decided here, on the simulated
clock.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Optional

from ..net.fdtable import SimulatedFile
from ..procfs import fd_flags, fd_target
from ..tracer.results import Blocked, Errno, Native, Value
from ..wait import Waitable
from .clock import NS, split_ns, to_ns

if TYPE_CHECKING:
    from ..emulator import ScenarioProcess

TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
TFD_SETTIME_FLAGS = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
TFD_CLOEXEC = 0o2000000
TFD_IOC_SET_TICKS = 0x40085400   # _IOW('T', 0, u64)
O_NONBLOCK = 0o4000
POLLIN, POLLRDNORM = 0x1, 0x40


class TimerFd(SimulatedFile, Waitable):
    def __init__(self, actor: "ScenarioProcess", clock_id: int):
        self.actor = actor
        self.clock_id = clock_id
        self.deadline: Optional[float] = None  # next expiry, simulated seconds
        self.interval = 0.0
        self.count = 0                          # expirations not yet read
        self.fired = 0                          # wake-ups ever (edge-triggered epoll)

    def _update(self) -> None:
        now = self.actor.now()
        if self.deadline is None or now < self.deadline:
            return
        # Only an expiry found with no expiration unread wakes the file's waiters (a new edge).
        # The kernel's hrtimer of an interval timer does not restart by itself (timerfd_tmrproc
        # returns HRTIMER_NORESTART): timerfd_read forwards and restarts it. The expiries after
        # the first unread one are only counted, at the next read, and wake nobody.
        if not self.count:
            self.fired += 1
        if self.interval > 0:
            n = int((now - self.deadline) / self.interval) + 1
            self.count += n
            self.deadline += n * self.interval
        else:
            self.count += 1
            self.deadline = None

    def revents(self, events: int) -> int:
        self._update()
        return events & (POLLIN | POLLRDNORM) if self.count else 0

    def edge_token(self) -> object:
        self._update()
        return (self.notified, self.fired)

    def look_again(self) -> Optional[float]:
        self._update()
        return self.deadline

    def arm(self, value: float, interval: float, absolute: bool) -> None:
        self._update()
        self.count = 0
        self.interval = interval
        if value == 0:
            self.deadline = None
        elif absolute:
            self.deadline = self.actor.emulation.clock.to_simulated(self.clock_id, to_ns(value))
        else:
            self.deadline = self.actor.now() + value

    def read(self, sc):
        """read(2): the number of expirations since the last read, as a u64; waits for one."""
        if sc.arg(2) < 8:
            return Errno(errno.EINVAL)
        self._update()
        if self.count:
            sc.mem.write(sc.arg(1), struct.pack("<Q", self.count))
            self.count = 0
            return Value(8)
        # O_NONBLOCK is a status flag of the open file, not of the timer: TFD_NONBLOCK sets it, and
        # so do fcntl(F_SETFL) and ioctl(FIONBIO) on any of its descriptors (fcntl(2)): the
        # kernel's flags, read at the moment of the read, are the only ones to trust.
        if fd_flags(sc.pid, sc.iarg(0)) & O_NONBLOCK:
            return Errno(errno.EAGAIN)
        return Blocked("read timerfd", self.deadline, on=(self,), restart=True)

    def ioctl(self, sc, request: int):
        """TFD_IOC_SET_TICKS (timerfd_create(2); CRIU restores a timer with it): the count of
        unread expirations becomes the u64 given, waking readers and pollers (timerfd_ioctl); 0 is
        EINVAL. Other requests: the kernel's timerfd answers (ENOTTY, or the VFS's FIONBIO...)."""
        if request != TFD_IOC_SET_TICKS:
            return Native()
        (ticks,) = struct.unpack("<Q", sc.mem.read(sc.arg(2), 8))
        if ticks == 0:
            return Errno(errno.EINVAL)
        self._update()
        if not self.count:
            self.fired += 1   # a new edge for EPOLLET, as the wake-up is
        self.count = ticks
        self.notify()
        return Value(0)

    def remaining(self) -> float:
        self._update()
        return 0.0 if self.deadline is None else max(0.0, self.deadline - self.actor.now())


def _read_itimerspec(sc, addr: int) -> Optional[tuple[float, float]]:
    iv_s, iv_ns, v_s, v_ns = struct.unpack("<qqqq", sc.mem.read(addr, 32))
    if not (0 <= iv_ns < NS and 0 <= v_ns < NS and iv_s >= 0 and v_s >= 0):
        return None
    return v_s + v_ns / NS, iv_s + iv_ns / NS


def _write_itimerspec(sc, addr: int, t: TimerFd) -> None:
    iv = split_ns(to_ns(t.interval))
    v = split_ns(to_ns(t.remaining()))
    sc.mem.write(addr, struct.pack("<qqqq", *iv, *v))


class TimerFdPolicy:
    """The timerfd syscalls of one process tree; descriptors live in the network policy's table."""

    def __init__(self, actor: "ScenarioProcess"):
        self.actor = actor

    def _timer(self, sc) -> Optional[TimerFd]:
        obj = self.actor.net.table(sc.process).get(sc.iarg(0))
        return obj if isinstance(obj, TimerFd) else None

    def timerfd_create(self, sc):
        clock_id, flags = sc.iarg(0), sc.iarg(1)
        if self.actor.emulation.clock.read_ns(clock_id) is None:
            return Errno(errno.EINVAL)

        def created(sc_, fd):
            if fd >= 0:
                self.actor.net.table(sc_.process).add(fd, TimerFd(self.actor, clock_id), bool(flags & TFD_CLOEXEC))
            return None

        return Native(on_exit=created)

    @staticmethod
    def _not_a_timer(sc) -> Errno:
        """timerfd_settime/gettime(2) on a descriptor we do not know as a timerfd: EBADF if it is
        not open at all, EINVAL if it is some other file (a pipe, a socket, stdin)."""
        return Errno(errno.EBADF if fd_target(sc.pid, sc.iarg(0)) is None else errno.EINVAL)

    def timerfd_settime(self, sc):
        # do_timerfd_settime checks the flags and the new value before it looks at the descriptor
        if sc.iarg(1) & ~TFD_SETTIME_FLAGS:
            return Errno(errno.EINVAL)
        spec = _read_itimerspec(sc, sc.arg(2))
        if spec is None:
            return Errno(errno.EINVAL)
        t = self._timer(sc)
        if t is None:
            return self._not_a_timer(sc)
        if sc.arg(3):
            _write_itimerspec(sc, sc.arg(3), t)
        t.arm(spec[0], spec[1], bool(sc.iarg(1) & TFD_TIMER_ABSTIME))
        t.notify()  # its readiness (and deadline) changed
        return Value(0)

    def timerfd_gettime(self, sc):
        t = self._timer(sc)
        if t is None:
            return self._not_a_timer(sc)
        _write_itimerspec(sc, sc.arg(1), t)
        return Value(0)
