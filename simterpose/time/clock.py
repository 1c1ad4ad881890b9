"""The virtual clocks a tracee reads, derived from the simulated date.

All arithmetic is in integer nanoseconds so that two runs give byte-identical values.
"""

DEFAULT_EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z: REALTIME at simulated date 0 (an option)
NS = 1_000_000_000
# CLOCK_MONOTONIC/BOOTTIME at simulated date 0: a machine that booted a day ago. Zero is not a
# value a real system ever shows, and programs check it: Go's runtime aborts with "nanotime
# returning zero" when its first read is 0. Fixed, so runs stay deterministic.
DEFAULT_UPTIME = 86_400

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME_ID = 2
CLOCK_THREAD_CPUTIME_ID = 3
CLOCK_MONOTONIC_RAW = 4
CLOCK_REALTIME_COARSE = 5
CLOCK_MONOTONIC_COARSE = 6
CLOCK_BOOTTIME = 7
CLOCK_REALTIME_ALARM = 8
CLOCK_BOOTTIME_ALARM = 9
CLOCK_TAI = 11

REALTIME_CLOCKS = {CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_REALTIME_ALARM, CLOCK_TAI}
MONOTONIC_CLOCKS = {CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME,
                    CLOCK_BOOTTIME_ALARM}


def to_ns(seconds: float) -> int:
    return round(seconds * NS)


def split_ns(ns: int) -> tuple[int, int]:
    return divmod(ns, NS)


class VirtualClock:
    """REALTIME = epoch + simulated date; MONOTONIC/BOOTTIME = uptime + simulated date.

    `now` is a callable giving the simulated date in seconds; `epoch` and `uptime` are whole
    seconds (clock_gettime(2): MONOTONIC counts from "some unspecified point in the past", on Linux
    the boot).
    """

    def __init__(self, now, epoch: int = DEFAULT_EPOCH, uptime: int = DEFAULT_UPTIME):
        self._now = now  # () -> simulated seconds (float)
        self.epoch_ns = epoch * NS
        self.uptime_ns = uptime * NS

    def monotonic_ns(self) -> int:
        return self.uptime_ns + to_ns(self._now())

    def realtime_ns(self) -> int:
        return self.epoch_ns + to_ns(self._now())

    def read_ns(self, clock_id: int) -> int | None:
        """The clock's value, or None for a clock that is not a wall/monotonic clock."""
        if clock_id in MONOTONIC_CLOCKS:
            return self.monotonic_ns()
        if clock_id in REALTIME_CLOCKS:
            return self.realtime_ns() + (37 * NS if clock_id == CLOCK_TAI else 0)
        return None

    def to_simulated(self, clock_id: int, abs_ns: int) -> float:
        """An absolute date on `clock_id` as a simulated date (for TIMER_ABSTIME sleeps)."""
        if clock_id in REALTIME_CLOCKS:
            abs_ns -= self.epoch_ns
        else:
            abs_ns -= self.uptime_ns
        return abs_ns / NS
