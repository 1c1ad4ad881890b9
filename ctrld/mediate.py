"""`ctrld --mediate`: the daemon owns one live emulation (simterpose.live) on a SimGrid platform.

Every RunCommand that does not ask for a plain process becomes a process of that emulation, on a
simulated host, started at the current simulated date; processes launched by different requests or
clients share the simulated network and clock.  The emulation runs in its own threads; its
callbacks come back to the daemon's event loop through `hop` (call_soon_threadsafe), so the rest of
the daemon stays single-threaded.

simterpose (and SimGrid) are imported only here, only when `--mediate` is given: a plain daemon's
start-up time and memory are unchanged.
"""

from __future__ import annotations

import socket
import threading

from ctrld.auth import ConfigError

MODES = ("address-translation", "full-mediation")
THREAD_NAME = "simterpose-live"  # simterpose.live's simulation thread


def to_ns(seconds: float | None) -> int:
    """Simulated seconds -> int nanoseconds (-1: no date).  Rounded, so that 0.22209999999999996
    (SimGrid's double) and 0.2221 give the same 222100000."""
    return -1 if seconds is None else round(seconds * 1e9)


class Mediator:
    def __init__(self, loop, mode: str, platform: str, *, network_model: str | None = None,
                 cpu_model: str | None = None, default_host: str | None = None,
                 tcp_slow_start: str | None = None):
        from simterpose.emulator import RunConfig
        from simterpose.live import LaunchError, LiveEmulation

        self.loop = loop
        self.mode = mode
        self.platform = platform
        self.LaunchError = LaunchError
        kw = {"mediate": mode}
        if network_model:
            kw["network_model"] = network_model
        if cpu_model:
            kw["cpu_model"] = cpu_model
        if tcp_slow_start:
            kw["tcp_slow_start"] = tcp_slow_start
        try:
            config = RunConfig(**kw)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        try:
            self.live = LiveEmulation(platform, config)
            self.live.start()
        except Exception as e:  # ScenarioError, SimulationError, OSError...: all mean a bad set-up
            raise ConfigError(f"--platform {platform}: {e}") from None
        self.hosts: list[str] = self.live.hosts
        self.ips = {h.name: getattr(h, "ip", "") or "" for h in self.live.platform_info.hosts}
        if not self.hosts:
            self.live.close()
            raise ConfigError(f"--platform {platform}: no host")
        if default_host and default_host not in self.hosts:
            self.live.close()
            raise ConfigError(f"--default-host {default_host}: not a host of {platform} "
                              f"(hosts: {', '.join(self.hosts)})")
        self.default_host = default_host or self.hosts[0]
        self.on_listen = None  # (host, port, sim_ns) -> None, called in the event loop
        self.live.on_listen = self._listened
        self.closed = False

    # ------------------------------------------------------------------ clock
    def now_ns(self) -> int:
        """The simulated clock as the emulation's gateway last saw it (exact while idle)."""
        return to_ns(self.live.now())

    @property
    def failed(self) -> str | None:
        err = self.live.error
        return None if err is None else f"{type(err).__name__}: {err}"

    # ------------------------------------------------------------------ threads -> loop
    def hop(self, fn, *args) -> None:
        """From a simulation thread: run fn(*args) in the daemon's loop."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: the daemon is shutting down

    def _listened(self, host: str, port: int) -> None:
        # Simulation thread: the simulated date of the listen is exact here.
        from simterpose import sim

        try:
            t = to_ns(sim.now())
        except Exception:
            t = self.now_ns()
        if self.on_listen is not None:
            self.hop(self.on_listen, host, port, t)

    def listening(self) -> set[tuple[str, int]]:
        """(host, port) of every simulated TCP socket in LISTEN right now.

        Read from the emulation's socket table without a lock: `list(dict.items())` is one C call
        under the GIL, and each socket's `listening` flag is a plain attribute.
        """
        emu = self.live.emulation
        net = getattr(emu, "network", None)
        bound = getattr(net, "bound", None)
        if not bound:
            return set()
        out = set()
        for (host, kind, port), table in list(bound.items()):
            # the table holds a list of sockets per address (SO_REUSEADDR / SO_REUSEPORT share one)
            if kind == socket.SOCK_STREAM and any(getattr(s, "listening", False)
                                                  for sockets in list(table.values()) for s in list(sockets)):
                out.add((host, port))
        return out

    # ------------------------------------------------------------------ processes
    def launch(self, host: str, argv, env, cwd, stdout: int, stderr: int, on_start, on_exit):
        """Raises self.LaunchError (with .errno) when the process cannot be started."""
        return self.live.launch(host, argv, env, cwd, stdout=stdout, stderr=stderr,
                                on_start=on_start, on_exit=on_exit)

    def kill(self, proc, sig: int) -> None:
        self.live.kill(proc, sig)

    def close(self, timeout: float = 5.0) -> bool:
        """Kill what still runs and end the simulation; False if its thread did not end in time."""
        if not self.closed:
            self.closed = True
            self.live.close(timeout)
        return not self.running

    @property
    def running(self) -> bool:
        return any(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate())
