"""The one tracer loop of a run, in lock-step with SimGrid.

Every tracee of every scenario process is traced by one `Tracer`, driven from ONE SimGrid actor (on
raw contexts: a simcall costs microseconds, not an OS-thread hand-off). The state of every task is
known exactly at all times:

  * RUNNING  — on a CPU, or in a syscall the kernel runs that cannot wait on the simulation (the
               policies never leave such a wait to the kernel: sockets, pipes, futexes, children,
               sleeps are all answered here);
  * BLOCKED  — stopped by us in a syscall, waiting on named objects (`Blocked.on`) and/or a
               simulated date (`Blocked.deadline`).

The loop:

  1. let every RUNNING task run until it stops, then handle the stops in canonical order (task
     creation order: `Tracer.run_round`), so that the kernel's scheduling never decides anything;
  2. look again at the BLOCKED tasks whose objects changed (`simterpose.wait`), in canonical order;
  3. when a signal may have become pending, interrupt the blocked syscalls it targets;
  4. only when nothing can run: start the flows written at this date, then let the simulation
     advance to the next event — a transfer completing, or the earliest deadline (a sleep, a
     timeout, a CPU burst's end, a start or kill date).

Nothing is decided by timing or by polling the kernel: the same scenario gives the same run.
"""

from __future__ import annotations

import errno
import gc
import heapq
import itertools
import os
import signal
import sys
from dataclasses import dataclass
from typing import Optional

from . import sim, syscall_table, wait
from .busy_wait import POLLS, BusyWait
from .cpu_model import Burst, CpuModel
from .local_files import SignalWait
from .procfs import lowest_signal, signal_state
from .progress import POLL_EVERY
from .sigmask_waits import hand_to_kernel, wait_mask
from .time.alarm_siginfo import kernel_siginfo
from .time.policy import ITIMER_KEY
from .time.posix_timers import TIMERS_KEY
from .tracer import names
from .tracer.engine import BLOCKED, Policy, Process, Task, TraceeGone, Tracer
from .tracer.memory import MemoryError_
from .tracer.results import Blocked, Errno, Native, SyscallFailed, Unsupported
from .tracer.scratch import Scratch
from .tracer.sigqueue import queue_signal

SA_RESTART = 0x10000000
# Wall-clock seconds without any event from running tracees after which the tracer looks at them
# (a task asleep in the kernel on something outside the simulation would hang the run forever).
STALL_SECONDS = 10.0
# A task computing this long (wall seconds) without a syscall, the others waiting, is preempted
# (--cpu-model measured): about a kernel's time slice, long enough to cost nothing to programs that
# make syscalls.
PREEMPT_AFTER = 0.05
# With `none` or `per-syscall` computation is free: a task is preempted only after this long (it
# then costs no simulated time), enough not to touch programs that merely compute a while, and short
# enough that one spin-waiting on another task (memcslap's threads spin on a start flag) ends soon.
FREE_PREEMPT_AFTER = 1.0


@dataclass
class Preempted:
    burst: Optional[Burst]   # the computation it did before it was preempted, on its host (None:
                             # computation is free, see `on_preempted`)
    start: float             # when that burst began (simulated seconds)
    stops: int = 0           # the tracer's stop count then: has any other task progressed since?


@dataclass
class CallState:
    """The scheduler's own bookkeeping of one syscall across its stops (`Syscall.pre`)."""

    burst: Optional[Burst] = None     # the CPU burst charged before the call is handled
    charged: bool = False
    logged: bool = False
    charge_start: float = 0.0


class Scheduler(Policy):
    def __init__(self, emulation):
        self.em = emulation
        self.cfg = emulation.config
        self.cpu = CpuModel(self.cfg, emulation.sim.hosts)
        self.native_files = wait.Condition("native descriptors")  # pipes, unix sockets, eventfd
        self.busy = BusyWait(self.cfg.unblocked_syscall_latency)
        self.handlers = self._build_handlers()
        self.tracer = Tracer(self, vdso=self.cfg.vdso, cpu=self.cfg.cpu, log=self._tracer_message)
        self.tracer.new_process_group = self.cfg.own_process_group
        self.ready: set[Task] = set()
        wait.bind(self.ready)
        self.activities: list = []      # [(sim.Transfer, callback)] in flight
        # [(date, sequence number, callback)], a heap: the network's timers (ns-3 control segments);
        # the sequence number fires timers of one date in the order they were set (deterministic)
        self.timers: list = []
        self._timer_seq = itertools.count()
        emulation.network.watch = self.watch
        emulation.network.timer = self.add_timer
        self.signal_check = False       # a signal may have become pending for a blocked task
        self.preempted: dict[Task, Preempted] = {}   # PREEMPTED tasks, charged their computation
        self.requests = None            # a live emulation's queue.Queue of requests
        self.on_request = None
        self.quantum = 0.01             # how often (simulated s) a live run looks at its queue
        self._last_now = -1.0
        self.now_seen = 0.0             # the date as last seen by the loop (read by other threads)

    # -- the dispatch table --------------------------------------------------------------------
    def _build_handlers(self) -> dict:
        handlers = {}
        for nr, name in names.NAMES.items():
            kind, what = syscall_table.classify(nr)
            if kind == "handled":
                handlers[nr] = self._handler(nr, name, what[0], what[1])
            elif kind == "unsupported":
                handlers[nr] = _refuse(name, what)
        return handlers

    def _handler(self, nr: int, name: str, module: str, method: str):
        cpu = self.cpu
        native_files = self.native_files
        busy = self.busy
        busy_polls = POLLS

        def run(sc):
            task = sc.task
            owner = task.process.owner
            now = sim.now()
            if busy.spins:  # only a task counted as spinning may owe a latency
                wait_first = busy.before(task, now)
                if wait_first is not None:
                    return wait_first
            st = None
            if cpu.enabled or owner.log is not None:  # else the hot path: no per-call bookkeeping
                st = sc.pre
                if st is None:
                    st = sc.pre = CallState()
                if cpu.enabled and not st.charged:
                    blocked = self._charge(sc, st, owner)
                    if blocked is not None:
                        return blocked
            try:
                h = owner.handlers.get(nr)
                if h is None:
                    h = owner.handler(nr, module, method)
                result = h(sc)
            except SyscallFailed as e:
                result = Errno(e.errno)
            except MemoryError_:
                result = Errno(errno.EFAULT)
            if busy.latency and (busy.spins or nr in busy_polls or type(result) is Errno):
                busy.after(task, nr, result, now)  # a poll, an EAGAIN, or the end of a spin
            if owner.log is not None:
                owner.log.record(sim.now(), sc, result, not st.logged)
                st.logged = True
            # Whatever the kernel runs may change the readiness of pipes and unix sockets.
            if native_files._waiters and type(result) is Native:
                native_files.notify()
            return result

        return run

    def _charge(self, sc, st: CallState, owner) -> Optional[Blocked]:
        """The CPU burst that led to this stop is charged on the host before the call is handled."""
        if st.burst is None:
            seconds = self.cpu.burst_seconds(sc.process)
            if seconds <= 0:
                st.charged = True
                return None
            st.charge_start = sim.now()
            st.burst = self.cpu.start(owner.spec.host, seconds)
        burst = st.burst
        if not burst.done():
            return Blocked("cpu burst", burst.predicted_end(), on=(burst.host,), entered=False)
        self.cpu.finish(burst)
        st.charged = True
        st.burst = None
        p = sc.process
        p.data["cpu_charged"] = p.data.get("cpu_charged", 0.0) + (sim.now() - st.charge_start)
        return None

    # -- services --------------------------------------------------------------------------------
    def watch(self, transfer, callback) -> None:
        """Call `callback()` when `transfer` completes (the network's only link to the loop)."""
        self.activities.append((transfer, callback))

    def add_timer(self, date: float, callback) -> None:
        """Call `callback()` when the simulated clock reaches `date`."""
        heapq.heappush(self.timers, (date, next(self._timer_seq), callback))

    def signal_sent(self) -> None:
        """A signal may now be pending for some blocked task (kill, a timer, a child's exit...)."""
        self.signal_check = True

    # -- tracer callbacks ----------------------------------------------------------------------
    def _tracer_message(self, message: str) -> None:
        # Errors are recorded per scenario process (on_fatal); the watchdog's notes (a task
        # computing without syscalls) are said at once: the run may never end.
        print(f"simterpose: {message}", file=sys.stderr, flush=True)

    def on_fatal(self, task: Task, message: str) -> bool:
        owner = task.process.owner
        owner.note_error(message)
        self._kill(owner, stop=False)
        return True

    def on_blocked(self, task: Task) -> None:
        for obj in task.blocked_on.on:
            obj.waiters.add(task)

    def at_random(self, process: Process) -> bytes:
        return process.owner.random.at_random(process)  # seeded (simterpose/randomness.py)

    def on_exec(self, process: Process) -> None:
        self.cpu.reset(process)
        process.data.pop("sigactions", None)  # handlers are reset by exec (ignored ones stay, harmless)
        process.owner.timers.forget(process)  # exec deletes POSIX timers
        process.owner.net.on_exec(process)
        self.native_files.notify()

    def on_fork(self, parent: Task, child: Task, is_thread: bool) -> None:
        if not is_thread:
            owner = parent.process.owner
            child.process.data["sigactions"] = dict(parent.process.data.get("sigactions", {}))
            owner.record.pids.append(child.process.pid)
            self.em.processes[child.process.pid] = child.process
            owner.net.on_fork(parent.process, child.process)

    def on_task_exit(self, task: Task) -> None:
        self._forget_wait(task)
        self.busy.forget(task)
        self._drop_preemption(task)
        sc = task.blocked
        if sc is not None and isinstance(sc.pre, CallState):
            self.cpu.cancel(sc.pre.burst)
        if task.clear_child_tid:
            # The kernel zeroed the word and woke its futex: our futex waiters must hear it too.
            task.process.owner.local.futex_wake_address(task.process, task.clear_child_tid)

    def on_released(self, task: Task) -> None:
        sc = task.blocked
        self._forget_wait(task)
        self._drop_preemption(task)
        if sc is not None and isinstance(sc.pre, CallState):
            self.cpu.cancel(sc.pre.burst)

    def on_signal(self, task: Task, sig: int) -> int:
        """A signal is about to be delivered to `task`: a POSIX timer's carries its overrun count;
        the SIGALRM of alarm/setitimer, which we sent with kill(2), the kernel's SI_KERNEL."""
        if sig == signal.SIGALRM:
            try:
                patched = kernel_siginfo(self.tracer.siginfo(task))
                if patched is not None:
                    self.tracer.set_siginfo(task, patched)
            except OSError:
                pass   # gone meanwhile
        timers = task.process.data.get(TIMERS_KEY)
        if timers and any(t.signo == sig for t in timers.values()):
            try:
                patched = task.process.owner.timers.delivered(task.process, self.tracer.siginfo(task))
                if patched is not None:
                    self.tracer.set_siginfo(task, patched)
            except OSError:
                pass   # gone meanwhile
        return sig

    # -- preemption ----------------------------------------------------------------------------------
    def on_preempted(self, task: Task) -> None:
        """A task computed for a while without a syscall, the others waiting (the watchdog stopped
        it). With `--cpu-model measured` its computation so far is charged now, on its host, as the
        burst before a syscall would be, and it computes on once that burst ends in simulated time:
        the clock moves while a program computes, kill and stop dates are kept, and a thread spinning
        on memory until a thread asleep in simulated time writes it sees the write.

        With a free CPU model nothing is charged. The task is held while the others go on — the
        round it held up ends (a thread spinning on a flag that a thread stopped at a syscall of
        that round will set) — and resumed at this date once they have progressed, or else when the
        clock next moves (a thread spinning until a sleeping thread wakes)."""
        if not self.cpu.measured:
            self.preempted[task] = Preempted(None, sim.now(), self.tracer.stops)
            return
        seconds = self.cpu.burst_seconds(task.process)
        burst = self.cpu.start(task.process.owner.spec.host, seconds) if seconds > 0 else None
        self.preempted[task] = Preempted(burst, sim.now(), self.tracer.stops)

    def _resume_preempted(self, signals: bool = False, progressed: bool = False) -> None:
        """Resume the preempted tasks whose burst has ended (free ones: the clock moved since), or,
        with `progressed`, free ones held while other tasks progressed, or, with `signals`, those
        that have a signal to take (the kernel delivers it when they run; the rest of the burst is
        forgiven, as for a burst before a syscall)."""
        now = sim.now()
        for task in sorted(self.preempted, key=_rank):
            p = self.preempted[task]
            if p.burst is not None:
                due = p.burst.done()
            else:
                due = now > p.start or (progressed and self.tracer.stops != p.stops)
            if not due:
                if not signals:
                    continue
                st = signal_state(task.process.pid, task.tid)
                if st is None or not st.deliverable():
                    continue
            self._drop_preemption(task)
            self.tracer.resume_preempted(task)

    def _drop_preemption(self, task: Task) -> None:
        p = self.preempted.pop(task, None)
        if p is not None and p.burst is not None:
            if p.burst.done():
                self.cpu.finish(p.burst)
            else:
                self.cpu.cancel(p.burst)
            data = task.process.data
            data["cpu_charged"] = data.get("cpu_charged", 0.0) + (sim.now() - p.start)

    def on_process_exit(self, process: Process, status: int) -> None:
        owner = process.owner
        self.em.processes.pop(process.pid, None)
        owner.net.on_exit(process)
        owner.local.child_exited(process)
        owner.local.close_process(process)
        self.native_files.notify()
        self.signal_sent()  # SIGCHLD to the parent
        if process is getattr(owner, "root", None):
            owner.root_exited(status)
        if not any(t.process.owner is owner for t in self.tracer.tasks.values()):
            owner.finish()

    # -- the loop ------------------------------------------------------------------------------
    def run(self, requests=None, on_request=None) -> None:
        """The body of the run's one actor: returns when every process is gone (or, live, when
        the request handler says so)."""
        self.requests, self.on_request = requests, on_request
        from .emulator import disable_aslr_for_children

        disable_aslr_for_children()
        self.tracer.watch_stalls(STALL_SECONDS, PREEMPT_AFTER if self.cpu.measured else FREE_PREEMPT_AFTER)
        # What start-up made (modules, the platform, tables) lives until the end: out of the
        # collector's sight (gc.freeze), full collections no longer walk it every few thousand stops.
        gc.collect()
        gc.freeze()
        try:
            self._loop()
        finally:
            self.tracer.stop_watching_stalls()
            sim.thaw_clock()
            self._shutdown()

    def _loop(self) -> None:
        tracer, em = self.tracer, self.em
        progress = em.progress if em.progress is not None and em.progress.enabled else None
        iterations = 0
        while True:
            if em.interrupted is not None:
                self._stop_interrupted()
                return
            if progress is not None:
                # The wall clock is read every POLL_EVERY iterations only, never per syscall.
                iterations += 1
                if iterations == POLL_EVERY:
                    iterations = 0
                    progress.poll(self.now_seen, len(em.processes), tracer.stops)
            if self.requests is not None and not self._poll_requests(block=False):
                return
            now = self.now_seen = sim.freeze_clock()
            if now != self._last_now:
                self._last_now = now
                self._dates_reached(now)
            ran = tracer.run_round()
            # Woken tasks are looked at after every round, not only once nothing runs: a thread
            # that keeps running (a busy loop, a thread that just released a lock) must not starve
            # the one it woke, which on Linux would run on another CPU meanwhile. Except those
            # whose answer the kernel gives (a pipe's readiness): tasks just resumed may be
            # changing it right now, so they wait for a moment when nothing runs.
            if self.ready and self._retry_ready(quiescent=not ran):
                continue
            if ran:
                continue
            if self.signal_check:
                self.signal_check = False
                if self._deliver_signals():
                    continue
            if self._finished():
                return
            # Nothing can run: preempted tasks others have progressed past go on at this date;
            # otherwise the simulation may advance.
            if self.preempted:
                n = len(self.preempted)
                self._resume_preempted(progressed=True)
                if len(self.preempted) < n:
                    continue
            self.em.network.flush()
            deadline = self._next_deadline()
            if deadline is not None and deadline <= now:
                self._expire(now)
                continue
            if not self.activities and deadline is None:
                if self.requests is not None:
                    if not self._poll_requests(block=True):  # idle: wait for a request, clock frozen
                        return
                    continue
                if self._deliver_signals():
                    continue
                if any(p.burst is None for p in self.preempted.values()):
                    # Nothing else can ever happen: computing on is all that is left.
                    for task in sorted(self.preempted, key=_rank):
                        if not task.process.data.get("told_free_spin"):
                            task.process.data["told_free_spin"] = True
                            self._tracer_message(
                                f"process {task.process.pid} computes without syscalls and nothing else can "
                                f"happen: with --cpu-model {self.cfg.cpu_model} computation takes no simulated "
                                "time, so the clock waits for its next syscall (--cpu-model measured charges it)")
                        self._drop_preemption(task)
                        self.tracer.resume_preempted(task)
                    continue
                self._deadlock()
                continue
            if em.interrupted is not None:
                continue  # stop at this date: the clock must not move past the interruption
            self._advance(deadline)

    def _advance(self, deadline: Optional[float]) -> None:
        sim.thaw_clock()
        if self.activities:
            timeout = None if deadline is None else deadline - sim.now()
            i = sim.wait_any([t for t, _ in self.activities], timeout)
            if i is not None:
                _, callback = self.activities.pop(i)
                callback()
        else:
            sim.sleep_until(deadline)

    def _dates_reached(self, now: float) -> None:
        """Start, kill and timer dates that the clock has reached."""
        em = self.em
        if self.cfg.stop_time is not None and now >= self.cfg.stop_time and not em.stopping:
            em.stopping = True
            for owner in em.actors:
                self._kill(owner, stop=True)
        for owner in em.actors:
            if not owner.started and not em.stopping and owner.spec.start_time <= now:
                self._start(owner)
            elif owner.started and not owner.finished and not owner.killed:
                kt = owner.spec.kill_time
                if kt is not None and now >= kt:
                    self._kill(owner, stop=True)
        if self.preempted:
            self._resume_preempted()
        if self.cpu.enabled:
            # A burst may have ended within rounding of this date (Burst.done) although its
            # predicted end is a hair later: SimGrid would round a wait that short up to 1 ns.
            for task in self.tracer.tasks.values():
                sc = task.blocked
                if task.state == BLOCKED and isinstance(sc.pre, CallState) and sc.pre.burst is not None \
                        and sc.pre.burst.done():
                    self.ready.add(task)
        for pid, process in list(em.processes.items()):
            data = process.data
            if ITIMER_KEY not in data and TIMERS_KEY not in data:
                continue  # no timer ever armed: the common case, at every date
            if process.owner.time.fire_timer(process):
                try:
                    os.kill(pid, signal.SIGALRM)
                except ProcessLookupError:
                    pass
                self.signal_sent()
            for ex in process.owner.timers.due(process):
                try:
                    queue_signal(ex.pid, ex.tid, ex.signo, ex.siginfo)
                except OSError:
                    pass  # the process (or the timer's thread) is gone: nobody to notify
                self.signal_sent()

    def start_process(self, owner) -> None:
        """Start a scenario process now (a live emulation's request)."""
        self._start(owner)

    def _start(self, owner) -> None:
        try:
            owner.start(self.tracer)
        except OSError as e:
            owner.note_error(f"cannot start {owner.spec.argv[0]}: {e}")
            owner.finish()
        except RuntimeError as e:
            owner.note_error(str(e))
            owner.finish()

    def _kill(self, owner, stop: bool) -> None:
        if owner.started and not owner.finished and not owner.killed:
            owner.killed = True
            if stop:
                owner.record.error = None  # killed at its kill date / the stop time, as asked
            self.tracer.kill_tree(owner)
            for task in self.tracer.tasks.values():
                if task.process.owner is owner:
                    self._forget_wait(task)
        elif not owner.started:
            owner.finish()

    def _finished(self) -> bool:
        if self.tracer.tasks or self.requests is not None:
            return False
        return all(a.finished or (self.em.stopping and not a.started) for a in self.em.actors)

    def _stop_interrupted(self) -> None:
        """Ctrl-C or SIGTERM (`Emulation.interrupt`): every process still running is killed now, at
        the date the loop had reached; those not started yet never start."""
        for owner in self.em.actors:
            if owner.started and not owner.finished:
                self._kill(owner, stop=True)
            elif not owner.started:
                owner.note_error(f"not started: the run was interrupted at t={self.em.interrupted_at:.6f}")
                owner.finish()

    def _next_deadline(self) -> Optional[float]:
        dates = []
        for task in self.tracer.tasks.values():
            if task.state == BLOCKED and task.blocked_on.deadline is not None:
                dates.append(task.blocked_on.deadline)
        for process in self.em.processes.values():
            data = process.data
            if ITIMER_KEY not in data and TIMERS_KEY not in data:
                continue
            d = process.owner.time.timer_deadline(process)
            if d:
                dates.append(d)
            d = process.owner.timers.next_deadline(process)
            if d is not None:
                dates.append(d)
        if not self.em.stopping:
            for owner in self.em.actors:
                if not owner.started:
                    dates.append(owner.spec.start_time)
                elif not owner.finished and not owner.killed and owner.spec.kill_time is not None:
                    dates.append(owner.spec.kill_time)
            if self.cfg.stop_time is not None:
                dates.append(self.cfg.stop_time)
        if self.timers:
            dates.append(self.timers[0][0])
        for p in self.preempted.values():
            if p.burst is not None:
                dates.append(p.burst.predicted_end())
        if self.requests is not None and (self.activities or dates):
            dates.append(sim.now() + self.quantum)
        return min(dates) if dates else None

    def _expire(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            heapq.heappop(self.timers)[2]()
        if self.preempted:
            self._resume_preempted()
        for task in self.tracer.tasks.values():
            if task.state == BLOCKED and task.blocked_on.deadline is not None and task.blocked_on.deadline <= now:
                self.ready.add(task)

    def _retry_ready(self, quiescent: bool = True) -> bool:
        """Look again at the woken tasks (in canonical order); False if none could be."""
        tasks = sorted(self.ready, key=_rank)
        if not quiescent:
            tasks = [t for t in tasks if not (t.blocked_on is not None and self.native_files in t.blocked_on.on)]
            if not tasks:
                return False
        self.ready.difference_update(tasks)
        for task in tasks:
            if task.state != BLOCKED or self.tracer.tasks.get(task.tid) is not task:
                continue
            self._forget_wait(task)
            try:
                self.tracer.retry(task)
            except TraceeGone:
                pass
        return True

    def _forget_wait(self, task: Task) -> None:
        self.ready.discard(task)
        if task.blocked_on is not None:
            for obj in task.blocked_on.on:
                if obj._waiters is not None:
                    obj._waiters.discard(task)

    # -- signals -------------------------------------------------------------------------------
    def _deliver_signals(self) -> bool:
        """Interrupt every blocked syscall whose task has a deliverable signal pending (the kernel
        delivers signals only on the way back to user space: a task stopped by us cannot take it)."""
        interrupted = False
        if self.preempted:
            n = len(self.preempted)
            self._resume_preempted(signals=True)
            interrupted = len(self.preempted) < n
        for task in sorted((t for t in self.tracer.tasks.values() if t.state == BLOCKED), key=_rank):
            st = signal_state(task.process.pid, task.tid)
            if st is None or not st.pending:
                continue
            sc = task.blocked
            if isinstance(sc.state, SignalWait) and st.pending & sc.state.mask:
                # a signal it waits for (blocked, not delivered) is there: sigtimedwait, signalfd
                self.ready.add(task)
                interrupted = True
                continue
            pending = st.deliverable(wait_mask(sc))
            if pending:
                self._interrupt(task, lowest_signal(pending))
                interrupted = True
        return interrupted

    def _interrupt(self, task: Task, sig: int) -> None:
        """End a blocked syscall because signal `sig` is to be delivered: restarted after the handler
        if the call is restartable and the handler has SA_RESTART (signal(7)), else EINTR (with the
        time left written for sleeps)."""
        sc, how = task.blocked, task.blocked_on
        self._forget_wait(task)
        if isinstance(sc.pre, CallState):
            self.cpu.cancel(sc.pre.burst)
            sc.pre.burst = None
        flags = task.process.data.get("sigactions", {}).get(sig, 0)
        try:
            if how.entered and wait_mask(sc) is not None:
                # Only the kernel can install the temporary mask the handler must run under (and
                # restore the old one after it): with the signal already pending, the call itself
                # returns at once, EINTR, with the handler run (simterpose/sigmask_waits.py).
                if sc.name != "rt_sigsuspend":
                    hand_to_kernel(sc, Scratch(sc, self.tracer).put)
                self.tracer.complete(task, Native())
            elif not how.entered or (how.restart and flags & SA_RESTART):
                self.tracer.restart(task)
            else:
                self.tracer.complete(task, Errno(task.process.owner.time.interrupted(sc)))
        except TraceeGone:
            pass

    # -- the end ---------------------------------------------------------------------------------
    def _deadlock(self) -> None:
        """Every remaining task waits for something that can never happen: say what, end them."""
        for owner in self.em.actors:
            waits = [f"{t.blocked.name} in pid {t.process.pid}" for t in sorted(self.tracer.tasks.values(), key=_rank)
                     if t.process.owner is owner and t.state == BLOCKED]
            if waits:
                owner.note_error(f"blocked forever: waiting in {', '.join(waits)}")
                self._kill(owner, stop=False)
            elif owner.started and not owner.finished and not any(
                    t.process.owner is owner for t in self.tracer.tasks.values()):
                owner.finish()

    def _shutdown(self) -> None:
        for owner in self.em.actors:
            if owner.started and not owner.finished:
                self.tracer.kill_tree(owner)
        while self.tracer.tasks and self.tracer.run_round():
            pass
        for owner in self.em.actors:
            owner.finish()
        self.em.network.end_capture()
        for transfer, _ in self.activities:
            transfer.cancel()  # an unfinished transfer handle must not outlive the run (3.32 aborts)
        self.activities.clear()
        wait.bind(None)

    def _poll_requests(self, block: bool) -> bool:
        """Handle a live emulation's requests; False when it must end."""
        import queue

        while True:
            try:
                item = self.requests.get(block=block)
            except queue.Empty:
                return True
            block = False
            if not self.on_request(item):
                return False


def _rank(task: Task) -> int:
    return task.rank


def _refuse(name: str, reason: str):
    def refuse(sc):
        raise Unsupported(name, reason)

    return refuse
