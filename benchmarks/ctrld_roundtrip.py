"""Per-command round trip through ctrld vs a direct subprocess spawn+wait, measured side by side.

  * sequential: 30 x `/bin/echo` (run -> ProcessTerminated), over TCP and over the unix socket,
    versus `subprocess.run(["/bin/echo"])` from the same Python process; rounds are interleaved
    and the median per-command time of each method is reported. Also shown (not the goal's
    baseline): the same direct spawn by a parent that slept 1 ms before each, as a daemon has.
  * concurrent: 200 commands started at once, until all have exited.

The load average is printed before and after, and next to each ratio of medians the median of the
per-round ratios (each round's ctrld time over the same round's direct time): on a shared machine
the two differ when the load changed during the run.

Last, the cost of the hand-offs a daemon adds is shown: a 1-byte round trip between two processes
over a socketpair, as the kernel places them and with both on one CPU (a command through the
daemon crosses processes twice more than a direct spawn).

The client runs on uvloop, as `ctrl` does (`--loop asyncio`: on asyncio's own loop).

Run: .venv/bin/python benchmarks/ctrld_roundtrip.py [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop  # noqa: E402

from ctrld.client import Client  # noqa: E402
from ctrld.testing import DaemonProc  # noqa: E402

N_SEQ = 30
N_CONC = 200
ROUNDS = 15
ARGV = ["/bin/echo", "hello"]


def direct_seq() -> float:
    t0 = time.perf_counter()
    for _ in range(N_SEQ):
        subprocess.run(ARGV, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) / N_SEQ


def direct_seq_after_idle() -> float:
    """As direct_seq, but the parent sleeps 1 ms before each spawn (not counted), as a daemon does
    between requests: on this VM a child started by a process just woken costs ~60-130 us more
    CPU (a vCPU that was idle, caches cold) than one started by a process that kept running."""
    total = 0.0
    for _ in range(N_SEQ):
        time.sleep(0.001)
        t0 = time.perf_counter()
        subprocess.run(ARGV, stdout=subprocess.DEVNULL)
        total += time.perf_counter() - t0
    return total / N_SEQ


async def ctrld_seq(c: Client, capture: bool) -> float:
    t0 = time.perf_counter()
    for _ in range(N_SEQ):
        r = await c.run(ARGV, capture=capture)
        assert r.exit_code == 0
    return (time.perf_counter() - t0) / N_SEQ


def direct_conc() -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(ARGV, stdout=subprocess.DEVNULL) for _ in range(N_CONC)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


async def ctrld_conc(c: Client) -> float:
    t0 = time.perf_counter()
    handles = [await c.start(ARGV, capture=False) for _ in range(N_CONC)]
    results = await asyncio.gather(*(h.wait() for h in handles))
    assert all(r.exit_code == 0 for r in results)
    return time.perf_counter() - t0


def wakeup_round_trip(cpus: set | None, n: int = 5000) -> float:
    """Seconds per 1-byte round trip between two processes over a socketpair (two wake-ups of a
    sleeping process), with both on `cpus` (None: where the kernel places them). A command run
    through the daemon crosses processes twice more than a direct spawn (client -> daemon, daemon
    -> client): on a VM whose wake-ups of another vCPU are slow, this is the floor it adds."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing side: nothing but recv and send
        try:
            a.close()
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
            for _ in range(n):
                b.recv(1)
                b.send(b"x")
        finally:
            os._exit(0)
    b.close()
    mask = os.sched_getaffinity(0)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        t0 = time.perf_counter()
        for _ in range(n):
            a.send(b"x")
            a.recv(1)
        return (time.perf_counter() - t0) / n
    finally:
        os.sched_setaffinity(0, mask)
        a.close()
        os.waitpid(pid, 0)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def main() -> None:
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProc(["--tcp", "127.0.0.1:0", "--unix", f"{tmp}/ctrld.sock"])
        try:
            tcp = await Client.connect(d.tcp)
            unix = await Client.connect(d.unix)
            # warm-up (imports, page cache)
            direct_seq()
            await ctrld_seq(tcp, False)
            await ctrld_seq(unix, False)
            seq = {k: [] for k in ("direct", "tcp", "unix", "tcp+capture", "direct, parent idle")}
            conc = {k: [] for k in ("direct", "tcp")}
            for _ in range(ROUNDS):
                seq["direct"].append(direct_seq())
                seq["tcp"].append(await ctrld_seq(tcp, False))
                seq["unix"].append(await ctrld_seq(unix, False))
                seq["tcp+capture"].append(await ctrld_seq(tcp, True))
                seq["direct, parent idle"].append(direct_seq_after_idle())
            for _ in range(3):
                conc["direct"].append(direct_conc())
                conc["tcp"].append(await ctrld_conc(tcp))
            await tcp.close()
            await unix.close()
        finally:
            d.stop()

    med = {k: statistics.median(v) for k, v in seq.items()}
    print(f"client event loop: {type(asyncio.get_running_loop()).__module__.split('.')[0]}")
    print(f"sequential {N_SEQ} x {' '.join(ARGV)} (median of {ROUNDS} interleaved rounds, per command)")
    for k, v in med.items():
        ratio = v / med["direct"]
        paired = statistics.median(a / b for a, b in zip(seq[k], seq["direct"]))
        print(f"  {k:<22} {v * 1e3:7.3f} ms   {ratio:5.2f}x direct   (per-round ratios: median {paired:4.2f}x)")
    cm = {k: statistics.median(v) for k, v in conc.items()}
    print(f"concurrent {N_CONC} commands (median of 3, all started then all awaited)")
    for k, v in cm.items():
        print(f"  {k:<22} {v * 1e3:7.1f} ms total  {v / N_CONC * 1e3:6.3f} ms/command   {v / cm['direct']:5.2f}x direct")
    cpu = min(os.sched_getaffinity(0))
    print(f"wake-up round trip between two processes (socketpair, 1 byte): "
          f"{wakeup_round_trip(None) * 1e6:.1f} us as the kernel places them, "
          f"{wakeup_round_trip({cpu}) * 1e6:.1f} us both on CPU {cpu}")
    print(f"load average before {load_before}, after {loadavg()}")
    goal = med["tcp"] / med["direct"]
    print(f"goal <= 1.3x direct spawn: tcp {goal:.2f}x, unix {med['unix'] / med['direct']:.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the client's event loop")
    (uvloop.run if ap.parse_args().loop == "uvloop" else asyncio.run)(main())
