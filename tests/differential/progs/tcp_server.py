"""The server half of tcp_client.py (two hosts): names, large writes, iovecs, half-close."""

import hashlib
import socket

from common import args, call, out, poll_bits

ip, port = args()
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind((ip, port))
lst.listen()
c, peer = lst.accept()
names = c.recv(64, socket.MSG_WAITALL).decode().split()
out("accept_peer_is_client_name", peer == (names[0], int(names[1])))
out("getpeername_is_client_name", c.getpeername() == peer)
out("getsockname_is_target", c.getsockname() == (names[2], port))
out("listener_getsockname", lst.getsockname() == (ip, port))

# large blocking writes: the client's send/write/writev return whole counts; all bytes arrive
total = int(c.recv(16, socket.MSG_WAITALL))
h = hashlib.sha256()
buf = bytearray(1 << 20)
got = 0
while got < total:
    n = c.recv_into(buf, min(len(buf), total - got))
    if n == 0:
        break
    h.update(buf[:n])
    got += n
out("bulk_received", got)
out("bulk_digest", h.hexdigest()[:16])

# several iovecs on both sides
data, anc, flags, src = c.recvmsg(6, 0, socket.MSG_WAITALL)
out("sendmsg_iovecs_arrive", data)
out("dontwait_nothing", call(c.recv, 10, socket.MSG_DONTWAIT))   # the client waits for our reply
c.sendmsg([b"x", b"yz", b"uvw"])
c.send(b"PEEKED-DATA")

# half-close: EOF here, the other direction still open
out("half_close_eof", c.recv(10))
out("half_close_poll", poll_bits(c.fileno()))
out("half_close_send", call(c.sendall, b"bye"))
c.close()

# the client's second connection, from a socket it bound to 0.0.0.0 first
c2, peer = lst.accept()
names = c2.recv(64, socket.MSG_WAITALL).decode().split()
out("bound_any_peer_is_client_name", peer == (names[0], int(names[1])))
out("bound_any_peer_is_specific", peer[0] != "0.0.0.0")
c2.close()
