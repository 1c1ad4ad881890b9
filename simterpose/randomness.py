"""Seeded randomness: every random byte a tracee can ask the kernel for comes from the run's seed.

Three sources are covered, each answered from one deterministic stream per process:

* ``getrandom(buf, count, flags)`` (getrandom(2)): emulated in its one stop; returns
  ``min(count, 33554431)`` bytes (the most one call returns from the urandom source), EINVAL for
  unknown flags or GRND_INSECURE with GRND_RANDOM, EFAULT for a bad buffer. It never blocks: the
  simulated kernel's pool is always initialised.
* ``read``/``readv``/``pread64``/``preadv``/``preadv2`` on a descriptor opened on ``/dev/urandom``
  or ``/dev/random`` (random(4)): the descriptor is recognised at ``open``/``openat`` (its path ends
  with ``random`` and the opened file is character device 1:8 or 1:9) and recorded in the process's
  descriptor table (`simterpose.net.fdtable`), so that dup, fork, close-on-exec and close follow it.
  The real device stays open in the tracee: poll/select/epoll, fstat, fcntl, ioctl and writes are the
  kernel's, and they are right as they are (both devices are always readable once the kernel's pool
  is initialised, random(4)). Only the bytes read are ours, and a read never blocks — as the real
  devices since Linux 5.6. A substitute pipe would block in the kernel once empty, where the
  simulation cannot see the wait; a regular file would end (EOF) where the device does not.
* the 16 ``AT_RANDOM`` bytes of each exec (getauxval(3)): glibc seeds its stack protector and
  pointer guard with them, CPython's hash secret does not use them. Written at the exec stop by the
  tracer (mechanism: `simterpose.tracer.engine`), asked from `RandomnessPolicy.at_random` (policy).

The stream of a process (SHAKE-256, an extendable-output function from hashlib): draw number ``k``
of ``n`` bytes is ``SHAKE-256(key || k).digest(n)`` with ``key`` made of the seed, the simulated
host's name, the scenario process's index and the process's place in its process tree (``()`` for
the root, then its fork order: `Process.rank` without the spawn number). So two runs with one seed
give every process the same bytes, whatever the kernel's scheduling or the other processes' start
dates, and processes (parent and child after a fork included) never share bytes.

Without ``--seed`` (or a scenario's ``seed:``) the seed is :data:`DEFAULT_SEED`: runs are
deterministic by construction. Not covered: the RDRAND/RDSEED instructions (no syscall: programs
that use them directly, e.g. some crypto libraries' extra entropy, stay random), a random device
opened through a path not ending in ``random`` (a symlink of another name) or inherited from outside
the run, and sendfile/splice from a random device (refused with an error naming them).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .tracer.results import Errno, Native, Value

if TYPE_CHECKING:
    from .emulator import ScenarioProcess

DEFAULT_SEED = 1  # Shadow's default seed too
MAX_SEED = 2**64 - 1
AT_RANDOM_SIZE = 16  # bytes the kernel puts at AT_RANDOM (getauxval(3))
# The most one getrandom(2) call (urandom source) or one read of /dev/urandom returns (random(4)).
MAX_DRAW = 33554431
GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 0x1, 0x2, 0x4
# (major, minor) of /dev/random and /dev/urandom (Documentation/admin-guide/devices.txt)
RANDOM_DEVICES = {(1, 8): "/dev/random", (1, 9): "/dev/urandom"}
O_ACCMODE, O_WRONLY, O_CLOEXEC, O_PATH = 0o3, 0o1, 0o2000000, 0o10000000
_IOV_MAX = 1024
_PREFIX = b"simterpose-random-v1\0"


def parse_seed(value: object) -> int:
    """A seed: an integer 0 <= N < 2**64 (also as a decimal string). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid seed {value!r}: an integer >= 0")
    try:
        seed = int(value, 10) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid seed {value!r}: an integer >= 0") from None
    if isinstance(value, float) and value != seed:
        raise ValueError(f"invalid seed {value!r}: an integer >= 0")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"invalid seed {value!r}: an integer between 0 and 2**64-1")
    return seed


@dataclass
class RandomStream:
    """The random bytes of one process: draw number k of n bytes is SHAKE-256(key || k).digest(n)."""

    key: bytes
    draws: int = 0
    _base: object = field(default=None, repr=False)

    def draw(self, n: int) -> bytes:
        """The next ``n`` bytes (n >= 0); every call is a new draw, even for n == 0."""
        if self._base is None:
            self._base = hashlib.shake_256(self.key)
        h = self._base.copy()
        h.update(self.draws.to_bytes(8, "little"))
        self.draws += 1
        return h.digest(n) if n else b""


def stream_key(seed: int, host: str, index: int, tree_position: tuple) -> bytes:
    """The key of a process's stream (unambiguous: every part is length-prefixed)."""
    parts = [str(seed).encode(), host.encode(), str(index).encode(), ".".join(map(str, tree_position)).encode()]
    return _PREFIX + b"".join(len(p).to_bytes(4, "little") + p for p in parts)


class RandomDevice:
    """An entry of a process's descriptor table: a descriptor open on /dev/random or /dev/urandom
    (`refs`: how many descriptors share this open file, as for every table entry)."""

    def __init__(self, policy: "RandomnessPolicy", path: str):
        self.policy = policy
        self.path = path
        self.refs = 0

    def read(self, sc):
        return self.policy.fill(sc, [(sc.arg(1), sc.arg(2))])

    def readv(self, sc):
        return self.policy.fill_iov(sc, 1, 2)

    def __repr__(self) -> str:
        return f"<RandomDevice {self.path}>"


class RandomnessPolicy:
    """The handlers of one scenario process (and its whole tree): module ``random`` of the syscall
    table (getrandom, pread64, preadv, preadv2), plus what `simterpose.net.policy` delegates to it
    (open of a random device; read/readv on one) and the tracer's exec hook (`at_random`)."""

    def __init__(self, actor: "ScenarioProcess"):
        self.actor = actor
        self.seed = actor.config.seed
        self.host = actor.spec.host
        self.index = actor.index

    # -- the streams ---------------------------------------------------------------------------
    def stream(self, process) -> RandomStream:
        s = process.data.get("random")
        if s is None:
            # rank[0] is the spawn number of the tree's root: left out, so that a process's bytes do
            # not depend on when the other scenario processes started.
            s = process.data["random"] = RandomStream(stream_key(self.seed, self.host, self.index, process.rank[1:]))
        return s

    def at_random(self, process) -> bytes:
        """The 16 AT_RANDOM bytes of the program ``process`` just exec'd."""
        return self.stream(process).draw(AT_RANDOM_SIZE)

    def fill(self, sc, iov: list[tuple[int, int]]):
        """Fill the buffers (address, length) the tracee handed us with one draw; Value(bytes)."""
        total = min(sum(length for _, length in iov), MAX_DRAW)
        data = self.stream(sc.process).draw(total)
        sc.mem.scatter(iov, data)  # MemoryError_ -> EFAULT (the dispatcher)
        return Value(total)

    def fill_iov(self, sc, iov_arg: int, count_arg: int):
        count = sc.iarg(count_arg)
        if not 0 <= count <= _IOV_MAX:
            return Errno(errno.EINVAL)
        iov = sc.mem.read_iovec(sc.arg(iov_arg), count)
        if any(length >= 1 << 63 for _, length in iov):
            return Errno(errno.EINVAL)
        return self.fill(sc, iov)

    # -- getrandom(2) ----------------------------------------------------------------------------
    def getrandom(self, sc):
        buf, count, flags = sc.arg(0), sc.arg(1), sc.iarg(2)
        if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or \
                flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE):
            return Errno(errno.EINVAL)
        return self.fill(sc, [(buf, min(count, MAX_DRAW))])

    # -- descriptors on /dev/random and /dev/urandom ----------------------------------------------
    def device(self, sc, fd_arg: int = 0) -> Optional[RandomDevice]:
        obj = self.actor.net.table(sc.process).get(sc.iarg(fd_arg))
        return obj if isinstance(obj, RandomDevice) else None

    def open_device(self, sc, flags: int):
        """open/openat of a path that may name a random device (its name ends with "random"): the
        exit stop checks what was opened, and records a readable one."""
        if flags & O_PATH or flags & O_ACCMODE == O_WRONLY:
            return Native()  # reads of it fail in the kernel (EBADF): nothing to seed

        def opened(sc_, fd):
            if fd >= 0:
                try:
                    st = os.stat(f"/proc/{sc_.pid}/fd/{fd}")
                except OSError:
                    return None
                path = RANDOM_DEVICES.get((os.major(st.st_rdev), os.minor(st.st_rdev)))
                if path is not None and (st.st_mode & 0o170000) == 0o020000:  # a character device
                    self.actor.net.table(sc_.process).add(fd, RandomDevice(self, path), bool(flags & O_CLOEXEC))
            return None

        return Native(on_exit=opened)

    def pread64(self, sc):
        if self.device(sc) is None:
            return Native()
        if sc.arg(3, signed=True) < 0:
            return Errno(errno.EINVAL)
        return self.fill(sc, [(sc.arg(1), sc.arg(2))])

    def preadv(self, sc):
        if self.device(sc) is None:
            return Native()
        # preadv2 also takes -1: "at the current offset" (a device has none to speak of)
        if sc.arg(3, signed=True) < (-1 if sc.name == "preadv2" else 0):
            return Errno(errno.EINVAL)
        return self.fill_iov(sc, 1, 2)

    preadv2 = preadv
