"""An IPv6 client: the server's name resolves to an IPv6 address (AAAA, or ::1) and the
connection is IPv6 end to end (ipv6(7), getaddrinfo(3))."""

import socket
import time

from common import args, call, out

server, port = args()
infos = call(socket.getaddrinfo, server, port, socket.AF_INET6, socket.SOCK_STREAM)
out("v6_resolves", isinstance(infos, list))
addr = infos[0][4] if isinstance(infos, list) else ("::1", port, 0, 0)
for _ in range(1000):
    s = socket.socket(socket.AF_INET6)
    try:
        s.connect(addr)
        break
    except ConnectionRefusedError:
        s.close()
        time.sleep(0.01)
out("v6_connected_not_mapped", not s.getpeername()[0].startswith("::ffff:"))
s.sendall(s.getsockname()[0].encode().ljust(64))
out("v6_udp_ready", s.recv(9, socket.MSG_WAITALL))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.sendto(b"v6-hello", addr)
out("v6_udp_local", (u.getsockname()[0], u.getsockname()[1] != 0))
data, src = u.recvfrom(100)
out("v6_udp_reply", (data, src[:2] == addr[:2]))
