"""Full mediation: no kernel socket ever connects two tracees; the emulator carries every byte.

Each simulated socket still owns a real descriptor number in the tracee (an unconnected AF_UNIX
socket, created by the tracee's own socket() call with rewritten arguments, or injected for
accept), so close/dup/fcntl/fork/exec/CLOEXEC and epoll registration keep working natively. Every
operation that would move data or change connection state is answered by the emulator: bytes are
read from the sender's memory, travel as the payload of the simulated stream (same timing model as
address translation: sockets.py), and are written into the receiver's memory when they arrive.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import socket
import struct
from typing import Optional

from ..tracer.results import Errno, Native, Value
from .policy import (
    IPPROTO_IPV6,
    IPV6_V6ONLY,
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_WAITALL,
    NR,
    SO_ERROR,
    SO_RCVTIMEO,
    SO_SNDTIMEO,
    SO_TYPE,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    SOL_SOCKET,
    SocketPolicy,
    _take_error,
)
from .sockets import WINDOW, VSocket

MSG_TRUNC, MSG_NOSIGNAL = 0x20, 0x4000
TCP_MAXSEG, TCP_INFO = 2, 11            # IPPROTO_TCP options (tcp(7))
TCP_INFO_SIZE = 232                     # sizeof(struct tcp_info), Linux 6.x
TCP_ESTABLISHED, TCP_CLOSE = 1, 7
TCP_MSS = 1448                          # Ethernet MTU 1500 - IPv4 20 - TCP 20 - timestamps 12
UDP_MAX = 65507


class MediationPolicy(SocketPolicy):
    # -- placeholders and state changes without the kernel --------------------------------------
    def socket(self, sc):
        family, kind_flags = sc.iarg(0), sc.iarg(1)
        result = super().socket(sc)
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(result, Native):
            # The tracee's socket() makes the placeholder itself: same fd number, same flags.
            sc.set_arg(0, socket.AF_UNIX)
            sc.set_arg(1, socket.SOCK_STREAM | (kind_flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)))
            sc.set_arg(2, 0)
        return result

    def _kernel_bind(self, sc, s: VSocket, fd: int, vip: str, real_ip: str, port: int,
                     real_port: int) -> Optional[int]:
        self.net.bind(s, vip, port)
        return None

    def listen(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        if not s.is_stream:
            return Errno(errno.EOPNOTSUPP)
        if s.local is None:
            self._implicit_bind(sc, s, sc.iarg(0))
        s.listening = True
        self.net.listening(s)
        return Value(0)

    def _kernel_connect(self, sc, s: VSocket, fd: int, listener: VSocket) -> Optional[int]:
        return None

    def _kernel_connect_udp(self, sc, target, dst_host, port: int):
        return Value(0)

    def _accept(self, sc, flags: int):
        s = self.sock(sc)
        if s is None:
            return self._local_io(sc, 0x1)
        result = super()._accept(sc, flags)
        if not isinstance(result, Native):
            return result
        # A connection is ready: give the tracee a new placeholder descriptor for it.
        fd = self.actor.tracer.inject(sc, NR("socket"), socket.AF_UNIX,
                                      socket.SOCK_STREAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0)
        if fd < 0:
            return Errno(-fd)
        self._accepted(sc, s, fd, flags, sc.arg(1), sc.arg(2))
        return Value(fd)

    def shutdown(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        how = sc.iarg(1)
        if how not in (0, 1, 2):
            return Errno(errno.EINVAL)
        if s.conn is None:
            return Errno(errno.ENOTCONN)
        self._shut(s, how)
        return Value(0)

    def setsockopt(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        result = super().setsockopt(sc)
        # Options have no kernel socket to act on; the simulation models none of them (except the
        # timeouts, recorded above), so they are accepted as a real socket would accept them.
        return result if isinstance(result, (Value, Errno)) else Value(0)

    def getsockopt(self, sc):
        s = self.sock(sc)
        if s is None:
            return Native()
        level, opt = sc.iarg(1), sc.iarg(2)
        if level == SOL_SOCKET and opt == SO_ERROR:
            return super().getsockopt(sc)
        if level == socket.IPPROTO_TCP and opt == TCP_INFO:
            # struct tcp_info (linux/tcp.h) with what the simulation knows: the state and the
            # segment sizes; counters the model has no notion of (retransmissions, cwnd, RTT) are 0.
            # Zero-filled to the caller's size rather than 4 bytes of an int (iperf3 reads it whole).
            room = max(0, min(sc.mem.read_i32(sc.arg(4)), TCP_INFO_SIZE))
            info = bytearray(TCP_INFO_SIZE)
            info[0] = TCP_ESTABLISHED if s.conn is not None and s.conn.established else TCP_CLOSE
            struct.pack_into("<II", info, 16, TCP_MSS, TCP_MSS)   # tcpi_snd_mss, tcpi_rcv_mss
            struct.pack_into("<I", info, 84, TCP_MSS)             # tcpi_advmss
            sc.mem.write(sc.arg(3), bytes(info[:room]))
            sc.mem.write_i32(sc.arg(4), room)
            return Value(0)
        value = 0
        if level == socket.IPPROTO_TCP and opt == TCP_MAXSEG:
            value = TCP_MSS
        elif level == SOL_SOCKET and opt == SO_TYPE:
            value = s.kind
        elif level == SOL_SOCKET and opt in (7, 8):  # SO_SNDBUF, SO_RCVBUF
            value = WINDOW
        elif level == IPPROTO_IPV6 and opt == IPV6_V6ONLY and s.family == socket.AF_INET6:
            value = int(s.v6only)
        elif level == SOL_SOCKET and opt in (SO_RCVTIMEO, SO_SNDTIMEO):
            t = s.rcvtimeo if opt == SO_RCVTIMEO else s.sndtimeo
            sec = int(t or 0)
            sc.mem.write(sc.arg(3), struct.pack("<qq", sec, int(((t or 0) - sec) * 1e6)))
            sc.mem.write_i32(sc.arg(4), 16)
            return Value(0)
        sc.mem.write_i32(sc.arg(3), value)
        sc.mem.write_i32(sc.arg(4), 4)
        return Value(0)

    # -- data ----------------------------------------------------------------------------------
    def _epipe(self, sc, flags: int):
        if not flags & MSG_NOSIGNAL:
            _tgkill(sc.pid, sc.tid, signal.SIGPIPE)  # as the kernel does: to the writing thread
        return Errno(errno.EPIPE)

    def _send_stream(self, sc, s: VSocket, iov, flags: int, limit, source=None):
        if s.refused:  # tcp_sendmsg: the reset's error first, then EPIPE
            return _take_error(s) or self._epipe(sc, flags)
        if s.conn is None:
            return Errno(errno.ENOTCONN)
        if s.shut_wr:
            return self._epipe(sc, flags)
        length = sum(n for _, n in iov)
        if s.out.reset:
            # The peer's socket is gone. As with TCP, the first write still succeeds (its bytes are
            # lost: the peer answers them with a reset); the following ones fail with EPIPE.
            if s.reset_answered:
                return self._epipe(sc, flags)
            s.reset_answered = True
            return Value(length)
        if not (s.conn.established or s is s.conn.server):
            return self._would_block(sc, s, flags, s.sndtimeo, "send")
        if length == 0:
            return Value(0)
        room = s.out.room()
        if room == 0:
            return self._would_block(sc, s, flags, s.sndtimeo, "send")
        n = min(length, room)
        data = source.read(n) if source is not None else sc.mem.gather(iov, n)
        if data:
            s.out.write(len(data), data)
        return Value(len(data))

    def _recv_stream(self, sc, s: VSocket, iov, flags: int, limit, addr=None):
        if s.refused:
            return _take_error(s) or Value(0)  # tcp_recvmsg: the reset's error, then end of stream
        if s.conn is None:
            return Errno(errno.ENOTCONN) if not s.listening else Errno(errno.EINVAL)
        if not s.conn.established:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        length = sum(n for _, n in iov)
        inq = s.inq
        avail = inq.available()
        eof = inq.eof_arrived or s.shut_rd
        if avail == 0 and not eof:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        if flags & MSG_WAITALL and avail < length and not eof:
            return self._would_block(sc, s, flags & ~MSG_DONTWAIT, s.rcvtimeo, "recv")
        n = min(length, avail)
        if n:
            sc.mem.scatter(iov, inq.take(n, peek=bool(flags & MSG_PEEK)))
        if addr is not None:
            self._write_addr(sc, addr[0], addr[1], s, s.peer)
        return Value(n)

    def _dgram_out(self, sc, s: VSocket, iov, target, dst_host, dst_addr: tuple, set_dest):
        length = sum(n for _, n in iov)
        if length > UDP_MAX:
            return Errno(errno.EMSGSIZE)
        self.net.send_datagram(s, target, length, sc.mem.gather(iov), dst_host, dst_addr)
        return Value(length)

    def _recv_dgram(self, sc, s: VSocket, iov, flags: int, addr_writer):
        if not (s.dgrams and s.dgrams[0][0]):
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        head = s.dgrams[0]
        payload = head[2] or b""
        room = sum(n for _, n in iov)
        sc.mem.scatter(iov, payload[:room])
        if not flags & MSG_PEEK:
            s.dgrams.popleft()
        if addr_writer is not None and head[1] is not None:
            addr_writer(sc, head[1])
        return Value(len(payload) if flags & MSG_TRUNC else min(room, len(payload)))

    def recvmsg(self, sc):
        result = super().recvmsg(sc)
        if isinstance(result, Value):
            # What the kernel would fill in: no ancillary data, no flags.
            sc.mem.write(sc.arg(1) + 40, b"\0" * 8)
            sc.mem.write(sc.arg(1) + 48, b"\0" * 4)
        return result


_libc = ctypes.CDLL(None, use_errno=True)
_NR_TGKILL = NR("tgkill")


def _tgkill(pid: int, tid: int, sig: int) -> None:
    _libc.syscall(_NR_TGKILL, pid, tid, sig)
