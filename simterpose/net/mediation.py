"""Full mediation: no kernel socket ever connects two tracees; the emulator carries every byte.

Each simulated socket still owns a real descriptor number in the tracee (an unconnected AF_UNIX
socket, created by the tracee's own socket() call with rewritten arguments, or injected for
accept), so close/dup/fcntl/fork/exec/CLOEXEC and epoll registration keep working natively. Every
operation that would move data or change connection state is answered by the emulator: bytes are
read from the sender's memory, travel as the payload of the simulated stream (same timing model as
address translation: sockets.py), and are written into the receiver's memory when they arrive.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Optional

from ..tracer.results import Errno, Native, Value
from .policy import (
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_TRUNC,
    MSG_WAITALL,
    NR,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    SocketPolicy,
    _take_dgram_error,
    _take_error,
    iov_length,
)
from .sockets import VSocket

UDP_MAX = 65507

_fresh: dict[tuple[int, int, int], socket.socket] = {}


def _fresh_socket(s: VSocket) -> socket.socket:
    """The emulator's own never-used kernel socket of `s`'s family, type and protocol: it reads
    the defaults of the options the model does not hold (kept for the emulator's lifetime)."""
    key = (s.family, s.kind, s.protocol)
    if key not in _fresh:
        _fresh[key] = socket.socket(s.family, s.kind, s.protocol)
    return _fresh[key]


class MediationPolicy(SocketPolicy):
    _truncated = False   # the last datagram read was cut (recvmsg's MSG_TRUNC)

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
                     real_port: int, learn_port: bool = False) -> Optional[int]:
        self.net.bind(s, vip, port)
        return None

    def _kernel_listen(self, sc, s: VSocket):
        s.listening = True
        self.net.listening(s)
        return Value(0)

    def _kernel_connect(self, sc, s: VSocket, fd: int, listener: VSocket) -> Optional[int]:
        return None

    def _kernel_connect_udp(self, sc, target, dst_host, port: int):
        return Value(0)

    def _kernel_disconnect_udp(self, sc):
        return Value(0)

    def _kernel_accept(self, sc, s: VSocket, flags: int):
        # A connection is ready: give the tracee a new placeholder descriptor for it.
        fd = self.actor.tracer.inject(sc, NR("socket"), socket.AF_UNIX,
                                      socket.SOCK_STREAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0)
        if fd < 0:
            return Errno(-fd)
        self._accepted(sc, s, fd, flags, sc.arg(1), sc.arg(2))
        return Value(fd)

    def _kernel_stream_created(self, sc, fd: int) -> None:
        return None   # a placeholder (AF_UNIX): nothing goes through the kernel

    def _kernel_send_flags(self, sc, i: int, flags: int) -> int:
        return flags

    def _kernel_shutdown(self, sc, s: VSocket, how: int):
        self._shut(s, how)
        return Value(0)

    def _kernel_setsockopt(self, sc):
        return Value(0)   # no kernel socket: the socket object holds the option (sockets.set_option)

    def _reset_error(self, sc, s: VSocket):
        err = _take_error(s)   # the model's: there is no kernel socket
        return self._put_option(sc, struct.pack("<i", err.errno if err is not None else 0))

    def _kernel_getsockopt(self, sc, s: VSocket):
        """An option the model neither answers nor holds: what a fresh kernel socket of the same
        family and type answers, Linux's default (IP_OPTIONS reads empty: sshd drops a connection
        whose options are not; SO_LINGER's 8 bytes, TCP_CONGESTION's name, TCP_KEEPIDLE's 7200 s)."""
        room = sc.mem.read_i32(sc.arg(4))
        if room < 0:
            return Errno(errno.EINVAL)
        if room == 0:
            return self._put_option(sc, b"")
        try:
            raw = _fresh_socket(s).getsockopt(sc.iarg(1), sc.iarg(2), min(room, 1024))
        except OSError as e:
            return Errno(e.errno or errno.ENOPROTOOPT)
        return self._put_option(sc, raw)

    # -- data ----------------------------------------------------------------------------------
    def _stream_push(self, sc, s: VSocket, data: bytes) -> int:
        s.out.write(len(data), data)   # the stream holds the bytes until the reader takes them
        return len(data)

    def _send_stream(self, sc, s: VSocket, iov, flags: int, limit, source=None):
        if self._sending_all(sc):
            return self._send_all(sc, s, iov, flags)
        if s.refused:  # tcp_sendmsg: the reset's error first, then EPIPE
            return _take_error(s) or self._epipe(sc, flags)
        if s.conn is None:
            return self._epipe(sc, flags)   # tcp_sendmsg on a socket never connected (TCP_CLOSE)
        if s.shut_wr:
            return self._epipe(sc, flags)
        if s.reset_by_peer:
            # tcp_sendmsg after a reset: its pending error (no SIGPIPE), then EPIPE (sk_stream_error)
            return _take_error(s) or self._epipe(sc, flags)
        length = iov_length(iov)
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
        if length > room and source is None and not (s.nonblocking or flags & MSG_DONTWAIT):
            return self._send_all(sc, s, iov, flags)
        n = min(length, room)
        data = source.read(n) if source is not None else sc.mem.gather(iov, n)
        if data:
            s.out.write(len(data), data)
        return Value(len(data))

    def _recv_stream(self, sc, s: VSocket, iov, flags: int, limit, addr=None):
        if s.refused:
            return _take_error(s) or Value(0)  # tcp_recvmsg: the reset's error, then end of stream
        if s.conn is None:
            return self._recv_unconnected(s)
        if not s.conn.established:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        length = iov_length(iov)
        inq = s.inq
        avail = inq.available()
        eof = inq.eof_arrived or s.shut_rd
        if avail == 0 and not eof:
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        if avail == 0 and s.reset_by_peer:
            # tcp_recvmsg: what arrived before the reset first, then its error once, then the end
            return _take_error(s) or Value(0)
        if flags & MSG_WAITALL and avail < length and not eof:
            return self._would_block(sc, s, flags & ~MSG_DONTWAIT, s.rcvtimeo, "recv")
        n = min(length, avail)
        if n:
            sc.mem.scatter(iov, inq.take(n, peek=bool(flags & MSG_PEEK)))
        if addr is not None:
            self._write_addr(sc, addr[0], addr[1], s, s.peer)
        return Value(n)

    def _dgram_out(self, sc, s: VSocket, iov, target, dst_host, dst_addr: tuple, set_dest):
        length = iov_length(iov)
        if length > UDP_MAX:
            return Errno(errno.EMSGSIZE)
        self.net.send_datagram(s, target, length, sc.mem.gather(iov), dst_host, dst_addr)
        return Value(length)

    def _recv_dgram(self, sc, s: VSocket, iov, flags: int, addr_writer):
        self._truncated = False
        if s.dgram_error:
            return _take_dgram_error(s)
        if not (s.dgrams and s.dgrams[0][0]):
            return self._would_block(sc, s, flags, s.rcvtimeo, "recv")
        head = s.dgrams[0]
        payload = head[2] or b""
        room = iov_length(iov)
        sc.mem.scatter(iov, payload[:room])
        if not flags & MSG_PEEK:
            s.dgrams.popleft()
        s.last_dgram = head
        if addr_writer is not None and head[1] is not None:
            addr_writer(sc, head[1])
        # for recvmsg's msg_flags (the emulator handles one syscall at a time)
        self._truncated = len(payload) > room
        return Value(len(payload) if flags & MSG_TRUNC else min(room, len(payload)))

    def _dgram_carry(self, sc, s: VSocket, iov, raw_msg, flags: int, dst_host, dst_addr: tuple,
                     target) -> int:
        length = iov_length(iov)
        if length > UDP_MAX:
            return -errno.EMSGSIZE
        self.net.send_datagram(s, target, length, sc.mem.gather(iov), dst_host, dst_addr)
        return length

    def _dgram_take(self, sc, s: VSocket, msg_addr: int, flags: int) -> int:
        head = s.dgrams[0]
        raw = sc.mem.read(msg_addr, 56)
        name, namelen, iov_ptr, iovlen = struct.unpack_from("<QI4xQQ", raw)
        iov = sc.mem.read_iovec(iov_ptr, min(iovlen, 1024)) if iovlen else []
        payload = head[2] or b""
        room = iov_length(iov)
        sc.mem.scatter(iov, payload[:room])
        if not flags & MSG_PEEK:
            s.dgrams.popleft()
        if name and head[1] is not None:
            enc = self._virtual_sockaddr(s, head[1])
            sc.mem.write(name, enc[:namelen])
            sc.mem.write(msg_addr + 8, struct.pack("<I", len(enc)))
        sc.mem.write(msg_addr + 40, b"\0" * 8)   # no ancillary data
        sc.mem.write(msg_addr + 48, struct.pack("<I", MSG_TRUNC if len(payload) > room else 0))
        return len(payload) if flags & MSG_TRUNC else min(room, len(payload))

    def recvmsg(self, sc):
        result = super().recvmsg(sc)
        s = self.sock(sc)
        if isinstance(result, Value) and s is not None:
            # What the kernel would fill in: no ancillary data; MSG_TRUNC if a datagram was cut
            # to the buffers' size (recvmsg(2)). (Not on a netlink socket: its answer wrote them.)
            trunc = not s.is_stream and self._truncated
            if not self._control_written:
                sc.mem.write(sc.arg(1) + 40, b"\0" * 8)
            sc.mem.write(sc.arg(1) + 48, struct.pack("<I", MSG_TRUNC if trunc else 0))
        return result
