"""The simulated socket model shared by both mediation modes.

A TCP connection is two `Stream`s. Bytes written into a stream are *sent*; they travel as SimGrid
transfers ("flows"): everything written at one simulated date is one flow, and flows overlap like
the segments of a TCP stream. The receiver's reads consume arrived bytes only. In address
translation the bytes themselves travel in the kernel and a stream only counts them; in full
mediation the stream also holds the bytes (`data`).

Timing (docs/emulator.md, "The network"):

* connection set-up is a round trip (SYN, SYN-ACK); a refused connection too (SYN, RST: connect(2)
  fails with ECONNREFUSED once the reset is back, as tcp(7) describes);
* a stream's bytes are counted, not tracked flow by flow: what a stream has received is what SimGrid
  has transmitted of all its flows (completed ones, and the transmitted part of large ones in
  progress), so a large transfer becomes readable progressively, at the pace the model gives it;
* the FIN travels with the last data: EOF is readable when the last byte is. Only a close with
  nothing in flight sends a FIN of its own (a control segment);
* with TCP slow start (`SlowStart`, --tcp-slow-start; on under CM02 by default) a stream's data
  leaves in rounds one round trip apart, from Linux's initial window, until the window covers the
  path (RFC 5681);
* a connect to a silent host (`<prop id="silent" value="1"/>`) gets no answer: SYNs are
  retransmitted on Linux's schedule and connect(2) fails with ETIMEDOUT (`SynSchedule`);
* control segments (SYN, SYN-ACK, FIN, RST) are 0-byte SimGrid transfers (latency only) under the
  flow-level models; under ns-3, where a 0-byte transfer never completes and any transfer is a whole
  TCP connection of its own, they are timers of the route's latency;
* the datagrams a socket sends to one host at one date are one transfer; the receiver reads
  them in send order.
"""

from __future__ import annotations

import errno
import socket
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from .. import sim
from ..wait import Waitable
from .addressing import Host
from .fdtable import SimulatedFile
from .pcap import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

# Flow control: bytes a writer may have written that the reader has not read yet. A window-limited
# stream moves W bytes per (latency + W/bandwidth) of the model, like TCP: 2 MiB keeps a 10 MB/s link
# busy even under LV08's 13x latency, and stays well below what loopback TCP absorbs without the
# reader reading (~3.9 MB measured), so in address translation the kernel never blocks a write.
WINDOW = 2 * 1024 * 1024
# A writer is let in again only once a third of the window is free: Linux reports a TCP socket
# writable when its free send space is at least half of what is queued (sk_stream_is_writeable),
# and so avoids the silly window syndrome (RFC 1122, 4.2.3.4). Letting every freed byte in would
# make a bulk writer and its reader trade a trickle of tiny flows.
MIN_ROOM = WINDOW // 3
# A stream with at least this much in flight is readable progressively (bulk traffic); below, each
# flow arrives whole at its end (a request or a reply is read in one piece, at the date SimGrid gives
# its transfer, as a ping-pong expects).
PROGRESS_MIN_BYTES = 256 * 1024
# How often (simulated s) a stream delivered progressively counts what has arrived: the granularity
# of progressive delivery (at 10 MB/s, 50 kB at a time). Counting at every look instead would let a
# reader that never blocks (a CPU cost per syscall moves the clock 1 us at a time) read a few bytes
# per syscall, millions of times.
PROGRESS_STEP = 0.005
# TCP slow start (`SlowStart`): Linux's initial congestion window, in segments (TCP_INIT_CWND in
# include/net/tcp.h; RFC 6928), of TCP_MSS bytes each.
TCP_INIT_CWND = 10
# Linux's floor on the retransmission timeout (TCP_RTO_MIN, 200 ms): its RTO is srtt + max(4 rttvar,
# TCP_RTO_MIN) (net/ipv4/tcp_input.c, tcp_set_rto), so a steady path's RTO is its RTT + 200 ms.
TCP_RTO_MIN = 0.200


#: --tcp-slow-start: auto (the default) models slow start under CM02 only. CM02 carries a transfer
#: at the links' rate from its first byte; real TCP spends its first round trips growing its window
#: (docs/compare.md measures it: a 1 MB transfer was 25-34 % short of the real run without it). LV08
#: and SMPI fold slow start into their latency and bandwidth factors (13.01 x the latency) and ns-3
#: simulates TCP itself: adding it there would count it twice.
SLOW_START_SETTINGS = ("auto", "on", "off")


def slow_start_applies(setting: str, network_model: str) -> bool:
    """Does a run with this --tcp-slow-start setting and network model model slow start?"""
    if setting not in SLOW_START_SETTINGS:
        raise ValueError(f"unknown --tcp-slow-start {setting!r} (auto, on, off)")
    if network_model == "ns-3":
        if setting == "on":
            raise ValueError("--tcp-slow-start on: ns-3 simulates TCP (and its slow start) itself")
        return False
    return setting == "on" or (setting == "auto" and network_model == "CM02")


@dataclass
class SlowStart:
    """The congestion window of one direction of a connection while TCP's slow start limits it.

    The flow-level models (CM02) carry a transfer at the rate the links allow from its first byte,
    after one latency; real TCP starts with a window of TCP_INIT_CWND segments and grows it by what
    each round trip acknowledges (RFC 5681, 3.1, with RFC 3465's byte counting: Linux's
    tcp_slow_start adds the segments acked), i.e. it doubles per round trip while the sender has
    more to send than the window. Here a stream's data leaves in rounds one RTT apart: round k may
    start at most `cwnd` bytes (each start a SimGrid flow, as before), and the next round begins
    when its ACKs are back. Once the window covers the route's bandwidth-delay product the round
    trip no longer limits the sender: the model's own rate does (CM02's max-min sharing and its
    TCP_gamma / RTT bound, which stands for the receiver's maximal window; the slow-start window is
    a transient below it, so nothing is counted twice), and the stream's data flows unlimited.

    Whether a round was window-limited decides whether the window grows: Linux grows it only when
    the sender used more than half of it (tcp_is_cwnd_limited, net/ipv4/tcp_output.c), so a
    request/response exchange of small messages keeps the initial window.

    After an idle period longer than the RTO with nothing in flight, the window restarts (RFC 5681
    4.1; Linux's tcp_slow_start_after_idle: tcp_cwnd_restart halves it for every RTO of idleness,
    down to the initial window), and the stream is in slow start again.

    `rtt` is the route's latency both ways plus one segment's serialisation at the bottleneck (the
    ACK clock: the first ACK of a round comes back then); `bdp` the bytes the bottleneck carries
    in one RTT."""

    rtt: float
    bdp: float
    rto: float
    cwnd: int = TCP_INIT_CWND * 1448   # bytes (TCP_MSS each segment)
    round_end: float = -1.0     # when the current round's ACKs are back: the next round may begin
    budget: int = 0             # bytes the current round may still start
    round_sent: int = 0         # bytes started in the current round
    last_sent: float = -1.0     # date data last left (Linux's lsndtime)
    open: bool = False          # the window covers the path: the model's rate is the limit

    def allow(self, now: float, pending: int, in_flight: bool) -> int:
        """How many of `pending` bytes may leave now."""
        if not in_flight and self.last_sent >= 0 and now - self.last_sent > self.rto:
            self._restart(now - self.last_sent)
        if not self.open and now >= self.round_end:
            # A new round: the previous one's ACKs are back (RFC 5681: cwnd += bytes acked).
            if 2 * self.round_sent > self.cwnd:
                self.cwnd += self.round_sent
            if self.cwnd >= self.bdp:
                self.open = True
            else:
                self.round_end = now + self.rtt
                self.budget = self.cwnd
                self.round_sent = 0
        n = pending if self.open else min(pending, self.budget)
        if n:
            self.budget -= n
            self.round_sent += n
            self.last_sent = now
        return n

    def _restart(self, idle: float) -> None:
        """tcp_cwnd_restart (net/ipv4/tcp_output.c): halve the window per RTO of idleness, not
        below the restart window (the initial one, or the window itself if smaller)."""
        restart = min(TCP_INIT_CWND * 1448, self.cwnd)
        cwnd = self.cwnd
        idle -= self.rto
        while idle > 0 and cwnd > restart:
            cwnd >>= 1
            idle -= self.rto
        self.cwnd = max(cwnd, restart)
        self.open = False
        self.round_end = -1.0
        self.round_sent = 0


class _Flow:
    """One SimGrid transfer carrying what a stream's sender wrote at one date."""

    __slots__ = ("size", "transfer", "start", "done", "progressive", "counted")

    def __init__(self, size: int, start: float):
        self.size = size
        self.start = start
        self.transfer: Optional[sim.Transfer] = None
        self.done = False
        # Counted as it goes (sticky: once counted, its bytes must not disappear from `arrived`).
        self.progressive = False
        self.counted = 0   # bytes of it counted as arrived at the stream's last count

    def transmitted(self) -> int:
        """Bytes of a flow in progress that SimGrid has carried so far (the model spends the latency
        first, then the bytes flow: this is what has reached the receiver)."""
        return max(0, min(self.size, int(self.size - self.transfer.remaining)))


class Stream(Waitable):
    """One direction of a connection.

    What was written at one simulated date becomes one flow when the simulation is about to advance
    (`Network.flush`), without waiting for earlier flows: flows overlap, as segments of a TCP stream
    do. The stream's bytes are fungible: it has received the sum of what its flows have transmitted
    (`arrived`), whatever flow carried them; the bytes themselves stay in write order (`data`).
    """

    def __init__(self, net: "Network", src: Host, dst: Host, keep_data: bool):
        self.net = net
        self.src, self.dst = src, dst
        self.sent = 0          # bytes written by the sender
        self.started = 0       # bytes handed to flows
        self.delivered = 0     # bytes of the completed flows
        self.consumed = 0      # bytes read by the receiver
        self.flows: list[_Flow] = []   # flows in progress, in start order
        self.next_count = 0.0  # when `arrived` may count the flows in progress again
        self.data: Optional[deque] = deque() if keep_data else None  # arrived-or-in-flight bytes
        self.closed = False    # the sender shut down its side
        self.close_date = 0.0
        self.fin_sent = False  # the FIN left (with the last flow, or alone)
        self.eof_arrived = False
        self.reset = False     # the receiver went away: writes fail with EPIPE
        # The sender's socket was closed with bytes unread, or with SO_LINGER {1, 0}: a reset goes
        # instead of the FIN (tcp_close, tcp_send_active_reset), and its arrival is a reset.
        self.aborted = False
        self.reset_arrived = False
        self.held = False      # written bytes wait for the handshake to end (accepted at the SYN)
        # TCP slow start (`SlowStart`), when the network models it; created at the first flush
        self.cc: Optional[SlowStart] = None
        self.cc_wakeup = -1.0  # the date a timer will flush the bytes the window held back
        self.readers: set = set()   # sockets to notify when something arrives
        self.writers: set = set()   # sockets to notify when window space opens
        # for --pcap-dir: the virtual endpoints, the reverse stream (for ACK numbers), and the bytes
        # not yet written to the capture, in order: [(date the sender wrote them, bytes)]
        self.src_addr = self.dst_addr = None
        self.reverse: Optional[Stream] = None
        self.pending_capture: Optional[deque] = None
        self.captured = 0      # stream bytes written to the pcap files (both ends)
        if net.capture is not None:
            self.pending_capture = deque()
            net.streams.append(self)

    @property
    def bulk(self) -> bool:
        """Enough in flight to be delivered progressively (PROGRESS_MIN_BYTES)."""
        return self.started - self.delivered >= PROGRESS_MIN_BYTES

    @property
    def arrived(self) -> int:
        """Bytes that reached the receiver: the completed flows, plus what SimGrid had transmitted of
        those in progress at the last count, once the stream is bulk (PROGRESS_MIN_BYTES). Counts
        are taken at most every PROGRESS_STEP, at the first look after the previous one."""
        n = self.delivered
        if self.flows:
            now = sim.now()
            if now >= self.next_count:
                self.next_count = now + PROGRESS_STEP
                bulk = self.bulk
                for f in self.flows:
                    if bulk:
                        f.progressive = True
                    if f.progressive:
                        f.counted = f.transmitted()
            for f in self.flows:
                n += f.counted
        return n

    def progress_date(self) -> Optional[float]:
        """When a reader waiting for data should look again (bytes are arriving progressively), if
        ever before a flow's end notifies it: the next count."""
        if self.flows and (self.bulk or any(f.progressive for f in self.flows)):
            now = sim.now()
            return self.next_count if self.next_count > now else now + PROGRESS_STEP
        return None

    # -- sender side -------------------------------------------------------------------------
    def room(self) -> int:
        """What a writer may write now (see WINDOW and MIN_ROOM)."""
        free = WINDOW - (self.sent - self.consumed)
        return free if free >= MIN_ROOM else 0

    @property
    def loopback(self) -> bool:
        """Both ends on one host: the kernel's loopback delivers within the sending call (tcp(7)
        over lo: what send() returned is readable at once, FIONREAD counts it, MSG_DONTWAIT gets
        it), so the bytes and the FIN take no simulated time and no SimGrid transfer."""
        return self.src is self.dst

    def write(self, nbytes: int, payload: bytes | None = None) -> None:
        self.sent += nbytes
        if self.data is not None and payload is not None:
            self.data.append(payload)
        if self.pending_capture is not None and payload is not None:
            self.pending_capture.append([sim.now(), payload])
        if self.loopback and not self.held:
            self._deliver_now()
        else:
            self._kick()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_date = sim.now()
            if self.loopback and not self.held:
                self._deliver_now()
            else:
                self._kick()

    def abort(self) -> None:
        """A reset instead of the FIN: it rides after the bytes in flight, as the FIN would. If the
        FIN had already left (shutdown(SHUT_WR) before the close), the reset follows it alone and
        finds the peer in CLOSE_WAIT: EPIPE there, not ECONNRESET (tcp_reset)."""
        if self.aborted:
            return
        self.aborted = True
        if not self.closed:
            self.close()
        elif self.eof_arrived:
            start = sim.now()
            self.net.control(self.src.name, self.dst.name, lambda: self._rst_arrived(start, errno.EPIPE))

    def _deliver_now(self) -> None:
        """Loopback: what was written (and the FIN) has arrived (see `loopback`)."""
        if self.sent > self.started and not self.flows:
            self.delivered += self.sent - self.started
            self.started = self.sent
            if self.pending_capture is not None:
                self.record()
            self._wake(self.readers)
        elif self.sent > self.started:
            self._kick()   # flows from before are still in progress: keep the bytes in order
            return
        if self.closed and not self.fin_sent:
            self.fin_sent = True
            self._fin_arrived(sim.now())

    def _kick(self) -> None:
        # Flows start when the simulation is about to advance (Network.flush): everything written
        # at this date, by any number of write()s, is one flow.
        self.net.dirty[self] = None

    def flush(self) -> None:
        """Start a flow for whatever was written since the last one; then the FIN once closed: it
        rides with the flows still in progress (EOF when the last byte arrives), or goes alone."""
        if self.held:
            return  # released (and flushed) when the SYN-ACK arrives: nothing goes before it
        if self.loopback and not self.flows:
            self._deliver_now()
            return
        if self.sent > self.started:
            size = self.sent - self.started
            if self.net.slow_start and not self.loopback:
                size = self._window(size)
        else:
            size = 0
        if size:
            flow = _Flow(size, sim.now())
            self.started += size
            self.flows.append(flow)
            flow.transfer = sim.transfer_async(self.src.name, self.dst.name, flow.size)
            self.net.watch(flow.transfer, lambda: self._completed(flow))
            if self.bulk:
                self._wake(self.readers)  # they now have a reason to look before the flows end
        if self.closed and not self.fin_sent and self.started == self.sent:
            self.fin_sent = True
            if not self.flows:
                start = sim.now()
                self.net.control(self.src.name, self.dst.name, lambda: self._fin_arrived(start))

    def congestion_window(self) -> Optional[int]:
        """The slow-start window while it limits the stream (TCP_INFO's snd_cwnd); None if nothing
        but the model does (slow start off, loopback, or over)."""
        if not self.net.slow_start or self.loopback:
            return None
        if self.cc is None:
            return TCP_INIT_CWND * TCP_MSS   # nothing sent yet: Linux's initial window
        return None if self.cc.open else self.cc.cwnd

    def _window(self, pending: int) -> int:
        """Slow start: how much of `pending` may leave now; the rest waits for the next round (a
        timer flushes the stream then)."""
        cc = self.cc
        if cc is None:
            cc = self.cc = self.net.slow_start_for(self.src.name, self.dst.name)
        n = cc.allow(sim.now(), pending, in_flight=bool(self.flows))
        if n < pending and self.cc_wakeup != cc.round_end:
            self.cc_wakeup = cc.round_end
            self.net.timer(cc.round_end, self._kick)
        return n

    def _completed(self, flow: _Flow) -> None:
        flow.done = True
        self.flows.remove(flow)
        self.delivered += flow.size
        if self.pending_capture is not None:
            self.record()
        if self.fin_sent and not self.flows:  # the FIN rode with the last of them
            self._fin_arrived(self.close_date)
        else:
            self._wake(self.readers)

    def _fin_arrived(self, start: float) -> None:
        if self.aborted:
            self._rst_arrived(start, errno.ECONNRESET)
            return
        self.eof_arrived = True
        if self.pending_capture is not None:
            self._capture(start, sim.now(), self.sent + 1, TCP_FIN | TCP_ACK)
        self._wake(self.readers)

    def _rst_arrived(self, start: float, err: int) -> None:
        """The sender's reset reached the receiving socket (tcp_reset): its error is pending, both
        directions are shut; what had arrived before it stays readable."""
        if self.reset_arrived:
            return
        self.reset_arrived = self.eof_arrived = True
        if self.pending_capture is not None:
            self._capture(start, sim.now(), self.sent + 1, TCP_RST | TCP_ACK)
        for reader in self.readers:
            reader.peer_reset(err)
        self._wake(self.readers)

    # -- capture -------------------------------------------------------------------------------
    def record(self) -> None:
        """--pcap-dir: write the bytes that arrived since the last look, one segment per write date:
        leaving the sender when they were written, reaching the receiver now (dates consistent with
        delivery: a large flow appears as the segments its reader saw arrive)."""
        pending = self.pending_capture
        if pending is None:
            return
        upto = self.arrived
        now = sim.now()
        while self.captured < upto and pending:
            date, chunk = pending[0]
            n = min(len(chunk), upto - self.captured)
            if n == len(chunk):
                pending.popleft()
            else:
                pending[0][1] = chunk[n:]
            seq = self.captured + 1
            self.captured += n
            self._capture(date, now, seq, TCP_ACK, chunk[:n])

    def drop_capture(self) -> None:
        """The run ends: bytes written but never arrived still left the sender (its file only)."""
        pending = self.pending_capture
        while pending:
            date, chunk = pending.popleft()
            seq = self.captured + 1
            self.captured += len(chunk)
            self._capture(date, None, seq, TCP_ACK, chunk)

    def _capture(self, start: float, end: Optional[float], seq: int, flags: int, payload: bytes = b"") -> None:
        ack = self.reverse.captured + 1 if self.reverse is not None else 0
        self.net.capture.tcp(self.src.name, self.dst.name, start, end, self.src_addr, self.dst_addr,
                             seq, ack, flags, payload)

    # -- receiver side -----------------------------------------------------------------------
    def available(self) -> int:
        if self.pending_capture is not None:
            self.record()
        return self.arrived - self.consumed

    def consume(self, nbytes: int) -> None:
        was_full = self.room() == 0
        self.consumed += nbytes
        if was_full:  # only then may a writer be waiting for room (or for POLLOUT)
            self._wake(self.writers)

    def take(self, nbytes: int, peek: bool = False) -> bytes:
        """Full mediation: remove (or peek at) up to nbytes of arrived data."""
        n = min(nbytes, self.available())
        if n <= 0:
            return b""
        chunks = self.data
        first = chunks[0]
        if len(first) >= n:  # the usual case: what one write sent, read by one read
            if not peek:
                if len(first) == n:
                    chunks.popleft()
                else:
                    chunks[0] = first[n:]
                self.consume(n)
            return bytes(first[:n]) if len(first) > n else bytes(first)
        out = bytearray()
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


# -- SYN retransmissions (a connect to a host that never answers) ------------------------------------
TCP_TIMEOUT_INIT = 1.0    # s: the first SYN's RTO (include/net/tcp.h; RFC 6298 2.1)
TCP_RTO_MAX = 120.0       # s: the largest RTO (include/net/tcp.h)
MAX_TCP_SYNCNT = 127      # TCP_SYNCNT's upper limit (tcp(7))


@dataclass(frozen=True)
class SynSchedule:
    """When a connect to a host that never answers sends its SYNs and gives up, as Linux 6.x does
    (net/ipv4/tcp_timer.c: tcp_retransmit_timer, tcp_write_timeout, retransmits_timed_out,
    tcp_model_timeout; checked against this kernel with a black-holed peer).

    The first SYN's retransmission timer is TCP_TIMEOUT_INIT (1 s). The first
    `net.ipv4.tcp_syn_linear_timeouts` retransmissions keep that RTO (Linux >= 6.5; 4 by default,
    0 on kernels without the sysctl), the next ones double it (RFC 6298 5.5), up to TCP_RTO_MAX.
    Each time the timer fires, the attempt fails with ETIMEDOUT if the time since the first SYN
    has reached the limit, else one more SYN leaves. The limit is TCP_USER_TIMEOUT when set (and the
    timer is then clamped to it, tcp_clamp_rto_to_user_timeout), else the time the classic backoff
    of `retries` (TCP_SYNCNT, else net.ipv4.tcp_syn_retries, 6) would take: (2^(retries+1) - 1) x
    1 s up to 6 retries, then 120 s more per retry (tcp_model_timeout). Defaults on Linux 6.18: SYNs
    at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35 and 67 s, ETIMEDOUT at 131 s (measured: 134.5 s, the kernel's
    timers firing late); without linear timeouts, SYNs at 0, 1, 3, 7, 15, 31, 63 s and ETIMEDOUT at
    127 s."""

    retransmits: tuple[float, ...]   # dates of the retransmitted SYNs, from the first SYN
    give_up: float                   # date of ETIMEDOUT, from the first SYN

    @classmethod
    def linux(cls, syncnt: int = 0, user_timeout_ms: int = 0, retries: Optional[int] = None,
              linear: Optional[int] = None) -> "SynSchedule":
        if retries is None:
            retries = _sysctl("ipv4/tcp_syn_retries", 0, 6)
        if linear is None:
            linear = _sysctl("ipv4/tcp_syn_linear_timeouts", 0, 0)
        n = syncnt or retries
        thresh = 6   # ilog2(TCP_RTO_MAX / TCP_TIMEOUT_INIT)
        if n <= thresh:
            limit = ((2 << n) - 1) * TCP_TIMEOUT_INIT
        else:
            limit = ((2 << thresh) - 1) * TCP_TIMEOUT_INIT + (n - thresh) * TCP_RTO_MAX
        if user_timeout_ms > 0:
            limit = user_timeout_ms / 1000
        sent: list[float] = []
        t = TCP_TIMEOUT_INIT   # the first timer is armed by tcp_connect, unclamped
        while t < limit:
            sent.append(t)
            k = len(sent)
            rto = TCP_TIMEOUT_INIT if k <= linear else min(TCP_TIMEOUT_INIT * 2 ** (k - linear), TCP_RTO_MAX)
            t += rto
            if user_timeout_ms > 0:
                t = min(t, limit)
        return cls(tuple(sent), t)


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
        # The listener has TCP_DEFER_ACCEPT: the connection waits for its first data (or the FIN),
        # or for the end of the SYN-ACK retransmissions the option asks for (`defer_expired`).
        self.deferred = False
        self.defer_expired = False

    @property
    def acceptable(self) -> bool:
        """accept() may take it: the SYN arrived (see Network.accept), and with TCP_DEFER_ACCEPT
        data or the FIN too, or the wait is over (tcp_check_req drops the bare ACK until then)."""
        if not self.syn_arrived:
            return False
        if not self.deferred or self.defer_expired:
            return True
        return self.c2s.eof_arrived or self.c2s.arrived > 0


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
        self.connect_error = 0       # SO_ERROR: pending error (a failed attempt, a reset)
        self.reset_by_peer = False   # the peer's reset arrived (Stream.abort): TCP_CLOSE
        self.reset_answered = False  # full mediation: a write already went to a vanished peer
        self.connecting = False      # a SYN to a closed port is out; its reset is on the way back
        # The attempt ended in a reset: like Linux's socket in TCP_CLOSE after tcp_reset(), readable,
        # writable and hung up until connect() is called again (which reports the error once and
        # leaves the socket unconnected, ready for a new attempt: connect(2), tcp(7)).
        self.refused = False
        self.attempt: Optional[object] = None   # the SYN retransmissions in progress (Network.unanswered)
        self.rcvtimeo: Optional[float] = None
        self.sndtimeo: Optional[float] = None
        self.refs = 0
        self.shut_rd = False
        self.shut_wr = False
        self.v6only = False   # IPV6_V6ONLY (ipv6(7)): an AF_INET6 socket that IPv4 peers never reach
        # socket(7): SO_REUSEADDR lets sockets share a port while none of them listens; SO_REUSEPORT
        # lets sockets that all set it share it, listening too.
        self.reuseaddr = False
        self.reuseport = False
        self.auto_port = False     # bind(2) with port 0 or an implicit bind: the port was ours to pick
        self.auto_addr = False     # an implicit bind: the address too
        self.kept_addr = "0.0.0.0"  # getsockname's address once a disconnect released the port
        # address translation: the kernel's (address, port) of this client's real connection, the
        # peer the server's real accept names (which queued connection the kernel handed over)
        self.real_source: Optional[tuple[str, int]] = None
        # connect(2) on a non-blocking socket returned EINPROGRESS: the next connect() once the
        # handshake is done returns 0 (Linux's __inet_stream_connect moves SS_CONNECTING to
        # SS_CONNECTED), the ones after it EISCONN.
        self.connect_pending = False
        # Options the simulation has no use for but must read back as set: {(level, name): bytes}.
        self.options: dict[tuple[int, int], bytes] = {}
        # datagrams
        self.dgrams: deque = deque()    # entries of Network.send_datagram
        self.dgram_error = 0            # udp(7): an ICMP error for a connected socket, reported once
        self.last_dgram: Optional[list] = None   # the datagram the last recv read (its IP_PKTINFO)
        # datagrams sent at this date, not on the wire yet: {destination host name: [(entry, dst,
        # dst_host, dst_addr)]}; each list becomes one transfer at the next flush
        self.dgram_batches: dict[str, list] = {}

    @property
    def is_stream(self) -> bool:
        return self.kind == socket.SOCK_STREAM

    def wake(self) -> None:
        self.notify()

    # -- readiness (poll/select/epoll) ---------------------------------------------------------
    @property
    def syn_sent(self) -> bool:
        """A connection attempt is on its way (TCP_SYN_SENT): neither readable nor writable."""
        if self.connecting:
            return True
        return self.conn is not None and not self.conn.established and self is not self.conn.server

    @property
    def rcv_shutdown(self) -> bool:
        """Nothing more will arrive (Linux's RCV_SHUTDOWN): shut down here, the peer's FIN, a reset."""
        return self.shut_rd or self.refused or (self.inq is not None and self.inq.eof_arrived)

    def readable(self) -> bool:
        if self.listening:
            # accept() takes the head, in the kernel's order (address translation's kernel queue,
            # which never defers, is in this order): once a connection behind a deferred head is
            # acceptable, the head goes first, early (Linux would take the ready one)
            if not self.backlog or not self.backlog[0].syn_arrived:
                return False
            return any(c.acceptable for c in self.backlog)
        if self.is_stream:
            if self.syn_sent:
                return False
            s = self.inq
            return (s is not None and s.available() > 0) or self.rcv_shutdown
        return bool(self.dgrams) and self.dgrams[0][0]

    def writable(self) -> bool:
        if self.is_stream:
            if self.listening or self.syn_sent:
                return False
            if self.conn is None or self.shut_wr or self.refused:
                return True   # tcp_poll: a closed or write-shut socket "may write" (and fails at once)
            return self.out is not None and (self.out.room() > 0 or self.out.reset)
        return True

    def revents(self, events: int) -> int:
        """What poll(2) reports, as tcp_poll() and udp_poll() compute it."""
        rev = 0
        if events & (POLLIN | POLLRDNORM) and self.readable():
            rev |= events & (POLLIN | POLLRDNORM)
        if events & (POLLOUT | POLLWRNORM) and self.writable():
            rev |= events & (POLLOUT | POLLWRNORM)
        if self.is_stream and not self.listening and events & POLLRDHUP and self.rcv_shutdown:
            rev |= POLLRDHUP
        if self.connect_error or self.dgram_error:
            rev |= POLLERR
        if self.hung_up():
            rev |= POLLHUP
        return rev

    def look_again(self):
        return self.inq.progress_date() if self.inq is not None else None

    def edge_token(self) -> object:
        # A large flow arrives progressively without notifications: new bytes are an edge too.
        return (self.notified, self.inq.arrived if self.inq is not None else 0)

    def peer_reset(self, err: int) -> None:
        """The peer's reset arrived: `err` pending (SO_ERROR, or the next read once the bytes that
        came before it are read, or the next write), nothing more to read, writes fail."""
        self.reset_by_peer = True
        self.connect_error = err
        if self.out is not None:
            self.out.receiver_gone()

    def hung_up(self) -> bool:
        # tcp_poll: POLLHUP once both directions are shut (the peer's FIN arrived and ours is sent,
        # or a reset closed both), and on a socket in TCP_CLOSE: never connected, or refused.
        if not self.is_stream or self.listening:
            return False
        if self.refused or self.reset_by_peer or (self.conn is None and not self.connecting):
            return True
        return self.rcv_shutdown and self.shut_wr


class Network:
    """Every socket of the simulation, and which address leads to which."""

    def __init__(self, addressing, keep_data: bool):
        self.addressing = addressing
        self.keep_data = keep_data
        # (host name, kind, port) -> {virtual ip or '0.0.0.0': [sockets, in bind order]} (several
        # with SO_REUSEADDR / SO_REUSEPORT)
        self.bound: dict[tuple[str, int, int], dict[str, list[VSocket]]] = {}
        self.capture = None  # a pcap.Capture when --pcap-dir is given
        self.streams: list[Stream] = []  # with a capture: every stream, to complete it at the end
        # streams written to since the last flush, in order (a dict: deterministic flush order)
        self.dirty: dict = {}
        self.dgram_dirty: dict = {}  # sockets with datagrams to put on the wire, in send order
        self.on_listen = None  # (host name, port) -> None, for port watches (ctrld --mediate)
        # (transfer, callback) -> None: the scheduler calls callback() when the transfer completes
        self.watch: Optional[Callable] = None
        # (date, callback) -> None: the scheduler calls callback() at that simulated date
        self.timer: Optional[Callable] = None
        # ns-3: control segments are timers of the route's latency (see the module's docstring)
        self.control_by_timer = False
        # TCP slow start on every stream between two hosts (`SlowStart`; --tcp-slow-start)
        self.slow_start = False
        self._paths: dict[tuple[str, str], tuple[float, float]] = {}
        # Simulated files in flight in SCM_RIGHTS messages on unix sockets, by the kernel's name of
        # the open file ("socket:[123]", the same in sender and receiver): each holds a reference,
        # as the kernel's message does, until a receiver's recvmsg installs it.
        self.passed: dict[str, list] = {}

    def slow_start_for(self, src: str, dst: str) -> SlowStart:
        """A fresh congestion window for a stream from host src to host dst, with the round trip
        and bandwidth-delay product of SimGrid's routes (both directions)."""
        key = (src, dst)
        if key not in self._paths:
            simulation = sim.current()
            there, back = simulation.route(src, dst), simulation.route(dst, src)
            bandwidth = min((link.bandwidth for link in there.links), default=0.0) if there else 0.0
            rtt = simulation.path_latency(src, dst) + simulation.path_latency(dst, src)
            if bandwidth > 0:
                rtt += TCP_MSS / bandwidth   # the first ACK of a round: one segment's serialisation
            # Without links (the Constant model, latency-only routes) nothing limits the rate but
            # the model: the window is open from the start.
            self._paths[key] = (rtt, bandwidth * rtt if bandwidth > 0 and back is not None else 0.0)
        rtt, bdp = self._paths[key]
        return SlowStart(rtt=rtt, bdp=bdp, rto=rtt + TCP_RTO_MIN)

    def control(self, src: str, dst: str, callback: Callable[[], None]) -> None:
        """A control segment (SYN, SYN-ACK, RST, a lone FIN) from host src to host dst: callback()
        when it arrives. Under the flow-level models, a 0-byte SimGrid transfer (the model's latency,
        e.g. 13.01 x the route's latency under LV08); under ns-3, the route's latency. Between two
        sockets of one host it arrives at once: Linux's loopback runs the handshake (or the reset)
        inside connect(2) itself, so a loopback connect is done when the call returns."""
        if src == dst:
            callback()
            return
        if self.control_by_timer:
            self.timer(sim.now() + sim.current().path_latency(src, dst), callback)
        else:
            self.watch(sim.transfer_async(src, dst, 0), callback)

    def listening(self, s: "VSocket") -> None:
        if self.on_listen is not None and s.local is not None:
            self.on_listen(s.host.name, s.local[1])

    # -- binding -------------------------------------------------------------------------------
    def port_in_use(self, host: Host, kind: int, port: int) -> bool:
        return bool(self.bound.get((host.name, kind, port)))

    def bind(self, s: VSocket, ip: str, port: int) -> None:
        table = self.bound.setdefault((s.host.name, s.kind, port), {})
        table.setdefault(ip, []).append(s)
        s.local = (ip, port)

    def unbind(self, s: VSocket) -> None:
        if s.local is None:
            return
        key = (s.host.name, s.kind, s.local[1])
        table = self.bound.get(key)
        if table is not None and s in table.get(s.local[0], ()):
            table[s.local[0]].remove(s)
            if not table[s.local[0]]:
                del table[s.local[0]]
            if not table:
                del self.bound[key]

    def lookup(self, host: Host, kind: int, ip: str, port: int,
               src: Optional[tuple[str, int]] = None) -> Optional[VSocket]:
        """The socket bound on `host` that receives for (ip, port): exact address first, then ANY;
        among sockets sharing an address, a listener (TCP) or, for UDP, one connected to `src` first,
        then an unconnected one (udp(7): a connected socket receives from its peer only)."""
        table = self.bound.get((host.name, kind, port))
        if not table:
            return None
        if ":" in ip:
            # An IPv6 destination ("::1" or the host's ip6): sockets bound to it or to "::" with
            # V6ONLY, then dual-stack ones bound to its IPv4 twin or to ANY (ipv6(7)).
            for addr in (ip, "::"):
                for s in table.get(addr, ()):
                    if s.listening or kind != socket.SOCK_STREAM:
                        return s
            twin = "127.0.0.1" if ip == "::1" else host.ip
            for addr in (twin, "0.0.0.0"):
                for s in table.get(addr, ()):
                    if s.family == socket.AF_INET6 and not s.v6only and (s.listening or kind != socket.SOCK_STREAM):
                        return s
            return None
        for addr in (ip, "0.0.0.0"):
            found = table.get(addr, ())
            if kind == socket.SOCK_STREAM:
                for s in found:
                    if s.listening:
                        return s
                if found:
                    return found[0]
            else:
                exact = [s for s in found if s.peer is not None and s.peer == src]
                if exact:
                    return exact[0]
                free = [s for s in found if s.peer is None]
                if free:
                    return self.reuseport_choice(free[0], src, (ip, port)) if src is not None else free[0]
        return None

    def reuseport_choice(self, chosen: "VSocket", src: tuple[str, int], dst: tuple[str, int]) -> "VSocket":
        """The member of `chosen`'s SO_REUSEPORT group (the listeners, or the unconnected UDP
        sockets, bound to its address and port with the option) that gets a connection or datagram
        from `src`: Linux picks by a hash of the 4-tuple (reuseport_select_sock: reciprocal_scale
        of inet_ehashfn, whose secret is random at boot); here a fixed one, CRC-32, so that runs
        repeat. `chosen` itself outside a group."""
        if not chosen.reuseport or chosen.local is None:
            return chosen
        table = self.bound.get((chosen.host.name, chosen.kind, chosen.local[1]), {})
        group = [s for s in table.get(chosen.local[0], ()) if s.reuseport
                 and (s.listening if s.kind == socket.SOCK_STREAM else s.peer is None)]
        if len(group) < 2:
            return chosen
        h = zlib.crc32(f"{src[0]} {src[1]} {dst[0]} {dst[1]}".encode())
        return group[(h * len(group)) >> 32]

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
        start = sim.now()
        self.control(client.host.name, listener.host.name, lambda: self._syn_arrived(conn, start))
        return conn

    def refuse(self, client: VSocket, dst_host: Host, dst_addr: tuple[str, int]) -> None:
        """A SYN to a port nobody listens on: the destination's kernel answers with a reset, and the
        attempt fails when that reset is back (a round trip, as on a network: connect(2) ECONNREFUSED)."""
        client.connecting = True
        c, s = client.host.name, dst_host.name
        src_addr = client.local or (client.host.ip, 0)
        start = sim.now()

        def syn_arrived() -> None:
            if self.capture is not None:
                self.capture.tcp(c, s, start, sim.now(), src_addr, dst_addr, 0, 0, TCP_SYN)
            back = sim.now()

            def reset_arrived() -> None:
                if self.capture is not None:
                    self.capture.tcp(s, c, back, sim.now(), dst_addr, src_addr, 0, 1, TCP_RST | TCP_ACK)
                client.connecting = False
                client.refused = True
                client.connect_error = errno.ECONNREFUSED
                client.wake()

            self.control(s, c, reset_arrived)

        self.control(c, s, syn_arrived)

    def unanswered(self, client: VSocket, dst_host: Host, dst_addr: tuple[str, int]) -> None:
        """A SYN to a silent host (`Host.silent`): nothing ever comes back. The SYN is retransmitted
        on Linux's schedule (`SynSchedule`) and the attempt fails with ETIMEDOUT, all in simulated
        time, leaving the socket as a reset does (TCP_CLOSE, the error pending: tcp_write_err)."""
        client.connecting = True
        c, s = client.host.name, dst_host.name
        src_addr = client.local or (client.host.ip, 0)
        start = sim.now()
        schedule = SynSchedule.linux(syncnt=_int_option(client, IPPROTO_TCP, TCP_SYNCNT),
                                     user_timeout_ms=_int_option(client, IPPROTO_TCP, TCP_USER_TIMEOUT))
        attempt = client.attempt = object()   # a later attempt (after a close and reuse) ends this one

        def syn(date: float) -> None:
            if self.capture is not None:   # it leaves, never arrives: the sender's file only
                self.capture.tcp(c, s, date, None, src_addr, dst_addr, 0, 0, TCP_SYN)

        def retransmit() -> None:
            if client.attempt is attempt and client.connecting:
                syn(sim.now())

        def timed_out() -> None:
            if client.attempt is not attempt or not client.connecting:
                return
            client.connecting = False
            client.refused = True
            client.connect_error = errno.ETIMEDOUT
            client.wake()

        syn(start)
        for offset in schedule.retransmits:
            self.timer(start + offset, retransmit)
        self.timer(start + schedule.give_up, timed_out)

    def _syn_arrived(self, conn: Connection, start: float) -> None:
        c, s = conn.client.host.name, conn.listener.host.name
        if self.capture is not None:
            self.capture.tcp(c, s, start, sim.now(), conn.c2s.src_addr, conn.c2s.dst_addr, 0, 0, TCP_SYN)
        conn.syn_arrived = True
        retrans = defer_accept_retransmits(_int_option(conn.listener, IPPROTO_TCP, TCP_DEFER_ACCEPT))
        if retrans:
            conn.deferred = True
            conn.c2s.readers.add(conn.listener)   # its data or FIN makes the connection acceptable

            def syn_ack_answered() -> None:
                conn.defer_expired = True
                if conn.server is None:
                    conn.listener.wake()

            # the last retransmitted SYN-ACK goes to the client, whose bare ACK is accepted now
            self.timer(sim.now() + defer_accept_seconds(retrans),
                       lambda: self.control(s, c, lambda: self.control(c, s, syn_ack_answered)))
        conn.listener.wake()
        start = sim.now()
        self.control(s, c, lambda: self._established(conn, start))

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

    def accept(self, listener: VSocket, server: VSocket, conn: Optional[Connection] = None) -> Connection:
        """`server` takes `conn` (the kernel's choice, address translation), by default the head."""
        if conn is None:
            conn = listener.backlog.popleft()
        else:
            listener.backlog.remove(conn)
        conn.c2s.readers.discard(listener)
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

    def end_capture(self) -> None:
        """The run ends: write what arrived last, and what left a sender but never arrived."""
        for stream in self.streams:
            stream.record()
            stream.drop_capture()

    def flush(self) -> None:
        """Start the flows of everything written so far. Called by an actor before it lets the
        simulation advance (waits on it, computes, sleeps): until then its writes share a date."""
        while self.dirty:
            stream = next(iter(self.dirty))
            del self.dirty[stream]
            stream.flush()
        while self.dgram_dirty:
            src = next(iter(self.dgram_dirty))
            del self.dgram_dirty[src]
            batches, src.dgram_batches = src.dgram_batches, {}
            for batch in batches.values():
                self._datagrams_out(src, batch)

    # -- datagrams -----------------------------------------------------------------------------
    @staticmethod
    def source_address(src: VSocket, dst_ip: str) -> tuple[str, int]:
        """The source of a datagram `src` sends to dst_ip: a wildcard socket sends from the address
        of the way out, as a kernel does (127.0.0.1 toward loopback, else the host's address)."""
        ip, port = src.local
        if ip in ("0.0.0.0", "::") and ":" in dst_ip:
            ip = "::1" if dst_ip == "::1" else (src.host.ip6 or "::1")
        elif ip == "0.0.0.0":
            ip = "127.0.0.1" if dst_ip == "127.0.0.1" else src.host.ip
        return ip, port

    def send_datagram(self, src: VSocket, dst: Optional[VSocket], size: int, payload: bytes | None,
                      dst_host: Host, dst_addr: tuple) -> None:
        """Send one datagram. The datagrams a socket sends to one host at one simulated date travel
        as one transfer (as a stream's writes do), started at the next flush without waiting for
        earlier ones: datagrams pipeline on the path as on a network, so a paced sender gets the
        link's bandwidth, not one datagram per latency. The receiver reads them in send order (its
        queue holds them from the send on; one that arrives early waits for those before it).
        Between two sockets of one host it is there at once: loopback delivers within the sending
        call (udp(7): a datagram sent to loopback is readable with MSG_DONTWAIT right after)."""
        # [arrived, source (ip, port), payload, size, source host, destination ip (IP_PKTINFO),
        #  arrival date (SO_TIMESTAMP*)]
        entry = [False, self.source_address(src, dst_addr[0]), payload, size, src.host, dst_addr[0], None]
        if dst is not None:
            dst.dgrams.append(entry)
        if dst_host is src.host:
            self._datagram_arrived(src, dst, dst_host, dst_addr, entry, sim.now())
            return
        src.dgram_batches.setdefault(dst_host.name, []).append((entry, dst, dst_host, dst_addr))
        self.dgram_dirty[src] = None

    def _datagram_arrived(self, src: VSocket, dst: Optional[VSocket], dst_host: Host, dst_addr: tuple,
                          entry: list, start: float) -> None:
        if self.capture is not None:
            self.capture.udp(src.host.name, dst_host.name, start, sim.now(), entry[1], dst_addr,
                             entry[2] or b"")
        entry[0] = True
        entry[6] = sim.now()
        if dst is not None:
            dst.wake()
        elif src.peer is not None and not dst_host.silent:   # a silent host sends no ICMP either
            # Nobody listens there: the destination answers with an ICMP port unreachable, which a
            # connected socket reports as ECONNREFUSED at its next call (udp(7), "ERROR HANDLING";
            # unconnected sockets are told nothing without IP_RECVERR).
            def icmp_arrived() -> None:
                if src.peer is not None:
                    src.dgram_error = errno.ECONNREFUSED
                    src.wake()
            if dst_host is src.host:
                icmp_arrived()
            else:
                self.control(dst_host.name, src.host.name, icmp_arrived)

    def _datagrams_out(self, src: VSocket, batch: list) -> None:
        """Put datagrams sent to one host at one date on the wire: one transfer of their sizes."""
        start = sim.now()
        dst_host = batch[0][2]

        def arrived() -> None:
            for entry, dst, dst_host_, dst_addr in batch:
                self._datagram_arrived(src, dst, dst_host_, dst_addr, entry, start)

        self.watch(sim.transfer_async(src.host.name, dst_host.name, sum(e[0][3] for e in batch)), arrived)


# -- socket options (socket(7), ip(7), ipv6(7), tcp(7), udp(7)) -----------------------------------
SOL_SOCKET, IPPROTO_IP, IPPROTO_TCP, IPPROTO_IPV6 = 1, 0, 6, 41
SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF = 2, 3, 4, 6, 7, 8
SO_KEEPALIVE, SO_REUSEPORT, SO_RCVTIMEO, SO_SNDTIMEO = 9, 15, 20, 21
SO_ACCEPTCONN, SO_PROTOCOL, SO_DOMAIN = 30, 38, 39
SO_TIMESTAMP, SO_TIMESTAMPNS = 29, 35     # the _OLD (64-bit time_t on x86_64) numbers
IP_PKTINFO = 8
IP_MTU, IPV6_MTU = 14, 24
# the path MTU of a route through lo (65536; IP_MTU caps it at IP_MAX_MTU) or eth0 (interfaces)
LOOPBACK_MTU, ETHERNET_MTU = 65536, 1500
IP_TTL, TCP_NODELAY, TCP_MAXSEG, TCP_CORK, IPV6_V6ONLY = 2, 1, 2, 3, 26
TCP_SYNCNT, TCP_USER_TIMEOUT, TCP_DEFER_ACCEPT = 7, 18, 9
# The highest SOL_SOCKET option number Linux 6.x knows (SO_PASSPIDFD is 76...): above it, ENOPROTOOPT.
SO_LAST = 80
TCP_MSS = 1448       # Ethernet MTU 1500 - IPv4 20 - TCP 20 - timestamps 12
TCP_MSS_UNCONNECTED = 536   # tcp(7): TCP_MAXSEG before a connection is RFC 879's default


def _sysctl(path: str, field: int, default: int) -> int:
    """A value of this machine's network sysctls: the option defaults and limits a program would
    read on the real kernel of this machine (socket(7), tcp(7))."""
    try:
        with open(f"/proc/sys/net/{path}") as f:
            return int(f.read().split()[field])
    except (OSError, ValueError, IndexError):
        return default


class Options:
    """The defaults and limits of socket buffer sizes, read once (they are the kernel's)."""

    _cache: Optional["Options"] = None

    def __init__(self) -> None:
        self.wmem_max = _sysctl("core/wmem_max", 0, 212992)
        self.rmem_max = _sysctl("core/rmem_max", 0, 212992)
        self.wmem_default = _sysctl("core/wmem_default", 0, 212992)
        self.rmem_default = _sysctl("core/rmem_default", 0, 212992)
        self.tcp_wmem = _sysctl("ipv4/tcp_wmem", 1, 16384)
        self.tcp_rmem = _sysctl("ipv4/tcp_rmem", 1, 131072)
        self.ttl = _sysctl("ipv4/ip_default_ttl", 0, 64)

    @classmethod
    def get(cls) -> "Options":
        if cls._cache is None:
            cls._cache = cls()
        return cls._cache


class OptionError(Exception):
    def __init__(self, errno_: int):
        self.errno = errno_


def set_option(s: VSocket, level: int, name: int, raw: bytes) -> None:
    """setsockopt(2) on the socket object: what the model uses (reuse flags) and what must read
    back as Linux would (buffer sizes are doubled and clamped: socket(7) SO_SNDBUF/SO_RCVBUF)."""
    if level == IPPROTO_TCP and not s.is_stream:
        raise OptionError(errno.EOPNOTSUPP)
    value = int.from_bytes(raw[:4].ljust(4, b"\0"), "little", signed=True)
    if level == SOL_SOCKET and name == SO_REUSEADDR:
        s.reuseaddr = value != 0
    elif level == SOL_SOCKET and name == SO_REUSEPORT:
        s.reuseport = value != 0
    elif level == SOL_SOCKET and name in (SO_TIMESTAMP, SO_TIMESTAMPNS) and value:
        # socket(7): the last of the two set decides the format (sock_set_timestamp)
        s.options.pop((SOL_SOCKET, SO_TIMESTAMPNS if name == SO_TIMESTAMP else SO_TIMESTAMP), None)
    elif level == IPPROTO_TCP and name == TCP_SYNCNT and not 1 <= value <= MAX_TCP_SYNCNT:
        raise OptionError(errno.EINVAL)   # tcp_sock_set_syncnt
    elif level == IPPROTO_TCP and name == TCP_USER_TIMEOUT and value < 0:
        raise OptionError(errno.EINVAL)   # tcp_sock_set_user_timeout
    elif level == IPPROTO_TCP and name == TCP_DEFER_ACCEPT:
        # the model's alone (the kernel's listener never defers: its accept queue must stay in the
        # model's order), kept as the kernel keeps it: whole SYN-ACK retransmissions
        raw = defer_accept_seconds(defer_accept_retransmits(value)).to_bytes(4, "little")
    elif level == SOL_SOCKET and name in (SO_SNDBUF, SO_RCVBUF):
        o = Options.get()
        limit = o.wmem_max if name == SO_SNDBUF else o.rmem_max
        floor = 4608 if name == SO_SNDBUF else 2304   # SOCK_MIN_SNDBUF / SOCK_MIN_RCVBUF (x86_64)
        raw = max(floor, 2 * min(max(value, 0), limit)).to_bytes(4, "little")
    s.options[(level, name)] = raw


def defer_accept_retransmits(seconds: int) -> int:
    """TCP_DEFER_ACCEPT's seconds as the SYN-ACK retransmissions that cover them, 1 s first,
    doubling up to TCP_RTO_MAX (secs_to_retrans in net/ipv4/tcp.c): the kernel keeps this count."""
    if seconds <= 0:
        return 0
    timeout, period, res = 1, 1, 1
    while seconds > period and res < 255:
        res += 1
        timeout = min(timeout * 2, int(TCP_RTO_MAX))
        period += timeout
    return res


def defer_accept_seconds(retrans: int) -> int:
    """The seconds those retransmissions take (retrans_to_secs): what getsockopt reads back."""
    if retrans <= 0:
        return 0
    timeout = period = 1
    for _ in range(retrans - 1):
        timeout = min(timeout * 2, int(TCP_RTO_MAX))
        period += timeout
    return period


def _int_option(s: VSocket, level: int, name: int) -> int:
    """An integer option as set (0 if never set)."""
    return int.from_bytes(s.options.get((level, name), b"\0\0\0\0")[:4].ljust(4, b"\0"), "little", signed=True)


def option_on(s: VSocket, level: int, name: int) -> bool:
    """Was an integer option set to a non-zero value?"""
    return any(s.options.get((level, name), b"\0"))


def get_option(s: VSocket, level: int, name: int) -> Optional[bytes]:
    """getsockopt(2) as the socket object answers it; None: the model has no answer (address
    translation asks the kernel, full mediation answers 0)."""
    def i32(v: int) -> bytes:
        return v.to_bytes(4, "little", signed=True)

    if level == IPPROTO_TCP and not s.is_stream:
        raise OptionError(errno.EOPNOTSUPP)
    if level == SOL_SOCKET:
        if name == SO_ERROR:
            err = s.connect_error or s.dgram_error
            s.connect_error = s.dgram_error = 0
            return i32(err)
        if name == SO_TYPE:
            return i32(s.kind)
        if name == SO_DOMAIN:
            return i32(s.family)
        if name == SO_PROTOCOL:
            return i32(s.protocol or (socket.IPPROTO_TCP if s.is_stream else socket.IPPROTO_UDP))
        if name == SO_ACCEPTCONN:
            return i32(int(s.listening))
        if name == SO_REUSEADDR:
            return i32(int(s.reuseaddr))
        if name == SO_REUSEPORT:
            return i32(int(s.reuseport))
        if name in (SO_RCVTIMEO, SO_SNDTIMEO):
            t = (s.rcvtimeo if name == SO_RCVTIMEO else s.sndtimeo) or 0.0
            sec = int(t)
            return struct.pack("<qq", sec, round((t - sec) * 1e6))
        if name in (SO_SNDBUF, SO_RCVBUF) and (level, name) not in s.options:
            o = Options.get()
            if name == SO_SNDBUF:
                return i32(o.tcp_wmem if s.is_stream else o.wmem_default)
            return i32(o.tcp_rmem if s.is_stream else o.rmem_default)
        if name > SO_LAST:
            raise OptionError(errno.ENOPROTOOPT)
    elif level == IPPROTO_IPV6 and name == IPV6_V6ONLY:
        if s.family != socket.AF_INET6:
            raise OptionError(errno.ENOPROTOOPT)
        return i32(int(s.v6only))
    elif (level, name) in ((IPPROTO_IP, IP_MTU), (IPPROTO_IPV6, IPV6_MTU)):
        # the path MTU of a connected socket (ip(7), ipv6(7)): its route's interface, lo or eth0
        if s.is_stream:
            if s.conn is None or s.listening or s.refused:
                raise OptionError(errno.ENOTCONN)
            other = s.conn.listener.host if s is s.conn.client else s.conn.client.host
        elif s.peer is None:
            raise OptionError(errno.ENOTCONN)
        else:
            other = s.peer_host
        mtu = LOOPBACK_MTU if other is s.host else ETHERNET_MTU
        return i32(min(mtu, 65535) if level == IPPROTO_IP else mtu)
    elif level == IPPROTO_IP and name == IP_TTL and (level, name) not in s.options:
        return i32(Options.get().ttl)
    elif level == IPPROTO_TCP and name in (TCP_NODELAY, TCP_CORK) and (level, name) not in s.options:
        return i32(0)   # Linux's default; the kernel's socket (address translation) has NODELAY on
    elif level == IPPROTO_TCP and name == TCP_MAXSEG and (level, name) not in s.options:
        established = s.conn is not None and s.conn.established
        return i32(TCP_MSS if established else TCP_MSS_UNCONNECTED)
    return s.options.get((level, name))
