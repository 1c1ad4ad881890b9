"""What time syscalls mean on the simulated platform.

Clocks read the simulated date; sleeps and timeouts wait in simulated time (the real sleep never
happens: the tracee stays stopped while the simulation advances); interval timers fire in simulated
time. Every handler is idempotent: a blocked syscall is re-evaluated (`retry`) each time its actor
wakes, and answered once its condition holds.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..tracer.memory import MemoryError_
from ..tracer.results import Blocked, Errno, Native, Unsupported, Value
from .clock import CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, NS, split_ns, to_ns

if TYPE_CHECKING:
    from ..emulator import ScenarioProcess

TIMER_ABSTIME = 1
ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
USER_HZ = 100  # clock ticks of times(2)
RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1
RUSAGE_SIZE = 144  # struct rusage on x86_64: two timevals and 14 longs
# Process.data key of a process's ITIMER_REAL (setitimer/alarm): absent until it arms one, so the
# scheduler's per-date look at every process stops at a dict test for the others.
ITIMER_KEY = "itimer"


@dataclass
class Sleep:
    """State of a sleeping syscall across retries (kept on the Syscall object)."""

    wake: Optional[float]           # simulated date, None = forever
    rem_ptr: int = 0                # nanosleep's `rem`, written if interrupted


@dataclass
class IntervalTimer:
    """ITIMER_REAL of one process (alarm/setitimer): next expiry date and period, in simulated s."""

    deadline: Optional[float] = None
    interval: float = 0.0


def _ts_valid(sec: int, nsec: int) -> bool:
    return sec >= 0 and 0 <= nsec < NS


class TimePolicy:
    def __init__(self, actor: "ScenarioProcess"):
        self.actor = actor
        self.clock = actor.emulation.clock

    # -- reading clocks ------------------------------------------------------------------------
    def _clock_ns(self, sc, clock_id: int) -> Optional[int]:
        ns = self.clock.read_ns(clock_id)
        if ns is not None:
            return ns
        if clock_id in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
            return self.actor.cpu_charged_ns(sc.process)
        if clock_id < 0:
            # A CPU clock of another process or thread (clock_getcpuclockid, pthread_getcpuclockid)
            proc = self.actor.cpu_clock_process(clock_id, sc.process)
            return self.actor.cpu_charged_ns(proc) if proc is not None else None
        return None

    def clock_gettime(self, sc):
        ns = self._clock_ns(sc, sc.iarg(0))
        if ns is None:
            return Errno(errno.EINVAL)
        sc.mem.write_timespec(sc.arg(1), *split_ns(ns))
        return Value(0)

    def clock_getres(self, sc):
        if self._clock_ns(sc, sc.iarg(0)) is None:
            return Errno(errno.EINVAL)
        if sc.arg(1):
            sc.mem.write_timespec(sc.arg(1), 0, 1)  # nanosecond resolution: simulated time is exact
        return Value(0)

    def gettimeofday(self, sc):
        sec, nsec = split_ns(self.clock.realtime_ns())
        if sc.arg(0):
            sc.mem.write_timeval(sc.arg(0), sec, nsec // 1000)
        if sc.arg(1):
            sc.mem.write(sc.arg(1), b"\0" * 8)  # struct timezone: UTC
        return Value(0)

    def time(self, sc):
        sec = self.clock.realtime_ns() // NS
        if sc.arg(0):
            sc.mem.write_u64(sc.arg(0), sec)
        return Value(sec)

    def times(self, sc):
        cpu_ticks = self.actor.cpu_charged_ns(sc.process) * USER_HZ // NS
        if sc.arg(0):
            sc.mem.write(sc.arg(0), struct.pack("<qqqq", cpu_ticks, 0, 0, 0))
        return Value(self.clock.monotonic_ns() * USER_HZ // NS)

    def getrusage(self, sc):
        """getrusage(2): CPU times are the CPU charged in simulated time (0 with --cpu-model none),
        never the real ones, so that a run stays reproducible; every other field reads 0 (the real
        values — page faults, context switches, max RSS — differ from run to run)."""
        who = sc.iarg(0)
        if who == RUSAGE_SELF or who == RUSAGE_THREAD:
            ns = self.actor.cpu_charged_ns(sc.process)
        elif who == RUSAGE_CHILDREN:
            ns = to_ns(sc.process.data.get("children_cpu_charged", 0.0))
        else:
            return Errno(errno.EINVAL)
        sec, nsec = split_ns(ns)
        sc.mem.write(sc.arg(1), struct.pack("<qq", sec, nsec // 1000) + bytes(RUSAGE_SIZE - 16))
        return Value(0)

    def settime_denied(self, sc):
        return Errno(errno.EPERM)  # the simulated clock is not the tracee's to set

    # -- sleeping ------------------------------------------------------------------------------
    def _sleep(self, sc, wake: Optional[float], rem_ptr: int = 0):
        if sc.state is None:
            sc.state = Sleep(wake, rem_ptr)
        wake = sc.state.wake
        if wake is not None and self.actor.now() >= wake:
            return Value(0)
        return Blocked(f"{sc.name}", wake)

    def nanosleep(self, sc):
        if sc.state is None:
            sec, nsec = sc.mem.read_timespec(sc.arg(0))
            if not _ts_valid(sec, nsec):
                return Errno(errno.EINVAL)
            return self._sleep(sc, self.actor.now() + sec + nsec / NS, sc.arg(1))
        return self._sleep(sc, None)

    def clock_nanosleep(self, sc):
        if sc.state is None:
            clock_id, flags = sc.iarg(0), sc.iarg(1)
            if self.clock.read_ns(clock_id) is None:
                # Sleeping on a CPU-time clock would need the process to run: not a sleep we model.
                return Errno(errno.EINVAL) if clock_id >= 0 else Errno(errno.ENOTSUP)
            sec, nsec = sc.mem.read_timespec(sc.arg(2))
            if not _ts_valid(sec, nsec):
                return Errno(errno.EINVAL)
            if flags & TIMER_ABSTIME:
                wake = self.clock.to_simulated(clock_id, sec * NS + nsec)
                return self._sleep(sc, wake)
            return self._sleep(sc, self.actor.now() + sec + nsec / NS, sc.arg(3))
        return self._sleep(sc, None)

    def interrupted(self, sc) -> int:
        """Called when a signal interrupts a blocked sleep: store the time left in `rem`."""
        st = sc.state
        if isinstance(st, Sleep) and st.rem_ptr and st.wake is not None:
            left = max(0, to_ns(st.wake - self.actor.now()))
            try:
                sc.mem.write_timespec(st.rem_ptr, *split_ns(left))
            except MemoryError_:
                pass
        return errno.EINTR

    def pause(self, sc):
        # Waits for a signal; the actor interrupts it (EINTR) once one is deliverable, e.g. from a
        # timer firing in simulated time. Never left to sleep in the kernel.
        return Blocked("pause")

    def rt_sigsuspend(self, sc):
        if sc.state is None:
            sc.state = sc.mem.read_u64(sc.arg(0)) if sc.arg(1) >= 8 else 0  # the mask while waiting
        return Blocked("rt_sigsuspend")

    def restart_syscall(self, sc):
        # Only a native syscall interrupted by a signal restarts this way; our sleeps never do.
        return Native()

    # -- waiting with nothing to wait on but time ----------------------------------------------
    def poll_timeout(self, sc, timeout_ms: int):
        """poll/ppoll/select with no descriptors: a sleep."""
        if sc.state is None:
            wake = None if timeout_ms < 0 else self.actor.now() + timeout_ms / 1000
            return self._sleep(sc, wake)
        return self._sleep(sc, None)

    # -- interval timers -----------------------------------------------------------------------
    def _timer(self, sc) -> IntervalTimer:
        return sc.process.data.setdefault(ITIMER_KEY, IntervalTimer())

    def _timer_value(self, t: IntervalTimer) -> float:
        return 0.0 if t.deadline is None else max(0.0, t.deadline - self.actor.now())

    def alarm(self, sc):
        t = self._timer(sc)
        left = self._timer_value(t)
        # alarm(2) returns the seconds left, rounded to nearest, and never 0 for a pending alarm.
        prev = 0 if t.deadline is None else max(1, int(left + 0.5))
        seconds = sc.arg(0) & 0xFFFFFFFF
        t.interval = 0.0
        t.deadline = None if seconds == 0 else self.actor.now() + seconds
        return Value(prev)

    def _write_itimerval(self, sc, addr: int, t: IntervalTimer) -> None:
        iv_s, iv_us = split_ns(to_ns(t.interval))
        v_s, v_us = split_ns(to_ns(self._timer_value(t)))
        sc.mem.write(addr, struct.pack("<qqqq", iv_s, iv_us // 1000, v_s, v_us // 1000))

    def getitimer(self, sc):
        which = sc.iarg(0)
        if which != ITIMER_REAL:
            raise Unsupported("getitimer", "only ITIMER_REAL runs in simulated time")
        self._write_itimerval(sc, sc.arg(1), self._timer(sc))
        return Value(0)

    def setitimer(self, sc):
        which = sc.iarg(0)
        if which not in (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF):
            return Errno(errno.EINVAL)
        if which != ITIMER_REAL:
            raise Unsupported("setitimer", "ITIMER_VIRTUAL/ITIMER_PROF (CPU-time timers) are not simulated")
        t = self._timer(sc)
        if sc.arg(2):
            self._write_itimerval(sc, sc.arg(2), t)
        if sc.arg(1):
            iv_s, iv_us, v_s, v_us = struct.unpack("<qqqq", sc.mem.read(sc.arg(1), 32))
            if not (0 <= iv_us < 1_000_000 and 0 <= v_us < 1_000_000 and iv_s >= 0 and v_s >= 0):
                return Errno(errno.EINVAL)
            value = v_s + v_us / 1e6
            t.interval = iv_s + iv_us / 1e6
            t.deadline = None if value == 0 else self.actor.now() + value
        return Value(0)

    def timer_deadline(self, process) -> Optional[float]:
        t = process.data.get(ITIMER_KEY)
        return None if t is None else t.deadline

    def fire_timer(self, process) -> bool:
        """Called by the actor at a timer's date; True if SIGALRM is due now."""
        t = process.data.get(ITIMER_KEY)
        if t is None or t.deadline is None or self.actor.now() < t.deadline:
            return False
        t.deadline = t.deadline + t.interval if t.interval > 0 else None
        return True

