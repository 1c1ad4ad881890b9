"""Fixtures: real ctrld daemons (subprocesses on free ports / tmp unix sockets) and helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class DaemonProc:
    """A ctrld subprocess; `tcp` is 'host:port' of its first TCP listener, `unix` its socket."""

    def __init__(self, args: list[str], env: dict | None = None):
        e = dict(os.environ)
        e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
        if env:
            e.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ctrld.daemon_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=e, text=True,
        )
        self.tcp = None
        self.unix = None
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
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path):
    started = []

    def start(*args: str, unix: bool = True, tcp: bool = True) -> DaemonProc:
        a = list(args)
        if tcp and "--tcp" not in a:
            a += ["--tcp", "127.0.0.1:0"]
        if unix and "--unix" not in a:
            a += ["--unix", str(tmp_path / f"ctrld{len(started)}.sock")]
        d = DaemonProc(a)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon shared by a test module (tests open their own connections)."""
    sock = tmp_path_factory.mktemp("ctrld") / "ctrld.sock"
    d = DaemonProc(["--tcp", "127.0.0.1:0", "--unix", str(sock)])
    yield d
    assert d.alive(), "the daemon died during the module's tests"
    d.stop()


def arun(coro, timeout: float = 30):
    """Run a coroutine to completion in a fresh loop (tests stay plain functions)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists": look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(pred, timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
