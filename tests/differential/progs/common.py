"""Shared by the differential programs: print one `key: value` line per observed behaviour.

Values are what Linux answers (an errno name, a flag set, a count), never a port the kernel chose,
an address that differs between 127.0.0.1 and a simulated host, or a duration: the test compares
these lines with the same program's output on the real kernel.
"""

import ctypes
import errno
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)


def out(key, value) -> None:
    print(f"{key}: {value}", flush=True)


def call(fn, *args, **kwargs):
    """fn(*args): its result ('ok' for None), or the errno's name if it fails."""
    try:
        r = fn(*args, **kwargs)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok" if r is None else r


def cerr(rc):
    """A libc call's result through ctypes: rc, or the errno's name."""
    if rc < 0:
        return errno.errorcode.get(ctypes.get_errno(), "?")
    return rc


POLL_BITS = [("IN", 0x1), ("PRI", 0x2), ("OUT", 0x4), ("ERR", 0x8), ("HUP", 0x10), ("RDHUP", 0x2000)]


def poll_bits(fd, events=0x1 | 0x4 | 0x2000, timeout_ms=0) -> str:
    """poll(2) on one descriptor, its revents by name."""
    import select
    p = select.poll()
    p.register(fd, events)
    got = p.poll(timeout_ms)
    rev = got[0][1] if got else 0
    return "|".join(n for n, b in POLL_BITS if rev & b) or "none"


def fd_flags(fd) -> str:
    import fcntl
    import os
    nb = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    cx = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    return f"nonblock={nb} cloexec={cx}"


def sockaddr_unspec() -> bytes:
    return struct.pack("<H14x", socket.AF_UNSPEC)


def disconnect(s) -> str:
    """connect(2) with AF_UNSPEC: a datagram socket forgets its peer."""
    raw = sockaddr_unspec()
    return cerr(libc.connect(s.fileno(), ctypes.c_char_p(raw), len(raw)))


def accept4(listener, flags: int):
    """accept4(2) through libc (Python's accept always adds SOCK_CLOEXEC)."""
    fd = libc.accept4(listener.fileno(), None, None, flags)
    if fd < 0:
        return None, cerr(fd)
    return socket.socket(fileno=fd), "ok"


def args():
    return sys.argv[1], int(sys.argv[2])
