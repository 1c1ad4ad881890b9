"""What socket syscalls mean on the simulated network (address-translation mode).

The kernel still carries the bytes, over loopback, between real addresses that only the emulator
knows (see addressing.py); tracees only ever see virtual addresses. Every decision that could make a
tracee wait is taken from the simulated state first (sockets.py), and the kernel is only asked to
do what is already possible at once:
  * connect: the real connection is made at the call (by injecting connect() into the tracee), then
    the caller waits the simulated round trip;
  * accept: waits until a simulated SYN arrived, then the kernel hands over the queued connection;
  * reads: wait for simulated arrival, then read at most what has arrived;
  * writes: at most the simulated window, so the kernel never blocks on a full buffer;
  * poll/select (and epoll, simterpose/epoll.py): readiness of simulated sockets from the simulation, of other descriptors
    from a zero-timeout poll injected into the tracee; timeouts in simulated time.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import signal
import socket
import stat as stat_mod
import struct
import termios
import time
from typing import TYPE_CHECKING, Optional

from .. import sim
from ..epoll import EpollSet
from ..local_files import _skip
from ..procfs import fd_target
from ..randomness import RandomDevice
from ..time.posix_timers import PosixTimerPolicy
from ..tracer import names
from ..tracer.memory import decode_sockaddr, encode_sockaddr
from ..tracer.results import NATIVE, Blocked, Errno, Native, SyscallFailed, Unsupported, Value
from ..tracer.scratch import Scratch
from ..wait import Waitable
from .addressing import ANY_V4, ANY_V6, LOOPBACK_V4, LOOPBACK_V6, AddressError, sockaddr
from .fdtable import FdTable, SimulatedFile
from .interfaces import IFREQ_IOCTLS, NETLINK_ROUTE, RouteNetlink, ifreq_ioctl
from .sockets import (
    SO_TIMESTAMP,
    SO_TIMESTAMPNS,
    TCP_CORK,
    TCP_DEFER_ACCEPT,
    TCP_MSS,
    TCP_NODELAY,
    WINDOW,
    OptionError,
    VSocket,
    get_option,
    option_on,
    set_option,
)

if TYPE_CHECKING:
    from ..emulator import ScenarioProcess

MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL = 0x2, 0x40, 0x100
MSG_OOB, MSG_TRUNC, MSG_NOSIGNAL, MSG_MORE = 0x1, 0x20, 0x4000, 0x8000
UDP_MAX = 65507                         # udp(7): the largest IPv4 UDP payload
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
O_NONBLOCK, O_CLOEXEC = 0o4000, 0o2000000
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
FIONBIO, FIONREAD = 0x5421, 0x541B
SOL_SOCKET, SO_REUSEADDR, SO_ERROR, SO_TYPE = 1, 2, 4, 3
MSG_CMSG_CLOEXEC = 0x40000000
IP_BIND_ADDRESS_NO_PORT = 24
IP_PKTINFO = 8
SO_BINDTODEVICE = 25
TCP_INFO = 11                           # IPPROTO_TCP (tcp(7))
TCP_INFO_SIZE = 232                     # sizeof(struct tcp_info), Linux 6.x
_KERNEL_BACKLOG = 65535                 # listen(2) of a real socket in address translation (capped by somaxconn)
# A non-blocking read the kernel answered EAGAIN while the simulation says its bytes arrived: how
# long (wall time) to wait at most for the real loopback to deliver them.
_KERNEL_DELIVERY_WAIT_S = 5.0
TCP_ESTABLISHED, TCP_CLOSE = 1, 7
SO_RCVTIMEO, SO_SNDTIMEO = 20, 21
SO_LINGER = 13
SO_RCVBUF, SO_RCVBUFFORCE = 8, 33
# The real receive buffer of a UDP socket in address translation: the kernel delivers a datagram
# at its send, the simulation later; the kernel must hold every datagram still in flight in the
# simulation, or it drops what the simulation then says has arrived (the model has no receive
# buffer limit, as full mediation shows). SO_RCVBUFFORCE needs CAP_NET_ADMIN, else SO_RCVBUF
# (capped by net.core.rmem_max).
_KERNEL_DGRAM_RCVBUF = 64 << 20
IPPROTO_IPV6, IPV6_V6ONLY = 41, 26
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM, POLLRDHUP = 0x40, 0x100, 0x2000
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
NR = names.number

INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class SocketPolicy:
    """Socket syscalls of one process tree (one actor)."""

    _control_written = False   # recvmsg wrote control data (IP_PKTINFO) for this call

    def __init__(self, actor: "ScenarioProcess", network):
        self.actor = actor
        self.net = network
        self.addressing = network.addressing
        self.host = self.addressing.host(actor.spec.host)

    # -- per-process descriptor tables --------------------------------------------------------
    def table(self, process) -> FdTable:
        t = process.data.get("fds")
        if t is None:
            t = process.data["fds"] = FdTable(self._last_close)
        return t

    def on_fork(self, parent, child) -> None:
        child.data["fds"] = self.table(parent).fork()

    def on_exec(self, process) -> None:
        self.table(process).exec()

    def on_exit(self, process) -> None:
        self.table(process).close_all()

    def _last_close(self, obj) -> None:
        if isinstance(obj, VSocket):
            self.close_socket(obj)
        elif hasattr(obj, "last_close"):
            obj.last_close()   # e.g. a FIFO's end (local_files.FifoEnd)

    def close_socket(self, s: VSocket) -> None:
        self.net.unbind(s)
        s.attempt = None   # tcp_close in SYN_SENT: no more SYN retransmissions (Network.unanswered)
        if s.out is not None:
            if _aborts(s):
                s.out.abort()
            else:
                s.out.close()
        if s.inq is not None:
            s.inq.receiver_gone()
        if s.listening:
            s.listening = False
            _reset_backlog(s)

    def sock(self, sc, i: int = 0) -> Optional[VSocket]:
        # On every socket call: the table's dict read directly, the fd as a C int (iarg) inline.
        table = sc.task.process.data.get("fds")
        if table is None:
            return None
        fd = sc.args[i] & 0xFFFFFFFF
        e = table.entries.get(fd - (1 << 32) if fd >= 1 << 31 else fd)
        return e[0] if e is not None and type(e[0]) is VSocket else None

    # -- creation ------------------------------------------------------------------------------
    def socket(self, sc):
        family, kind_flags = sc.iarg(0), sc.iarg(1)
        kind = kind_flags & 0xF
        if family == socket.AF_NETLINK and sc.iarg(2) == NETLINK_ROUTE:
            # The kernel's socket, but what is asked on it is answered by the simulated host.
            def netlink_created(sc_, fd):
                if fd >= 0:
                    self.table(sc_.process).add(fd, RouteNetlink(self.host, bool(kind_flags & SOCK_NONBLOCK)),
                                                bool(kind_flags & SOCK_CLOEXEC))
                return None
            return Native(on_exit=netlink_created)
        if family not in INET_FAMILIES:
            return Native()  # unix, other netlink families...: local to the machine, left to the kernel
        proto = sc.iarg(2)
        if proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6) or kind == socket.SOCK_RAW:
            # ping's sockets (icmp(7), raw(7)): the simulated network carries no ICMP; refusing
            # with EACCES would let ping fall back to other sockets and fail obscurely.
            what = "ICMPv6" if proto == socket.IPPROTO_ICMPV6 or family == socket.AF_INET6 else "ICMP"
            kind_name = "raw socket (SOCK_RAW)" if kind == socket.SOCK_RAW else "datagram socket"
            raise Unsupported("socket", f"{what} {kind_name}, protocol {proto}: the simulated network "
                                        f"carries TCP and UDP only, no {what} (ping cannot run)")
        if kind not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            raise Unsupported("socket", f"socket type {kind} (only TCP and UDP are simulated)")
        if proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            raise Unsupported("socket", f"protocol {proto} (only TCP and UDP are simulated)")

        def created(sc_, fd):
            if fd >= 0:
                s = VSocket(self.net, self.host, family, kind, proto)
                s.nonblocking = bool(kind_flags & SOCK_NONBLOCK)
                self.table(sc_.process).add(fd, s, bool(kind_flags & SOCK_CLOEXEC))
                if kind == socket.SOCK_STREAM:
                    self._kernel_stream_created(sc_, fd)
            return None

        return Native(on_exit=created)

    def _kernel_stream_created(self, sc, fd: int) -> None:
        """The kernel's TCP socket (address translation) sends every write at once: TCP_NODELAY,
        set through our duplicate of the descriptor (accepted sockets inherit it). Otherwise
        Nagle's algorithm (or the program's TCP_CORK, MSG_MORE) would keep small writes in the
        writer's kernel until an ACK or a 200 ms timer, in wall time, while the simulation says
        they have arrived: the reader's kernel would not have them yet (a read answered EAGAIN
        after a poll said readable, a short read that depends on timing). The program's own
        TCP_NODELAY and TCP_CORK are the model's (`setsockopt`), which reads them back."""
        mine = self.actor.local._dup(sc.process, fd)
        if mine is None:
            return
        try:
            sock = socket.socket(fileno=mine)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            finally:
                sock.detach()
        except OSError:
            pass   # gone meanwhile: nothing will be sent on it
        finally:
            os.close(mine)

    def socketpair(self, sc):
        if sc.iarg(0) in INET_FAMILIES:
            raise Unsupported("socketpair", "on IP sockets")
        return Native()

    # -- addresses -----------------------------------------------------------------------------
    def _read_addr(self, sc, ptr_i: int, len_i: int, s: VSocket):
        length = sc.iarg(len_i)
        if length < 2 or length > 128:
            raise _Fail(errno.EINVAL)
        sa = decode_sockaddr(sc.mem.read(sc.arg(ptr_i), length))
        if sa.family == socket.AF_UNSPEC and s.kind == socket.SOCK_DGRAM:
            return None
        if sa.family not in INET_FAMILIES:
            raise _Fail(errno.EAFNOSUPPORT)
        if sa.family == socket.AF_INET6 and s.family == socket.AF_INET:
            raise _Fail(errno.EAFNOSUPPORT)
        return sa

    def _real_sockaddr(self, s: VSocket, real_ip: str, port: int) -> bytes:
        return encode_sockaddr(sockaddr(s.family, real_ip, port))

    def _virtual_sockaddr(self, s: VSocket, addr: tuple[str, int]) -> bytes:
        return encode_sockaddr(sockaddr(s.family, addr[0], addr[1]))

    def _write_addr(self, sc, ptr: int, lenptr: int, s: VSocket, addr) -> None:
        if ptr and lenptr:
            raw = self._virtual_sockaddr(s, addr)
            room = sc.mem.read_i32(lenptr)
            sc.mem.write(ptr, raw[:max(0, room)])
            sc.mem.write_i32(lenptr, len(raw))

    def _implicit_bind(self, sc, s: VSocket, fd: int, toward_loopback: bool = False,
                       outgoing: bool = False, any_addr: bool = False) -> Optional[int]:
        """Bind an unbound socket to a virtual port of ours, in order, rather than a random one (runs
        are reproducible) and to the host's real address (the peer sees the right virtual source).
        Returns an errno or None. For an outgoing TCP connection the kernel picks the real port at
        connect time (IP_BIND_ADDRESS_NO_PORT), avoiding 4-tuples still in TIME_WAIT from an
        earlier run; nobody needs to reach that real port. `any_addr`: the wildcard address, as
        listen(2) without bind(2) and a first sendto(2) on an unbound UDP socket do (ip(7), udp(7):
        replies from any host reach it); otherwise the source address of the route (connect(2))."""
        port = self.host.ephemeral_port(s.kind, lambda p: self.net.port_in_use(self.host, s.kind, p))
        if any_addr:
            vip, real_ip = ANY_V4, self.host.real_ip
        else:
            vip = LOOPBACK_V4 if toward_loopback else self.host.ip
            real_ip = self.host.real_loopback if toward_loopback else self.host.real_ip
        s.auto_port = True
        s.auto_addr = True
        return self._kernel_bind(sc, s, fd, vip, real_ip, port, 0 if outgoing else port)

    def _implicit_bind_v6_loopback(self, sc, s: VSocket, fd: int) -> Optional[int]:
        """An unbound UDP socket's first datagram to ::1: bound to the wildcard "::" and a port of
        ours (what getsockname shows), its real twin to [::1] (the kernel sends from there to
        [::1] only; replies from IPv4 peers do not reach it)."""
        port = self.host.ephemeral_port(s.kind, lambda p: self.net.port_in_use(self.host, s.kind, p))
        s.auto_port = True
        s.auto_addr = True
        return self._kernel_bind(sc, s, fd, ANY_V6, LOOPBACK_V6, port, 0, learn_port=True)

    @staticmethod
    def _dgram_dst_ip(s: VSocket, addr: str, dst_ip: str) -> str:
        """A datagram's destination as the model names it: ::1 stays IPv6 (it reaches sockets on
        ::1 or "::" only), as for TCP (ipv6(7))."""
        if s.family == socket.AF_INET6 and _is_v6_loopback(addr):
            return LOOPBACK_V6
        return dst_ip

    def _kernel_bind(self, sc, s: VSocket, fd: int, vip: str, real_ip: str, port: int,
                     real_port: int, learn_port: bool = False) -> Optional[int]:
        scratch = Scratch(sc, self.actor.tracer)
        tr = self.actor.tracer
        # SO_REUSEADDR: a previous run's TIME_WAIT on the same real address must not fail our bind;
        # the simulated registry still refuses a second bind of a port, as a real host would.
        one = scratch.put(struct.pack("<i", 1))
        tr.inject(sc, NR("setsockopt"), fd, SOL_SOCKET, SO_REUSEADDR, one, 4)
        if real_port == 0 and s.is_stream and not learn_port:
            tr.inject(sc, NR("setsockopt"), fd, socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, one, 4)
        if not s.is_stream:
            big = scratch.put(struct.pack("<i", _KERNEL_DGRAM_RCVBUF))
            if tr.inject(sc, NR("setsockopt"), fd, SOL_SOCKET, SO_RCVBUFFORCE, big, 4) < 0:
                tr.inject(sc, NR("setsockopt"), fd, SOL_SOCKET, SO_RCVBUF, big, 4)
        raw = self._real_sockaddr(s, real_ip, real_port)
        rc = tr.inject(sc, NR("bind"), fd, scratch.put(raw), len(raw))
        if rc < 0:
            return -rc
        if learn_port:
            # The kernel chose the real port: read it back (a V6ONLY listener's clients connect to it).
            name, size = scratch.put(b"\0" * 28), scratch.put(struct.pack("<i", 28))
            tr.inject(sc, NR("getsockname"), fd, name, size)
            real_port = decode_sockaddr(sc.mem.read(name, 28))[2]
        self.net.bind(s, vip, port)
        s.real_local = (real_ip, real_port)
        return None

    def bind(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        if s.local is not None:
            return Errno(errno.EINVAL)
        try:
            sa = self._read_addr(sc, 1, 2, s)
            if sa is None:
                return Errno(errno.EAFNOSUPPORT)
            vip = self.addressing.local_virtual(self.host, sa[1])
        except _Fail as f:
            return Errno(f.errno)
        except AddressError as e:
            return Errno(e.errno)
        port = sa[2]
        # A dual-stack socket bound to ::1 hears IPv6 peers only, as a V6ONLY one: named ::1, never
        # reached by an IPv4 datagram or connection (squid binds its helpers' channels there).
        v6space = s.v6only or (s.family == socket.AF_INET6 and _is_v6_loopback(sa[1]))
        if s.v6only and (":" not in sa[1] or ipaddress.IPv6Address(sa[1]).ipv4_mapped is not None):
            return Errno(errno.EINVAL)   # ipv6(7): a V6ONLY socket cannot take an IPv4 address
        if v6space:
            # No IPv4 peer ever reaches it: it has a place of its own in the port's table ("::" or
            # "::1"), beside IPv4 and dual-stack sockets (redis and memcached bind both by default).
            vip = LOOPBACK_V6 if vip == LOOPBACK_V4 else ("::" if vip == ANY_V4 else vip)
        if port == 0:
            port = self.host.ephemeral_port(s.kind, lambda p: self.net.port_in_use(self.host, s.kind, p))
            s.auto_port = True   # udp_disconnect releases it (no SOCK_BINDPORT_LOCK)
        table = self.net.bound.get((self.host.name, s.kind, port), {})
        if _bind_conflict(table, vip, s):
            return Errno(errno.EADDRINUSE)
        if v6space:
            # Its real twin listens on [::1] at a port of the kernel's choice: no simulated peer
            # connects to it (the platform's hosts are IPv4), and it never collides with another's.
            err = self._kernel_bind(sc, s, sc.iarg(0), vip, LOOPBACK_V6, port, 0, learn_port=True)
        else:
            real_ip = self.addressing.real_for_bind(self.host, vip)
            if any(o.real_local == (real_ip, port) for group in table.values() for o in group):
                # The port is shared (SO_REUSEPORT, or SO_REUSEADDR while nobody listens): the
                # model picks which socket gets each connection and datagram (Network.lookup). On
                # one real address and port the kernel would pick by its own hash instead, so a
                # connection the model gave to one listener could wait in another's real accept
                # queue (nginx's `listen ... reuseport` workers spun on accept = EAGAIN forever). A
                # real port of the kernel's choice makes each real socket receive only what the
                # model sends it (tracees see virtual addresses only, never this port).
                err = self._kernel_bind(sc, s, sc.iarg(0), vip, real_ip, port, 0, learn_port=True)
            else:
                err = self._kernel_bind(sc, s, sc.iarg(0), vip, real_ip, port, port)
        return Errno(err) if err else Value(0)

    def listen(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        if not s.is_stream:
            return Errno(errno.EOPNOTSUPP)
        if s.conn is not None or s.attempt is not None or s.connecting:
            # inet_listen: EINVAL unless the socket is SS_UNCONNECTED. A connected, accepted or
            # connecting socket stays so even once its peer closed; a refused attempt does not.
            # (In full mediation the kernel's socket never connected and would accept.)
            return Errno(errno.EINVAL)
        if s.local is None:
            err = self._implicit_bind(sc, s, sc.iarg(0), any_addr=True)
            if err:
                return Errno(err)
        elif not s.listening and _bind_conflict(self.net.bound.get((self.host.name, s.kind, s.local[1]), {}),
                                                s.local[0], s, listen=True):
            return Errno(errno.EADDRINUSE)   # another socket listens there (SO_REUSEADDR allows no more)
        return self._kernel_listen(sc, s)

    def _kernel_listen(self, sc, s: VSocket):
        # The simulation does not model the backlog's limit: every connect it accepts must be in
        # the kernel's accept queue when the server calls accept (Python's http.server asks for 5;
        # a 6th concurrent client would have its real handshake dropped, its accept wait in the
        # kernel, and the kernel's queue fall out of the simulated order). The kernel caps this
        # at net.core.somaxconn.
        sc.set_arg(1, _KERNEL_BACKLOG)

        def listening(sc_, ret):
            if ret == 0:
                s.listening = True
                self.net.listening(s)
            return None

        return Native(on_exit=listening)

    def getsockname(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        local = s.local or (s.kept_addr, 0)
        self._write_addr(sc, sc.arg(1), sc.arg(2), s, local)
        return Value(0)

    def getpeername(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        # inet_getname: no peer, or a TCP socket closed or still in SYN_SENT
        if s.peer is None or (s.is_stream and (s.conn is None or s.connect_error or s.syn_sent)):
            return Errno(errno.ENOTCONN)
        self._write_addr(sc, sc.arg(1), sc.arg(2), s, s.peer)
        return Value(0)

    # -- connections ---------------------------------------------------------------------------
    def connect(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        if not s.is_stream:
            return self._connect_udp(sc, s)
        if sc.state is not None:  # a blocking connect, waiting for the simulated handshake (or reset)
            return self._connect_wait(sc, s)
        if s.refused:
            # connect(2) after a refused attempt reports it (once: SO_ERROR may have taken it) and
            # leaves the socket unconnected, ready for a new attempt (Linux's __inet_stream_connect).
            err = s.connect_error or errno.ECONNABORTED
            s.refused, s.connect_error = False, 0
            return Errno(err)
        if s.connecting:
            return Errno(errno.EALREADY)
        if s.conn is not None:
            if not s.conn.established:
                return Errno(errno.EALREADY)
            if s.connect_pending:
                # The first connect() after a non-blocking one completed reports the success
                # (__inet_stream_connect: SS_CONNECTING becomes SS_CONNECTED); later ones EISCONN.
                s.connect_pending = False
                return Value(0)
            return Errno(errno.EISCONN)
        if s.listening:
            return Errno(errno.EISCONN)   # __inet_stream_connect: a socket not in TCP_CLOSE
        try:
            sa = self._read_addr(sc, 1, 2, s)
            if sa is None:
                return Errno(errno.EAFNOSUPPORT)
            dst_host, dst_ip = self.addressing.destination(self.host, sa[1])
        except _Fail as f:
            return Errno(f.errno)
        except AddressError as e:
            return Errno(e.errno)
        # ipv6(7): an IPv6 destination ("::1", or a host's `ip6`) reaches V6ONLY listeners and
        # dual-stack ones, never IPv4 sockets; both ends then name each other by IPv6 addresses.
        v6 = s.family == socket.AF_INET6 and _is_v6(sa[1])
        if v6 and _is_v6_loopback(sa[1]):
            dst_ip = LOOPBACK_V6
        if dst_host.silent:
            # Nothing there answers: the SYN is retransmitted until Linux gives up (ETIMEDOUT).
            self.net.unanswered(s, dst_host, (dst_ip, sa[2]))
            if s.nonblocking:
                return Errno(errno.EINPROGRESS)
            sc.state = {"connect": "refusing"}
            return self._connect_wait(sc, s)
        listener = self.net.lookup(dst_host, socket.SOCK_STREAM, dst_ip, sa[2])
        if listener is None or not listener.listening:
            # Nobody listens there: the SYN goes out and a reset comes back, one round trip later.
            self.net.refuse(s, dst_host, (dst_ip, sa[2]))
            if s.nonblocking:
                return Errno(errno.EINPROGRESS)
            sc.state = {"connect": "refusing"}
            return self._connect_wait(sc, s)
        fd = sc.iarg(0)
        if s.local is None and v6:
            # The source is this host's IPv6 address of the same kind ("::1", or its ip6). The real
            # connection follows the listener's real socket: IPv6 for a V6ONLY one, IPv4-mapped
            # for a dual-stack one (tracees only ever see the virtual addresses).
            loop = dst_ip == LOOPBACK_V6
            vip = LOOPBACK_V6 if loop else self.host.ip6
            if vip is None:
                return Errno(errno.ENETUNREACH)   # this host has no IPv6 address to send from
            port = self.host.ephemeral_port(s.kind, lambda p: self.net.port_in_use(self.host, s.kind, p))
            real = listener.real_local
            if real is not None and ":" in real[0]:
                real_ip = LOOPBACK_V6
            else:
                real_ip = self.host.real_loopback if loop else self.host.real_ip
            s.auto_port = s.auto_addr = True
            err = self._kernel_bind(sc, s, fd, vip, real_ip, port, 0)
            if err:
                return Errno(err)
        elif s.local is None:
            err = self._implicit_bind(sc, s, fd, toward_loopback=(dst_ip == LOOPBACK_V4), outgoing=True)
            if err:
                return Errno(err)
        else:
            self._take_route_source(s, dst_ip)
        listener = self.net.reuseport_choice(listener, s.local, (dst_ip, sa[2]))
        err = self._kernel_connect(sc, s, fd, listener)
        if err:
            return Errno(err)
        s.peer = (dst_ip, sa[2])
        self.net.connect(s, listener, dst_ip)
        if s.nonblocking:
            s.connect_pending = True
            return Errno(errno.EINPROGRESS)
        sc.state = {"connect": "handshake"}
        return self._connect_wait(sc, s)

    def _take_route_source(self, s: VSocket, dst_ip: str) -> bool:
        """connect(2) on a socket bound to the wildcard address: the source address of the route
        becomes its own, the port stays (inet_hash_connect, ip4_datagram_connect), so getsockname
        and the peer's accept/getpeername name it, never 0.0.0.0 (dig +tcp binds before connecting).
        The real socket is left as it is. True if the address changed."""
        if s.local[0] not in (ANY_V4, ANY_V6):
            return False
        port = s.local[1]
        self.net.unbind(s)
        self.net.bind(s, self.net.source_address(s, dst_ip)[0], port)
        return True

    def _kernel_connect(self, sc, s: VSocket, fd: int, listener: VSocket) -> Optional[int]:
        """The real connection, now: loopback completes it in the kernel's backlog at once, so the
        server's accept never waits in the kernel. The caller then waits the simulated round trip."""
        raw = self._real_sockaddr(s, listener.real_local[0], listener.real_local[1])
        scratch = Scratch(sc, self.actor.tracer)
        rc = self.actor.tracer.inject(sc, NR("connect"), fd, scratch.put(raw), len(raw))
        if rc < 0 and rc != -errno.EINPROGRESS:
            return -rc
        # the port the kernel chose: the server's real accept names it (_accept)
        name, size = scratch.put(b"\0" * 28), scratch.put(struct.pack("<i", 28))
        if self.actor.tracer.inject(sc, NR("getsockname"), fd, name, size) == 0:
            s.real_source = _real_key(sc.mem.read(name, 28))
        return None

    def _connect_wait(self, sc, s: VSocket):
        if sc.state["connect"] == "refusing":
            if s.refused:  # the reset is back (or the SYNs timed out): reported here, not kept for SO_ERROR
                err = s.connect_error or errno.ECONNREFUSED
                s.refused, s.connect_error = False, 0
                return Errno(err)
        elif s.conn.established:
            return Value(0)
        deadline = self._timeout_deadline(sc, s.sndtimeo)
        if deadline is not None and self.actor.now() >= deadline:
            return Errno(errno.EINPROGRESS)  # SO_SNDTIMEO expired; the handshake goes on
        return Blocked(f"connect fd {sc.iarg(0)}", deadline, on=(s,))

    def _connect_udp(self, sc, s: VSocket):
        try:
            sa = self._read_addr(sc, 1, 2, s)
            if sa is None:
                return self._disconnect_udp(sc, s)
            dst_host, dst_ip = self.addressing.destination(self.host, sa[1])
        except _Fail as f:
            return Errno(f.errno)
        except AddressError as e:
            return Errno(e.errno)
        dst_ip = self._dgram_dst_ip(s, sa[1], dst_ip)
        fd = sc.iarg(0)
        if s.local is None and dst_ip == LOOPBACK_V6:
            err = self._implicit_bind_v6_loopback(sc, s, fd)
            if err:
                return Errno(err)
        elif s.local is None:
            err = self._implicit_bind(sc, s, fd, toward_loopback=(dst_ip == LOOPBACK_V4))
            if err:
                return Errno(err)
        elif self._take_route_source(s, dst_ip):
            s.auto_addr = True   # no SOCK_BINDADDR_LOCK: a disconnect gives the wildcard back
        s.peer = (dst_ip, sa[2])
        s.peer_host = dst_host
        # The receiver as a datagram from this socket finds it: one connected to this very socket
        # counts (two sockets connected to each other, as squid's helper channels are).
        target = self.net.lookup(dst_host, socket.SOCK_DGRAM, dst_ip, sa[2],
                                 src=self.net.source_address(s, dst_ip))
        return self._kernel_connect_udp(sc, target, dst_host, sa[2])

    def _disconnect_udp(self, sc, s: VSocket):
        """connect(2) with AF_UNSPEC: the socket forgets its peer; an address or a port it did not
        choose itself is released too (udp_disconnect: no SOCK_BINDADDR_LOCK/SOCK_BINDPORT_LOCK)."""
        s.peer = s.peer_host = None
        s.dgram_error = 0
        if s.local is not None and (s.auto_port or s.auto_addr):
            ip = (ANY_V6 if s.v6only else ANY_V4) if s.auto_addr else s.local[0]
            if s.auto_port:
                self.net.unbind(s)
                s.local = None
                s.kept_addr = ip
            else:
                self.net.unbind(s)
                self.net.bind(s, ip, s.local[1])
        return self._kernel_disconnect_udp(sc)

    def _kernel_disconnect_udp(self, sc):
        return Native()

    def _kernel_connect_udp(self, sc, target: Optional[VSocket], dst_host, port: int):
        s = self.sock(sc)
        real = target.real_local if target is not None else (dst_host.real_ip, port)
        raw = self._real_sockaddr(s, *real)
        sc.set_arg(1, Scratch(sc, self.actor.tracer).put(raw))
        sc.set_arg(2, len(raw))
        return Native()

    def accept(self, sc):
        return self._accept(sc, 0)

    def accept4(self, sc):
        return self._accept(sc, sc.iarg(3))

    def _accept(self, sc, flags: int):
        s = self.sock(sc)
        if s is None:
            return self._local_io(sc, POLLIN)
        if not s.listening:
            return Errno(errno.EINVAL)
        if not s.readable():
            if s.nonblocking:
                return Errno(errno.EAGAIN)
            return Blocked(f"accept fd {sc.iarg(0)}", self._timeout_deadline(sc, s.rcvtimeo), on=(s,),
                           restart=s.rcvtimeo is None)
        return self._kernel_accept(sc, s, flags)

    def _kernel_accept(self, sc, s: VSocket, flags: int):
        """A connection is ready: the kernel's accept hands it over."""
        addr_ptr, len_ptr = sc.arg(1), sc.arg(2)
        # The kernel writes the real peer into our buffer: it names the connection it handed over.
        # Tasks sharing the listener (a pre-forked server's children) accept at once, in an order
        # the kernel's scheduling decides, and the kernel's queue may hold connections before the
        # one that made the listener readable (TCP_DEFER_ACCEPT): never assume the head.
        scratch = Scratch(sc, self.actor.tracer)
        peer, size = scratch.put(b"\0" * 28), scratch.put(struct.pack("<i", 28))
        sc.set_arg(1, peer)
        sc.set_arg(2, size)

        def accepted(sc_, fd):
            if fd >= 0:
                key = _real_key(sc_.mem.read(peer, 28))
                conn = next((c for c in s.backlog if c.client.real_source == key), None)
                self._accepted(sc_, s, fd, flags, addr_ptr, len_ptr, conn)
            return None

        return Native(on_exit=accepted)

    def _accepted(self, sc, listener: VSocket, fd: int, flags: int, addr_ptr: int, len_ptr: int,
                  conn=None) -> None:
        new = VSocket(self.net, self.host, listener.family, listener.kind, listener.protocol)
        new.nonblocking = bool(flags & SOCK_NONBLOCK)
        # The kernel clones the listener's socket (sk_clone_lock): its options come along
        # (TCP_NODELAY, SO_KEEPALIVE, buffer sizes, SO_REUSEADDR, the timeouts), not O_NONBLOCK.
        new.options = dict(listener.options)
        new.reuseaddr, new.reuseport = listener.reuseaddr, listener.reuseport
        new.rcvtimeo, new.sndtimeo = listener.rcvtimeo, listener.sndtimeo
        new.v6only = listener.v6only
        self.net.accept(listener, new, conn)
        self.table(sc.process).add(fd, new, bool(flags & SOCK_CLOEXEC))
        self._write_addr(sc, addr_ptr, len_ptr, new, new.peer)

    def shutdown(self, sc):
        """shutdown(2). On a socket that is not connected Linux still records the shutdown (later
        reads return 0, writes fail with EPIPE) and returns ENOTCONN (inet_shutdown)."""
        s = self.sock(sc)
        if s is None:
            return Native()
        how = sc.iarg(1)
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            return Errno(errno.EINVAL)
        if s.is_stream and s.conn is None and not s.listening:
            self._shut(s, how)
            return Errno(errno.ENOTCONN)
        if not s.is_stream and s.peer is None:
            return Errno(errno.ENOTCONN)
        return self._kernel_shutdown(sc, s, how)

    def _kernel_shutdown(self, sc, s: VSocket, how: int):
        def done(sc_, ret):
            if ret == 0:
                self._shut(s, how)
            return None

        return Native(on_exit=done)

    @staticmethod
    def _shut(s: VSocket, how: int) -> None:
        if s.listening:
            # inet_shutdown on a listener: SHUT_WR changes nothing; SHUT_RD and SHUT_RDWR
            # disconnect it (tcp_disconnect): it is a bound, unconnected socket again, that may
            # listen anew, and an accept blocked on it wakes with EINVAL (inet_csk_wait_for_connect).
            # Connections queued and not accepted are reset, as when a listener is closed.
            if how != SHUT_WR:
                s.listening = False
                _reset_backlog(s)
                s.notify()
            return
        if how in (SHUT_WR, SHUT_RDWR):
            s.shut_wr = True
            if s.out is not None:
                s.out.close()
        if how in (SHUT_RD, SHUT_RDWR):
            s.shut_rd = True
        # A thread blocked on this socket (recv, send, poll) wakes up: its call now ends.
        s.notify()

    # -- descriptors ---------------------------------------------------------------------------
    def close(self, sc):
        fd = sc.iarg(0)
        table = self.table(sc.process)
        obj = table.get(fd)
        if obj is None:
            return Native()
        if type(obj) is VSocket and obj.refs == 1 and _lingers(obj):
            # The last close of a socket with SO_LINGER {1, N s}: the kernel's close would wait for
            # the peer's kernel to acknowledge every byte, which the peer reads only as the
            # simulation delivers them: the close would sleep in the kernel while the simulation
            # waits for it (vsftpd's data connections). The kernel's socket lets go at once and
            # still sends the rest (the wait itself is not modelled).
            off = Scratch(sc, self.actor.tracer).put(struct.pack("<ii", 0, 0))
            self.actor.tracer.inject(sc, NR("setsockopt"), fd, SOL_SOCKET, SO_LINGER, off, 8)

        def closed(sc_, ret):
            if ret == 0 or ret == -errno.EINTR:
                table.remove(fd)
            return None

        return Native(on_exit=closed)

    def close_range(self, sc):
        first, last = sc.arg(0) & 0xFFFFFFFF, sc.arg(1) & 0xFFFFFFFF
        table = self.table(sc.process)
        if not any(first <= fd <= last for fd in table.entries):
            return Native()
        cloexec_only = bool(sc.iarg(2) & 4)  # CLOSE_RANGE_CLOEXEC

        def closed(sc_, ret):
            if ret == 0:
                for fd in [fd for fd in table.entries if first <= fd <= last]:
                    if cloexec_only:
                        table.set_cloexec(fd, True)
                    else:
                        table.remove(fd)
            return None

        return Native(on_exit=closed)

    def _dup_exit(self, old: int, cloexec: bool):
        def duped(sc_, new):
            if new >= 0 and new != old:
                self.table(sc_.process).dup(old, new, cloexec)
            return None

        return duped

    def dup(self, sc):
        old = sc.iarg(0)
        if self.table(sc.process).get(old) is None:
            return Native()
        return Native(on_exit=self._dup_exit(old, False))

    def dup2(self, sc):
        return self._dup_onto(sc, cloexec=False)

    def dup3(self, sc):
        return self._dup_onto(sc, cloexec=bool(sc.iarg(2) & O_CLOEXEC))

    def _dup_onto(self, sc, cloexec: bool):
        """dup2/dup3: the target may be a socket of ours too (replacing it closes it)."""
        old, new = sc.iarg(0), sc.iarg(1)
        t = self.table(sc.process)
        if t.get(old) is None and t.get(new) is None:
            return Native()
        return Native(on_exit=self._dup_exit(old, cloexec))

    def fcntl(self, sc):
        fd, cmd, arg = sc.iarg(0), sc.iarg(1), sc.arg(2)
        t = self.table(sc.process)
        obj = t.get(fd)
        if obj is None:
            return Native()
        if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
            return Native(on_exit=self._dup_exit(fd, cmd == F_DUPFD_CLOEXEC))
        if cmd == F_SETFD:
            t.set_cloexec(fd, bool(arg & 1))
        elif cmd == F_SETFL and isinstance(obj, SimulatedFile):
            obj.nonblocking = bool(arg & O_NONBLOCK)
        return Native()

    def ioctl(self, sc):
        req = sc.arg(1) & 0xFFFFFFFF
        if req in IFREQ_IOCTLS and self._is_socket(sc):
            rc = ifreq_ioctl(self.host, req, sc.mem, sc.arg(2))   # the simulated host's interfaces
            return Value(0) if rc == 0 else Errno(-rc)
        s = self.sock(sc)
        if s is None:
            obj = self.table(sc.process).get(sc.iarg(0))
            return obj.ioctl(sc, req) if isinstance(obj, SimulatedFile) else Native()
        if req == FIONBIO:
            s.nonblocking = bool(sc.mem.read_i32(sc.arg(2)))
            return Native()
        if req == FIONREAD:
            n = s.inq.available() if (s.is_stream and s.inq is not None) else (
                s.dgrams[0][3] if s.dgrams and s.dgrams[0][0] else 0)
            sc.mem.write_i32(sc.arg(2), n)
            return Value(0)
        return Native()

    def setsockopt(self, sc):
        """setsockopt(2): the socket object records what the model uses or must read back
        (sockets.set_option); the kernel's socket (address translation) gets it too."""
        s = self.sock(sc)
        if s is None:
            return Native()
        level, opt = sc.iarg(1), sc.iarg(2)
        if level == IPPROTO_IPV6 and opt == IPV6_V6ONLY and s.family == socket.AF_INET6:
            if s.local is not None:
                return Errno(errno.EINVAL)   # ipv6(7): only before the socket is bound
            if sc.iarg(4) < 4:
                return Errno(errno.EINVAL)
            s.v6only = sc.mem.read_i32(sc.arg(3)) != 0
            return self._kernel_setsockopt(sc)
        if level == SOL_SOCKET and opt in (SO_RCVTIMEO, SO_SNDTIMEO) and sc.iarg(4) >= 16:
            sec, usec = sc.mem.read_timeval(sc.arg(3))
            value = None if (sec == 0 and usec == 0) else sec + usec / 1e6
            if opt == SO_RCVTIMEO:
                s.rcvtimeo = value
            else:
                s.sndtimeo = value
            return Value(0)  # timeouts run in simulated time; the kernel must never time out first
        length = sc.iarg(4)
        if length < 0:
            return Errno(errno.EINVAL)
        raw = sc.mem.read(sc.arg(3), min(length, 256)) if sc.arg(3) and length else b""
        # socket(7) and tcp(7) options take an int (ip(7) ones may be one byte)
        if level in (SOL_SOCKET, socket.IPPROTO_TCP) and len(raw) < 4 and opt != SO_BINDTODEVICE:
            return Errno(errno.EINVAL)
        try:
            set_option(s, level, opt, raw)
        except OptionError as e:
            return Errno(e.errno)
        if level == SOL_SOCKET and opt in (SO_RCVBUF, SO_RCVBUFFORCE) and not s.is_stream:
            return Value(0)   # read back from the model; the kernel's stays large (_kernel_bind)
        if level == socket.IPPROTO_TCP and opt in (TCP_NODELAY, TCP_CORK, TCP_DEFER_ACCEPT):
            # the model's: the kernel's socket keeps NODELAY (_kernel_stream_created) and accepts
            # every connection at once, in the model's order (VSocket.readable)
            return Value(0)
        return self._kernel_setsockopt(sc)

    def _kernel_setsockopt(self, sc):
        return Native()

    def getsockopt(self, sc):
        """getsockopt(2) as the socket object answers it (sockets.get_option); what it does not
        model is left to the kernel's socket (address translation)."""
        s = self.sock(sc)
        if s is None:
            return Native()
        level, opt = sc.iarg(1), sc.iarg(2)
        if level == socket.IPPROTO_TCP and opt == TCP_INFO and s.is_stream:
            return self._tcp_info(sc, s)
        if level == SOL_SOCKET and opt == SO_ERROR and s.reset_by_peer:
            return self._reset_error(sc, s)
        try:
            raw = get_option(s, level, opt)
        except OptionError as e:
            return Errno(e.errno)
        if raw is None:
            return self._kernel_getsockopt(sc, s)
        return self._put_option(sc, raw)

    def _kernel_getsockopt(self, sc, s: VSocket):
        return Native()

    def _reset_error(self, sc, s: VSocket):
        """SO_ERROR after the peer's reset: the kernel's socket has the same error and clears it as
        it answers (else its next read would report it again)."""
        _take_error(s)
        return Native()

    @staticmethod
    def _put_option(sc, raw: bytes):
        room = sc.mem.read_i32(sc.arg(4))
        if room < 0:
            return Errno(errno.EINVAL)
        sc.mem.write(sc.arg(3), raw[:room])
        sc.mem.write_i32(sc.arg(4), min(room, len(raw)))
        return Value(0)

    def _tcp_info(self, sc, s: VSocket):
        """TCP_INFO (tcp(7), struct tcp_info of linux/tcp.h, 232 bytes on Linux 6.x) filled from the
        model, alike in both modes: the state, the segment sizes, the round trip of the route
        (twice its one-way latency), a congestion window of the slow-start window while it limits
        the stream, else of the flow-control window (the model's limit on what is in flight), RTO as Linux's minimum plus the RTT, and the byte
        counters of the streams. Retransmissions and losses: 0, the model has none. Written to
        the caller's size (iperf3 reads it whole)."""
        info = bytearray(TCP_INFO_SIZE)
        established = s.conn is not None and s.conn.established
        info[0] = TCP_ESTABLISHED if established else TCP_CLOSE
        rtt_us = 0
        if s.conn is not None:
            src, dst = s.conn.client.host.name, s.conn.listener.host.name
            rtt_us = round(2e6 * sim.current().path_latency(src, dst)) if src != dst else 0
        mss = TCP_MSS if established else 536
        cwnd = WINDOW
        slow = s.out.congestion_window() if s.out is not None else None
        if slow is not None:
            cwnd = min(cwnd, slow)   # in slow start (sockets.SlowStart): its window
        struct.pack_into("<II", info, 8, 200000 + rtt_us, 40000)           # tcpi_rto, tcpi_ato (us)
        struct.pack_into("<II", info, 16, mss, mss)                        # tcpi_snd_mss, tcpi_rcv_mss
        struct.pack_into("<I", info, 60, 1500)                             # tcpi_pmtu
        struct.pack_into("<IIIII", info, 68, rtt_us, rtt_us // 2,          # tcpi_rtt, tcpi_rttvar,
                         0x7FFFFFFF, cwnd // TCP_MSS, TCP_MSS)             # ssthresh, snd_cwnd, advmss
        if s.out is not None and s.inq is not None:
            struct.pack_into("<QQ", info, 120, s.out.consumed, s.inq.consumed)   # bytes_acked, _received
            struct.pack_into("<I", info, 148, rtt_us)                            # tcpi_min_rtt
            struct.pack_into("<Q", info, 200, s.out.sent)                        # tcpi_bytes_sent
        return self._put_option(sc, bytes(info))

    # -- data ----------------------------------------------------------------------------------
    def _timeout_deadline(self, sc, timeout: Optional[float]) -> Optional[float]:
        if timeout is None:
            return None
        if not isinstance(sc.state, dict):
            sc.state = {}
        if "deadline" not in sc.state:
            sc.state["deadline"] = self.actor.now() + timeout
        return sc.state["deadline"]

    def _would_block(self, sc, s: VSocket, flags: int, timeout: Optional[float], what: str):
        if s.nonblocking or flags & MSG_DONTWAIT:
            return Errno(errno.EAGAIN)
        deadline = self._timeout_deadline(sc, timeout)
        if deadline is not None and self.actor.now() >= deadline:
            return Errno(errno.EAGAIN)
        look_again = s.look_again() if what == "recv" else None
        # signal(7): socket waits restart after an SA_RESTART handler unless a timeout is set
        return Blocked(f"{what} fd {sc.iarg(0)}", _earliest(deadline, look_again), on=(s,),
                       restart=timeout is None)

    def _send_all(self, sc, s: VSocket, iov, flags: int):
        """A blocking send/write/writev larger than the free window returns once all of it is
        written (write(2), send(2): short counts are for non-blocking sockets). It is carried out
        here piece by piece (`_stream_push`), waiting in simulated time for the reader to make
        room; `sc.state["sent"]` keeps the progress across the waits."""
        total = iov_length(iov)
        if not isinstance(sc.state, dict):
            sc.state = {}
        done = sc.state.setdefault("sent", 0)
        while done < total and not (s.shut_wr or s.out.reset):
            room = s.out.room()
            if room == 0:
                deadline = self._timeout_deadline(sc, s.sndtimeo)
                if deadline is not None and self.actor.now() >= deadline:
                    break   # SO_SNDTIMEO: the count written so far
                return Blocked(f"{sc.name} fd {sc.iarg(0)}", deadline, on=(s,), restart=False)
            n = self._stream_push(sc, s, sc.mem.gather(_skip(iov, done), min(room, total - done)))
            if n <= 0:
                break
            done += n
            sc.state["sent"] = done
        if done == 0:
            return self._epipe(sc, flags)
        return Value(done)

    def _stream_push(self, sc, s: VSocket, data: bytes) -> int:
        """Address translation: the kernel carries the bytes; written through our duplicate of
        the tracee's descriptor (the window is below what loopback absorbs: it never blocks)."""
        n = self.actor.local._write_nowait(sc.process, sc.iarg(0), data)
        if n > 0:
            s.out.write(n, data[:n])
        return n

    @staticmethod
    def _sending_all(sc) -> bool:
        return isinstance(sc.state, dict) and "sent" in sc.state

    def _kernel_send_flags(self, sc, i: int, flags: int) -> int:
        """MSG_MORE (send(2): more is coming, hold this back) would keep the bytes in the kernel's
        socket while the simulation says they are on their way: the kernel does not get it (see
        `_kernel_stream_created`). Argument `i` holds the flags; they are returned as the kernel
        will see them."""
        if flags & MSG_MORE:
            flags &= ~MSG_MORE
            sc.set_arg(i, flags)
        return flags

    def _send_stream(self, sc, s: VSocket, iov, flags: int, limit, source=None):
        """A write on a TCP socket: let the kernel take at most the simulated window. `source`
        (sendfile) gives the bytes of a file instead of the iovec's memory: source(n) reads n."""
        if self._sending_all(sc):
            return self._send_all(sc, s, iov, flags)
        length = iov_length(iov)
        if s.refused:
            # tcp_sendmsg: the reset's error first, then EPIPE (the kernel's unconnected socket
            # answers that, with SIGPIPE)
            return _take_error(s) or Native()
        if s.conn is None:
            return self._epipe(sc, flags)   # tcp_sendmsg on a socket never connected (TCP_CLOSE)
        if s.reset_by_peer:
            _take_error(s)   # the kernel's socket has the reset too, and reports its error itself
            return Native()
        if s.shut_wr or s.out.reset:
            return Native()  # the kernel answers EPIPE (and SIGPIPE) itself
        if not (s.conn.established or s is s.conn.server):
            return self._would_block(sc, s, flags, s.sndtimeo, "send")
        if length == 0:
            return Native()
        room = s.out.room()
        if room == 0:
            return self._would_block(sc, s, flags, s.sndtimeo, "send")
        if length > room and source is None and not (s.nonblocking or flags & MSG_DONTWAIT):
            return self._send_all(sc, s, iov, flags)
        if length > room:
            limit(room)
        out = s.out
        capture = self.net.capture is not None
        if source is None and not (s.nonblocking or flags & MSG_DONTWAIT):
            # A blocking send that fits the window (larger ones went to _send_all): the kernel
            # takes every byte — the window stays below what loopback TCP absorbs, so it never
            # has to wait — and returns the count, so it is accounted now, without an exit stop.
            # (The program sees the kernel's own result in any case.)
            out.write(length, sc.mem.gather(iov, length) if capture else None)
            return NATIVE

        if source is not None and capture:
            source = source.before()   # where the file's bytes start, known only before the call

        def sent(sc_, ret):
            if ret > 0:
                payload = None
                if capture:
                    payload = source.captured(ret) if source is not None else sc_.mem.gather(iov, ret)
                out.write(ret, payload)
            return None

        return Native(on_exit=sent)

    @staticmethod
    def _recv_unconnected(s: VSocket):
        """tcp_recvmsg on a socket without a connection: ENOTCONN (a listener too), or end of
        stream once shut down for reading."""
        if s.shut_rd and not s.listening:
            return Value(0)
        return Errno(errno.ENOTCONN)

    def _epipe(self, sc, flags: int):
        """EPIPE, with the SIGPIPE the kernel sends the writing thread unless MSG_NOSIGNAL."""
        if not flags & MSG_NOSIGNAL:
            _tgkill(sc.pid, sc.tid, signal.SIGPIPE)
        return Errno(errno.EPIPE)

    def _recv_stream(self, sc, s: VSocket, iov, flags: int, limit, addr=None):
        """A read on a TCP socket: only what has arrived in the simulation."""
        length = iov_length(iov)
        if s.refused:
            return _take_error(s) or Value(0)  # tcp_recvmsg: the reset's error, then end of stream
        if s.conn is None:
            return self._recv_unconnected(s)
        if not s.conn.established:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        inq = s.inq
        avail = inq.available()
        if avail == 0 and not (inq.eof_arrived or s.shut_rd):
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        if flags & MSG_WAITALL and avail < length and not inq.eof_arrived:
            return self._would_block(sc, s, flags & ~MSG_DONTWAIT, s.rcvtimeo, "recv")
        if avail == 0:
            if s.reset_by_peer:
                _take_error(s)   # the kernel's socket has the reset too, and returns its error once
            return Native()  # EOF: the kernel has the FIN already and returns 0
        if length > avail:
            limit(avail)
        peek = bool(flags & MSG_PEEK)
        # The exit stop is needed: the kernel may hold fewer bytes than the simulation says have
        # arrived (with the receive window full, the writer's kernel keeps the rest in its send
        # queue until the ACK of this read), so its count is the truth.

        def received(sc_, ret):
            new = None
            if ret == -errno.EAGAIN:
                # The simulation says bytes have arrived, but the kernel's socket does not hold
                # them yet (its senders never delay them, `_kernel_stream_created`, but the
                # loopback's receive path may run later, in a softirq). A non-blocking read must
                # not see EAGAIN after a poll said readable (rsync's daemon failed: "safe_read
                # failed ... Resource temporarily unavailable"): wait for them, in wall time.
                new = ret = self._read_when_delivered(sc_, s, iov, min(length, avail), peek)
            if ret > 0 and not peek:
                inq.consume(ret)
            if ret >= 0 and addr is not None:
                self._write_addr(sc_, addr[0], addr[1], s, s.peer)
            return new

        return Native(on_exit=received)

    def _read_when_delivered(self, sc, s: VSocket, iov, size: int, peek: bool) -> int:
        """At the exit of a read the kernel answered EAGAIN although `size` bytes have arrived in
        the simulation (the real loopback has not delivered them yet: the kernel's socket sends at
        once, `_kernel_stream_created`, but its receive path may run later, in a softirq): wait
        (wall time, 5 s at most) until the kernel's socket holds all `size` of them, so that the
        count does not depend on timing, and read them through our duplicate of the descriptor
        into the tracee's buffers. Their count, or -EAGAIN if none came."""
        fd = self.actor.local._dup(sc.process, sc.iarg(0))
        if fd is None:
            return -errno.EAGAIN
        try:
            deadline = time.monotonic() + _KERNEL_DELIVERY_WAIT_S
            while _unread(fd) < size and time.monotonic() < deadline:
                time.sleep(0.001)
            mine = socket.socket(fileno=fd)
            try:
                data = mine.recv(size, socket.MSG_DONTWAIT | (socket.MSG_PEEK if peek else 0))
            except BlockingIOError:
                return -errno.EAGAIN
            except OSError as e:
                return -e.errno
            finally:
                mine.detach()
        finally:
            os.close(fd)
        sc.mem.scatter(iov, data)
        return len(data)

    def _send_dgram(self, sc, s: VSocket, iov, dest, set_dest):
        """A datagram: to the socket bound at the virtual destination (if any), charged as a message."""
        if dest is None:
            if s.peer is None:
                return Errno(errno.EDESTADDRREQ)
            dst_host, dst_ip, port = s.peer_host, s.peer[0], s.peer[1]
        else:
            try:
                dst_host, dst_ip = self.addressing.destination(self.host, dest[1])
            except AddressError as e:
                return Errno(e.errno)
            dst_ip = self._dgram_dst_ip(s, dest[1], dst_ip)
            port = dest[2]
        fd = sc.iarg(0)
        if s.local is None and dst_ip == LOOPBACK_V6:
            err = self._implicit_bind_v6_loopback(sc, s, fd)
            if err:
                return Errno(err)
        elif s.local is None:
            # udp(7): an unbound socket is bound to the wildcard address and a free port at its
            # first send, so that replies from anywhere (another host, loopback) reach it.
            err = self._implicit_bind(sc, s, fd, any_addr=True)
            if err:
                return Errno(err)
        src_addr = self.net.source_address(s, dst_ip)
        target = self.net.lookup(dst_host, socket.SOCK_DGRAM, dst_ip, port, src=src_addr)
        return self._dgram_out(sc, s, iov, target, dst_host, (dst_ip, port),
                               set_dest if dest is not None else None)

    def _dgram_out(self, sc, s: VSocket, iov, target: Optional[VSocket], dst_host, dst_addr: tuple, set_dest):
        if target is None:
            # Nobody receives it: the kernel is not asked to carry it (its real destination might
            # be a socket the simulation filters out, and its ICMP error would reach the kernel's
            # socket rather than the model's). The model sends it and answers the error, if any.
            length = iov_length(iov)
            if length > UDP_MAX:
                return Errno(errno.EMSGSIZE)
            payload = sc.mem.gather(iov, length) if self.net.capture is not None else None
            self.net.send_datagram(s, None, length, payload, dst_host, dst_addr)
            return Value(length)
        if set_dest is not None:
            real = target.real_local if target is not None else (dst_host.real_ip, dst_addr[1])
            set_dest(self._real_sockaddr(s, *real))
        capture = self.net.capture is not None

        def sent(sc_, ret):
            if ret >= 0:
                payload = sc_.mem.gather(iov, ret) if capture else None
                self.net.send_datagram(s, target, ret, payload, dst_host, dst_addr)
            return None

        return Native(on_exit=sent)

    def _recv_dgram(self, sc, s: VSocket, iov, flags: int, addr_writer):
        if s.dgram_error:
            return _take_dgram_error(s)
        if not (s.dgrams and s.dgrams[0][0]):
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        head = s.dgrams[0]
        peek = bool(flags & MSG_PEEK)

        def received(sc_, ret):
            if ret >= 0:
                if not peek and s.dgrams and s.dgrams[0] is head:
                    s.dgrams.popleft()
                s.last_dgram = head
                if addr_writer is not None and head[1] is not None:
                    addr_writer(sc_, head[1])
            return None

        return Native(on_exit=received)

    def _is_socket(self, sc) -> bool:
        """Is descriptor arg 0 a socket (ours, or the kernel's: /proc/PID/fd/N names "socket:[...]")?
        Only sockets take the interface ioctls; others answer ENOTTY, from the kernel."""
        obj = self.table(sc.process).get(sc.iarg(0))
        if obj is not None:
            return isinstance(obj, (VSocket, RouteNetlink))   # not a timerfd, an epoll set...
        try:
            return os.readlink(f"/proc/{sc.pid}/fd/{sc.iarg(0)}").startswith("socket:")
        except OSError:
            return False

    # -- NETLINK_ROUTE sockets (net/interfaces.py) -------------------------------------------------
    def _netlink(self, sc) -> Optional[RouteNetlink]:
        obj = self.table(sc.process).get(sc.iarg(0))
        return obj if type(obj) is RouteNetlink else None

    def _netlink_send(self, sc, nl: RouteNetlink, iov):
        data = sc.mem.gather(iov)
        nl.request(data, self._netlink_portid(sc, nl))
        return Value(len(data))

    def _netlink_portid(self, sc, nl: RouteNetlink) -> int:
        """The socket's address (nl_pid), which answers carry (glibc drops others): the kernel's,
        from our duplicate of the descriptor; bound first if the program did not bind (the kernel
        binds at the first send, netlink_autobind)."""
        if nl.portid:
            return nl.portid
        fd = self.actor.local._dup(sc.process, sc.iarg(0))
        if fd is None:
            raise SyscallFailed(errno.EBADF)
        with socket.socket(fileno=fd) as mine:
            portid = mine.getsockname()[0]
            if portid == 0:
                mine.bind((0, 0))
                portid = mine.getsockname()[0]
        nl.portid = portid
        return portid

    def _netlink_recv(self, sc, nl: RouteNetlink, iov, flags: int, name=None, msg: int = 0, namelen: int = 0):
        """recv/recvfrom/recvmsg/read(v): the next answer (netlink(7)); the sender is the kernel
        (struct sockaddr_nl {AF_NETLINK, nl_pid 0, nl_groups 0})."""
        if not nl.queue:
            if nl.nonblocking or flags & MSG_DONTWAIT:
                return Errno(errno.EAGAIN)
            return Blocked(f"recv netlink fd {sc.iarg(0)}", on=(nl,), restart=True)
        data, size = nl.take(iov_length(iov), bool(flags & MSG_PEEK))
        sc.mem.scatter(iov, data)
        kernel = struct.pack("<HHII", socket.AF_NETLINK, 0, 0, 0)
        if msg:   # recvmsg: msg_name, msg_namelen, msg_controllen 0, msg_flags
            if name is not None:
                sc.mem.write(name[0], kernel[:namelen])
            sc.mem.write(msg + 8, struct.pack("<I", len(kernel)))
            sc.mem.write(msg + 40, struct.pack("<Q", 0))
            sc.mem.write(msg + 48, struct.pack("<i", MSG_TRUNC if size > len(data) else 0))
        elif name is not None and name[1]:
            room = sc.mem.read_i32(name[1])
            sc.mem.write(name[0], kernel[:max(0, room)])
            sc.mem.write_i32(name[1], len(kernel))
        return Value(size if flags & MSG_TRUNC else len(data))   # netlink_recvmsg: MSG_TRUNC gives the size

    def _limit_arg(self, sc, i: int):
        return lambda n: sc.set_arg(i, n)

    def _limit_iov(self, sc, iov_arg: int, cnt_arg: int, iov):
        """Replace an iovec array by a copy covering only the first n bytes."""
        def limit(n):
            out, left = [], n
            for base, ln in iov:
                if left <= 0:
                    break
                out.append((base, min(ln, left)))
                left -= out[-1][1]
            raw = b"".join(struct.pack("<QQ", b, ln) for b, ln in out)
            sc.set_arg(iov_arg, Scratch(sc, self.actor.tracer).put(raw))
            sc.set_arg(cnt_arg, len(out))
        return limit

    def _local_io(self, sc, events: int, flags: int = 0):
        """A descriptor the network does not own: a pipe or unix socket may still wait on a tracee."""
        return self.actor.local.blocking_io(sc, sc.iarg(0), events, flags)

    def read(self, sc):
        s = self.sock(sc)
        if s is None:
            obj = self.table(sc.process).get(sc.iarg(0))
            if type(obj) is RouteNetlink:
                return self._netlink_recv(sc, obj, [(sc.arg(1), sc.arg(2))], 0)
            return obj.read(sc) if isinstance(obj, (SimulatedFile, RandomDevice)) else self._local_io(sc, POLLIN)
        if s.is_stream:
            return self._recv_stream(sc, s, [(sc.arg(1), sc.arg(2))], 0, self._limit_arg(sc, 2))
        return self._recv_dgram(sc, s, [(sc.arg(1), sc.arg(2))], 0, None)

    def write(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                return self._netlink_send(sc, nl, [(sc.arg(1), sc.arg(2))])
            return self.actor.local.blocking_write(sc, sc.iarg(0), [(sc.arg(1), sc.arg(2))])
        if s.is_stream:
            return self._send_stream(sc, s, [(sc.arg(1), sc.arg(2))], 0, self._limit_arg(sc, 2))
        return self._send_dgram(sc, s, [(sc.arg(1), sc.arg(2))], None, None)

    def readv(self, sc):
        s = self.sock(sc)
        if s is None:
            obj = self.table(sc.process).get(sc.iarg(0))
            if type(obj) is RouteNetlink:
                return self._netlink_recv(sc, obj, sc.mem.read_iovec(sc.arg(1), min(sc.iarg(2), 1024)), 0)
            return obj.readv(sc) if isinstance(obj, RandomDevice) else self._local_io(sc, POLLIN)
        iov = sc.mem.read_iovec(sc.arg(1), min(sc.iarg(2), 1024))
        if s.is_stream:
            return self._recv_stream(sc, s, iov, 0, self._limit_iov(sc, 1, 2, iov))
        return self._recv_dgram(sc, s, iov, 0, None)

    def writev(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                return self._netlink_send(sc, nl, sc.mem.read_iovec(sc.arg(1), min(sc.iarg(2), 1024)))
            return self.actor.local.blocking_write(sc, sc.iarg(0), sc.mem.read_iovec(sc.arg(1), min(sc.iarg(2), 1024)))
        iov = sc.mem.read_iovec(sc.arg(1), min(sc.iarg(2), 1024))
        if s.is_stream:
            return self._send_stream(sc, s, iov, 0, self._limit_iov(sc, 1, 2, iov))
        return self._send_dgram(sc, s, iov, None, None)

    def sendto(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                return self._netlink_send(sc, nl, [(sc.arg(1), sc.arg(2))])
            if sc.arg(4):   # an address: a datagram, all or nothing (the poll-then-native path)
                return self._local_io(sc, POLLOUT, sc.iarg(3))
            return self.actor.local.blocking_write(sc, sc.iarg(0), [(sc.arg(1), sc.arg(2))], sc.iarg(3))
        flags = sc.iarg(3)
        if s.is_stream:
            _refuse_urgent_data(sc, s, flags)
            flags = self._kernel_send_flags(sc, 3, flags)
            return self._send_stream(sc, s, [(sc.arg(1), sc.arg(2))], flags, self._limit_arg(sc, 2))
        dest = None
        if sc.arg(4):
            try:
                dest = self._read_addr(sc, 4, 5, s)
            except _Fail as f:
                return Errno(f.errno)

        def set_dest(raw):
            sc.set_arg(4, Scratch(sc, self.actor.tracer).put(raw))
            sc.set_arg(5, len(raw))

        return self._send_dgram(sc, s, [(sc.arg(1), sc.arg(2))], dest, set_dest)

    def recvfrom(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                return self._netlink_recv(sc, nl, [(sc.arg(1), sc.arg(2))], sc.iarg(3),
                                          name=(sc.arg(4), sc.arg(5)) if sc.arg(4) else None)
            return self._local_io(sc, POLLIN, sc.iarg(3))
        flags = sc.iarg(3)
        addr = (sc.arg(4), sc.arg(5)) if sc.arg(4) else None
        if s.is_stream:
            if flags & MSG_OOB:
                return _no_urgent_data(s)
            return self._recv_stream(sc, s, [(sc.arg(1), sc.arg(2))], flags, self._limit_arg(sc, 2), addr)

        def write_src(sc_, src):
            self._write_addr(sc_, addr[0], addr[1], s, src)

        return self._recv_dgram(sc, s, [(sc.arg(1), sc.arg(2))], flags, write_src if addr else None)

    # struct msghdr: name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48
    def _msghdr(self, sc):
        raw = bytearray(sc.mem.read(sc.arg(1), 56))
        name, namelen, iov_ptr, iovlen = struct.unpack_from("<QI4xQQ", raw)
        iov = sc.mem.read_iovec(iov_ptr, min(iovlen, 1024)) if iovlen else []
        return raw, name, namelen, iov

    def _limit_msg(self, sc, raw: bytearray, iov):
        def limit(n):
            out, left = [], n
            for base, ln in iov:
                if left <= 0:
                    break
                out.append((base, min(ln, left)))
                left -= out[-1][1]
            scratch = Scratch(sc, self.actor.tracer)
            iov_addr = scratch.put(b"".join(struct.pack("<QQ", b, ln) for b, ln in out))
            msg = bytearray(raw)
            struct.pack_into("<QQ", msg, 16, iov_addr, len(out))
            sc.set_arg(1, scratch.put(bytes(msg)))
        return limit

    def sendmsg(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                return self._netlink_send(sc, nl, self._msghdr(sc)[3])
            return self._pass_fds(sc, self._local_io(sc, POLLOUT, sc.iarg(2)))
        raw, name, namelen, iov = self._msghdr(sc)
        flags = sc.iarg(2)
        if s.is_stream:
            _refuse_urgent_data(sc, s, flags)
            flags = self._kernel_send_flags(sc, 2, flags)
            return self._send_stream(sc, s, iov, flags, self._limit_msg(sc, raw, iov))
        if struct.unpack_from("<Q", raw, 40)[0]:
            # Ancillary data (IP_PKTINFO's source address...) names virtual addresses the kernel's
            # socket does not have: the model decides the source, the kernel gets none of it.
            struct.pack_into("<QQ", raw, 32, 0, 0)
            sc.set_arg(1, Scratch(sc, self.actor.tracer).put(bytes(raw)))
        dest = None
        if name and namelen:
            dest = decode_sockaddr(sc.mem.read(name, min(namelen, 128)))

        def set_dest(real):
            scratch = Scratch(sc, self.actor.tracer)
            msg = bytearray(raw)
            struct.pack_into("<QI", msg, 0, scratch.put(real), len(real))
            sc.set_arg(1, scratch.put(bytes(msg)))

        return self._send_dgram(sc, s, iov, dest, set_dest)

    # -- descriptors passed over unix sockets (SCM_RIGHTS, unix(7)) -------------------------------
    @staticmethod
    def _scm_rights(sc, msg_ptr: int) -> list[int]:
        """The descriptors of a msghdr's SCM_RIGHTS messages (the kernel's, at a recvmsg's exit)."""
        control, controllen = struct.unpack("<QQ", sc.mem.read(msg_ptr + 32, 16))
        if not control or controllen < 16:
            return []
        data = sc.mem.read(control, min(controllen, 4096))
        fds, off = [], 0
        while off + 16 <= len(data):
            length, level, kind = struct.unpack_from("<Qii", data, off)
            if length < 16:
                break
            if level == SOL_SOCKET and kind == 1:   # SCM_RIGHTS
                n = (min(length, len(data) - off) - 16) // 4
                fds += struct.unpack_from(f"<{n}i", data, off + 16)
            off += (length + 7) & ~7
        return fds

    def _pass_fds(self, sc, result):
        """sendmsg on a unix socket: a simulated socket among the descriptors it passes stays the
        same simulated socket in the receiver (vsftpd's privileged half accepts a data connection
        and hands it to the session process), and lives while the message is in flight even if the
        sender closes its descriptor at once."""
        if not isinstance(result, Native) or result.on_exit is not None:
            return result
        t = self.table(sc.process)
        passed = [(fd_target(sc.pid, fd), t.get(fd)) for fd in self._scm_rights(sc, sc.arg(1))
                  if isinstance(t.get(fd), VSocket)]
        passed = [(name, obj) for name, obj in passed if name is not None]
        if not passed:
            return result

        def sent(sc_, ret):
            if ret >= 0:
                for name, obj in passed:
                    obj.refs += 1
                    self.net.passed.setdefault(name, []).append(obj)
            return None

        return Native(on_exit=sent)

    def _receive_fds(self, sc, result):
        """recvmsg on a unix socket: descriptors naming a simulated socket in flight become it."""
        if not self.net.passed or not isinstance(result, Native) or result.on_exit is not None:
            return result
        msg_ptr, cloexec = sc.arg(1), bool(sc.iarg(2) & MSG_CMSG_CLOEXEC)

        def received(sc_, ret):
            if ret < 0:
                return None
            for fd in self._scm_rights(sc_, msg_ptr):
                name = fd_target(sc_.pid, fd)
                queue = self.net.passed.get(name)
                if not queue:
                    continue
                obj = queue.pop(0)
                if not queue:
                    del self.net.passed[name]
                self.table(sc_.process).add(fd, obj, cloexec)
                obj.refs -= 1   # the message's reference, now the descriptor's
            return None

        return Native(on_exit=received)

    def recvmsg(self, sc):
        s = self.sock(sc)
        if s is None:
            nl = self._netlink(sc)
            if nl is not None:
                _, name, namelen, iov = self._msghdr(sc)
                return self._netlink_recv(sc, nl, iov, sc.iarg(2), name=(name, 0) if name else None,
                                          msg=sc.arg(1), namelen=namelen)
            return self._receive_fds(sc, self._local_io(sc, POLLIN, sc.iarg(2)))
        raw, name, namelen, iov = self._msghdr(sc)
        flags = sc.iarg(2)
        msg_ptr = sc.arg(1)

        self._control_written = False

        def write_name(sc_, addr):
            if name:
                enc = self._virtual_sockaddr(s, addr)
                sc_.mem.write(name, enc[:namelen])
                sc_.mem.write(msg_ptr + 8, struct.pack("<I", len(enc)))
            if s.last_dgram is not None:
                self._write_control(sc_, msg_ptr, s, s.last_dgram)

        if s.is_stream:
            if flags & MSG_OOB:
                return _no_urgent_data(s)
            return self._recv_stream(sc, s, iov, flags, self._limit_msg(sc, raw, iov))
        return self._recv_dgram(sc, s, iov, flags, write_name)

    def _write_control(self, sc, msg_ptr: int, s: VSocket, entry: list) -> None:
        """The control messages recvmsg(2) returns with a datagram, written by the model in both
        modes (in address translation the kernel's would name real addresses and the wall clock):
        SO_TIMESTAMPNS / SO_TIMESTAMP (socket(7)): the virtual CLOCK_REALTIME of its arrival;
        IP_PKTINFO (ip(7)): struct in_pktinfo {ifindex: 1 (lo) from this host, 2 (the host's
        interface) from another; spec_dst and addr: the address it was sent to}. Linux's order:
        the timestamp first (sock_recv_cmsgs), then IP options (ip_cmsg_recv_offset)."""
        cmsgs = []
        if option_on(s, SOL_SOCKET, SO_TIMESTAMPNS) or option_on(s, SOL_SOCKET, SO_TIMESTAMP):
            ns = self.actor.emulation.clock.epoch_ns + round((entry[6] or 0.0) * 1e9)
            sec, frac = divmod(ns, 1_000_000_000)
            if option_on(s, SOL_SOCKET, SO_TIMESTAMPNS):
                cmsgs.append((SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("<qq", sec, frac)))
            else:
                cmsgs.append((SOL_SOCKET, SO_TIMESTAMP, struct.pack("<qq", sec, frac // 1000)))
        if option_on(s, socket.IPPROTO_IP, IP_PKTINFO) and ":" not in entry[5]:
            dst = socket.inet_aton(entry[5])
            ifindex = 1 if entry[4] is self.host else 2
            cmsgs.append((socket.IPPROTO_IP, IP_PKTINFO, struct.pack("<I4s4s", ifindex, dst, dst)))
        if not cmsgs:
            return
        control, room = struct.unpack("<QQ", sc.mem.read(msg_ptr + 32, 16))
        out = b""
        for level, kind, data in cmsgs:
            space = 16 + ((len(data) + 7) & ~7)   # CMSG_SPACE
            if not control or len(out) + space > room:
                break   # what does not fit is left out (the kernel sets MSG_CTRUNC)
            out += struct.pack("<Qii", 16 + len(data), level, kind) + data.ljust(space - 16, b"\0")
        if out:
            sc.mem.write(control, out)
        sc.mem.write(msg_ptr + 40, struct.pack("<Q", len(out)))
        self._control_written = True

    def sendfile(self, sc):
        """sendfile(2) from a file to a simulated TCP socket: what the window allows, as a write."""
        source = self.table(sc.process).get(sc.iarg(1))
        if source is not None:
            raise Unsupported("sendfile", f"from {_what(source)}")
        s = self.sock(sc)
        if s is None:
            return Native()
        if not s.is_stream:
            raise Unsupported("sendfile", "to a simulated datagram socket")
        return self._send_stream(sc, s, [(0, sc.arg(3))], 0, self._limit_arg(sc, 3),
                                 source=FileSource(sc, self.actor.local))

    def splice(self, sc):
        t = self.table(sc.process)
        for obj in (t.get(sc.iarg(0)), t.get(sc.iarg(2))):
            if obj is not None:
                raise Unsupported("splice", f"with {_what(obj)}")
        return Native()

    # -- sendmmsg / recvmmsg: one datagram per struct mmsghdr {msghdr (56 bytes), msg_len} ------
    MMSG_SIZE = 64
    MSG_WAITFORONE = 0x10000

    def sendmmsg(self, sc):
        """sendmmsg(2) on a simulated UDP socket: each message is one datagram, sent as sendmsg
        would send it; the count of messages sent (or the first message's error)."""
        s = self.sock(sc)
        if s is None:
            return Native()
        if s.is_stream:
            raise Unsupported("sendmmsg", "on a simulated TCP socket (use sendmsg)")
        vec, vlen, flags = sc.arg(1), min(sc.iarg(2), 1024), sc.iarg(3)
        sent = 0
        for i in range(vlen):
            addr = vec + i * self.MMSG_SIZE
            raw = bytearray(sc.mem.read(addr, 56))
            name, namelen, iov_ptr, iovlen = struct.unpack_from("<QI4xQQ", raw)
            iov = sc.mem.read_iovec(iov_ptr, min(iovlen, 1024)) if iovlen else []
            dest = decode_sockaddr(sc.mem.read(name, min(namelen, 128))) if name and namelen else None
            route = self._dgram_route(sc, s, dest)
            n = route if isinstance(route, int) else self._dgram_carry(sc, s, iov, raw, flags, *route)
            if n < 0:
                if sent == 0:
                    return Errno(-n)
                break
            sc.mem.write(addr + 56, struct.pack("<I", n))
            sent += 1
        return Value(sent)

    def recvmmsg(self, sc):
        """recvmmsg(2) on a simulated UDP socket: the datagrams that have arrived, one per message;
        a blocking call waits for `vlen` of them (or one with MSG_WAITFORONE). Its timeout is, as on
        Linux, only looked at after each datagram received (recvmmsg(2), BUGS): the call returns
        at the first datagram arriving after the timeout expired, and waits forever without one."""
        s = self.sock(sc)
        if s is None:
            return Native()
        if s.is_stream:
            raise Unsupported("recvmmsg", "on a simulated TCP socket (use recvmsg)")
        vec, vlen, flags = sc.arg(1), min(sc.iarg(2), 1024), sc.iarg(3)
        if s.dgram_error:
            return _take_dgram_error(s)
        ready = 0
        for entry in s.dgrams:
            if not entry[0]:
                break
            ready += 1
        wait_all = not (s.nonblocking or flags & (MSG_DONTWAIT | self.MSG_WAITFORONE))
        if ready == 0:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        if wait_all and ready < vlen:
            timeout = _timeout_arg(sc, 4)
            if not isinstance(sc.state, dict):
                sc.state = {}
            deadline = sc.state.setdefault("mmsg_deadline", None if timeout is None else self.actor.now() + timeout)
            # datagrams already queued are received when the call starts; later ones on arrival
            if deadline is None or s.dgrams[ready - 1][6] < deadline:
                return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        got = 0
        for i in range(min(ready, vlen)):
            addr = vec + i * self.MMSG_SIZE
            n = self._dgram_take(sc, s, addr, flags & ~self.MSG_WAITFORONE)
            if n < 0:
                if got == 0:
                    return Errno(-n)
                break
            sc.mem.write(addr + 56, struct.pack("<I", n))
            got += 1
        return Value(got)

    def _dgram_route(self, sc, s: VSocket, dest):
        """Where a datagram goes: (destination host, (ip, port), receiving socket or None), or a
        negative errno. Binds an unbound socket first (udp(7))."""
        if dest is None:
            if s.peer is None:
                return -errno.EDESTADDRREQ
            dst_host, dst_ip, port = s.peer_host, s.peer[0], s.peer[1]
        else:
            try:
                dst_host, dst_ip = self.addressing.destination(self.host, dest[1])
            except AddressError as e:
                return -e.errno
            dst_ip = self._dgram_dst_ip(s, dest[1], dst_ip)
            port = dest[2]
        if s.local is None and dst_ip == LOOPBACK_V6:
            err = self._implicit_bind_v6_loopback(sc, s, sc.iarg(0))
            if err:
                return -err
        elif s.local is None:
            err = self._implicit_bind(sc, s, sc.iarg(0), any_addr=True)
            if err:
                return -err
        target = self.net.lookup(dst_host, socket.SOCK_DGRAM, dst_ip, port,
                                 src=self.net.source_address(s, dst_ip))
        return dst_host, (dst_ip, port), target

    def _dgram_carry(self, sc, s: VSocket, iov, raw_msg: bytearray, flags: int, dst_host,
                     dst_addr: tuple, target: Optional[VSocket]) -> int:
        """One datagram of a sendmmsg: the kernel sends it (injected sendmsg, real destination),
        the model times it. Returns its size or a negative errno."""
        length = iov_length(iov)
        if length > UDP_MAX:
            return -errno.EMSGSIZE
        payload = sc.mem.gather(iov, length) if (target is None or self.net.capture is not None) else None
        if target is not None:
            scratch = Scratch(sc, self.actor.tracer)
            msg = bytearray(raw_msg)
            if s.peer is not None and dst_addr == s.peer:
                struct.pack_into("<QI", msg, 0, 0, 0)   # the kernel's socket is connected there
            else:
                real = self._real_sockaddr(s, *target.real_local)
                struct.pack_into("<QI", msg, 0, scratch.put(real), len(real))
            rc = self.actor.tracer.inject(sc, NR("sendmsg"), sc.iarg(0), scratch.put(bytes(msg)),
                                          flags | MSG_DONTWAIT)
            if rc < 0:
                return rc
            length = rc
        self.net.send_datagram(s, target, length, payload, dst_host, dst_addr)
        return length

    def _dgram_take(self, sc, s: VSocket, msg_addr: int, flags: int) -> int:
        """One arrived datagram into the struct msghdr at msg_addr (recvmmsg): the kernel reads it
        (injected recvmsg), the name it writes is replaced by the virtual source."""
        head = s.dgrams[0]
        rc = self.actor.tracer.inject(sc, NR("recvmsg"), sc.iarg(0), msg_addr, flags | MSG_DONTWAIT)
        if rc < 0:
            return rc
        if not flags & MSG_PEEK:
            s.dgrams.popleft()
        name, namelen = struct.unpack_from("<QI", sc.mem.read(msg_addr, 12))
        if name and head[1] is not None:
            enc = self._virtual_sockaddr(s, head[1])
            sc.mem.write(name, enc[:namelen])
            sc.mem.write(msg_addr + 8, struct.pack("<I", len(enc)))
        return rc

    # -- readiness -----------------------------------------------------------------------------
    def _native_revents(self, sc, pollfds: list[tuple[int, int]]) -> dict[int, int]:
        """Readiness of descriptors the simulation does not own: a zero-timeout poll run by the
        tracee itself (injected), so pipes, files and terminals answer as the kernel sees them."""
        if not pollfds:
            return {}
        raw = b"".join(struct.pack("<ihh", fd, ev, 0) for fd, ev in pollfds)
        addr = Scratch(sc, self.actor.tracer).put(raw)
        rc = self.actor.tracer.inject(sc, NR("poll"), addr, len(pollfds), 0)
        if rc <= 0:
            return {}
        back = sc.mem.read(addr, len(raw))
        return {fd: rev for fd, _, rev in (struct.unpack_from("<ihh", back, 8 * i)
                                           for i in range(len(pollfds))) if rev}

    def _poll_set(self, sc, entries: list[tuple[int, int]]):
        """[(fd, events)] -> ({index: revents}, when to look again at a large flow arriving, the
        objects whose change may make one ready)"""
        t = self.table(sc.process)
        result, native, look_again, on = {}, [], None, []
        for i, (fd, events) in enumerate(entries):
            if fd < 0:
                continue
            obj = t.get(fd)
            if type(obj) is EpollSet:
                # An epoll descriptor: readable while either half has an event to report — its
                # simulated entries (judged here) or the kernel's interest list (asked below).
                rev = obj.revents(events)
                if rev:
                    result[i] = rev
                else:
                    look_again = _earliest(look_again, obj.look_again())
                    on.extend([*obj.sources(), obj])
                native.append((i, fd, events))
            elif isinstance(obj, SimulatedFile):
                rev = obj.revents(events | POLLERR | POLLHUP)
                if rev:
                    result[i] = rev
                else:
                    if events & (POLLIN | POLLRDNORM):
                        look_again = _earliest(look_again, obj.look_again())
                    if isinstance(obj, Waitable):
                        on.append(obj)
            else:
                native.append((i, fd, events))
        if native:
            on.append(self.actor.emulation.scheduler.native_files)
            nat = self._native_revents(sc, [(fd, ev) for _, fd, ev in native])
            for i, fd, _ in native:
                if fd in nat:
                    result[i] = result.get(i, 0) | nat[fd]
        return result, look_again, tuple(on)

    def _kernel_may_wait(self, sc, fds, timeout_s: Optional[float]) -> bool:
        """May a poll-like call over descriptors none of which is simulated be left to the kernel?
        Only if it cannot wait on the simulation: no timeout to count in simulated time, and no
        descriptor shared with another tracee (a pipe, a unix socket, an eventfd)."""
        if timeout_s is not None and timeout_s > 0:
            return False
        if timeout_s == 0:
            return True
        if self._timer_armed(sc.process):
            return False   # its signal comes in simulated time, which cannot pass while the kernel waits
        local = self.actor.local
        return not any(fd >= 0 and local._local(sc.pid, fd) for fd in fds)

    def _timer_armed(self, process) -> bool:
        """An alarm, an ITIMER_REAL or a POSIX timer of the process will expire (nc -q 5: alarm(5),
        then a poll without timeout whose entries are all closed (-1): only the SIGALRM ends it)."""
        return (self.actor.time.timer_deadline(process) is not None
                or PosixTimerPolicy.next_deadline(process) is not None)

    def _wait_deadline(self, sc, timeout_s: Optional[float]) -> Optional[float]:
        if sc.state is None:
            sc.state = {"deadline": None if timeout_s is None else self.actor.now() + timeout_s}
        return sc.state["deadline"]

    def _poll_common(self, sc, timeout_s: Optional[float]):
        nfds = sc.arg(1)
        if nfds == 0:
            return self.actor.time.poll_timeout(sc, -1 if timeout_s is None else timeout_s * 1000)
        if nfds > 4096:
            return Errno(errno.EINVAL)
        pollfds = sc.mem.read_pollfds(sc.arg(0), nfds)
        if sc.state is None and not any(isinstance(self.table(sc.process).get(fd), (SimulatedFile, EpollSet))
                                        for fd, _, _ in pollfds) and self._kernel_may_wait(
                                            sc, [fd for fd, _, _ in pollfds], timeout_s):
            return Native()  # nothing simulated or shared in the set: the kernel waits on real things
        ready, look_again, on = self._poll_set(sc, [(fd, ev) for fd, ev, _ in pollfds])
        deadline = self._wait_deadline(sc, timeout_s)
        if ready or (deadline is not None and self.actor.now() >= deadline):
            sc.mem.write_pollfds(sc.arg(0), [(fd, ev, ready.get(i, 0)) for i, (fd, ev, _) in enumerate(pollfds)])
            return Value(len(ready))
        return Blocked(sc.name, _earliest(deadline, look_again), on=on)

    def poll(self, sc):
        timeout_ms = sc.iarg(2)
        return self._poll_common(sc, None if timeout_ms < 0 else timeout_ms / 1000)

    def ppoll(self, sc):
        return self._poll_common(sc, _timeout_arg(sc, 2))

    def _select_common(self, sc, timeout_s: Optional[float]):
        nfds = sc.iarg(0)
        ptrs = (sc.arg(1), sc.arg(2), sc.arg(3))
        if nfds <= 0 or not any(ptrs):
            return self.actor.time.poll_timeout(sc, -1 if timeout_s is None else timeout_s * 1000)
        if nfds > 1024:
            return Errno(errno.EINVAL)
        nbytes = ((nfds + 63) // 64) * 8
        sets = [int.from_bytes(sc.mem.read(p, nbytes), "little") if p else 0 for p in ptrs]
        fds = [fd for fd in range(nfds) if any(s >> fd & 1 for s in sets)]
        t = self.table(sc.process)
        if sc.state is None and not any(isinstance(t.get(fd), (SimulatedFile, EpollSet)) for fd in fds) and \
                self._kernel_may_wait(sc, fds, timeout_s):
            return Native()
        entries = []
        for fd in fds:
            ev = (POLLIN if sets[0] >> fd & 1 else 0) | (POLLOUT if sets[1] >> fd & 1 else 0) | (
                POLLPRI if sets[2] >> fd & 1 else 0)
            entries.append((fd, ev))
        ready, look_again, on = self._poll_set(sc, entries)
        deadline = self._wait_deadline(sc, timeout_s)
        if not ready and not (deadline is not None and self.actor.now() >= deadline):
            return Blocked(sc.name, _earliest(deadline, look_again), on=on)
        out = [0, 0, 0]
        count = 0
        for i, (fd, _ev) in enumerate(entries):
            rev = ready.get(i, 0)
            for k, bits in enumerate((POLLIN | POLLHUP | POLLERR, POLLOUT | POLLERR, POLLPRI)):
                if rev & bits and sets[k] >> fd & 1:
                    out[k] |= 1 << fd
                    count += 1
        for p, bits in zip(ptrs, out, strict=False):
            if p:
                sc.mem.write(p, bits.to_bytes(nbytes, "little"))
        return Value(count)

    def select(self, sc):
        return self._select_common(sc, _timeout_arg(sc, 4, micro=True))

    def pselect6(self, sc):
        return self._select_common(sc, _timeout_arg(sc, 4))

    # -- names ---------------------------------------------------------------------------------
    def _open(self, sc, path_arg: int):
        """/etc/hosts is served with the platform's hosts; a path that may be /dev/random or
        /dev/urandom is handed to the randomness policy (which checks what was really opened)."""
        try:
            path = sc.mem.read_cstring(sc.arg(path_arg), 4096)
        except OSError:
            return Native()
        st = _stat_as_tracee(sc, path, dirfd=sc.iarg(0) if path_arg else AT_FDCWD)
        if st is not None and stat_mod.S_ISFIFO(st.st_mode):
            return self.actor.local.open_fifo(sc, st, path_arg + 1)
        if path == b"/etc/hosts":
            sc.set_arg(path_arg, Scratch(sc, self.actor.tracer).put(os.fsencode(self.actor.emulation.hosts_file) + b"\0"))
        elif path.endswith(b"random"):
            return self.actor.random.open_device(sc, sc.iarg(path_arg + 1))
        return Native()

    def open(self, sc):
        return self._open(sc, 0)

    def openat(self, sc):
        return self._open(sc, 1)


AT_FDCWD = -100


def _stat_as_tracee(sc, path: bytes, dirfd: int) -> Optional[os.stat_result]:
    """stat(2) of the path a tracee opens, relative to its working directory or `dirfd` (through
    /proc/PID/cwd and /proc/PID/fd/N); None if it does not exist or cannot be reached."""
    if not path:
        return None
    if not path.startswith(b"/"):
        base = f"/proc/{sc.pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{sc.pid}/fd/{dirfd}"
        path = os.fsencode(base) + b"/" + path
    else:
        # names of the caller's own descriptors: ours if stat'd as they are (/dev/stderr is
        # /proc/self/fd/2, our pipe when simterpose's output is piped: a FIFO, the open waited forever)
        own = os.fsencode(f"/proc/{sc.pid}/")
        for prefix, real in ((b"/dev/stdin", own + b"fd/0"), (b"/dev/stdout", own + b"fd/1"),
                             (b"/dev/stderr", own + b"fd/2"), (b"/dev/fd/", own + b"fd/"),
                             (b"/proc/self/", own), (b"/proc/thread-self/", own)):
            if path == prefix or (prefix.endswith(b"/") and path.startswith(prefix)):
                path = real + path[len(prefix):]
                break
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _what(obj) -> str:
    """A descriptor-table entry, in words, for error messages."""
    return f"{obj.path} (seeded, random(4))" if isinstance(obj, RandomDevice) else "a simulated socket"


class FileSource:
    """The input file of a sendfile(2) call (`in_fd`, `*offset` or the file position), read through
    our own duplicate of the descriptor (pidfd_getfd), which shares the file position."""

    def __init__(self, sc, local):
        self.sc, self.local = sc, local
        self.in_fd, self.off_ptr = sc.iarg(1), sc.arg(2)
        self.start: Optional[int] = None

    def _dup(self) -> int:
        fd = self.local._dup(self.sc.process, self.in_fd)
        if fd is None:
            raise SyscallFailed(errno.EBADF)
        return fd

    def before(self) -> "FileSource":
        if self.off_ptr:
            self.start = self.sc.mem.read_u64(self.off_ptr)
        else:
            fd = self._dup()
            try:
                self.start = os.lseek(fd, 0, os.SEEK_CUR)
            finally:
                os.close(fd)
        return self

    def captured(self, n: int) -> bytes:
        """The n bytes the kernel just sent (for the pcap)."""
        fd = self._dup()
        try:
            return os.pread(fd, n, self.start)
        finally:
            os.close(fd)

    def read(self, n: int) -> bytes:
        """Read n bytes as sendfile does: at *offset (then updated), or at the file position."""
        fd = self._dup()
        try:
            if self.off_ptr:
                off = self.sc.mem.read_u64(self.off_ptr)
                data = os.pread(fd, n, off)
                self.sc.mem.write_u64(self.off_ptr, off + len(data))
                return data
            return os.read(fd, n)
        finally:
            os.close(fd)


def _overlap(addr: str, other: VSocket, vip: str, s: VSocket) -> bool:
    """Do `s` on `vip` and `other` on `addr` claim the same (address, port)? IPv4 and dual-stack
    sockets share one space (ANY covers every IPv4 address); V6ONLY sockets have their own ("::"
    covers "::1"); a dual-stack socket on ANY covers both (ipv6(7))."""
    dual_any = s.family == socket.AF_INET6 and not s.v6only and vip == "0.0.0.0"
    if ":" in addr:                       # other is V6ONLY
        return (":" in vip and (addr == vip or "::" in (addr, vip))) or dual_any
    if ":" in vip:                        # s is V6ONLY: only a dual-stack ANY covers it
        return addr == "0.0.0.0" and other.family == socket.AF_INET6 and not other.v6only
    return vip == "0.0.0.0" or addr == "0.0.0.0" or addr == vip


def _bind_conflict(table: dict, vip: str, s: VSocket, listen: bool = False) -> bool:
    """Would `s` on `vip` clash with the sockets already bound on that port (socket(7))? Sharing is
    allowed when both set SO_REUSEPORT, or both set SO_REUSEADDR and neither listens (TCP; UDP
    sockets never listen). At listen(2) (`listen`), only other listeners count."""
    for addr, others in table.items():
        for other in others:
            if other is s or not _overlap(addr, other, vip, s):
                continue
            if s.reuseport and other.reuseport:
                continue
            if listen:
                if other.listening:
                    return True
                continue
            if s.reuseaddr and other.reuseaddr and not other.listening:
                continue
            return True
    return False


def _timeout_arg(sc, i: int, micro: bool = False) -> Optional[float]:
    """A timeout passed by pointer (timespec, or timeval if `micro`), in seconds; None = no limit."""
    if not sc.arg(i):
        return None
    sec, frac = sc.mem.read_timeval(sc.arg(i)) if micro else sc.mem.read_timespec(sc.arg(i))
    return sec + frac / (1e6 if micro else 1e9)


def _is_v6(addr: str) -> bool:
    """A true IPv6 address (not IPv4-mapped, not the wildcard "::" that means any host here)?"""
    if ":" not in addr:
        return False
    ip = ipaddress.IPv6Address(addr)
    return ip.ipv4_mapped is None and not ip.is_unspecified


def _is_v6_loopback(addr: str) -> bool:
    """Is this the IPv6 loopback address "::1" (not an IPv4-mapped one)?"""
    return ":" in addr and ipaddress.IPv6Address(addr) == ipaddress.IPv6Address(LOOPBACK_V6)


def iov_length(iov) -> int:
    """The bytes an iovec list [(base, len), ...] covers (one buffer: read/write/send/recv)."""
    return iov[0][1] if len(iov) == 1 else sum(n for _, n in iov)


def _take_dgram_error(s: VSocket) -> Errno:
    """udp(7): the ICMP error a connected socket received, reported by the next call, once."""
    err, s.dgram_error = s.dgram_error, 0
    return Errno(err)


def _unread(fd: int) -> int:
    """How many bytes the kernel's socket `fd` holds unread (FIONREAD, tcp(7) SIOCINQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _linger_seconds(s: VSocket) -> Optional[int]:
    """SO_LINGER as set (socket(7): struct linger {l_onoff, l_linger}): its seconds if on, else None."""
    linger = s.options.get((SOL_SOCKET, SO_LINGER), b"")
    if len(linger) < 8:
        return None
    onoff, seconds = struct.unpack_from("<ii", linger)
    return seconds if onoff else None


def _aborts(s: VSocket) -> bool:
    """Does closing this socket reset its connection (tcp_close): bytes its peer wrote that it
    never read (arrived or still on their way: the kernel's socket answers those with a reset too),
    or SO_LINGER {on, 0 s} (socket(7))."""
    if not s.is_stream or s.conn is None or s.inq is None:
        return False
    return s.inq.sent > s.inq.consumed or _linger_seconds(s) == 0


def _lingers(s: VSocket) -> bool:
    """SO_LINGER {on, N > 0 s}: a close that waits until the data is sent (socket(7))."""
    seconds = _linger_seconds(s)
    return s.is_stream and seconds is not None and seconds > 0


def _reset_backlog(listener: VSocket) -> None:
    """A listener closed or shut down resets the connections it had not accepted yet
    (inet_csk_listen_stop): their clients see ECONNRESET. (One still in its handshake is left.)"""
    while listener.backlog:
        conn = listener.backlog.popleft()
        if conn.established:
            conn.s2c.abort()
            conn.c2s.receiver_gone()


def _take_error(s: VSocket) -> Optional[Errno]:
    """The socket's pending error (SO_ERROR), reported once."""
    if not s.connect_error:
        return None
    err, s.connect_error = s.connect_error, 0
    return Errno(err)


def _no_urgent_data(s: VSocket) -> Errno:
    """recv with MSG_OOB on a TCP socket (tcp_recvmsg, tcp_recv_urg): ENOTCONN on a listener, else
    EINVAL, what Linux answers when no urgent data is pending, which is always the case here
    (sending urgent data is refused: `_refuse_urgent_data`)."""
    return Errno(errno.ENOTCONN if s.listening else errno.EINVAL)


def _refuse_urgent_data(sc, s: VSocket, flags: int) -> None:
    """send with MSG_OOB on a connected TCP socket makes its last byte urgent data (tcp(7)): taken
    out of the stream, read with recv(MSG_OOB), signalled by POLLPRI and SIGURG. Not modelled: a
    clear error rather than a byte counted in the stream that the peer's kernel keeps apart
    (address translation would then wait for a byte that never comes). Unconnected, the call
    fails as without the flag."""
    if flags & MSG_OOB and s.conn is not None and not s.refused and not s.shut_wr:
        raise Unsupported(sc.name, "MSG_OOB on a TCP socket: urgent data is not modelled")


def _real_key(raw: bytes) -> Optional[tuple[str, int]]:
    """(address, port) of a real sockaddr, an IPv4-mapped address as the IPv4 one."""
    try:
        sa = decode_sockaddr(raw)
    except ValueError:
        return None
    if sa[0] not in (socket.AF_INET, socket.AF_INET6):
        return None
    ip = sa[1][7:] if sa[1].startswith("::ffff:") else sa[1]
    return (ip, sa[2])


def _earliest(*dates: Optional[float]) -> Optional[float]:
    known = [d for d in dates if d is not None]
    return min(known) if known else None


class _Fail(Exception):
    def __init__(self, errno_: int):
        self.errno = errno_


_libc = ctypes.CDLL(None, use_errno=True)
_NR_TGKILL = NR("tgkill")


def _tgkill(pid: int, tid: int, sig: int) -> None:
    _libc.syscall(_NR_TGKILL, pid, tid, sig)
