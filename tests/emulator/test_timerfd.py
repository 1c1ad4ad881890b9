"""timerfd runs on the simulated clock: expirations, read(), and readiness in poll and epoll."""

from net_helpers import emulate, py

TIMERFD = r"""
import ctypes, os, select, struct, time
libc = ctypes.CDLL(None, use_errno=True)
BOOT = 86_400   # simulated uptime at date 0: print dates, not uptimes
def now():
    return time.monotonic() - BOOT
fd = libc.timerfd_create(time.CLOCK_MONOTONIC, 0)
# first expiry after 1.5 s, then every 0.25 s
libc.timerfd_settime(fd, 0, struct.pack("qqqq", 0, 250_000_000, 1, 500_000_000), None)
def expirations():
    return struct.unpack("Q", os.read(fd, 8))[0]
print("read", expirations(), now())
p = select.poll(); p.register(fd, select.POLLIN)
print("poll", p.poll(), now())
print("read", expirations(), now())
time.sleep(1)
print("read", expirations(), now())
e = select.epoll(); e.register(fd, select.EPOLLIN)
print("epoll", e.poll(), now())
cur = ctypes.create_string_buffer(32)
libc.timerfd_gettime(fd, cur)
print("gettime", struct.unpack("qqqq", cur.raw))
libc.timerfd_settime(fd, 1, struct.pack("qqqq", 0, 0, BOOT + 10, 0), None)   # absolute: at 10 s, once
print("read", expirations(), now())
"""


def test_timerfd_expires_in_simulated_time(tmp_path):
    r = emulate(tmp_path, [py("h1", TIMERFD)], "address-translation").check_ok()
    assert r.stdout(0).splitlines() == [
        "read 1 1.5",
        "poll [(3, 1)] 1.75",
        "read 1 1.75",
        "read 4 2.75",        # 2.0, 2.25, 2.5 and 2.75 expired during the sleep
        "epoll [(3, 1)] 3.0",
        "gettime (0, 250000000, 0, 250000000)",  # it just expired at 3.0: the next is a period away
        "read 1 10.0",
    ]
    assert r.end(0) == 10.0
