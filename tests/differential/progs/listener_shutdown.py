"""shutdown(2) of a listening TCP socket (inet_shutdown): SHUT_WR changes nothing; SHUT_RD and
SHUT_RDWR disconnect it (tcp_disconnect), which wakes an accept blocked in another thread with
EINVAL; the socket is then bound and unconnected (a second shutdown: ENOTCONN, and reads end)."""

import socket
import threading
import time

from common import call, out, poll_bits

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
port = listener.getsockname()[1]
listener.listen(8)

out("shut_wr", call(listener.shutdown, socket.SHUT_WR))
client = socket.create_connection(("127.0.0.1", port))
accepted, _ = listener.accept()
out("accept_after_shut_wr", "ok")
accepted.close()
client.close()

woken = []


def wait_accept():
    woken.append(call(listener.accept))


t = threading.Thread(target=wait_accept)
t.start()
time.sleep(0.2)  # the thread is in accept
out("shut_rdwr", call(listener.shutdown, socket.SHUT_RDWR))
t.join(5)
out("blocked_accept", woken[0] if woken else "still blocked")
out("accept_after_shutdown", call(listener.accept))
out("poll_after_shutdown", poll_bits(listener.fileno()))
out("shutdown_again", call(listener.shutdown, socket.SHUT_RDWR))
out("recv_after_shutdown", call(listener.recv, 1))

other = socket.socket()
other.bind(("127.0.0.1", 0))
other.listen(1)
out("shut_rd", call(other.shutdown, socket.SHUT_RD))
out("accept_after_shut_rd", call(other.accept))
other.close()
