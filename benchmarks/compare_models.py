"""Which network model fits real runs (issue 16; the table of docs/compare.md).

Runs `simterpose compare` on the shipped scenarios (examples/scenarios/compare_*.yaml: a 1 MB and a
10 MB bulk transfer, 100 round trips of 1000 B, over two_hosts.xml's 10 MB/s, 10 ms link) with each
model, and prints per process the real duration, each model's error and the closest model. Goal:
the closest model within 10 % of the real run for every process. Needs root (network namespaces);
without it, says so and exits 0 (nothing measured).

    .venv/bin/python benchmarks/compare_models.py [--models LV08,CM02,ns-3] [--repeat 3] [--tcp-slow-start auto|on|off]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMTERPOSE = ROOT / ".venv" / "bin" / "simterpose"
SCENARIOS = ["compare_bulk_1M", "compare_bulk_10M", "compare_pingpong"]
GOAL = 0.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="LV08,CM02,ns-3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tcp-slow-start", choices=("auto", "on", "off"), default="auto",
                    help="passed to simterpose compare (auto: slow start modelled under CM02)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("compare_models: the real runs need root (network namespaces); nothing measured")
        return 0
    met = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            js = Path(tmp) / f"{name}.json"
            p = subprocess.run([str(SIMTERPOSE), "compare", str(ROOT / "examples" / "scenarios" / f"{name}.yaml"),
                                "--network-model", args.models, "--repeat", str(args.repeat), "--json", str(js),
                                "--tcp-slow-start", args.tcp_slow_start],
                               capture_output=True, text=True)
            if not js.exists():
                print(f"{name}: compare failed ({p.returncode}): {p.stderr.strip()[-500:]}")
                met = False
                continue
            doc = json.loads(js.read_text())
            for proc in doc["processes"]:
                errors = "  ".join(f"{m} {100 * proc['emulated'][m]['relative_error']:+.1f} %" for m in doc["models"])
                best = proc["closest"]
                ok = best is not None and abs(best["relative_error"]) <= GOAL
                met &= ok
                print(f"{name:<18} {proc['host']:<3} real {proc['real']['duration']:.3f} s  {errors}  "
                      f"closest {best['model']} {100 * best['relative_error']:+.1f} %  {'ok' if ok else 'over 10 %'}")
    print(f"goal (closest model within {100 * GOAL:.0f} % for every process): {'met' if met else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
