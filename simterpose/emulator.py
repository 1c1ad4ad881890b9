"""Real processes on a simulated platform: what a run is made of.

`Emulation` holds the platform (SimGrid), the simulated network, and one `ScenarioProcess` per
process of the scenario (its host, its policies, its record, its logs). The processes themselves
are driven by ONE tracer loop on ONE SimGrid actor (`simterpose.scheduler`): every tracee of every
scenario process, in lock-step with the simulated clock.
"""
from __future__ import annotations

import ctypes
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import sim, syscall_table
from .busy_wait import DEFAULT_LATENCY
from .epoll import EpollPolicy
from .local_files import LocalPolicy
from .net.addressing import Addressing
from .net.mediation import MediationPolicy
from .net.pcap import Capture
from .net.policy import SocketPolicy
from .net.sockets import Network, slow_start_applies
from .proc_policy import ProcPolicy
from .progress import Progress
from .randomness import DEFAULT_SEED, RandomnessPolicy
from .scenario import ProcessSpec, Scenario, hosts_file_lines
from .scheduler import Scheduler
from .syscall_log import SyscallLog
from .time.clock import DEFAULT_EPOCH, VirtualClock, to_ns
from .time.policy import TimePolicy
from .time.posix_timers import PosixTimerPolicy
from .time.timerfd import TimerFdPolicy
from .tracer.engine import Process, Tracer, status_to_exit_code


@dataclass
class RunConfig:
    network_model: str = "CM02"           # run_cmd.DEFAULT_NETWORK_MODEL (docs/compare.md)
    tcp_slow_start: str = "auto"          # auto | on | off (net/sockets.py, slow_start_applies)
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
    unblocked_syscall_latency: float = DEFAULT_LATENCY  # busy-wait steps' cost (busy_wait.py); 0: off
    seed: int = DEFAULT_SEED             # every random byte of the run derives from it (randomness.py)
    # Each scenario process in a process group of its own (`simterpose run`): a Ctrl-C at the
    # terminal reaches simterpose only, which stops the run and reports the processes as running.
    own_process_group: bool = False

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
        self.slow_start = slow_start_applies(self.tcp_slow_start, self.network_model)  # ValueError
        if not 0 <= self.unblocked_syscall_latency < 1:
            raise ValueError("--unblocked-syscall-latency must be >= 0 and < 1 s")


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
    interrupted: bool = False            # still running when the run was interrupted (Ctrl-C, SIGTERM)

    @property
    def ok(self) -> bool:
        if self.error is not None or self.exit_status is None:
            return False
        return self.expected_exit is None or self.exit_status == self.expected_exit

    def virtual(self) -> dict:
        return {"host": self.host, "argv": list(self.argv), "exit_status": self.exit_status,
                "start": self.start, "end": self.end, "error": self.error}


_ADDR_NO_RANDOMIZE = 0x0040000


def disable_aslr_for_children() -> None:
    """Address-space randomisation off for the processes this thread starts (the personality is
    per thread and inherited by children): their memory layout, hence any pointer they print or pass
    to a syscall (the .syscalls log shows arguments), is the same from one run to the next."""
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(0xFFFFFFFF)
    if current != -1:
        libc.personality(current | _ADDR_NO_RANDOMIZE)


class ScenarioProcess:
    """One process of the scenario (and everything it forks) on its simulated host: the services
    its policies use (`now`, `tracer`, `emulation`, `spec`, `host`), its policies, its record."""

    def __init__(self, emulation: "Emulation", spec: ProcessSpec, index: int):
        self.emulation = emulation
        self.config = emulation.config
        self.spec = spec
        self.index = index
        self.host = emulation.sim.host(spec.host)
        self.record = ProcessRecord(index, spec.host, list(spec.argv), spec.expected_exit)
        self.tracer: Optional[Tracer] = None   # the run's one tracer, set when the process starts
        self.time = TimePolicy(self)
        self.proc = ProcPolicy(self)
        full = emulation.config.mediate == "full-mediation"
        self.net = (MediationPolicy if full else SocketPolicy)(self, emulation.network)
        self.timerfd = TimerFdPolicy(self)
        self.timers = PosixTimerPolicy(self)
        self.local = LocalPolicy(self)
        self.epoll = EpollPolicy(self)
        self.random = RandomnessPolicy(self)
        self.modules = {syscall_table.TIME: self.time, syscall_table.TIMERFD: self.timerfd,
                        syscall_table.PTIMER: self.timers,
                        syscall_table.PROC: self.proc, syscall_table.NET: self.net,
                        syscall_table.LOCAL: self.local, syscall_table.EPOLL: self.epoll,
                        syscall_table.RANDOM: self.random}
        self.handlers: dict[int, object] = {}   # syscall number -> bound handler, filled lazily
        self.log: Optional[SyscallLog] = None
        self._files: list = []
        self.killed = False
        self.started = False
        self.finished = False
        self.wall0 = 0.0
        # Set by a live emulation (ctrld --mediate): where output goes, who hears of start and exit.
        self.stdout_fd: Optional[int] = None
        self.stderr_fd: Optional[int] = None
        self.on_start = None   # (process) -> None, once the root process runs
        self.on_exit = None    # (process) -> None, when the whole tree is gone

    # -- services for the policy modules --------------------------------------------------------
    @staticmethod
    def now() -> float:
        return sim.now()

    def cpu_charged_ns(self, process: Optional[Process]) -> int:
        # Summed in seconds, rounded once: the same rounding as the clocks' (to_ns of a date).
        return 0 if process is None else to_ns(process.data.get("cpu_charged", 0.0))

    def cpu_clock_process(self, clock_id: int, caller: Process) -> Optional[Process]:
        """The process whose computation the CPU-time clock `clock_id` (negative: from
        clock_getcpuclockid or pthread_getcpuclockid, or glibc's own encoding of
        CLOCK_PROCESS_CPUTIME_ID for timer_create) reads: the id is ~(tid_or_pid << 3), a thread's
        when CPUCLOCK_PERTHREAD (4) is set, 0 for the caller's (linux/posix-timers.h). A thread's
        clock reads its process's here. None if no traced process or thread has that id."""
        ident = ~(clock_id >> 3)
        if ident == 0:
            return caller
        if clock_id & 4:
            task = self.emulation.scheduler.tracer.tasks.get(ident)
            return task.process if task is not None else None
        return self.emulation.find_process(ident)

    def handler(self, nr: int, module: str, method: str):
        h = self.handlers.get(nr)
        if h is None:
            h = self.handlers[nr] = getattr(self.modules[module], method)
        return h

    def vpid(self, pid: int):
        """A process as the .syscalls log names it: its rank in the tree (0: the root, then in fork
        order), not its real pid, so that two runs give byte-identical logs."""
        try:
            return self.record.pids.index(pid)
        except ValueError:
            return f"pid {pid}"

    # -- life cycle (called by the scheduler) ---------------------------------------------------
    def start(self, tracer: Tracer) -> None:
        spec, cfg = self.spec, self.config
        self.started = True
        self.tracer = tracer
        out = err = None
        if cfg.log_dir is not None:
            stem = cfg.log_dir / f"{self.record.index}-{spec.host}-{Path(spec.argv[0]).name}"
            out = open(f"{stem}.stdout", "wb")
            err = open(f"{stem}.stderr", "wb")
            # Block-buffered: a line-buffered log cost a write(2) per intercepted syscall; the file
            # is flushed when the process ends (`finish`), and on Ctrl-C/SIGTERM too.
            log = open(f"{stem}.syscalls", "w", buffering=1 << 16)
            self.log = SyscallLog(log, self.vpid)
            self._files = [out, err, log]
        out_fd = out.fileno() if out else self.stdout_fd
        err_fd = err.fileno() if err else self.stderr_fd
        env = dict(os.environ)
        env.update(spec.env)
        in_fd = None
        if cfg.own_process_group and os.isatty(0):
            # Out of the terminal's foreground group, a read of the terminal would stop the process
            # (SIGTTIN) over and over; and a simulated process cannot wait for a person anyway.
            self._files.append(open(os.devnull, "rb"))
            in_fd = self._files[-1].fileno()
        self.wall0 = time.perf_counter()
        self.record.start = sim.now()
        root = tracer.spawn(spec.argv, env=env, cwd=spec.cwd, path=spec.binary, stdin=in_fd, stdout=out_fd,
                            stderr=err_fd, owner=self)
        self.record.pids.append(root.pid)
        self.emulation.processes[root.pid] = root
        self.root = root
        if self.on_start is not None:
            self.on_start(self)

    def root_exited(self, status: int) -> None:
        self.record.end = sim.now()
        self.record.exit_status = status_to_exit_code(status)
        if os.WIFSIGNALED(status):
            self.record.signal = os.WTERMSIG(status)

    def note_error(self, message: str) -> None:
        if self.record.error is None:
            self.record.error = message

    def finish(self) -> None:
        """The whole tree is gone (or never started)."""
        if self.finished:
            return
        self.finished = True
        if self.record.end is None and self.started:  # a process that never ran has no end date
            self.record.end = sim.now()
        if self.started:
            self.record.wall = time.perf_counter() - self.wall0
        for f in self._files:
            f.close()
        self._files = []
        if self.on_exit is not None:
            self.on_exit(self)




class Emulation:
    """One simulated platform and every process running on it."""

    def __init__(self, scenario: Scenario, config: RunConfig):
        self.scenario = scenario
        self.config = config
        # Raw contexts: the whole run is one Python actor (the scheduler), so simcalls cost ~2 us
        # instead of an OS-thread hand-off each (FACTS.md section 3).
        self.sim = sim.Simulation(scenario.platform, network_model=config.network_model,
                                  extra_config=config.simgrid_config, log=config.simgrid_log or sim.QUIET_LOGS,
                                  contexts="raw")
        # ns-3 only builds the paths of one-link routes: the hosts that will talk must be joined by them
        self.sim.require_connected([p.host for p in scenario.processes] or self.sim.host_names)
        self.clock = VirtualClock(sim.now, config.epoch)
        hosts = [(h.name, h.ip) for h in self.sim.platform_info.hosts]
        # IPv6 addresses: only where the platform gives one (`<prop id="ip6">`), so that name
        # lookups of IPv4-only platforms (AF_UNSPEC: IPv6 first) stay as they are.
        ip6 = {h.name: h.props["ip6"] for h in self.sim.platform_info.hosts if h.props.get("ip6")}
        silent = frozenset(h.name for h in self.sim.platform_info.hosts if h.silent)
        self.network = Network(Addressing(hosts, ip6=ip6, silent=silent), keep_data=config.mediate == "full-mediation")
        self.network.control_by_timer = config.network_model == "ns-3"
        self.network.slow_start = config.slow_start
        if config.pcap_dir is not None:
            self.network.capture = Capture(config.pcap_dir, [name for name, _ in hosts])
        self.hosts_file = self._write_hosts_file(hosts, {name: self.network.addressing.hosts[name].ip6
                                                         for name in ip6})
        self.processes: dict[int, Process] = {}
        # The local waits of the run (simterpose/local_files.py): futex queues by (pid, address),
        # and the pipes tracees created ("pipe:[inode]"), the only ones whose waits are ours.
        self.futexes: dict = {}
        self.tracee_pipes: set = set()
        self.fifos: dict = {}   # (st_dev, st_ino) -> local_files.Fifo: FIFOs tracees opened by path
        self.stopping = False
        # Ctrl-C / SIGTERM (`interrupt`): the signal number, and the simulated date it stopped the run at
        self.interrupted: Optional[int] = None
        self.interrupted_at: Optional[float] = None
        self.progress: Optional[Progress] = None  # progress line / heartbeat, polled by the scheduler
        self.actors = [ScenarioProcess(self, spec, i) for i, spec in enumerate(scenario.processes)]
        self.scheduler = Scheduler(self)
        self.final_time = 0.0

    @staticmethod
    def _write_hosts_file(hosts, ip6: dict) -> str:
        """What tracees read instead of /etc/hosts: the platform's host names, with an AAAA entry
        (an IPv6 line, same names) for each host that has an IPv6 address."""
        fd, path = tempfile.mkstemp(prefix="simterpose-hosts-")
        # World-readable as /etc/hosts is: mkstemp's 0600 kept out processes that dropped root
        # before resolving names (squid as its cache_effective_user: "Permission denied").
        os.fchmod(fd, 0o644)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        v4_lines = hosts_file_lines(hosts)  # aliases for names programs cannot resolve
        lines += v4_lines
        lines += [ip6[name] + line[len(ip):] for (name, ip), line in zip(hosts, v4_lines, strict=True)
                  if name in ip6]
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.close(fd)
        return path

    def interrupt(self, signum: int) -> None:
        """Stop the run now (called from a Python signal handler, between two bytecodes of the loop):
        every process still running is marked as interrupted and SIGKILLed at once — so that even a
        tracee computing without syscalls stops — and the loop ends at its next iteration, without
        advancing the clock. Processes not started yet never start. Idempotent."""
        if self.interrupted is not None:
            return
        self.interrupted = signum
        self.interrupted_at = sim.now()  # the loop does not advance the clock past it (Scheduler._loop)
        for owner in self.actors:
            if owner.started and not owner.finished:
                owner.record.interrupted = True
        for tid in list(self.scheduler.tracer.tasks):
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def find_process(self, pid: int) -> Optional[Process]:
        return self.processes.get(pid)

    def run(self, requests=None, on_request=None) -> list[ProcessRecord]:
        """Run the scenario to its end (every process gone). A live emulation passes a queue of
        requests and the function that handles one (see simterpose.live)."""
        first_host = self.actors[0].spec.host if self.actors else self.sim.host_names[0]
        self.sim.spawn("simterpose", first_host, self.scheduler.run, requests, on_request)
        try:
            self.sim.run(check_deadlock=False)
        finally:
            os.unlink(self.hosts_file)
            if self.network.capture is not None:
                self.network.capture.close()
        self.final_time = self.sim.now()
        return [a.record for a in self.actors]

