"""Whole-tree kill with a delegated cgroup v2: a descendant that left the process group (setsid)
survives a process-group kill but not `cgroup.kill`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest

from ctrld.client import Client
from tests.ctrld.conftest import ROOT, arun, pid_alive, wait_until

CANDIDATES = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]


@pytest.fixture
def cgroup_dir():
    for base in CANDIDATES:
        if os.path.exists(os.path.join(base, "cgroup.procs")) and os.path.exists(os.path.join(base, "cgroup.max.depth")):
            path = os.path.join(base, f"ctrld-test-{uuid.uuid4().hex[:8]}")
            try:
                os.mkdir(path)
            except OSError:
                continue
            if not os.path.exists(os.path.join(path, "cgroup.kill")):
                os.rmdir(path)
                continue
            yield path
            for sub in os.listdir(path):
                if os.path.isdir(os.path.join(path, sub)):
                    try:
                        os.rmdir(os.path.join(path, sub))
                    except OSError:
                        pass
            os.rmdir(path)
            return
    pytest.skip("no writable cgroup v2 hierarchy with cgroup.kill")


def _session_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[3])  # state ppid pgrp session
    except (OSError, IndexError, ValueError):
        return -1


def _escaping_run(d, tmp_path):
    pidfile = tmp_path / "escapee.pid"

    async def go():
        async with await Client.connect(d.tcp) as c:
            h = await c.start(["sh", "-c", f"setsid sleep 60 & echo $! > {pidfile}; wait"])
            ok = await asyncio.to_thread(wait_until, lambda: pidfile.exists() and pidfile.read_text().strip())
            assert ok
            escapee = int(pidfile.read_text())
            # It has escaped only once setsid() ran (then it is the leader of its own session):
            # killing the group before that would take it too.
            assert await asyncio.to_thread(wait_until, lambda: _session_of(escapee) == escapee)
            h_pid = None
            async for ev in h.events():
                if ev.kind == "ProcessLaunched":
                    h_pid = ev.body.pid
                    break
            await c.kill(h_pid, sig=signal.SIGKILL)
            r = await h.wait()
            return r, escapee

    return arun(go())


def test_cgroup_kill_catches_escaped_descendant(start_daemon, cgroup_dir, tmp_path):
    d = start_daemon("--cgroup", cgroup_dir)
    r, escapee = _escaping_run(d, tmp_path)
    assert r.signal == signal.SIGKILL
    assert wait_until(lambda: not pid_alive(escapee), 3), "cgroup.kill missed the setsid'd descendant"
    # the per-command cgroup is removed once empty
    assert wait_until(lambda: not [s for s in os.listdir(cgroup_dir) if s.startswith("cmd-")], 3)


def test_without_cgroup_the_escapee_survives(start_daemon, tmp_path):
    d = start_daemon()
    r, escapee = _escaping_run(d, tmp_path)
    try:
        assert r.signal == signal.SIGKILL
        assert pid_alive(escapee)  # why --cgroup exists
    finally:
        os.kill(escapee, signal.SIGKILL)


def test_cgroup_option_validated(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ctrld.daemon_cli", "--cgroup", str(tmp_path)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=20)
    assert r.returncode == 2 and "not a cgroup v2 directory" in r.stderr
