"""Start a real ctrld daemon as a subprocess (for tests, benchmarks and experiment scripts).

    d = DaemonProc(["--tcp", "127.0.0.1:0", "--unix", "/tmp/x.sock"])
    ... Client.connect(d.tcp) ...
    d.stop()

Port 0 lets the kernel pick a free port; the daemon prints what it bound, which is read back here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class DaemonProc:
    """A ctrld subprocess; `tcp` is 'host:port' of its first TCP listener, `unix` its socket."""

    def __init__(self, args: list[str], env: dict | None = None, wrapper: list[str] | None = None):
        """`wrapper`: a command prefix, e.g. ["prlimit", "--nofile=40"]."""
        e = dict(os.environ)
        e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
        if env:
            e.update(env)
        self.proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "ctrld.daemon_cli", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=e, text=True,
        )
        self.tcp = None
        self.unix = None
        self.stderr_text = ""
        self.lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError(f"ctrld exited ({self.proc.wait()}): {err}")
            self.lines.append(line.strip())
            if "listening on tcp://" in line or "listening on tls://" in line:
                self.tcp = self.tcp or line.strip().split("://", 1)[1]
            elif "listening on unix:" in line:
                self.unix = self.unix or "unix:" + line.strip().split("unix:", 1)[1]
            elif "ready pid=" in line:
                self.pid = int(line.split("pid=")[1])
                return
        raise RuntimeError("ctrld did not become ready")

    @property
    def port(self) -> int:
        return int(self.tcp.rsplit(":", 1)[1])

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the daemon in KiB: its resident memory now and at its peak."""
        vals = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    vals[k] = int(v.split()[0])
        return vals["VmRSS"], vals["VmHWM"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr_text = self.proc.stderr.read()  # everything the daemon logged
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode
