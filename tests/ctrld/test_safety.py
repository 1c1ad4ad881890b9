"""Issue 15: bounded memory before (and after) authentication, connection cap, handshake deadline,
expansion budget - against a real daemon process, with hostile frames built by hand."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import struct
import time

import flatbuffers
import pytest

from ctrld.client import Client, CtrlError
from ctrld.protocol import bounds, codec
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import arun, reopening_flood, wait_until

TOKEN = "s3cret-token-0123456789abcdef"
MIB = 1024 * 1024


# ---------------------------------------------------------------------- hostile frames
def _message(b: flatbuffers.Builder, tag: int, table: int) -> bytes:
    g.MessageStart(b)
    g.MessageAddEventsType(b, tag)
    g.MessageAddEvents(b, table)
    b.Finish(g.MessageEnd(b))
    return bytes(b.Output())


def amplified_args(string_size: int, copies: int = 1024) -> bytes:
    """RunCommand whose `args` vector points `copies` times at one `string_size`-byte string."""
    b = flatbuffers.Builder(string_size + 8 * copies + 256)
    big = b.CreateString("A" * string_size)
    path = b.CreateString("/bin/true")
    g.RunCommandStartArgsVector(b, copies)
    for _ in range(copies):
        b.PrependUOffsetTRelative(big)
    args = b.EndVector()
    g.RunCommandStart(b)
    g.RunCommandAddPath(b, path)
    g.RunCommandAddArgs(b, args)
    return _message(b, g.Event.RunCommand, g.RunCommandEnd(b))


def _shared_watch(copies: int, path_size: int = 0, padding: int = 0) -> bytes:
    """RunCommand whose `to_watch` vector points `copies` times at one watch table (a DAG): its
    Inotify path `path_size` bytes long (0: no path, a mask only), plus `padding` unreferenced
    bytes, which raise the frame's size and so its budget."""
    b = flatbuffers.Builder(path_size + 4 * copies + padding + 256)
    if padding:
        b.CreateByteVector(bytes(padding))
    big = b.CreateString("/" + "d" * (path_size - 1)) if path_size else None
    g.InotifyStart(b)
    if big is not None:
        g.InotifyAddRootPaths(b, big)
    else:
        g.InotifyAddMask(b, 2)
    ino = g.InotifyEnd(b)
    g.SurveillanceEventStart(b)
    g.SurveillanceEventAddEventType(b, g.Surveillance.Inotify)
    g.SurveillanceEventAddEvent(b, ino)
    sv = g.SurveillanceEventEnd(b)
    g.RunCommandStartToWatchVector(b, copies)
    for _ in range(copies):
        b.PrependUOffsetTRelative(sv)
    vec = b.EndVector()
    g.RunCommandStart(b)
    g.RunCommandAddToWatch(b, vec)
    g.RunCommandAddRequestId(b, 5)
    return _message(b, g.Event.RunCommand, g.RunCommandEnd(b))


def amplified_watches(string_size: int, copies: int = 1024) -> bytes:
    """`copies` offsets to one watch table whose Inotify path is `string_size` bytes (shared table,
    shared string)."""
    return _shared_watch(copies, path_size=string_size)


def many_small_args(copies: int) -> bytes:
    """RunCommand whose `args` vector points `copies` times at one 2-byte string: 4 bytes of frame
    per entry, each decoded into its own bytes object, then its own str (~130 bytes of Python)."""
    return amplified_args(2, copies)


def many_shared_tables(copies: int, padding: int) -> bytes:
    """`copies` offsets to one small watch table (no string), plus `padding` unreferenced bytes."""
    return _shared_watch(copies, padding=padding)


class Raw:
    def __init__(self, address: str, greet: bool = True, timeout: float = 20):
        if address.startswith("unix:"):
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(timeout)
            self.s.connect(address[5:])
        else:
            host, port = address.rsplit(":", 1)
            self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        if greet:
            assert self.recv()[0] == "TCPSocketListening"

    def send(self, payload: bytes):
        self.s.sendall(struct.pack("<I", len(payload)) + payload)

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from("<I", self.buf)
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return codec.decode(frame)
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def closed_by_peer(self) -> bool:
        """Read until EOF (frames before it are skipped); True when the daemon hung up."""
        try:
            while self.s.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self):
        self.s.close()


def _healthy(d) -> bool:
    async def go():
        async with await Client.connect(d.unix or d.tcp, token=TOKEN) as c:
            return (await c.run(["echo", "ok"])).stdout
    return arun(go()) == b"ok\n"


# ---------------------------------------------------------------------- expansion budget
def test_budget_accepts_what_builders_write():
    # Frames from the generated builders (no sharing) and from the fast path pass the walk.
    sv = g.SurveillanceEventT()
    sv.eventType, sv.event = g.Surveillance.Inotify, g.InotifyT(rootPaths="/tmp/x" * 100, mask=2)
    bodies = [
        g.RunCommandT(path="/bin/echo", args=["echo"] + ["x" * 1000] * 50, envp=["A=" + "v" * 5000], requestId=1,
                      toWatch=[sv] * 3, runAsGroups=[1, 2, 3]),
        g.RunCommandT(path="/bin/true", args=[""] * 2000),
        g.HelloT(version=2, token="t" * 4000, clientName="c"),
        g.StdinDataT(requestId=3, data=bytes(65536)),
    ]
    for body in bodies:
        name, back = codec.decode(codec.encode(body)[4:], frozenset([type(body).__name__[:-1]]))
        assert type(back) is type(body)


def test_budget_refuses_shared_offsets_before_materialising():
    for frame in (amplified_args(64 * 1024, 64), amplified_watches(64 * 1024, 64)):
        with pytest.raises(codec.ProtocolError, match="expand"):
            codec.decode(frame)


def test_budget_schema_matches_generated_code():
    """Every string / vector / union field of the walked tables is walked, at the right slot."""
    import inspect

    for table, fields in bounds.field_lists().items():
        reader = getattr(g, table)
        refs = set()
        for name, fn in vars(reader).items():
            if not callable(fn) or name.startswith(("_", "Init", "GetRootAs")) or name.endswith(("Length", "IsNone", "AsNumpy", "Type")):
                continue
            src = inspect.getsource(fn)
            if "self._tab.Offset(" not in src:
                continue
            slot = (int(src.split("self._tab.Offset(")[1].split(")")[0]) - 4) // 2
            if any(k in src for k in ("self._tab.String(", "self._tab.Vector(", "self._tab.Union(")):
                refs.add(slot)
        assert refs == {f[0] for f in fields}, table


def test_amplifying_frames_leave_the_daemon_small(start_daemon):
    d = start_daemon()
    # 1 MiB frames that would expand to 1 GiB; a 15 MiB one (under the default 16 MiB cap) to 15 GiB.
    for frame in (amplified_args(MIB), amplified_watches(MIB), amplified_args(15 * MIB)):
        r = Raw(d.tcp)
        r.send(frame)
        kind, err = r.recv()
        assert kind == "Error" and "expand" in err.message
        r.close()
    assert d.alive() and _healthy(d)
    rss, peak = d.memory_kib()
    assert peak < 200 * 1024, f"daemon peaked at {peak / 1024:.0f} MiB"


def test_many_small_shared_objects_leave_the_daemon_small(start_daemon):
    """Sharing small objects amplifies too: measured before the object cap, a 4 MiB frame of 1 M
    offsets to one 2-byte arg peaked the daemon at 250 MiB (912 MiB at 16 MiB), and 600 K offsets
    to one watch table (tables padded to pass the per-byte budget) kept it busy ~11 s."""
    d = start_daemon()
    for frame in (many_small_args(MIB), many_shared_tables(600_000, 4 * MIB - 4 * 600_000)):
        r = Raw(d.tcp)
        t = time.monotonic()
        r.send(frame)
        kind, err = r.recv()
        assert kind == "Error" and "expand" in err.message
        assert time.monotonic() - t < 3
        r.close()
    assert d.alive() and _healthy(d)
    assert d.memory_kib()[1] < 200 * 1024, f"daemon peaked at {d.memory_kib()[1] / 1024:.0f} MiB"


def test_object_cap_whatever_the_frame_size():
    # Just under the per-byte budget of a 16 MiB frame but beyond ENTRIES_MAX objects: refused.
    with pytest.raises(codec.ProtocolError, match="expand"):
        codec.decode(many_small_args(bounds.ENTRIES_MAX // 2 + 64), frozenset(["RunCommand"]))
    # An argv as long as execve takes with the default stack limit still decodes.
    name, back = codec.decode(many_small_args(200_000), frozenset(["RunCommand"]))
    assert name == "RunCommand" and len(back.args) == 200_000


# ---------------------------------------------------------------------- before authentication
def test_before_hello_frames_are_small_and_only_hello(start_daemon, tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    d = start_daemon("--token-file", str(tok))
    # A 1 MiB frame before Hello: refused from its length prefix alone, nothing buffered.
    r = Raw(d.tcp)
    r.s.sendall(struct.pack("<I", MIB) + b"x" * 1000)
    kind, err = r.recv()
    assert kind == "Error" and err.code == 27 and "65536" in err.message
    assert r.closed_by_peer()
    # Anything but Hello is refused undecoded (the expansion would not even be looked at).
    r = Raw(d.tcp)
    r.send(amplified_args(16 * 1024, 16))
    kind, err = r.recv()
    assert kind == "Error" and err.code == 13 and "Hello" in err.message
    assert r.closed_by_peer()
    # 60 connections each announcing a 16 MiB - 1 frame: each one is cut off at once.
    conns = []
    for _ in range(60):
        r = Raw(d.tcp)
        r.s.sendall(struct.pack("<I", 16 * MIB - 1) + b"y" * 60000)
        conns.append(r)
    for r in conns:
        assert r.closed_by_peer()
        r.close()
    assert _healthy(d)
    assert d.memory_kib()[1] < 100 * 1024


def test_handshake_deadline(start_daemon, tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    d = start_daemon("--token-file", str(tok), "--handshake-timeout", "0.3")
    r = Raw(d.tcp)  # says nothing after the greeting
    kind, err = r.recv()  # blocks until the daemon gives up on us
    assert kind == "Error" and "no Hello" in err.message
    assert r.closed_by_peer()
    assert _healthy(d)


def test_pending_connections_are_evicted_oldest_first(start_daemon, tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    d = start_daemon("--token-file", str(tok), "--max-pending", "3")
    idle = [Raw(d.tcp) for _ in range(3)]
    newer = Raw(d.tcp)  # the fourth evicts the first
    kind, err = idle[0].recv()
    assert kind == "Error" and err.code == 16 and "unauthenticated" in err.message
    assert idle[0].closed_by_peer()
    # The token holder gets in while the idle ones are still there.
    assert _healthy(d)
    for r in idle[1:] + [newer]:
        r.close()


def test_token_holder_gets_in_while_evicted_connections_reconnect(start_daemon, tmp_path):
    """A flood that re-opens every evicted connection at once (thousands per second) kept 10 of
    12 token holders out: each was evicted by the connections accepted after it, before its Hello
    was read.  The client now sends Hello without waiting for the greeting, and the daemon evicts
    connections with nothing unread first."""
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    d = start_daemon("--token-file", str(tok), unix=False)
    host, port = d.tcp.rsplit(":", 1)

    async def holder():
        async with await Client.connect(d.tcp, token=TOKEN) as c:
            return (await c.run(["echo", "in"])).stdout

    outcomes = []
    with reopening_flood(host, int(port), 300):
        for _ in range(10):
            try:
                outcomes.append(arun(holder()))
            except CtrlError as e:
                outcomes.append(str(e))
    assert outcomes == [b"in\n"] * 10, outcomes
    assert d.alive()


def test_stdin_of_a_command_gets_eof_when_its_client_goes(start_daemon, tmp_path):
    """Nobody else can write to a command's stdin: when its connection goes, the daemon writes
    what was sent and closes the pipe (the command used to wait for stdin forever)."""
    d = start_daemon()
    out = tmp_path / "out"

    async def go():
        c = await Client.connect(d.tcp)
        h = await c.start(["sh", "-c", f"cat > {out}; echo done >> {out}"], stdin=True)
        pid = None
        async for ev in h.events():
            if ev.kind == "ProcessLaunched":
                pid = ev.body.pid
                break
        await h.write_stdin(b"x" * 300_000)
        await c.close()  # no CloseStdin: the connection just goes
        async with await Client.connect(d.unix) as other:  # same uid: may wait for it
            return await asyncio.wait_for(other.wait_pid(pid), 5)

    end = arun(go())
    assert end.exitCode == 0
    assert out.read_bytes() == b"x" * 300_000 + b"done\n"


def test_waits_per_connection_are_bounded(start_daemon):
    """WaitProcess had no limit: 2 M of them on one running pid grew the daemon from 25 to
    233 MiB (and each would have become a frame at the end).  They count against --max-watches."""
    d = start_daemon("--max-watches", "4")

    async def go():
        async with await Client.connect(d.tcp) as c:
            h = await c.start(["sleep", "30"])
            pid = None
            async for ev in h.events():
                if ev.kind == "ProcessLaunched":
                    pid = ev.body.pid
                    break
            waits = [asyncio.ensure_future(c.wait_pid(pid)) for _ in range(4)]
            await asyncio.sleep(0.2)
            with pytest.raises(CtrlError) as refused:
                await c.wait_pid(pid)
            await c.kill(pid)
            ends = await asyncio.gather(*waits)
            # The ended waits are no longer counted: a new command can be waited for again.
            h2 = await c.start(["sleep", "0.2"])
            async for ev in h2.events():
                if ev.kind == "ProcessLaunched":
                    again = await c.wait_pid(ev.body.pid)
                    break
            return refused.value, ends, again

    refused, ends, again = arun(go())
    assert refused.code == errno.EAGAIN and "too many waits" in str(refused)
    assert [e.signal for e in ends] == [9] * 4
    assert again.exitCode == 0


def test_connection_cap_refuses_clearly(start_daemon):
    d = start_daemon("--max-connections", "4")

    async def go():
        held = [await Client.connect(d.unix) for _ in range(4)]
        with pytest.raises(CtrlError) as refused:
            await Client.connect(d.tcp)
        await held.pop().close()
        # the slot is free again once the daemon has seen the close
        for _ in range(200):
            try:
                c = await Client.connect(d.unix)
                break
            except CtrlError:
                await asyncio.sleep(0.02)
        ok = (await c.run(["echo", "in"])).stdout
        for h in held + [c]:
            await h.close()
        return refused.value, ok

    refused, ok = arun(go())
    assert "too many connections" in str(refused) and refused.code == 16
    assert ok == b"in\n"


def test_connections_already_closed_by_their_peer_do_not_refuse_a_client(start_daemon, tmp_path):
    """A burst of clients that connect and close at once: the daemon accepts them all before it
    reads any of them (asyncio accepts up to 100 per wake-up, then reads), and counted those whose
    end it had not read yet against --max-connections: a real client was refused ("N connections
    already").  The daemon is stopped meanwhile so that the burst is all in its accept queue when
    it resumes, as on a busy daemon; a connection that sent a request before shutting its end keeps
    its request (it is not dropped unread)."""
    d = start_daemon("--max-connections", "8")
    touched = tmp_path / "touched"
    d.proc.send_signal(signal.SIGSTOP)
    try:
        burst = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(8)]
        run = g.RunCommandT(path="/bin/sh", args=["sh", "-c", f"touch {touched}"], requestId=1)
        burst[0].sendall(codec.encode(run))
        burst[0].shutdown(socket.SHUT_WR)  # its request sent, its end shut: still to be read
        for s in burst[1:]:
            s.close()

        async def go():
            connecting = asyncio.ensure_future(Client.connect(d.tcp))
            await asyncio.sleep(0.3)  # its TCP connection in the accept queue, behind the burst
            d.proc.send_signal(signal.SIGCONT)
            async with await connecting as c:
                return (await c.run(["echo", "served"])).stdout

        assert arun(go()) == b"served\n"
    finally:
        d.proc.send_signal(signal.SIGCONT)
    assert wait_until(touched.exists)
    burst[0].close()


def test_descriptor_exhaustion_is_logged_once_per_second(start_daemon):
    # 40 descriptors for a daemon that would accept 256 connections: accept() fails with EMFILE.
    from ctrld.testing import DaemonProc

    d = DaemonProc(["--tcp", "127.0.0.1:0"], wrapper=["prlimit", "--nofile=40:40"])
    try:
        socks = []
        t0 = time.monotonic()
        for _ in range(80):
            try:
                socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
            except OSError:
                break
        wait_until(lambda: time.monotonic() - t0 > 2.5, timeout=5)
        for s in socks:
            s.close()
        assert d.alive()
        elapsed = time.monotonic() - t0
    finally:
        d.stop()
    lines = [ln for ln in d.stderr_text.splitlines() if "out of system resource" in ln or "accept" in ln.lower()]
    assert "Traceback" not in d.stderr_text
    assert 1 <= len(lines) <= elapsed + 2, d.stderr_text[-2000:]
