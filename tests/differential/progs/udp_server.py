"""The server half of udp_client.py (two hosts)."""

import socket

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
