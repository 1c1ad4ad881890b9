"""epoll(7) as Linux has it, proven differentially: the same programs natively and in both modes.

A server drives a client step by step over one TCP connection (it tells the client what to send
next), and prints what its epoll set reports at each step: edge-triggered partial reads and drains,
level triggering, EPOLLONESHOT and re-arming with EPOLL_CTL_MOD, EPOLL_CTL_MOD to EPOLLOUT|EPOLLET,
a nested epoll set, an eventfd written by another thread and a timerfd in one set with a socket,
the close of a registered descriptor, a registration through a dup'ed descriptor that outlives it,
and EPOLLRDHUP. "No event" is asked with a short timeout: natively that is real time, emulated it is
simulated time, and the answers must be the same.
"""

import pytest
from net_helpers import PYTHON, emulate, free_port, native, py

SERVER = r"""
import ctypes, os, select, socket, struct, sys, threading
from select import EPOLLIN as IN, EPOLLOUT as OUT, EPOLLET as ET, EPOLLONESHOT as ONESHOT, EPOLLRDHUP as RDHUP

libc = ctypes.CDLL(None, use_errno=True)
BITS = [("IN", select.EPOLLIN), ("OUT", select.EPOLLOUT), ("RDHUP", select.EPOLLRDHUP),
        ("ERR", select.EPOLLERR), ("HUP", select.EPOLLHUP)]
names = {}

def show(what, events):
    print(what, [(names.get(fd, fd), "|".join(n for n, b in BITS if m & b)) for fd, m in events], flush=True)

l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(); l.setblocking(False)
ep = select.epoll()
ep.register(l, IN | ET); names[l.fileno()] = "listener"
show("listener", ep.poll(10))
c, _ = l.accept(); c.setblocking(False); names[c.fileno()] = "conn"
ep.unregister(l)

def ask(cmd):
    c.sendall(cmd.encode() + b"\n")

def drain():
    n = 0
    while True:
        try:
            b = c.recv(4096)
        except BlockingIOError:
            return n
        if not b:
            return n
        n += len(b)

# 1. edge-triggered: a partial read leaves data, but no new edge; new data is a new edge
ep.register(c, IN | ET)
ask("send 100"); show("et", ep.poll(10))
print("read", len(c.recv(10)))
show("et-partial", ep.poll(0.2))
ask("send 50"); show("et-new-data", ep.poll(10))
print("drained", drain())
show("et-drained", ep.poll(0.2))

# 2. level-triggered: reported as long as data is there
ep.modify(c, IN)
ask("send 20"); show("lt", ep.poll(10))
print("read", len(c.recv(5)))
show("lt-partial", ep.poll(0.2))
print("drained", drain())
show("lt-drained", ep.poll(0.2))

# 3. one-shot: one report, then nothing until EPOLL_CTL_MOD re-arms it
ep.modify(c, IN | ONESHOT)
ask("send 20"); show("oneshot", ep.poll(10))
print("drained", drain())
ask("send 20"); show("oneshot-disarmed", ep.poll(0.3))
ep.modify(c, IN | ONESHOT); show("oneshot-rearmed", ep.poll(10))
print("drained", drain())

# 4. EPOLL_CTL_MOD to EPOLLOUT|EPOLLET: writable once, then no new edge; data arriving is an
#    edge that reports everything ready
ep.modify(c, OUT | ET); show("out-et", ep.poll(10))
show("out-et-again", ep.poll(0.2))
ep.modify(c, IN | OUT | ET)
show("in-out-et-mod", ep.poll(10))
ask("send 30"); show("in-out-et-data", ep.poll(10))
print("drained", drain())
ep.unregister(c)

# 5. a nested epoll set: the outer one reports the inner one while it has events
inner = select.epoll(); names[inner.fileno()] = "inner"
inner.register(c, IN)
ep.register(inner.fileno(), IN)
show("nested-idle", ep.poll(0.2))
ask("send 5"); show("nested", ep.poll(10))
show("nested-inner", inner.poll(0))
print("drained", drain())
show("nested-drained", ep.poll(0.2))
ep.unregister(inner.fileno()); inner.close()

# 6. an eventfd written by another thread and a timerfd, in one set with the socket
efd = os.eventfd(0, os.EFD_NONBLOCK); names[efd] = "eventfd"
tfd = libc.timerfd_create(1, os.O_NONBLOCK); names[tfd] = "timerfd"
libc.timerfd_settime(tfd, 0, struct.pack("qqqq", 0, 0, 0, 400_000_000), None)  # in 0.4 s
ep.register(efd, IN); ep.register(tfd, IN); ep.register(c, IN)
threading.Timer(0.1, lambda: os.eventfd_write(efd, 3)).start()
show("first", ep.poll(10))
print("eventfd", os.eventfd_read(efd))
show("second", ep.poll(10))
print("timerfd", struct.unpack("Q", os.read(tfd, 8))[0])
show("none-left", ep.poll(0.2))
for fd in (efd, tfd):
    ep.unregister(fd); os.close(fd)

# 7. closing the only descriptor of a registered file removes it from the set
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[1], 0)); names[u.fileno()] = "udp"
ep.register(u, OUT); ep.unregister(c)
show("udp", ep.poll(0.2))
u.close()
show("udp-closed", ep.poll(0.2))

# 8. a registration through a dup'ed descriptor outlives that descriptor (the file is still open)
d = os.dup(c.fileno()); names[d] = "dup"
ep.register(d, IN | ONESHOT); os.close(d)
ask("send 7"); show("dup-closed", ep.poll(10))
print("drained", drain())

# 9. the peer shuts its side: EPOLLRDHUP, once (edge-triggered)
ep.register(c, IN | RDHUP | ET)
ask("shutdown"); show("rdhup", ep.poll(10))
print("eof", c.recv(10))
show("rdhup-again", ep.poll(0.2))
ask("end")
print("done")
"""

CLIENT = r"""
import socket, sys, time
for _ in range(1000):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); break
    except ConnectionRefusedError:
        time.sleep(0.01)
f = s.makefile("rb")
for line in f:
    cmd = line.split()
    if cmd[0] == b"send":
        s.sendall(b"x" * int(cmd[1]))
    elif cmd[0] == b"shutdown":
        s.shutdown(socket.SHUT_WR)
    elif cmd[0] == b"end":
        break
print("client done")
"""

EXPECTED = """\
listener [('listener', 'IN')]
et [('conn', 'IN')]
read 10
et-partial []
et-new-data [('conn', 'IN')]
drained 140
et-drained []
lt [('conn', 'IN')]
read 5
lt-partial [('conn', 'IN')]
drained 15
lt-drained []
oneshot [('conn', 'IN')]
drained 20
oneshot-disarmed []
oneshot-rearmed [('conn', 'IN')]
drained 20
out-et [('conn', 'OUT')]
out-et-again []
in-out-et-mod [('conn', 'OUT')]
in-out-et-data [('conn', 'IN|OUT')]
drained 30
nested-idle []
nested [('inner', 'IN')]
nested-inner [('conn', 'IN')]
drained 5
nested-drained []
first [('eventfd', 'IN')]
eventfd 3
second [('timerfd', 'IN')]
timerfd 1
none-left []
udp [('udp', 'OUT')]
udp-closed []
dup-closed [('dup', 'IN')]
drained 7
rdhup [('conn', 'IN|RDHUP')]
eof b''
rdhup-again []
done
"""


@pytest.fixture(scope="module")
def native_output():
    port = free_port()
    server, client = native([PYTHON, "-c", SERVER, "127.0.0.1", port], [PYTHON, "-c", CLIENT, "127.0.0.1", port])
    assert client == "client done\n"
    return server


def test_the_native_run_shows_linux_semantics(native_output):
    # What the emulated runs are compared with: Linux's own answers (and the test's premises).
    assert native_output == EXPECTED


@pytest.mark.parametrize("mode", ["address-translation", "full-mediation"])
def test_epoll_reports_what_linux_reports(tmp_path, mode, native_output):
    r = emulate(tmp_path, [py("h1", SERVER, "0.0.0.0", 5000), py("h2", CLIENT, "h1", 5000, start_time=0.1)],
                mode).check_ok()
    assert r.stdout(0) == native_output
    assert r.stdout(1) == "client done\n"
