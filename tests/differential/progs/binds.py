"""bind(2)/listen(2) rules of socket(7), ip(7) and ipv6(7) on one host (loopback)."""

import socket

from common import call, out

S, D = socket.SOCK_STREAM, socket.SOCK_DGRAM
RA, RP = socket.SO_REUSEADDR, socket.SO_REUSEPORT


def sock(kind=S, family=socket.AF_INET, reuse=None, v6only=None):
    s = socket.socket(family, kind)
    if reuse is not None:
        s.setsockopt(socket.SOL_SOCKET, reuse, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    return s


def port_of(s):
    return s.getsockname()[1]


# a fresh socket is unbound: 0.0.0.0 port 0
s = sock()
out("fresh_getsockname", s.getsockname())
s.bind(("127.0.0.1", 0))
p = port_of(s)
out("bind_port0_picks_port", p != 0)
out("bind_twice", call(s.bind, ("127.0.0.1", 0)))
out("second_bind_same_port", call(sock().bind, ("127.0.0.1", p)))
out("any_over_specific", call(sock().bind, ("0.0.0.0", p)))
out("nonlocal_address", call(sock().bind, ("10.255.255.254", 0)))
out("udp_same_port_as_tcp", call(sock(D).bind, ("127.0.0.1", p)))
s.close()
out("rebind_after_close", call(sock().bind, ("127.0.0.1", p)))

# SO_REUSEADDR: several sockets may share a port as long as none listens (socket(7))
a, b = sock(reuse=RA), sock(reuse=RA)
a.bind(("0.0.0.0", 0))
p = port_of(a)
out("reuseaddr_both_unlistened", call(b.bind, ("0.0.0.0", p)))
out("reuseaddr_listen_first", call(a.listen))
out("reuseaddr_listen_second", call(b.listen))
c = sock(reuse=RA)
out("reuseaddr_after_listener", call(c.bind, ("127.0.0.1", p)))
d = sock()
out("no_reuseaddr_on_new", call(d.bind, ("127.0.0.1", p)))
for x in (a, b, c, d):
    x.close()

# SO_REUSEPORT: two listeners on one port, and the option reads back
a, b = sock(reuse=RP), sock(reuse=RP)
a.bind(("0.0.0.0", 0))
p = port_of(a)
out("reuseport_second_bind", call(b.bind, ("0.0.0.0", p)))
out("reuseport_listen_both", (call(a.listen), call(b.listen)))
out("reuseport_getsockopt", b.getsockopt(socket.SOL_SOCKET, RP))
out("reuseport_third_without", call(sock().bind, ("0.0.0.0", p)))
out("reuseaddr_getsockopt", sock(reuse=RA).getsockopt(socket.SOL_SOCKET, RA))
a.close()
b.close()

# UDP: two sockets on one port only with SO_REUSEADDR on both
u = sock(D, reuse=RA)
u.bind(("127.0.0.1", 0))
p = port_of(u)
out("udp_reuseaddr_both", call(sock(D, reuse=RA).bind, ("127.0.0.1", p)))
out("udp_without_reuse", call(sock(D).bind, ("127.0.0.1", p)))

# listen() without bind(): 0.0.0.0 and a port of the kernel's, reachable on 127.0.0.1
lst = sock()
lst.listen()
ip, p = lst.getsockname()
out("listen_unbound_address", (ip, p != 0))
cl = sock()
out("listen_unbound_connect_loopback", call(cl.connect, ("127.0.0.1", p)))
conn, peer = lst.accept()
out("listen_unbound_accept_local", conn.getsockname() == ("127.0.0.1", p))
out("listen_unbound_peer_is_client", peer == cl.getsockname())
out("listen_on_udp", call(sock(D).listen))
