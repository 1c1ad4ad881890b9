"""Fixtures: real ctrld daemons (subprocesses on free ports / tmp unix sockets) and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ctrld.testing import DaemonProc

ROOT = Path(__file__).resolve().parents[2]


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
    except (FileNotFoundError, ProcessLookupError):
        # The process was reaped between kill() and the read (reading
        # /proc/PID/stat of a vanished pid raises ESRCH, not ENOENT).
        return False


def wait_until(pred, timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@contextlib.contextmanager
def reopening_flood(host: str, port: int, n: int):
    """`n` idle connections to host:port, each re-opened at once when the daemon closes it (an
    eviction), by a thread, for the duration of the `with` block: the flood that tries to keep an
    authenticating client out."""
    stop = threading.Event()

    def reopen(s=None):
        if s is not None:
            s.close()
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except OSError:
            pass
        return s

    socks = [reopen() for _ in range(n)]

    def flood():
        while not stop.is_set():
            for i, s in enumerate(socks):
                try:
                    if s.recv(65536, socket.MSG_DONTWAIT) == b"":
                        socks[i] = reopen(s)
                except BlockingIOError:
                    pass
                except OSError:
                    socks[i] = reopen(s)
            time.sleep(0.001)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()
