"""What experimenters ask a machine: its state, read from /proc, and the daemon's own footprint."""

from __future__ import annotations

import os
import socket


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0])
    return out


def self_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def snapshot() -> dict:
    load1, load5, load15 = os.getloadavg()
    mem = _meminfo()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count() or 0,
        "load": (load1, load5, load15),
        "mem_total_kb": mem.get("MemTotal", 0),
        "mem_available_kb": mem.get("MemAvailable", 0),
        "uptime_s": uptime,
        "daemon_rss_kb": self_rss_kb(),
    }
