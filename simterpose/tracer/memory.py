"""Bulk access to a tracee's memory, and codecs for the structures syscalls pass by pointer.

Reads and writes go through one open /proc/PID/mem file per process (os.pread/os.pwrite): ~1 µs for
small structures, several GB/s for large buffers, and unlike process_vm_writev it also writes to
read-only pages. The fd must be reopened after every exec (the address space is replaced).
"""

import os
import socket
import struct

PAGE = 4096


class MemoryError_(OSError):
    """A tracee address could not be read or written (EFAULT for the syscall that passed it)."""


class Memory:
    def __init__(self, pid: int):
        self.pid = pid
        self._fd = -1

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        return self._fd

    def reopen(self, pid: int | None = None) -> None:
        """After an exec the process has a new address space (and possibly a new pid)."""
        self.close()
        if pid is not None:
            self.pid = pid

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- raw bytes ---------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        try:
            data = os.pread(self._open(), size, addr)
        except OSError as e:
            raise MemoryError_(e.errno, f"read {size} bytes at {addr:#x} in {self.pid}: {e.strerror}") from None
        if len(data) != size:
            # A short read means the range crosses into an unmapped page: a fault, as for the kernel.
            raise MemoryError_(14, f"short read at {addr:#x} in {self.pid} ({len(data)}/{size})")
        return data

    def read_into(self, addr: int, buf) -> int:
        """Read len(buf) bytes into a preallocated buffer (no intermediate copy)."""
        try:
            return os.preadv(self._open(), [buf], addr)
        except OSError as e:
            raise MemoryError_(e.errno, f"read at {addr:#x} in {self.pid}: {e.strerror}") from None

    def write(self, addr: int, data) -> None:
        if not data:
            return
        try:
            n = os.pwrite(self._open(), data, addr)
        except OSError as e:
            raise MemoryError_(e.errno, f"write {len(data)} bytes at {addr:#x} in {self.pid}: {e.strerror}") from None
        if n != len(data):
            raise MemoryError_(14, f"short write at {addr:#x} in {self.pid} ({n}/{len(data)})")

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string, read page by page so a string ending just before an unmapped page
        is still read."""
        out = bytearray()
        while len(out) < limit:
            chunk = min(PAGE - (addr % PAGE), limit - len(out))
            data = self.read(addr, chunk)
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                return bytes(out)
            out += data
            addr += chunk
        return bytes(out)

    # -- integers ---------------------------------------------------------------------------
    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def read_i32(self, addr: int) -> int:
        return struct.unpack("<i", self.read(addr, 4))[0]

    def write_i32(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<i", value))

    # -- time structures ---------------------------------------------------------------------
    def read_timespec(self, addr: int) -> tuple[int, int]:
        return struct.unpack("<qq", self.read(addr, 16))

    def write_timespec(self, addr: int, sec: int, nsec: int) -> None:
        self.write(addr, struct.pack("<qq", sec, nsec))

    def read_timeval(self, addr: int) -> tuple[int, int]:
        return struct.unpack("<qq", self.read(addr, 16))

    def write_timeval(self, addr: int, sec: int, usec: int) -> None:
        self.write(addr, struct.pack("<qq", sec, usec))

    # -- I/O vectors and poll sets -----------------------------------------------------------
    def read_iovec(self, addr: int, count: int) -> list[tuple[int, int]]:
        """struct iovec[count] -> [(base, len), ...]"""
        raw = self.read(addr, 16 * count)
        return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]

    def write_iovec(self, addr: int, iov: list[tuple[int, int]]) -> None:
        self.write(addr, b"".join(struct.pack("<QQ", b, n) for b, n in iov))

    def gather(self, iov: list[tuple[int, int]], limit: int | None = None) -> bytes:
        """Concatenate the bytes an iovec array points to (what writev would send)."""
        if len(iov) == 1:  # read(2)/write(2): one buffer, one copy
            base, n = iov[0]
            return self.read(base, n if limit is None else max(0, min(n, limit)))
        parts, total = [], 0
        for base, n in iov:
            if limit is not None:
                n = min(n, limit - total)
            if n <= 0:
                break
            parts.append(self.read(base, n))
            total += n
        return b"".join(parts)

    def scatter(self, iov: list[tuple[int, int]], data: bytes) -> int:
        """Spread data over an iovec array (what readv would do); returns the bytes written."""
        if len(iov) == 1 and len(data) <= iov[0][1]:
            self.write(iov[0][0], data)
            return len(data)
        off = 0
        for base, n in iov:
            if off >= len(data):
                break
            piece = data[off : off + n]
            self.write(base, piece)
            off += len(piece)
        return off

    def read_pollfds(self, addr: int, nfds: int) -> list[tuple[int, int, int]]:
        """struct pollfd[nfds] -> [(fd, events, revents), ...]"""
        raw = self.read(addr, 8 * nfds)
        return [struct.unpack_from("<ihh", raw, 8 * i) for i in range(nfds)]

    def write_pollfds(self, addr: int, pollfds: list[tuple[int, int, int]]) -> None:
        self.write(addr, b"".join(struct.pack("<ihh", fd, ev, rev) for fd, ev, rev in pollfds))

    # -- socket addresses --------------------------------------------------------------------
    def read_sockaddr(self, addr: int, length: int) -> "SockAddr":
        return decode_sockaddr(self.read(addr, length))

    def write_sockaddr(self, addr: int, len_addr: int, sa: "SockAddr") -> int:
        """Store a sockaddr the way the kernel does for accept/getsockname/recvfrom: truncated to the
        caller's buffer size (read from *len_addr), with *len_addr set to the full length."""
        raw = encode_sockaddr(sa)
        room = self.read_i32(len_addr)
        if room < 0:
            raise MemoryError_(22, "negative socklen")
        self.write(addr, raw[:room])
        self.write_i32(len_addr, len(raw))
        return len(raw)


class SockAddr(tuple):
    """(family, address, port[, flowinfo, scope_id]) for INET/INET6, (AF_UNIX, path) for unix sockets.
    `address` is text ("10.0.0.1", "::1"); a unix path is bytes (abstract names start with NUL)."""

    __slots__ = ()

    @property
    def family(self) -> int:
        return self[0]


def decode_sockaddr(raw: bytes) -> SockAddr:
    if len(raw) < 2:
        raise ValueError("sockaddr shorter than its family field")
    family = struct.unpack_from("<H", raw)[0]
    if family == socket.AF_INET:
        if len(raw) < 16:
            raise ValueError("sockaddr_in too short")
        port = struct.unpack_from(">H", raw, 2)[0]
        return SockAddr((family, socket.inet_ntop(socket.AF_INET, raw[4:8]), port))
    if family == socket.AF_INET6:
        if len(raw) < 24:
            raise ValueError("sockaddr_in6 too short")
        port, flow = struct.unpack_from(">HI", raw, 2)
        scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
        return SockAddr((family, socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope))
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path and path[0] != 0:
            path = path.split(b"\0", 1)[0]
        return SockAddr((family, bytes(path)))
    return SockAddr((family, bytes(raw[2:])))


def encode_sockaddr(sa: SockAddr) -> bytes:
    family = sa[0]
    if family == socket.AF_INET:
        return struct.pack("<H", family) + struct.pack(">H", sa[2]) + socket.inet_pton(socket.AF_INET, sa[1]) + b"\0" * 8
    if family == socket.AF_INET6:
        flow = sa[3] if len(sa) > 3 else 0
        scope = sa[4] if len(sa) > 4 else 0
        return (struct.pack("<H", family) + struct.pack(">HI", sa[2], flow)
                + socket.inet_pton(socket.AF_INET6, sa[1]) + struct.pack("<I", scope))
    if family == socket.AF_UNIX:
        path = sa[1]
        if path and path[0] != 0:
            path = path + b"\0"
        return struct.pack("<H", family) + path
    raise ValueError(f"cannot encode sockaddr of family {family}")
