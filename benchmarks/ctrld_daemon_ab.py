"""Two daemons side by side, driven by this tree's client library: round trip and CPU per command.

On a shared machine two runs of benchmarks/ctrld_roundtrip.py a minute apart can differ by more
than the change being measured.  This runs a daemon from another source tree (BEFORE, e.g. an
earlier commit: `git archive COMMIT ctrld | tar -x -C /tmp/before`) and one from this tree in the
same process, alternating rounds of 30 sequential `/bin/echo hello` over TCP and unix with rounds
of direct `subprocess.run`, and reads each daemon's and the client's CPU time from
/proc/PID/schedstat.  The client library is this tree's for both daemons; fields a daemon does not
know (e.g. RunCommand.defer_start) are ignored by it, as FlatBuffers readers do.

The client runs on uvloop, as `ctrl` does (`--loop asyncio`: on asyncio's own loop).

Run: .venv/bin/python benchmarks/ctrld_daemon_ab.py /tmp/before [--rounds 15] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402

from ctrld.client import Client  # noqa: E402

N_SEQ = 30
ARGV = ["/bin/echo", "hello"]


def start_daemon(tree: Path, sock: str) -> tuple[subprocess.Popen, str, str]:
    """A daemon whose `ctrld` package comes from `tree` (its cwd, first on sys.path with -m)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    p = subprocess.Popen([sys.executable, "-m", "ctrld.daemon_cli", "--tcp", "127.0.0.1:0", "--unix", sock],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=tree)
    tcp = None
    for line in p.stdout:
        if "listening on tcp://" in line:
            tcp = line.strip().split("://", 1)[1]
        if "ready pid=" in line:
            return p, tcp, "unix:" + sock
    raise RuntimeError(f"the daemon of {tree} did not start")


def cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def direct_seq() -> float:
    t0 = time.perf_counter()
    for _ in range(N_SEQ):
        subprocess.run(ARGV, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) / N_SEQ


async def ctrld_seq(c: Client, daemon_pid: int, cpu: list) -> float:
    d0, c0 = cpu_ns(daemon_pid), cpu_ns(os.getpid())
    t0 = time.perf_counter()
    for _ in range(N_SEQ):
        r = await c.run(ARGV, capture=False)
        assert r.exit_code == 0
    wall = (time.perf_counter() - t0) / N_SEQ
    cpu.append(((cpu_ns(daemon_pid) - d0) / N_SEQ, (cpu_ns(os.getpid()) - c0) / N_SEQ))
    return wall


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def main(before: Path, rounds: int) -> None:
    print(f"load average {loadavg()}; client event loop: {type(asyncio.get_running_loop()).__module__.split('.')[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        procs, clients = [], {}
        try:
            for name, tree in (("before", before), ("after", ROOT)):
                p, tcp, unix = start_daemon(tree, f"{tmp}/{name}.sock")
                procs.append(p)
                clients[f"{name} tcp"] = (await Client.connect(tcp), p.pid)
                clients[f"{name} unix"] = (await Client.connect(unix), p.pid)
            wall = {k: [] for k in ["direct", *clients]}
            cpu = {k: [] for k in clients}
            direct_seq()
            for c, pid in clients.values():
                await ctrld_seq(c, pid, [])
            for _ in range(rounds):
                wall["direct"].append(direct_seq())
                for k, (c, pid) in clients.items():
                    wall[k].append(await ctrld_seq(c, pid, cpu[k]))
            for c, _pid in clients.values():
                await c.close()
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    md = statistics.median(wall["direct"])
    print(f"{N_SEQ} x {' '.join(ARGV)} per round, {rounds} alternating rounds; direct {md * 1e3:.3f} ms per command")
    for k in clients:
        m = statistics.median(wall[k])
        paired = statistics.median(a / b for a, b in zip(wall[k], wall["direct"]))
        dcpu = statistics.median(x[0] for x in cpu[k]) / 1e3
        ccpu = statistics.median(x[1] for x in cpu[k]) / 1e3
        print(f"  {k:<12} {m * 1e3:7.3f} ms  {m / md:5.2f}x direct (per-round ratios: median {paired:4.2f}x)  "
              f"CPU per command: daemon {dcpu:4.0f} us, client {ccpu:4.0f} us")
    print(f"load average {loadavg()}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="a source tree holding an earlier ctrld/ package")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the client's event loop")
    a = ap.parse_args()
    (uvloop.run if a.loop == "uvloop" else asyncio.run)(main(a.before.resolve(), a.rounds))
