"""The server half of udp_client.py (two hosts)."""

import socket
import struct

from common import args, out

ip, port = args()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, port))
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # another port of this host
while True:
    data, client = s.recvfrom(100)
    if data == b"hello":
        s.sendto(b"pong", client)
    elif data == b"next":
        break
out("client_source_port_stable", s.recvfrom(100) == (b"again", client))
# the client is now connected to (ip, port): a datagram from another port must not reach it
other.sendto(b"intruder", client)
s.sendto(b"from-peer", client)
out("server_done", s.recvfrom(100)[0])

# a reply from the address the request was sent to (ip(7) IP_PKTINFO, as DNS servers do)
s.setsockopt(socket.IPPROTO_IP, 8, 1)   # IP_PKTINFO
data, anc, flags, src = s.recvmsg(100, 256)
ifindex, spec, addr = struct.unpack("I4s4s", anc[0][2])
out("pktinfo_request", (data, [(lvl, typ) for lvl, typ, _ in anc]))
out("pktinfo_reply", s.sendmsg([b"pkt-reply"], [(socket.IPPROTO_IP, 8, struct.pack("I4s4s", 0, addr, bytes(4)))],
                               0, src))
