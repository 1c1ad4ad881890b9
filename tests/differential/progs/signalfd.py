"""signalfd(2) read, polled and waited on as Linux answers it, its signals sent by the process itself
and by its own timers (alarm/setitimer: their SIGALRM comes at a simulated date)."""

import ctypes
import os
import select
import signal
import struct

from common import call, cerr, libc, out

SIGINFO_SIZE = 128   # struct signalfd_siginfo


def signalfd(signals, flags=0) -> int:
    mask = ctypes.c_uint64(sum(1 << (s - 1) for s in signals))
    return libc.signalfd(-1, ctypes.byref(mask), flags)


def signo(raw: bytes) -> str:
    return signal.Signals(struct.unpack_from("I", raw)[0]).name


signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM})
fd = signalfd([signal.SIGUSR1, signal.SIGALRM], os.O_NONBLOCK)
out("nothing_pending", call(os.read, fd, SIGINFO_SIZE))
out("buffer_too_small", call(os.read, fd, SIGINFO_SIZE // 2))
p = select.poll()
p.register(fd, select.POLLIN)
out("poll_nothing", p.poll(0))
os.kill(os.getpid(), signal.SIGUSR1)
out("poll_after_kill", [e for _, e in p.poll(0)])
raw = os.read(fd, 4 * SIGINFO_SIZE)
out("read_len", len(raw))
out("read_signo", signo(raw))
out("read_code_user", struct.unpack_from("i", raw, 8)[0] == 0)   # SI_USER
out("read_again", call(os.read, fd, SIGINFO_SIZE))

# the timer's SIGALRM, waited for by epoll, select, then a blocking read
ep = select.epoll()
ep.register(fd, select.EPOLLIN)
signal.setitimer(signal.ITIMER_REAL, 0.2)
out("epoll_before_alarm", ep.poll(0.1))
out("epoll_alarm", [e for _, e in ep.poll(1)])
out("epoll_alarm_signo", signo(os.read(fd, SIGINFO_SIZE)))
signal.setitimer(signal.ITIMER_REAL, 0.1)
out("select_alarm", select.select([fd], [], [], 1.0)[0] == [fd])
out("select_alarm_signo", signo(os.read(fd, SIGINFO_SIZE)))
blocking = signalfd([signal.SIGALRM])
signal.setitimer(signal.ITIMER_REAL, 0.1)
out("blocking_read_alarm", signo(os.read(blocking, SIGINFO_SIZE)))
signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
out("blocking_read_interval", [signo(os.read(blocking, SIGINFO_SIZE)) for _ in range(3)])
signal.setitimer(signal.ITIMER_REAL, 0)
os.kill(os.getpid(), signal.SIGALRM)
out("blocking_read_pending", signo(os.read(blocking, SIGINFO_SIZE)))

# a signal outside the mask stays pending for the thread
os.kill(os.getpid(), signal.SIGUSR2)
out("other_signal_read", call(os.read, fd, SIGINFO_SIZE))
out("other_signal_pending", sorted(s.name for s in signal.sigpending()))

# a blocking read ended by a handled signal (no SA_RESTART: EINTR), then by a child's kill
handled = []
signal.signal(signal.SIGALRM, lambda *_: handled.append(1))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
usr1 = signalfd([signal.SIGUSR1])
buf = ctypes.create_string_buffer(SIGINFO_SIZE)
signal.setitimer(signal.ITIMER_REAL, 0.1)
out("read_interrupted", cerr(libc.read(usr1, buf, SIGINFO_SIZE)))
out("read_interrupted_handler_ran", len(handled))
child = os.fork()
if child == 0:
    signal.setitimer(signal.ITIMER_REAL, 0.2)   # wake up later, then signal the parent
    signal.pause()
    os.kill(os.getppid(), signal.SIGUSR1)
    os._exit(0)
out("read_child_kill", signo(os.read(usr1, SIGINFO_SIZE)))
out("child_status", os.waitpid(child, 0)[1])
