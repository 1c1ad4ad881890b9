"""Issue 15: who may use the daemon, and whose processes a client may touch.

The second user is `nobody` (65534): the test forks and the child drops to that uid before
connecting, so the daemon sees a genuinely different peer (SO_PEERCRED / sock_diag)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from ctrld.client import Client, CtrlError
from tests.ctrld.conftest import ROOT, arun, pid_alive, wait_until

NOBODY = 65534
TOKEN = "s3cret-token-0123456789abcdef"



@pytest.fixture(autouse=True)
def _as_root():
    # Never skipped: `make test` runs as root, and a second uid is what these tests are about.
    assert os.geteuid() == 0, "these tests act as a second uid (nobody): run them as root"


def as_uid(uid: int, coro_fn, *args):
    """Run `coro_fn(*args)` in a forked child whose uid/gid are `uid`; returns its result, or
    {"error": message, "code": n} when it raised CtrlError."""
    return as_uid_result(*as_uid_start(uid, coro_fn, *args))


def as_uid_start(uid: int, coro_fn, *args):
    """Fork (from the main thread, even inside a running loop) the child of as_uid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            asyncio.events._set_running_loop(None)  # the parent's loop is not ours
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                out = {"ok": asyncio.run(asyncio.wait_for(coro_fn(*args), 30))}
            except CtrlError as e:
                out = {"error": str(e), "code": e.code}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def as_uid_result(pid: int, r: int):
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


async def _run_id(addr, token=None):
    async with await Client.connect(addr, token=token) as c:
        r = await c.run(["id", "-u"])
        return r.stdout.decode().strip()


def _ctrld(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ctrld.daemon_cli", *args], capture_output=True, text=True, env=env,
                          timeout=20)


def test_tls_without_client_ca_or_token_refuses_to_start_off_loopback(tmp_path):
    # The files need not even be valid: the configuration is refused before they are read.
    r = _ctrld("--tcp", "0.0.0.0:0", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem"))
    assert r.returncode == 2
    assert "TLS without --tls-client-ca does not authenticate clients" in r.stderr
    assert "Traceback" not in r.stderr


def test_second_uid_refused_on_loopback_tcp_daemon_uid_served(start_daemon):
    d = start_daemon(unix=False)
    assert as_uid(0, _run_id, d.tcp) == {"ok": "0"}
    denied = as_uid(NOBODY, _run_id, d.tcp)
    assert "uid 65534 is not allowed" in denied["error"] and denied["code"] == 13
    # the same user with the token is served (the token is the credential), as itself
    tok = tempfile.NamedTemporaryFile("w", delete=False)
    tok.write(TOKEN)
    tok.close()
    d2 = start_daemon("--token-file", tok.name, unix=False)
    assert as_uid(NOBODY, _run_id, d2.tcp, TOKEN) == {"ok": "0"}  # a root daemon runs commands as root
    os.unlink(tok.name)


def test_allow_uid_works_on_tcp_and_unix(start_daemon):
    sockdir = tempfile.mkdtemp()
    os.chmod(sockdir, 0o755)  # the test user must reach the socket
    sock = os.path.join(sockdir, "ctrld.sock")
    d = start_daemon("--allow-uid", str(NOBODY), "--unix", sock)
    assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
    assert as_uid(NOBODY, _run_id, d.tcp) == {"ok": "0"}
    assert as_uid(NOBODY, _run_id, d.unix) == {"ok": "0"}
    denied = as_uid(NOBODY + 1 if NOBODY < 65535 else 4242, _run_id, d.unix)
    assert "not allowed" in denied["error"]


async def _try_touch(addr, pid):
    """What a second user can do to `pid`: kill, probe, wait, see it in status, get its events."""
    out = {}
    async with await Client.connect(addr) as c:
        for what, call in (("kill", c.kill(pid)), ("probe", c.kill(pid, sig=0)), ("wait", c.wait_pid(pid))):
            try:
                await call
                out[what] = "done"
            except CtrlError as e:
                out[what] = f"{e.code} {e}"
        s = await c.status()
        out["ps"] = [p.pid for p in s.processes or []]
    return out


def test_client_cannot_kill_or_watch_another_owners_process(start_daemon):
    d = start_daemon("--allow-uid", str(NOBODY), unix=False)

    async def start_sleep():
        c = await Client.connect(d.tcp)
        h = await c.start(["sleep", "30"])
        async for ev in h.events():
            if ev.kind == "ExecveTerminated":
                break
        return c, h

    async def main():
        c, h = await start_sleep()
        other = as_uid(NOBODY, _try_touch, d.tcp, h.pid)["ok"]  # blocks this loop: the daemon buffers for c
        alive = pid_alive(h.pid)
        # its owner (and the daemon's uid) may
        await c.kill(h.pid, sig=0)
        await c.kill(h.pid, sig=signal.SIGTERM)
        r = await h.wait()
        await c.close()
        return other, alive, r

    other, alive, r = arun(main())
    assert other["kill"].startswith("1 ") and "belongs to uid:0" in other["kill"]
    assert other["probe"].startswith("1 ") and other["wait"].startswith("1 ")
    assert other["ps"] == []
    assert alive and r.signal == signal.SIGTERM


async def _subscribe_and_watch(addr, ready_w, go_r):
    """Subscribe, tell the parent, wait until it says the other user's run is over, then make sure
    every event the daemon sent before our StatusRequest's answer has arrived."""
    async with await Client.connect(addr) as c:
        await c.subscribe()
        seen = []

        async def collect():
            async for ev in c.events():
                seen.append(ev.kind)
        task = asyncio.create_task(collect())
        os.write(ready_w, b"x")
        os.read(go_r, 1)  # blocks this loop meanwhile: events pile up in the socket
        await c.status()  # ordered after any event of the finished run
        await asyncio.sleep(0)
        task.cancel()
        return [k for k in seen if k != "StatusReply"]


def test_subscribers_see_only_their_own_identity(start_daemon):
    d = start_daemon("--allow-uid", str(NOBODY), unix=False)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    async def main():
        child = as_uid_start(NOBODY, _subscribe_and_watch, d.tcp, ready_w, go_r)
        os.read(ready_r, 1)
        async with await Client.connect(d.tcp) as c:
            await c.subscribe()
            r = await c.run(["echo", "password=hunter2"])
        os.write(go_w, b"x")
        return as_uid_result(*child), r

    other, r = arun(main())
    assert r.stdout == b"password=hunter2\n"
    assert other == {"ok": []}


def test_run_as_only_for_the_daemons_uid(start_daemon):
    d = start_daemon("--allow-uid", str(NOBODY), unix=False)

    async def run_as(addr):
        async with await Client.connect(addr) as c:
            r = await c.run(["id"], run_as=(NOBODY, NOBODY, []))
            if r.exec_failed:
                raise CtrlError(r.message, r.exec_errno)
            return r.stdout.decode().strip()

    out = arun(run_as(d.tcp))
    assert out.startswith("uid=65534") and "gid=65534" in out and "groups=65534" in out
    denied = as_uid(NOBODY, run_as, d.tcp)
    assert denied["code"] == 1 and "run_as needs the daemon's own uid" in denied["error"]


def test_run_as_refuses_ids_outside_uid_t(start_daemon):
    """(uid_t)-1 means "unchanged" to setresuid: run_as_uid 4294967295 ran the command as the
    daemon's own uid; 2**40 failed inside the spawn with OverflowError."""
    d = start_daemon(unix=False)

    async def go(run_as):
        async with await Client.connect(d.tcp) as c:
            try:
                r = await c.run(["id", "-u"], run_as=run_as)
            except CtrlError as e:
                return str(e)
            return r.stdout.decode().strip()

    for run_as in ((0xFFFFFFFF, 0xFFFFFFFF, []), (2**40, 1, []), (NOBODY, NOBODY, [0xFFFFFFFF])):
        out = arun(go(run_as))
        assert "not a valid id" in out or "no passwd entry" in out, (run_as, out)
    assert arun(go((NOBODY, NOBODY, []))) == str(NOBODY)


def test_kill_signal_zero_is_a_probe(start_daemon):
    d = start_daemon()

    async def main():
        async with await Client.connect(d.unix) as c:
            h = await c.start(["sleep", "30"])
            async for ev in h.events():
                if ev.kind == "ExecveTerminated":
                    break
            await c.kill(h.pid, sig=0)
            still = pid_alive(h.pid)
            await h.kill(signal.SIGKILL)
            r = await h.wait()
            with pytest.raises(CtrlError) as gone:
                await c.kill(h.pid, sig=0)
            return still, r, gone.value

    still, r, gone = arun(main())
    assert still and r.signal == signal.SIGKILL and gone.code == 3
    # and through ctrl: exit 0 while it runs, nothing killed
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    async def start():
        c = await Client.connect(d.unix)
        h = await c.start(["sleep", "30"], kill_on_disconnect=False)
        async for ev in h.events():
            if ev.kind == "ExecveTerminated":
                break
        await c.close()
        return h.pid
    pid = arun(start())
    ctrl = [sys.executable, "-m", "ctrld.ctrl_cli", "-c", d.unix]
    p = subprocess.run([*ctrl, "kill", "-s", "0", str(pid)], env=env, capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert pid_alive(pid)
    w = subprocess.Popen([*ctrl, "wait", str(pid)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run([*ctrl, "kill", "-s", "TERM", str(pid)], env=env, capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and wait_until(lambda: not pid_alive(pid))
    out, err = w.communicate(timeout=20)
    assert w.returncode == 128 + signal.SIGTERM, err
    # the exit status stays retrievable after the fact
    p = subprocess.run([*ctrl, "wait", str(pid)], env=env, capture_output=True, text=True, timeout=20)
    assert p.returncode == 128 + signal.SIGTERM
