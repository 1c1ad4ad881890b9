"""TCP resets (tcp_close, tcp_reset): a socket closed with bytes unread, or with SO_LINGER {1, 0},
resets its connection instead of closing it; so does a listener closed with connections it never
accepted. The peer reads what came before the reset, then ECONNRESET once, then the end; polls
POLLERR|POLLHUP; writes fail (the pending error first, without SIGPIPE; then EPIPE)."""

import errno
import select
import socket
import struct
import time

from common import call, out


def pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    return client, accepted


def bits(s) -> str:
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLOUT | select.POLLRDHUP)
    got = p.poll(0)
    rev = got[0][1] if got else 0
    names = [("IN", 0x1), ("OUT", 0x4), ("ERR", 0x8), ("HUP", 0x10), ("RDHUP", 0x2000)]
    return "|".join(n for n, b in names if rev & b) or "none"


def recv(s):
    try:
        return s.recv(100)
    except OSError as e:
        return errno.errorcode[e.errno]


def send(s):
    try:
        return s.send(b"x", socket.MSG_NOSIGNAL)
    except OSError as e:
        return errno.errorcode[e.errno]


# closed with bytes unread: the peer gets what was sent before, then the reset
client, server = pair()
client.send(b"never read")
server.send(b"hello")
time.sleep(0.05)
server.close()
time.sleep(0.05)
out("unread_poll", bits(client))
out("unread_reads", [recv(client), recv(client), recv(client)])
out("unread_write_after", send(client))

# SO_LINGER {1, 0}: an abortive close even with nothing unread
client, server = pair()
server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
out("linger_get", struct.unpack("ii", server.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)))
server.close()
time.sleep(0.05)
out("linger_so_error", client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
out("linger_poll_after_so_error", bits(client))
out("linger_reads", [recv(client), recv(client)])

# the first write after a reset reports it, the next ones EPIPE
client, server = pair()
server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
server.close()
time.sleep(0.05)
out("writes_after_reset", [send(client), send(client)])

# an orderly close (everything read): no reset
client, server = pair()
client.send(b"read")
time.sleep(0.05)
server.recv(100)
server.close()
time.sleep(0.05)
out("orderly_poll", bits(client))
out("orderly_reads", [recv(client), recv(client)])

# a listener closed with a connection it never accepted
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
waiting = socket.create_connection(listener.getsockname())
time.sleep(0.05)
listener.close()
time.sleep(0.05)
out("unaccepted_poll", bits(waiting))
out("unaccepted_reads", [recv(waiting), recv(waiting)])

# shut down for writing first (FIN), then closed with bytes unread: the reset finds the peer in
# CLOSE_WAIT (EPIPE, not ECONNRESET)
client, server = pair()
client.send(b"never read")
server.shutdown(socket.SHUT_WR)
time.sleep(0.05)
out("close_wait_first_read", recv(client))
server.close()
time.sleep(0.05)
out("close_wait_so_error", errno.errorcode.get(client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0))
out("close_wait_write", call(client.send, b"x", socket.MSG_NOSIGNAL))
