"""How far a run is, told while it runs: a live line on a terminal, heartbeat lines for logs.

The scheduler calls :meth:`Progress.poll` once every :data:`POLL_EVERY` iterations of its loop (never
per syscall), with the simulated date, the number of live processes and the number of syscall stops
so far (counted per round by the tracer); only then is the wall clock read. An iteration lasts at
least one ptrace stop (~10 us), so the check costs well under 1 % even at 100k stops/s, and a report
is at most one loop iteration late (a tracee computing for a long time without any syscall delays
it as long).

Two outputs, both on stderr:

* ``live`` (stderr is a terminal): one line redrawn in place (``\\r`` + erase to end of line) every
  :data:`LIVE_PERIOD` s of wall time, first after :data:`LIVE_DELAY` s so that short runs print
  nothing, erased at the end. A plain ``\\r`` line rather than ``rich`` or ``tqdm``: a run has no
  known total to draw a bar against (processes may run forever), and both libraries cost tens of
  milliseconds of imports for every run, where one formatted line does the job.
* ``heartbeat`` (``--heartbeat SECONDS``): one plain line per period of wall time, for logs.

Line format (simulated seconds and wall seconds; syscalls/s: stops per wall second since the
previous report)::

    simterpose: heartbeat simulated=12.345678s wall=10.0s processes=4 syscalls=123456 syscalls/s=12345
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, TextIO

POLL_EVERY = 32      # scheduler loop iterations between two looks at the wall clock
LIVE_PERIOD = 0.5    # s of wall time between two redraws of the live line
LIVE_DELAY = 1.0     # s of wall time before the live line first appears


@dataclass
class Progress:
    """Reports of one run. ``stream``: where to write (stderr); ``live``: redraw a line (a
    terminal); ``heartbeat``: seconds of wall time between two log lines (None: none)."""

    stream: TextIO
    live: bool = False
    heartbeat: Optional[float] = None
    _start: float = field(default_factory=time.monotonic)
    _next_live: float = 0.0
    _next_beat: float = 0.0
    _last: tuple = (0.0, 0)       # (wall, stops) of the previous report, for the rate
    _drawn: bool = False

    def __post_init__(self):
        self._next_live = self._start + LIVE_DELAY
        self._next_beat = self._start + (self.heartbeat or 0.0)
        self._last = (self._start, 0)

    @property
    def enabled(self) -> bool:
        return self.live or self.heartbeat is not None

    def poll(self, simulated: float, processes: int, stops: int) -> None:
        """Called by the scheduler every POLL_EVERY iterations: report if a period is over."""
        now = time.monotonic()
        beat = self.heartbeat is not None and now >= self._next_beat
        draw = self.live and now >= self._next_live
        if not (beat or draw):
            return
        wall, rate = now - self._start, self._rate(now, stops)
        if beat:
            # Periods are counted from the start, so lines do not drift late.
            while self._next_beat <= now:
                self._next_beat += self.heartbeat
            self._clear()
            self.stream.write(f"simterpose: heartbeat simulated={simulated:.6f}s wall={wall:.1f}s "
                              f"processes={processes} syscalls={stops} syscalls/s={rate:.0f}\n")
        if self.live:
            self._next_live = now + LIVE_PERIOD
            self.stream.write(f"\rsimterpose: simulated {simulated:.6f} s | wall {wall:.1f} s | "
                              f"{processes} process{'' if processes == 1 else 'es'} | {rate:,.0f} syscalls/s\x1b[K")
            self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        """Erase the live line (the summary follows on a clean line)."""
        self._clear()
        self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def _rate(self, now: float, stops: int) -> float:
        wall0, stops0 = self._last
        self._last = (now, stops)
        return (stops - stops0) / (now - wall0) if now > wall0 else 0.0
