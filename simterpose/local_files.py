"""Waits that stay inside the machine: children, futexes, and the local descriptors (pipes, AF_UNIX
sockets, eventfd) that tracees share with each other.

None of these may be left to wait in the kernel: the task they wait for may itself be waiting on
the simulation, and the scheduler would then wait for a stop that never comes. So:

  * wait4/waitid block here until a child of the caller has exited (the tracer sees every exit);
  * futex waits and wakes are emulated entirely (futex(2): WAIT, WAIT_BITSET, WAKE, WAKE_BITSET,
    REQUEUE, CMP_REQUEUE, WAKE_OP), with timeouts in simulated time; a thread's exit wakes its
    CLONE_CHILD_CLEARTID futex as the kernel does;
  * a blocking read, write or accept on a local descriptor created by a tracee runs in the kernel
    only once the kernel says it will not block (a poll on our own duplicate of the descriptor,
    pidfd_getfd(2)); until then it waits here, looked at again whenever a tracee ran a syscall.
    A blocking write larger than the room left (a pipe holds 64 KiB) would still block in the
    kernel after a poll said "writable": such a write is carried out here instead, piece by piece
    with non-blocking writes on the duplicate (RWF_NOWAIT, MSG_DONTWAIT), and returns the whole
    count as pipe(7) requires of a blocking write.
Descriptors from outside the run (a terminal, the pipes of whoever started us) are left to the
kernel: what they wait for is not simulated.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from . import wait
from .procfs import fd_flags, fd_target, shared_mapping_key, signal_state, signalfd_mask
from .time.alarm_siginfo import SIGALRM_BIT, SIGINFO_SIZE, kernel_siginfo, kernel_signalfd_records
from .time.clock import CLOCK_MONOTONIC, CLOCK_REALTIME, NS
from .tracer.results import NATIVE, Blocked, Errno, Native, Value

if TYPE_CHECKING:
    from .emulator import ScenarioProcess

WNOHANG, WNOWAIT = 1, 0x01000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
O_NONBLOCK = 0o4000
PIPE_BUF = 4096
FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
NR_PIDFD_GETFD = 438

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _pidfd_getfd(pidfd: int, fd: int) -> int:
    r = _libc.syscall(ctypes.c_long(NR_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))
    if r < 0:
        raise OSError(ctypes.get_errno(), "pidfd_getfd")
    return r


@dataclass(eq=False)
class FutexQueue(wait.Waitable):
    """The waiters of one futex word, in arrival order (futex(2) wakes FIFO here)."""

    waiting: list = field(default_factory=list)  # [FutexWait]


@dataclass(eq=False)
class FutexWait:
    sc: object
    bitset: int
    deadline: Optional[float]
    queue: FutexQueue
    woken: bool = False

    @property
    def live(self) -> bool:
        # still blocked in this very call (not interrupted by a signal, not dead)
        return not self.woken and self.sc.task.blocked is self.sc


def _unreaped(pid: int) -> bool:
    """Whether an exited child still exists as a zombie (/proc/PID exists until it is reaped)."""
    return os.path.exists(f"/proc/{pid}/stat")


@dataclass
class SignalWait:
    """A thread in sigwaitinfo/sigtimedwait, or in a blocking read of a signalfd: the signals it
    takes (bit n-1: signal n), until when."""

    mask: int
    deadline: Optional[float]


@dataclass
class WriteProgress:
    """A blocking write carried out piece by piece (`LocalPolicy.blocking_write`)."""

    total: int
    done: int = 0


def _skip(iov: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The iovec array without its first n bytes."""
    out = []
    for base, length in iov:
        if n >= length:
            n -= length
            continue
        out.append((base + n, length - n))
        n = 0
    return out


def _taking_signal(sc, mask: int):
    """rt_sigtimedwait handed to the kernel, a signal of `mask` pending: with a SIGALRM possibly
    among them, its siginfo is made the kernel's at the exit stop (`alarm_siginfo`)."""
    if not (mask & SIGALRM_BIT and sc.arg(1)):
        return NATIVE

    def taken(sc_, ret):
        if ret > 0:
            info = kernel_siginfo(sc_.mem.read(sc_.arg(1), SIGINFO_SIZE))
            if info is not None:
                sc_.mem.write(sc_.arg(1), info)
        return None

    return Native(on_exit=taken)


def _reading_signalfd(sc, mask: int):
    """A read(2) of a signalfd handed to the kernel: with SIGALRM in its mask, the records it
    returns are made the kernel's at the exit stop (`alarm_siginfo`). (readv of a signalfd: left
    as the kernel fills it.)"""
    if not (mask & SIGALRM_BIT and sc.name == "read"):
        return NATIVE

    def read(sc_, ret):
        if ret >= SIGINFO_SIZE:
            records = kernel_signalfd_records(sc_.mem.read(sc_.arg(1), ret))
            if records is not None:
                sc_.mem.write(sc_.arg(1), records)
        return None

    return Native(on_exit=read)


@dataclass(eq=False)
class Fifo(wait.Waitable):
    """A FIFO (named pipe) tracees opened by path: how many of its open files read and write."""

    key: tuple                # (st_dev, st_ino)
    read_ends: int = 0
    write_ends: int = 0

    def waiting(self, writes: bool) -> bool:
        """Does a task wait in an open() of this FIFO for writing (or, False: for reading)?"""
        return any(t.blocked is not None and isinstance(t.blocked.state, FifoOpen)
                   and t.blocked.state.writes == writes for t in (self._waiters or ()))


@dataclass
class FifoOpen:
    """An open() of a FIFO waiting for the other side (Syscall.state)."""

    fifo: Fifo
    writes: bool


@dataclass(eq=False)
class FifoEnd:
    """A descriptor-table entry (`net.fdtable`): an open file of a FIFO, read or write side. Its
    last close may leave the FIFO without readers or writers (EOF, EPIPE), which the kernel
    decides; here it only updates the counts the opens wait on."""

    fifo: Fifo
    reads: bool
    writes: bool
    refs: int = 0

    def last_close(self) -> None:
        self.fifo.read_ends -= self.reads
        self.fifo.write_ends -= self.writes
        self.fifo.notify()


class LocalPolicy:
    def __init__(self, owner: "ScenarioProcess"):
        self.actor = owner
        self.futexes = owner.emulation.futexes   # shared by the whole run
        self.pipes = owner.emulation.tracee_pipes
        self.fifos = owner.emulation.fifos

    # -- FIFOs opened by path ----------------------------------------------------------------
    def open_fifo(self, sc, st: os.stat_result, flags_arg: int):
        """open(2) of a FIFO (fifo(7)): a blocking open for reading waits for a writer, one for
        writing for a reader — here, in simulated time, never in the kernel (the other side may be
        a tracee stopped by us). When both sides are there, the reader opens first, with O_NONBLOCK
        added (which the kernel grants at once) and cleared again at the exit stop; the writer then
        opens, a reader being there. O_RDWR and O_NONBLOCK opens never wait (the kernel's own)."""
        flags = sc.iarg(flags_arg)
        if flags & os.O_PATH:
            return NATIVE   # a path handle: no open file, nothing waited for
        access = flags & os.O_ACCMODE
        fifo = self.fifos.get((st.st_dev, st.st_ino))
        if fifo is None:
            fifo = self.fifos[(st.st_dev, st.st_ino)] = Fifo((st.st_dev, st.st_ino))
        reads, writes = access in (os.O_RDONLY, os.O_RDWR), access in (os.O_WRONLY, os.O_RDWR)
        add_nonblock = False
        if access == os.O_RDONLY and not flags & O_NONBLOCK:
            if not fifo.write_ends and not fifo.waiting(writes=True):
                return self._wait_fifo(sc, fifo, writes=False)
            add_nonblock = not fifo.write_ends   # the writer is still in its open: no block
        elif access == os.O_WRONLY and not flags & O_NONBLOCK and not fifo.read_ends:
            return self._wait_fifo(sc, fifo, writes=True)
        if add_nonblock:
            sc.set_arg(flags_arg, flags | O_NONBLOCK)
        cloexec = bool(flags & os.O_CLOEXEC)

        def opened(sc_, fd):
            if fd >= 0:
                if add_nonblock:
                    self._clear_nonblock(sc_.process, fd)
                self.actor.net.table(sc_.process).add(fd, FifoEnd(fifo, reads, writes), cloexec)
                fifo.read_ends += reads
                fifo.write_ends += writes
                target = fd_target(sc_.pid, fd)
                if target:
                    self.pipes.add(target)   # reads and writes on it wait here, as on a pipe's
                fifo.notify()
            return None

        return Native(on_exit=opened)

    @staticmethod
    def _wait_fifo(sc, fifo: Fifo, writes: bool) -> Blocked:
        if not isinstance(sc.state, FifoOpen):
            sc.state = FifoOpen(fifo, writes)
            fifo.notify()   # the other side, waiting in its open, may go now
        # fifo_open returns -ERESTARTSYS: restarted after an SA_RESTART handler (signal(7))
        return Blocked(f"open fifo for {'writing' if writes else 'reading'}", on=(fifo,), restart=True)

    def _clear_nonblock(self, process, fd: int) -> None:
        """F_SETFL on our duplicate: status flags belong to the open file, shared with the tracee."""
        mine = self._dup(process, fd)
        if mine is not None:
            try:
                os.set_blocking(mine, True)
            finally:
                os.close(mine)

    # -- children --------------------------------------------------------------------------
    @staticmethod
    def _children_cond(process) -> wait.Condition:
        c = process.data.get("children_cond")
        if c is None:
            c = process.data["children_cond"] = wait.Condition(f"children of {process.pid}")
        return c

    def child_exited(self, process) -> None:
        parent = process.parent
        if parent is not None and parent.alive:
            # getrusage(RUSAGE_CHILDREN) counts the CPU of the children (and theirs) once reaped;
            # counted at exit here, which is when a waiting parent reaps them.
            parent.data["children_cpu_charged"] = (parent.data.get("children_cpu_charged", 0.0)
                                                   + process.data.get("cpu_charged", 0.0)
                                                   + process.data.get("children_cpu_charged", 0.0))
            parent.data.setdefault("zombies", []).append(process)
            self._children_cond(parent).notify()

    def _wait_children(self, sc, match, options: int):
        proc = sc.process
        # A zombie may already have been reaped behind our back: by a WNOHANG wait (bash's SIGCHLD
        # handler), a waitid, or SIGCHLD set to SIG_IGN. Trusting a stale entry would send a blocking
        # wait into the kernel while its other children still run (the whole run would hang).
        proc.data["zombies"] = [z for z in proc.data.get("zombies", []) if _unreaped(z.pid)]
        zombies = [z for z in proc.data["zombies"] if match(z)]
        if zombies:
            # The kernel would reap whichever of its zombies it finds first, and it may hold one
            # whose exit we have not processed yet: name ours (the first to exit, in the canonical
            # order the loop processes exits) so that every run reaps the same child.
            z = zombies[0]
            if sc.name == "waitid":
                sc.set_arg(0, P_PID)
                sc.set_arg(1, z.pid)
                if not options & WNOWAIT:
                    proc.data["zombies"] = [p for p in proc.data["zombies"] if p is not z]
                return NATIVE
            sc.set_arg(0, z.pid)
            proc.data["zombies"] = [p for p in proc.data["zombies"] if p is not z]
            return NATIVE
        live = [p for p in self.actor.emulation.processes.values() if p.parent is proc and match(p)]
        if not live:
            return NATIVE  # ECHILD (or a child we do not trace): the kernel answers at once
        if options & WNOHANG:
            # Nothing exited as far as the simulation knows (a child dying right now in the kernel
            # is not reported yet): answer so, rather than let the kernel's timing decide.
            if sc.name == "waitid" and sc.arg(2):
                sc.mem.write(sc.arg(2), bytes(128))   # si_pid 0: nobody (waitid(2))
            return Value(0)
        return Blocked(f"{sc.name}", on=(self._children_cond(proc),), restart=True)

    def wait4(self, sc):
        pid = sc.iarg(0)
        return self._wait_children(sc, (lambda p: p.pid == pid) if pid > 0 else (lambda p: True), sc.iarg(2))

    def waitid(self, sc):
        idtype, ident = sc.iarg(0), sc.iarg(1)
        if idtype == P_PID:
            match = lambda p: p.pid == ident  # noqa: E731
        else:
            match = lambda p: True  # noqa: E731 - process groups and pidfds: any child may do
        return self._wait_children(sc, match, sc.iarg(3))

    # -- signals ---------------------------------------------------------------------------------
    def rt_sigtimedwait(self, sc):
        """sigwaitinfo/sigtimedwait(2): wait here (in simulated time) until a signal of the set is
        pending, then let the kernel take it at once. The scheduler looks again at such waits
        whenever a signal may have been sent (`Scheduler._deliver_signals`)."""
        if sc.state is None:
            mask = sc.mem.read_u64(sc.arg(0)) if sc.arg(3) >= 8 else 0
            deadline = None
            if sc.arg(2):
                sec, nsec = sc.mem.read_timespec(sc.arg(2))
                if sec < 0 or not 0 <= nsec < NS:
                    return Errno(errno.EINVAL)
                deadline = self.actor.now() + sec + nsec / NS
            sc.state = SignalWait(mask, deadline)
        st = signal_state(sc.pid, sc.tid)
        if st is None or st.pending & sc.state.mask:
            return _taking_signal(sc, sc.state.mask)
        if sc.state.deadline is not None and self.actor.now() >= sc.state.deadline:
            return Errno(errno.EAGAIN)
        return Blocked("rt_sigtimedwait", sc.state.deadline)

    def signalling(self, sc):
        # The kernel sends it; by the end of this round the sender has run past it, and the loop
        # looks for blocked tasks with a deliverable signal (the target may be one we hold stopped).
        self.actor.emulation.scheduler.signal_sent()
        return NATIVE

    # -- signals: which handlers restart syscalls --------------------------------------------
    def rt_sigaction(self, sc):
        sig, act = sc.iarg(0), sc.arg(1)
        if act and 0 < sig < 65:
            try:
                _handler, flags = struct.unpack("<QQ", sc.mem.read(act, 16))
            except OSError:
                return NATIVE
            sc.process.data.setdefault("sigactions", {})[sig] = flags
        return NATIVE

    def set_tid_address(self, sc):
        sc.task.clear_child_tid = sc.arg(0)
        return NATIVE

    # -- futex ---------------------------------------------------------------------------------
    def _queue(self, process, addr: int, op: int = FUTEX_PRIVATE_FLAG) -> FutexQueue:
        # futex(2): a private futex is (process, address); a shared one (no FUTEX_PRIVATE_FLAG, e.g.
        # a pshared semaphore in /dev/shm, multiprocessing's locks) is the memory itself, whichever
        # process maps it where: the kernel keys it by inode and offset for shared mappings.
        key = None
        if not op & FUTEX_PRIVATE_FLAG:
            key = shared_mapping_key(process.pid, addr)
        if key is None:
            key = (process.pid, addr)
        q = self.futexes.get(key)
        if q is None:
            q = self.futexes[key] = FutexQueue()
        return q

    def futex(self, sc):
        op = sc.iarg(1)
        cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
        if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
            return self._futex_wait(sc, cmd, op)
        if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
            bitset = sc.arg(5) & 0xFFFFFFFF if cmd == FUTEX_WAKE_BITSET else FUTEX_BITSET_MATCH_ANY
            if bitset == 0:
                return Errno(errno.EINVAL)
            return Value(self._wake(self._queue(sc.process, sc.arg(0), op), sc.iarg(2), bitset))
        if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
            if cmd == FUTEX_CMP_REQUEUE and sc.mem.read_u32(sc.arg(0)) != sc.arg(5) & 0xFFFFFFFF:
                return Errno(errno.EAGAIN)
            src, dst = self._queue(sc.process, sc.arg(0), op), self._queue(sc.process, sc.arg(4), op)
            woken = self._wake(src, sc.iarg(2), FUTEX_BITSET_MATCH_ANY)
            moved = 0
            limit = sc.arg(3) & 0x7FFFFFFF
            while moved < limit and src.waiting:
                w = src.waiting.pop(0)
                if w.live:
                    dst.waiting.append(w)
                    w.sc.task.blocked_on.on[0].waiters.discard(w.sc.task)
                    dst.waiters.add(w.sc.task)
                    w.sc.state.queue = dst
                    moved += 1
            return Value(woken + moved if cmd == FUTEX_CMP_REQUEUE else woken)
        if cmd == FUTEX_WAKE_OP:
            return Value(self._wake_op(sc))
        return NATIVE  # priority-inheritance futexes: the kernel's (they do not wait on us)

    def _futex_wait(self, sc, cmd: int, op: int):
        st = sc.state
        if st is None:
            if sc.mem.read_u32(sc.arg(0)) != sc.arg(2) & 0xFFFFFFFF:
                return Errno(errno.EAGAIN)
            bitset = sc.arg(5) & 0xFFFFFFFF if cmd == FUTEX_WAIT_BITSET else FUTEX_BITSET_MATCH_ANY
            if bitset == 0:
                return Errno(errno.EINVAL)
            deadline = None
            if sc.arg(3):
                sec, nsec = sc.mem.read_timespec(sc.arg(3))
                if sec < 0 or not 0 <= nsec < NS:
                    return Errno(errno.EINVAL)
                if cmd == FUTEX_WAIT_BITSET:  # absolute, on CLOCK_MONOTONIC unless told REALTIME
                    clock = CLOCK_REALTIME if op & FUTEX_CLOCK_REALTIME else CLOCK_MONOTONIC
                    deadline = self.actor.emulation.clock.to_simulated(clock, sec * NS + nsec)
                else:                         # relative
                    deadline = self.actor.now() + sec + nsec / NS
            queue = self._queue(sc.process, sc.arg(0), op)
            st = sc.state = FutexWait(sc, bitset, deadline, queue)
            queue.waiting.append(st)
        if st.woken:
            return Value(0)
        if st.deadline is not None and self.actor.now() >= st.deadline:
            st.woken = True  # leaves the queue
            return Errno(errno.ETIMEDOUT)
        return Blocked("futex", st.deadline, on=(st.queue,), restart=True)

    @staticmethod
    def _wake(queue: FutexQueue, n: int, bitset: int) -> int:
        woken = 0
        keep = []
        for w in queue.waiting:
            if not w.live:
                continue
            if woken < n and w.bitset & bitset:
                w.woken = True
                wait.wake(w.sc.task)
                woken += 1
            else:
                keep.append(w)
        queue.waiting = keep
        return woken

    def futex_wake_address(self, process, addr: int) -> None:
        q = self.futexes.get((process.pid, addr))
        if q is not None:
            self._wake(q, 1, FUTEX_BITSET_MATCH_ANY)

    def _wake_op(self, sc) -> int:
        """FUTEX_WAKE_OP: *uaddr2 = *uaddr2 OP oparg; wake val on uaddr; if old CMP cmparg, wake
        val2 on uaddr2. Not atomic against threads running at this instant (they are not stopped)."""
        encoded = sc.arg(5) & 0xFFFFFFFF
        op, cmp = (encoded >> 28) & 7, (encoded >> 24) & 15
        oparg, cmparg = (encoded >> 12) & 0xFFF, encoded & 0xFFF
        if (encoded >> 28) & 8:
            oparg = 1 << oparg
        addr2 = sc.arg(4)
        old = sc.mem.read_u32(addr2)
        new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op, old)
        sc.mem.write(addr2, struct.pack("<I", new & 0xFFFFFFFF))
        op = sc.iarg(1)
        woken = self._wake(self._queue(sc.process, sc.arg(0), op), sc.iarg(2), FUTEX_BITSET_MATCH_ANY)
        s_old = old - (1 << 32) if old >= 1 << 31 else old
        cond = {0: s_old == cmparg, 1: s_old != cmparg, 2: s_old < cmparg, 3: s_old <= cmparg,
                4: s_old > cmparg, 5: s_old >= cmparg}.get(cmp, False)
        if cond:
            woken += self._wake(self._queue(sc.process, addr2, op), sc.arg(3) & 0x7FFFFFFF, FUTEX_BITSET_MATCH_ANY)
        return woken

    # -- local descriptors ---------------------------------------------------------------------
    def pipe2(self, sc):
        fds_ptr = sc.arg(0)

        def created(sc_, ret):
            if ret == 0:
                for fd in struct.unpack("<ii", sc_.mem.read(fds_ptr, 8)):
                    target = fd_target(sc_.pid, fd)
                    if target:
                        self.pipes.add(target)
            return None

        return Native(on_exit=created)

    pipe = pipe2

    def _local(self, pid: int, fd: int, target: Optional[str] = None) -> bool:
        """Is fd a descriptor whose other end is held by tracees (so a wait on it may be a wait on
        the simulation)? `target`: its /proc/PID/fd link if the caller has read it already."""
        target = target or fd_target(pid, fd)
        if target is None:
            return False
        if target.startswith("socket:") or target == "anon_inode:[eventfd]":
            return True
        return target in self.pipes

    def _ready(self, process, fd: int, events: int) -> int:
        """poll(2) on our own duplicate of the tracee's descriptor: the kernel's own answer."""
        mine = self._dup(process, fd)
        if mine is None:
            return select.POLLNVAL
        try:
            p = select.poll()
            p.register(mine, events)
            res = p.poll(0)
            return res[0][1] if res else 0
        finally:
            os.close(mine)

    def blocking_io(self, sc, fd: int, events: int, flags: int = 0):
        """A read/write/accept-like call on a descriptor that is not simulated."""
        if isinstance(sc.state, SignalWait):
            return self._signalfd_read(sc, fd)
        target = fd_target(sc.pid, fd)
        if target == "anon_inode:[signalfd]" and sc.name in ("read", "readv"):
            return self._signalfd_read(sc, fd)   # (recv, accept...: ENOTSOCK at once, the kernel's)
        if not self._local(sc.pid, fd, target):
            return NATIVE
        if flags & 0x40 or fd_flags(sc.pid, fd) & O_NONBLOCK:  # MSG_DONTWAIT / O_NONBLOCK
            return NATIVE
        if self._ready(sc.process, fd, events):
            return NATIVE
        return Blocked(f"{sc.name} fd {fd}", on=(self.actor.emulation.scheduler.native_files,), restart=True)

    def _signalfd_read(self, sc, fd: int):
        """read(2) of a signalfd without O_NONBLOCK sleeps until a signal of its mask is pending for
        the reading thread (signalfd(2)). That signal may come from a timer of ours (alarm,
        setitimer, timer_create) or from a tracee we hold, at a later simulated date: the kernel
        would wait for it in vain. So the read waits here, as rt_sigtimedwait does (woken by
        `Scheduler._deliver_signals` whenever a signal may have been sent), and is handed to the
        kernel once one is pending. Our own poll of a duplicate cannot say: a signalfd is readable
        for the thread that polls it, which would be us."""
        if sc.state is None:
            mask = signalfd_mask(sc.pid, fd)
            if mask is None:
                return NATIVE
            if fd_flags(sc.pid, fd) & O_NONBLOCK:
                return _reading_signalfd(sc, mask)
            sc.state = SignalWait(mask, None)
        st = signal_state(sc.pid, sc.tid)
        if st is None or st.pending & sc.state.mask:
            return _reading_signalfd(sc, sc.state.mask)
        # signalfd_dequeue returns -ERESTARTSYS when another signal interrupts it: restartable
        return Blocked(f"read signalfd fd {fd}", restart=True)

    def blocking_write(self, sc, fd: int, iov: list[tuple[int, int]], flags: int = 0):
        """write/writev/send on a descriptor that is not simulated (see the module docstring)."""
        if not self._local(sc.pid, fd):
            return NATIVE
        if flags & 0x40 or fd_flags(sc.pid, fd) & O_NONBLOCK:  # MSG_DONTWAIT / O_NONBLOCK
            return NATIVE
        total = sum(n for _, n in iov)
        st = sc.state
        if st is None:
            if total <= self._room(sc.process, fd):
                return NATIVE   # it fits: the kernel will not block (and keeps the write atomic)
            st = sc.state = WriteProgress(total)
        while st.done < total:
            chunk = sc.mem.gather(_skip(iov, st.done), min(total - st.done, 1 << 20))
            try:
                n = self._write_nowait(sc.process, fd, chunk)
            except OSError:
                # No reader (EPIPE, with SIGPIPE), a datagram too large...: the kernel's own write
                # gives the error at once; after a partial write, the count written (write(2)).
                return NATIVE if st.done == 0 else Value(st.done)
            if n == 0:
                return Blocked(f"{sc.name} fd {fd}", on=(self.actor.emulation.scheduler.native_files,),
                               restart=st.done == 0)
            st.done += n
            self.actor.emulation.scheduler.native_files.notify()  # a reader may go on
        return Value(total)

    def _room(self, process, fd: int) -> int:
        """Bytes a write on `fd` surely takes without blocking: one page once poll says writable.
        Not a pipe's free bytes (F_GETPIPE_SZ − FIONREAD): the kernel counts room in page slots, and
        partly read pages fill them all with far fewer bytes queued (pipe(7); nginx's 2 MB to a
        `| md5sum` blocked that way in the kernel)."""
        mine = self._dup(process, fd)
        if mine is None:
            return 0
        try:
            p = select.poll()
            p.register(mine, select.POLLOUT)
            return PIPE_BUF if p.poll(0) else 0
        finally:
            os.close(mine)

    def _write_nowait(self, process, fd: int, data: bytes) -> int:
        """Write what fits now on our duplicate of `fd`; 0 if nothing does."""
        mine = self._dup(process, fd)
        if mine is None:
            raise BrokenPipeError()
        try:
            try:
                return os.pwritev(mine, [data], -1, os.RWF_NOWAIT)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return 0
                if e.errno not in (errno.ESPIPE, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            try:   # a socket: a per-call non-blocking send
                return os.sendmsg(mine, [data], [], socket.MSG_DONTWAIT)  # type: ignore[attr-defined]
            except BlockingIOError:
                return 0
        finally:
            os.close(mine)

    def _dup(self, process, fd: int) -> Optional[int]:
        pidfd = process.data.get("pidfd")
        if pidfd is None:
            pidfd = process.data["pidfd"] = os.pidfd_open(process.pid)
        try:
            return _pidfd_getfd(pidfd, fd)
        except OSError:
            return None

    def close_process(self, process) -> None:
        pidfd = process.data.pop("pidfd", None)
        if pidfd is not None:
            os.close(pidfd)
