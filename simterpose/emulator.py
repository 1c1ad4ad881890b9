"""Real processes in lock-step with SimGrid's clock.

One SimGrid actor per scenario process (`ProcessActor`). The actor's thread is the tracer of that
process tree (ptrace requests must come from the tracing thread, and SimGrid runs each actor on its
own OS thread), so each actor drives its own `Tracer`:

  * while one of its tasks runs for real, the actor waits for it in waitpid: simulated time is
    frozen, because SimGrid only advances when every actor is blocked inside SimGrid;
  * at each stop, the CPU burst since the previous stop is charged on the host (`--cpu-model`), then
    the syscall's policy module answers it: at once (a clock read), or `Blocked` (a sleep, an accept
    with no pending connection...);
  * when every task of the tree is blocked in the simulation (or asleep in the kernel on a sibling,
    e.g. a parent in wait4), the actor waits inside SimGrid, on its wake-up signal, until the earliest
    deadline of its blocked syscalls and timers; anything that may unblock it (another actor's
    connect, arriving data) notifies that signal. Then every blocked syscall is re-evaluated.
Nothing a tracee waits for is ever left to block in the kernel while the simulation waits on it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import sim, syscall_table
from .net.addressing import Addressing
from .net.mediation import MediationPolicy
from .net.pcap import Capture
from .net.policy import SocketPolicy
from .net.sockets import Network
from .proc_policy import ProcPolicy
from .scenario import ProcessSpec, Scenario, hosts_file_lines
from .time.clock import DEFAULT_EPOCH, VirtualClock, to_ns
from .time.policy import TimePolicy
from .time.timerfd import TimerFdPolicy
from .tracer import names
from .tracer.engine import Policy, Process, Task, TraceeGone, Tracer, status_to_exit_code
from .tracer.memory import MemoryError_
from .tracer.results import Blocked, Errno, Unsupported, Value


@dataclass
class RunConfig:
    network_model: str = "LV08"
    cpu_model: str = "measured"          # measured | none | per-syscall=SECONDS
    reference_speed: float = 1e9         # flop/s that one second of real CPU is worth
    epoch: int = DEFAULT_EPOCH
    vdso: str = "disable"
    stop_time: Optional[float] = None
    log_dir: Optional[Path] = None
    cpu: Optional[int] = None            # pin tracers and tracees to this CPU
    mediate: str = "address-translation"  # or full-mediation
    pcap_dir: Optional[Path] = None
    simgrid_config: dict = field(default_factory=dict)  # more --cfg=key:value for SimGrid
    simgrid_log: Optional[list] = None                  # SimGrid --log settings (None: sim.QUIET_LOGS)

    def __post_init__(self):
        if self.mediate not in ("address-translation", "full-mediation"):
            raise ValueError(f"unknown mediation mode {self.mediate!r}")
        self.per_syscall_cost = 0.0
        if self.cpu_model.startswith("per-syscall="):
            try:
                self.per_syscall_cost = float(self.cpu_model.split("=", 1)[1])
            except ValueError:
                raise ValueError(f"bad --cpu-model {self.cpu_model!r}: per-syscall=SECONDS") from None
            if self.per_syscall_cost < 0:
                raise ValueError("per-syscall cost must be >= 0")
        elif self.cpu_model not in ("measured", "none"):
            raise ValueError(f"unknown --cpu-model {self.cpu_model!r} (measured, none, per-syscall=SECONDS)")


@dataclass
class ProcessRecord:
    index: int
    host: str
    argv: list
    expected_exit: Optional[int]
    start: Optional[float] = None
    end: Optional[float] = None
    exit_status: Optional[int] = None    # shell style: code, or 128+signal
    signal: Optional[int] = None
    wall: Optional[float] = None
    error: Optional[str] = None
    pids: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.error is not None or self.exit_status is None:
            return False
        return self.expected_exit is None or self.exit_status == self.expected_exit

    def virtual(self) -> dict:
        return {"host": self.host, "argv": list(self.argv), "exit_status": self.exit_status,
                "start": self.start, "end": self.end, "error": self.error}


_ADDR_NO_RANDOMIZE = 0x0040000


def _disable_aslr_for_children() -> None:
    """Address-space randomisation off for the processes this thread starts (the personality is
    per thread and inherited by children): their memory layout, hence any pointer they print or pass
    to a syscall (the .syscalls log shows arguments), is the same from one run to the next."""
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(0xFFFFFFFF)
    if current != -1:
        libc.personality(current | _ADDR_NO_RANDOMIZE)


def _arg_count(name: str) -> int:
    """How many arguments a syscall takes: the .syscalls log shows only those, not the leftover
    registers (which may hold random values such as the stack protector's canary)."""
    try:
        from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    except ImportError:  # pragma: no cover - python-ptrace is a dependency
        return 6
    proto = SYSCALL_PROTOTYPES.get(name)
    return 6 if proto is None else len(proto[1])


def _process_cpu_clock(pid: int) -> int:
    # The CPU-time clock of another process (clock_getcpuclockid): one clock_gettime, ~0.3 us,
    # cheaper than reading /proc/PID/schedstat.
    return ((~pid) << 3) | 2


class ProcessActor:
    """Drives one scenario process (and everything it forks) on its simulated host."""

    def __init__(self, emulation: "Emulation", spec: ProcessSpec, index: int):
        self.emulation = emulation
        self.config = emulation.config
        self.spec = spec
        self.host = emulation.sim.host(spec.host)
        self.record = ProcessRecord(index, spec.host, list(spec.argv), spec.expected_exit)
        self.wake = sim.Wakeup()  # lossless: a notify may come while we are not yet waiting
        self.tracer: Optional[Tracer] = None
        self.time = TimePolicy(self)
        self.proc = ProcPolicy(self)
        full = emulation.config.mediate == "full-mediation"
        self.net = (MediationPolicy if full else SocketPolicy)(self, emulation.network)
        self.timerfd = TimerFdPolicy(self)
        self._modules = {syscall_table.TIME: self.time, syscall_table.TIMERFD: self.timerfd,
                         syscall_table.PROC: self.proc, syscall_table.NET: self.net}
        self._log = None
        self._killed = False
        # Set by a live emulation (ctrld --mediate): where output goes, who hears of start and exit.
        self.stdout_fd: Optional[int] = None
        self.stderr_fd: Optional[int] = None
        self.on_start = None   # (actor) -> None, once the root process runs
        self.on_exit = None    # (actor) -> None, when the whole tree is gone
        self.idle = False      # waiting on the simulation with no deadline and nothing running

    # -- services for the policy modules --------------------------------------------------------
    @staticmethod
    def now() -> float:
        return sim.now()

    def notify(self) -> None:
        """Something that may unblock one of our syscalls happened (called from any actor)."""
        self.wake.notify_all()

    def cpu_charged_ns(self, process: Optional[Process]) -> int:
        return 0 if process is None else process.data.get("cpu_charged_ns", 0)

    # -- CPU model -----------------------------------------------------------------------------
    def _charge(self, process: Process) -> None:
        cfg = self.config
        if cfg.cpu_model == "none":
            return
        if cfg.per_syscall_cost:
            seconds = cfg.per_syscall_cost
        else:
            try:
                cpu = time.clock_gettime_ns(_process_cpu_clock(process.pid))
            except OSError:
                return
            last = process.data.get("cpu_last")
            process.data["cpu_last"] = cpu
            if last is None or cpu <= last:
                return
            seconds = (cpu - last) / 1e9
        before = sim.now()
        self.emulation.network.flush()
        sim.execute(seconds * cfg.reference_speed)
        process.data["cpu_charged_ns"] = process.data.get("cpu_charged_ns", 0) + to_ns(sim.now() - before)

    # -- building the policy -------------------------------------------------------------------
    def _policy(self) -> Policy:
        actor = self
        handlers = {}
        for nr, name_ in names.NAMES.items():
            kind, what = syscall_table.classify(nr)
            if kind == "handled":
                module = self._modules.get(what[0])
                if module is not None:
                    handlers[nr] = self._wrap(getattr(module, what[1]), name_)
            elif kind == "unsupported":
                handlers[nr] = self._unsupported(name_, what)

        class _P(Policy):
            def on_exec(self, process):
                # The CPU spent before exec (our launcher) is not the program's.
                process.data.pop("cpu_last", None)
                if actor.config.cpu_model == "measured":
                    try:
                        process.data["cpu_last"] = time.clock_gettime_ns(_process_cpu_clock(process.pid))
                    except OSError:
                        pass

                actor.net.on_exec(process)

            def on_fork(self, parent, child, is_thread):
                if not is_thread:
                    actor.record.pids.append(child.process.pid)
                    actor.emulation.processes[child.process.pid] = child.process
                    actor.net.on_fork(parent.process, child.process)

            def on_process_exit(self, process, status):
                actor.emulation.processes.pop(process.pid, None)
                actor.net.on_exit(process)
                if process is actor.tracer.root:
                    actor._root_exited(status)

        p = _P()
        p.handlers = handlers
        return p

    def _wrap(self, handler, name_: str):
        log = self._log
        charge = self._charge
        vpid = self._vpid
        argc = min(_arg_count(name_), 4)

        def run(sc):
            if sc.first:  # the CPU burst that led to this syscall, charged once (not at retries)
                charge(sc.process)
            try:
                result = handler(sc)
            except MemoryError_:
                result = Errno(errno.EFAULT)
            # A blocked call is logged when it blocks and when it is finally answered.
            if log is not None and (sc.first or not isinstance(result, Blocked)):
                log.write(f"{sim.now():.9f} [{vpid(sc.pid)}] {name_}({', '.join(hex(a) for a in sc.orig_args[:argc])})"
                          f" = {_fmt(result)}\n")
            return result

        return run

    def _vpid(self, pid: int):
        """A process as the .syscalls log names it: its rank in the tree (0: the root, then in fork
        order), not its real pid, so that two runs give byte-identical logs."""
        try:
            return self.record.pids.index(pid)
        except ValueError:
            return f"pid {pid}"

    @staticmethod
    def _unsupported(name_: str, reason: str):
        def refuse(sc):
            raise Unsupported(name_, reason)

        return refuse

    # -- the actor -----------------------------------------------------------------------------
    def __call__(self) -> None:
        spec, cfg = self.spec, self.config
        if spec.start_time > sim.now():
            sim.sleep_until(spec.start_time)
        out = err = None
        files = []
        if cfg.log_dir is not None:
            stem = cfg.log_dir / f"{self.record.index}-{spec.host}-{Path(spec.argv[0]).name}"
            out = open(f"{stem}.stdout", "wb")
            err = open(f"{stem}.stderr", "wb")
            self._log = open(f"{stem}.syscalls", "w", buffering=1)
            files = [out, err, self._log]
        out_fd = out.fileno() if out else self.stdout_fd
        err_fd = err.fileno() if err else self.stderr_fd
        env = dict(os.environ)
        env.update(spec.env)
        self.tracer = Tracer(self._policy(), vdso=cfg.vdso, cpu=cfg.cpu,
                             log=lambda m: self._note_error(m))
        wall0 = time.perf_counter()
        self.record.start = sim.now()
        _disable_aslr_for_children()
        try:
            root = self.tracer.spawn(spec.argv, env=env, cwd=spec.cwd, path=spec.binary,
                                     stdout=out_fd, stderr=err_fd)
            self.record.pids.append(root.pid)
            self.emulation.processes[root.pid] = root
            if self.on_start is not None:
                self.on_start(self)
            self._loop()
            self.emulation.network.flush()  # what the tree wrote (or closed) just before it ended
        except sim.ActorKilled:
            # SimGrid gave up on us (deadlock: we waited for something that can never come).
            self.record.error = self.record.error or self._blocked_reason("blocked forever")
            raise
        finally:
            if self.tracer.tasks:
                self.tracer.kill_all()
                self._reap_all()
            if self.record.end is None:
                self.record.end = sim.now()
            self.record.wall = time.perf_counter() - wall0
            for f in files:
                f.close()
            if self.tracer.error and not self.record.error:
                self.record.error = self.tracer.error
            if self.on_exit is not None:
                self.on_exit(self)

    def _note_error(self, message: str) -> None:
        if self.record.error is None:
            self.record.error = message

    def _root_exited(self, status: int) -> None:
        self.record.end = sim.now()
        self.record.exit_status = status_to_exit_code(status)
        if os.WIFSIGNALED(status):
            self.record.signal = os.WTERMSIG(status)

    def _blocked_reason(self, prefix: str) -> str:
        tr = self.tracer
        waits = [f"{t.blocked.name} in pid {t.process.pid}" for t in (tr.blocked() if tr else [])]
        return f"{prefix}: waiting in {', '.join(waits)}" if waits else prefix

    def _reap_all(self) -> None:
        """After kill_all: collect every exit so no zombie or stopped tracee is left behind."""
        tr = self.tracer
        for t in tr.tasks.values():
            t.state = "running"
        while tr.tasks and tr.step(block=True):
            pass

    def _loop(self) -> None:
        tr = self.tracer
        kill_time = self.spec.kill_time
        backoff = 0.0
        while tr.tasks:
            now = sim.now()
            if not self._killed and (self.emulation.stopping or (kill_time is not None and now >= kill_time)):
                self._killed = True
                if kill_time is not None and now >= kill_time:
                    self.record.error = None
                tr.kill_all()
                self._reap_all()
                break
            self._fire_timers()
            if tr.running():
                if not (tr.blocked() or self._next_deadline() is not None or self.config.stop_time is not None):
                    tr.step(block=True)  # nothing waits on the simulation: wait for the tracees
                    continue
                # Some tasks (or timers) wait on the simulation, others run for real. Never block in
                # waitpid here: a running task may go to sleep in the kernel (a parent in wait4 for a
                # child that waits on the simulation, a pause() until a timer) and never stop again.
                if tr.step(block=False):
                    backoff = 0.0
                    continue
                if self._someone_on_cpu():
                    time.sleep(backoff)
                    backoff = min(max(2 * backoff, 20e-6), 1e-3)
                    continue
            backoff = 0.0
            # Every task waits on the simulation (or sleeps in the kernel on a sibling).
            if self._retry_blocked():
                continue
            if not tr.blocked() and not tr.running():
                break
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - sim.now())
            if timeout is not None and timeout <= 0:
                continue
            self.idle = timeout is None and not tr.running()
            self.emulation.network.flush()
            if self.idle:
                self.emulation.actor_idle(self)
            self.wake.wait(timeout)
            self.idle = False

    def _someone_on_cpu(self) -> bool:
        """Is a running task on a CPU (or about to stop), rather than asleep in the kernel?

        Two snapshots of every running task's state and run count (schedstat's time slices): all
        asleep in both, and none ran in between. One snapshot is not enough: a thread may wake a
        sibling and go back to sleep while we read, and the woken one would then stop and wait for
        us while we let the simulated clock run."""
        first = self._sleep_snapshot()
        return first is None or self._sleep_snapshot() != first

    def _sleep_snapshot(self) -> Optional[list]:
        runs = []
        for task in self.tracer.running():
            base = f"/proc/{task.process.pid}/task/{task.tid}"
            try:
                with open(f"{base}/stat", "rb") as f:
                    stat = f.read()
                with open(f"{base}/schedstat", "rb") as f:
                    slices = f.read().split()[2]
            except (OSError, IndexError):
                return None  # gone: waitpid will say so
            if stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"S":
                return None
            runs.append(slices)
        return runs

    def _retry_blocked(self) -> bool:
        tr = self.tracer
        progressed = False
        for task in tr.blocked():
            try:
                if tr.retry(task):
                    progressed = True
                    continue
            except TraceeGone:
                progressed = True
                continue
            if self._deliverable_signal(task):
                self._interrupt(task)
                progressed = True
        return progressed

    def _interrupt(self, task: Task) -> None:
        """A signal is pending for a task blocked in the simulation: end its syscall with EINTR so
        the kernel delivers the signal as it would to a sleeping task."""
        sc = task.blocked
        e = self.time.interrupted(sc) if sc is not None else errno.EINTR
        try:
            self.tracer.complete(task, Errno(e))
        except TraceeGone:
            pass

    @staticmethod
    def _deliverable_signal(task: Task) -> bool:
        """Is a signal pending that the task neither blocks nor ignores? (A task stopped by us
        cannot take it: the kernel delivers signals only on the way back to user space.)"""
        try:
            fd = os.open(f"/proc/{task.process.pid}/task/{task.tid}/status", os.O_RDONLY)
            try:
                status = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            return False
        masks = dict(_SIGNAL_MASKS.findall(status))
        pending = int(masks.get(b"SigPnd", b"0"), 16) | int(masks.get(b"ShdPnd", b"0"), 16)
        if not pending:
            return False
        blocked = int(masks.get(b"SigBlk", b"0"), 16)
        sc = task.blocked
        if sc is not None and sc.name == "rt_sigsuspend":
            blocked = sc.state if isinstance(sc.state, int) else blocked  # the mask it waits with
        return bool(pending & ~blocked & ~int(masks.get(b"SigIgn", b"0"), 16))

    def _fire_timers(self) -> None:
        for pid in {t.process.pid for t in self.tracer.tasks.values()}:
            proc = self.emulation.processes.get(pid)
            if proc is not None and self.time.fire_timer(proc):
                try:
                    os.kill(pid, signal.SIGALRM)
                except ProcessLookupError:
                    pass

    def _next_deadline(self) -> Optional[float]:
        dates = [t.blocked_on.deadline for t in self.tracer.blocked()
                 if t.blocked_on is not None and t.blocked_on.deadline is not None]
        for pid in {t.process.pid for t in self.tracer.tasks.values()}:
            proc = self.emulation.processes.get(pid)
            d = proc is not None and self.time.timer_deadline(proc)
            if d:
                dates.append(d)
        if self.spec.kill_time is not None:
            dates.append(self.spec.kill_time)
        return min(dates) if dates else None


_SIGNAL_MASKS = re.compile(rb"^(SigPnd|ShdPnd|SigBlk|SigIgn):\s*([0-9a-f]+)", re.M)


def _fmt(result) -> str:
    if isinstance(result, Value):
        return str(result.value)
    if isinstance(result, Errno):
        return f"-1 {errno.errorcode.get(result.errno, result.errno)}"
    return result.__class__.__name__.lower()


class Emulation:
    """One simulated platform and every process running on it."""

    def __init__(self, scenario: Scenario, config: RunConfig):
        self.scenario = scenario
        self.config = config
        self.sim = sim.Simulation(scenario.platform, network_model=config.network_model,
                                  extra_config=config.simgrid_config, log=config.simgrid_log or sim.QUIET_LOGS)
        self.clock = VirtualClock(sim.now, config.epoch)
        hosts = [(h.name, h.ip) for h in self.sim.platform_info.hosts]
        self.network = Network(Addressing(hosts), keep_data=config.mediate == "full-mediation")
        if config.pcap_dir is not None:
            self.network.capture = Capture(config.pcap_dir, [name for name, _ in hosts])
        self.hosts_file = self._write_hosts_file(hosts)
        self.processes: dict[int, Process] = {}
        self.stopping = False
        self.actors = [ProcessActor(self, spec, i) for i, spec in enumerate(scenario.processes)]

    @staticmethod
    def _write_hosts_file(hosts) -> str:
        """What tracees read instead of /etc/hosts: the platform's host names."""
        fd, path = tempfile.mkstemp(prefix="simterpose-hosts-")
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += hosts_file_lines(hosts)  # issue 14: aliases for names programs cannot resolve
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.close(fd)
        return path

    def actor_idle(self, actor: ProcessActor) -> None:
        """An actor waits for something only another process can do (a live emulation cares)."""

    def find_process(self, pid: int) -> Optional[Process]:
        return self.processes.get(pid)

    def _stopper(self) -> None:
        sim.sleep_until(self.config.stop_time)
        self.stopping = True
        for a in self.actors:
            a.notify()

    def run(self) -> list[ProcessRecord]:
        for a in self.actors:
            self.sim.spawn(f"{a.record.index}:{Path(a.spec.argv[0]).name}", a.spec.host, a)
        if self.config.stop_time is not None:
            self.sim.spawn("stop-time", self.actors[0].spec.host if self.actors else None,
                           self._stopper, daemon=True)
        try:
            self.sim.run()
        except sim.Deadlock:
            pass  # each blocked actor recorded what it was waiting for
        finally:
            os.unlink(self.hosts_file)
            if self.network.capture is not None:
                self.network.capture.close()
        self.final_time = self.sim.now()
        return [a.record for a in self.actors]
