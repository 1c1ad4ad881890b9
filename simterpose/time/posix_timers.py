"""POSIX per-process timers (timer_create(2) and friends) in simulated time.

No kernel timer is ever created: timer ids, expiries and notifications are ours. When a timer
expires, the scheduler sends its signal with the siginfo the kernel would build (si_code SI_TIMER,
si_timerid, si_overrun, si_value: kernel/time/posix-timers.c, posix_timer_event), through
rt_sigqueueinfo/rt_tgsigqueueinfo — so glibc's SIGEV_THREAD timers, which find their timer through
si_value in a helper thread (SIGEV_THREAD_ID), work unmodified.

Supported: SIGEV_SIGNAL, SIGEV_THREAD_ID (hence glibc's SIGEV_THREAD), SIGEV_NONE; the REALTIME,
MONOTONIC and BOOTTIME clocks (and their ALARM/COARSE/RAW variants), relative and TIMER_ABSTIME
dates, periodic timers. Timers are not inherited by fork and are deleted by exec (timer_create(2)).

CPU-time clocks (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, clock_getcpuclockid's) read the
computation charged to the process in simulated time (`TimePolicy`), so their timers expire when
that charge reaches them: checked at every date the clock reaches (a burst ends at one), as the
kernel checks its CPU timers at scheduler ticks. With `--cpu-model none` nothing is charged and
they never expire (haproxy's watchdog arms one per thread, to catch a thread that spins).

Overruns (timer_getoverrun(2)): while a timer's signal is still pending (blocked, or not taken
yet), its further expiries queue nothing and count as overruns instead; the signal's si_overrun,
set when it is delivered (the tracer's signal-delivery stop, `delivered`), and timer_getoverrun
then give that count, as the kernel's dequeue does (posixtimer_rearm). A signal taken without a
delivery (sigwaitinfo) reads si_overrun 0; the count still reaches timer_getoverrun.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..procfs import signal_state
from ..tracer.results import Errno, Value
from .clock import CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, NS, split_ns, to_ns

if TYPE_CHECKING:
    from ..emulator import ScenarioProcess

SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SIGALRM = 14
SI_TIMER = -2
TIMER_ABSTIME = 1
SIGEVENT = struct.Struct("<qii i")     # sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id
ITIMERSPEC = struct.Struct("<qqqq")   # it_interval {s, ns}, it_value {s, ns}
DELAYTIMER_MAX = 0x7FFFFFFF
# Process.data key of a process's POSIX timers {id: timer}: absent until timer_create (see ITIMER_KEY).
TIMERS_KEY = "posix_timers"


@dataclass
class PosixTimer:
    """One timer of one process. Dates are simulated seconds."""

    timer_id: int
    clock_id: int
    notify: int                 # SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID
    signo: int
    value: int                  # sigev_value, as 8 raw bytes (int or pointer)
    tid: int = 0                # SIGEV_THREAD_ID: the thread to signal
    deadline: Optional[float] = None   # simulated date; on a CPU-time clock: ns of that clock
    interval: float = 0.0               # seconds (on a CPU-time clock too)
    cpu: bool = False                   # on a CPU-time clock: `deadline` is a reading of it
    overrun: int = 0            # expiries since the pending signal was sent, not signalled
    overrun_last: int = 0       # the overrun of the last signal taken (timer_getoverrun)

    def siginfo(self, overrun: int = 0) -> bytes:
        """The siginfo_t (128 bytes) of one expiry: si_signo, si_errno, si_code, then the _timer
        member of the union (si_tid, si_overrun, si_sigval) at offset 16."""
        head = struct.pack("<iii4xiiq", self.signo, 0, SI_TIMER, self.timer_id, overrun, self.value)
        return head.ljust(128, b"\0")


@dataclass
class Expiry:
    """A due notification: signal `signo` to thread `tid` (0: the process) with `siginfo`."""

    pid: int
    tid: int
    signo: int
    siginfo: bytes


def _timers(process) -> dict[int, PosixTimer]:
    return process.data.setdefault(TIMERS_KEY, {})


class PosixTimerPolicy:
    """timer_create/settime/gettime/getoverrun/delete of one scenario process tree."""

    def __init__(self, actor: "ScenarioProcess"):
        self.actor = actor
        self.clock = actor.emulation.clock

    def _timer(self, sc) -> Optional[PosixTimer]:
        return _timers(sc.process).get(sc.iarg(0))

    def _cpu_ns(self, t: PosixTimer, process) -> int:
        """The reading of a CPU-time timer's clock: what was charged to the process (a thread's
        clock reads its process's, as clock_gettime does here), or to the one a negative clock id
        names (`cpu_clock_process`); 0 once that one is gone."""
        if t.clock_id < 0:
            process = self.actor.cpu_clock_process(t.clock_id, process)
        return self.actor.cpu_charged_ns(process)

    def timer_create(self, sc):
        clock_id = sc.iarg(0)
        cpu = clock_id in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID) or (
            clock_id < 0 and self.actor.cpu_clock_process(clock_id, sc.process) is not None)
        if self.clock.read_ns(clock_id) is None and not cpu:
            return Errno(errno.EINVAL)
        timers = _timers(sc.process)
        timer_id = next(i for i in range(len(timers) + 1) if i not in timers)
        if sc.arg(1):
            value, signo, notify, tid = SIGEVENT.unpack(sc.mem.read(sc.arg(1), SIGEVENT.size))
        else:
            # NULL sevp: SIGEV_SIGNAL, SIGALRM, and the timer's id as the value (timer_create(2)).
            value, signo, notify, tid = timer_id, SIGALRM, SIGEV_SIGNAL, 0
        if notify == SIGEV_THREAD:
            # glibc turns SIGEV_THREAD into SIGEV_THREAD_ID before the syscall; the raw value is an error.
            return Errno(errno.EINVAL)
        if notify not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID):
            return Errno(errno.EINVAL)
        if notify != SIGEV_NONE and not 0 < signo <= 64:
            return Errno(errno.EINVAL)
        if notify == SIGEV_THREAD_ID and tid not in sc.process.tids:
            return Errno(errno.EINVAL)
        sc.mem.write(sc.arg(2), struct.pack("<i", timer_id))
        timers[timer_id] = PosixTimer(timer_id, clock_id, notify, signo, value, tid, cpu=cpu)
        return Value(0)

    def _write_itimerspec(self, sc, addr: int, t: PosixTimer) -> None:
        if t.cpu:
            left_ns = 0 if t.deadline is None else round(t.deadline) - self._cpu_ns(t, sc.process)
        else:
            left_ns = 0 if t.deadline is None else to_ns(max(0.0, t.deadline - self.actor.now()))
        # A timer that is due reads as 1 ns left, never 0 (0 means disarmed).
        left_ns = max(1, left_ns) if t.deadline is not None else 0
        sc.mem.write(addr, ITIMERSPEC.pack(*split_ns(to_ns(t.interval)), *split_ns(left_ns)))

    def timer_settime(self, sc):
        t = self._timer(sc)
        if t is None:
            return Errno(errno.EINVAL)
        iv_s, iv_ns, v_s, v_ns = ITIMERSPEC.unpack(sc.mem.read(sc.arg(2), ITIMERSPEC.size))
        if not (0 <= iv_ns < NS and 0 <= v_ns < NS and iv_s >= 0 and v_s >= 0):
            return Errno(errno.EINVAL)
        if sc.arg(3):
            self._write_itimerspec(sc, sc.arg(3), t)
        t.interval = iv_s + iv_ns / NS
        if v_s == 0 and v_ns == 0:
            t.deadline = None
        elif t.cpu:
            start = 0 if sc.iarg(1) & TIMER_ABSTIME else self._cpu_ns(t, sc.process)
            t.deadline = start + v_s * NS + v_ns
        elif sc.iarg(1) & TIMER_ABSTIME:
            t.deadline = max(self.actor.now(), self.clock.to_simulated(t.clock_id, v_s * NS + v_ns))
        else:
            t.deadline = self.actor.now() + v_s + v_ns / NS
        return Value(0)

    def timer_gettime(self, sc):
        t = self._timer(sc)
        if t is None:
            return Errno(errno.EINVAL)
        self._write_itimerspec(sc, sc.arg(1), t)
        return Value(0)

    def timer_getoverrun(self, sc):
        t = self._timer(sc)
        return Value(t.overrun_last) if t is not None else Errno(errno.EINVAL)

    def timer_delete(self, sc):
        return Value(0) if _timers(sc.process).pop(sc.iarg(0), None) is not None else Errno(errno.EINVAL)

    # -- the scheduler's side ----------------------------------------------------------------
    @staticmethod
    def next_deadline(process) -> Optional[float]:
        timers = process.data.get(TIMERS_KEY)
        if not timers:
            return None
        # (a CPU-time timer has no date: it is looked at whenever the clock moves)
        dates = [t.deadline for t in timers.values() if t.deadline is not None and not t.cpu]
        return min(dates) if dates else None

    def due(self, process) -> list[Expiry]:
        """The notifications due now, in timer id order; periodic timers are re-armed."""
        timers = process.data.get(TIMERS_KEY)
        if not timers:
            return []   # the common case, looked at at every date the clock reaches
        now = self.actor.now()
        out = []
        for t in sorted(timers.values(), key=lambda t: t.timer_id):
            if t.deadline is None:
                continue
            if t.cpu:
                cpu_ns = self._cpu_ns(t, process)
                if cpu_ns < t.deadline:
                    continue
                interval_ns = to_ns(t.interval)
                if interval_ns > 0:
                    periods = (cpu_ns - t.deadline) // interval_ns + 1
                    t.deadline += periods * interval_ns
                else:
                    periods = 1
                    t.deadline = None
            elif now < t.deadline:
                continue
            elif t.interval > 0:
                periods = int((now - t.deadline) / t.interval) + 1
                t.deadline += periods * t.interval
            else:
                periods = 1
                t.deadline = None
            if t.notify == SIGEV_NONE:
                continue
            tid = t.tid if t.notify == SIGEV_THREAD_ID else 0
            st = signal_state(process.pid, tid or process.pid)
            if st is not None and st.pending & (1 << (t.signo - 1)):
                t.overrun = min(DELAYTIMER_MAX, t.overrun + periods)   # still pending: an overrun
                continue
            if t.overrun:   # the last signal was taken without a delivery stop (sigwaitinfo)
                t.overrun_last, t.overrun = t.overrun, 0
            t.overrun = min(DELAYTIMER_MAX, periods - 1)   # periods the clock jumped over at once
            out.append(Expiry(process.pid, tid, t.signo, t.siginfo()))
        return out

    @staticmethod
    def delivered(process, siginfo: bytes) -> Optional[bytes]:
        """The siginfo of a signal about to be delivered to `process`, with si_overrun set if it is
        one of its timers' (None if not): the count is taken, as by the kernel's dequeue."""
        signo, _, code, timer_id = struct.unpack_from("<iii4xi", siginfo)
        t = process.data.get(TIMERS_KEY, {}).get(timer_id)
        if code != SI_TIMER or t is None or t.signo != signo:
            return None
        t.overrun_last, t.overrun = t.overrun, 0
        return siginfo[:20] + struct.pack("<i", t.overrun_last) + siginfo[24:]

    @staticmethod
    def forget(process) -> None:
        """exec deletes a process's timers (and a forked child never had its parent's)."""
        process.data.pop(TIMERS_KEY, None)
