"""connect(2), accept4(2), poll(2) and shutdown(2) on TCP sockets of one host (tcp(7), socket(7))."""

import errno
import fcntl
import os
import socket
import struct
import termios
import threading
import time

from common import accept4, call, cerr, fd_flags, libc, out, poll_bits

SO_ERROR = socket.SO_ERROR


def raw_connect(s, ip, port):
    """connect(2) itself (Python's connect hides EISCONN after a non-blocking connect)."""
    import ctypes
    import struct
    raw = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton(ip))
    raw = struct.pack("<H", socket.AF_INET) + raw[2:]
    return cerr(libc.connect(s.fileno(), ctypes.c_char_p(raw), len(raw)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# a fresh TCP socket: POLLOUT|POLLHUP at once (tcp_poll: not connected, both directions shut)
f = socket.socket()
out("fresh_poll", poll_bits(f.fileno()))
out("fresh_getpeername", call(f.getpeername))
out("fresh_shutdown", call(f.shutdown, socket.SHUT_RDWR))
out("fresh_recv", call(f.recv, 1))
out("fresh_send", call(f.send, b"x"))
out("fresh_so_error", f.getsockopt(socket.SOL_SOCKET, SO_ERROR))

# a refused blocking connect
closed = free_port()
r = socket.socket()
out("refused_blocking", call(r.connect, ("127.0.0.1", closed)))
out("refused_then_getpeername", call(r.getpeername))
out("refused_then_poll", poll_bits(r.fileno()))

# a refused non-blocking connect: EINPROGRESS, then POLLOUT|POLLERR|POLLHUP and SO_ERROR once
r = socket.socket()
r.setblocking(False)
out("refused_nonblocking", call(r.connect, ("127.0.0.1", closed)))
out("refused_nonblocking_poll", poll_bits(r.fileno(), timeout_ms=-1))
out("refused_so_error", errno.errorcode[r.getsockopt(socket.SOL_SOCKET, SO_ERROR)])
out("refused_so_error_again", r.getsockopt(socket.SOL_SOCKET, SO_ERROR))

# a listener and a non-blocking connect to it
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0))
out("connect_on_unlistened", call(socket.socket().connect, lst.getsockname()))
lst.listen(8)
port = lst.getsockname()[1]
out("listener_poll_empty", poll_bits(lst.fileno()))
out("connect_on_listener", call(lst.connect, ("127.0.0.1", port)))
c = socket.socket()
c.setblocking(False)
out("nonblocking_connect", call(c.connect, ("127.0.0.1", port)))
out("nonblocking_connect_poll", poll_bits(c.fileno(), socket.POLLOUT if hasattr(socket, "POLLOUT") else 4,
                                          timeout_ms=-1))
out("nonblocking_connect_so_error", c.getsockopt(socket.SOL_SOCKET, SO_ERROR))
out("nonblocking_getpeername", c.getpeername() == ("127.0.0.1", port))
out("connect_again", raw_connect(c, "127.0.0.1", port))
out("connect_third", raw_connect(c, "127.0.0.1", port))
out("listener_poll_pending", poll_bits(lst.fileno(), timeout_ms=-1))
c.setblocking(True)
out("client_local_ip", c.getsockname()[0])

# accept4 flags, visible through fcntl
a, res = accept4(lst, 0)
out("accept_plain_flags", fd_flags(a.fileno()))
out("accepted_local", a.getsockname() == ("127.0.0.1", port))
out("accepted_peer", a.getpeername() == c.getsockname())
c2 = socket.create_connection(("127.0.0.1", port))
a2, res = accept4(lst, socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
out("accept4_flags", fd_flags(a2.fileno()))
out("accept4_nonblocking_recv", call(a2.recv, 1))
c3 = socket.create_connection(("127.0.0.1", port))
lst.setblocking(False)
a3, res = accept4(lst, socket.SOCK_CLOEXEC)
out("accept_from_nonblocking_listener", fd_flags(a3.fileno()))
out("accept_nothing_pending", accept4(lst, 0)[1])
out("connected_poll", poll_bits(c.fileno()))

# shutdown(SHUT_RDWR) from another thread wakes a recv blocked on that socket
def later():
    time.sleep(0.2)
    a3.shutdown(socket.SHUT_RDWR)


t = threading.Thread(target=later)
t.start()
out("recv_woken_by_shutdown", call(a3.recv, 10))
t.join()
out("after_shutdown_poll", poll_bits(a3.fileno()))
out("after_shutdown_send", call(a3.send, b"x", socket.MSG_NOSIGNAL))
out("peer_sees_eof", c3.recv(10))

# data sent on loopback is there at once: FIONREAD, MSG_DONTWAIT, poll
c.sendall(b"12345")
out("loopback_fionread", struct.unpack("i", fcntl.ioctl(a.fileno(), termios.FIONREAD, b"\0" * 4))[0])
out("loopback_poll", poll_bits(a.fileno()))
out("loopback_dontwait", call(a.recv, 10, socket.MSG_DONTWAIT))
# SO_RCVTIMEO: a recv with nothing to read fails with EAGAIN once the timeout expired
a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 0, 100000))
out("rcvtimeo_recv", call(a.recv, 10))
a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 0, 0))

# half-close: the other direction still works
c.shutdown(socket.SHUT_WR)
out("half_close_eof", a.recv(10))
out("half_close_poll_server", poll_bits(a.fileno()))
out("half_close_server_sends", call(a.sendall, b"still"))
out("half_close_client_reads", c.recv(10))
a.close()
out("closed_peer_eof", c.recv(10))
out("closed_peer_poll", poll_bits(c.fileno()))
os.close(c2.detach())

# a loopback connect is done when connect() returns, even a non-blocking one
n = socket.socket()
n.setblocking(False)
out("loopback_nonblocking_connect", call(n.connect, ("127.0.0.1", port)))
out("loopback_connected_at_once", (call(n.getpeername) == ("127.0.0.1", port), n.getsockopt(socket.SOL_SOCKET, SO_ERROR)))
out("loopback_listener_ready_at_once", poll_bits(lst.fileno()))
