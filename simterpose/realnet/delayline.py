"""Userspace propagation delay: ``python -m simterpose.realnet.delayline IFNAME LATENCIES_JSON``.

Run inside the router namespace. It creates the TUN device IFNAME, prints ``ready IFNAME`` on stdout,
then forever: reads each IPv4 packet the router sends into the device, holds it for the one-way
latency of its (source, destination) pair, and writes it back, so the router forwards it on to the
destination host. Why userspace: the kernel this was built on has no ``sch_netem`` (tc can shape
rates with tbf/htb but cannot delay). Packets of unknown pairs (or not IPv4) pass without delay.
It exits when its stdin reaches EOF (the parent died or closed it) or on SIGTERM.

LATENCIES_JSON: ``{"10.0.0.1 10.0.0.2": 0.01, ...}`` (seconds, one entry per direction).
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import select
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def serve(fd: int, latencies: dict[bytes, float], control: int) -> None:
    heap: list[tuple[float, int, bytes]] = []
    seq = 0
    read, write, now_fn, push, pop = os.read, os.write, time.monotonic, heapq.heappush, heapq.heappop
    while True:
        timeout = max(0.0, heap[0][0] - now_fn()) if heap else None
        ready, _, _ = select.select([fd, control], [], [], timeout)
        if control in ready and not os.read(control, 4096):
            return
        now = now_fn()
        if fd in ready:
            for _ in range(512):
                try:
                    pkt = read(fd, 65536)
                except BlockingIOError:
                    break
                lat = latencies.get(pkt[12:20], 0.0) if len(pkt) >= 20 and pkt[0] >> 4 == 4 else 0.0
                if lat <= 0:
                    _send(write, fd, pkt)
                else:
                    seq += 1
                    push(heap, (now + lat, seq, pkt))
        now = now_fn()
        while heap and heap[0][0] <= now:
            _send(write, fd, pop(heap)[2])


def _send(write, fd: int, pkt: bytes) -> None:
    try:
        write(fd, pkt)
    except (BlockingIOError, OSError):
        pass  # dropped, as a full link would


def _tight_timers() -> None:
    """1 us timer slack instead of 50 us: packets leave closer to their due date."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    _tight_timers()
    name, table = argv[0], json.loads(argv[1])
    latencies = {}
    for pair, lat in table.items():
        src, dst = pair.split()
        latencies[socket.inet_aton(src) + socket.inet_aton(dst)] = float(lat)
    fd = open_tun(name)
    print(f"ready {name}", flush=True)
    try:
        serve(fd, latencies, sys.stdin.fileno())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
