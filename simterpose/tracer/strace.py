"""An strace-like formatter: turns syscalls seen by the engine into lines such as

    [pid 123] connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0

`StracePolicy` subscribes to the chosen syscalls and lets the kernel run every one of them, asking for
the exit stop (`Native(on_exit=...)`) so that results and output buffers are known when the line is
printed. Inputs (paths, sockaddrs, buffers sent) are decoded at the entry stop, because some are gone
by the exit stop (execve's arguments live in the replaced address space); outputs (buffers received,
sockaddrs filled by accept, timespecs) are decoded at the exit stop, only when the syscall succeeded,
like strace. A syscall that never returns (exit_group, a process killed while blocked in accept) is
printed with `= ?`.

Only what is cheap is decoded: fds and integers, strings, sockaddrs of every family, socket
domain/type/level/option names, MSG_* and open flags, timespecs/timevals, iovecs, msghdrs, pollfds,
execve's argv, wait statuses. Anything else is printed as a number (pointers in hex).
"""

from __future__ import annotations

import errno as errno_mod
import os
import signal
import socket
import struct
from typing import Callable, Optional

from . import names
from .engine import Policy, Process, Task
from .memory import MemoryError_
from .results import Errno, Native

# --- syscall classes (-e trace=%CLASS) ------------------------------------------------------------
CLASSES: dict[str, tuple[str, ...]] = {
    "network": ("socket", "socketpair", "bind", "listen", "accept", "accept4", "connect",
                "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
                "recvmmsg", "shutdown", "setsockopt", "getsockopt"),
    "time": ("clock_gettime", "clock_settime", "clock_getres", "clock_nanosleep", "gettimeofday",
             "settimeofday", "time", "nanosleep", "alarm", "setitimer", "getitimer", "timer_create",
             "timer_settime", "timer_gettime", "timer_delete", "timerfd_create", "timerfd_settime",
             "timerfd_gettime", "adjtimex", "clock_adjtime", "times"),
    "process": ("fork", "vfork", "clone", "clone3", "execve", "execveat", "exit", "exit_group",
                "wait4", "waitid", "kill", "tkill", "tgkill"),
    "file": ("open", "openat", "openat2", "creat", "stat", "lstat", "newfstatat", "statx", "access",
             "faccessat", "faccessat2", "execve", "execveat", "unlink", "unlinkat", "rename",
             "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "chdir", "chmod", "fchmodat",
             "chown", "lchown", "fchownat", "link", "linkat", "symlink", "symlinkat", "readlink",
             "readlinkat", "truncate", "utimensat", "mknod", "mknodat", "statfs", "getxattr",
             "setxattr", "listxattr", "removexattr", "chroot", "mount", "umount2", "inotify_add_watch"),
    "desc": ("read", "write", "readv", "writev", "pread64", "pwrite64", "close", "dup", "dup2",
             "dup3", "fcntl", "ioctl", "poll", "ppoll", "select", "pselect6", "epoll_create",
             "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "pipe", "pipe2", "eventfd2",
             "sendfile", "splice", "lseek", "fstat"),
    "signal": ("rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
               "sigaltstack", "kill", "tkill", "tgkill", "pause", "signalfd4"),
}
DEFAULT_SET = "%network,%time"
# Syscalls that do not return: printed at their entry with "= ?".
_NORETURN = {"exit", "exit_group", "rt_sigreturn"}


def parse_set(spec: str) -> set[int]:
    """'-e trace=SET': a comma list of syscall names and %classes ('all' for everything); a leading
    '!' negates the whole set, as in strace. Unknown names raise ValueError."""
    spec = spec.strip()
    if spec.startswith("trace="):
        spec = spec[len("trace="):]
    negate = spec.startswith("!")
    if negate:
        spec = spec[1:]
    chosen: set[int] = set()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if item == "all":
            chosen.update(names.NAMES)
        elif item.startswith("%"):
            cls = CLASSES.get(item[1:])
            if cls is None:
                raise ValueError(f"unknown syscall class {item!r} (known: "
                                 + ", ".join("%" + c for c in CLASSES) + ")")
            chosen.update(names.NUMBERS[n] for n in cls if n in names.NUMBERS)
        else:
            chosen.add(names.number(item))
    if negate:
        chosen = set(names.NAMES) - chosen
    return chosen


# --- value formatting -----------------------------------------------------------------------------
def quote(data: bytes, limit: int = 32, truncated: bool = False) -> str:
    """A buffer as strace shows it: C escapes, at most `limit` bytes, then '...' if there was more."""
    more = truncated or len(data) > limit
    data = data[:limit]
    out = ['"']
    for i, b in enumerate(data):
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 32 <= b < 127:
            out.append(c)
        else:
            nxt = data[i + 1] if i + 1 < len(data) else 0
            out.append(f"\\{b:03o}" if 48 <= nxt <= 57 else f"\\{b:o}")
    out.append('"')
    if more:
        out.append("...")
    return "".join(out)


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}


def _flags(value: int, table: list[tuple[int, str]], zero: str = "0") -> str:
    parts = []
    for bit, name in table:
        if bit and value & bit == bit:
            parts.append(name)
            value &= ~bit
    if value:
        parts.append(hex(value))
    return "|".join(parts) if parts else zero


def _const(value: int, table: dict[int, str]) -> str:
    return table.get(value, str(value))


def _ptr(v: int) -> str:
    return "NULL" if v == 0 else hex(v)


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_AF = {int(f): f.name for f in socket.AddressFamily}
_AF[0] = "AF_UNSPEC"
_SOCK = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET",
         6: "SOCK_DCCP", 10: "SOCK_PACKET"}
_SOCK_FLAGS = [(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")]
_IPPROTO = {0: "IPPROTO_IP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 1: "IPPROTO_ICMP",
            41: "IPPROTO_IPV6", 58: "IPPROTO_ICMPV6", 132: "IPPROTO_SCTP", 255: "IPPROTO_RAW"}
_SOL = {1: "SOL_SOCKET", 6: "SOL_TCP", 17: "SOL_UDP", 0: "SOL_IP", 41: "SOL_IPV6"}
_SO = {1: "SO_DEBUG", 2: "SO_REUSEADDR", 3: "SO_TYPE", 4: "SO_ERROR", 5: "SO_DONTROUTE",
       6: "SO_BROADCAST", 7: "SO_SNDBUF", 8: "SO_RCVBUF", 9: "SO_KEEPALIVE", 10: "SO_OOBINLINE",
       13: "SO_LINGER", 15: "SO_REUSEPORT", 20: "SO_RCVTIMEO", 21: "SO_SNDTIMEO",
       17: "SO_PEERCRED", 30: "SO_ACCEPTCONN", 38: "SO_PROTOCOL", 39: "SO_DOMAIN"}
_TCP_OPT = {1: "TCP_NODELAY", 2: "TCP_MAXSEG", 3: "TCP_CORK", 4: "TCP_KEEPIDLE", 5: "TCP_KEEPINTVL",
            6: "TCP_KEEPCNT", 9: "TCP_DEFER_ACCEPT", 12: "TCP_QUICKACK", 23: "TCP_FASTOPEN"}
_IPV6_OPT = {26: "IPV6_V6ONLY"}
_MSG = [(0x1, "MSG_OOB"), (0x2, "MSG_PEEK"), (0x4, "MSG_DONTROUTE"), (0x8, "MSG_CTRUNC"),
        (0x20, "MSG_TRUNC"), (0x40, "MSG_DONTWAIT"), (0x80, "MSG_EOR"), (0x100, "MSG_WAITALL"),
        (0x4000, "MSG_NOSIGNAL"), (0x8000, "MSG_MORE"), (0x40000000, "MSG_CMSG_CLOEXEC")]
_SHUT = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}
_CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
           3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
           6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
           9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
_O_ACC = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
_O_FLAGS = [(0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
            (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"),
            (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o2000000, "O_CLOEXEC"),
            (0o20200000, "O_TMPFILE"), (0o40000, "O_DIRECT"), (0o1000000, "O_NOATIME"),
            (0o10000000, "O_PATH"), (0o4010000, "O_SYNC"), (0o100000, "O_LARGEFILE")]
_POLL = [(0x1, "POLLIN"), (0x2, "POLLPRI"), (0x4, "POLLOUT"), (0x8, "POLLERR"), (0x10, "POLLHUP"),
         (0x20, "POLLNVAL"), (0x40, "POLLRDNORM"), (0x80, "POLLRDBAND"), (0x100, "POLLWRNORM"),
         (0x200, "POLLWRBAND"), (0x2000, "POLLRDHUP")]
_EPOLL_CTL = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
_CLONE = [(0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"),
          (0x1000, "CLONE_PIDFD"), (0x4000, "CLONE_VFORK"), (0x8000, "CLONE_PARENT"),
          (0x10000, "CLONE_THREAD"), (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"),
          (0x100000, "CLONE_PARENT_SETTID"), (0x200000, "CLONE_CHILD_CLEARTID"),
          (0x1000000, "CLONE_CHILD_SETTID")]
_RESTART = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
            516: "ERESTART_RESTARTBLOCK"}
_RESTART_MSG = {512: "To be restarted if SA_RESTART is set", 513: "To be restarted",
                514: "To be restarted if no handler", 516: "Interrupted by signal"}
# Syscalls whose result is an address, printed in hex.
_RET_PTR = {"mmap", "mremap", "brk", "shmat"}


def signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}" if sig < signal.SIGRTMIN else f"SIGRT_{sig - signal.SIGRTMIN}"


def format_sockaddr(raw: bytes) -> str:
    if len(raw) < 2:
        return "{sa_family=???}" if raw else "{}"
    family = struct.unpack_from("<H", raw)[0]
    fam = _AF.get(family, str(family))
    try:
        if family == socket.AF_INET and len(raw) >= 8:
            port = struct.unpack_from(">H", raw, 2)[0]
            addr = socket.inet_ntop(socket.AF_INET, raw[4:8])
            return f'{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("{addr}")}}'
        if family == socket.AF_INET6 and len(raw) >= 24:
            port, flow = struct.unpack_from(">HI", raw, 2)
            addr = socket.inet_ntop(socket.AF_INET6, raw[8:24])
            scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
            return (f"{{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl({flow}), "
                    f'inet_pton(AF_INET6, "{addr}", &sin6_addr), sin6_scope_id={scope}}}')
        if family == socket.AF_UNIX:
            path = raw[2:]
            if not path:
                return "{sa_family=AF_UNIX}"
            if path[0] == 0:
                return f"{{sa_family=AF_UNIX, sun_path=@{quote(path[1:], 108)}}}"
            path = path.split(b"\0", 1)[0]
            return f"{{sa_family=AF_UNIX, sun_path={quote(path, 108)}}}"
        if family == socket.AF_NETLINK and len(raw) >= 12:
            nl_pid, groups = struct.unpack_from("<II", raw, 4)
            return f"{{sa_family=AF_NETLINK, nl_pid={nl_pid}, nl_groups={groups:08x}}}"
    except (ValueError, OSError):
        pass
    return f"{{sa_family={fam}, sa_data={quote(raw[2:], 32)}}}"


# --- per-syscall argument specs ------------------------------------------------------------------
# Each argument is one kind; kinds are decoded by Formatter._arg at entry ("in" kinds) or at exit
# ("out" kinds, shown only on success). A kind may carry the index of a related argument ("buf:2": a
# buffer whose length is argument 2).
_SPECS: dict[str, tuple[str, ...]] = {
    "socket": ("domain", "socktype", "proto"),
    "socketpair": ("domain", "socktype", "proto", "out:fdpair"),
    "bind": ("fd", "sa:2", "int"),
    "connect": ("fd", "sa:2", "int"),
    "listen": ("fd", "int"),
    "accept": ("fd", "out:sa_ptr:2", "out:socklen"),
    "accept4": ("fd", "out:sa_ptr:2", "out:socklen", "sockflags"),
    "getsockname": ("fd", "out:sa_ptr:2", "out:socklen"),
    "getpeername": ("fd", "out:sa_ptr:2", "out:socklen"),
    "sendto": ("fd", "buf:2", "uint", "msgflags", "sa:5", "int"),
    "recvfrom": ("fd", "out:rbuf:2", "uint", "msgflags", "out:sa_ptr:5", "out:socklen"),
    "sendmsg": ("fd", "msghdr", "msgflags"),
    "recvmsg": ("fd", "out:msghdr", "msgflags"),
    "sendmmsg": ("fd", "ptr", "uint", "msgflags"),
    "recvmmsg": ("fd", "ptr", "uint", "msgflags", "ptr"),
    "shutdown": ("fd", "shut"),
    "setsockopt": ("fd", "sol", "sockopt", "optval:4", "int"),
    "getsockopt": ("fd", "sol", "sockopt", "out:optval_ptr:4", "out:socklen"),
    "read": ("fd", "out:rbuf:2", "uint"),
    "write": ("fd", "buf:2", "uint"),
    "pread64": ("fd", "out:rbuf:2", "uint", "int"),
    "pwrite64": ("fd", "buf:2", "uint", "int"),
    "readv": ("fd", "out:iov:2", "int"),
    "writev": ("fd", "iov:2", "int"),
    "close": ("fd",),
    "dup": ("fd",),
    "dup2": ("fd", "fd"),
    "dup3": ("fd", "fd", "oflags"),
    "pipe": ("out:fdpair",),
    "pipe2": ("out:fdpair", "oflags"),
    "poll": ("pollfds:1", "uint", "int"),
    "ppoll": ("pollfds:1", "uint", "ts", "ptr", "uint"),
    "epoll_ctl": ("fd", "epollop", "fd", "ptr"),
    "epoll_wait": ("fd", "ptr", "int", "int"),
    "epoll_pwait": ("fd", "ptr", "int", "int", "ptr", "uint"),
    "clock_gettime": ("clock", "out:ts"),
    "clock_getres": ("clock", "out:ts"),
    "clock_settime": ("clock", "ts"),
    "clock_nanosleep": ("clock", "int", "ts", "ptr"),
    "nanosleep": ("ts", "ptr"),
    "gettimeofday": ("out:tv", "ptr"),
    "settimeofday": ("tv", "ptr"),
    "time": ("out:time",),
    "alarm": ("uint",),
    "open": ("str", "oflags", "mode"),
    "openat": ("dirfd", "str", "oflags", "mode"),
    "creat": ("str", "mode"),
    "stat": ("str", "ptr"),
    "lstat": ("str", "ptr"),
    "newfstatat": ("dirfd", "str", "ptr", "hex"),
    "access": ("str", "mode"),
    "faccessat": ("dirfd", "str", "mode"),
    "faccessat2": ("dirfd", "str", "mode", "hex"),
    "unlink": ("str",),
    "unlinkat": ("dirfd", "str", "hex"),
    "mkdir": ("str", "mode"),
    "mkdirat": ("dirfd", "str", "mode"),
    "rmdir": ("str",),
    "chdir": ("str",),
    "rename": ("str", "str"),
    "renameat": ("dirfd", "str", "dirfd", "str"),
    "renameat2": ("dirfd", "str", "dirfd", "str", "hex"),
    "readlink": ("str", "out:rbuf:2", "uint"),
    "execve": ("str", "argv", "envp"),
    "execveat": ("dirfd", "str", "argv", "envp", "hex"),
    "exit": ("int",),
    "exit_group": ("int",),
    "wait4": ("pid", "out:wstatus", "hex", "ptr"),
    "kill": ("pid", "sig"),
    "tkill": ("pid", "sig"),
    "tgkill": ("pid", "pid", "sig"),
    "clone": ("cloneflags", "ptr", "ptr", "ptr", "hex"),
    "fork": (),
    "vfork": (),
    "io_uring_setup": ("uint", "ptr"),
}
_FALLBACK_ARGC: Optional[dict[str, int]] = None


def _argc(name: str) -> int:
    """Argument count of a syscall without a spec (python-ptrace's prototypes, loaded on demand)."""
    global _FALLBACK_ARGC
    if _FALLBACK_ARGC is None:
        try:
            SYSCALL_PROTOTYPES = names.python_ptrace_table("syscall.prototypes").SYSCALL_PROTOTYPES
            _FALLBACK_ARGC = {n: len(p[1]) for n, p in SYSCALL_PROTOTYPES.items()}
        except ImportError:  # pragma: no cover - python-ptrace is a dependency
            _FALLBACK_ARGC = {}
    return _FALLBACK_ARGC.get(name, 6)


class Formatter:
    """Formats one syscall in two halves: `enter(sc)` decodes what exists at entry and returns a state;
    `finish(state, ret)` completes the line with outputs and the result."""

    def __init__(self, strsize: int = 32):
        self.strsize = strsize

    def spec(self, name: str) -> tuple[str, ...]:
        s = _SPECS.get(name)
        if s is None:
            s = ("hex",) * _argc(name)
        return s

    def enter(self, sc) -> list:
        """Entry half: a list with a formatted string for each "in" argument and None for outputs."""
        parts: list = []
        spec = self.spec(sc.name)
        ins: dict = {}
        for i, kind in enumerate(spec):
            if kind.startswith("out:"):
                parts.append(None)
                if kind == "out:socklen":  # remember the buffer size passed in
                    ins[i] = self._read_int(sc, sc.args[i])
            else:
                parts.append(self._in(sc, i, kind))
        return [parts, ins]

    def finish(self, sc, state, ret: Optional[int], unfinished: bool = False) -> str:
        parts, ins = state
        spec = self.spec(sc.name)
        out = []
        for i, kind in enumerate(spec):
            p = parts[i]
            if p is None:
                p = self._out(sc, i, kind[4:], ret, ins)
            out.append(p)
        tail = " <unfinished ...>" if unfinished else ""
        return f"{sc.name}({', '.join(out)}{tail}) = {self.result(sc.name, ret)}"

    def result(self, name: str, ret: Optional[int]) -> str:
        if ret is None:
            return "?"
        if -4096 < ret < 0:
            e = -ret
            if e in _RESTART:
                return f"? {_RESTART[e]} ({_RESTART_MSG[e]})"
            code = errno_mod.errorcode.get(e, f"E{e}")
            return f"-1 {code} ({os.strerror(e)})"
        if name in _RET_PTR:
            return hex(ret & 0xFFFFFFFFFFFFFFFF)
        return str(ret)

    # -- argument kinds --------------------------------------------------------------------------
    def _read_int(self, sc, addr: int) -> Optional[int]:
        if not addr:
            return None
        try:
            return sc.mem.read_i32(addr)
        except MemoryError_:
            return None

    def _in(self, sc, i: int, kind: str) -> str:
        v = sc.args[i]
        kind, _, rel = kind.partition(":")
        try:
            if kind in ("fd", "int"):
                return str(_signed32(v))
            if kind == "dirfd":
                return "AT_FDCWD" if _signed32(v) == -100 else str(_signed32(v))
            if kind == "pid":
                return str(_signed32(v))
            if kind == "uint":
                return str(v)
            if kind == "hex":
                return hex(v)
            if kind == "ptr":
                return _ptr(v)
            if kind == "mode":
                return f"0{v & 0o7777:o}" if v & 0o7777 else "0"
            if kind == "domain":
                return _AF.get(v & 0xFFFFFFFF, str(v))
            if kind == "socktype":
                base = _SOCK.get(v & 0xF, str(v & 0xF))
                flags = _flags(v & ~0xF, _SOCK_FLAGS, "")
                return f"{base}|{flags}" if flags else base
            if kind == "sockflags":
                return _flags(v, _SOCK_FLAGS)
            if kind == "proto":
                return _const(v, _IPPROTO)
            if kind == "msgflags":
                return _flags(v, _MSG)
            if kind == "shut":
                return _const(v, _SHUT)
            if kind == "sol":
                return _const(v, _SOL)
            if kind == "sockopt":
                level = sc.args[i - 1]
                table = {1: _SO, 6: _TCP_OPT, 41: _IPV6_OPT}.get(level, {})
                return _const(v, table)
            if kind == "epollop":
                return _const(v, _EPOLL_CTL)
            if kind == "clock":
                return _const(_signed32(v), _CLOCKS)
            if kind == "sig":
                return signame(v) if v else "0"
            if kind == "cloneflags":
                low = v & 0xFF
                flags = _flags(v & ~0xFF, _CLONE)
                return f"{flags}|{signame(low)}" if low else flags
            if kind == "oflags":
                acc = _O_ACC.get(v & 3, str(v & 3))
                rest = _flags(v & ~3 & ~0o100000, _O_FLAGS, "")
                return f"{acc}|{rest}" if rest else acc
            if not v:
                return "NULL"
            mem = sc.mem
            if kind == "str":
                s = mem.read_cstring(v, self.strsize + 1)
                return quote(s, self.strsize)
            if kind == "buf":
                n = sc.args[int(rel)]
                return quote(mem.read(v, min(n, self.strsize)), self.strsize, n > self.strsize)
            if kind == "sa":
                n = _signed32(sc.args[int(rel)])
                return format_sockaddr(mem.read(v, max(0, min(n, 128))))
            if kind == "iov":
                return self._iov(sc, v, sc.args[int(rel)], None)
            if kind == "msghdr":
                return self._msghdr(sc, v, None)
            if kind == "pollfds":
                n = min(sc.args[int(rel)], 64)
                fds = mem.read_pollfds(v, n)
                return "[" + ", ".join(f"{{fd={fd}, events={_flags(ev & 0xFFFF, _POLL)}}}"
                                       for fd, ev, _ in fds) + "]"
            if kind == "ts":
                sec, nsec = mem.read_timespec(v)
                return f"{{tv_sec={sec}, tv_nsec={nsec}}}"
            if kind == "tv":
                sec, usec = mem.read_timeval(v)
                return f"{{tv_sec={sec}, tv_usec={usec}}}"
            if kind == "optval":
                n = _signed32(sc.args[int(rel)])
                if n == 4:
                    return f"[{mem.read_i32(v)}]"
                return quote(mem.read(v, max(0, min(n, self.strsize))), self.strsize, n > self.strsize)
            if kind == "argv":
                items = []
                for k in range(33):
                    p = mem.read_u64(v + 8 * k)
                    if not p:
                        break
                    if k == 32:
                        items.append("...")
                        break
                    items.append(quote(mem.read_cstring(p, self.strsize + 1), self.strsize))
                return "[" + ", ".join(items) + "]"
            if kind == "envp":
                count = 0
                while mem.read_u64(v + 8 * count) and count < 4096:
                    count += 1
                return f"{hex(v)} /* {count} vars */"
        except (MemoryError_, ValueError, OSError, struct.error):
            return hex(v)
        return hex(v)

    def _out(self, sc, i: int, kind: str, ret: Optional[int], ins: dict) -> str:
        v = sc.args[i]
        kind, _, rel = kind.partition(":")
        failed = ret is None or -4096 < ret < 0
        if kind == "socklen":
            if not v:
                return "NULL"
            before = ins.get(i)
            if failed:
                return f"[{before}]" if before is not None else hex(v)
            after = self._read_int(sc, v)
            if before is not None and after is not None and before != after:
                return f"[{before} => {after}]"
            return f"[{after}]" if after is not None else hex(v)
        if not v:
            return "NULL"
        if failed:
            return hex(v)
        mem = sc.mem
        try:
            if kind == "rbuf":
                n = ret
                return quote(mem.read(v, min(n, self.strsize)), self.strsize, n > self.strsize)
            if kind == "sa_ptr":
                ln = self._read_int(sc, sc.args[int(rel)]) if sc.args[int(rel)] else 0
                if not ln:
                    return hex(v)
                return format_sockaddr(mem.read(v, max(0, min(ln, 128))))
            if kind == "optval_ptr":
                ln = self._read_int(sc, sc.args[int(rel)]) or 0
                if ln == 4:
                    return f"[{mem.read_i32(v)}]"
                return quote(mem.read(v, max(0, min(ln, self.strsize))), self.strsize)
            if kind == "fdpair":
                a, b = struct.unpack("<ii", mem.read(v, 8))
                return f"[{a}, {b}]"
            if kind == "ts":
                sec, nsec = mem.read_timespec(v)
                return f"{{tv_sec={sec}, tv_nsec={nsec}}}"
            if kind == "tv":
                sec, usec = mem.read_timeval(v)
                return f"{{tv_sec={sec}, tv_usec={usec}}}"
            if kind == "time":
                return f"[{struct.unpack('<q', mem.read(v, 8))[0]}]"
            if kind == "iov":
                return self._iov(sc, v, sc.args[int(rel)], ret)
            if kind == "msghdr":
                return self._msghdr(sc, v, ret)
            if kind == "wstatus":
                st = mem.read_i32(v)
                return f"[{format_wstatus(st)}]"
        except (MemoryError_, ValueError, OSError, struct.error):
            pass
        return hex(v)

    def _iov(self, sc, addr: int, count: int, budget: Optional[int]) -> str:
        """iovec array; `budget` limits shown bytes to what was transferred (readv/recvmsg)."""
        count = min(count, 1024)
        iov = sc.mem.read_iovec(addr, min(count, 8))
        items = []
        for base, ln in iov:
            n = ln if budget is None else max(0, min(ln, budget))
            if budget is not None:
                budget -= n
            data = sc.mem.read(base, min(n, self.strsize)) if n else b""
            items.append(f"{{iov_base={quote(data, self.strsize, n > self.strsize)}, iov_len={ln}}}")
        if count > 8:
            items.append("...")
        return "[" + ", ".join(items) + "]"

    def _msghdr(self, sc, addr: int, ret: Optional[int]) -> str:
        name, namelen, iov, iovlen, _ctl, ctllen, flags = struct.unpack("<QI4xQQQQi4x", sc.mem.read(addr, 56))
        if name and namelen:
            name_s = format_sockaddr(sc.mem.read(name, min(namelen, 128)))
        else:
            name_s = "NULL"
        iov_s = self._iov(sc, iov, iovlen, ret) if iov else "NULL"
        return (f"{{msg_name={name_s}, msg_namelen={namelen}, msg_iov={iov_s}, msg_iovlen={iovlen}, "
                f"msg_controllen={ctllen}, msg_flags={_flags(flags, _MSG)}}}")


def format_wstatus(st: int) -> str:
    if os.WIFEXITED(st):
        return f"{{WIFEXITED(s) && WEXITSTATUS(s) == {os.WEXITSTATUS(st)}}}"
    if os.WIFSIGNALED(st):
        core = " && WCOREDUMP(s)" if os.WCOREDUMP(st) else ""
        return f"{{WIFSIGNALED(s) && WTERMSIG(s) == {signame(os.WTERMSIG(st))}{core}}}"
    if os.WIFSTOPPED(st):
        return f"{{WIFSTOPPED(s) && WSTOPSIG(s) == {signame(os.WSTOPSIG(st))}}}"
    return hex(st)


def describe_exit(status: int) -> str:
    """'+++ exited with 0 +++' / '+++ killed by SIGSEGV (core dumped) +++', as strace prints them."""
    if os.WIFSIGNALED(status):
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"+++ killed by {signame(os.WTERMSIG(status))}{core} +++"
    if os.WIFEXITED(status):
        return f"+++ exited with {os.WEXITSTATUS(status)} +++"
    return f"+++ ended with status {status:#x} +++"


class StracePolicy(Policy):
    """Logs the chosen syscalls, lets the kernel run them all. `follow=False` prints only the root
    process's lines (all its threads), without the "[pid N]" prefix, as strace does without -f; the
    engine still follows every child (the seccomp filter is inherited anyway)."""

    def __init__(self, numbers: set[int], write: Callable[[str], None], *, follow: bool = True,
                 strsize: int = 32):
        self.write = write
        self.follow = follow
        self.fmt = Formatter(strsize)
        self.root_pid: Optional[int] = None
        self.pending: dict[int, tuple] = {}   # tid -> (syscall, entry state), between entry and exit
        self.handlers = {nr: self._on_syscall for nr in numbers}
        nr_uring = names.NUMBERS.get("io_uring_setup")
        if nr_uring in self.handlers:
            self.handlers[nr_uring] = self._on_io_uring

    def _shown(self, pid: int) -> bool:
        return self.follow or pid == self.root_pid

    def _emit(self, tid: int, pid: int, text: str) -> None:
        if self.follow:
            self.write(f"[pid {tid}] {text}")
        elif pid == self.root_pid:
            self.write(text)

    def _on_syscall(self, sc):
        if self.root_pid is None:
            self.root_pid = sc.pid
        if not self._shown(sc.pid):
            return Native()
        state = self.fmt.enter(sc)
        if sc.name in _NORETURN:
            self._emit(sc.tid, sc.pid, self.fmt.finish(sc, state, None))
            return Native()
        self.pending[sc.tid] = (sc, state)
        return Native(on_exit=self._on_exit)

    def _on_exit(self, sc, ret: int):
        entry = self.pending.pop(sc.tid, None)
        state = entry[1] if entry is not None else self.fmt.enter(sc)
        pid = sc.pid if sc.task.process.alive else sc.task.process.pid
        self._emit(sc.tid, pid, self.fmt.finish(sc, state, ret))
        return None

    def _on_io_uring(self, sc):
        # The engine's rule (no io_uring: it would bypass the filter) applies while tracing too.
        self._emit(sc.tid, sc.pid, self.fmt.finish(sc, self.fmt.enter(sc), -errno_mod.ENOSYS))
        return Errno(errno_mod.ENOSYS)

    def on_signal(self, task: Task, sig: int) -> int:
        self._emit(task.tid, task.process.pid, f"--- {signame(sig)} ---")
        return sig

    def on_process_exit(self, process: Process, status: int) -> None:
        # Syscalls that were still in progress (a server killed while blocked in accept).
        for tid, (sc, state) in list(self.pending.items()):
            if sc.task.process is process:
                del self.pending[tid]
                self._emit(tid, process.pid, self.fmt.finish(sc, state, None, unfinished=True))
        self._emit(process.pid, process.pid, describe_exit(status))
