"""SimGrid adapter: the only package of simterpose that imports ``simgrid``.

Works with SimGrid 3.32 (Debian) and 4.x; every API difference is dispatched in :mod:`._compat`.
Only one SimGrid Engine can exist per process, hence one :class:`Simulation`; compute reference
results for another configuration with :mod:`simterpose.sim.predict`, which runs a fresh subprocess.
See :mod:`.engine` for the lifecycle and threading rules.
"""

from ._compat import VERSION as SIMGRID_VERSION
from ._compat import ActorKilled
from .engine import (
    NETWORK_MODELS,
    Activity,
    ActorFailed,
    ActorHandle,
    Deadlock,
    Event,
    Execution,
    Host,
    Signal,
    SimTimeout,
    Simulation,
    SimulationError,
    Transfer,
    Wakeup,
    current,
    exec_async,
    execute,
    now,
    recv,
    remaining,
    send,
    send_detached,
    sleep_for,
    sleep_until,
    test,
    this_host,
    transfer,
    transfer_async,
    wait,
    wait_any,
    yield_,
)

__all__ = [
    "ActorKilled",
    "NETWORK_MODELS",
    "SIMGRID_VERSION",
    "Activity",
    "ActorFailed",
    "ActorHandle",
    "Deadlock",
    "Event",
    "Execution",
    "Host",
    "Signal",
    "SimTimeout",
    "Simulation",
    "SimulationError",
    "Transfer",
    "Wakeup",
    "current",
    "exec_async",
    "execute",
    "now",
    "recv",
    "remaining",
    "send",
    "send_detached",
    "sleep_for",
    "sleep_until",
    "test",
    "this_host",
    "transfer",
    "transfer_async",
    "wait",
    "wait_any",
    "yield_",
]
