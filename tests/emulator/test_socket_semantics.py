"""recv/send flags and end-of-connection semantics, compared with the real kernel.

The same two Python programs run natively on 127.0.0.1 and emulated on two simulated hosts, in both
mediation modes: their outputs must be identical. They exercise partial reads, MSG_PEEK,
MSG_WAITALL, MSG_DONTWAIT, FIONREAD-free EAGAIN, half-close (shutdown), EOF, and EPIPE (and the
SIGPIPE that comes with it) once the peer is gone.
"""

import pytest
from net_helpers import PYTHON, emulate, free_port, native, py

SERVER = r"""
import errno, signal, socket, sys, time
pipes = []
signal.signal(signal.SIGPIPE, lambda *a: pipes.append("SIGPIPE"))
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen()
c, _ = l.accept()
print("peek", c.recv(5, socket.MSG_PEEK))
print("read", c.recv(5))                      # the peeked bytes are still there
print("waitall", len(c.recv(3000, socket.MSG_WAITALL)))  # sent in three pieces
try:
    c.recv(10, socket.MSG_DONTWAIT)
except BlockingIOError as e:
    print("dontwait", errno.errorcode[e.errno])
c.sendall(b"reply")
print("eof", c.recv(10), c.recv(10))          # the client shut down its side: EOF, and again EOF
c.sendall(b"after-eof")                       # still allowed: only the client's writing side is shut
time.sleep(0.5)                               # the client closes meanwhile
sent = 0
try:
    for _ in range(3):  # the peer is gone: the first write still "succeeds" (the peer answers it
        c.send(b"x" * 10)  # with a reset), the next one fails with EPIPE, and SIGPIPE
        sent += 1
        time.sleep(0.1)
    print("no EPIPE")
except BrokenPipeError:
    print("EPIPE after", sent, "write")
time.sleep(0.01)  # Python runs signal handlers between bytecodes: let it have happened
print("SIGPIPE delivered", bool(pipes))
"""

CLIENT = r"""
import socket, sys, time
for _ in range(1000):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); break
    except ConnectionRefusedError:
        time.sleep(0.01)
s.sendall(b"hello")
for piece in (b"a" * 1000, b"b" * 1000, b"c" * 1000):
    time.sleep(0.05)
    s.sendall(piece)
print("reply", s.recv(5))
s.shutdown(socket.SHUT_WR)
print("after-eof", s.recv(100))
try:
    s.send(b"late")
except BrokenPipeError:
    print("write after shutdown: EPIPE")
s.close()
"""


@pytest.fixture(scope="module")
def native_outputs():
    port = free_port()
    server, client = native([PYTHON, "-c", SERVER, "127.0.0.1", port], [PYTHON, "-c", CLIENT, "127.0.0.1", port])
    return server, client


@pytest.mark.parametrize("mode", ["address-translation", "full-mediation"])
def test_flags_half_close_eof_and_epipe_behave_as_on_a_real_kernel(tmp_path, mode, native_outputs):
    r = emulate(tmp_path, [py("h1", SERVER, "0.0.0.0", 5000), py("h2", CLIENT, "h1", 5000, start_time=0.1)],
                mode).check_ok()
    server, client = native_outputs
    assert server == ("peek b'hello'\nread b'hello'\nwaitall 3000\ndontwait EAGAIN\neof b'' b''\n"
                      "EPIPE after 1 write\nSIGPIPE delivered True\n")
    assert client == "reply b'reply'\nafter-eof b'after-eof'\nwrite after shutdown: EPIPE\n"
    assert r.stdout(0) == server
    assert r.stdout(1) == client
