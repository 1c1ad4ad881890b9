"""File watches (inotify) and port watches (sock_diag): events, timeouts, removal."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time

import pytest

from ctrld.client import Client, CtrlError
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import arun

E = g.InotifyEvent


async def _next(w, timeout=3.0):
    it = w.events().__aiter__()
    return await asyncio.wait_for(it.__anext__(), timeout)


def test_file_not_yet_existing_created_modified_deleted(daemon, tmp_path):
    target = tmp_path / "later.txt"

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_file(str(target), events=("created", "modified", "deleted"))
            assert w.registered.kind == "InotifyWatchListUpdated"
            (tmp_path / "other.txt").write_text("not me")  # filtered out by name
            target.write_text("a")
            got = [await _next(w)]
            got.append(await _next(w))
            target.unlink()
            got.append(await _next(w))
            await w.remove()
            got.append(await _next(w))
            return got

    got = arun(go())
    kinds = [(e.kind, getattr(e.body, "triggerEvents", None)) for e in got]
    assert kinds[:3] == [("InotifyPathUpdated", E.created), ("InotifyPathUpdated", E.modified),
                         ("InotifyPathUpdated", E.deleted)]
    assert all(e.body.path == str(target) for e in got[:3])
    assert got[3].kind == "WatchEnded" and got[3].body.reason == g.WatchEndReason.removed


def test_accessed(daemon, tmp_path):
    f = tmp_path / "read-me"
    f.write_text("data")

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_file(str(f), events=("accessed",))
            f.read_text()
            return await _next(w)

    ev = arun(go())
    assert ev.body.triggerEvents == E.accessed and ev.body.path == str(f)


def test_size_reached_once(daemon, tmp_path):
    f = tmp_path / "grows.log"

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_file(str(f), events=(), size=1000)
            with open(f, "wb") as out:
                out.write(b"x" * 500)
                out.flush()
                await asyncio.sleep(0.05)
                out.write(b"x" * 600)
                out.flush()
                await asyncio.sleep(0.05)
                out.write(b"x" * 600)
            ev = await _next(w)
            with pytest.raises(asyncio.TimeoutError):
                await _next(w, 0.3)  # reported once only
            return ev

    ev = arun(go())
    assert ev.body.triggerEvents == E.size_reached and ev.body.size64 >= 1000 and ev.body.sizeLimit == 1000


def test_size_already_reached_at_registration(daemon, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"y" * 2048)

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_file(str(f), events=(), size=1024)
            return await _next(w, 1)

    ev = arun(go())
    assert ev.body.triggerEvents == E.size_reached and ev.body.size == 2048


def test_directory_watch_and_deletion(daemon, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_file(str(d), events=("created", "deleted"))
            (d / "a").write_text("1")
            first = await _next(w)
            (d / "a").unlink()
            second = await _next(w)
            d.rmdir()
            third = await _next(w)
            return first, second, third

    a, b, c = arun(go())
    assert (a.body.triggerEvents, a.body.path) == (E.created, str(d / "a"))
    assert (b.body.triggerEvents, b.body.path) == (E.deleted, str(d / "a"))
    assert c.kind in ("InotifyPathUpdated", "WatchEnded")


def test_watch_timeout_is_client_chosen(daemon, tmp_path):
    async def go():
        async with await Client.connect(daemon.tcp) as c:
            t0 = time.monotonic()
            w = await c.watch_file(str(tmp_path / "never"), timeout=0.25)
            ev = await _next(w)
            return ev, time.monotonic() - t0

    ev, dt = arun(go())
    assert ev.kind == "WatchEnded" and ev.body.reason == g.WatchEndReason.timeout
    assert 0.2 <= dt < 1.5


def test_watch_in_missing_directory_is_an_error(daemon, tmp_path):
    async def go():
        async with await Client.connect(daemon.tcp) as c:
            with pytest.raises(CtrlError) as e:
                await c.watch_file(str(tmp_path / "nodir" / "f"))
            # the connection is still usable
            return e.value, (await c.run(["true"])).exit_code

    err, code = arun(go())
    assert err.code == 2 and code == 0


def test_relative_watch_path_is_refused(daemon):
    """A relative path resolved against the daemon's working directory (`relative/x` watched in
    the daemon's cwd), which means nothing to a remote client: it is refused, EINVAL."""
    async def go():
        async with await Client.connect(daemon.tcp) as c:
            errs = []
            for path in ("relative/x", "x", "./x", "../x"):
                with pytest.raises(CtrlError) as e:
                    await c.watch_file(path)
                errs.append(e.value)
            # the connection is still usable
            return errs, (await c.run(["true"])).exit_code

    errs, code = arun(go())
    assert code == 0
    for e in errs:
        assert e.code == errno.EINVAL and "must be absolute" in str(e), e


def test_removed_watch_reports_nothing_more(daemon, tmp_path):
    f = tmp_path / "f"

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w1 = await c.watch_file(str(f), events=("created",))
            w2 = await c.watch_file(str(f), events=("created",))
            await w1.remove()
            ended = await _next(w1)
            f.write_text("x")
            ev2 = await _next(w2)
            st = await c.status()
            return ended, ev2, st

    ended, ev2, st = arun(go())
    assert ended.kind == "WatchEnded" and ended.body.reason == g.WatchEndReason.removed
    assert ev2.kind == "InotifyPathUpdated" and ev2.body.triggerEvents == E.created
    assert [w.path for w in st.watches] == [str(f)]  # only w2 remains


def test_port_listen_detected_within_ms(daemon):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_port(port, timeout=5)
            await asyncio.sleep(0.05)
            t0 = time.monotonic_ns()
            probe.listen()
            ev = await _next(w)
            return ev, t0

    ev, t0 = arun(go())
    probe.close()
    assert ev.kind == "SocketWatchTerminated" and ev.body.state == g.SocketState.listeing
    latency_ms = (ev.body.timeNs - t0) / 1e6  # both CLOCK_MONOTONIC on this machine
    print(f"LISTEN detected after {latency_ms:.2f} ms")
    assert latency_ms < 50


def test_port_watch_of_a_command(daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_port(port, timeout=5)
            h = await c.start(["python3", "-c", f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(0.5)"])
            ev = await _next(w, 5)
            r = await h.wait()
            return ev, r

    ev, r = arun(go())
    assert ev.body.state == g.SocketState.listeing and r.exit_code == 0


def test_port_watch_timeout_and_removal(daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            t0 = time.monotonic()
            w = await c.watch_port(port, timeout=0.2)
            a = [await _next(w), await _next(w)]
            dt = time.monotonic() - t0
            w2 = await c.watch_port(port, timeout=10)
            await w2.remove()
            b = [await _next(w2), await _next(w2)]
            return a, b, dt

    a, b, dt = arun(go())
    assert a[0].kind == "SocketWatchTerminated" and a[0].body.state == g.SocketState.unknown
    assert a[1].body.reason == g.WatchEndReason.timeout and 0.15 <= dt < 1.5
    assert b[1].body.reason == g.WatchEndReason.removed


def test_no_wakeups_after_port_watches_end(daemon):
    """The 1 ms LISTEN poll runs only while a port watch exists: afterwards the daemon is idle."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        async with await Client.connect(daemon.tcp) as c:
            w = await c.watch_port(port, timeout=0.1)
            async for _ in w.events():
                pass

    arun(go())
    time.sleep(0.05)

    def cpu():
        with open(f"/proc/{daemon.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, clock ticks

    def switches():
        with open(f"/proc/{daemon.pid}/status") as f:
            return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)

    c0, s0 = cpu(), switches()
    time.sleep(0.5)
    assert cpu() - c0 <= 1
    assert switches() - s0 <= 2, "the daemon keeps waking up with no watch active"
    assert os.path.exists(f"/proc/{daemon.pid}")
