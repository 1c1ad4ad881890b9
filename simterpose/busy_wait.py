"""Busy-wait latency: a polling loop must let simulated time advance.

A tracee that polls instead of blocking (a zero-timeout select/poll/epoll_wait, a level-triggered
EPOLLOUT it ignores, a non-blocking read answered EAGAIN) would run forever at one simulated date
while what it waits for — a transfer in flight, a timer — is due at a later date: the simulation only
advances when every task is blocked. Shadow answers this with a latency charged for syscalls that do
not block (its `model_unblocked_syscall_latency`); here only *busy-wait steps* are charged, so that
programs that merely do a lot of work at one date keep their exact dates:

  * a step is a readiness query answered at once (poll, ppoll, select, pselect6, epoll_wait,
    epoll_pwait, epoll_pwait2 that did not block) or any intercepted call answered EAGAIN;
  * each step costs `latency` seconds, charged in batches: after `batch` consecutive steps of one
    task at one simulated date, its next intercepted syscall first waits batch × latency.

The count restarts whenever the task blocks or the date moves, so an event loop that waits normally
never pays anything. Deterministic: it depends on syscall counts only.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Optional

from .tracer import names
from .tracer.results import Blocked, Errno

DEFAULT_LATENCY = 10e-6   # seconds per busy-wait step (--unblocked-syscall-latency)
BATCH = 100               # steps charged at once: 1 ms of simulated time by default

POLLS = frozenset(names.number(n) for n in ("poll", "ppoll", "select", "pselect6", "epoll_wait",
                                            "epoll_pwait", "epoll_pwait2"))


@dataclass
class Spin:
    date: float = -1.0
    steps: int = 0


class BusyWait:
    """Per-task counts of busy-wait steps; `latency` 0 disables the model."""

    def __init__(self, latency: float = DEFAULT_LATENCY, batch: int = BATCH):
        self.latency = latency
        self.batch = batch
        self.spins: dict = {}   # task -> Spin

    def before(self, task, now: float) -> Optional[Blocked]:
        """Called before a syscall of `task` is handled: the wait it must do first, if any."""
        if not self.latency:
            return None
        spin = self.spins.get(task)
        if spin is None or spin.date != now or spin.steps < self.batch:
            return None
        spin.steps = 0
        return Blocked("busy-wait latency", now + self.batch * self.latency, entered=False)

    def after(self, task, nr: int, result, now: float) -> None:
        """Called with the result of a handled syscall."""
        if not self.latency:
            return
        if isinstance(result, Blocked):
            self.spins.pop(task, None)
            return
        if nr in POLLS or (isinstance(result, Errno) and result.errno == errno.EAGAIN):
            spin = self.spins.get(task)
            if spin is None:
                spin = self.spins[task] = Spin()
            if spin.date != now:
                spin.date, spin.steps = now, 0
            spin.steps += 1

    def forget(self, task) -> None:
        self.spins.pop(task, None)
