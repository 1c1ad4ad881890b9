"""The tracing engine: start a command under ptrace with a seccomp filter, follow its whole process
tree, and hand each subscribed syscall to a policy.

Threading model: ptrace requests must come from the thread that traces (the one that spawned the
root; children found by PTRACE_O_TRACE{FORK,VFORK,CLONE} are traced by that same thread). The engine
therefore waits with __WNOTHREAD, so several engines can live in one process, one per thread (one per
simulated actor), each seeing only its own tracees.

Stop semantics relied upon (verified on this kernel, FACTS.md section 1):
  * RET_TRACE + PTRACE_O_TRACESECCOMP gives one stop at syscall entry; resumed with PTRACE_CONT there
    is no exit stop; resumed with PTRACE_SYSCALL the next stop is the exit.
  * Setting orig_rax = -1 and rax = result at that stop emulates the syscall in one stop.
  * A new child's first stop is a SIGSTOP that may arrive before or after its parent's fork event.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import operator
import os
import signal
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..procfs import task_comm, task_state
from . import arch, launcher, names, stops
from . import ptrace as pt
from .memory import Memory, MemoryError_
from .ptrace import TraceeGone
from .results import NATIVE, Blocked, Errno, Native, Unsupported, Value
from .sigqueue import tgkill

_ARGS = arch.ARGS
_NAMES = names.NAMES
_get_args = operator.attrgetter(*_ARGS)  # the six argument registers in one C call
_OPTIONS = (pt.PTRACE_O_TRACESECCOMP | pt.PTRACE_O_TRACESYSGOOD | pt.PTRACE_O_TRACEFORK
            | pt.PTRACE_O_TRACEVFORK | pt.PTRACE_O_TRACECLONE | pt.PTRACE_O_TRACEEXEC
            | pt.PTRACE_O_TRACEVFORKDONE | pt.PTRACE_O_EXITKILL)
_STOPPING_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
CLONE_THREAD = 0x10000
CLONE_CHILD_CLEARTID = 0x00200000
NR_CLONE = names.number("clone")
NR_CLONE3 = names.number("clone3")
NR_IO_URING_SETUP = names.number("io_uring_setup")
NR_EXIT_GROUP = names.number("exit_group")
SYS_SECCOMP = 1                  # si_code of a SIGSYS raised by a seccomp filter (siginfo.h)
X32_SYSCALL_BIT = 0x40000000     # x32 syscall numbers carry it (arch/x86/include/uapi/asm/unistd.h)
NR_MMAP = names.number("mmap")
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
AT_NULL, AT_RANDOM, AT_SYSINFO_EHDR = 0, 25, 33  # getauxval(3)
# Registers identifying "the same syscall at the same place" (inject's re-stop vs a nested call).
_SAME_CALL = (arch.NR, arch.IP, arch.SP, *arch.ARGS)


@dataclass(eq=False)
class Process:
    """A thread group. `data` is the policy's own per-process state (the engine never reads it)."""

    pid: int
    parent: Optional["Process"]
    mem: Memory
    tids: set = field(default_factory=set)
    exit_status: Optional[int] = None  # wait status, once the leader is reaped
    data: dict = field(default_factory=dict)
    owner: object = None               # the policy's object for this tree (inherited by children)
    rank: tuple = ()                   # its leader's rank

    @property
    def alive(self) -> bool:
        return self.exit_status is None


# RUNNING: on a CPU or in the kernel; STOPPED: stopped at a syscall whose handling waits for the end
# of the round; BLOCKED: stopped by us in a syscall, waiting; IN_VFORK: a vfork parent the kernel
# holds until its child execs or exits. PREEMPTED: stopped by us between two syscalls after
# computing for a while (`watch_stalls`), held until the policy resumes it.
RUNNING, STOPPED, BLOCKED, IN_VFORK, PREEMPTED = "running", "stopped", "blocked", "in vfork", "preempted"


@dataclass(eq=False)
class Task:
    tid: int
    process: Process
    state: str = RUNNING
    awaiting_first_stop: bool = False
    on_exit: Optional[Callable] = None        # pending syscall-exit callback
    exit_syscall: Optional["Syscall"] = None
    blocked: Optional["Syscall"] = None       # the syscall a BLOCKED task is stopped in
    blocked_on: Optional[Blocked] = None      # and why / until when
    pending_signal: int = 0                   # to deliver at the next resume
    # The canonical order of tasks: a root's rank is (n,) for the n-th spawn, a child's is its
    # creator's rank plus its index among the creator's children — the same in every run whatever
    # order the kernel ran things in.
    rank: tuple = ()
    children: int = 0
    vfork_parent: Optional["Task"] = None     # the parent waiting in vfork for this child to exec
    clear_child_tid: int = 0                  # CLONE_CHILD_CLEARTID / set_tid_address address
    scratch: int = 0                          # this task's own page in the tracee, mapped by us (0: none)
    warned_busy: bool = False                 # the stall watchdog said it computes without syscalls
    preempt_requested: bool = False           # the watchdog sent it the SIGSTOP that preempts it


class Syscall:
    """One syscall, at its seccomp stop. Reading args is free; `set_arg`/`nr` changes are written back
    (one SETREGS) before the tracee resumes."""

    __slots__ = ("task", "regs", "nr", "name", "args", "orig_args", "dirty", "state", "first", "pre")

    def __init__(self, task: Task, regs: arch.Regs):
        self.task = task
        self.regs = regs
        nr = self.nr = getattr(regs, arch.NR)
        self.name = _NAMES.get(nr) or names.name(nr)
        self.args = self.orig_args = _get_args(regs)
        self.dirty = False
        self.state = None  # the handler's own scratch data, kept across retries of a blocked call
        self.first = True  # False when the handler sees it again (`Tracer.retry`)
        self.pre = None    # the dispatcher's own per-call state (e.g. a CPU burst charged first)

    @property
    def tid(self) -> int:
        return self.task.tid

    @property
    def pid(self) -> int:
        return self.task.process.pid

    @property
    def process(self) -> Process:
        return self.task.process

    @property
    def mem(self) -> Memory:
        return self.task.process.mem

    def arg(self, i: int, signed: bool = False) -> int:
        v = self.args[i]
        if signed and v >= 1 << 63:
            v -= 1 << 64
        return v

    def iarg(self, i: int) -> int:
        """Argument i as a C int (fds, flags): the low 32 bits, signed."""
        v = self.args[i] & 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v

    def set_arg(self, i: int, value: int) -> None:
        setattr(self.regs, _ARGS[i], value & 0xFFFFFFFFFFFFFFFF)
        self.args = self.args[:i] + (value & 0xFFFFFFFFFFFFFFFF,) + self.args[i + 1:]
        self.dirty = True

    def __repr__(self) -> str:
        return f"<{self.name}{self.args} tid={self.tid}>"


class Policy:
    """What a policy may provide. `handlers` maps syscall numbers to handler(syscall) -> Result; only
    those numbers are put in the seccomp filter, nothing else ever stops."""

    handlers: dict[int, Callable] = {}

    def on_exec(self, process: Process) -> None: ...
    def on_fork(self, parent: Task, child: Task, is_thread: bool) -> None: ...
    def on_process_exit(self, process: Process, status: int) -> None: ...
    def on_task_exit(self, task: Task) -> None: ...
    def on_blocked(self, task: Task) -> None: ...
    def on_released(self, task: Task) -> None: ...

    def on_preempted(self, task: Task) -> None:
        """`task` computed for a while without a syscall and is now PREEMPTED: resume it with
        `Tracer.resume_preempted`, now or later."""
        raise NotImplementedError("a policy that asks for preemption must handle it")

    def on_fatal(self, task: Task, message: str) -> Optional[bool]:
        """An error the task's tree cannot continue past; return True if handled (the tracer then
        does nothing more), else the tracer records it and kills every tracee."""
        return None
    def on_signal(self, task: Task, sig: int) -> int:
        return sig

    def at_random(self, process: Process) -> Optional[bytes]:
        """The 16 bytes the program `process` has just exec'd finds at getauxval(AT_RANDOM), or None
        to keep the kernel's (random) ones. Called at the exec stop, before its first instruction."""
        return None


def status_to_exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+signal."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


class Tracer:
    def __init__(self, policy: Policy, *, vdso: str = "disable", cpu: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None):
        if vdso not in ("disable", "keep"):
            raise ValueError("vdso must be 'disable' or 'keep'")
        self.policy = policy
        self.vdso = vdso
        self.cpu = cpu
        self.log = log or (lambda msg: print(f"simterpose: {msg}", file=sys.stderr))
        self.tasks: dict[int, Task] = {}
        self.root: Optional[Process] = None
        self.error: Optional[str] = None
        self._handlers = dict(policy.handlers)
        # io_uring would let a tracee do I/O without any syscall we can see: refuse it.
        self._handlers.setdefault(NR_IO_URING_SETUP, lambda sc: Errno(errno_mod.ENOSYS))
        self._regs = arch.Regs()           # reused for every stop: no allocation on the hot path
        self._early: set[int] = set()      # new tids whose first stop came before the fork event
        self._wait_flags = pt.WALL | pt.WNOTHREAD
        self._spawned = 0
        self.stops = 0                     # syscall stops handled by run_round (counted per round)
        self.new_process_group = False     # spawn each tree in a process group of its own
        self._events = 0                   # waitpid results so far (the stall watchdog's clock)
        self._stop_watch: Optional[threading.Event] = None
        self._stall_notes: dict[int, str] = {}  # tid -> why the watchdog killed it

    # -- starting ------------------------------------------------------------------------------
    def spawn(self, argv: list[str], env: Optional[dict] = None, cwd: Optional[str] = None,
              stdin: Optional[int] = None, stdout: Optional[int] = None, stderr: Optional[int] = None,
              path: Optional[str] = None, owner: object = None) -> Process:
        """Start argv under the tracer; returns once the root process is traced and filtered (it then
        runs until its first subscribed syscall, which `step()` will report)."""
        if self.cpu is not None:
            # Pin this tracer thread; the child inherits it. Tracer and tracee on one CPU avoid a
            # cross-CPU wake-up per stop (2-3x lower stop latency measured on these VMs).
            os.sched_setaffinity(0, {self.cpu})
        helper = launcher.path()
        numbers = ",".join(str(n) for n in sorted(self._handlers))
        file_actions = []
        for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
            if fd is not None:
                file_actions.append((os.POSIX_SPAWN_DUP2, fd, target))
        env = dict(os.environ if env is None else env)
        prog = path or argv[0]
        # The launcher changes directory itself: os.chdir here would move every thread of the tracer.
        cwd_args = ["-C", cwd] if cwd is not None else []
        # Tracees inherit only 0-2: descriptors of ours (SimGrid's, a pipe of the CLI) would shift
        # the numbers a program gets and leak into the simulated processes.
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass
        # A group of its own: a Ctrl-C at the terminal (SIGINT to the foreground group) then reaches
        # the tracer alone, which decides what happens to the tracees.
        group = {"setpgroup": 0} if self.new_process_group else {}
        pid = os.posix_spawn(helper, [helper, *cwd_args, numbers, "--", prog, *argv], env,
                             file_actions=file_actions, **group)
        _, status = os.waitpid(pid, pt.WALL)
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP):
            raise RuntimeError(f"launcher did not stop as expected (status {status:#x})")
        pt.setoptions(pid, _OPTIONS)
        self._spawned += 1
        proc = Process(pid=pid, parent=None, mem=Memory(pid), owner=owner, rank=(self._spawned,))
        task = Task(pid, proc, rank=proc.rank)
        proc.tids.add(pid)
        self.tasks[pid] = task
        if self.root is None:
            self.root = proc
        pt.cont(pid)
        return proc

    # -- the event loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Trace until every task is gone; returns the root's exit code (128+signal if killed)."""
        while self.tasks:
            if not self.step():
                break
        return self.exit_code()

    def exit_code(self) -> int:
        if self.error is not None:
            return 255 if self.root is None or self.root.exit_status is None else max(
                1, status_to_exit_code(self.root.exit_status))
        if self.root is None or self.root.exit_status is None:
            return 255
        return status_to_exit_code(self.root.exit_status)

    def running(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state == RUNNING]

    def blocked(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state == BLOCKED]

    def step(self, block: bool = True) -> bool:
        """Wait for one event of our tracees and handle it. False when there is nothing to wait for
        (or, with block=False, nothing has happened yet)."""
        if not any(t.state == RUNNING for t in self.tasks.values()):
            return False
        try:
            tid, status = os.waitpid(-1, self._wait_flags | (0 if block else os.WNOHANG))
        except ChildProcessError:
            self._forget_all()
            return False
        if tid == 0:
            return False
        self._dispatch(tid, status)
        return True

    def run_round(self) -> bool:
        """Let every running task run until it stops at a syscall, blocks, or exits, then handle
        the syscall stops in the canonical order (`Task.rank`), whatever order the kernel ran the
        tasks in: with one tracer for the whole run, this is what makes a run reproducible. Other
        events (fork, exec, exit, signals) are handled as they come: they decide nothing, and a
        task may wait in the kernel on them (a vfork parent on its child). False if no task was
        running.

        A task that sleeps in the kernel on something only a stopped task could provide would hang
        the round, which is why the policy must never leave such a syscall to the kernel."""
        running = self._running()
        if not running:
            return False
        deferred = self._exit_groups_first(self._collect(running))
        self.stops += len(deferred)
        self._dispatch_stops(deferred)
        return True

    def _dispatch_stops(self, stops: list) -> None:
        tasks = self.tasks
        for _, _, tid, status, regs in stops:
            task = tasks.get(tid)
            if task is not None and task.state == STOPPED:
                task.state = RUNNING
                if regs is None:
                    self._dispatch(tid, status)
                    continue
                # A seccomp stop whose registers `_collect` read: straight to its handler (the
                # hot path: `_dispatch` would only find out again what kind of stop it is).
                try:
                    self._handle(task, Syscall(task, regs))
                except TraceeGone:
                    pass
                except MemoryError_:
                    if not _vanished(tid):
                        raise

    def _exit_groups_first(self, deferred: list) -> list:
        """Let the processes that stopped at exit_group die before any other task of the round is
        resumed. The kernel signals a parent (SIGCHLD) when its child dies; resumed first, the
        parent would take it at whatever point of its own code it had reached by then — a race.
        Stopped, it takes it when resumed, at the end of its syscall: the same point every run."""
        exiting, rest = [], []
        for entry in deferred:
            regs = entry[4]
            (exiting if regs is not None and getattr(regs, arch.NR) == NR_EXIT_GROUP else rest).append(entry)
        if not exiting:
            return deferred
        self._dispatch_stops(exiting)
        self.stops += len(exiting)
        return sorted(rest + self._collect())

    def _running(self) -> int:
        n = 0
        for t in self.tasks.values():
            if t.state == RUNNING:
                n += 1
        return n

    def _collect(self, running: Optional[int] = None) -> list:
        """Wait until no task runs; dispatch exits (in canonical order) and other events; return
        the syscall stops, sorted, for the caller to handle. `running`: how many tasks run now, if
        the caller just counted them."""
        if running is None:
            running = self._running()
        # (rank, arrival, tid, status, registers of a seccomp stop, read here once: None for
        # other stops, or when the task vanished meanwhile — `_dispatch` then finds out)
        deferred: list[tuple[tuple, int, int, int, Optional[arch.Regs]]] = []
        exits: list[tuple[tuple, int, int, int]] = []
        # Counted down as tasks stop or exit; recounted after other events (a fork adds a task, a
        # signal stop resumes one...), which are rare: no scan of every task per stop.
        while running > 0:
            # A seccomp stop's registers are read into their own buffer, by the same C call as the
            # waitpid (stops.c): the Syscall keeps it, also while BLOCKED (no copy then).
            regs = arch.Regs()
            try:
                tid, status, got_regs = stops.wait_stop(self._wait_flags, regs)
            except ChildProcessError:
                self._forget_all()
                break
            self._events += 1
            task = self.tasks.get(tid)
            if task is not None and os.WIFSTOPPED(status) and (
                    (status >> 16) == pt.PTRACE_EVENT_SECCOMP or os.WSTOPSIG(status) == pt.SYSCALL_STOP_SIG):
                if task.state == RUNNING:
                    running -= 1
                task.state = STOPPED
                if not got_regs:
                    regs = None   # a syscall-exit stop, or the task vanished: `_dispatch` finds out
                deferred.append((task.rank, len(deferred), tid, status, regs))
            elif task is not None and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                # Exits are processed in canonical order too: which child a parent's wait reaps,
                # and the order of the zombies it sees, must not depend on which died first.
                if task.state == RUNNING:
                    running -= 1
                task.state = STOPPED
                exits.append((task.rank, len(exits), tid, status))
            else:
                self._dispatch(tid, status)
                running = self._running()
        exits.sort()
        for _, _, tid, status in exits:
            self._dispatch(tid, status)
        deferred.sort()
        return deferred

    # -- the stall watchdog --------------------------------------------------------------------
    def watch_stalls(self, seconds: float, preempt_after: Optional[float] = None) -> None:
        """Start a watchdog thread: when `seconds` of wall time pass without any event from the
        tracees while some are running, it looks at them. One asleep in the kernel waits for
        something the simulation cannot provide (a file lock, a FIFO a program outside the run
        should open, a socket to the outside): the run would hang forever, so the task is killed
        and its tree fails with a message naming the syscall. One computing without syscalls is reported once and left to
        run. The loop itself pays nothing: the thread only compares an event counter.

        With `preempt_after` (wall seconds), a task found computing (state R) once that long has
        passed without any event is preempted, as a kernel's timer tick would: stopped with a
        SIGSTOP that `_on_signal` recognises and swallows, and handed to `Policy.on_preempted`,
        which resumes it (`resume_preempted`) when it sees fit — e.g. once its computation so far
        has been charged in simulated time. Without this, a thread spinning on memory that a
        thread asleep in simulated time will write would hang the run (the clock never moves while
        a task runs)."""
        tick = seconds if preempt_after is None else min(seconds, preempt_after)

        def watch():
            last, idle = -1, 0.0
            while not self._stop_watch.wait(tick):
                events = self._events
                if events != last:
                    last, idle = events, 0.0
                    continue
                idle += tick
                if preempt_after is not None:
                    self._preempt_computing()
                if idle >= seconds:
                    idle = 0.0
                    self._check_stalled()

        self._stop_watch = threading.Event()
        threading.Thread(target=watch, name="stall-watchdog", daemon=True).start()

    def _preempt_computing(self) -> None:
        for task in list(self.tasks.values()):
            if task.state == RUNNING and not task.preempt_requested and task_state(task.tid)[0] == "R":
                task.preempt_requested = True
                try:
                    tgkill(task.process.pid, task.tid, signal.SIGSTOP)
                except OSError:
                    task.preempt_requested = False   # gone meanwhile: its exit is on its way

    def siginfo(self, task: Task) -> bytes:
        """The siginfo_t of the signal `task` is stopped for (at `Policy.on_signal`)."""
        return pt.getsiginfo(task.tid)

    def set_siginfo(self, task: Task, siginfo: bytes) -> None:
        """Change what the handler of the signal `task` is stopped for will see."""
        pt.setsiginfo(task.tid, siginfo)

    def resume_preempted(self, task: Task) -> None:
        """Let a PREEMPTED task compute on."""
        assert task.state == PREEMPTED
        task.state = RUNNING
        try:
            self._resume(task)
        except TraceeGone:
            pass  # its exit will be reported by waitpid

    def stop_watching_stalls(self) -> None:
        if self._stop_watch is not None:
            self._stop_watch.set()

    def _check_stalled(self) -> None:
        for task in list(self.tasks.values()):
            if task.state != RUNNING or task.tid in self._stall_notes:
                continue
            state, nr = task_state(task.tid)
            if state == "S" and nr is not None:   # not "D": slow disk I/O ends by itself
                self._stall_notes[task.tid] = (
                    f"process {task.process.pid} sleeps in the kernel in {names.name(nr)}(), waiting for "
                    "something outside the simulation (e.g. a file lock another task holds): unsupported, stopped")
                try:
                    os.kill(task.tid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            elif state == "R" and not task.warned_busy:
                task.warned_busy = True
                if task.process.data.get("warned_busy"):
                    continue   # once per process: its threads often spin together
                task.process.data["warned_busy"] = True
                held = sum(1 for t in self.tasks.values() if t.state == STOPPED)
                self.log(f"process {task.process.pid} ({task_comm(task.tid)}) computes without any syscall: "
                         "the simulated clock waits for its next one (no preemption)"
                         + (f"; {held} task(s) stopped at a syscall wait for it: if it spin-waits on one "
                            "of them, the run never ends (--cpu-model measured preempts it)" if held else ""))

    def kill_tree(self, owner: object) -> None:
        """SIGKILL every task of one owner; their exits come through `run_round`."""
        for task in list(self.tasks.values()):
            if task.process.owner is owner:
                try:
                    os.kill(task.tid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if task.state in (BLOCKED, PREEMPTED):
                    # Out of the policy's waits and holds: a task held by --cpu-model none at its
                    # kill date was resumed later as if still PREEMPTED (AssertionError).
                    self.policy.on_released(task)
                    task.blocked = task.blocked_on = None
                task.state = RUNNING  # a stopped task dies too: wait for its exit

    def group_exiting(self, process: Process, exclude: Optional[Task] = None) -> None:
        """The kernel is ending every thread of `process` (exit_group, a fatal signal). Threads we
        hold stopped die as soon as that happens (SIGKILL wakes a ptrace-stopped task): count them
        as running so that the next rounds collect their exits — else a thread blocked in an
        emulated wait would keep a finished process alive (a Go program's exit_group from one
        thread while its leader waits in a futex)."""
        for tid in sorted(process.tids):
            task = self.tasks.get(tid)
            if task is None or task is exclude or task.state not in (BLOCKED, STOPPED, PREEMPTED):
                continue
            if task.state in (BLOCKED, PREEMPTED):
                self.policy.on_released(task)
            task.state = RUNNING
            task.blocked = task.blocked_on = None

    def _dispatch(self, tid: int, status: int, regs: Optional[arch.Regs] = None) -> None:
        """Handle one waitpid event; `regs`: the registers of a seccomp stop, if already read."""
        task = self.tasks.get(tid)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._task_exited(tid, task, status)
            return
        if not os.WIFSTOPPED(status):
            return
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if task is None:
            # A new child whose first SIGSTOP beat its parent's fork event: park it until the event.
            if sig == signal.SIGSTOP and event == 0:
                self._early.add(tid)
            else:
                self.log(f"unexpected stop of unknown task {tid} (status {status:#x}); resuming")
                self._resume_raw(tid)
            return
        try:
            if event == pt.PTRACE_EVENT_SECCOMP:
                self._on_seccomp(task, regs)
            elif sig == pt.SYSCALL_STOP_SIG:
                self._on_syscall_exit(task)
            elif event in (pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK, pt.PTRACE_EVENT_CLONE):
                self._on_fork(task, event)
            elif event == pt.PTRACE_EVENT_EXEC:
                self._on_exec(task)
            elif event:
                self._resume(task)  # VFORK_DONE and friends: nothing to do
            else:
                self._on_signal(task, sig)
        except TraceeGone:
            pass  # its exit will be reported by waitpid
        except MemoryError_:
            if not _vanished(tid):
                raise
            # killed while we read or wrote its memory (e.g. the new stack at an exec): as above

    # -- syscall stops -------------------------------------------------------------------------
    def _on_seccomp(self, task: Task, regs: Optional[arch.Regs] = None) -> None:
        if regs is None:
            regs = arch.Regs()
            try:
                pt.getregs(task.tid, regs)
            except pt.PtraceError:
                raise TraceeGone() from None
        self._handle(task, Syscall(task, regs))

    def _handle(self, task: Task, sc: Syscall) -> None:
        handler = self._handlers.get(sc.nr)
        try:
            result = handler(sc) if handler is not None else NATIVE
        except Unsupported as e:
            self._fail(task, f"{e} (process {task.process.pid})")
            return
        if type(result) is Blocked:
            task.state = BLOCKED
            task.blocked = sc
            task.blocked_on = result
            self.policy.on_blocked(task)
            return
        self._apply(task, sc, result)

    def _apply(self, task: Task, sc: Syscall, result) -> None:
        kind = type(result)  # the result classes are final (slots dataclasses): no isinstance
        if kind is not Value and kind is not Errno and kind is not Native:
            raise TypeError(f"handler for {sc.name} returned {result!r}, not a Result")
        # Running from here on, even if the task is gone (SIGKILLed while stopped): waitpid then
        # reports its exit, instead of it staying "blocked" forever.
        task.state = RUNNING
        task.blocked = task.blocked_on = None
        regs = sc.regs
        if kind is not Native:
            v = result.value if kind is Value else -result.errno
            task.on_exit = None
            if not task.pending_signal:
                # The path of every emulated syscall: orig_rax = -1 (the kernel runs nothing),
                # rax = v, SETREGS and CONT in one C call (stops.c).
                try:
                    stops.answer(task.tid, regs, v)
                except ProcessLookupError:
                    raise TraceeGone() from None   # SIGKILLed while stopped: its exit follows
                return
            setattr(regs, arch.NR, 0xFFFFFFFFFFFFFFFF)
            setattr(regs, arch.RET, v & 0xFFFFFFFFFFFFFFFF)
            self._setregs(task, regs)
        else:
            task.on_exit = result.on_exit
            if sc.dirty:
                # Rewritten arguments (e.g. a pointer to our copy of a sockaddr) are put back at the
                # exit stop: the kernel preserves argument registers and code may rely on it.
                self._setregs(task, regs)
                task.on_exit = task.on_exit or _no_exit_change
            task.exit_syscall = sc if task.on_exit is not None else None
        self._resume(task)

    def retry(self, task: Task) -> bool:
        """Re-run the handler of a BLOCKED task (its condition may have changed). Handlers are
        idempotent (a restarted syscall stops again anyway). True if it is no longer blocked."""
        sc = task.blocked
        assert sc is not None and task.state == BLOCKED
        task.state = RUNNING
        task.blocked = None
        sc.first = False
        self._handle(task, sc)
        return task.state != BLOCKED

    def restart(self, task: Task) -> None:
        """Resume a BLOCKED task so that it executes its syscall again from the start once back in
        user space (after the signal handler the kernel is about to run): what the kernel does for
        a restartable syscall interrupted by a handler with SA_RESTART."""
        sc = task.blocked
        assert sc is not None and task.state == BLOCKED
        task.state = RUNNING
        task.blocked = task.blocked_on = None
        regs = sc.regs
        setattr(regs, arch.IP, getattr(regs, arch.IP) - arch.SYSCALL_INSN_LEN)
        setattr(regs, arch.RET, sc.nr)
        setattr(regs, arch.NR, 0xFFFFFFFFFFFFFFFF)  # nothing runs now
        for reg, value in zip(_ARGS, sc.orig_args, strict=False):
            setattr(regs, reg, value)
        self._setregs(task, regs)
        task.on_exit = None
        self._resume(task)

    def complete(self, task: Task, result) -> None:
        """Resume a BLOCKED task with the given result."""
        sc = task.blocked
        assert sc is not None and task.state == BLOCKED
        self._apply(task, sc, result)

    def _on_syscall_exit(self, task: Task) -> None:
        cb, sc = task.on_exit, task.exit_syscall
        task.on_exit = task.exit_syscall = None
        if cb is not None:
            regs = self._regs
            try:
                pt.getregs(task.tid, regs)
            except pt.PtraceError:
                raise TraceeGone() from None
            ret = getattr(regs, arch.RET)
            if ret >= 1 << 63:
                ret -= 1 << 64
            new = cb(sc, ret)
            changed = sc.dirty
            if sc.dirty:
                for reg, value in zip(_ARGS, sc.orig_args, strict=False):
                    setattr(regs, reg, value)
            if new is not None and new != ret:
                setattr(regs, arch.RET, new & 0xFFFFFFFFFFFFFFFF)
                changed = True
            if changed:
                self._setregs(task, regs)
        self._resume(task)

    # -- process tree --------------------------------------------------------------------------
    def _on_fork(self, task: Task, event: int) -> None:
        new_tid = pt.geteventmsg(task.tid)
        is_thread = False
        flags = ctid = 0
        if event == pt.PTRACE_EVENT_CLONE:
            regs = self._regs
            pt.getregs(task.tid, regs)
            nr = getattr(regs, arch.NR)
            if nr == NR_CLONE:
                flags, ctid = regs.rdi, regs.r10
            elif nr == NR_CLONE3:
                flags, _pidfd, ctid = struct.unpack("<QQQ", task.process.mem.read(regs.rdi, 24))
            is_thread = bool(flags & CLONE_THREAD)
        if is_thread:
            proc = task.process
        else:
            proc = None
        rank = task.rank + (task.children,)
        task.children += 1
        if proc is None:
            proc = Process(pid=new_tid, parent=task.process, mem=Memory(new_tid), owner=task.process.owner,
                           rank=rank)
        child = Task(new_tid, proc, rank=rank)
        if not is_thread:
            child.scratch = task.scratch  # a fork copies the address space, our page included
        if event == pt.PTRACE_EVENT_CLONE and flags & CLONE_CHILD_CLEARTID:
            child.clear_child_tid = ctid  # the kernel zeroes it and wakes its futex when the task exits
        proc.tids.add(new_tid)
        self.tasks[new_tid] = child
        self.policy.on_fork(task, child, is_thread)
        if new_tid in self._early:
            self._early.discard(new_tid)
            self._resume(child)
        else:
            child.awaiting_first_stop = True
        self._resume(task)
        if event == pt.PTRACE_EVENT_VFORK:
            # The kernel now holds the parent until the child execs or exits (then it stops at
            # VFORK_DONE): it is not running, and a round must not wait for it.
            task.state = IN_VFORK
            child.vfork_parent = task

    def _release_vfork(self, child: Task) -> None:
        parent, child.vfork_parent = child.vfork_parent, None
        if parent is not None and parent.state == IN_VFORK and self.tasks.get(parent.tid) is parent:
            parent.state = RUNNING  # its VFORK_DONE stop is on its way

    def _on_exec(self, task: Task) -> None:
        self._release_vfork(task)
        former = pt.geteventmsg(task.tid)
        proc = task.process
        if former != task.tid and former in self.tasks:
            # A non-leader thread exec'd: it now carries the pid; the old leader is gone.
            moved = self.tasks.pop(former)
            proc.tids.discard(former)
            old_leader = self.tasks.pop(task.tid, None)
            if old_leader is not None:
                proc.tids.discard(task.tid)
            moved.tid = task.tid
            self.tasks[task.tid] = moved
            proc.tids.add(task.tid)
            task = moved
        # Every other thread died in the exec.
        for tid in list(proc.tids):
            if tid != task.tid:
                proc.tids.discard(tid)
                self.tasks.pop(tid, None)
        proc.mem.reopen()
        task.scratch = 0  # the new program's address space has no page of ours
        self._patch_auxv(task, self.policy.at_random(proc))
        self.policy.on_exec(proc)
        self._resume(task)

    def _patch_auxv(self, task: Task, at_random: Optional[bytes]) -> None:
        """At the exec stop, before the new program runs, edit what the kernel handed it on its stack
        (argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL):
          * vdso "disable": the auxiliary vector's AT_SYSINFO_EHDR entry set to 0, as if the kernel
            offered no vDSO, so that libc falls back to real syscalls for its clocks (the approach
            rr uses; works for static binaries too);
          * `at_random` (16 bytes): written over the bytes AT_RANDOM points to (getauxval(3)), which
            the kernel itself put in the new stack for this program."""
        if self.vdso != "disable" and at_random is None:
            return
        mem = task.process.mem
        pt.getregs(task.tid, self._regs)
        sp = getattr(self._regs, arch.SP)
        words = _StackWords(mem, sp)
        argc = words.get(0)
        i = 1 + argc + 1
        while words.get(i) != 0:  # envp
            i += 1
        i += 1
        while True:
            key = words.get(i)
            if key == AT_NULL:
                return
            if key == AT_SYSINFO_EHDR and self.vdso == "disable":
                mem.write_u64(sp + 8 * (i + 1), 0)
            elif key == AT_RANDOM and at_random is not None:
                mem.write(words.get(i + 1), at_random[:16])
            i += 2

    def _on_signal(self, task: Task, sig: int) -> None:
        if task.awaiting_first_stop and sig == signal.SIGSTOP:
            task.awaiting_first_stop = False  # the new child's initial stop: swallow it
            self._resume(task)
            return
        if sig in _STOPPING_SIGNALS and pt.is_group_stop(task.tid):
            # With PTRACE_TRACEME (not SEIZE) a group-stop cannot be held while still noticing
            # SIGCONT (that needs PTRACE_LISTEN): resume it, so a stopped tracee never hangs the run.
            self._resume(task)
            return
        if sig == signal.SIGSYS and self._foreign_abi(task):
            return
        if sig == signal.SIGSTOP and task.preempt_requested:
            task.preempt_requested = False   # our SIGSTOP (`_preempt_computing`): never delivered
            task.state = PREEMPTED
            self.policy.on_preempted(task)
            return
        deliver = self.policy.on_signal(task, sig)
        self._resume(task, deliver)

    def _foreign_abi(self, task: Task) -> bool:
        """A SIGSYS from our filter's bad-architecture action (launcher.c): a syscall of another ABI
        (int 0x80, x32) that we cannot interpret. Fail the run naming it. A SIGSYS of the program's
        own (its own seccomp filter, a kill) is not ours: False."""
        info = pt.getsiginfo(task.tid)
        code, = struct.unpack_from("<i", info, 8)
        nr, audit_arch = struct.unpack_from("<iI", info, 24)  # siginfo._sigsys: _syscall, _arch
        if code != SYS_SECCOMP or (audit_arch == arch.AUDIT_ARCH and not nr & X32_SYSCALL_BIT):
            return False
        abi = "x32" if audit_arch == arch.AUDIT_ARCH else "32-bit (int 0x80)"
        self._fail(task, f"unsupported syscall ABI {abi}: syscall number {nr & ~X32_SYSCALL_BIT} "
                         f"in process {task.process.pid}")
        return True

    def _task_exited(self, tid: int, task: Optional[Task], status: int) -> None:
        self._early.discard(tid)
        if task is None:
            return
        note = self._stall_notes.pop(tid, None)
        if note is not None:
            self._fail(task, note)
        del self.tasks[tid]
        self._release_vfork(task)
        proc = task.process
        proc.tids.discard(tid)
        if os.WIFSIGNALED(status) and tid != proc.pid:
            self.group_exiting(proc)  # a thread killed by a signal: its whole group is going
        self.policy.on_task_exit(task)
        if tid == proc.pid:
            proc.exit_status = status
            for other in list(proc.tids):  # threads are gone with their group
                gone = self.tasks.pop(other, None)
                if gone is not None:
                    self.policy.on_task_exit(gone)
            proc.tids.clear()
            proc.mem.close()
            self.policy.on_process_exit(proc, status)

    def _forget_all(self) -> None:
        for task in list(self.tasks.values()):
            self._task_exited(task.tid, task, task.process.exit_status or 0)

    # -- resuming ------------------------------------------------------------------------------
    def _setregs(self, task: Task, regs) -> None:
        try:
            pt.setregs(task.tid, regs)
        except pt.PtraceError:
            raise TraceeGone() from None

    def _resume(self, task: Task, sig: int = 0) -> None:
        if task.pending_signal and not sig:
            sig, task.pending_signal = task.pending_signal, 0
        try:
            if task.on_exit is not None:
                pt.syscall(task.tid, sig)
            else:
                pt.cont(task.tid, sig)
        except pt.PtraceError as e:
            if e.errno != errno_mod.ESRCH:
                raise
            raise TraceeGone() from None

    def _resume_raw(self, tid: int) -> None:
        try:
            pt.cont(tid)
        except pt.PtraceError:
            pass

    # -- faults --------------------------------------------------------------------------------
    def _fail(self, task: Task, message: str) -> None:
        """An error the run cannot continue past: say it and kill the whole traced tree."""
        if self.policy.on_fatal(task, message):
            return
        if self.error is None:
            self.error = message
            self.log(message)
        self.kill_all()

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for tid in list(self.tasks):
            try:
                os.kill(tid, sig)
            except ProcessLookupError:
                pass

    # -- memory of our own in the tracee --------------------------------------------------------
    SCRATCH_SIZE = 8192

    def scratch(self, sc: Syscall) -> int:
        """Address of a page the tracee owns but never uses, for the structures we hand the kernel
        in its name (rewritten sockaddrs, paths, iovecs): mapped by an mmap injected the first time
        the task needs one, one per task so that threads never share it. Never the stack: a program
        may run on a tiny stack (coroutines, Go, sigaltstack) whose every byte is live."""
        task = sc.task
        if not task.scratch:
            addr = self.inject(sc, NR_MMAP, 0, self.SCRATCH_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1 & 0xFFFFFFFFFFFFFFFF, 0)
            if addr < 0:
                raise OSError(-addr, f"mmap of the emulator's page in process {task.process.pid} failed")
            task.scratch = addr
        return task.scratch

    # -- syscall injection ---------------------------------------------------------------------
    def inject(self, sc: Syscall, nr: int, *args: int) -> int:
        """Run syscall `nr(args)` inside the tracee stopped at `sc`'s seccomp stop, then put it back
        exactly there (the original syscall is re-executed up to the same seccomp stop, which this
        call absorbs). Returns the injected syscall's raw result (negative errno on failure)."""
        task = sc.task
        tid = task.tid
        saved = _copy_regs(sc.regs)
        regs = _copy_regs(saved)
        setattr(regs, arch.NR, nr)
        for i, v in enumerate(args):
            setattr(regs, _ARGS[i], v & 0xFFFFFFFFFFFFFFFF)
        self._setregs(task, regs)
        try:
            pt.syscall(tid)
        except pt.PtraceError:
            raise TraceeGone() from None
        self._wait_for(task, lambda status: os.WSTOPSIG(status) == pt.SYSCALL_STOP_SIG)
        pt.getregs(tid, regs)
        result = getattr(regs, arch.RET)
        if result >= 1 << 63:
            result -= 1 << 64
        # Rewind to the syscall instruction with the original number: resuming re-executes it and
        # stops again at its seccomp stop, where the handler's own result will be applied.
        restore = _copy_regs(saved)
        setattr(restore, arch.IP, getattr(saved, arch.IP) - arch.SYSCALL_INSN_LEN)
        setattr(restore, arch.RET, getattr(saved, arch.NR))
        self._setregs(task, restore)
        try:
            pt.cont(tid)
        except pt.PtraceError:
            raise TraceeGone() from None
        while True:
            self._wait_for(task, lambda status: (status >> 16) == pt.PTRACE_EVENT_SECCOMP)
            pt.getregs(tid, sc.regs)
            if all(getattr(sc.regs, r) == getattr(saved, r) for r in _SAME_CALL):
                return result
            # A signal pending during the injection ran its handler first, and the handler made a
            # subscribed syscall of its own (the same `syscall` instruction may be reused, so the
            # stack pointer and arguments tell them apart): serve it, then keep waiting.
            self._serve_nested(task, Syscall(task, _copy_regs(sc.regs)))

    def _serve_nested(self, task: Task, sc: "Syscall") -> None:
        """Handle a syscall met while the task is inside `inject` (outside the event loop)."""
        handler = self._handlers.get(sc.nr)
        result = handler(sc) if handler is not None else Native()
        if isinstance(result, (Value, Errno)):
            setattr(sc.regs, arch.NR, 0xFFFFFFFFFFFFFFFF)
            v = result.value if isinstance(result, Value) else -result.errno
            setattr(sc.regs, arch.RET, v & 0xFFFFFFFFFFFFFFFF)
            self._setregs(task, sc.regs)
        elif isinstance(result, Native):
            if sc.dirty:
                self._setregs(task, sc.regs)
            if result.on_exit is not None:
                pt.syscall(task.tid)
                self._wait_for(task, lambda status: os.WSTOPSIG(status) == pt.SYSCALL_STOP_SIG)
                pt.getregs(task.tid, sc.regs)
                ret = getattr(sc.regs, arch.RET)
                new = result.on_exit(sc, ret - (1 << 64) if ret >= 1 << 63 else ret)
                if new is not None:
                    setattr(sc.regs, arch.RET, new & 0xFFFFFFFFFFFFFFFF)
                    self._setregs(task, sc.regs)
        else:
            self._fail(task, f"{sc.name} from a signal handler during a syscall injection cannot "
                             f"block (process {task.process.pid})")
            raise TraceeGone()
        try:
            pt.cont(task.tid)
        except pt.PtraceError:
            raise TraceeGone() from None

    def _wait_for(self, task: Task, is_it: Callable[[int], bool]) -> None:
        """Wait for a specific stop of one task; signals arriving meanwhile are delivered."""
        while True:
            _, status = os.waitpid(task.tid, pt.WALL)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._task_exited(task.tid, task, status)
                raise TraceeGone()
            if is_it(status):
                return
            sig = os.WSTOPSIG(status)
            if (status >> 16) == 0 and sig != pt.SYSCALL_STOP_SIG:
                # A signal arrived in the window: let its handler run, then the syscall restarts.
                pt.cont(task.tid, sig)
            else:
                pt.cont(task.tid)


def _vanished(tid: int) -> bool:
    """Is a task we were handling a stop of no longer stopped (killed meanwhile)?"""
    try:
        pt.geteventmsg(tid)
    except TraceeGone:
        return True
    return False


def _no_exit_change(sc, ret):
    return None


def _copy_regs(regs: arch.Regs) -> arch.Regs:
    own = arch.Regs()
    ctypes.memmove(ctypes.addressof(own), ctypes.addressof(regs), ctypes.sizeof(own))
    return own


class _StackWords:
    """Reads 8-byte words from a stack in page-sized chunks (the stack may end at any page)."""

    def __init__(self, mem: Memory, base: int):
        self.mem, self.base, self.buf = mem, base, b""

    def get(self, index: int) -> int:
        end = 8 * (index + 1)
        while len(self.buf) < end:
            addr = self.base + len(self.buf)
            chunk = 4096 - (addr % 4096) or 4096
            self.buf += self.mem.read(addr, chunk)
        return int.from_bytes(self.buf[8 * index:end], "little")
