"""The simulated socket model shared by both mediation modes.

A TCP connection is two `Stream`s. Bytes written into a stream are *sent*; they travel as SimGrid
transfers ("flows"): everything written at one simulated date is one flow, flows overlap like the
segments of a TCP stream, and arrive in order; the receiver's reads consume arrived bytes only. In address translation the bytes themselves travel in the kernel
and a stream only counts them; in full mediation the stream also holds the bytes (`data`).

Connection set-up costs a round trip (SYN, SYN-ACK: two small transfers); a FIN is a small transfer
after the data. Datagrams are one transfer each, in send order per socket.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Optional

from .. import sim
from ..wait import Waitable
from .addressing import Host
from .fdtable import SimulatedFile
from .pcap import TCP_ACK, TCP_FIN, TCP_SYN

HEADER_BYTES = 0   # simulated size of a control segment (SYN, SYN-ACK, FIN): latency only
# Flow control: bytes a writer may have written that the reader has not read yet. A window-limited
# stream moves W bytes per (latency + W/bandwidth) of the model, like TCP: 2 MiB keeps a 10 MB/s link
# busy even under LV08's 13x latency, and stays well below what loopback TCP absorbs without the
# reader reading (~3.9 MB measured), so in address translation the kernel never blocks a write.
WINDOW = 2 * 1024 * 1024
PROGRESS_MIN_FLOW = 256 * 1024  # flows at least this large are delivered progressively
PROGRESS_STEP = 0.005           # how often (simulated s) a reader waiting on such a flow looks again


class _Flow:
    """One SimGrid transfer carrying a batch of a stream (or its FIN)."""

    __slots__ = ("end", "size", "transfer", "start", "payload", "fin", "done")

    def __init__(self, end: int, size: int, transfer, start: float, payload: bytes, fin: bool = False):
        self.end, self.size, self.transfer, self.start = end, size, transfer, start
        self.payload, self.fin = payload, fin
        self.done = False


class Stream(Waitable):
    """One direction of a connection.

    What was written at one simulated date becomes one flow when the simulation is about to advance
    (`Network.flush`), without waiting for earlier flows: flows overlap, as segments of a TCP stream
    do. Flows are delivered in order as they complete (a flow that completes before an earlier one
    waits for it). The bytes of a large flow arrive progressively (what SimGrid has already
    transmitted of it), so a window-limited writer and a reader keep a link busy as TCP does instead
    of paying the latency per window.
    """

    def __init__(self, net: "Network", src: Host, dst: Host, keep_data: bool):
        self.net = net
        self.src, self.dst = src, dst
        self.sent = 0          # bytes written by the sender
        self.started = 0       # bytes handed to flows
        self.delivered = 0     # bytes of the flows completed, in order
        self.consumed = 0      # bytes read by the receiver
        self.flows: deque[_Flow] = deque()
        self.data: Optional[deque] = deque() if keep_data else None  # arrived-or-in-flight bytes
        self.closed = False    # the sender shut down its side (FIN queued)
        self.fin_started = False
        self.eof_arrived = False
        self.reset = False     # the receiver went away: writes fail with EPIPE
        self.held = False      # written bytes wait for the handshake to end (accepted at the SYN)
        self.readers: set = set()   # sockets to notify when something arrives
        self.writers: set = set()   # sockets to notify when window space opens
        # for --pcap-dir: the virtual endpoints, the reverse stream (for ACK numbers), the bytes
        self.src_addr = self.dst_addr = None
        self.reverse: Optional[Stream] = None
        self.captured: Optional[list] = [] if net.capture is not None else None

    @property
    def arrived(self) -> int:
        """Bytes that reached the receiver: completed flows, plus what the oldest flow in progress
        has already transmitted if it is large (a small one arrives whole, at its end)."""
        n = self.delivered
        if self.flows:
            f = self.flows[0]
            if f.size >= PROGRESS_MIN_FLOW and not f.done:
                n += max(0, int(f.size - f.transfer.remaining))
        return n

    def progress_date(self) -> Optional[float]:
        """When a reader waiting for data should look again (a large flow is arriving), if ever
        before the flow's end notifies it."""
        if self.flows and self.flows[0].size >= PROGRESS_MIN_FLOW:
            return sim.now() + PROGRESS_STEP
        return None

    # -- sender side -------------------------------------------------------------------------
    def room(self) -> int:
        return max(0, WINDOW - (self.sent - self.consumed))

    def write(self, nbytes: int, payload: bytes | None = None) -> None:
        self.sent += nbytes
        if self.data is not None and payload is not None:
            self.data.append(payload)
        if self.captured is not None and payload is not None:
            self.captured.append(payload)
        self._kick()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._kick()

    def _kick(self) -> None:
        # Flows start when the simulation is about to advance (Network.flush): everything written
        # at this date, by any number of write()s, is one flow.
        self.net.dirty[self] = None

    def flush(self) -> None:
        """Start a flow for whatever was written since the last one (and the FIN once closed)."""
        if self.held:
            return  # released (and flushed) when the SYN-ACK arrives: nothing goes before it
        if self.sent > self.started:
            end, size = self.sent, self.sent - self.started
            self.started = end
            payload = b""
            if self.captured is not None:
                payload = b"".join(self.captured)
                self.captured.clear()
            self._start(_Flow(end, size, None, sim.now(), payload))
            if size >= PROGRESS_MIN_FLOW:
                self._wake(self.readers)  # they now have a reason to look before its end
        if self.closed and not self.fin_started:
            self.fin_started = True
            self._start(_Flow(self.sent, HEADER_BYTES, None, sim.now(), b"", fin=True))

    def _start(self, flow: _Flow) -> None:
        self.flows.append(flow)
        flow.transfer = sim.transfer_async(self.src.name, self.dst.name, flow.size)
        self.net.watch(flow.transfer, lambda: self._completed(flow))

    def _completed(self, flow: _Flow) -> None:
        """A flow's transfer ended: deliver every flow that is now complete, in order."""
        flow.done = True
        delivered = False
        while self.flows and self.flows[0].done:
            f = self.flows.popleft()
            delivered = True
            if f.fin:
                self.eof_arrived = True
                if self.captured is not None:
                    self._capture(f.start, self.sent + 1, TCP_FIN | TCP_ACK)
            else:
                self.delivered = f.end
                if self.captured is not None:
                    self._capture(f.start, f.end - f.size + 1, TCP_ACK, f.payload)
        if delivered:
            self._wake(self.readers)

    def _capture(self, start: float, seq: int, flags: int, payload: bytes = b"") -> None:
        ack = self.reverse.delivered + 1 if self.reverse is not None else 0
        self.net.capture.tcp(self.src.name, self.dst.name, start, sim.now(), self.src_addr, self.dst_addr,
                             seq, ack, flags, payload)

    # -- receiver side -----------------------------------------------------------------------
    def available(self) -> int:
        return self.arrived - self.consumed

    def consume(self, nbytes: int) -> None:
        was_full = self.room() == 0
        self.consumed += nbytes
        if was_full:  # only then may a writer be waiting for room (or for POLLOUT)
            self._wake(self.writers)

    def take(self, nbytes: int, peek: bool = False) -> bytes:
        """Full mediation: remove (or peek at) up to nbytes of arrived data."""
        n = min(nbytes, self.available())
        out = bytearray()
        chunks = self.data
        i = 0
        while len(out) < n:
            chunk = chunks[i]
            need = n - len(out)
            out += chunk[:need]
            i += 1
        if not peek:
            left = n
            while left:
                chunk = chunks[0]
                if len(chunk) <= left:
                    chunks.popleft()
                    left -= len(chunk)
                else:
                    chunks[0] = chunk[left:]
                    left = 0
            self.consume(n)
        return bytes(out)

    def receiver_gone(self) -> None:
        self.reset = True
        self._wake(self.writers)

    @staticmethod
    def _wake(sockets) -> None:
        for s in sockets:
            s.notify()


class Connection:
    """A TCP connection between a client socket and the socket accept() gives the server."""

    def __init__(self, net: "Network", client: "VSocket", listener: "VSocket", keep_data: bool):
        self.client = client
        self.listener = listener
        self.server: Optional[VSocket] = None
        self.c2s = Stream(net, client.host, listener.host, keep_data)
        self.s2c = Stream(net, listener.host, client.host, keep_data)
        self.syn_arrived = False       # the server may accept it
        self.established = False       # the client's connect() may return


POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
POLLRDNORM, POLLWRNORM, POLLRDHUP = 0x40, 0x100, 0x2000


class VSocket(SimulatedFile, Waitable):
    """A simulated socket: what the emulator knows about one socket of a tracee."""

    def __init__(self, net: "Network", host: Host, family: int, kind: int, protocol: int = 0):
        self.net = net
        self.host = host
        self.family = family
        self.kind = kind  # SOCK_STREAM or SOCK_DGRAM
        self.protocol = protocol
        self.nonblocking = False
        self.local: Optional[tuple[str, int]] = None   # virtual (ipv4 text, port)
        self.peer: Optional[tuple[str, int]] = None
        self.peer_host: Optional[Host] = None  # a connected UDP socket's destination host
        self.real_local: Optional[tuple[str, int]] = None
        self.listening = False
        self.backlog: deque[Connection] = deque()       # connections not yet accepted, in kernel order
        self.conn: Optional[Connection] = None
        self.out: Optional[Stream] = None
        self.inq: Optional[Stream] = None
        self.connect_error = 0
        self.reset_answered = False  # full mediation: a write already went to a vanished peer
        self.connecting = False
        self.rcvtimeo: Optional[float] = None
        self.sndtimeo: Optional[float] = None
        self.refs = 0
        self.shut_rd = False
        self.shut_wr = False
        self.v6only = False   # IPV6_V6ONLY (ipv6(7)): an AF_INET6 socket that IPv4 peers never reach
        # datagrams
        self.dgrams: deque = deque()    # (arrived: bool, src (ip, port), payload or None, size)
        self.dgram_out: deque = deque()
        self.dgram_sending = False      # a datagram of this socket is on the wire

    @property
    def is_stream(self) -> bool:
        return self.kind == socket.SOCK_STREAM

    def wake(self) -> None:
        self.notify()

    # -- readiness (poll/select/epoll) ---------------------------------------------------------
    def readable(self) -> bool:
        if self.listening:
            return bool(self.backlog) and self.backlog[0].syn_arrived
        if self.is_stream:
            if self.connect_error:
                return True
            s = self.inq
            return s is not None and (s.available() > 0 or s.eof_arrived or self.shut_rd)
        return bool(self.dgrams) and self.dgrams[0][0]

    def writable(self) -> bool:
        if self.is_stream:
            if self.connect_error:
                return True
            if self.conn is None or not (self.conn.established or self is self.conn.server):
                return False
            return self.out is not None and (self.out.room() > 0 or self.out.reset)
        return True

    def revents(self, events: int) -> int:
        rev = 0
        if events & (POLLIN | POLLRDNORM) and self.readable():
            rev |= events & (POLLIN | POLLRDNORM)
        if events & (POLLOUT | POLLWRNORM) and self.writable():
            rev |= events & (POLLOUT | POLLWRNORM)
        if self.is_stream and self.inq is not None and self.inq.eof_arrived and events & POLLRDHUP:
            rev |= POLLRDHUP
        if self.connect_error:
            rev |= POLLERR
        if self.hung_up():
            rev |= POLLHUP
        return rev

    def look_again(self):
        return self.inq.progress_date() if self.inq is not None else None

    def edge_token(self) -> object:
        # A large flow arrives progressively without notifications: new bytes are an edge too.
        return (self.notified, self.inq.arrived if self.inq is not None else 0)

    def hung_up(self) -> bool:
        # Linux reports POLLHUP once both directions are shut: the peer's FIN arrived and ours is sent.
        if not self.is_stream or self.inq is None:
            return False
        return self.inq.eof_arrived and self.shut_wr


class Network:
    """Every socket of the simulation, and which address leads to which."""

    def __init__(self, addressing, keep_data: bool):
        self.addressing = addressing
        self.keep_data = keep_data
        # (host name, kind, port) -> {virtual ip or '0.0.0.0': socket}
        self.bound: dict[tuple[str, int, int], dict[str, VSocket]] = {}
        self.capture = None  # a pcap.Capture when --pcap-dir is given
        # streams written to since the last flush, in order (a dict: deterministic flush order)
        self.dirty: dict = {}
        self.on_listen = None  # (host name, port) -> None, for port watches (ctrld --mediate)
        # (transfer, callback) -> None: the scheduler calls callback() when the transfer completes
        self.watch = None

    def listening(self, s: "VSocket") -> None:
        if self.on_listen is not None and s.local is not None:
            self.on_listen(s.host.name, s.local[1])

    # -- binding -------------------------------------------------------------------------------
    def port_in_use(self, host: Host, kind: int, port: int) -> bool:
        return bool(self.bound.get((host.name, kind, port)))

    def bind(self, s: VSocket, ip: str, port: int) -> None:
        table = self.bound.setdefault((s.host.name, s.kind, port), {})
        table[ip] = s
        s.local = (ip, port)

    def unbind(self, s: VSocket) -> None:
        if s.local is None:
            return
        key = (s.host.name, s.kind, s.local[1])
        table = self.bound.get(key)
        if table is not None and table.get(s.local[0]) is s:
            del table[s.local[0]]
            if not table:
                del self.bound[key]

    def lookup(self, host: Host, kind: int, ip: str, port: int) -> Optional[VSocket]:
        """The socket bound on `host` that receives for (ip, port): exact address first, then ANY."""
        table = self.bound.get((host.name, kind, port))
        if not table:
            return None
        s = table.get(ip)
        if s is None and ip != "127.0.0.1":
            s = table.get("0.0.0.0")
        elif s is None:
            s = table.get("0.0.0.0")
        return s

    # -- connections ---------------------------------------------------------------------------
    def connect(self, client: VSocket, listener: VSocket, dst_ip: str) -> Connection:
        conn = Connection(self, client, listener, self.keep_data)
        conn.dst_ip = dst_ip
        conn.c2s.src_addr = conn.s2c.dst_addr = client.local
        conn.c2s.dst_addr = conn.s2c.src_addr = (dst_ip, listener.local[1])
        conn.c2s.reverse, conn.s2c.reverse = conn.s2c, conn.c2s
        client.conn = conn
        client.out, client.inq = conn.c2s, conn.s2c
        conn.s2c.readers.add(client)
        conn.c2s.writers.add(client)
        listener.backlog.append(conn)
        c, s = client.host.name, listener.host.name
        start = sim.now()
        self.watch(sim.transfer_async(c, s, HEADER_BYTES), lambda: self._syn_arrived(conn, start))
        return conn

    def _syn_arrived(self, conn: Connection, start: float) -> None:
        c, s = conn.client.host.name, conn.listener.host.name
        if self.capture is not None:
            self.capture.tcp(c, s, start, sim.now(), conn.c2s.src_addr, conn.c2s.dst_addr, 0, 0, TCP_SYN)
        conn.syn_arrived = True
        conn.listener.wake()
        start = sim.now()
        self.watch(sim.transfer_async(s, c, HEADER_BYTES), lambda: self._established(conn, start))

    def _established(self, conn: Connection, start: float) -> None:
        c, s = conn.client.host.name, conn.listener.host.name
        if self.capture is not None:
            self.capture.tcp(s, c, start, sim.now(), conn.s2c.src_addr, conn.s2c.dst_addr, 0, 1,
                             TCP_SYN | TCP_ACK)
        conn.established = True
        if conn.s2c.held:
            conn.s2c.held = False
            self.dirty[conn.s2c] = None
        conn.client.wake()
        if conn.server is not None:
            conn.server.wake()  # accepted at the SYN: its writes (and reads) waited for this

    def accept(self, listener: VSocket, server: VSocket) -> Connection:
        conn = listener.backlog.popleft()
        conn.server = server
        server.conn = conn
        server.out, server.inq = conn.s2c, conn.c2s
        server.peer = conn.client.local
        server.local = (conn.dst_ip, listener.local[1])
        # Linux's accept returns an established socket, writable at once; ours is accepted when the
        # SYN arrives, so what it writes before the SYN-ACK reaches the client waits for it.
        conn.s2c.held = not conn.established
        conn.c2s.readers.add(server)
        conn.s2c.writers.add(server)
        return conn

    def flush(self) -> None:
        """Start the flows of everything written so far. Called by an actor before it lets the
        simulation advance (waits on it, computes, sleeps): until then its writes share a date."""
        while self.dirty:
            stream = next(iter(self.dirty))
            del self.dirty[stream]
            stream.flush()

    # -- datagrams -----------------------------------------------------------------------------
    def send_datagram(self, src: VSocket, dst: Optional[VSocket], size: int, payload: bytes | None,
                      dst_host: Host, dst_addr: tuple) -> None:
        """Queue one datagram; it is carried after the socket's previous ones (one pump per socket)."""
        ip, port = src.local
        if ip == "0.0.0.0":  # sent from a wildcard socket: the address of the way out, as a kernel does
            ip = "127.0.0.1" if dst_addr[0] == "127.0.0.1" else src.host.ip
        entry = [False, (ip, port), payload, size]
        if dst is not None:
            dst.dgrams.append(entry)
        src.dgram_out.append((entry, dst, dst_host, dst_addr))
        if not src.dgram_sending:
            self._next_datagram(src)

    def _next_datagram(self, src: VSocket) -> None:
        """Put the socket's oldest queued datagram on the wire (one at a time, in send order)."""
        if not src.dgram_out:
            src.dgram_sending = False
            return
        src.dgram_sending = True
        entry, dst, dst_host, dst_addr = src.dgram_out.popleft()
        start = sim.now()

        def arrived() -> None:
            if self.capture is not None:
                self.capture.udp(src.host.name, dst_host.name, start, sim.now(), entry[1], dst_addr,
                                 entry[2] or b"")
            entry[0] = True
            if dst is not None:
                dst.wake()
            self._next_datagram(src)

        self.watch(sim.transfer_async(src.host.name, dst_host.name, entry[3]), arrived)
