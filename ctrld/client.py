"""asyncio client library of ctrld.

    async with await Client.connect("127.0.0.1:7600") as c:
        result = await c.run(["/bin/echo", "hi"])
        print(result.exit_code, result.stdout)

Every request carries a fresh request_id; a reader task routes incoming events to the request
they belong to, so any number of requests can be in flight on one connection.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import signal as _signal
import types
from dataclasses import dataclass, field

from ctrld.protocol import codec, fast
from ctrld.protocol.codec import as_str
from ctrld.protocol.generated import ctrld_generated as g

DEFAULT_PORT = 7600
InotifyEvent = g.InotifyEvent
EVENT_NAMES = {v: k for k, v in vars(g.InotifyEvent).items() if isinstance(v, int)}
MASK_OF_EVENT = {"accessed": 0x1, "modified": 0x2, "created": 0x100, "deleted": 0x200}


_RUN_TERMINAL = frozenset(["ProcessTerminated", "ChildCreationError", "Error"])


class CtrlError(Exception):
    """The daemon answered a request with an Error event, or the connection failed."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code


class ConnectionLost(CtrlError):
    """The connection to the daemon ended (or broke) before the answer came."""


@dataclass
class Event:
    kind: str  # union member name, e.g. "ProcessTerminated"
    body: object  # the object-API table (g.ProcessTerminatedT, ...)
    source: str = ""  # the daemon's name (fan-out)

    @property
    def request_id(self) -> int:
        return getattr(self.body, "requestId", 0)

    def __repr__(self):
        fields = {k: v for k, v in vars(self.body).items() if v not in (None, 0, False, "", [])}
        return f"Event({self.kind}, {fields})"


@dataclass
class RunResult:
    pid: int = 0
    exit_code: int = -1  # -1 when killed
    signal: int = 0
    timed_out: bool = False
    exec_failed: bool = False
    exec_errno: int = 0
    message: str = ""
    user_cpu_s: float = 0.0
    sys_cpu_s: float = 0.0
    max_rss_kb: int = 0
    wall_s: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    events: list = field(default_factory=list)
    # ctrld --mediate: the simulated host and dates (seconds) of an emulated process, else ""/None
    host: str = ""
    sim_start: float | None = None
    sim_end: float | None = None
    sim_start_ns: int = -1
    sim_end_ns: int = -1

    @property
    def status(self) -> int:
        """Shell convention: the exit code, 128 + signal when killed."""
        return 128 + self.signal if self.signal else self.exit_code


def _keepalive(sock) -> None:
    """Notice a daemon that vanished (host down, cable) within ~1 min instead of never."""
    import socket

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (OSError, AttributeError):
        pass


def parse_address(addr: str) -> tuple[str, object]:
    """'unix:/path' or '/path' -> ('unix', path); 'host:port', '[v6]:port', 'host' -> ('tcp', (host, port))."""
    if addr.startswith("unix:"):
        return "unix", addr[5:]
    if addr.startswith("/") or addr.startswith("./"):
        return "unix", addr
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":") or DEFAULT_PORT
        return "tcp", (host, int(port))
    host, sep, port = addr.rpartition(":")
    if not sep:
        return "tcp", (addr, DEFAULT_PORT)
    return "tcp", (host or "127.0.0.1", int(port))


class _Request:
    """Events of one request, in arrival order; `ended` once its terminal event (or the end of the
    connection, queued as None) came.

    A deque and one future rather than an asyncio.Queue: `wait_end()` lets a waiter sleep through
    the intermediate events of a run (launched, execve) and wake only once, at its end.
    """

    __slots__ = ("events", "terminal", "ended", "_waiter", "_only_end")

    def __init__(self, terminal: frozenset[str]):
        self.events: collections.deque = collections.deque()
        self.terminal = terminal
        self.ended = False
        self._waiter: asyncio.Future | None = None
        self._only_end = False

    def put(self, ev: Event | None) -> None:
        self.events.append(ev)
        if ev is None or ev.kind in self.terminal:
            self.ended = True
        w = self._waiter
        if w is not None and (self.ended or not self._only_end):
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def get(self) -> Event | None:
        while not self.events:
            await self._wait(False)
        return self.events.popleft()

    async def wait_end(self) -> None:
        while not self.ended:
            await self._wait(True)

    def _wait(self, only_end: bool) -> asyncio.Future:
        self._waiter = asyncio.get_running_loop().create_future()
        self._only_end = only_end
        return self._waiter


class _Protocol(asyncio.Protocol):
    def __init__(self, client: Client):
        self.client = client

    def data_received(self, data):
        self.client._on_data(data)

    def eof_received(self):
        return False  # close the transport: connection_lost follows

    def pause_writing(self):
        self.client._pause_writing()

    def resume_writing(self):
        self.client._resume_writing()

    def connection_lost(self, exc):
        self.client._on_lost(exc)


class Client:
    """One connection.  Incoming frames are decoded in the transport's callback and routed to their
    request at once (no reader task, no stream layer): a run costs its waiter one wake-up."""

    def __init__(self, name: str, max_frame: int):
        self.name = name
        self.max_frame = max_frame
        self._transport: asyncio.Transport | None = None
        self._ids = itertools.count(1)
        self._requests: dict[int, _Request] = {}
        self._all: asyncio.Queue | None = None
        self.closed_reason: str | None = None
        self.greeting_port = 0
        self.welcome: g.WelcomeT | None = None
        self._splitter = codec.FrameSplitter(max_frame)
        self._lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()

    # ------------------------------------------------------------------ connection
    @classmethod
    async def connect(cls, addr: str, *, token: str | None = None, ssl=None, name: str | None = None,
                      timeout: float = 10.0, max_frame: int = codec.DEFAULT_MAX_FRAME) -> Client:
        kind, where = parse_address(addr)
        self = cls(name or addr, max_frame)
        loop = asyncio.get_running_loop()
        # Before the handshake, frames without a request id (the greeting, Welcome, a refusal) go here.
        hs = self._requests[0] = _Request(frozenset())
        if kind == "unix":
            opening = loop.create_unix_connection(lambda: _Protocol(self), where)
        else:
            host, port = where
            opening = loop.create_connection(lambda: _Protocol(self), host, port, ssl=ssl,
                                             server_hostname=host if ssl else None)
        transport, _ = await asyncio.wait_for(opening, timeout)
        self._transport = transport
        if kind != "unix":
            _keepalive(transport.get_extra_info("socket"))
        hello = g.HelloT(version=2, token=token, clientName=f"ctrld.client pid={os.getpid()}")
        # With a token, Hello leaves at once, without waiting for the greeting: it is then already
        # in the daemon's socket when the daemon accepts us, and a daemon flooded with connections
        # that owe their Hello evicts those with nothing to read first (Daemon._eviction_victim);
        # waiting for the greeting left a round trip in which a flood could evict us.  Without a
        # token there is no such state: Hello waits, so that a refusal (a unix socket closed on an
        # uid not allowed) is read as such rather than as a broken pipe.
        early = token is not None and kind != "unix"
        try:
            if early:
                self._send(hello)
            kind, greeting = await asyncio.wait_for(self._handshake_event(hs), timeout)
            if kind == "Error":
                raise CtrlError(greeting.message or "refused", greeting.code)
            if kind != "TCPSocketListening":
                raise CtrlError(f"unexpected greeting {kind}")
            self.greeting_port = greeting.port
            if not early:
                self._send(hello)
            kind, welcome = await asyncio.wait_for(self._handshake_event(hs), timeout)
            if kind != "Welcome":
                msg = getattr(welcome, "message", None) or f"unexpected answer {kind}"
                raise CtrlError(f"{self.name}: {msg}", getattr(welcome, "code", 0))
            self.welcome = welcome
        except BaseException:
            transport.close()
            raise
        finally:
            self._requests.pop(0, None)
        return self

    @property
    def _writer(self):
        """What the stream-based client exposed (`client._writer.transport`), for callers that
        reach for the transport that way."""
        return types.SimpleNamespace(transport=self._transport)

    async def _handshake_event(self, hs: _Request):
        ev = await hs.get()
        if ev is None:
            raise ConnectionLost(self.closed_reason or f"{self.name}: connection closed")
        return ev.kind, ev.body

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self) -> None:
        if self._transport is None:
            return
        self._transport.close()
        try:
            await asyncio.shield(self._lost)
        except (OSError, asyncio.CancelledError):
            pass

    # ------------------------------------------------------------------ incoming frames
    def _on_data(self, data: bytes) -> None:
        if self.closed_reason:
            return
        for frame in self._splitter.feed(data):
            try:
                kind, body = codec.decode(frame)
            except codec.ProtocolError:
                self._end("ProtocolError")
                return
            ev = Event(kind, body, self.name)
            rid = getattr(body, "requestId", 0) or 0
            req = self._requests.get(rid)
            if req is not None:
                req.put(ev)
                if req.ended and rid:
                    del self._requests[rid]
            if self._all is not None:
                self._all.put_nowait(ev)
        if self._splitter.error is not None:
            self._end("FrameTooLarge")

    def _on_lost(self, exc) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._end(type(exc).__name__ if exc is not None else "EOF")

    def _end(self, why: str) -> None:
        """Nothing more will come: wake every waiter."""
        if self.closed_reason:
            return
        self.closed_reason = f"connection to {self.name} lost ({why})"
        self._can_write.set()  # wake writers: they will see closed_reason
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()  # a corrupt stream cannot be re-synchronised
        for req in self._requests.values():
            req.put(None)
        if self._all is not None:
            self._all.put_nowait(None)

    def _send(self, body) -> None:
        self._write(codec.encode(body))

    def _write(self, frame: bytes) -> None:
        # uvloop's transport raises RuntimeError on a write after close (asyncio's only logs): a
        # daemon that closed the connection (evicted, refused) must read as a lost connection.
        if self._transport.is_closing():
            raise ConnectionLost(self.closed_reason or f"connection to {self.name} closed")
        self._transport.write(frame)

    def _new_request(self, terminal) -> tuple[int, _Request]:
        if self.closed_reason:
            raise ConnectionLost(self.closed_reason)
        rid = next(self._ids)
        req = _Request(terminal if "Error" in terminal else frozenset(terminal) | {"Error"})
        self._requests[rid] = req
        return rid, req

    async def _one(self, body, rid: int, req: _Request) -> Event:
        self._send(body)
        ev = await req.get()
        if ev is None:
            raise ConnectionLost(self.closed_reason or "connection closed")
        if ev.kind == "Error":
            raise CtrlError(ev.body.message, ev.body.code)
        return ev

    # ------------------------------------------------------------------ events
    async def events(self):
        """Async iterator over every event of this connection (including subscribed ones)."""
        if self._all is None:
            self._all = asyncio.Queue()
        while True:
            ev = await self._all.get()
            if ev is None:
                return
            yield ev

    # ------------------------------------------------------------------ run
    async def start(self, argv: list[str], *, env: dict | None = None, inherit_env: bool = True,
                    cwd: str | None = None, timeout: float | None = None, grace: float | None = None,
                    capture: bool = True, stdout_path: str | None = None, stderr_path: str | None = None,
                    kill_on_disconnect: bool = False, host: str | None = None,
                    unmediated: bool = False, stdin: bool = False, run_as: tuple | None = None,
                    defer_start: bool = False) -> RunHandle:
        """Start a command; returns a handle whose events() stream ends with ProcessTerminated.

        On a daemon started with --mediate the command runs emulated, on simulated `host` (default:
        the daemon's default host), unless `unmediated` asks for a plain process.  `stdin`: the
        command's stdin is a pipe fed by handle.write_stdin() and closed by handle.close_stdin()
        (else /dev/null).  `run_as`: (uid, gid or None, groups or None) - a root daemon runs the
        command as that user, when this client has the daemon's uid.  `defer_start`: the daemon may
        hold ProcessLaunched/ExecveTerminated back until the command's first output or its end
        (one write and one wake-up fewer per command; run() asks for it)."""
        if not argv:
            raise ValueError("empty argv")
        rid, req = self._new_request(_RUN_TERMINAL)
        if not (env or cwd or stdout_path or stderr_path or host or run_as is not None):
            # The usual request, laid out directly (the same bytes as the object below would give).
            args = list(argv)
            self._write(fast.encode_run_plain(
                args[0], args, 0, 0, rid, int(timeout * 1000) if timeout else 0, int(grace * 1000) if grace else 0,
                capture, capture, kill_on_disconnect, inherit_env, unmediated, -1, -1, stdin, defer_start))
            return RunHandle(self, rid, req)
        body = g.RunCommandT(
            path=argv[0], args=list(argv), requestId=rid, cwd=cwd,
            envp=[f"{k}={v}" for k, v in env.items()] if env else None, inheritEnv=inherit_env,
            timeoutMs=int(timeout * 1000) if timeout else 0, graceMs=int(grace * 1000) if grace else 0,
            captureStdout=capture and not stdout_path, captureStderr=capture and not stderr_path,
            stdoutPath=stdout_path, stderrPath=stderr_path, killOnDisconnect=kill_on_disconnect,
            host=host or None, unmediated=unmediated, stdinPipe=stdin, deferStart=defer_start,
        )
        if run_as is not None:
            uid, gid, groups = (tuple(run_as) + (None, None))[:3]
            body.runAsUid = uid
            body.runAsGid = -1 if gid is None else gid
            body.runAsGroups = list(groups) if groups is not None else None
        self._send(body)
        return RunHandle(self, rid, req)

    async def run(self, argv: list[str], **kw) -> RunResult:
        """Run a command to completion and collect its output and exit information.

        Nothing is seen before the end, so the start events need not come early: the daemon is
        asked to send them with the command's first output or its end (`defer_start`)."""
        kw.setdefault("defer_start", True)
        return await (await self.start(argv, **kw)).wait()

    async def kill(self, pid: int = 0, *, request_id: int = 0, sig: int = _signal.SIGKILL) -> None:
        """Signal a command's process group; `sig=0` only checks that it runs and that we may signal
        it (raises CtrlError otherwise), like kill -0."""
        rid, req = self._new_request({"Ack"})
        await self._one(g.KillProcessT(pid=pid, requestId=rid, targetRequestId=request_id, signal=int(sig),
                                       probe=int(sig) == 0), rid, req)

    async def wait_pid(self, pid: int) -> g.ProcessTerminatedT:
        """The ProcessTerminated of command `pid`, when it ends (at once if it ended recently)."""
        rid, req = self._new_request({"ProcessTerminated"})
        return (await self._one(g.WaitProcessT(requestId=rid, pid=pid), rid, req)).body

    # ------------------------------------------------------------------ flow control
    def _pause_writing(self) -> None:
        if self._can_write.is_set():
            self._can_write.clear()

    def _resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        """Wait until the daemon has taken what was sent (the transport's buffer is below its mark)."""
        await self._can_write.wait()
        if self.closed_reason:
            raise ConnectionLost(self.closed_reason)

    # ------------------------------------------------------------------ watches
    async def watch_file(self, path: str, events=("created", "modified", "deleted"), *, size: int = 0,
                         timeout: float | None = None) -> Watch:
        mask = 0
        for e in events:
            mask |= MASK_OF_EVENT[e]
        ino = g.InotifyT(rootPaths=path, mask=mask, size=min(size, 0xFFFFFFFF), size64=size,
                         timeoutMs=int(timeout * 1000) if timeout else 0)
        return await self._watch(ino, "InotifyWatchListUpdated")

    async def watch_port(self, port: int, *, timeout: float | None = None, host: str | None = None,
                         unmediated: bool = False) -> Watch:
        """On a mediating daemon the port is watched on the simulated network (on `host`, or any
        host); `unmediated` watches the real machine's sockets instead."""
        sock = g.TCPSocketT(destport=port, timeoutMs=int(timeout * 1000) if timeout else 0, host=host or None,
                            unmediated=unmediated)
        return await self._watch(sock, "SocketWatched")

    async def _watch(self, what, ack_kind: str) -> Watch:
        rid, req = self._new_request({"WatchEnded"})
        sv = g.SurveillanceEventT()
        sv.eventType = g.Surveillance.Inotify if isinstance(what, g.InotifyT) else g.Surveillance.TCPSocket
        sv.event = what
        self._send(g.RunCommandT(requestId=rid, toWatch=[sv]))
        ev = await req.get()
        if ev is None:
            raise ConnectionLost(self.closed_reason or "connection closed")
        if ev.kind == "Error":
            self._requests.pop(rid, None)
            raise CtrlError(ev.body.message, ev.body.code)
        return Watch(self, rid, req, ev)

    async def remove_watch(self, request_id: int) -> None:
        self._send(g.RemoveWatchT(requestId=request_id))

    # ------------------------------------------------------------------ misc
    async def status(self) -> g.StatusReplyT:
        rid, req = self._new_request({"StatusReply"})
        ev = await self._one(g.StatusRequestT(requestId=rid), rid, req)
        for p in ev.body.processes or []:
            p.args = [as_str(a) for a in p.args or []]
        for h in ev.body.simHosts or []:
            for p in h.processes or []:
                p.args = [as_str(a) for a in p.args or []]
        return ev.body

    async def subscribe(self, enable: bool = True) -> None:
        """Also receive the events of commands started by other clients (see events())."""
        rid, req = self._new_request({"Ack"})
        await self._one(g.SubscribeT(requestId=rid, enable=enable), rid, req)


class RunHandle:
    def __init__(self, client: Client, request_id: int, req: _Request):
        self.client = client
        self.request_id = request_id
        self._req = req
        self.pid = 0

    async def events(self):
        """This run's events up to and including the terminal one."""
        while True:
            ev = self._check(await self._req.get())
            yield ev
            if ev.kind in self._req.terminal:
                return

    def _check(self, ev: Event | None) -> Event:
        if ev is None:
            raise ConnectionLost(self.client.closed_reason or "connection closed")
        if ev.kind == "Error":
            raise CtrlError(ev.body.message, ev.body.code)
        if ev.kind == "ProcessLaunched":
            self.pid = ev.body.pid
        return ev

    async def kill(self, sig: int = _signal.SIGKILL) -> None:
        await self.client.kill(request_id=self.request_id, sig=sig)

    async def write_stdin(self, data: bytes) -> None:
        """Send bytes to the command's stdin (started with stdin=True); waits while the daemon has
        not taken the previous ones (bounded memory on both sides)."""
        c = self.client
        if c.closed_reason:
            raise ConnectionLost(c.closed_reason)
        for i in range(0, len(data), 65536):
            c._send(g.StdinDataT(requestId=self.request_id, data=data[i : i + 65536]))
            await c.drain()

    def close_stdin(self) -> None:
        if not self.client.closed_reason:
            self.client._send(g.CloseStdinT(requestId=self.request_id))

    async def wait(self, on_output=None, collect: bool = True) -> RunResult:
        """Collect the run; `on_output(stream, data)` is called for each chunk as it arrives.
        `collect=False` keeps neither the output nor the events in the result: memory stays
        constant however much the command prints (`ctrl run` streams that way)."""
        req = self._req
        if on_output is None:
            await req.wait_end()  # one wake-up for the whole run
        res = RunResult()
        out, err = bytearray(), bytearray()
        queued = req.events
        while True:
            ev = self._check(queued.popleft() if queued else await req.get())
            if collect:
                res.events.append(ev)
            b = ev.body
            if ev.kind == "OutputChunk":
                if on_output is not None:
                    on_output(b.stream, b.data)
                if collect:
                    (out if b.stream == g.Stream.stdout else err).extend(b.data)
            elif ev.kind == "ProcessLaunched":
                res.pid = b.pid
                res.host = b.host or ""
                if b.host:
                    res.sim_start_ns, res.sim_start = b.simTimeNs, b.simTimeNs / 1e9
            elif ev.kind == "ExecveTerminated" and not b.success:
                res.exec_failed, res.exec_errno, res.message = True, b.execErrno, b.message or ""
            elif ev.kind == "ChildCreationError":
                res.exec_failed, res.exec_errno, res.message = True, b.errorCode, b.message or ""
                res.exit_code = 127
            elif ev.kind == "ProcessTerminated":
                res.exit_code, res.signal, res.timed_out = b.exitCode, b.signal, b.timedOut
                res.user_cpu_s, res.sys_cpu_s = b.userCpuNs / 1e9, b.sysCpuNs / 1e9
                res.max_rss_kb, res.wall_s = b.maxRssKb, b.wallNs / 1e9
                if b.simStartNs != -1:  # an emulated process
                    res.sim_end_ns, res.sim_end = b.simTimeNs, b.simTimeNs / 1e9
                    res.sim_start_ns, res.sim_start = b.simStartNs, b.simStartNs / 1e9
                    res.pid = res.pid or b.pid
                if b.message and not res.message:
                    res.message = b.message
            if ev.kind in req.terminal:
                break
        res.stdout, res.stderr = bytes(out), bytes(err)
        return res


class Watch:
    def __init__(self, client: Client, request_id: int, req: _Request, first: Event):
        self.client = client
        self.request_id = request_id
        self._req = req
        self.registered = first

    async def events(self):
        """InotifyPathUpdated / SocketWatchTerminated events, ending with WatchEnded."""
        while True:
            ev = await self._req.get()
            if ev is None:
                raise ConnectionLost(self.client.closed_reason or "connection closed")
            yield ev
            if ev.kind == "WatchEnded":
                return

    async def remove(self) -> None:
        await self.client.remove_watch(self.request_id)


# ---------------------------------------------------------------------- fan-out
async def connect_many(addrs: list[str], **kw) -> list[Client]:
    """Connect to every daemon concurrently; raises the first failure after closing the others."""
    results = await asyncio.gather(*(Client.connect(a, **kw) for a in addrs), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for r in results:
            if isinstance(r, Client):
                await r.close()
        raise errors[0]
    return list(results)


async def run_many(clients: list[Client], argv: list[str], on_output=None, **kw) -> dict[str, RunResult]:
    """Run `argv` on every daemon at once; `on_output(name, stream, data)` sees output as it comes.

    Returns {daemon name: RunResult}.
    """

    async def one(c: Client):
        h = await c.start(argv, **kw)
        cb = None if on_output is None else (lambda s, d, n=c.name: on_output(n, s, d))
        return c.name, await h.wait(cb)

    return dict(await asyncio.gather(*(one(c) for c in clients)))
