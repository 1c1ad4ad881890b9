"""Shared helpers of the tracer benchmarks: timing native, traced and strace'd runs side by side.

Every figure is the minimum over interleaved repetitions (the VMs are noisy; the minimum is the run
least disturbed by others). Start-up is removed by also timing the same program with N = 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOYS = ROOT / "build" / "toys"

from simterpose.tracer.engine import Policy, Tracer  # noqa: E402


def toy(name: str) -> str:
    path = TOYS / name
    if not path.exists():
        subprocess.run(["make", "-C", str(ROOT), "toys"], check=True, stdout=subprocess.DEVNULL)
    return str(path)


class Pinned:
    """Pin this process (tracer thread) to one CPU for the duration, or leave placement alone."""

    def __init__(self, cpu: Optional[int]):
        self.cpu = cpu
        self.saved = os.sched_getaffinity(0)

    def __enter__(self):
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})
        return self

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def time_native(argv: list[str], cpu: Optional[int] = None) -> float:
    with Pinned(cpu), open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1)])
        _, status = os.waitpid(pid, 0)
        dt = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return dt


def time_traced(argv: list[str], make_policy: Callable[[], Policy], cpu: Optional[int] = None) -> float:
    policy = make_policy()
    with Pinned(cpu), open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        tracer = Tracer(policy, cpu=cpu)
        tracer.spawn(argv, stdout=null.fileno())
        rc = tracer.run()
        dt = time.perf_counter() - t0
    assert rc == 0, argv
    return dt


def time_strace(argv: list[str], syscalls: str, cpu: Optional[int] = None) -> Optional[float]:
    strace = shutil.which("strace")
    if strace is None:
        return None
    cmd = [strace, "-f", "--seccomp-bpf", "-qq", "-e", f"trace={syscalls}", "-o", os.devnull, *argv]
    with Pinned(cpu), open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=null, check=True)
        return time.perf_counter() - t0


def best(fns: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
    """Run each timing function `reps` times, interleaved; keep each one's minimum."""
    out: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in fns.items():
            v = fn()
            if v is not None:
                out[name] = min(out.get(name, v), v)
    return out


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)))


_SECCOMP_ONLY = r"""
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
/* seccomp_only NR,NR,... -- PROG ARGS: the launcher's filter, without any tracer (a floor). */
int main(int argc, char **argv) {
    scmp_filter_ctx c = seccomp_init(SCMP_ACT_ALLOW);
    seccomp_attr_set(c, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRACE(1));
    for (char *p = argv[1]; *p;) { char *e; long nr = strtol(p, &e, 10);
        seccomp_rule_add(c, SCMP_ACT_TRACE(0), (int)nr, 0); p = *e ? e + 1 : e; }
    if (seccomp_load(c) < 0) { perror("seccomp_load"); return 127; }
    execv(argv[3], &argv[3]);
    perror(argv[3]);
    return 127;
}
"""


def seccomp_only_helper() -> str:
    """Build (once, in /tmp) a helper that loads the same kind of filter and execs, with no tracer."""
    import hashlib
    import tempfile
    digest = hashlib.sha1(_SECCOMP_ONLY.encode()).hexdigest()[:10]
    exe = Path(tempfile.gettempdir()) / f"simterpose-seccomp-only-{digest}"
    if not exe.exists():
        src = exe.with_suffix(".c")
        src.write_text(_SECCOMP_ONLY)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-lseccomp"], check=True)
    return str(exe)
