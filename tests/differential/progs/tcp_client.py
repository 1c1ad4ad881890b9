"""A client on another host (tcp(7), send(2), writev(2), recvmsg(2), shutdown(2))."""

import os
import signal
import socket
import time

from common import args, call, out, poll_bits

server, port = args()
for _ in range(1000):
    s = socket.socket()
    try:
        s.connect((server, port))
        break
    except ConnectionRefusedError:
        s.close()
        time.sleep(0.01)
target = s.getpeername()
out("getpeername_port", target[1] == port)
local = s.getsockname()
s.sendall(f"{local[0]} {local[1]} {target[0]}".encode().ljust(64))

# large blocking writes return the whole count (write(2): short counts are for non-blocking sockets)
pattern = bytes(range(256)) * 4096                    # 1 MiB
big = pattern * 9
parts = [pattern * 3, pattern * 3, pattern * 2 + pattern[:512 * 1024]]
total = len(big) + 8 * len(pattern) + sum(map(len, parts))
s.sendall(str(total).encode().ljust(16))
out("send_9MiB", s.send(big))
out("write_8MiB", os.write(s.fileno(), pattern * 8))
out("writev_3_iovecs", os.writev(s.fileno(), parts))

out("sendmsg_iovecs", s.sendmsg([b"ab", b"cde", b"f"]))
bufs = [bytearray(1), bytearray(2), bytearray(3)]
out("recvmsg_into_iovecs", (s.recvmsg_into(bufs, 0, socket.MSG_WAITALL)[0], [bytes(b) for b in bufs]))
out("peek", s.recv(6, socket.MSG_PEEK))
out("waitall", s.recv(11, socket.MSG_WAITALL))
out("poll_connected_idle", poll_bits(s.fileno()))
bufs = [bytearray(2), bytearray(2)]
s.shutdown(socket.SHUT_WR)
out("readv_after_shutdown", (os.readv(s.fileno(), bufs), [bytes(b) for b in bufs]))
out("eof", s.recv(10))
out("poll_after_both_closed", poll_bits(s.fileno()))
pipes = []
signal.signal(signal.SIGPIPE, lambda *a: pipes.append(1))
out("send_after_shutdown", call(s.send, b"late"))
time.sleep(0.01)
out("sigpipe", len(pipes))
out("send_nosignal", call(s.send, b"late", socket.MSG_NOSIGNAL))
out("sigpipe_after_nosignal", len(pipes))

# A socket bound to the wildcard address before connect(2) takes the source address of the route
# at connect (inet_hash_connect): getsockname and the server's accept/getpeername name it, never
# 0.0.0.0 (dig +tcp binds so; dnsmasq logged its TCP queries "from 0.0.0.0").
s2 = socket.socket()
s2.bind(("0.0.0.0", 0))
s2.connect((server, port))
local = s2.getsockname()
out("bound_any_getsockname_is_specific", local[0] != "0.0.0.0")
s2.sendall(f"{local[0]} {local[1]}".encode().ljust(64))
out("bound_any_closed_by_server", s2.recv(10))
