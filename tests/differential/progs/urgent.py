"""recv(2) with MSG_OOB on TCP sockets when no urgent data is pending (tcp_recvmsg, tcp_recv_urg):
EINVAL, whether data is queued or not, blocking or not, connected or not; ENOTCONN on a listener.
(Sending urgent data is not modelled: the emulator refuses it by name, see test_network.)"""

import socket

from common import call, out

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
port = listener.getsockname()[1]
out("oob_listener", call(listener.recv, 1, socket.MSG_OOB))

client = socket.create_connection(("127.0.0.1", port))
accepted, _ = listener.accept()
out("oob_nothing_queued", call(accepted.recv, 1, socket.MSG_OOB))
client.sendall(b"abc")
out("normal_read", accepted.recv(1).decode())
out("oob_with_data_queued", call(accepted.recv, 1, socket.MSG_OOB))
accepted.setblocking(False)
out("oob_nonblocking", call(accepted.recv, 1, socket.MSG_OOB))
accepted.setblocking(True)
out("oob_recvmsg", call(lambda: accepted.recvmsg(1, 0, socket.MSG_OOB)))
out("rest", accepted.recv(8).decode())

fresh = socket.socket()
out("oob_unconnected", call(fresh.recv, 1, socket.MSG_OOB))
out("send_oob_unconnected", call(fresh.send, b"x", socket.MSG_OOB | socket.MSG_NOSIGNAL))
fresh.close()
client.close()
accepted.close()
