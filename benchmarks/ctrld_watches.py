"""CPU cost of port watches: 1 watch vs 20 watches (goal: 20 cost at most 2x one), and how long
adding 20 000 watches in one request takes.

A watched port that never listens keeps the daemon polling NETLINK_SOCK_DIAG every millisecond;
the daemon's CPU time (utime + stime from /proc/PID/stat) is measured over a fixed wall time with
1 watch, then with 20 (distinct ports), side by side in alternating rounds, on a fresh daemon.

Run: .venv/bin/python benchmarks/ctrld_watches.py [seconds per measurement]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctrld.client import Client  # noqa: E402
from ctrld.protocol.generated import ctrld_generated as g  # noqa: E402
from ctrld.testing import DaemonProc  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
ROUNDS = 3
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def measure(d: DaemonProc, n: int) -> float:
    async with await Client.connect(d.unix) as c:
        # ports 1..n: nothing listens there (privileged, unused)
        watches = [await c.watch_port(p, timeout=SECONDS + 30) for p in range(1, n + 1)]
        await asyncio.sleep(0.2)
        c0 = cpu_s(d.pid)
        await asyncio.sleep(SECONDS)
        used = cpu_s(d.pid) - c0
        for w in watches:
            await w.remove()
    await asyncio.sleep(0.2)
    return used


async def bulk_add(d: DaemonProc, n: int) -> float:
    async with await Client.connect(d.unix) as c:
        rid, req = c._new_request({"WatchEnded"})
        svs = []
        for i in range(n):
            sv = g.SurveillanceEventT()
            sv.eventType, sv.event = g.Surveillance.TCPSocket, g.TCPSocketT(destport=1 + i % 1000, timeoutMs=60000)
            svs.append(sv)
        t0 = time.monotonic()
        c._send(g.RunCommandT(requestId=rid, toWatch=svs))
        for _ in range(n):
            await req.get()
        return time.monotonic() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProc(["--unix", f"{tmp}/ctrld.sock", "--max-watches", "30000"])
        try:
            one, twenty = [], []
            for _ in range(ROUNDS):
                one.append(asyncio.run(measure(d, 1)))
                twenty.append(asyncio.run(measure(d, 20)))
            m1, m20 = statistics.median(one), statistics.median(twenty)
            print(f"daemon CPU over {SECONDS:g} s: 1 watch {m1 * 1000:.0f} ms, 20 watches {m20 * 1000:.0f} ms "
                  f"(rounds: {[round(x * 1000) for x in one]} / {[round(x * 1000) for x in twenty]} ms)")
            print(f"ratio 20/1: {m20 / m1:.2f}x (goal <= 2x)")
            t = asyncio.run(bulk_add(d, 20000))
            print(f"20 000 port watches in one request: all acknowledged in {t:.2f} s")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
