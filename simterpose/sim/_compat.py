"""Every difference between SimGrid versions' Python bindings, in one place.

Nothing outside this module looks at ``simgrid.simgrid_version`` or probes attributes of the bindings.
Dispatch is by feature detection (``hasattr``), so a binding that back-ports a 4.x name works too.
Tested here on Debian's 3.32; the 4.x branches follow the 4.1 API (see /work/shared/FACTS.md §3).

Measured 3.32 quirks handled here or in :mod:`simterpose.sim.engine`:

* ``import simgrid`` logs ``Configuration change: Set 'contexts/factory' to 'thread'`` on stderr at
  module initialisation, before any log setting can apply: :func:`import_simgrid` silences fd 2 while
  importing (set ``SIMTERPOSE_SIMGRID_VERBOSE=1`` to keep it).
* ``Comm.wait_any_for(comms, t)`` returns -1 on timeout; ``t == 0`` polls without blocking.
  4.x ``ActivitySet.wait_any_for(t)`` raises ``TimeoutException`` and returns the activity.
* ``Semaphore.acquire_timeout(t)`` returns **True on timeout** (False when acquired), and blocks forever
  when ``t == 0`` (callers must not pass 0).
* An exception escaping an actor's function aborts the whole process (``std::terminate``).
* A second ``Engine`` in a process is a fatal error.
* ``Host`` has no property accessor: the ``ip`` property is read from the platform XML instead.
"""

from __future__ import annotations

import os
import sys
import threading

_import_lock = threading.Lock()


def import_simgrid():
    """Import and return the ``simgrid`` module, without its import-time log line on stderr."""
    if "simgrid" in sys.modules:
        return sys.modules["simgrid"]
    with _import_lock:
        if os.environ.get("SIMTERPOSE_SIMGRID_VERBOSE"):
            import simgrid

            return simgrid
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
            finally:
                os.close(devnull)
            import simgrid
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        return simgrid


sg = import_simgrid()

VERSION: str = getattr(sg, "simgrid_version", "0.0.0")
VERSION_TUPLE: tuple[int, ...] = tuple(int(p) for p in VERSION.split(".")[:3] if p.isdigit())

HAS_ACTIVITY_SET = hasattr(sg, "ActivitySet")
HAS_CONDITION_VARIABLE = hasattr(sg, "ConditionVariable")
HAS_SLEEP_ASYNC = hasattr(sg.this_actor, "sleep_async")
HAS_EXEC_ASYNC = hasattr(sg.this_actor, "exec_async")
HAS_ADD_ACTOR = hasattr(sg.Host, "add_actor")

TimeoutException = sg.TimeoutException
ActorKilled = sg.ActorKilled


def engine_clock(engine) -> float:
    """Current simulated date (``Engine.clock`` in both; ``get_clock`` is deprecated in 3.32)."""
    return float(engine.clock)


def all_hosts(engine) -> list:
    hosts = getattr(engine, "all_hosts", None)
    if hosts is None:
        hosts = engine.get_all_hosts()
    return list(hosts)


def host_by_name(engine, name: str):
    return engine.host_by_name(name) if hasattr(engine, "host_by_name") else sg.Host.by_name(name)


def host_core_count(host) -> int:
    count = host.core_count
    return int(count() if callable(count) else count)


def host_property(host, key: str) -> str | None:
    """A host property if the bindings expose properties (not in 3.32), else None."""
    for attr in ("get_property", "property"):
        getter = getattr(host, attr, None)
        if callable(getter):
            try:
                value = getter(key)
            except Exception:
                return None
            return None if value is None or value == "" else str(value)
    return None


def bindings_expose_properties() -> bool:
    return hasattr(sg.Host, "get_property") or hasattr(sg.Host, "property")


def create_actor(name: str, host, fn, *args):
    """``Actor.create(name, host, fn, *args)`` (3.x) or ``host.add_actor(name, fn, *args)`` (4.x)."""
    if HAS_ADD_ACTOR:
        return host.add_actor(name, fn, *args)
    return sg.Actor.create(name, host, fn, *args)


def wait_any(raws: list, timeout: float | None) -> int | None:
    """Index of one completed activity, or None when ``timeout`` (simulated seconds) expires first.

    ``timeout=None`` waits without limit; ``timeout <= 0`` polls without blocking.
    """
    if not raws:
        raise ValueError("wait_any needs at least one activity")
    if HAS_ACTIVITY_SET:
        aset = sg.ActivitySet(list(raws))
        try:
            if timeout is None:
                done = aset.wait_any()
            else:
                done = aset.wait_any_for(max(0.0, float(timeout)))
        except sg.TimeoutException:
            return None
        for i, raw in enumerate(raws):
            if raw is done:
                return i
        for i, raw in enumerate(raws):
            if raw.test():
                return i
        return None
    comm_cls = sg.Comm
    for raw in raws:
        if not isinstance(raw, comm_cls):
            raise TypeError(f"SimGrid {VERSION} can only wait_any on transfers (Comm), got {type(raw).__name__}")
    if type(raws) is not list:
        raws = list(raws)
    if timeout is None:
        idx = comm_cls.wait_any(raws)
    else:
        idx = comm_cls.wait_any_for(raws, max(0.0, float(timeout)))
    return None if idx < 0 else int(idx)


def semaphore_acquire(sem, timeout: float | None) -> bool:
    """Acquire ``sem``; True if acquired, False if ``timeout`` expired. Never passes 0 to SimGrid."""
    if timeout is None:
        sem.acquire()
        return True
    if timeout <= 0:
        if sem.would_block():
            return False
        sem.acquire()
        return True
    timed_out = sem.acquire_timeout(float(timeout))
    return not timed_out
