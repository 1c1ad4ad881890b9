"""The simulation: one SimGrid Engine, its hosts, actors and the operations actors perform.

Lifecycle (one per process — SimGrid allows a single Engine per process, ever; a second
:class:`Simulation` raises :class:`SimulationError` instead of letting SimGrid abort)::

    sim = Simulation("examples/platforms/two_hosts.xml", network_model="CM02")
    sim.spawn("client", "h1", client_fn, arg)      # before run(), or from inside any actor
    sim.run()                                       # from the main thread; returns when all actors ended
    sim.now()

Threads: the bindings use thread contexts — every actor is a real OS thread, but only one runs at a
time, and simulated time advances only when every actor is blocked inside SimGrid. Actor code may
block on real things (``waitpid``, a pipe): the clock simply waits for it. Call :meth:`Simulation.run`
from the main thread. If you run it in another thread, ``join()`` that thread before the interpreter
exits: an interpreter shutting down while SimGrid threads are alive segfaults.

Actor code calls the module-level operations (:func:`sleep_for`, :func:`execute`,
:func:`transfer_async`, :func:`wait_any`, :class:`Signal`, ...); they act on behalf of the calling
actor and its host. Calling them outside an actor is a SimGrid error.

Failures: an exception escaping an actor's function would abort the whole process in SimGrid; here
it is caught, recorded on the actor's :class:`ActorHandle`, every other actor is killed (``fail_fast``,
the default) and :meth:`Simulation.run` raises :class:`ActorFailed` from it. When the simulation ends
with non-daemon actors still blocked (SimGrid's "deadlock"), ``run()`` raises :class:`Deadlock`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import _compat, ns3
from ._compat import sg

#: Flow-level network models built into every SimGrid 3.32 and 4.x (``network/model``).
FLOW_MODELS = ("LV08", "CM02", "SMPI", "IB", "Constant")
#: Every model simterpose knows how to drive; ``ns-3`` only when SimGrid was built with it (Debian's
#: 3.32 is): :func:`network_models` asks the linked SimGrid.
NETWORK_MODELS = FLOW_MODELS + ("ns-3",)

DEFAULT_LOG = "root.thresh:critical"
#: What a Simulation logs unless told otherwise: critical messages only, and not SimGrid's deadlock
#: report ("Oops! Deadlock detected" and its listing, category ker_engine): a run that ends with
#: blocked processes is normal here, and each process's record says what it was waiting for.
QUIET_LOGS = (DEFAULT_LOG, "ker_engine.app:file:/dev/null", "ker_engine.add:no")


class SimulationError(Exception):
    """Misuse of the adapter, or a simulation that could not complete."""


_models_cache: "dict[str, str] | None" = None


def network_models() -> dict[str, str]:
    """The network models the linked SimGrid offers, with SimGrid's description of each.

    Asked in a subprocess (``--cfg=network/model:help`` prints the list and exits the process), once
    per process: about 0.2 s.
    """
    global _models_cache
    if _models_cache is None:
        import subprocess
        import sys

        code = "import simgrid; simgrid.Engine(['simterpose', '--cfg=network/model:help'])"
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""  # then only the flow-level models, which every SimGrid has
        models = {}
        for line in out.splitlines():
            name, sep, text = line.strip().partition(": ")
            if sep and line.startswith("  ") and " " not in name:
                models[name] = text.strip()
        _models_cache = models or {m: "" for m in FLOW_MODELS}
    return dict(_models_cache)


_hard_exit = False


def hard_exit_needed() -> bool:
    """Must this process end with ``os._exit``? SimGrid 3.32's ns-3 model crashes (SIGSEGV) in the
    static destructors run at a normal exit, after the simulation ended well: the CLI, the daemon and
    the prediction helper flush their outputs and skip them (:func:`exit_now`)."""
    return _hard_exit


def exit_now(status: int) -> None:
    """Flush Python's streams and end the process without running C++ static destructors."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


class ActorFailed(SimulationError):
    """An actor's function raised; the original exception is ``__cause__`` and ``.error``."""

    def __init__(self, actor: "ActorHandle"):
        self.actor = actor
        self.error = actor.error
        super().__init__(f"actor {actor.name!r} on host {actor.host!r} failed: {actor.error!r}")


class Deadlock(SimulationError):
    """The simulation ended while non-daemon actors were still blocked."""

    def __init__(self, actors: list["ActorHandle"], date: float):
        self.actors = actors
        self.date = date
        names = ", ".join(a.name for a in actors)
        super().__init__(f"simulation ended at {date:.6f} s with blocked actors: {names}")


class SimTimeout(TimeoutError):
    """A blocking operation's simulated timeout expired (raised by :func:`recv`)."""


@dataclass(frozen=True)
class Host:
    """A simulated host: name, peak speed (flop/s), core count, and its ``ip`` property (or None)."""

    name: str
    speed: float
    cores: int
    ip: str | None
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RouteLink:
    """One link of a route as SimGrid built it (a split-duplex link shows as ``NAME_UP``/``NAME_DOWN``)."""

    name: str
    bandwidth: float  # bytes/s
    latency: float  # s
    sharing_policy: str  # SHARED, SPLITDUPLEX, FATPIPE, WIFI, NONLINEAR


@dataclass(frozen=True)
class Route:
    """The links SimGrid uses from one host to another, and the route's total latency."""

    links: tuple[RouteLink, ...]
    latency: float


# How long a route probe may take before we give up on it (it computes one route: milliseconds).
_ROUTE_PROBE_TIMEOUT = 30.0


def _probe_route(raw_src, raw_dst) -> "Route | None":
    """Ask SimGrid for the route in a forked child, so that SimGrid's answer to a missing route
    cannot take this process down.

    Measured on 3.32, a missing route is, depending on the zone's routing: an empty list (Full), a
    ValueError (Floyd), an abort (None, Dijkstra: "There can't be route in an Empty zone") or a
    segfault (two Full zones without a zoneRoute). Only the child suffers; it answers through a pipe.
    ``Host.route_to`` computes the route directly (no simcall), so it works in the child, where no
    other SimGrid thread exists. Costs one fork, about 1-3 ms.
    """
    import json
    import os
    import resource
    import select
    import signal as _signal

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(rfd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort here is an answer, not a bug
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)  # SimGrid's CRITICAL line and backtrace
            links, latency = raw_src.route_to(raw_dst)
            doc = {"latency": float(latency),
                   "links": [[lk.name, float(lk.bandwidth), float(lk.latency), _policy_name(lk)] for lk in links]}
            os.write(wfd, json.dumps(doc).encode())
            os._exit(0)
        except BaseException:  # noqa: B036 - whatever happens, the child must not return
            os._exit(1)
    os.close(wfd)
    chunks = []
    try:
        deadline = _ROUTE_PROBE_TIMEOUT
        while True:
            ready, _, _ = select.select([rfd], [], [], deadline)
            if not ready:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
                raise SimulationError(f"SimGrid took over {_ROUTE_PROBE_TIMEOUT:.0f} s to compute the route "
                                      f"{raw_src.name} -> {raw_dst.name}")
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        return None
    doc = json.loads(b"".join(chunks))
    return Route(tuple(RouteLink(*item) for item in doc["links"]), doc["latency"])


def _policy_name(link) -> str:
    try:
        policy = link.sharing_policy
        policy = policy() if callable(policy) else policy
        return str(getattr(policy, "name", policy)).rsplit(".", 1)[-1]
    except Exception:  # 3.32 exposes no getter for it
        return "?"


# --------------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------------

_current: "Simulation | None" = None
_current_lock = threading.Lock()


def current() -> "Simulation":
    """The process's Simulation (raises SimulationError if none was created)."""
    if _current is None:
        raise SimulationError("no Simulation exists in this process")
    return _current


class Simulation:
    """The process's single SimGrid Engine with a platform loaded.

    :param platform_xml: SimGrid platform file (``<platform version="4.1">``).
    :param network_model: value of SimGrid's ``network/model`` (set before the platform is loaded).
    :param extra_config: more ``--cfg=key:value`` settings, e.g. ``{"network/crosstraffic": 0}``.
    :param log: SimGrid ``--log`` setting(s); the default keeps only critical messages, deadlock
        reports excepted (:data:`QUIET_LOGS`).
    :param fail_fast: when an actor raises, kill every other actor at once (run() raises anyway).
    :param contexts: SimGrid's ``contexts/factory``: ``thread`` (any number of actors) or ``raw``
        (one Python actor only, much cheaper simcalls).
    """

    def __init__(
        self,
        platform_xml: str | Path,
        network_model: str = "LV08",
        extra_config: dict[str, Any] | None = None,
        *,
        log: str | Sequence[str] = QUIET_LOGS,
        fail_fast: bool = True,
        contexts: str = "thread",
    ):
        global _current
        platform = Path(platform_xml)
        if not platform.is_file():
            raise SimulationError(f"platform file not found: {platform}")
        if network_model not in FLOW_MODELS:
            offered = network_models()
            if network_model not in offered or network_model not in NETWORK_MODELS:
                usable = [m for m in offered if m in NETWORK_MODELS]
                raise SimulationError(f"unknown network model {network_model!r} (SimGrid {_compat.VERSION} "
                                      f"offers {', '.join(usable)})")
        # Read the platform ourselves first: a malformed file gets a ScenarioError with file:line,
        # instead of SimGrid aborting the process; and 3.32 exposes no host properties (the ip).
        from simterpose.scenario import load_platform_info  # pure Python, no simgrid

        self.platform_info = load_platform_info(platform)
        if network_model == "Constant" and self.platform_info.links:
            # SimGrid aborts ("Refusing to create the link") on the first link it parses.
            raise SimulationError(f"the Constant network model takes platforms without links (every transfer "
                                  f"costs a constant time); {platform} has {len(self.platform_info.links)}")
        self.ns3: "ns3.Ns3Topology | None" = None
        if network_model == "ns-3":
            # What SimGrid's ns-3 binding cannot build aborts or hangs the process: refuse it first.
            try:
                self.ns3 = ns3.Ns3Topology.from_platform(self.platform_info)
                ns3.check_tcp_model(str((extra_config or {}).get("ns3/TcpModel", "default")))
            except ns3.Ns3PlatformError as e:
                raise SimulationError(str(e)) from None
        with _current_lock:
            if _current is not None:
                raise SimulationError(
                    "only one SimGrid Engine may exist per process; run other simulations in a subprocess "
                    "(see simterpose.sim.predict)"
                )
            # Log settings first: SimGrid applies them before the --cfg ones, whose "Configuration
            # change" lines they then silence.
            args = ["simterpose"] + [f"--log={item}" for item in ([log] if isinstance(log, str) else list(log))]
            args.append(f"--cfg=network/model:{network_model}")
            if contexts != "thread":
                # Swapped contexts (raw) make every simcall ~100x cheaper than thread contexts, but
                # the 3.32 bindings support exactly ONE Python actor on them (FACTS.md section 3).
                args.append(f"--cfg=contexts/factory:{contexts}")
            for key, value in (extra_config or {}).items():
                if isinstance(value, bool):
                    value = "yes" if value else "no"
                args.append(f"--cfg={key}:{value}")
            try:
                self._engine = sg.Engine(args)
            except (ValueError, IndexError, RuntimeError) as exc:
                # A bad key is an IndexError listing all 200-odd keys: its first line says it all.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SimulationError(f"SimGrid refused a setting: {first}") from None
            _current = self
            if network_model == "ns-3":
                global _hard_exit
                _hard_exit = True
        self.platform = platform.resolve()
        self.network_model = network_model
        self.extra_config = dict(extra_config or {})
        self.fail_fast = fail_fast
        try:
            self._engine.load_platform(str(self.platform))
        except RuntimeError as exc:  # SimGrid's own parse/validation errors
            raise SimulationError(f"SimGrid rejected {self.platform}: {exc}") from None
        self._hosts = self._inspect_hosts()
        self._attach_wifi_stations()
        self._routes: dict[tuple[str, str], Route | None] = {}
        self._sealed = False
        self._actors: list[ActorHandle] = []
        self._failed: list[ActorHandle] = []

    # ---- platform -------------------------------------------------------------------------------
    def _inspect_hosts(self) -> dict[str, Host]:
        declared_ips = {h.name: h.declared_ip for h in self.platform_info.hosts}
        use_bindings = _compat.bindings_expose_properties()
        hosts = {}
        for raw in _compat.all_hosts(self._engine):
            name = raw.name
            ip = _compat.host_property(raw, "ip") if use_bindings else declared_ips.get(name)
            hosts[name] = Host(name, float(raw.speed), _compat.host_core_count(raw), ip, raw)
        return hosts

    def _attach_wifi_stations(self) -> None:
        """Attach every host of a ``routing="Wifi"`` zone to the zone's WIFI link(s).

        SimGrid's XML has no way to say at which rate a station talks to its access point: its own
        examples call ``Link::set_host_wifi_rate`` from code, and a transfer to a station left
        unattached aborts ("does not seem attached to that WIFI link"). The rate level is the host's
        ``wifi_mcs`` property (the name SimGrid's ns-3 model gives the modulation) as an index into the
        link's bandwidth list, 0 (the first rate) by default.
        """
        info = self.platform_info
        wifi_zones = {z for z, routing in info.zone_routing.items() if routing.lower() == "wifi"}
        for zone in wifi_zones:
            wifi_links = [lk for lk in info.links if lk.zone == zone and lk.sharing_policy.upper() == "WIFI"]
            for host in (h for h in info.hosts if h.zone == zone):
                try:
                    level = int(host.props.get("wifi_mcs", "0"))
                except ValueError:
                    raise SimulationError(f"host {host.name!r}: wifi_mcs must be an integer, got "
                                          f"{host.props['wifi_mcs']!r}") from None
                for lk in wifi_links:
                    if not 0 <= level < lk.rate_count:
                        raise SimulationError(f"host {host.name!r}: wifi_mcs {level} but link {lk.name!r} has "
                                              f"{lk.rate_count} rate(s)")
                    sg.Link.by_name(lk.name).set_host_wifi_rate(self._hosts[host.name].raw, level)

    @property
    def hosts(self) -> list[Host]:
        return list(self._hosts.values())

    @property
    def host_names(self) -> list[str]:
        return list(self._hosts)

    def host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise SimulationError(f"no host {name!r} in {self.platform.name}") from None

    def ip(self, name: str) -> str | None:
        return self.host(name).ip

    def _raw_host(self, host: "str | Host"):
        return self.host(host if isinstance(host, str) else host.name).raw

    def route(self, src: "str | Host", dst: "str | Host") -> Route | None:
        """The route SimGrid uses from ``src`` to ``dst``, or None if the platform has none.

        Two different hosts need links or latency on their route: SimGrid aborts a transfer on an
        empty one ("no connecting path"). A host to itself is never None unless SimGrid fails to
        answer (a ``routing="None"`` zone). Cached; each first question costs a fork (see
        :func:`_probe_route`), callable before run() or from any actor.
        """
        s = src if isinstance(src, str) else src.name
        d = dst if isinstance(dst, str) else dst.name
        key = (s, d)
        if key not in self._routes:
            if not self._sealed:
                # SimGrid seals the platform when the simulation starts; some routings compute their
                # tables only then (Dijkstra answers garbage, then aborts, before). Never seal again
                # once it runs: that stalls the transfers under way (measured: a ping-pong hangs).
                self._engine.netzone_root.seal()
                self._sealed = True
            route = _probe_route(self._raw_host(s), self._raw_host(d))
            if route is not None and s != d and not route.links and route.latency <= 0:
                route = None
            self._routes[key] = route
        return self._routes[key]

    def reachable(self, src: "str | Host", dst: "str | Host") -> bool:
        """Can SimGrid carry bytes from ``src`` to ``dst``? The Constant network model ignores routes;
        ns-3 uses the one-link routes only (:mod:`.ns3`)."""
        if self.network_model == "Constant":
            return True
        if self.ns3 is not None:
            return self.ns3.connected(_name(src), _name(dst))
        return self.route(src, dst) is not None

    def path_latency(self, src: "str | Host", dst: "str | Host") -> float:
        """One-way latency from ``src`` to ``dst``: of the path ns-3 builds under ns-3, else the sum
        of the latencies of SimGrid's route (0 without a route)."""
        if self.ns3 is not None:
            return self.ns3.latency(_name(src), _name(dst))
        route = self.route(src, dst)
        return route.latency if route is not None else 0.0

    def require_connected(self, hosts: Sequence[str]) -> None:
        """Under ns-3, every pair of ``hosts`` must be able to talk (raises SimulationError)."""
        if self.ns3 is not None:
            try:
                self.ns3.require_connected(list(dict.fromkeys(hosts)), self.platform_info)
            except ns3.Ns3PlatformError as e:
                raise SimulationError(str(e)) from None

    # ---- actors and time ------------------------------------------------------------------------
    def spawn(self, name: str, host: "str | Host", fn: Callable, *args, daemon: bool = False) -> "ActorHandle":
        """Start an actor running ``fn(*args)`` on ``host``, now (before run() or from an actor).

        A daemon actor is killed when the last non-daemon actor ends, and never counts as blocked.
        """
        raw_host = self._raw_host(host)
        handle = ActorHandle(self, name, raw_host.name, daemon)

        def body():
            handle._started = True
            if daemon:
                sg.Actor.self().daemonize()
            try:
                handle.result = fn(*args)
            except _compat.ActorKilled:
                if not handle.killed and not daemon:
                    # Nobody asked: SimGrid unwinds actors still blocked when it detects a deadlock.
                    handle.deadlocked = True
                handle.killed = True
                raise
            except BaseException as exc:  # noqa: B036 - must not escape into SimGrid (aborts the process)
                handle.error = exc
                self._failed.append(handle)
                if self.fail_fast:
                    for other in self._actors:
                        if other is not handle and not other.finished:
                            other.killed = True
                    sg.Actor.kill_all()
            finally:
                handle.finished = True

        self._actors.append(handle)
        handle._raw = _compat.create_actor(name, raw_host, body)
        return handle

    @property
    def actors(self) -> list["ActorHandle"]:
        return list(self._actors)

    def now(self) -> float:
        return _compat.engine_clock(self._engine)

    def run(self, *, check_deadlock: bool = True) -> None:
        """Run until no actor is left (or only blocked/daemon ones). Call from the main thread."""
        self._sealed = True  # the engine seals the platform as it starts
        thaw_clock()  # a date frozen by an earlier simulation of this process is not ours
        self._engine.run()
        self._raise_failures()
        if check_deadlock:
            blocked = [a for a in self._actors
                       if a.deadlocked or (not a.finished and not a.killed and not a.daemon)]
            if blocked:
                raise Deadlock(blocked, self.now())

    def run_until(self, date: float) -> None:
        """Run until simulated ``date`` (or until nothing is left to do); run()/run_until() may follow."""
        self._sealed = True
        self._engine.run_until(float(date))
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self._failed:
            first = self._failed[0]
            raise ActorFailed(first) from first.error


class ActorHandle:
    """What :meth:`Simulation.spawn` returns: the actor's state, plus kill/join."""

    def __init__(self, sim: Simulation, name: str, host: str, daemon: bool):
        self.sim = sim
        self.name = name
        self.host = host
        self.daemon = daemon
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.killed = False
        self.deadlocked = False  # was still blocked when the simulation ended
        self._started = False
        self._raw = None

    @property
    def pid(self) -> int:
        return int(self._raw.pid)

    def kill(self) -> None:
        """Kill the actor (from another actor). A blocked actor is unwound with SimGrid's ActorKilled."""
        if not self.finished:
            self.killed = True
            self._raw.kill()

    def join(self, timeout: float | None = None) -> bool:
        """From another actor: wait until this one ends; False if ``timeout`` (simulated s) expired."""
        if self.finished:
            return True
        self._raw.join(-1 if timeout is None else max(0.0, float(timeout)))
        return self.finished

    def __repr__(self) -> str:
        state = ("failed" if self.error else "deadlocked" if self.deadlocked else "killed" if self.killed
                 else "finished" if self.finished else "alive")
        return f"<ActorHandle {self.name!r} on {self.host!r} {state}>"


# --------------------------------------------------------------------------------------------------
# Activities
# --------------------------------------------------------------------------------------------------


class Activity:
    """An asynchronous SimGrid activity (a transfer or an execution)."""

    def __init__(self, raw):
        self.raw = raw

    def test(self) -> bool:
        """True once the activity completed (non-blocking)."""
        return bool(self.raw.test())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until completion; False if ``timeout`` simulated seconds passed first."""
        thaw_clock()  # it may block: the date moves
        if timeout is None:
            self.raw.wait()
            return True
        try:
            self.raw.wait_for(max(0.0, float(timeout)))
        except _compat.TimeoutException:
            return False
        return True

    @property
    def remaining(self) -> float:
        """What is left to do: bytes for a transfer, flops for an execution."""
        return float(self.raw.remaining)

    def cancel(self) -> None:
        self.raw.cancel()


class Transfer(Activity):
    """A host-to-host transfer (``Comm.sendto_async``): no mailbox and no receiving actor involved."""

    def __init__(self, raw, src: str, dst: str, nbytes: int):
        super().__init__(raw)
        self.src, self.dst, self.nbytes = src, dst, nbytes

    @property
    def start_time(self) -> float:
        return float(self.raw.start_time)

    @property
    def finish_time(self) -> float:
        return float(self.raw.finish_time)

    def __repr__(self) -> str:
        return f"<Transfer {self.src}->{self.dst} {self.nbytes} B>"


class Execution(Activity):
    """A computation on the calling actor's host."""

    def __init__(self, raw, flops: float):
        super().__init__(raw)
        self.flops = flops


# --------------------------------------------------------------------------------------------------
# Operations for actor code (act on behalf of the calling actor)
# --------------------------------------------------------------------------------------------------


_frozen_now: float | None = None


def now() -> float:
    """The simulated date, in seconds."""
    if _frozen_now is not None:
        return _frozen_now
    return current().now()


def freeze_clock() -> float:
    """Read the date once and serve it to every `now()` until `thaw_clock()`, which every call of
    this module that may block on the simulation makes: the clock cannot move before (the
    emulator's loop handles a whole round of syscalls at one date; asking SimGrid each time cost
    ~2 us a call). Returns the date."""
    global _frozen_now
    if _frozen_now is None:
        # Frozen until a blocking call: only those let SimGrid move the clock (one actor).
        _frozen_now = current().now()
    return _frozen_now


def thaw_clock() -> None:
    global _frozen_now
    _frozen_now = None


def this_host() -> str:
    """Name of the calling actor's host."""
    return sg.this_actor.get_host().name


def sleep_for(seconds: float) -> None:
    thaw_clock()  # it may block: the date moves
    sg.this_actor.sleep_for(max(0.0, float(seconds)))


def yield_() -> None:
    """Let every other actor ready at this simulated date run first (the clock does not move)."""
    thaw_clock()  # it may block: the date moves
    sg.this_actor.yield_()


def sleep_until(date: float) -> None:
    thaw_clock()  # it may block: the date moves
    sg.this_actor.sleep_until(float(date))


def execute(flops: float, priority: float = 1.0) -> None:
    """Compute ``flops`` on the calling actor's host (takes flops/speed when alone on the host)."""
    thaw_clock()  # it may block: the date moves
    sg.this_actor.execute(float(flops), float(priority))


def exec_async(flops: float) -> Execution:
    return Execution(sg.this_actor.exec_async(float(flops)), float(flops))


def exec_on(host: "str | Host", flops: float) -> Execution:
    """Start computing ``flops`` on ``host`` (any host, not only the caller's); returns at once."""
    raw = sg.this_actor.exec_init(float(flops))
    raw.host = current()._raw_host(host)
    raw.start()
    return Execution(raw, float(flops))


def transfer_async(src: "str | Host", dst: "str | Host", nbytes: int) -> Transfer:
    """Start moving ``nbytes`` from host ``src`` to host ``dst``; the caller may be on any host."""
    sim = current()
    src_name = src if type(src) is str else src.name
    dst_name = dst if type(dst) is str else dst.name
    hosts = sim._hosts
    if src_name not in hosts or dst_name not in hosts:
        sim.host(src_name if src_name not in hosts else dst_name)  # raises SimulationError, naming it
    nbytes = int(nbytes)
    raw = sg.Comm.sendto_async(hosts[src_name].raw, hosts[dst_name].raw, nbytes)
    if nbytes == 0:
        raw.start()  # a 0-byte transfer stays STARTING until started or waited on (3.32)
    return Transfer(raw, src_name, dst_name, nbytes)


def reachable(src: "str | Host", dst: "str | Host") -> bool:
    """Does the platform have a route from ``src`` to ``dst``? (:meth:`Simulation.reachable`.)"""
    return current().reachable(src, dst)


def transfer(src: "str | Host", dst: "str | Host", nbytes: int) -> None:
    """Blocking :func:`transfer_async`."""
    thaw_clock()  # it may block: the date moves
    transfer_async(src, dst, nbytes).wait()


def wait(activity: Activity, timeout: float | None = None) -> bool:
    thaw_clock()  # it may block: the date moves
    return activity.wait(timeout)


def test(activity: Activity) -> bool:
    return activity.test()


def remaining(activity: Activity) -> float:
    return activity.remaining


def wait_any(activities: Sequence[Activity], timeout: float | None = None) -> int | None:
    """Index of a completed activity, or None if ``timeout`` simulated seconds passed first.

    ``timeout=None`` waits without limit, ``timeout <= 0`` only polls. Already completed activities
    count (the lowest such index is returned). With SimGrid 3.32 only transfers can be mixed here.

    Under ns-3 the timeout ends 0.75 to 1.75 ns late, on purpose: SimGrid 3.32 runs ns-3 (whose
    clock counts whole nanoseconds) until the timeout's date; a date less than a nanosecond ahead
    of the clock makes ns-3 advance by nothing and SimGrid loop forever (measured: a timeout of
    0.05 s after a clock of 0.1 s, i.e. a date of 0.15000000000000002). Rounding the date up to
    the next nanosecond plus 0.75 ns makes ns-3's rounding step past it.
    """
    thaw_clock()  # it may block: the date moves
    if timeout is not None and timeout > 0 and current().ns3 is not None:
        now = current().now()
        date = math.ceil((now + timeout) * 1e9) / 1e9 + 0.75e-9
        timeout = date - now
    return _compat.wait_any([a.raw for a in activities], timeout)


# ---- mailboxes ------------------------------------------------------------------------------------


def send(mailbox: str, payload: Any, nbytes: int) -> None:
    """Blocking send of a Python object, simulated as ``nbytes``, to the actor that receives it."""
    thaw_clock()  # it may block: the date moves
    sg.Mailbox.by_name(mailbox).put(payload, int(nbytes))


def send_detached(mailbox: str, payload: Any, nbytes: int) -> None:
    """Fire-and-forget send (``put_init().detach()``: ``put_async().detach()`` aborts in SimGrid)."""
    sg.Mailbox.by_name(mailbox).put_init(payload, int(nbytes)).detach()


def recv(mailbox: str, timeout: float | None = None) -> Any:
    """Receive the next object sent to ``mailbox``; raises :class:`SimTimeout` after ``timeout``."""
    thaw_clock()  # it may block: the date moves
    box = sg.Mailbox.by_name(mailbox)
    if timeout is None:
        return box.get()
    comm, data = box.get_async()
    try:
        comm.wait_for(max(0.0, float(timeout)))
    except _compat.TimeoutException:
        comm.cancel()  # or a later sender would match this abandoned receive and its payload be lost
        raise SimTimeout(f"nothing received on {mailbox!r} within {timeout} s") from None
    return data.get()


# ---- blocking until another actor wakes us --------------------------------------------------------


class Signal:
    """Condition-variable-like wake-up between actors, in simulated time, without a mutex.

    ``wait()`` blocks the calling actor until another actor calls ``notify()``/``notify_all()`` or
    until ``timeout`` simulated seconds pass. A notification with nobody waiting is lost, exactly like
    a condition variable: check your predicate, then wait, in a loop. That check-then-wait is race-free
    without a lock because actors run one at a time and nothing between the check and the wait yields
    to SimGrid::

        while not pending_connections:
            if not accept_signal.wait(timeout):
                raise TimeoutError
        conn = pending_connections.popleft()

    Built on one SimGrid Semaphore per waiter (3.32 bindings have no ConditionVariable).
    """

    def __init__(self) -> None:
        self._waiters: deque = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def wait(self, timeout: float | None = None) -> bool:
        """True when notified, False when the timeout expired (``timeout <= 0`` returns False at once)."""
        if timeout is not None and timeout <= 0:
            return False
        thaw_clock()  # it may block: the date moves
        sem = sg.Semaphore(0)
        self._waiters.append(sem)
        if _compat.semaphore_acquire(sem, timeout):
            return True
        try:
            self._waiters.remove(sem)
        except ValueError:  # a notifier took us off the queue at the very date our timeout fired
            return True
        return False

    def notify(self, n: int = 1) -> int:
        """Wake up to ``n`` waiters (oldest first); returns how many were woken."""
        woken = 0
        while self._waiters and woken < n:
            self._waiters.popleft().release()
            woken += 1
        return woken

    def notify_all(self) -> int:
        return self.notify(len(self._waiters))


class Wakeup:
    """A wake-up that is never lost: `notify()` before `wait()` makes that wait return at once.

    For one waiter (an actor waiting for "something happened, look again"). Unlike `Signal`, a
    notification made while the waiter is not yet waiting — e.g. because something it did just
    before waiting (starting a transfer) let other actors run — is kept: the SimGrid semaphore
    underneath holds at most one permit.
    """

    def __init__(self) -> None:
        self._sem = None  # created in actor context, at first use
        self._posted = False

    def _semaphore(self):
        if self._sem is None:
            self._sem = sg.Semaphore(0)
        return self._sem

    def notify(self) -> None:
        if not self._posted:
            self._posted = True
            self._semaphore().release()

    def notify_all(self) -> None:
        self.notify()

    def wait(self, timeout: float | None = None) -> bool:
        """True when notified (now or earlier), False when `timeout` simulated seconds passed."""
        if timeout is not None and timeout <= 0 and not self._posted:
            return False
        thaw_clock()  # it may block: the date moves
        if _compat.semaphore_acquire(self._semaphore(), timeout):
            self._posted = False
            return True
        return False


class Event:
    """A latch: ``wait()`` returns at once while set, else blocks until ``set()`` or the timeout."""

    def __init__(self) -> None:
        self._set = False
        self._signal = Signal()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        self._signal.notify_all()

    def clear(self) -> None:
        self._set = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if timeout is None:
            while not self._set:
                self._signal.wait()
            return True
        deadline = now() + timeout
        while not self._set:
            left = deadline - now()
            if left <= 0 or not self._signal.wait(left):
                return self._set
        return True



def _name(host: "str | Host") -> str:
    return host if isinstance(host, str) else host.name
