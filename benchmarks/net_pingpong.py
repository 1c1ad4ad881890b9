"""P4: a 10 000-message ping-pong of 64 B, emulated vs native (goal: ≤ 0.5 s and ≤ 20x native).

Native: pingpong_server and pingpong_client on 127.0.0.1, timed from the spawn of the client to the
exit of both. Emulated: the same two toys on two_hosts.xml under `simterpose run --cpu-model none
--mediate MODE`; "process" is the wall time the emulator measured for the client (spawn to exit,
from the JSON; interpreter and SimGrid start-up excluded), "command" the whole `simterpose run`.
Each measurement is repeated (--repeat) and the median kept; both are printed side by side.

    .venv/bin/python benchmarks/net_pingpong.py [-n 10000] [-s 64] [--repeat 3] [--mode MODE|all]
                                                [--cpu auto,none] [--no-logs]

With --mode all (the default) both mediation modes are measured in the same run, next to native;
--cpu lists the `simterpose run --cpu` placements to measure (default: auto, run's default).
Native is not pinned: the kernel places the two toys as it likes.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
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
PLATFORM = ROOT / "examples" / "platforms" / "two_hosts.xml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def native(n: int, size: int) -> float:
    port = free_port()
    server = subprocess.Popen([TOYS / "pingpong_server", str(port), str(n), str(size), "127.0.0.1"],
                              stdout=subprocess.DEVNULL)
    t0 = time.perf_counter()
    client = subprocess.run([TOYS / "pingpong_client", "127.0.0.1", str(port), str(n), str(size)],
                            capture_output=True, text=True)
    server.wait()
    wall = time.perf_counter() - t0
    assert client.returncode == 0 and server.returncode == 0, client.stderr
    return wall


def emulated(n: int, size: int, mode: str, workdir: Path, pin: list | None = None,
             logs: bool = True) -> tuple[float, float, float, float]:
    """(client process wall, whole command wall, simulated end date, whole command CPU seconds: user +
    system of the tracer and the tracees, less sensitive than wall time to other jobs' load)"""
    scenario = workdir / "pingpong.yaml"
    scenario.write_text(yaml.safe_dump({"platform": str(PLATFORM), "processes": [
        {"host": "h1", "path": str(TOYS / "pingpong_server"), "args": ["5000", str(n), str(size)]},
        {"host": "h2", "path": str(TOYS / "pingpong_client"), "args": ["h1", "5000", str(n), str(size)]}]}))
    out = workdir / "result.json"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([SIMTERPOSE, "run", scenario, "--cpu-model", "none", "--mediate", mode, "--json", out,
                        *(["--log-dir", workdir / "logs"] if logs else []), *(pin or [])],
                       capture_output=True, text=True)
    command = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        sys.exit(f"simterpose run failed:\n{p.stdout}\n{p.stderr}")
    doc = json.loads(out.read_text())
    return max(q["wall"] for q in doc["processes"]), command, doc["simulated_time"], cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("-s", "--size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", default="all", help="address-translation, full-mediation or all")
    ap.add_argument("--cpu", default="auto", metavar="LIST",
                    help="simterpose run --cpu values to measure, comma-separated (e.g. auto,none)")
    ap.add_argument("--no-logs", action="store_true",
                    help="without --log-dir (by default each process's stdout, stderr and syscall log are kept)")
    a = ap.parse_args()
    modes = ["address-translation", "full-mediation"] if a.mode == "all" else [a.mode]
    cpus = a.cpu.split(",")
    variants = [(m, cpu) for cpu in cpus for m in modes]
    nat = []
    proc: dict = {v: [] for v in variants}
    cmd: dict = {v: [] for v in variants}
    cpu: dict = {v: [] for v in variants}
    simulated = {}
    with tempfile.TemporaryDirectory(prefix="net_pingpong-") as tmp:
        for i in range(a.repeat):  # interleaved, so load changes hit every variant alike
            nat.append(native(a.n, a.size))
            for m, pin in variants:
                d = Path(tmp) / f"{m}-{pin}-{i}"
                d.mkdir()
                w, c, simulated[m], u = emulated(a.n, a.size, m, d, ["--cpu", pin], logs=not a.no_logs)
                proc[(m, pin)].append(w)
                cmd[(m, pin)].append(c)
                cpu[(m, pin)].append(u)
    n_med = statistics.median(nat)
    print(f"ping-pong {a.n} x {a.size} B, median of {a.repeat}, interleaved, "
          f"{'without' if a.no_logs else 'with'} --log-dir "
          f"(simulated end {', '.join(f'{m}: {t:.6f} s' for m, t in simulated.items())})")
    print(f"{'':22} {'wall s':>9} {'us/round trip':>14} {'x native':>9}")
    print(f"{'native':22} {n_med:9.3f} {n_med / a.n * 1e6:14.1f} {1:9.1f}")
    for m, pin in variants:
        p_med, c_med = statistics.median(proc[(m, pin)]), statistics.median(cmd[(m, pin)])
        label = m if len(cpus) == 1 else f"{m} --cpu {pin}"
        print(f"{label:22} {p_med:9.3f} {p_med / a.n * 1e6:14.1f} {p_med / n_med:9.1f}   (processes)")
        print(f"{'':22} {c_med:9.3f} {c_med / a.n * 1e6:14.1f} {c_med / n_med:9.1f}   (whole command)")
        u_med = statistics.median(cpu[(m, pin)])
        print(f"{'':22} {u_med:9.3f} {u_med / a.n * 1e6:14.1f} {'':9}   (whole command, CPU s: user+system)")
        ok = p_med <= 0.5 and p_med / n_med <= 20
        print(f"{'':22} project goal <= 0.5 s and <= 20x native: {'met' if ok else 'NOT met'}; "
              f"issue 11 goal <= 150 us per round trip, whole command: "
              f"{'met' if c_med / a.n <= 150e-6 else 'NOT met'}")
    if len(modes) == 2:
        fm, at = (statistics.median(proc[(m, cpus[0])]) for m in ("full-mediation", "address-translation"))
        print(f"full mediation / address translation: {fm / at:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
