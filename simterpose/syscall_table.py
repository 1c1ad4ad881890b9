"""The one table: what the emulator does with every syscall.

Each syscall is exactly one of
  handled      a policy module answers it (module name and method below); the tracee stops on it
  unsupported  the run stops with an error naming the syscall and why (never a silent wrong answer)
  native       the kernel runs it, and the tracee does not even stop (it is not in the seccomp filter)
Anything not listed as handled or unsupported is native, except io_uring_setup, which the tracer
itself answers ENOSYS (io_uring would do I/O without syscalls; programs fall back to plain calls). `classify()` answers for any number, and
`python -m simterpose.syscall_table` prints the whole table.

Modules: `time`, `timerfd` and `posix_timer` (simterpose/time), `net` (simterpose/net, per mediation mode), `proc` (identity of
the simulated host: uname, hostname), `local` (children, futexes, pipes and unix sockets between
tracees: simterpose/local_files.py), `epoll` (epoll sets over simulated and real descriptors:
simterpose/epoll.py), `random` (seeded randomness: getrandom, and the reads of /dev/urandom and
/dev/random that `net` does not see first: simterpose/randomness.py).
"""

from __future__ import annotations

from .tracer import names

TIME, TIMERFD, PTIMER, NET, PROC, LOCAL, EPOLL, RANDOM = ("time", "timerfd", "posix_timer", "net", "proc",
                                                    "local", "epoll", "random")

# name -> (module, method)
HANDLED: dict[str, tuple[str, str]] = {
    # clocks
    "clock_gettime": (TIME, "clock_gettime"),
    "clock_getres": (TIME, "clock_getres"),
    "gettimeofday": (TIME, "gettimeofday"),
    "time": (TIME, "time"),
    "times": (TIME, "times"),
    "getrusage": (TIME, "getrusage"),
    "clock_settime": (TIME, "settime_denied"),
    "settimeofday": (TIME, "settime_denied"),
    "clock_adjtime": (TIME, "settime_denied"),
    "adjtimex": (TIME, "settime_denied"),
    # sleeps and timers
    "nanosleep": (TIME, "nanosleep"),
    "clock_nanosleep": (TIME, "clock_nanosleep"),
    "restart_syscall": (TIME, "restart_syscall"),
    "pause": (TIME, "pause"),
    "rt_sigsuspend": (TIME, "rt_sigsuspend"),
    "alarm": (TIME, "alarm"),
    "setitimer": (TIME, "setitimer"),
    "getitimer": (TIME, "getitimer"),
    "timerfd_create": (TIMERFD, "timerfd_create"),
    "timerfd_settime": (TIMERFD, "timerfd_settime"),
    "timerfd_gettime": (TIMERFD, "timerfd_gettime"),
    "timer_create": (PTIMER, "timer_create"),
    "timer_settime": (PTIMER, "timer_settime"),
    "timer_gettime": (PTIMER, "timer_gettime"),
    "timer_getoverrun": (PTIMER, "timer_getoverrun"),
    "timer_delete": (PTIMER, "timer_delete"),
    # waiting: readiness of simulated sockets, timeouts in simulated time (net delegates the
    # descriptor-less case, a plain sleep, to time)
    "poll": (NET, "poll"),
    "ppoll": (NET, "ppoll"),
    "select": (NET, "select"),
    "pselect6": (NET, "pselect6"),
    "epoll_create": (EPOLL, "epoll_create"),
    "epoll_create1": (EPOLL, "epoll_create1"),
    "epoll_ctl": (EPOLL, "epoll_ctl"),
    "epoll_wait": (EPOLL, "epoll_wait"),
    "epoll_pwait": (EPOLL, "epoll_pwait"),
    "epoll_pwait2": (EPOLL, "epoll_pwait2"),
    # sockets
    "socket": (NET, "socket"),
    "socketpair": (NET, "socketpair"),
    "bind": (NET, "bind"),
    "listen": (NET, "listen"),
    "connect": (NET, "connect"),
    "accept": (NET, "accept"),
    "accept4": (NET, "accept4"),
    "getsockname": (NET, "getsockname"),
    "getpeername": (NET, "getpeername"),
    "shutdown": (NET, "shutdown"),
    "setsockopt": (NET, "setsockopt"),
    "getsockopt": (NET, "getsockopt"),
    "sendto": (NET, "sendto"),
    "recvfrom": (NET, "recvfrom"),
    "sendmsg": (NET, "sendmsg"),
    "recvmsg": (NET, "recvmsg"),
    "sendmmsg": (NET, "sendmmsg"),
    "recvmmsg": (NET, "recvmmsg"),
    "sendfile": (NET, "sendfile"),
    "splice": (NET, "splice"),
    # a socket can be used through any descriptor call: these stop to check whether it is one
    "read": (NET, "read"),
    "write": (NET, "write"),
    "readv": (NET, "readv"),
    "writev": (NET, "writev"),
    "close": (NET, "close"),
    "close_range": (NET, "close_range"),
    "dup": (NET, "dup"),
    "dup2": (NET, "dup2"),
    "dup3": (NET, "dup3"),
    "fcntl": (NET, "fcntl"),
    "ioctl": (NET, "ioctl"),
    # name resolution: /etc/hosts is served with the platform's hosts; /dev/[u]random are recognised
    "open": (NET, "open"),
    "openat": (NET, "openat"),
    # the last CPU burst of a process is charged when it exits
    "exit": (PROC, "exiting"),
    "exit_group": (PROC, "exiting"),
    # waits inside the machine, never left to the kernel (simterpose/local_files.py)
    "wait4": (LOCAL, "wait4"),
    "waitid": (LOCAL, "waitid"),
    "futex": (LOCAL, "futex"),
    "pipe": (LOCAL, "pipe"),
    "pipe2": (LOCAL, "pipe2"),
    "rt_sigaction": (LOCAL, "rt_sigaction"),
    "rt_sigtimedwait": (LOCAL, "rt_sigtimedwait"),
    # a signal sent by one tracee may end a wait another one is blocked in (by us, not the kernel)
    "kill": (LOCAL, "signalling"),
    "tkill": (LOCAL, "signalling"),
    "tgkill": (LOCAL, "signalling"),
    "rt_sigqueueinfo": (LOCAL, "signalling"),
    "rt_tgsigqueueinfo": (LOCAL, "signalling"),
    "pidfd_send_signal": (LOCAL, "signalling"),
    "set_tid_address": (LOCAL, "set_tid_address"),
    # seeded randomness (simterpose/randomness.py); read/readv/open of the random devices go through
    # net's handlers above, which hand them over
    "getrandom": (RANDOM, "getrandom"),
    "pread64": (RANDOM, "pread64"),
    "preadv": (RANDOM, "preadv"),
    "preadv2": (RANDOM, "preadv2"),
    # identity of the simulated host
    "uname": (PROC, "uname"),
    "sethostname": (PROC, "denied"),
    "setdomainname": (PROC, "denied"),
}

# name -> why it cannot be honoured
UNSUPPORTED: dict[str, str] = {
    "ptrace": "a traced process cannot trace others",
    "process_vm_writev": "writing into another traced process's memory bypasses the emulator",
}


def classify(nr: int) -> tuple[str, object]:
    """('handled', (module, method)) | ('unsupported', reason) | ('native', None)"""
    n = names.name(nr)
    if n in HANDLED:
        return "handled", HANDLED[n]
    if n in UNSUPPORTED:
        return "unsupported", UNSUPPORTED[n]
    return "native", None


def _check() -> None:
    for n in (*HANDLED, *UNSUPPORTED):
        names.number(n)  # raises on a typo
    both = set(HANDLED) & set(UNSUPPORTED)
    assert not both, f"syscalls both handled and unsupported: {both}"


_check()

if __name__ == "__main__":
    for nr in sorted(names.NAMES):
        kind, what = classify(nr)
        detail = f"{what[0]}.{what[1]}" if kind == "handled" else (what or "")
        print(f"{nr:4d} {names.name(nr):24s} {kind:12s} {detail}")
