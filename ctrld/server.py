"""The daemon: listeners, connections, request dispatch and event routing.

One asyncio loop, no threads (with `--mediate`, the emulation runs in its own threads and hands
its callbacks to this loop: see ctrld/mediate.py).  Each connection is an asyncio.Protocol (no stream-reader layer
on the hot path); the frames produced by one input leave in a single transport.write(), and
TCP_NODELAY is on (asyncio sets it for TCP transports): the seed's 42 ms per command was Nagle +
delayed ACK.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import signal
import socket
import stat

import ctrld
from ctrld import auth, machine
from ctrld.processes import Command, ProcessTable, spec_from_request
from ctrld.protocol import codec
from ctrld.protocol.codec import now_ns
from ctrld.protocol.generated import ctrld_generated as g
from ctrld.watches import WatchTable

log = logging.getLogger("ctrld")

REQUESTS = frozenset(
    ["RunCommand", "KillProcess", "EstablishTCPConnection", "EstablishUnixConnection", "Hello",
     "RemoveWatch", "Subscribe", "StatusRequest"]
)
# A client that stops reading while a command floods it is dropped past this much unsent data.
MAX_BACKLOG = 256 * 1024 * 1024


class Connection(asyncio.Protocol):
    def __init__(self, daemon: Daemon, kind: str, needs_token: bool):
        self.daemon = daemon
        self.kind = kind  # "tcp", "tls" or "unix"
        self.needs_token = needs_token
        self.client_id = next(daemon.client_ids)
        self.splitter = codec.FrameSplitter(daemon.max_frame)
        self.transport = None
        self.v2 = False
        self.subscribed = False
        self.closed = False
        self.peer = "?"
        self.commands: dict[int, Command] = {}  # request_id -> running command (v2 requests only)
        self._pending: list[bytes] = []

    # ------------------------------------------------------------------ transport
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if self.kind == "unix":
            pid, uid, _gid = auth.peer_credentials(sock)
            self.peer = f"unix pid={pid} uid={uid}"
            if uid not in self.daemon.allowed_uids:
                log.warning("refusing %s: uid %d not allowed", self.peer, uid)
                self.send(g.ErrorT(code=13, message=f"uid {uid} is not allowed to use this daemon", timeNs=now_ns()))
                self.close()
                return
        else:
            self.peer = "%s:%s" % transport.get_extra_info("peername")[:2]
        self.daemon.connections.add(self)
        # The seed greets every connection with the daemon's port; seed clients wait for it.
        self.send(g.TCPSocketListeningT(port=self.daemon.greeting_port, timeNs=now_ns()))

    def connection_lost(self, exc):
        self.closed = True
        self.daemon.drop_connection(self)

    def send(self, body) -> None:
        self.write(codec.encode(body))

    def write(self, frame: bytes) -> None:
        """Queue a frame; the frames produced while handling one input (a request, a child's exit)
        leave in one write(), right after it (see Daemon.batch_begin)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        if not self._pending:
            self.daemon.dirty(self)
        self._pending.append(frame)

    def _flush(self) -> None:
        frames, self._pending = self._pending, []
        if self.closed or self.transport.is_closing() or not frames:
            return
        self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        if self.transport.get_write_buffer_size() > MAX_BACKLOG:
            log.warning("dropping %s: %d bytes unread", self.peer, self.transport.get_write_buffer_size())
            self.transport.abort()

    def close(self) -> None:
        """Close after the queued frames are written (transport.close() flushes its buffer)."""
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def data_received(self, data):
        self.daemon.batch_begin()
        try:
            self._data_received(data)
        finally:
            self.daemon.batch_end()

    def _data_received(self, data):
        for frame in self.splitter.feed(data):
            if self.closed or self.transport.is_closing():
                return
            try:
                name, body = codec.decode(frame, REQUESTS)
            except codec.ProtocolError as e:
                self.error(0, 22, str(e), always=True)
                continue
            try:
                self.handle(name, body)
            except Exception as e:  # a bug in one request must not take the daemon down
                log.exception("request %s from %s failed", name, self.peer)
                self.error(getattr(body, "requestId", 0), 5, f"internal error: {type(e).__name__}: {e}")
        if self.splitter.error is not None and not self.transport.is_closing():
            # The stream cannot be re-synchronised after a bogus length: answer and hang up.
            self.error(0, 27, str(self.splitter.error), always=True)  # EFBIG
            self.close()

    def error(self, request_id: int, code: int, message: str, always: bool = False) -> None:
        """Error events go to v2 clients; a seed client never sees a union member it doesn't know,
        except for undecodable frames (`always`), where the sender's version cannot be known."""
        if self.v2 or always:
            self.send(g.ErrorT(requestId=request_id, code=code, message=message, timeNs=now_ns()))
        else:
            log.info("%s: %s", self.peer, message)

    # ------------------------------------------------------------------ requests
    def handle(self, name: str, body) -> None:
        if self.needs_token:
            if name != "Hello" or not body.token or not hmac.compare_digest(body.token.encode(), self.daemon.token.encode()):
                log.warning("refusing %s: missing or wrong token", self.peer)
                self.send(g.ErrorT(code=13, message="authentication required: first frame must be Hello with the daemon's token", timeNs=now_ns()))
                self.close()
                return
            self.needs_token = False
        if getattr(body, "requestId", 0) or name not in codec.SEED_MEMBERS:
            self.v2 = True
        getattr(self, "on_" + name)(body)

    def on_Hello(self, body: g.HelloT) -> None:
        self.v2 = True
        self.send(
            g.WelcomeT(version=2, daemonVersion=ctrld.__version__, hostname=socket.gethostname(), clientId=self.client_id)
        )

    def on_RunCommand(self, req: g.RunCommandT) -> None:
        rid = req.requestId
        if rid and rid in self.commands:
            self.error(rid, 17, f"request id {rid} is already running")  # EEXIST
            return
        # Watches first: a watch on a port/file the command is about to create must not miss it.
        for i, sv in enumerate(req.toWatch or []):
            self._add_watch(rid, i, sv)
        if req.path:
            mediator = self.daemon.mediator
            emulated = mediator is not None and not req.unmediated
            try:
                spec = spec_from_request(req)
                if req.host and not emulated:
                    raise ValueError(
                        f"simulated host {req.host!r} asked for a plain process" if mediator is not None
                        else f"simulated host {req.host!r}: this daemon does not mediate (start it with --mediate)"
                    )
                if emulated and mediator.failed:
                    raise ValueError(f"the emulation has stopped: {mediator.failed}")
            except ValueError as e:
                self.error(rid, 22, str(e))
                if not self.v2:
                    self.send(g.ChildCreationErrorT(errorCode=22, message=str(e), timeNs=now_ns()))
                return
            if emulated:
                cmd = self.daemon.processes.start_emulated(spec, self, rid, req.host or mediator.default_host)
            else:
                cmd = self.daemon.processes.start(spec, self, rid)
            if rid and not cmd.finished:
                self.commands[rid] = cmd
        elif not req.toWatch:
            self.error(rid, 22, "RunCommand without a path nor watches")

    def _add_watch(self, rid: int, index: int, sv: g.SurveillanceEventT) -> None:
        w = sv.event if sv is not None else None
        try:
            if isinstance(w, g.InotifyT):
                self.daemon.watches.add_file(self, rid, w.rootPaths or "", w.mask, w.size64 or w.size, w.timeoutMs)
            elif isinstance(w, g.TCPSocketT):
                simulated = self.daemon.mediator is not None and not w.unmediated
                if w.host and not simulated:
                    raise OSError(22, f"simulated host {w.host!r}: this daemon does not mediate"
                                  if self.daemon.mediator is None else f"simulated host {w.host!r} with unmediated")
                self.daemon.watches.add_port(self, rid, w.destport, w.timeoutMs, w.host or "", simulated)
            else:
                self.error(rid, 22, f"watch #{index}: unknown surveillance type", always=True)
        except OSError as e:
            self.error(rid, e.errno or 22, f"watch #{index}: {e.strerror or e}")

    def on_KillProcess(self, req: g.KillProcessT) -> None:
        procs = self.daemon.processes
        if req.targetRequestId:
            cmd = self.commands.get(req.targetRequestId)
        else:
            cmd = procs.by_pid.get(req.pid)
        sig = req.signal or signal.SIGKILL
        if cmd is None:
            what = f"request {req.targetRequestId}" if req.targetRequestId else f"pid {req.pid}"
            self.error(req.requestId, 3, f"no running command for {what}")  # ESRCH
            return
        try:
            procs.kill(cmd, sig)
        except (OSError, ValueError) as e:
            self.error(req.requestId, getattr(e, "errno", None) or 22, f"kill: {e}")
            return
        if self.v2:
            self.send(g.AckT(requestId=req.requestId, timeNs=now_ns()))

    def on_RemoveWatch(self, req: g.RemoveWatchT) -> None:
        if not self.daemon.watches.remove(self, req.requestId):
            self.error(req.requestId, 2, f"no watch for request {req.requestId}")

    def on_Subscribe(self, req: g.SubscribeT) -> None:
        self.subscribed = req.enable
        self.send(g.AckT(requestId=req.requestId, timeNs=now_ns()))

    def on_StatusRequest(self, req: g.StatusRequestT) -> None:
        self.send(self.daemon.status(req.requestId))

    def on_EstablishTCPConnection(self, req) -> None:
        self.error(0, 95, "EstablishTCPConnection is not supported")  # EOPNOTSUPP

    def on_EstablishUnixConnection(self, req) -> None:
        self.error(0, 95, "EstablishUnixConnection is not supported")


class Daemon:
    def __init__(self, *, max_frame: int = codec.DEFAULT_MAX_FRAME, token: str | None = None,
                 allowed_uids: set[int] | None = None, cgroup_root: str | None = None, mediator=None):
        self.loop = asyncio.get_running_loop()
        self.max_frame = max_frame
        self.token = token
        self.allowed_uids = allowed_uids or auth.allowed_uids([])
        self.connections: set[Connection] = set()
        self.client_ids = itertools.count(1)
        self.processes = ProcessTable(self.loop, self._emit_command, cgroup_root)
        self.processes.batch_begin, self.processes.batch_end = self.batch_begin, self.batch_end
        self.watches = WatchTable(self.loop, self._emit_watch)
        self.mediator = mediator  # ctrld.mediate.Mediator with --mediate
        if mediator is not None:
            self.processes.mediator = mediator
            self.watches.mediator = mediator
            mediator.on_listen = self.watches.sim_listened
        self.servers: list[asyncio.AbstractServer] = []
        self.addresses: list[str] = []
        self.greeting_port = 0
        self.unix_paths: list[str] = []
        self._dirty: list[Connection] = []  # connections with queued frames
        self._batch = 0
        self._flush_scheduled = False

    # ------------------------------------------------------------------ listeners
    async def listen_tcp(self, host: str, port: int, tls=None) -> None:
        kind = "tls" if tls else "tcp"
        server = await self.loop.create_server(
            lambda: Connection(self, kind, needs_token=self.token is not None),
            host, port, ssl=tls, reuse_address=True,
        )
        self.servers.append(server)
        for s in server.sockets:
            h, p = s.getsockname()[:2]
            self.greeting_port = self.greeting_port or p
            self.addresses.append(f"{kind}://{'[%s]' % h if ':' in h else h}:{p}")

    async def listen_unix(self, path: str) -> None:
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise auth.ConfigError(f"{path} exists and is not a socket")
            os.unlink(path)  # stale socket of a previous run
        old = os.umask(0o177)  # the socket is created 0600: no window where others may connect
        try:
            server = await self.loop.create_unix_server(lambda: Connection(self, "unix", False), path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.servers.append(server)
        self.unix_paths.append(path)
        self.addresses.append(f"unix:{path}")

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            c.close()
        self.processes.kill_all()
        self.watches.close()
        if self.mediator is not None:
            self.mediator.close()  # kills what still runs and ends the simulation
        for p in self.unix_paths:
            try:
                os.unlink(p)
            except OSError:
                pass

    # ------------------------------------------------------------------ output batching
    # Measured on 2 cores, each write() that wakes a client while a command runs costs ~0.2 ms:
    # the frames produced by one input leave together.  Handlers of the hot inputs (a request, a
    # child's exit) bracket their work with batch_begin/batch_end and the frames leave at the end,
    # in the same loop turn; any other emitter gets a flush scheduled with call_soon.
    def dirty(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._batch and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def batch_begin(self) -> None:
        self._batch += 1

    def batch_end(self) -> None:
        self._batch -= 1
        if not self._batch:
            self.flush()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for c in dirty:
            c._flush()

    # ------------------------------------------------------------------ routing
    def _deliver(self, owner, body, extension: bool) -> None:
        frame = None
        targets = []
        if owner is not None and not owner.closed and (owner.v2 or not extension):
            targets.append(owner)
        for c in self.connections:
            if c.subscribed and c is not owner:
                targets.append(c)
        for c in targets:
            if frame is None:
                frame = codec.encode(body)
            c.write(frame)

    def _emit_command(self, cmd: Command, body, extension: bool) -> None:
        self._deliver(cmd.owner, body, extension)
        if cmd.finished and cmd.owner is not None:
            cmd.owner.commands.pop(cmd.request_id, None)

    def _emit_watch(self, owner, body, extension: bool) -> None:
        self._deliver(owner, body, extension)

    def drop_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.watches.drop_owner(conn)
        for cmd in list(self.processes.by_pid.values()) + list(self.processes.starting):
            if cmd.owner is conn:
                cmd.owner = None
                if cmd.spec.kill_on_disconnect and cmd.status is None:
                    self.processes.kill(cmd, signal.SIGKILL)

    # ------------------------------------------------------------------ status
    def status(self, request_id: int) -> g.StatusReplyT:
        m = machine.snapshot()
        procs = [
            g.ProcessInfoT(
                pid=c.pid, requestId=c.request_id, clientId=c.owner.client_id if c.owner else 0,
                args=[codec.wire_str(a) for a in c.spec.argv], startedNs=c.started_ns, timeoutMs=c.spec.timeout_ms,
                host=c.host or None, simStartNs=c.sim_start_ns,
            )
            for c in self.processes.by_pid.values()
        ]
        watches = [
            g.WatchInfoT(
                requestId=w.request_id, clientId=w.owner.client_id if w.owner else 0,
                path=getattr(w, "path", None), port=getattr(w, "port", 0),
                host=getattr(w, "host", "") or None, simulated=getattr(w, "simulated", False),
            )
            for w in self.watches.all()
        ]
        reply = g.StatusReplyT(
            requestId=request_id, hostname=m["hostname"], cpuCount=m["cpu_count"],
            load1=m["load"][0], load5=m["load"][1], load15=m["load"][2],
            memTotalKb=m["mem_total_kb"], memAvailableKb=m["mem_available_kb"], uptimeS=m["uptime_s"],
            daemonVersion=ctrld.__version__, daemonRssKb=m["daemon_rss_kb"], daemonPid=os.getpid(),
            clients=len(self.connections), processes=procs, watches=watches, timeNs=now_ns(),
        )
        m = self.mediator
        if m is not None:
            reply.mediate = m.mode
            reply.simTimeNs = m.now_ns()
            reply.defaultHost = m.default_host
            reply.simHosts = [
                g.SimHostT(name=h, ip=m.ips.get(h) or None, processes=[p for p in procs if p.host == h])
                for h in m.hosts
            ]
        return reply
