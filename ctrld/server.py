"""The daemon: listeners, connections, request dispatch and event routing.

One asyncio loop, no threads (with `--mediate`, the emulation runs in its own threads and hands
its callbacks to this loop: see ctrld/mediate.py).  Each connection is an asyncio.Protocol (no stream-reader layer
on the hot path); the frames produced by one input leave in a single transport.write(), and
TCP_NODELAY is on (asyncio sets it for TCP transports): the seed's 42 ms per command was Nagle +
delayed ACK.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import hmac
import itertools
import logging
import os
import select
import signal
import socket
import stat
import struct
import termios
import time
from dataclasses import dataclass

import ctrld
from ctrld import auth, machine
from ctrld.auth import Identity
from ctrld.processes import Command, ProcessTable, spec_from_request
from ctrld.protocol import codec
from ctrld.protocol.codec import now_ns
from ctrld.protocol.generated import ctrld_generated as g
from ctrld.watches import WatchTable

log = logging.getLogger("ctrld")

REQUESTS = frozenset(
    ["RunCommand", "KillProcess", "EstablishTCPConnection", "EstablishUnixConnection", "Hello",
     "RemoveWatch", "Subscribe", "StatusRequest", "StdinData", "CloseStdin", "WaitProcess"]
)
PREAUTH_REQUESTS = frozenset(["Hello"])


@dataclass
class Limits:
    """What one peer may cost the daemon.  Defaults sized for a 2-core experiment node; each is a
    daemon option (see daemon_cli)."""

    max_connections: int = 256  # all connections; beyond: an Error then close
    max_pending: int = 64  # connections that still owe their Hello{token}; the oldest is evicted
    handshake_s: float = 10.0  # a connection that owes Hello{token} is closed after this long
    preauth_frame: int = codec.PREAUTH_MAX_FRAME
    max_processes: int = 256  # running commands per connection
    max_watches: int = 1024  # watches per connection
    # Unsent output per connection: above `write_high` the connection's commands stop being read
    # (their pipes fill and they block, as over ssh) and its requests stop being read; both resume
    # below a quarter of it.
    write_high: int = 1024 * 1024
    stdin_high: int = 1024 * 1024  # stdin bytes queued for a connection's commands


class _RateLimitedLog:
    """At most one log line per `period` seconds for a repetitive error (accept failures under a
    descriptor flood printed 44 MB of tracebacks in 30 s); the number of silenced ones is added."""

    def __init__(self, period: float = 1.0):
        self.period = period
        self.last = -1e9
        self.silenced = 0

    def __call__(self, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self.last < self.period:
            self.silenced += 1
            return
        extra = f" ({self.silenced} similar messages silenced)" if self.silenced else ""
        self.last, self.silenced = now, 0
        log.warning(msg + extra, *args)


def _set_keepalive(sock) -> None:
    """A peer that vanishes (power loss, cable) is noticed after ~1 min instead of never."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (OSError, AttributeError):
        pass


class Connection(asyncio.Protocol):
    """One client.  It is *authenticated* once the kernel vouched for its uid (unix socket,
    loopback TCP), its TLS certificate was verified, or it sent Hello with the token; until then
    it may only send Hello, in small frames, within the handshake deadline."""

    def __init__(self, daemon: Daemon, kind: str, needs_token: bool, tls=None):
        self.daemon = daemon
        self.kind = kind  # "tcp", "tls" or "unix"
        self.tls = tls  # the server's SSLContext (kind "tls"), until the handshake starts
        self.handshaking = False  # kind "tls": counted, its TLS handshake not done yet
        self.needs_token = needs_token
        self.client_id = next(daemon.client_ids)
        self.limits: Limits = daemon.limits
        # Until authenticated, frames are capped small: a peer that has proven nothing gets 64 KiB.
        self.splitter = codec.FrameSplitter(self.limits.preauth_frame)
        self.transport = None
        self.v2 = False
        self.subscribed = False
        self.closed = False
        self.authenticated = False
        self.identity: Identity | None = None
        self.peer = "?"
        self.commands: dict[int, Command] = {}  # request_id -> running command (v2 requests only)
        self.running: set[Command] = set()  # every command of this connection whose output may come
        self.write_paused = False
        self._read_pauses: set[str] = set()  # why reading this connection's requests is paused
        self.stdin_queued = 0  # bytes of StdinData not yet written to the commands' pipes
        self.waits = 0  # WaitProcess requests waiting for a running command's end
        self._deadline = None
        self._pending: list[bytes] = []
        self._marked = False  # in the daemon's list of connections to flush

    # ------------------------------------------------------------------ transport
    def connection_made(self, transport):
        self.transport = transport
        d = self.daemon
        if len(d.connections) >= self.limits.max_connections and not d.drop_hung_up():
            d.log_refusal("refusing a connection: %d connections already (--max-connections)", len(d.connections))
            if self.tls is not None:  # no TLS yet: an Error frame would be garbage to the client
                self.closed = True
                transport.abort()
                return
            self._refuse(errno.EBUSY, f"too many connections to this daemon (limit {self.limits.max_connections})")
            return
        if self.tls is not None:
            # Counted from now on, and pending (evictable, under the handshake deadline) until it
            # has proven something: its certificate (then _authenticated) or its token.
            ctx, self.tls = self.tls, None
            self.handshaking = True
            self.peer = "%s:%s" % transport.get_extra_info("peername")[:2]
            d.connections.add(self)
            d.add_pending(self)
            self._deadline = d.loop.call_later(self.limits.handshake_s, self._handshake_expired)
            d.loop.create_task(self._start_tls(transport, ctx))
            return
        self._identify(transport)

    async def _start_tls(self, raw, ctx) -> None:
        if raw.is_closing():
            # Evicted before its turn came: start_tls would still allocate its 256 KiB buffer and
            # wait out the handshake timeout on a closed transport (under a flood: 380 MiB of RSS).
            self.closed = True
            self.daemon.drop_connection(self)
            return
        try:
            tls = await self.daemon.loop.start_tls(raw, self, ctx, server_side=True,
                                                   ssl_handshake_timeout=self.limits.handshake_s)
        except Exception as e:  # a failed or timed-out handshake, a plain-TCP peer
            log.info("closing %s: TLS handshake failed: %s", self.peer, e)
            tls = None
        if tls is None or self.closed:  # None: closed meanwhile (evicted, deadline, shutdown)
            raw.abort()
            if tls is not None:
                tls.abort()
            self.closed = True
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self.daemon.drop_connection(self)
            return
        self.handshaking = False
        self._identify(tls)

    def _identify(self, transport) -> None:
        """Who the peer is (kernel, certificate), whether it is served, and its greeting."""
        self.transport = transport
        d = self.daemon
        sock = transport.get_extra_info("socket")
        if self.kind == "unix":
            pid, uid, _gid = auth.peer_credentials(sock)
            self.peer = f"unix pid={pid} uid={uid}"
            if uid not in d.allowed_uids:
                log.warning("refusing %s: uid %d not allowed", self.peer, uid)
                self._refuse(errno.EACCES, f"uid {uid} is not allowed to use this daemon")
                return
            self.identity = Identity.of_uid(uid)
        else:
            _set_keepalive(sock)
            addr = transport.get_extra_info("peername")
            self.peer = "%s:%s" % addr[:2]
            uid = None
            exhausted = False
            if auth.is_loopback_address(addr[0]):
                try:
                    uid = auth.tcp_peer_uid(sock)
                except OSError as e:
                    uid = None
                    exhausted = e.errno in (errno.EMFILE, errno.ENFILE)
                    if exhausted:
                        d.log_refusal("accept: cannot identify %s: %s", self.peer, e.strerror)
                self.peer += f" uid={uid}"
            cert = auth.cert_identity(transport.get_extra_info("peercert")) if self.kind == "tls" else None
            if uid is not None:
                self.identity = Identity.of_uid(uid)
            elif cert is not None:
                self.identity = Identity(cert)
            if not self.needs_token:
                if uid is not None and uid not in d.allowed_uids and cert is None:
                    log.warning("refusing %s: uid %d not allowed", self.peer, uid)
                    self._refuse(errno.EACCES, f"uid {uid} is not allowed to use this daemon (--allow-uid, or a token)")
                    return
                if self.identity is None:
                    # A daemon without a token serves off-loopback peers only through verified
                    # client certificates (check_config), and loopback peers by uid.
                    if exhausted:  # said above, once per second at most
                        self._refuse(errno.EMFILE, "this daemon is out of descriptors: try again later")
                        return
                    log.warning("refusing %s: peer not identified", self.peer)
                    self._refuse(errno.EACCES, "this daemon could not identify you (no token, no client certificate)")
                    return
        d.connections.add(self)
        if self.needs_token:
            if self._deadline is None:  # a TLS connection has had its own since its accept
                d.add_pending(self)
                self._deadline = d.loop.call_later(self.limits.handshake_s, self._handshake_expired)
        else:
            self._authenticated()
        # The seed greets every connection with the daemon's port; seed clients wait for it.
        self.send(g.TCPSocketListeningT(port=d.greeting_port, timeNs=now_ns()))
        self.transport.set_write_buffer_limits(high=self.limits.write_high, low=self.limits.write_high // 4)

    def has_spoken(self) -> bool:
        """Whether any byte arrived on this connection, read or not (TCP_INFO's tcpi_bytes_received,
        at offset 128 since Linux 4.1; else FIONREAD: bytes not read yet)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            if len(info) >= 136:
                return struct.unpack_from("Q", info, 128)[0] > 0
        except OSError:
            pass
        try:
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0] > 0
        except OSError:
            return False

    def _refuse(self, code: int, message: str) -> None:
        self.closed = True  # not (or no longer) registered: connection_lost has nothing to undo
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.daemon.connections.discard(self)  # a TLS connection is counted from its accept
        self.daemon.pending.pop(self, None)
        self.transport.write(codec.encode(g.ErrorT(code=code, message=message, timeNs=now_ns())))
        self.transport.close()

    def _authenticated(self) -> None:
        self.authenticated = True
        self.splitter.max_frame = self.daemon.max_frame
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.daemon.pending.pop(self, None)

    def _handshake_expired(self) -> None:
        self._deadline = None
        if not self.authenticated and not self.closed:
            log.info("closing %s: no Hello within %g s", self.peer, self.limits.handshake_s)
            self.send(g.ErrorT(code=errno.ETIMEDOUT, message="authentication required: no Hello{token} in time",
                               timeNs=now_ns()))
            self.close()

    def connection_lost(self, exc):
        if self.closed and self not in self.daemon.connections:
            return  # refused in connection_made
        self.closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.daemon.drop_connection(self)

    # ------------------------------------------------------------------ flow control
    def pause_writing(self):
        """The client reads slower than we write: stop reading its commands' pipes (they block
        when their pipe is full, as a command does over ssh) and its requests."""
        self.write_paused = True
        self.pause_reading("backlog")
        for cmd in self.running:
            self.daemon.processes.pause_output(cmd)

    def resume_writing(self):
        self.write_paused = False
        self.resume_reading("backlog")
        for cmd in list(self.running):
            self.daemon.processes.resume_output(cmd)

    def pause_reading(self, why: str) -> None:
        if not self._read_pauses and not self.closed:
            self.transport.pause_reading()
        self._read_pauses.add(why)

    def resume_reading(self, why: str) -> None:
        self._read_pauses.discard(why)
        if not self._read_pauses and not self.closed and not self.transport.is_closing():
            self.transport.resume_reading()

    def send(self, body) -> None:
        self.write(codec.encode(body))

    def write(self, frame: bytes, hold: bool = False) -> None:
        """Queue a frame; the frames produced while handling one input (a request, a child's exit)
        leave in one write(), right after it (see Daemon.batch_begin).  A `hold` frame waits for
        the next frame not held (it never leaves alone): RunCommand.defer_start."""
        if self.closed or self.transport is None or self.transport.is_closing() or self.handshaking:
            return
        if not hold and not self._marked:
            self._marked = True
            self.daemon.dirty(self)
        self._pending.append(frame)

    def _flush(self) -> None:
        self._marked = False
        frames, self._pending = self._pending, []
        if self.closed or self.transport.is_closing() or not frames:
            return
        self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

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
                name, body = codec.decode(frame, REQUESTS if self.authenticated else PREAUTH_REQUESTS)
            except codec.ProtocolError as e:
                if not self.authenticated:
                    log.info("closing %s before authentication: %s", self.peer, e)
                    self.send(g.ErrorT(code=errno.EACCES, message=f"authentication required: first frame must be "
                                       f"Hello with the daemon's token ({e})", timeNs=now_ns()))
                    self.close()
                    return
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
        if not self.authenticated:
            token = self.daemon.token
            if name != "Hello" or not body.token or not hmac.compare_digest(body.token.encode(), token.encode()):
                log.warning("refusing %s: missing or wrong token", self.peer)
                self.send(g.ErrorT(code=13, message="authentication required: first frame must be Hello with the daemon's token", timeNs=now_ns()))
                self.close()
                return
            if self.identity is None:
                self.identity = Identity("token")
            self._authenticated()
        if getattr(body, "requestId", 0) or name not in codec.SEED_MEMBERS:
            self.v2 = True
        getattr(self, "on_" + name)(body)

    def may_control(self, identity: Identity | None) -> bool:
        """Acting on (killing, signalling, waiting for, watching the output of) something owned by
        `identity` needs to be that owner, or the daemon's own uid."""
        return self.identity.is_admin() or identity == self.identity

    def on_Hello(self, body: g.HelloT) -> None:
        self.v2 = True
        self.send(
            g.WelcomeT(version=2, daemonVersion=ctrld.__version__, hostname=socket.gethostname(), clientId=self.client_id)
        )

    def _refuse_run(self, rid: int, code: int, message: str) -> None:
        self.error(rid, code, message)
        if not self.v2:
            self.send(g.ChildCreationErrorT(errorCode=code, message=message, timeNs=now_ns()))

    def on_RunCommand(self, req: g.RunCommandT) -> None:
        rid = req.requestId
        if rid and rid in self.commands:
            self.error(rid, 17, f"request id {rid} is already running")  # EEXIST
            return
        watches = req.toWatch or []
        have = self.daemon.watches.count(self)
        if watches and have + len(watches) > self.limits.max_watches:
            self.error(rid, errno.EAGAIN, f"too many watches: this connection has {have}, the limit is "
                       f"{self.limits.max_watches} (--max-watches)", always=True)
            return
        # Watches first: a watch on a port/file the command is about to create must not miss it.
        for i, sv in enumerate(watches):
            self._add_watch(rid, i, sv)
        if req.path:
            mediator = self.daemon.mediator
            emulated = mediator is not None and not req.unmediated
            if len(self.running) >= self.limits.max_processes:
                self._refuse_run(rid, errno.EAGAIN, f"too many processes: this connection runs {len(self.running)}, "
                                 f"the limit is {self.limits.max_processes} (--max-processes)")
                return
            try:
                spec = spec_from_request(req)
                if spec.run_as is not None:
                    if not self.identity.is_admin():
                        raise PermissionError(errno.EPERM, "run_as needs the daemon's own uid "
                                              f"({self.identity.name} asked for uid {spec.run_as[0]})")
                    if emulated:
                        raise ValueError("run_as is not supported for emulated processes")
                if req.host and not emulated:
                    raise ValueError(
                        f"simulated host {req.host!r} asked for a plain process" if mediator is not None
                        else f"simulated host {req.host!r}: this daemon does not mediate (start it with --mediate)"
                    )
                if emulated and mediator.failed:
                    raise ValueError(f"the emulation has stopped: {mediator.failed}")
            except (ValueError, PermissionError) as e:
                code = e.errno if isinstance(e, PermissionError) else 22
                self._refuse_run(rid, code, e.strerror if isinstance(e, PermissionError) else str(e))
                return
            if emulated:
                cmd = self.daemon.processes.start_emulated(spec, self, rid, req.host or mediator.default_host)
            else:
                cmd = self.daemon.processes.start(spec, self, rid)
            if not cmd.finished:
                self.running.add(cmd)
                if rid:
                    self.commands[rid] = cmd
                if self.write_paused:
                    self.daemon.processes.pause_output(cmd)
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

    def _find(self, pid: int, target_rid: int) -> Command | None:
        if target_rid:
            return self.commands.get(target_rid)
        procs = self.daemon.processes
        return procs.by_pid.get(pid) or procs.leftovers.get(pid)

    def on_KillProcess(self, req: g.KillProcessT) -> None:
        procs = self.daemon.processes
        cmd = self._find(req.pid, req.targetRequestId)
        what = f"request {req.targetRequestId}" if req.targetRequestId else f"pid {req.pid}"
        if cmd is None:
            self.error(req.requestId, 3, f"no running command for {what}")  # ESRCH
            return
        if not self.may_control(cmd.identity):
            self.error(req.requestId, errno.EPERM, f"{what} belongs to {cmd.identity.name}: only its owner or the "
                       "daemon's uid may signal it")
            return
        sig = 0 if req.probe else (req.signal or signal.SIGKILL)
        try:
            procs.kill(cmd, sig)
        except (OSError, ValueError) as e:
            self.error(req.requestId, getattr(e, "errno", None) or 22, f"kill: {e}")
            return
        if self.v2:
            self.send(g.AckT(requestId=req.requestId, timeNs=now_ns()))

    def on_WaitProcess(self, req: g.WaitProcessT) -> None:
        procs = self.daemon.processes
        cmd = procs.by_pid.get(req.pid) or procs.leftovers.get(req.pid)
        if cmd is not None and not cmd.finished:
            if not self.may_control(cmd.identity):
                self.error(req.requestId, errno.EPERM, f"pid {req.pid} belongs to {cmd.identity.name}")
                return
            if self.waits >= self.limits.max_watches:
                # Each wait costs memory now and a ProcessTerminated frame at the end: unbounded,
                # 2 M WaitProcess on one running pid grew the daemon from 25 to 233 MiB.
                self.error(req.requestId, errno.EAGAIN, f"too many waits: this connection waits for "
                           f"{self.waits} ends, the limit is {self.limits.max_watches} (--max-watches)")
                return
            self.waits += 1
            cmd.waiters.append((self, req.requestId))
            return
        done = procs.ended(req.pid)
        if done is None:
            self.error(req.requestId, 3, f"no command with pid {req.pid} (running or recently ended)")
            return
        identity, body = done
        if not self.may_control(identity):
            self.error(req.requestId, errno.EPERM, f"pid {req.pid} belonged to {identity.name}")
            return
        self.send(procs.terminated_copy(body, req.requestId))

    def on_StdinData(self, req: g.StdinDataT) -> None:
        cmd = self.commands.get(req.requestId)
        if cmd is None:
            self.error(req.requestId, errno.ESRCH, f"request {req.requestId}: no running command")
            return
        if cmd.stdin_fd < 0:
            # Closed: the command exited or closed its stdin (EPIPE), as data sent to an ssh
            # session whose command ended is discarded.  The run's own events say how it ended.
            return
        self.daemon.processes.feed_stdin(cmd, bytes(req.data or b""))

    def on_CloseStdin(self, req: g.CloseStdinT) -> None:
        cmd = self.commands.get(req.requestId)
        if cmd is None or cmd.stdin_fd < 0:
            return  # already closed (the command may have ended): nothing to do
        self.daemon.processes.close_stdin(cmd)

    def on_RemoveWatch(self, req: g.RemoveWatchT) -> None:
        if not self.daemon.watches.remove(self, req.requestId):
            self.error(req.requestId, 2, f"no watch for request {req.requestId}")

    def on_Subscribe(self, req: g.SubscribeT) -> None:
        # Subscribers receive the events of their own identity's commands, or everyone's with the
        # daemon's uid (see Daemon._deliver).
        self.subscribed = req.enable
        if req.enable:
            self.daemon.subscribers.add(self)
        else:
            self.daemon.subscribers.discard(self)
        self.send(g.AckT(requestId=req.requestId, timeNs=now_ns()))

    def on_StatusRequest(self, req: g.StatusRequestT) -> None:
        self.send(self.daemon.status(req.requestId, self))

    def on_EstablishTCPConnection(self, req) -> None:
        self.error(0, 95, "EstablishTCPConnection is not supported")  # EOPNOTSUPP

    def on_EstablishUnixConnection(self, req) -> None:
        self.error(0, 95, "EstablishUnixConnection is not supported")


class Daemon:
    def __init__(self, *, max_frame: int = codec.DEFAULT_MAX_FRAME, token: str | None = None,
                 allowed_uids: set[int] | None = None, cgroup_root: str | None = None, mediator=None,
                 limits: Limits | None = None):
        self.loop = asyncio.get_running_loop()
        self.max_frame = max_frame
        self.token = token
        self.allowed_uids = allowed_uids or auth.allowed_uids([])
        self.limits = limits or Limits()
        self.connections: set[Connection] = set()
        self.subscribers: set[Connection] = set()  # connections that sent Subscribe{enable}
        # Connections that owe Hello{token}, oldest first: when max_pending is reached the oldest is
        # evicted, so a flood of idle connections cannot keep a token holder out for long.
        self.pending: collections.OrderedDict[Connection, None] = collections.OrderedDict()
        self.log_refusal = _RateLimitedLog()
        self.client_ids = itertools.count(1)
        self.processes = ProcessTable(self.loop, self._emit_command, cgroup_root)
        self.processes.batch_begin, self.processes.batch_end = self.batch_begin, self.batch_end
        self.processes.flush = self.flush
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

    def add_pending(self, conn: Connection) -> None:
        self.pending[conn] = None
        while len(self.pending) > self.limits.max_pending:
            old = self._eviction_victim()
            del self.pending[old]
            self.log_refusal("evicting unauthenticated %s: %d connections owe their Hello", old.peer, len(self.pending) + 1)
            old.send(g.ErrorT(code=errno.EBUSY, message="too many unauthenticated connections: send Hello{token} sooner",
                              timeNs=now_ns()))
            old.close()

    def drop_hung_up(self) -> int:
        """Drop the counted connections whose peer has already closed and that have nothing left
        to read; how many.  Called only at --max-connections, before refusing someone.

        asyncio accepts up to 100 connections per wake-up and reads none of them before every
        connection_made ran: after a burst of clients that connected and closed at once, those
        still counted (their EOF unread) refused a real client ("8 connections already").  Such a
        connection's next read is its EOF, on which the daemon closes it anyway (no eof_received):
        it is closed now instead.  One poll() over the sockets, no read; a connection with bytes
        still to read (requests sent before the peer shut its end) stays counted and is served."""
        socks = {}
        poller = select.poll()
        for c in self.connections:
            t = c.transport
            sock = t.get_extra_info("socket") if t is not None else None
            fd = sock.fileno() if sock is not None else -1
            if fd >= 0:
                socks[fd] = c
                poller.register(fd, select.POLLRDHUP)  # POLLHUP and POLLERR come unasked
        dropped = 0
        for fd, _ev in poller.poll(0):  # only sockets with POLLRDHUP, POLLHUP or POLLERR
            c = socks[fd]
            if c._read_pauses:
                continue  # not being read: over TLS, requests may wait decrypted-to-be in asyncio
            try:
                unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                unread = 0
            if unread:
                continue  # requests sent before the peer shut its end: read and served first
            c.close()  # as at its EOF: what is queued for it is still written, if it can be
            c.closed = True
            if c._deadline is not None:
                c._deadline.cancel()
                c._deadline = None
            self.drop_connection(c)  # uncounted now: connection_lost comes later, and then returns
            dropped += 1
        if dropped:
            self.log_refusal("at --max-connections: dropped %d connections already closed by their peer", dropped)
        return dropped

    def _eviction_victim(self) -> Connection:
        """The oldest pending connection that never sent a byte, else the oldest.

        Under a connection flood asyncio accepts up to 100 connections per wake-up before it reads
        any of them: a token holder's Hello could already wait in its socket while the connections
        accepted after it evicted it, before it was ever read (measured: 10 of 12 `ctrl run` with
        the token refused while one thread re-opened evicted idle connections), and a TLS client's
        handshake takes round trips during which a flood re-opening its idle connections evicted
        it (0 of 10 certificate holders served).  Those have sent something; silent ones go first.
        (A connection that sent garbage is closed once read; one that stalls after a first frame
        or a ClientHello is still evicted, oldest first, once every silent one is gone.)"""
        for c in self.pending:
            if not c.has_spoken():
                return c
        return next(iter(self.pending))

    def exception_handler(self, loop, context) -> None:
        """asyncio reports accept() failures (EMFILE under a descriptor flood) and transport errors
        here: one line per second at most, no traceback."""
        exc = context.get("exception")
        self.log_refusal("%s%s", context.get("message", "error"), f": {exc!r}" if exc else "")

    # ------------------------------------------------------------------ listeners
    async def listen_tcp(self, host: str, port: int, tls=None) -> None:
        kind = "tls" if tls else "tcp"
        # Not create_server(ssl=...): asyncio would run each TLS handshake before telling us of the
        # connection, so --max-connections, --max-pending and the handshake deadline did not apply
        # to it, and each connection that never finished its handshake held ~290 KiB (asyncio's
        # 256 KiB TLS read buffer) for 60 s: 3 000 of them took an unauthenticated peer to 882 MiB
        # of daemon RSS.  The connection is counted at accept, then upgraded (Connection._start_tls).
        server = await self.loop.create_server(
            lambda: Connection(self, kind, needs_token=self.token is not None, tls=tls),
            host, port, reuse_address=True,
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
        # With --allow-uid other users must be able to connect(): the socket is opened to everyone
        # and each peer's uid is checked with SO_PEERCRED as it connects (Connection.connection_made).
        others = self.allowed_uids - {os.geteuid(), 0}
        os.chmod(path, 0o666 if others else 0o600)
        self.servers.append(server)
        self.unix_paths.append(path)
        self.addresses.append(f"unix:{path}")

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            c.close()
        self.processes.kill_all()
        self.processes.close()
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
            if self.processes.spawned:
                # A short command may be over already: on a busy machine the daemon often gets its
                # CPU back only after the child it spawned has run (posix_spawn returns at the
                # child's exec; measured: the daemon resumed ~1 ms later, at the child's exit,
                # with a 2-core VM loaded by other jobs).  Its end then leaves with its start, in
                # one write, and neither the daemon nor the client is woken once more for it.
                self.processes.reap_ready()
            self.flush()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for c in dirty:
            c._flush()

    # ------------------------------------------------------------------ routing
    def _deliver(self, owner, identity: Identity | None, body, extension: bool) -> None:
        if not self.subscribers:  # the usual case: the owner only
            if owner is not None and not owner.closed and (owner.v2 or not extension):
                owner.write(body if type(body) is bytes else codec.encode(body), self.processes.holding)
            return
        frame = None
        targets = []
        if owner is not None and not owner.closed and (owner.v2 or not extension):
            targets.append(owner)
        output = isinstance(body, g.OutputChunkT)
        for c in self.subscribers:  # a few connections at most, usually none: not every connection
            if c is not owner and c.authenticated and c.may_control(identity):
                # A subscriber that reads too slowly misses output chunks rather than slowing the
                # command down (only the owner's backlog pauses a command).
                if output and c.write_paused:
                    continue
                targets.append(c)
        hold = self.processes.holding  # for the owner only: subscribers get the frame at once
        for c in targets:
            if frame is None:
                frame = body if type(body) is bytes else codec.encode(body)
            c.write(frame, hold and c is owner)

    def _emit_command(self, cmd: Command, body, extension: bool) -> None:
        self._deliver(cmd.owner, cmd.identity, body, extension)
        # Its end (ProcessTerminated, an object or a frame, is emitted once the command is finished;
        # ChildCreationError just before):
        if cmd.owner is not None and (cmd.finished or isinstance(body, g.ChildCreationErrorT)):
            cmd.owner.commands.pop(cmd.request_id, None)
            cmd.owner.running.discard(cmd)

    def _emit_watch(self, owner, body, extension: bool) -> None:
        self._deliver(owner, owner.identity if owner is not None else None, body, extension)

    def drop_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.subscribers.discard(conn)
        self.pending.pop(conn, None)
        self.watches.drop_owner(conn)
        for cmd in list(conn.running):
            cmd.owner = None
            self.processes.resume_output(cmd)  # nobody to wait for any more: drain to nowhere
            if cmd.stdin_fd >= 0:
                # Only this connection could feed it (StdinData names its own request ids): EOF
                # once what it sent is written, as ssh gives the command when its client goes.
                # Kept open, a command reading its stdin (cat) waited forever, holding a process,
                # its pidfd and three pipes after `ctrl run --detach-on-exit` or a lost client.
                self.processes.close_stdin(cmd)
            if cmd.spec.kill_on_disconnect and cmd.status is None:
                self.processes.kill(cmd, signal.SIGKILL)
        conn.running.clear()
        for waiters in self.processes.waiting_lists():
            waiters[:] = [w for w in waiters if w[0] is not conn]

    # ------------------------------------------------------------------ status
    def status(self, request_id: int, asker: Connection) -> g.StatusReplyT:
        """Processes and watches are listed for their owner and for the daemon's uid only (an argv
        may hold a secret)."""
        m = machine.snapshot()
        shown = [c for c in self.processes.by_pid.values() if asker.may_control(c.identity)]
        shown += [c for c in self.processes.leftovers.values() if asker.may_control(c.identity)]
        procs = [
            g.ProcessInfoT(
                pid=c.pid, requestId=c.request_id, clientId=c.owner.client_id if c.owner else 0,
                args=[codec.wire_str(a) for a in c.spec.argv], startedNs=c.started_ns, timeoutMs=c.spec.timeout_ms,
                host=c.host or None, simStartNs=c.sim_start_ns, owner=c.identity.name if c.identity else None,
                leftover=c.leftover,
            )
            for c in shown
        ]
        watches = [
            g.WatchInfoT(
                requestId=w.request_id, clientId=w.owner.client_id if w.owner else 0,
                path=getattr(w, "path", None), port=getattr(w, "port", 0),
                host=getattr(w, "host", "") or None, simulated=getattr(w, "simulated", False),
            )
            for w in self.watches.all() if asker.may_control(w.owner.identity if w.owner else None)
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
