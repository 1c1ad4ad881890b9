"""UDP on one host (udp(7), recvmsg(2), sendmmsg(2), recvmmsg(2)): implicit binds, connected
sockets, ICMP port unreachable as ECONNREFUSED, MSG_TRUNC, MSG_PEEK, MSG_DONTWAIT, AF_UNSPEC."""

import ctypes
import socket
import struct
import threading
import time

from common import call, disconnect, libc, out, poll_bits

D = socket.SOCK_DGRAM
DW, PEEK, TRUNC = socket.MSG_DONTWAIT, socket.MSG_PEEK, socket.MSG_TRUNC


def udp(bind=True):
    s = socket.socket(socket.AF_INET, D)
    if bind:
        s.bind(("127.0.0.1", 0))
    return s


def free_udp_port():
    s = udp()
    p = s.getsockname()[1]
    s.close()
    return p


a, b = udp(), udp()
out("fresh_poll", poll_bits(a.fileno()))
out("send_no_destination", call(udp(False).send, b"x"))
# a datagram to loopback is readable at once
a.sendto(b"hello", b.getsockname())
out("loopback_dontwait", call(b.recv, 100, DW))
# an unbound sender is bound to 0.0.0.0 and a port at its first send
u = udp(False)
u.sendto(b"who", b.getsockname())
ip, port = u.getsockname()
out("implicit_bind", (ip, port != 0))
data, src = b.recvfrom(100)
out("implicit_bind_source", (data, src == ("127.0.0.1", port)))
b.sendto(b"back", src)
out("implicit_bind_reply", u.recv(100))

# MSG_PEEK, then MSG_TRUNC: recv returns the real length, recvmsg sets MSG_TRUNC in msg_flags
a.sendto(b"0123456789", b.getsockname())
out("peek", b.recv(4, PEEK))
out("trunc_recv_len", len(b.recv(4, TRUNC)))
a.sendto(b"0123456789", b.getsockname())
data, anc, flags, src = b.recvmsg(4)
out("trunc_recvmsg", (data, bool(flags & TRUNC)))
a.sendto(b"fits", b.getsockname())
data, anc, flags, src = b.recvmsg(100)
out("recvmsg_flags_fit", (data, flags))
a.sendto(b"", b.getsockname())
out("empty_datagram", b.recvfrom(10)[0])
out("nothing_left", call(b.recv, 10, DW))

# several iovecs
a.sendmsg([b"ab", b"cde", b"f"], [], 0, b.getsockname())
bufs = [bytearray(1), bytearray(2), bytearray(10)]
n, anc, flags, src = b.recvmsg_into(bufs)
out("recvmsg_iovecs", (n, [bytes(x) for x in bufs]))

# a connected socket receives only from its peer
c = udp()
bb = socket.socket(socket.AF_INET, D)
bb.bind(("127.0.0.1", free_udp_port()))   # an explicit port: kept when disconnected
bb.connect(a.getsockname())
out("connected_getpeername", bb.getpeername() == a.getsockname())
c.sendto(b"intruder", bb.getsockname())
a.sendto(b"peer", bb.getsockname())
out("connected_filter", bb.recv(100))
out("connected_filter_nothing_else", call(bb.recv, 100, DW))
out("connected_send", call(bb.send, b"to-peer"))
out("connected_send_arrives", a.recvfrom(100)[0])
out("connected_sendto_other", call(bb.sendto, b"x", c.getsockname()))
out("connected_sendto_other_arrives", call(c.recv, 100, DW))
# AF_UNSPEC dissolves the association
out("disconnect", disconnect(bb))
out("disconnected_getpeername", call(bb.getpeername))
out("disconnected_getsockname_kept", bb.getsockname() != ("127.0.0.1", 0))
c.sendto(b"anyone", bb.getsockname())
out("disconnected_receives_any", bb.recv(100))
# a port the kernel chose at bind(0) is released by the disconnect (udp_disconnect)
b.connect(a.getsockname())
out("disconnect_autoport", (disconnect(b), b.getsockname()))
b.close()
b = udp()

# two sockets connected to each other (squid's helper channels): the second connect() names a
# socket already connected (to the first), which still receives from it
x, y = udp(), udp()
y.connect(x.getsockname())
x.connect(y.getsockname())
out("mutual_connect_send", call(x.send, b"to-y"))
out("mutual_connect_arrives", call(y.recv, 100, DW))
out("mutual_connect_reply", (call(y.send, b"to-x"), call(x.recv, 100, DW)))
x.close(), y.close()

# a send to a closed port: the ICMP error makes the next call on a connected socket ECONNREFUSED
e = udp()
e.connect(("127.0.0.1", free_udp_port()))
out("closed_port_send", call(e.send, b"x"))
out("closed_port_poll", poll_bits(e.fileno()))
out("closed_port_recv", call(e.recv, 10))
out("closed_port_recv_again", call(e.recv, 10, DW))
# ...but an unconnected socket is not told
f = udp()
f.sendto(b"x", ("127.0.0.1", free_udp_port()))
out("closed_port_unconnected", call(f.recv, 10, DW))


# sendmmsg / recvmmsg: three datagrams in one call each
class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint32)]


g = udp()
g.connect(b.getsockname())
payloads = [b"one", b"two!", b"three"]
keep = []
vec = (Mmsghdr * 3)()
for i, p in enumerate(payloads):
    buf = ctypes.create_string_buffer(p, len(p))
    iov = Iovec(ctypes.cast(buf, ctypes.c_void_p), len(p))
    keep += [buf, iov]
    vec[i].hdr.iov = ctypes.pointer(iov)
    vec[i].hdr.iovlen = 1
out("sendmmsg", libc.sendmmsg(g.fileno(), vec, 3, 0))
out("sendmmsg_lens", [vec[i].len for i in range(3)])
rvec = (Mmsghdr * 4)()
bufs = [ctypes.create_string_buffer(8) for _ in range(4)]
iovs = [Iovec(ctypes.cast(bufs[i], ctypes.c_void_p), 4) for i in range(4)]
for i in range(4):
    rvec[i].hdr.iov = ctypes.pointer(iovs[i])
    rvec[i].hdr.iovlen = 1
n = libc.recvmmsg(b.fileno(), rvec, 4, DW, None)
out("recvmmsg", n)
out("recvmmsg_data", [(bufs[i].raw[:rvec[i].len], rvec[i].len, bool(rvec[i].hdr.flags & TRUNC)) for i in range(max(n, 0))])
# a blocking recvmmsg with a timeout: the timeout is looked at after each datagram received
# (recvmmsg(2), BUGS), so it returns with the first one arriving after 100 ms
g.send(b"first")
g.send(b"second")
threading.Timer(0.3, lambda: g.send(b"third")).start()


class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


n = libc.recvmmsg(b.fileno(), rvec, 4, 0, ctypes.byref(Timespec(0, 100_000_000)))
out("recvmmsg_timeout", (n, [bufs[i].raw[:rvec[i].len] for i in range(max(n, 0))]))

# IP_PKTINFO: the address a datagram was sent to, and the interface (lo)
p = udp()
p.setsockopt(socket.IPPROTO_IP, 8, 1)   # IP_PKTINFO (ip(7))
a.sendto(b"pkt", p.getsockname())
data, anc, flags, src = p.recvmsg(10, socket.CMSG_SPACE(12))
info = [(lvl, typ, struct.unpack("I4s4s", d)) for lvl, typ, d in anc]
out("ip_pktinfo", [(lvl, typ, i, socket.inet_ntoa(s), socket.inet_ntoa(d)) for lvl, typ, (i, s, d) in info])

# SO_TIMESTAMPNS / SO_TIMESTAMP: the arrival date on CLOCK_REALTIME, between the send and the read;
# with IP_PKTINFO too, the timestamp comes first
for name, opt, scale in (("so_timestampns", 35, 1), ("so_timestamp", 29, 1000)):
    t = udp()
    t.setsockopt(socket.SOL_SOCKET, opt, 1)
    t.setsockopt(socket.IPPROTO_IP, 8, 1)
    before = time.time_ns()
    a.sendto(b"ts", t.getsockname())
    data, anc, flags, src = t.recvmsg(10, 256)
    after = time.time_ns()
    sec, frac = struct.unpack("qq", anc[0][2])
    out(name, ([(lvl, typ) for lvl, typ, _ in anc], before // 1000 * 1000 <= sec * 10**9 + frac * scale <= after))
