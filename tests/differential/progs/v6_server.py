"""The server half of v6_client.py: a dual-stack [::] listener on one host, an IPv6 client on
another (ipv6(7))."""

import socket

from common import args, out

ip, port = args()
lst = socket.socket(socket.AF_INET6)
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind((ip, port))
lst.listen()
c, peer = lst.accept()
out("v6_peer_not_mapped", not peer[0].startswith("::ffff:"))
out("v6_peer_matches_client", c.recv(64, socket.MSG_WAITALL).decode().strip() == peer[0])
out("v6_local_not_mapped", not c.getsockname()[0].startswith("::ffff:"))

# UDP over IPv6: a reply to the client's IPv6 source
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind((ip, port))
c.sendall(b"udp-ready")
data, src = u.recvfrom(100)
out("v6_udp_source_not_mapped", (data, not src[0].startswith("::ffff:"), src[0] == peer[0]))
u.sendto(b"v6-reply", src)
