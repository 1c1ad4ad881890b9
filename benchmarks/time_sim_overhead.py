"""What the simulation layer adds to each syscall, in µs (goal: at most 30 µs).

Under `simterpose run`, a `nanosleep(1 ms)` is one seccomp stop, a `Blocked` answer, a wait inside
SimGrid until the simulated wake-up date, a retry and a resume. A tracer that answers `getpid` at its
stop (a `Policy` whose handler returns `Value(0)`) pays for the stop and the resume only. The
difference between the two per-syscall costs is what the simulation layer costs:

    run     = (wall(nanosleep_loop N 1000) - wall(nanosleep_loop 0 1000)) / N   under `simterpose run`
    tracer  = (wall(syscall_loop N getpid)  - wall(syscall_loop 0 getpid))  / N   under the engine alone
    added   = run - tracer

`simterpose run` walls come from its JSON (`wall`: from the spawn of the process to its end, so the
interpreter and SimGrid start-up are not counted); the engine is timed the same way, spawn to end.
Each measurement is repeated (--repeat, default 5) and the median kept.

    .venv/bin/python benchmarks/time_sim_overhead.py [-n 10000] [--repeat 5] [--cpu N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simterpose.tracer import names  # noqa: E402
from simterpose.tracer.engine import Policy, Tracer  # noqa: E402
from simterpose.tracer.results import Value  # noqa: E402

TOYS = ROOT / "build" / "toys"
SIMTERPOSE = ROOT / ".venv" / "bin" / "simterpose"
PLATFORM = ROOT / "examples" / "platforms" / "two_hosts.xml"
GOAL_US = 30.0


class EmulatedGetpid(Policy):
    """The cheapest useful policy: getpid stops and is answered at its stop, nothing else stops."""

    def __init__(self):
        self.handlers = {names.number("getpid"): lambda sc: Value(0)}


def tracer_wall(argv: list[str], cpu: int | None) -> float:
    tracer = Tracer(EmulatedGetpid(), cpu=cpu)
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        tracer.spawn(argv, stdout=null.fileno())
        rc = tracer.run()
        wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{argv} exited {rc} under the tracer")
    return wall


def run_wall(argv: list[str], cpu: int | None, tmp: Path) -> float:
    scenario = tmp / "scenario.yaml"
    scenario.write_text(f"platform: {PLATFORM}\nprocesses:\n  - host: h1\n    path: {argv[0]}\n"
                        f"    args: {json.dumps(argv[1:])}\n")
    out = tmp / "result.json"
    cmd = [str(SIMTERPOSE), "run", str(scenario), "--cpu-model", "none", "--json", str(out)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"simterpose run failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    (record,) = json.loads(out.read_text())["processes"]
    return record["wall"]


def median_of(repeat: int, measure) -> float:
    return statistics.median(measure() for _ in range(repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="syscalls per run (default 10000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is kept")
    ap.add_argument("--cpu", type=int, default=None, help="pin tracers and tracees to this CPU")
    args = ap.parse_args()
    n = args.n
    if not (TOYS / "nanosleep_loop").exists():
        subprocess.run(["make", "-C", str(ROOT), "toys"], check=True)
    sleep_loop, syscall_loop = str(TOYS / "nanosleep_loop"), str(TOYS / "syscall_loop")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run_n = median_of(args.repeat, lambda: run_wall([sleep_loop, str(n), "1000"], args.cpu, tmp))
        run_0 = median_of(args.repeat, lambda: run_wall([sleep_loop, "0", "1000"], args.cpu, tmp))
    tr_n = median_of(args.repeat, lambda: tracer_wall([syscall_loop, str(n), "getpid"], args.cpu))
    tr_0 = median_of(args.repeat, lambda: tracer_wall([syscall_loop, "0", "getpid"], args.cpu))

    run_us = (run_n - run_0) / n * 1e6
    tr_us = (tr_n - tr_0) / n * 1e6
    added = run_us - tr_us
    pin = "unpinned" if args.cpu is None else f"pinned to CPU {args.cpu}"
    print(f"{n} syscalls per run, median of {args.repeat} runs, {pin}, {os.cpu_count()} CPUs\n")
    print(f"{'':44s} {'N calls':>9s} {'empty':>9s} {'per call':>10s}")
    print(f"{'simterpose run: nanosleep(1 ms), simulated':44s} {run_n:8.3f}s {run_0:8.3f}s {run_us:8.1f}µs")
    print(f"{'tracer only: getpid emulated at its stop':44s} {tr_n:8.3f}s {tr_0:8.3f}s {tr_us:8.1f}µs")
    print()
    print(f"simulation layer adds {added:.1f} µs per syscall (goal <= {GOAL_US:.0f} µs): "
          f"{'met' if added <= GOAL_US else 'NOT met'}")
    print(f"a simulated sleep costs {run_us / tr_us:.2f}x an emulated getpid" if tr_us > 0 else "")
    print(f"{n} simulated sleeps of 1 ms ({n / 1000:.1f} s of virtual time) took {run_n:.3f} s of wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
