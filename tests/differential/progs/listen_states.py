"""listen(2) on TCP sockets in each state of a connection (inet_listen: EINVAL unless the socket is
unconnected; a refused attempt leaves it unconnected)."""

import socket
import time

from common import call, out

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
port = listener.getsockname()[1]
out("listen_twice", call(listener.listen, 2))

client = socket.create_connection(("127.0.0.1", port))
accepted, _ = listener.accept()
out("listen_connected", call(client.listen, 1))
out("listen_accepted", call(accepted.listen, 1))
accepted.close()
time.sleep(0.05)
out("listen_connected_peer_closed", call(client.listen, 1))
client.shutdown(socket.SHUT_RDWR)
out("listen_connected_after_shutdown", call(client.listen, 1))
client.close()

closed = socket.socket()
closed.bind(("127.0.0.1", 0))
closed_port = closed.getsockname()[1]
closed.close()
refused = socket.socket()
out("refused", call(refused.connect, ("127.0.0.1", closed_port)))
out("listen_after_refused", call(refused.listen, 1))

connecting = socket.socket()
connecting.setblocking(False)
out("nonblocking_connect", connecting.connect_ex(("127.0.0.1", port)))
out("listen_while_connecting", call(connecting.listen, 1))
time.sleep(0.05)
out("listen_after_nonblocking_connect", call(connecting.listen, 1))
