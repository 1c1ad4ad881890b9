"""Objects a blocked syscall waits on, and how they wake it.

A handler that cannot answer yet returns `Blocked(on=(obj, ...), deadline=...)`. The scheduler
registers the task as a waiter of each object; when an object changes in a way that may end a wait
(data arrived, window space opened, a child exited, a futex was woken...), it calls `notify()`, and
only its waiters are looked at again. Waiting is always re-checked by the handler (a notification
is a hint, never an answer), so notifying too often costs time, never correctness.
"""

from __future__ import annotations

from typing import Optional

_ready: Optional[set] = None  # the scheduler's set of tasks to look at again


def bind(ready: Optional[set]) -> None:
    """Called by the scheduler of the run: where woken tasks go."""
    global _ready
    _ready = ready


class Waitable:
    """Mixin: something tasks can block on."""

    _waiters: Optional[set] = None
    notified = 0   # how many times it notified: edge-triggered epoll entries compare it


    @property
    def waiters(self) -> set:
        if self._waiters is None:
            self._waiters = set()
        return self._waiters

    def notify(self) -> None:
        self.notified += 1
        if self._waiters and _ready is not None:
            _ready.update(self._waiters)


class Condition(Waitable):
    """A named condition with no state of its own (e.g. "a child of process P changed state")."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<Condition {self.name}>"


def wake(task) -> None:
    """Look at this one task again (e.g. the waiter a futex wake chose)."""
    if _ready is not None:
        _ready.add(task)
