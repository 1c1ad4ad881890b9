"""P3: bytes per second copied between tracees in full mediation (1 MB messages).

A bulk transfer of SIZE bytes written and read in 1 MB calls by two small Python programs that do
nothing else with the bytes (sendall of one buffer / recv_into one buffer), emulated with --mediate full-mediation
(the tracer reads each message from the sender's memory and writes it into the receiver's), next to
address translation (the kernel copies) and a native run, all in this one run. Start-up is removed
by subtracting a 0-byte transfer of each kind. Goal: >= 1 GB/s. (The 2012 Simterpose: ~4 MB/s.)
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMTERPOSE = [sys.executable, "-m", "simterpose.cli"]
SIZE = int(os.environ.get("P3_BYTES", 1_000_000_000))
PLATFORM = """<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <zone id="w" routing="Full">
    <host id="a" speed="1Gf"><prop id="ip" value="10.0.0.1"/></host>
    <host id="b" speed="1Gf"><prop id="ip" value="10.0.0.2"/></host>
    <link id="l" bandwidth="100GBps" latency="1us"/>
    <route src="a" dst="b"><link_ctn id="l"/></route>
  </zone>
</platform>
"""


RECEIVER = """
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(); c, _ = l.accept()
buf = bytearray(1 << 20); total = 0
while (n := c.recv_into(buf)):
    total += n
print(total)
"""
SENDER = """
import socket, sys, time
size = int(sys.argv[3]); buf = bytes(range(256)) * 4096
for _ in range(1000):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); break
    except ConnectionRefusedError:
        time.sleep(0.01)
while size > 0:
    s.sendall(buf[:min(size, len(buf))]); size -= len(buf)
s.close()
"""
PY = "/usr/bin/python3"


def scenario(tmp: Path, size: int) -> Path:
    (tmp / "p.xml").write_text(PLATFORM)
    (tmp / "rx.py").write_text(RECEIVER)
    (tmp / "tx.py").write_text(SENDER)
    y = tmp / f"s{size}.yaml"
    y.write_text(f"""platform: p.xml
processes:
  - {{host: a, path: {PY}, args: [{tmp}/rx.py, 0.0.0.0, 6000]}}
  - {{host: b, path: {PY}, args: [{tmp}/tx.py, 10.0.0.1, 6000, {size}], start_time: 0.001}}
""")
    return y


def emulated(tmp: Path, size: int, mode: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([*SIMTERPOSE, "run", str(scenario(tmp, size)), "--mediate", mode, "--cpu-model", "none",
                        "--log-dir", str(tmp / "log")], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        logs = "".join(p.read_text() for p in sorted((tmp / "log").glob("*.stderr")))
        raise SystemExit(f"emulated run failed ({mode}, {size} bytes):\n{r.stdout}{r.stderr}{logs}")
    return time.perf_counter() - t


def native(tmp: Path, size: int) -> float:
    scenario(tmp, 0)
    t = time.perf_counter()
    rx = subprocess.Popen([PY, str(tmp / "rx.py"), "127.0.0.1", "6001"], stdout=subprocess.PIPE)
    subprocess.run([PY, str(tmp / "tx.py"), "127.0.0.1", "6001", str(size)], check=True, capture_output=True)
    rx.communicate()
    return time.perf_counter() - t


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = []
        for name, run in (("full mediation", lambda n: emulated(tmp, n, "full-mediation")),
                          ("address translation", lambda n: emulated(tmp, n, "address-translation")),
                          ("native", lambda n: native(tmp, n))):
            empty = min(run(0) for _ in range(2))
            full = min(run(SIZE) for _ in range(2))
            rows.append((name, full, empty, SIZE / max(full - empty, 1e-9)))
    print(f"{SIZE / 1e6:.0f} MB in 1 MB write()/read() calls, best of 2, start-up (0-byte run) removed")
    print(f"{'':22s}{'run':>9s}{'empty':>9s}{'throughput':>14s}")
    for name, full, empty, bps in rows:
        print(f"{name:22s}{full:8.2f}s{empty:8.2f}s{bps / 1e9:10.2f} GB/s")
    fm = rows[0][3]
    print(f"full mediation copies {fm / 1e9:.2f} GB/s (goal >= 1 GB/s: {'met' if fm >= 1e9 else 'not met'}); "
          f"{fm / rows[2][3]:.2f}x native loopback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
