"""timerfd(2) as Linux answers it: expirations counted and read, TFD_TIMER_ABSTIME, intervals,
errors, and readiness in poll/select/epoll (the emulator decides all of it on the simulated clock).
No duration is printed: the sleeps leave wide margins around each expiry."""

import ctypes
import fcntl
import os
import select
import struct
import time

from common import call, cerr, libc, out

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
TFD_TIMER_ABSTIME = 1


class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class Itimerspec(ctypes.Structure):
    _fields_ = [("interval", Timespec), ("value", Timespec)]


def ts(x: float) -> Timespec:
    return Timespec(int(x), int(round((x - int(x)) * 1e9)))


def seconds(t: Timespec) -> float:
    return t.sec + t.nsec / 1e9


def settime(fd, value, interval=0.0, flags=0):
    spec = Itimerspec(ts(interval), ts(value))
    return cerr(libc.timerfd_settime(fd, flags, ctypes.byref(spec), None))


def gettime(fd):
    cur = Itimerspec()
    rc = libc.timerfd_gettime(fd, ctypes.byref(cur))
    return cerr(rc) if rc < 0 else (round(seconds(cur.value), 2), round(seconds(cur.interval), 2))


def expirations(fd):
    got = call(os.read, fd, 8)
    return struct.unpack("Q", got)[0] if isinstance(got, bytes) else got


fd = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
out("create_flags", (bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
                     bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)))
out("unarmed_read", expirations(fd))
out("unarmed_gettime", gettime(fd))
out("read_buffer_too_small", call(os.read, fd, 4))
out("settime_nsec_too_big", cerr(libc.timerfd_settime(fd, 0, ctypes.byref(Itimerspec(Timespec(0, 0), Timespec(0, 2 * 10**9))), None)))
out("settime_negative", settime(fd, -1))
out("create_bad_clock", cerr(libc.timerfd_create(99, 0)))
out("write", call(os.write, fd, bytes(8)))

# one shot: read once, then nothing; gettime says disarmed
settime(fd, 0.05)
time.sleep(0.1)
out("oneshot_gettime_after", gettime(fd))
out("oneshot_read", expirations(fd))
out("oneshot_read_again", expirations(fd))
# an interval timer counts every expiry until read; settime clears the count
settime(fd, 0.05, 0.1)
time.sleep(0.38)
out("interval_count", expirations(fd))
out("interval_gettime_interval", gettime(fd)[1])
time.sleep(0.17)
settime(fd, 10)
out("rearm_clears_count", expirations(fd))
settime(fd, 0)
# TFD_TIMER_ABSTIME: in the future (polled), in the past (at once)
now = Timespec()
libc.clock_gettime(CLOCK_MONOTONIC, ctypes.byref(now))
settime(fd, seconds(now) + 0.2, 0, TFD_TIMER_ABSTIME)
p = select.poll()
p.register(fd, select.POLLIN)
out("abstime_poll_early", [e for _, e in p.poll(100)])
out("abstime_poll_late", [e for _, e in p.poll(500)])
out("abstime_read", expirations(fd))
settime(fd, 1.0, 0, TFD_TIMER_ABSTIME)
out("abstime_past", [e for _, e in p.poll(0)])
expirations(fd)
# a dup keeps it after the original's close; a child reads the shared count
d = os.dup(fd)
settime(fd, 0.05)
os.close(fd)
p = select.poll()
p.register(d, select.POLLIN)
out("dup_poll", [e for _, e in p.poll(500)])
out("dup_read", expirations(d))
settime(d, 0.05, 0.05)
time.sleep(0.12)
child = os.fork()
if child == 0:
    out("child_read", expirations(d))
    os._exit(0)
os.waitpid(child, 0)
out("parent_after_child_read", expirations(d))
settime(d, 0)
# blocking reads and select
b = libc.timerfd_create(CLOCK_REALTIME, 0)
settime(b, 0.05, 0.05)
out("blocking_reads", [expirations(b) >= 1 for _ in range(2)])
settime(b, 0.1)
out("select_early", select.select([b], [], [], 0.05)[0])
out("select_late", select.select([b], [], [], 1)[0] == [b])
out("select_read", expirations(b))
# epoll: level-triggered one-shot, re-armed by EPOLL_CTL_MOD
settime(b, 0.05, 0.1)
ep = select.epoll()
ep.register(b, select.EPOLLIN | select.EPOLLONESHOT)
out("oneshot_epoll", [e for _, e in ep.poll(1)])
time.sleep(0.15)
out("oneshot_epoll_disabled", [e for _, e in ep.poll(0.2)])
ep.modify(b, select.EPOLLIN | select.EPOLLONESHOT)
out("oneshot_epoll_rearmed", [e for _, e in ep.poll(0)])
settime(b, 0)

# O_NONBLOCK is the open file's status flag: fcntl(F_SETFL) sets it, dups share it
fl = libc.timerfd_create(CLOCK_MONOTONIC, 0)
os.set_blocking(fl, False)
out("setfl_nonblock_read", expirations(fl))
settime(fl, 0.05)
time.sleep(0.1)
out("setfl_nonblock_expired", expirations(fl))
os.set_blocking(fl, True)
settime(fl, 0.05)
out("setfl_blocking_read", expirations(fl))
dup = os.dup(fl)
os.set_blocking(dup, False)
out("dup_shares_nonblock", expirations(fl))
fcntl.fcntl(fl, fcntl.F_SETFL, fcntl.fcntl(fl, fcntl.F_GETFL) & ~os.O_NONBLOCK)
settime(fl, 0.05)
out("fcntl_blocking_read", expirations(fl))

# errors: a bad flag, a closed descriptor (EBADF), a descriptor that is not a timerfd (EINVAL)
spec = Itimerspec(ts(0), ts(1))
out("settime_unknown_flag", cerr(libc.timerfd_settime(fl, 0x10, ctypes.byref(spec), None)))
closed = libc.timerfd_create(CLOCK_MONOTONIC, 0)
os.close(closed)
out("settime_closed", cerr(libc.timerfd_settime(closed, 0, ctypes.byref(spec), None)))
out("gettime_closed", cerr(libc.timerfd_gettime(closed, ctypes.byref(Itimerspec()))))
r, w = os.pipe()
out("settime_pipe", cerr(libc.timerfd_settime(r, 0, ctypes.byref(spec), None)))
out("gettime_pipe", cerr(libc.timerfd_gettime(r, ctypes.byref(Itimerspec()))))
out("create_bad_flags", cerr(libc.timerfd_create(CLOCK_MONOTONIC, 1)))

# edge-triggered epoll on an interval timer: the kernel re-arms an expired interval timer only when
# it is read, so the expiries after the first one unread wake nobody (no new edge)
et = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK)
settime(et, 0.05, 0.1)
ep = select.epoll()
ep.register(et, select.EPOLLIN | select.EPOLLET)
out("et_first_expiry", [e for _, e in ep.poll(1)])
out("et_no_edge_at_once", [e for _, e in ep.poll(0)])
out("et_no_edge_while_unread", [e for _, e in ep.poll(0.5)])
out("et_unread_expirations_counted", expirations(et) >= 5)
out("et_edge_after_read", [e for _, e in ep.poll(1)])
out("et_no_edge_after_unread", [e for _, e in ep.poll(0.3)])

# TFD_IOC_SET_TICKS (CRIU's): the unread expirations become the given count; 0 is EINVAL; on a
# descriptor that is not a timerfd the request is unknown (ENOTTY)
TFD_IOC_SET_TICKS = 0x40085400
ticks = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK)
tep = select.epoll()
tep.register(ticks, select.EPOLLIN | select.EPOLLET)
out("set_ticks", cerr(libc.ioctl(ticks, TFD_IOC_SET_TICKS, ctypes.byref(ctypes.c_uint64(5)))))
out("set_ticks_edge", [e for _, e in tep.poll(0)])
out("set_ticks_poll", select.select([ticks], [], [], 0)[0] == [ticks])
out("set_ticks_read", expirations(ticks))
out("set_ticks_zero", cerr(libc.ioctl(ticks, TFD_IOC_SET_TICKS, ctypes.byref(ctypes.c_uint64(0)))))
out("set_ticks_replaces", [cerr(libc.ioctl(ticks, TFD_IOC_SET_TICKS, ctypes.byref(ctypes.c_uint64(n)))) for n in (3, 7)]
    + [expirations(ticks)])
out("set_ticks_pipe", cerr(libc.ioctl(r, TFD_IOC_SET_TICKS, ctypes.byref(ctypes.c_uint64(1)))))
out("unknown_ioctl", cerr(libc.ioctl(ticks, 0x5401, ctypes.byref(ctypes.c_uint64(0)))))   # TCGETS
