"""Idle daemon: CPU time and wake-ups over 10 s with a connected, silent client; RSS.

The daemon is measured twice side by side: as started from this environment, and with a
bytecode cache available (a normal install writes .pyc files; PYTHONDONTWRITEBYTECODE=1
makes every start compile the 4000-line generated module from source, which costs RSS).

Run: .venv/bin/python benchmarks/ctrld_idle.py [seconds]
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctrld.testing import DaemonProc  # noqa: E402

IDLE_S = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                out[k] = int(v.split()[0])
    return out


def measure(label: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if env.get("PYTHONPYCACHEPREFIX") == "@":
            env = dict(env, PYTHONPYCACHEPREFIX=f"{tmp}/pyc")
            # populate the cache once, as an installed package would have it
            DaemonProc(["--tcp", "127.0.0.1:0"], env=env).stop()
        d = DaemonProc(["--tcp", "127.0.0.1:0", "--unix", f"{tmp}/s.sock"], env=env)
        try:
            # a connected client that stays silent: the daemon must not poll it
            from ctrld.client import Client

            async def connect():
                return await Client.connect(d.tcp)

            loop = asyncio.new_event_loop()
            c = loop.run_until_complete(connect())
            raw = socket.create_connection(("127.0.0.1", d.port))
            time.sleep(0.5)
            c0, s0 = cpu_s(d.pid), status(d.pid)
            time.sleep(IDLE_S)
            c1, s1 = cpu_s(d.pid), status(d.pid)
            raw.close()
            loop.run_until_complete(c.close())
            loop.close()
        finally:
            d.stop()
    wakeups = (s1["voluntary_ctxt_switches"] + s1["nonvoluntary_ctxt_switches"]
               - s0["voluntary_ctxt_switches"] - s0["nonvoluntary_ctxt_switches"])
    return {"label": label, "cpu_ms": (c1 - c0) * 1e3, "wakeups": wakeups, "rss": s1["VmRSS"],
            "anon": s1["RssAnon"], "file": s1["RssFile"]}


def main() -> None:
    base = dict(os.environ)
    rows = [measure("as run here", base),
            measure("with .pyc cache", dict(base, PYTHONDONTWRITEBYTECODE="", PYTHONPYCACHEPREFIX="@"))]
    print(f"idle ctrld for {IDLE_S:g} s, 2 clients connected (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    for r in rows:
        print(f"  {r['label']:<18} cpu {r['cpu_ms']:6.1f} ms  context switches {r['wakeups']:4d}  "
              f"RSS {r['rss'] / 1024:5.1f} MiB (anon {r['anon'] / 1024:4.1f}, file {r['file'] / 1024:4.1f})")
    print("goals: cpu 0, RSS <= 25 MiB")


if __name__ == "__main__":
    main()
