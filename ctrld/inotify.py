"""Minimal inotify binding (ctypes): one non-blocking fd to hand to the event loop's add_reader."""

from __future__ import annotations

import ctypes
import os
import struct

IN_ACCESS = 0x1
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len

# The C library already loaded in this process (ctypes.util.find_library runs ldconfig and imports
# shutil, tempfile, bz2, lzma...: ~1 MiB of the idle daemon for nothing).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class Inotify:
    def __init__(self):
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")

    def add_watch(self, path: str, mask: int) -> int:
        """Add or *replace* the mask of the watch on `path`; returns its watch descriptor."""
        return _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), mask), f"inotify_add_watch {path}")

    def rm_watch(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)  # EINVAL when the kernel already dropped it: fine

    def read(self) -> list[tuple[int, int, str]]:
        """Read every queued event: [(wd, mask, name)] ('' for events on the watched object)."""
        events = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, n = _EVENT.unpack_from(data, pos)
                name = data[pos + _EVENT.size : pos + _EVENT.size + n].rstrip(b"\0")
                events.append((wd, mask, os.fsdecode(name)))
                pos += _EVENT.size + n

    def close(self) -> None:
        os.close(self.fd)
