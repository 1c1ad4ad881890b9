"""An unbound UDP client on another host: the implicit bind is to 0.0.0.0 (udp(7)), so the
server's reply reaches it even after a first datagram went to loopback."""

import select
import socket

from common import args, call, out

server, port = args()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"nobody", ("127.0.0.1", 9))          # loopback first: nobody listens there
out("implicit_bind", (c.getsockname()[0], c.getsockname()[1] != 0))
p = select.poll()
p.register(c, select.POLLIN)
for _ in range(50):
    c.sendto(b"hello", (server, port))
    if p.poll(2000):
        break
data, src = c.recvfrom(100)
out("reply", data)
out("reply_source_port", src[1] == port)
c.sendto(b"next", (server, port))
c.connect((server, port))
# connect(2) gives a socket bound to the wildcard the source address of the route (ip4_datagram_connect)
out("connected_getsockname_is_specific", c.getsockname()[0] != "0.0.0.0")
c.send(b"again")
out("connected_receives_peer_only", c.recv(100))
out("connected_nothing_else", call(c.recv, 100, socket.MSG_DONTWAIT))
c.send(b"done")
c.send(b"pkt")
data, src = c.recvfrom(100)
out("pktinfo_reply_arrives", (data, src[1] == port))
