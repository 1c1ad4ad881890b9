"""A live emulation: processes submitted while the simulation runs (`ctrld --mediate`).

The simulation runs in its own thread, driven by the run's one tracer loop (simterpose.scheduler),
which also admits new processes: each request becomes a `ScenarioProcess` started at the current
simulated date on its host, so processes launched by different requests (or clients) share one
simulated network and clock.

When is "now"? While some process runs or waits for a simulated date, the simulation advances and
the loop looks at its queue every `quantum` of simulated time. When every process waits for
something only another process could do (a server in accept, nothing in flight), nothing can
happen until the next request: the loop then blocks on its queue for real — the simulated clock
stays where it is and no CPU is burnt — and the next request starts at that date.

Thread safety: `launch`, `kill`, `status` and `close` may be called from any thread (the daemon's
event loop). Callbacks (`on_start`, `on_exit`, `on_listen`) are called from simulation threads:
hand them over to your own loop (e.g. `loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import sim
from .emulator import Emulation, RunConfig, ScenarioProcess
from .scenario import ProcessSpec, Scenario, load_platform_info


class LaunchError(Exception):
    def __init__(self, errno_: int, message: str):
        self.errno = errno_
        super().__init__(message)


@dataclass(eq=False)
class LiveProcess:
    """What the caller holds for one launched process."""

    host: str
    argv: list
    on_start: Optional[Callable[["LiveProcess"], None]] = None
    on_exit: Optional[Callable[["LiveProcess"], None]] = None
    pid: Optional[int] = None
    sim_start: Optional[float] = None
    sim_end: Optional[float] = None
    exit_status: Optional[int] = None   # shell style: code, or 128+signal
    signal: Optional[int] = None
    error: Optional[str] = None
    actor: Optional[ScenarioProcess] = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.pid is not None and self.sim_end is None


class LiveEmulation:
    def __init__(self, platform: str | os.PathLike, config: RunConfig, quantum: float = 0.01):
        self._scenario = Scenario(path=None, platform=Path(platform), processes=[])
        self._config = config
        self.platform_info = load_platform_info(platform)  # bad input fails here, in the caller
        self.emulation: Optional[Emulation] = None
        self._ready = threading.Event()
        self.quantum = quantum
        self.processes: list[LiveProcess] = []
        self.on_listen: Optional[Callable[[str, int], None]] = None
        self._requests: queue.Queue = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="simterpose-live", daemon=False)
        self.error: Optional[BaseException] = None
        self._clock = 0.0

    # -- any thread ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the simulation thread; raises what creating the simulation raised."""
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.platform_info.hosts]

    def now(self) -> float:
        """The simulated date (as last seen by the loop; exact while the simulation is idle)."""
        em = self.emulation
        return em.scheduler.now_seen if em is not None else 0.0

    def launch(self, host: str, argv: list[str], env: Optional[dict] = None, cwd: Optional[str] = None,
               stdout: Optional[int] = None, stderr: Optional[int] = None,
               on_start=None, on_exit=None) -> LiveProcess:
        """Start argv on `host` at the current simulated date. Raises LaunchError (with an errno) for
        an unknown host or a program that cannot be executed, before anything starts. The given
        stdout/stderr descriptors are duplicated, so the caller may close its copies."""
        if host not in self.hosts:
            raise LaunchError(22, f"unknown simulated host {host!r} (hosts: {', '.join(self.hosts)})")
        if not argv:
            raise LaunchError(22, "empty command")
        program = argv[0]
        path = program if "/" in program else shutil.which(program, path=(env or os.environ).get("PATH"))
        if cwd is not None and path is not None and not os.path.isabs(path):
            path = os.path.join(cwd, path)
        if path is None or not os.path.exists(path):
            raise LaunchError(2, f"{program}: No such file or directory")
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise LaunchError(13, f"{program}: Permission denied")
        proc = LiveProcess(host, list(argv), on_start, on_exit)
        fds = [os.dup(fd) if fd is not None else None for fd in (stdout, stderr)]
        spec = ProcessSpec(host=host, argv=list(argv), binary=os.path.abspath(path), env=dict(env or {}),
                           cwd=cwd, start_time=0.0, kill_time=None, expected_exit=None, source="ctrld")
        self.processes.append(proc)
        self._requests.put(("launch", proc, spec, fds))
        return proc

    def kill(self, proc: LiveProcess, sig: int) -> None:
        if proc.pid is not None and proc.sim_end is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        # The actor may be waiting on the simulation: the gateway wakes it to notice the signal.
        self._requests.put(("wake", proc))

    def status(self) -> dict:
        per_host: dict[str, list] = {h: [] for h in self.hosts}
        for p in self.processes:
            if p.running:
                per_host[p.host].append({"pid": p.pid, "argv": p.argv, "sim_start": p.sim_start})
        return {"simulated_time": self.now(), "hosts": per_host}

    def close(self, timeout: float = 10.0) -> None:
        """Kill what still runs and end the simulation."""
        self._closing = True
        for p in self.processes:
            if p.running:
                self.kill(p, 9)
        self._requests.put(("close",))
        self._thread.join(timeout)

    # -- simulation threads --------------------------------------------------------------------
    def _run(self) -> None:
        # SimGrid's engine must live and run in one thread: it is created here, not in __init__.
        try:
            self.emulation = Emulation(self._scenario, self._config)
            self.emulation.network.on_listen = self._listened
            self.emulation.scheduler.quantum = self.quantum
        except BaseException as e:  # noqa: B036 - handed to start()'s caller
            self.error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self.emulation.run(requests=self._requests, on_request=self._admit)
        except BaseException as e:  # noqa: B036 - reported to the daemon, which keeps running
            self.error = e

    def _listened(self, host: str, port: int) -> None:
        if self.on_listen is not None:
            self.on_listen(host, port)

    def _admit(self, item) -> bool:
        """Handle one request, in the simulation's thread; False when the emulation must end."""
        kind = item[0]
        scheduler = self.emulation.scheduler
        if kind == "close":
            return False
        if kind == "wake":
            scheduler.signal_sent()  # the process was sent a signal: a blocked call may end
            return True
        _, proc, spec, fds = item
        spec = dataclasses.replace(spec, start_time=sim.now())
        actor = ScenarioProcess(self.emulation, spec, len(self.emulation.actors))
        self.emulation.actors.append(actor)
        actor.stdout_fd, actor.stderr_fd = fds
        proc.actor = actor

        def started(a: ScenarioProcess) -> None:
            proc.pid = a.record.pids[0]
            proc.sim_start = a.record.start
            for fd in fds:
                if fd is not None:
                    os.close(fd)  # the tracee has its own copies now
            if proc.on_start is not None:
                proc.on_start(proc)

        def ended(a: ScenarioProcess) -> None:
            r = a.record
            proc.sim_end = r.end if r.end is not None else sim.now()
            proc.exit_status, proc.signal, proc.error = r.exit_status, r.signal, r.error
            if proc.pid is None:  # never started: its descriptors are still ours
                for fd in fds:
                    if fd is not None:
                        os.close(fd)
            if proc.on_exit is not None:
                proc.on_exit(proc)

        actor.on_start, actor.on_exit = started, ended
        scheduler.start_process(actor)
        return True
