"""The CPU model: what the real code a tracee ran between two stops costs on its simulated host.

`--cpu-model measured`: the task's real CPU time since its previous stop, scaled by
`--reference-speed` (flop/s that one real second is worth); `per-syscall=S`: S seconds of the
host's reference speed per stop; `none`: free (the default for deterministic runs).

A burst is a SimGrid execution on the host, so bursts of several tasks on one host share its cores
as SimGrid shares them. The one actor of the run cannot `wait_any` on an execution with SimGrid 3.32
(it only takes transfers), so the scheduler sleeps until the date the burst would end at the
current sharing (`Burst.predicted_end`) and checks; every start or end of a burst on a host makes
the others on that host predict again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from . import sim
from .wait import Waitable

# A prediction may land a hair before SimGrid's own end date (floating point): look again then.
_EPSILON = 1e-12


def process_cpu_clock(pid: int) -> int:
    """The CPU-time clock id of another process (clock_getcpuclockid(3)): ~pid << 3 | CPUCLOCK_SCHED.
    One clock_gettime (~0.3 us), cheaper than reading /proc/PID/schedstat."""
    return ((~pid) << 3) | 2


@dataclass(eq=False)
class HostCpu(Waitable):
    """The bursts running on one simulated host."""

    name: str
    speed: float          # flop/s of one core
    cores: int
    bursts: list = field(default_factory=list)


@dataclass(eq=False)
class Burst:
    host: HostCpu
    execution: object     # sim.Execution

    def done(self) -> bool:
        # Within one flop of its end counts as done: SimGrid's running updates accumulate rounding
        # (a burst meant to end at 0.010 s still had 1 flop left there), which would otherwise
        # shift dates by a nanosecond.
        return self.execution.test() or self.execution.remaining <= 1.0

    def predicted_end(self) -> float:
        """When it ends if the host's sharing stays as it is now (SimGrid's fair share: each of
        n bursts on c cores of speed s gets s * min(1, c / n))."""
        n = len(self.host.bursts)
        rate = self.host.speed * min(1.0, self.host.cores / max(1, n))
        now = sim.now()
        end = now + self.execution.remaining / rate
        return end if end > now else now + _EPSILON


class CpuModel:
    def __init__(self, config, hosts: list):
        self.cost = config.per_syscall_cost
        self.measured = config.cpu_model == "measured"
        self.enabled = self.measured or self.cost > 0
        self.reference_speed = config.reference_speed
        self.hosts = {h.name: HostCpu(h.name, h.speed, max(1, h.cores)) for h in hosts}

    # -- what a burst costs --------------------------------------------------------------------
    def reset(self, process) -> None:
        """At exec: the CPU spent before (our launcher) is not the program's."""
        if self.measured:
            try:
                process.data["cpu_last"] = time.clock_gettime_ns(process_cpu_clock(process.pid))
            except OSError:
                process.data.pop("cpu_last", None)

    def burst_seconds(self, process) -> float:
        if self.cost:
            return self.cost
        if not self.measured:
            return 0.0
        try:
            cpu = time.clock_gettime_ns(process_cpu_clock(process.pid))
        except OSError:
            return 0.0
        last = process.data.get("cpu_last")
        process.data["cpu_last"] = cpu
        if last is None or cpu <= last:
            return 0.0
        return (cpu - last) / 1e9

    # -- running bursts ------------------------------------------------------------------------
    def start(self, host: str, seconds: float) -> Burst:
        cpu = self.hosts[host]
        burst = Burst(cpu, sim.exec_on(host, seconds * self.reference_speed))
        cpu.bursts.append(burst)
        cpu.notify()  # the others on this host now go slower
        return burst

    def finish(self, burst: Burst) -> None:
        cpu = burst.host
        if not burst.execution.test():
            burst.execution.cancel()  # its last flop, see Burst.done
        if burst in cpu.bursts:
            cpu.bursts.remove(burst)
            cpu.notify()  # the others on this host now go faster

    def cancel(self, burst: Optional[Burst]) -> None:
        if burst is not None and burst in burst.host.bursts:
            burst.execution.cancel()
            self.finish(burst)
