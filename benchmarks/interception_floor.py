"""The kernel's floor per emulated syscall, ptrace vs seccomp user notification, without Python.

Compiles benchmarks/interception_floor.c and runs it (--repeat times, interleaved in one process
each): a tracee's getppid() answered by a supervisor on the same CPU, either at a seccomp-stop
(waitpid, GETREGS, SETREGS, CONT: what simterpose's tracer does per emulated syscall) or through
seccomp_unotify(2) (ioctl RECV, ioctl SEND). Prints the medians and their ratio: how much of a stop
the interception mechanism itself costs, before any Python (issue 11's "cheaper interception path").

    .venv/bin/python benchmarks/interception_floor.py [-n 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().with_suffix(".c")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="emulated calls per run")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="interception_floor-") as tmp:
        exe = Path(tmp) / "interception_floor"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(SOURCE)], check=True)
        runs: dict[str, list[float]] = {"ptrace": [], "notify": []}
        for _ in range(a.repeat):
            out = subprocess.run([str(exe), str(a.n)], check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                method, us = line.split()
                runs[method].append(float(us))
    pt, un = statistics.median(runs["ptrace"]), statistics.median(runs["notify"])
    print(f"one emulated syscall, tracee and supervisor on one CPU, median of {a.repeat} x {a.n} calls")
    print(f"  ptrace (seccomp stop: waitpid, GETREGS, SETREGS, CONT)  {pt:7.2f} us")
    print(f"  seccomp user notification (ioctl RECV, ioctl SEND)      {un:7.2f} us")
    print(f"  user notification / ptrace: {un / pt:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
