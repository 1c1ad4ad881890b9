"""P7: wall time per message with 10, 50 and 100 processes (goal: flat).

P processes = P/2 ping-pong pairs (pingpong_server on host 2k, pingpong_client on host 2k+1), each
pair exchanging M round trips of S bytes, on a generated platform: a SimGrid <cluster> of P hosts
(1Gf, 125 MB/s, 50 us private links) written into a temporary directory. All pairs run at once
under `simterpose run --cpu-model none`; the whole command's wall time is divided by the number of
round trips (P/2 * M). Flat per-message cost = the emulator scales with the number of processes.

    .venv/bin/python benchmarks/net_scaling.py [-m 500] [-s 64] [--sizes 10,50,100] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOYS = ROOT / "build" / "toys"
SIMTERPOSE = ROOT / ".venv" / "bin" / "simterpose"

CLUSTER = """<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <cluster id="c" prefix="n" suffix="" radical="0-{last}" speed="1Gf" bw="125MBps" lat="50us"
           bb_bw="2.25GBps" bb_lat="500us"/>
</platform>
"""


def run(nprocs: int, m: int, size: int, mode: str, workdir: Path) -> tuple[float, float, float]:
    """(command wall, median process wall, simulated end)"""
    platform = workdir / "cluster.xml"
    platform.write_text(CLUSTER.format(last=nprocs - 1))
    procs = []
    for k in range(nprocs // 2):
        server, client = f"n{2 * k}", f"n{2 * k + 1}"
        procs.append({"host": server, "path": str(TOYS / "pingpong_server"), "args": ["5000", str(m), str(size)]})
        procs.append({"host": client, "path": str(TOYS / "pingpong_client"),
                      "args": [server, "5000", str(m), str(size)]})
    scenario = workdir / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"platform": str(platform), "processes": procs}))
    out = workdir / "result.json"
    t0 = time.perf_counter()
    p = subprocess.run([SIMTERPOSE, "run", scenario, "--cpu-model", "none", "--mediate", mode, "--json", out,
                        "--log-dir", workdir / "logs"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"simterpose run failed ({nprocs} processes):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    doc = json.loads(out.read_text())
    return wall, statistics.median(q["wall"] for q in doc["processes"]), doc["simulated_time"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", type=int, default=500, help="round trips per pair")
    ap.add_argument("-s", "--size", type=int, default=64)
    ap.add_argument("--sizes", default="10,50,100", help="numbers of processes")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--mode", default="address-translation")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="net_scaling-") as tmp:
        for n in sizes:
            walls = []
            for i in range(a.repeat):
                d = Path(tmp) / f"{n}-{i}"
                d.mkdir()
                walls.append(run(n, a.m, a.size, a.mode, d))
            wall = statistics.median(w[0] for w in walls)
            rows.append((n, wall, statistics.median(w[1] for w in walls), walls[0][2]))
    print(f"{a.mode}: P/2 pairs x {a.m} round trips of {a.size} B, --cpu-model none, cluster platform")
    print(f"{'processes':>9} {'round trips':>11} {'wall s':>8} {'us/round trip':>14} {'vs first':>9} {'simulated s':>12}")
    base = None
    for n, wall, _pwall, simulated in rows:
        per = wall / (n // 2 * a.m) * 1e6
        base = base or per
        print(f"{n:9d} {n // 2 * a.m:11d} {wall:8.2f} {per:14.1f} {per / base:9.2f} {simulated:12.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
