"""Socket options read back as Linux answers them (socket(7), tcp(7), udp(7), ip(7))."""

import socket
import struct

from common import call, out

SOL, TCP = socket.SOL_SOCKET, socket.IPPROTO_TCP


def opt(s, level, name):
    return call(s.getsockopt, level, name)


for kind, label in ((socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")):
    s = socket.socket(socket.AF_INET, kind)
    out(f"{label}_so_type", opt(s, SOL, socket.SO_TYPE))
    out(f"{label}_so_domain", opt(s, SOL, socket.SO_DOMAIN))
    out(f"{label}_so_protocol", opt(s, SOL, socket.SO_PROTOCOL))
    out(f"{label}_so_error", opt(s, SOL, socket.SO_ERROR))
    out(f"{label}_so_acceptconn", opt(s, SOL, socket.SO_ACCEPTCONN))
    out(f"{label}_so_reuseaddr_default", opt(s, SOL, socket.SO_REUSEADDR))
    out(f"{label}_so_keepalive_default", opt(s, SOL, socket.SO_KEEPALIVE))
    out(f"{label}_so_broadcast_default", opt(s, SOL, socket.SO_BROADCAST))
    # SO_SNDBUF / SO_RCVBUF: the kernel doubles what is set (socket(7)), within its limits
    s.setsockopt(SOL, socket.SO_SNDBUF, 65536)
    out(f"{label}_so_sndbuf_set", opt(s, SOL, socket.SO_SNDBUF))
    s.setsockopt(SOL, socket.SO_RCVBUF, 32768)
    out(f"{label}_so_rcvbuf_set", opt(s, SOL, socket.SO_RCVBUF))
    s.setsockopt(SOL, socket.SO_KEEPALIVE, 1)
    out(f"{label}_so_keepalive_set", opt(s, SOL, socket.SO_KEEPALIVE))
    s.setsockopt(SOL, socket.SO_REUSEADDR, 1)
    out(f"{label}_so_reuseaddr_set", opt(s, SOL, socket.SO_REUSEADDR))
    out(f"{label}_ip_ttl", opt(s, socket.IPPROTO_IP, socket.IP_TTL))
    out(f"{label}_so_rcvtimeo_default", s.getsockopt(SOL, socket.SO_RCVTIMEO, 16))
    s.setsockopt(SOL, socket.SO_RCVTIMEO, struct.pack("qq", 2, 500000))
    out(f"{label}_so_rcvtimeo_set", struct.unpack("qq", s.getsockopt(SOL, socket.SO_RCVTIMEO, 16)))

t = socket.socket()
out("tcp_nodelay_default", opt(t, TCP, socket.TCP_NODELAY))
t.setsockopt(TCP, socket.TCP_NODELAY, 1)
out("tcp_nodelay_set", opt(t, TCP, socket.TCP_NODELAY))
t.setsockopt(TCP, socket.TCP_NODELAY, 0)
out("tcp_nodelay_cleared", opt(t, TCP, socket.TCP_NODELAY))
out("tcp_cork_default", opt(t, TCP, socket.TCP_CORK))
t.setsockopt(TCP, socket.TCP_CORK, 1)
out("tcp_cork_set", opt(t, TCP, socket.TCP_CORK))
out("udp_tcp_nodelay", opt(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), TCP, socket.TCP_NODELAY))
out("unknown_option", opt(t, SOL, 9999))
lst = socket.socket()
for level, name, value in ((TCP, socket.TCP_NODELAY, 1), (SOL, socket.SO_KEEPALIVE, 1), (SOL, socket.SO_SNDBUF, 65536)):
    lst.setsockopt(level, name, value)
lst.bind(("127.0.0.1", 0))
lst.listen()
out("listener_so_acceptconn", opt(lst, SOL, socket.SO_ACCEPTCONN))
c = socket.create_connection(lst.getsockname())
a, _ = lst.accept()
out("accepted_so_acceptconn", opt(a, SOL, socket.SO_ACCEPTCONN))
out("accepted_inherits_options", [opt(a, TCP, socket.TCP_NODELAY), opt(a, SOL, socket.SO_KEEPALIVE),
                                   opt(a, SOL, socket.SO_SNDBUF), opt(a, SOL, socket.SO_REUSEADDR)])
out("client_tcp_nodelay", opt(c, TCP, socket.TCP_NODELAY))
out("ip_tos_one_byte", call(c.setsockopt, socket.IPPROTO_IP, socket.IP_TOS, b"\x10"))
out("tcp_nodelay_short", call(c.setsockopt, TCP, socket.TCP_NODELAY, b"\x01"))
out("connected_so_error", opt(c, SOL, socket.SO_ERROR))
info = c.getsockopt(TCP, socket.TCP_INFO, 104)
out("tcp_info_state_established", info[0])
v6 = socket.socket(socket.AF_INET6)
out("v6_so_domain", opt(v6, SOL, socket.SO_DOMAIN))
out("v6_v6only", opt(v6, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
# options the model does not hold read as Linux's defaults, at the caller's length (sshd drops a
# connection whose IP_OPTIONS are not empty)
out("accepted_ip_options", call(a.getsockopt, socket.IPPROTO_IP, socket.IP_OPTIONS, 40))
out("client_so_linger_default", call(c.getsockopt, SOL, socket.SO_LINGER, 8))
out("tcp_so_bindtodevice_default", call(t.getsockopt, SOL, socket.SO_BINDTODEVICE, 16))
out("tcp_keepidle_default", opt(t, TCP, socket.TCP_KEEPIDLE))
out("tcp_congestion_default", call(t.getsockopt, TCP, socket.TCP_CONGESTION, 16))
# IP_MTU (ip(7); not in Python's socket module): the path MTU once connected (lo here), ENOTCONN before
IP_MTU = 14
out("ip_mtu_unconnected", call(t.getsockopt, socket.IPPROTO_IP, IP_MTU))
mtu_listener = socket.create_server(("127.0.0.1", 0))
mtu_client = socket.create_connection(mtu_listener.getsockname())
mtu_accepted, _ = mtu_listener.accept()
out("ip_mtu_connected", [opt(mtu_client, socket.IPPROTO_IP, IP_MTU), opt(mtu_accepted, socket.IPPROTO_IP, IP_MTU)])
