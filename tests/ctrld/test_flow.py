"""Issue 15: flow control (a slow reader pauses the command, never kills it), `ctrl` in constant
memory, stdin forwarding, pdsh-style fan-out, SIGHUP, leftovers, per-client limits."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ctrld.client import Client, CtrlError
from ctrld.protocol import codec
from ctrld.protocol.generated import ctrld_generated as g
from ctrld.testing import DaemonProc
from tests.ctrld.conftest import ROOT, arun, pid_alive, wait_until

MB = 1000 * 1000
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def ctrl(*args):
    return [sys.executable, "-m", "ctrld.ctrl_cli", *args]


# ---------------------------------------------------------------------- flow control
def test_slow_reader_pauses_the_command_instead_of_killing_it(start_daemon, tmp_path):
    """100 MB read at 20 MB/s: everything arrives intact, the command is alive while the reader
    lags (it blocks on its full pipe), and the daemon stays under 150 MiB."""
    data_file = tmp_path / "data"
    digest = hashlib.sha256()
    with open(data_file, "wb") as f:
        for i in range(100):
            chunk = hashlib.sha256(str(i).encode()).digest() * (MB // 32) + bytes(MB % 32)
            f.write(chunk)
            digest.update(chunk)
    d = start_daemon()
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.unix[5:])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    body = g.RunCommandT(path="/bin/cat", args=["cat", str(data_file)], requestId=1, captureStdout=True)
    s.sendall(codec.encode(body))
    split = codec.FrameSplitter()
    got = hashlib.sha256()
    n = 0
    pid = 0
    alive_at_half = None
    end = None
    rate = 20 * MB
    t0 = time.monotonic()
    while end is None:
        chunk = s.recv(65536)
        assert chunk, "the daemon closed the connection"
        for frame in split.feed(chunk):
            kind, ev = codec.decode(frame)
            if kind == "ProcessLaunched":
                pid = ev.pid
            elif kind == "OutputChunk":
                got.update(ev.data)
                n += len(ev.data)
                if alive_at_half is None and n >= 50 * MB:
                    alive_at_half = pid_alive(pid)
            elif kind == "ProcessTerminated":
                end = ev
        ahead = n / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)  # read no faster than 20 MB/s
    s.close()
    assert n == 100 * MB and got.digest() == digest.digest()
    assert alive_at_half, "the command should have been blocked, not finished, while half was unread"
    assert end.exitCode == 0 and end.signal == 0
    assert d.alive()
    peak = d.memory_kib()[1]
    assert peak <= 150 * 1024, f"daemon peaked at {peak / 1024:.0f} MiB"


def _run_ctrl_counting(cmd: list[str], stdin=subprocess.DEVNULL) -> tuple[int, int, int, str]:
    """Run `cmd` with its stdout counted by `wc -c`; (exit status, bytes, ctrl's max RSS KiB, stderr)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, env=ENV)
    wc = subprocess.Popen(["wc", "-c"], stdin=p.stdout, stdout=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    count = int(wc.communicate(timeout=60)[0])
    return p.returncode, count, ru.ru_maxrss, err


def test_ctrl_streams_400_mb_in_constant_memory(start_daemon):
    d = start_daemon()
    rc, n, small_rss, err = _run_ctrl_counting(ctrl("-c", d.unix, "run", "-n", "--", "head", "-c", "1000000", "/dev/zero"))
    assert rc == 0 and n == MB, err
    rc, n, big_rss, err = _run_ctrl_counting(ctrl("-c", d.unix, "run", "-n", "--", "head", "-c", "400000000", "/dev/zero"))
    assert rc == 0 and n == 400 * MB, err
    # 400x the output, the same memory (within a few MiB of read buffers)
    assert big_rss < small_rss + 16 * 1024, (small_rss, big_rss)


# ---------------------------------------------------------------------- stdin
def test_ctrl_run_forwards_stdin(start_daemon, tmp_path):
    d = start_daemon()
    p = subprocess.run(ctrl("-c", d.unix, "run", "--", "cat"), input=b"x\n", capture_output=True, env=ENV, timeout=30)
    assert p.returncode == 0 and p.stdout == b"x\n", p.stderr
    # -n: no stdin at all (cat sees EOF at once even though ours stays open)
    r, w = os.pipe()
    try:
        p = subprocess.run(ctrl("-c", d.unix, "run", "-n", "--", "cat"), stdin=r, capture_output=True, env=ENV, timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0 and p.stdout == b""
    # 20 MB through stdin and back, intact
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(20 * MB))
    with open(blob, "rb") as f:
        p = subprocess.run(ctrl("-c", d.unix, "run", "--", "sha256sum"), stdin=f, capture_output=True, env=ENV, timeout=60)
    assert p.stdout.split()[0].decode() == hashlib.sha256(blob.read_bytes()).hexdigest()


def test_stdin_protocol_messages(start_daemon):
    d = start_daemon()

    async def go():
        async with await Client.connect(d.unix) as c:
            h = await c.start(["wc", "-c"], stdin=True)
            await h.write_stdin(b"a" * 300_000)
            h.close_stdin()
            return await h.wait()

    r = arun(go())
    assert r.exit_code == 0 and r.stdout.strip() == b"300000"


# ---------------------------------------------------------------------- fan-out
def test_fan_out_goes_on_when_a_daemon_dies_mid_run(tmp_path):
    a = DaemonProc(["--unix", str(tmp_path / "a.sock")], env={"NAP": "1"})
    b = DaemonProc(["--unix", str(tmp_path / "b.sock")], env={"NAP": "60"})
    try:
        p = subprocess.Popen(
            ctrl("-c", f"a={a.unix}", "-c", f"b={b.unix}", "run", "--", "sh", "-c", 'echo start; sleep "$NAP"; echo end'),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, stdin=subprocess.DEVNULL,
        )
        started = set()
        while started != {"a", "b"}:
            line = p.stdout.readline().decode()
            assert line, p.stderr.read()
            name, _, text = line.strip().partition(": ")
            if text == "start":
                started.add(name)
        # b's command is running: note its pid (to clean it up), then b's daemon dies.
        async def b_pids():
            async with await Client.connect(b.unix) as c:
                return [x.pid for x in (await c.status()).processes or []]
        orphans = arun(b_pids())
        b.proc.kill()
        out, err = p.communicate(timeout=60)
    finally:
        a.stop()
        b.stop()
        for pid in locals().get("orphans", []):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    err = err.decode()
    assert b"a: end" in out, (out, err)
    assert "b: connection lost" in err
    assert p.returncode == 255
    assert "a: 0" in err and "b: 255 (connection lost)" in err  # the per-host summary


def test_fan_out_with_an_unreachable_host(start_daemon, tmp_path):
    d = start_daemon()
    p = subprocess.run(ctrl("-c", f"a={d.unix}", "-c", f"b=unix:{tmp_path}/nothing.sock", "run", "--", "echo", "hi"),
                       capture_output=True, env=ENV, timeout=30, stdin=subprocess.DEVNULL)
    assert p.stdout == b"a: hi\n"
    assert p.returncode == 255
    assert b"cannot connect to b" in p.stderr and b"b: 255 (cannot connect)" in p.stderr


def test_losing_the_daemon_exits_255(tmp_path):
    d = DaemonProc(["--unix", str(tmp_path / "d.sock")])
    try:
        p = subprocess.Popen(ctrl("-c", d.unix, "run", "--", "sh", "-c", "echo up; sleep 60"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=ENV, stdin=subprocess.DEVNULL)
        assert p.stdout.readline() == b"up\n"

        async def pids():
            async with await Client.connect(d.unix) as c:
                return [x.pid for x in (await c.status()).processes or []]
        orphans = arun(pids())
        d.proc.kill()
        _, err = p.communicate(timeout=30)
    finally:
        d.stop()
        for pid in locals().get("orphans", []):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert p.returncode == 255 and b"connection lost" in err


# ---------------------------------------------------------------------- daemon life
def test_sighup_reopens_the_log_and_keeps_serving(start_daemon, tmp_path):
    log = tmp_path / "ctrld.log"
    d = start_daemon("--log-file", str(log))
    os.rename(log, tmp_path / "ctrld.log.1")  # what logrotate does
    os.kill(d.pid, signal.SIGHUP)
    assert wait_until(log.exists, timeout=10)
    assert "SIGHUP" in log.read_text()

    async def go():
        async with await Client.connect(d.unix) as c:
            return (await c.run(["echo", "still here"])).stdout
    assert arun(go()) == b"still here\n" and d.alive()


def test_leftover_processes_stay_visible_and_killable(start_daemon):
    d = start_daemon()

    async def go():
        async with await Client.connect(d.unix) as c:
            # the leader exits at once; its background sleep stays in the process group
            r = await c.run(["sh", "-c", "sleep 60 & echo $!"])
            child = int(r.stdout)
            s = await c.status()
            shown = [(p.pid, p.leftover, p.requestId) for p in s.processes or []]
            await c.kill(r.pid, sig=0)  # alive: the probe succeeds
            await c.kill(r.pid, sig=signal.SIGTERM)
            return r, child, shown

    r, child, shown = arun(go())
    assert r.exit_code == 0
    assert (r.pid, True, 1) in [(p, lo, rid) for p, lo, rid in shown]
    assert wait_until(lambda: not pid_alive(child), timeout=10)

    async def after():
        async with await Client.connect(d.unix) as c:
            return [p.pid for p in (await c.status()).processes or []]
    assert wait_until(lambda: r.pid not in arun(after()), timeout=10)


def test_per_client_limits(start_daemon, tmp_path):
    d = start_daemon("--max-processes", "2", "--max-watches", "3")

    async def go():
        async with await Client.connect(d.unix) as c:
            hs = [await c.start(["sleep", "30"]) for _ in range(2)]
            with pytest.raises(CtrlError) as procs:
                await (await c.start(["true"])).wait()
            ws = [await c.watch_port(1, timeout=30) for _ in range(3)]
            with pytest.raises(CtrlError) as watches:
                await c.watch_file(str(tmp_path))
            for h in hs:
                await h.kill()
                await h.wait()
            for w in ws:
                await w.remove()
            ok = (await c.run(["echo", "ok"])).stdout  # room again
            return procs.value, watches.value, ok

    procs, watches, ok = arun(go())
    assert procs.code == 11 and "too many processes" in str(procs) and "limit is 2" in str(procs)
    assert watches.code == 11 and "too many watches" in str(watches)
    assert ok == b"ok\n"


def test_many_port_watches_share_one_poll(start_daemon):
    """20 000 watches in one 80 KB request are answered at once (each is filed, not polled)."""
    d = start_daemon("--max-watches", "30000")

    async def go():
        async with await Client.connect(d.unix) as c:
            rid, req = c._new_request({"WatchEnded"})
            svs = []
            for i in range(20000):
                sv = g.SurveillanceEventT()
                sv.eventType, sv.event = g.Surveillance.TCPSocket, g.TCPSocketT(destport=1 + i % 60000, timeoutMs=60000)
                svs.append(sv)
            t0 = time.monotonic()
            c._send(g.RunCommandT(requestId=rid, toWatch=svs))
            for _ in range(20000):
                ev = await req.get()
                assert ev.kind == "SocketWatched"
            t_watch = time.monotonic() - t0
            # Another connection is served meanwhile: the daemon is not stuck polling
            async with await Client.connect(d.unix) as c2:
                t1 = time.monotonic()
                out = (await c2.run(["echo", "free"])).stdout
                t_run = time.monotonic() - t1
            return t_watch, out, t_run

    t_watch, out, t_run = arun(go(), timeout=120)
    assert out == b"free\n"
    # (sanity bounds, far from the 112 s this took before: the speed goal is in benchmarks/)
    assert t_watch < 60 and t_run < 10
