"""A live emulation: processes submitted while the simulation runs (`ctrld --mediate`).

The simulation runs in its own thread. A *gateway* actor admits new processes: each request becomes
a `ProcessActor` started at the current simulated date on its host, so processes launched by
different requests (or clients) share one simulated network and clock.

When is "now"? While some process runs or waits for a simulated date, the simulation advances and
the gateway looks at its queue every `quantum` of simulated time. When every process waits for
something only another process could do (a server in accept, nothing in flight), nothing can
happen until the next request: the gateway then blocks on its queue for real — the simulated clock
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
from .emulator import Emulation, ProcessActor, RunConfig
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
    actor: Optional[ProcessActor] = field(default=None, repr=False)

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
        self._gate = sim.Wakeup()
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
        """The simulated date (as last seen by the gateway; exact while the simulation is idle)."""
        return self._clock

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
            self.emulation.actor_idle = self._actor_idle
            self.emulation.sim.spawn("gateway", self.hosts[0], self._gateway)
        except BaseException as e:  # noqa: B036 - handed to start()'s caller
            self.error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self.emulation.sim.run(check_deadlock=False)
        except BaseException as e:  # noqa: B036 - reported to the daemon, which keeps running
            self.error = e
        finally:
            try:
                os.unlink(self.emulation.hosts_file)
            except OSError:
                pass

    def _listened(self, host: str, port: int) -> None:
        if self.on_listen is not None:
            self.on_listen(host, port)

    def _actor_idle(self, actor: ProcessActor) -> None:
        self._gate.notify_all()

    def _all_idle(self) -> bool:
        actors = [p.actor for p in self.processes if p.actor is not None and p.sim_end is None]
        return all(a.idle for a in actors) and self.emulation.network.in_flight == 0

    def _gateway(self) -> None:
        while True:
            self._clock = sim.now()
            if self._admit_all():
                return
            sim.yield_()  # whatever became ready at this date runs before we judge idleness
            self._clock = sim.now()
            if not self._requests.empty():
                continue
            if self._all_idle():
                # Nothing can happen before the next request: wait for it for real, clock frozen.
                item = self._requests.get()
                if self._admit(item):
                    return
                continue
            self._gate.wait(self.quantum)

    def _admit_all(self) -> bool:
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                return False
            if self._admit(item):
                return True

    def _admit(self, item) -> bool:
        """Handle one request; True when the emulation must end."""
        kind = item[0]
        if kind == "close":
            return True
        if kind == "wake":
            proc = item[1]
            if proc.actor is not None:
                proc.actor.notify()
            return False
        _, proc, spec, fds = item
        spec = dataclasses.replace(spec, start_time=sim.now())
        actor = ProcessActor(self.emulation, spec, len(self.emulation.actors))
        self.emulation.actors.append(actor)
        actor.stdout_fd, actor.stderr_fd = fds
        proc.actor = actor

        def started(a: ProcessActor) -> None:
            proc.pid = a.record.pids[0]
            proc.sim_start = a.record.start
            for fd in fds:
                if fd is not None:
                    os.close(fd)  # the tracee has its own copies now
            if proc.on_start is not None:
                proc.on_start(proc)

        def ended(a: ProcessActor) -> None:
            r = a.record
            proc.sim_end = r.end if r.end is not None else sim.now()
            proc.exit_status, proc.signal, proc.error = r.exit_status, r.signal, r.error
            if proc.pid is None:  # never started: its descriptors are still ours
                for fd in fds:
                    if fd is not None:
                        os.close(fd)
            self._gate.notify_all()
            if proc.on_exit is not None:
                proc.on_exit(proc)

        actor.on_start, actor.on_exit = started, ended
        self.emulation.sim.spawn(f"{actor.record.index}:{Path(spec.argv[0]).name}", spec.host, actor)
        return False
