"""IPv6 listeners (ipv6(7)): IPV6_V6ONLY alone and next to 0.0.0.0, dual-stack, mapped addresses, ::1."""

import socket

from common import call, out

V6 = socket.AF_INET6


def sock(family=socket.AF_INET, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    return s


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


out("v6only_default", socket.socket(V6).getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
# [::] V6ONLY alone
p = free_port()
a = sock(V6, v6only=True)
out("v6only_alone_bind", call(a.bind, ("::", p)))
out("v6only_alone_listen", call(a.listen))
out("v6only_reads_back", a.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
out("v6only_getsockname", a.getsockname()[:2] == ("::", p))
out("v4_client_to_v6only", call(socket.socket().connect, ("127.0.0.1", p)))
# ... and beside 0.0.0.0 on the same port
b = sock()
out("v4_any_beside_v6only", call(b.bind, ("0.0.0.0", p)))
out("v4_any_beside_v6only_listen", call(b.listen))
c = socket.socket()
out("v4_client_reaches_v4", call(c.connect, ("127.0.0.1", p)))
conn, peer = b.accept()
out("v4_accept_family", conn.family == socket.AF_INET)
out("v6only_option_after_bind", call(a.setsockopt, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0))
a.close(), b.close(), c.close(), conn.close()

# a dual-stack [::] next to 0.0.0.0: one IPv4 space
p = free_port()
a = sock()
a.bind(("0.0.0.0", p))
a.listen()
out("dual_beside_v4_any", call(sock(V6, v6only=False).bind, ("::", p)))
a.close()

# a dual-stack [::] listener takes IPv4 clients, as mapped addresses
p = free_port()
d = sock(V6, v6only=False)
out("dual_bind", call(d.bind, ("::", p)))
d.listen()
c = socket.socket()
out("dual_v4_client", call(c.connect, ("127.0.0.1", p)))
conn, peer = d.accept()
out("dual_accept_peer_mapped", peer[0] == "::ffff:" + c.getsockname()[0] and peer[1] == c.getsockname()[1])
out("dual_accepted_local", conn.getsockname()[:2] == ("::ffff:127.0.0.1", p))
out("v4_after_dual", call(sock().bind, ("127.0.0.1", p)))
out("v6only_mapped_bind", call(sock(V6, v6only=True).bind, ("::ffff:127.0.0.1", 0)))
conn.close(), c.close()

# ::1, the IPv6 loopback: a V6ONLY listener on it, an IPv6 client
s6 = socket.socket(V6)
out("v6_client_to_dual", call(s6.connect, ("::1", p)))
conn, peer = d.accept()
out("v6_client_peer", peer[0])
out("v6_client_local", s6.getsockname()[0])
d.close()
p = free_port()
l6 = sock(V6, v6only=True)
out("v6only_loopback_bind", call(l6.bind, ("::1", p)))
l6.listen()
s6 = socket.socket(V6)
out("v6_client_to_v6only_loopback", call(s6.connect, ("::1", p)))
out("v4_client_to_v6only_loopback", call(socket.socket().connect, ("127.0.0.1", p)))

# IPV6_MTU (ipv6(7)): the path MTU of a connected socket (lo's 65536 here), ENOTCONN before
mtu_listener = socket.socket(V6)
mtu_listener.bind(("::1", 0))
mtu_listener.listen()
out("ipv6_mtu_unconnected", call(mtu_listener.getsockopt, socket.IPPROTO_IPV6, 24))
mtu_client = socket.create_connection(mtu_listener.getsockname()[:2])
mtu_accepted, _ = mtu_listener.accept()
out("ipv6_mtu_connected", [call(mtu_client.getsockopt, socket.IPPROTO_IPV6, 24),
                           call(mtu_accepted.getsockopt, socket.IPPROTO_IPV6, 24)])

# UDP on ::1, V6ONLY and dual-stack sockets alike (squid's helper channels: two dual-stack sockets
# bound to ::1 and connected to each other): they are named ::1, IPv4 datagrams never reach them
DW = socket.MSG_DONTWAIT
for v6only in (0, 1):
    def udp6(bind=True, v6only=v6only):
        u = socket.socket(V6, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        if bind:
            u.bind(("::1", 0))
        return u
    x, y = udp6(), udp6()
    out(f"udp6_v6only{v6only}_getsockname", x.getsockname()[0])
    out(f"udp6_v6only{v6only}_connect", (call(y.connect, x.getsockname()), call(x.connect, y.getsockname())))
    out(f"udp6_v6only{v6only}_send", (call(x.send, b"to-y"), call(y.recv, 100, DW)))
    out(f"udp6_v6only{v6only}_reply", (call(y.send, b"to-x"), call(x.recv, 100, DW)))
    out(f"udp6_v6only{v6only}_getpeername", y.getpeername() == x.getsockname())
    w = udp6()
    z = udp6(bind=False)
    out(f"udp6_v6only{v6only}_unbound_sendto", call(z.sendto, b"z", w.getsockname()))
    data, src = w.recvfrom(100, DW)
    out(f"udp6_v6only{v6only}_unbound_source", (data, src[0], src[1] == z.getsockname()[1]))
    out(f"udp6_v6only{v6only}_reply_to_unbound", (call(w.sendto, b"back", src), call(z.recv, 100, DW)))
    v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v4.sendto(b"v4", ("127.0.0.1", w.getsockname()[1]))
    out(f"udp6_v6only{v6only}_v4_datagram", call(w.recv, 100, DW))
    for u in (x, y, z, w, v4):
        u.close()
