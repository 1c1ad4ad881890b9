"""Commands run by the daemon: spawn, exit detection with pidfd, output streaming, timeout, kill.

No thread and no periodic reaping: each child's pidfd sits in an epoll set of ours, registered
once with the event loop, and becomes readable when the child exits; the child is then reaped with
wait4() for its rusage.  Plain commands are spawned with os.posix_spawn (vfork-based), the others
(cwd, run-as user, cgroup, raw environment) with subprocess.Popen or fork + execve.
asyncio's own subprocess support is avoided on purpose: CPython 3.11's default child watcher
starts one thread per child.

On a mediating daemon (`ctrld --mediate`, see ctrld/mediate.py) a command may instead be an
emulated process: it is launched through the live emulation, its start and exit come back from
simulation threads as loop callbacks, its output through the same pipes, and its signals go
through the emulation (which wakes the process's actor to notice them).
"""

from __future__ import annotations

import copy
import ctypes
import errno
import os
import pwd
import select
import signal
import struct
import subprocess
from dataclasses import dataclass

from ctrld.mediate import to_ns
from ctrld.protocol import codec
from ctrld.protocol.codec import as_str, now_ns, wire_str
from ctrld.protocol.fast import encode_execve_ok, encode_launched, encode_terminated
from ctrld.protocol.generated import ctrld_generated as g

# After the process exits, wait at most this long for its output pipes to reach EOF (a
# grandchild may keep them open) before closing the run.
PIPE_DRAIN_S = 0.2
READ_CHUNK = 65536
DEFAULT_GRACE_MS = 2000
EXEC_FAILED_CODE = 127  # what a shell reports for a command it could not execute
# Exit statuses kept for WaitProcess (`ctrl wait PID`) after a command ended: this many, this long.
HISTORY_MAX = 1000
HISTORY_S = 600.0
# While some command left processes behind, look every this often whether they are gone.
LEFTOVER_SWEEP_S = 1.0


# What Popen's restore_signals puts back to SIG_DFL in its children: Python ignores these at start,
# and ignored signals stay ignored across exec (signal(7)).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# The step of _start_raw's child that failed, reported to the parent with its errno.
_STEP_SETUP, _STEP_CHDIR, _STEP_EXEC = 0, 1, 2


def _nothing() -> None:
    pass


@dataclass
class RunSpec:
    argv: list
    path: str
    env: dict | None
    cwd: str | None = None
    timeout_ms: int = 0
    grace_ms: int = 0
    capture_stdout: bool = False
    capture_stderr: bool = False
    stdout_path: str | None = None
    stderr_path: str | None = None
    kill_on_disconnect: bool = False
    # (uid, gid, supplementary groups): run as this user (the server checks who may ask)
    run_as: tuple[int, int, list[int]] | None = None
    stdin_pipe: bool = False
    # The client waits for the end only: launched/execve may leave with the next frame (see ctrld.fbs)
    defer_start: bool = False
    # The environment exactly as sent, when it cannot be a mapping (an entry without '=', or a
    # name given twice): execve receives these entries as they are, as the seed daemon did.
    env_raw: list[bytes] | None = None


def spec_from_request(req: g.RunCommandT) -> RunSpec:
    args = [as_str(a) for a in (req.args or [])]
    path = req.path or ""
    if not args:
        args = [path]
    env = None
    env_raw = None
    if req.envp:
        pairs = [as_str(kv) for kv in req.envp]
        env = dict(os.environ) if req.inheritEnv else {}
        names = set()
        for kv in pairs:
            k, sep, v = kv.partition("=")
            if not sep or not k or k in names or "\0" in kv:
                env_raw = []
            names.add(k)
            env[k] = v
        if env_raw is not None:
            if any("\0" in kv for kv in pairs):
                raise ValueError("environment entries cannot contain NUL")
            base = [f"{k}={v}" for k, v in os.environ.items() if k not in names] if req.inheritEnv else []
            env_raw = [os.fsencode(kv) for kv in base + pairs]
    run_as = None
    if req.runAsUid >= 0 or req.runAsGid >= 0 or req.runAsGroups:
        uid = req.runAsUid if req.runAsUid >= 0 else os.geteuid()
        gid = req.runAsGid
        if gid < 0:
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                raise ValueError(f"run_as uid {uid} has no passwd entry: give run_as_gid") from None
        run_as = (uid, gid, [int(x) for x in req.runAsGroups or []])
        for what, ident in (("uid", uid), ("gid", gid), *(("group", x) for x in run_as[2])):
            # uid_t/gid_t are 32-bit and (uid_t)-1 means "leave unchanged" to setresuid/setresgid:
            # run_as_uid 4294967295 ran the command as the daemon's own user (root), and 2**40
            # raised OverflowError inside the spawn (a traceback, an "internal error").
            if not 0 <= ident < 0xFFFFFFFF:
                raise ValueError(f"run_as {what} {ident} is not a valid id (0 to 4294967294)")
    return RunSpec(
        argv=args, path=path, env=env, cwd=req.cwd or None, timeout_ms=req.timeoutMs,
        grace_ms=req.graceMs or DEFAULT_GRACE_MS, capture_stdout=req.captureStdout,
        capture_stderr=req.captureStderr, stdout_path=req.stdoutPath or None,
        stderr_path=req.stderrPath or None, kill_on_disconnect=req.killOnDisconnect,
        run_as=run_as, stdin_pipe=req.stdinPipe, env_raw=env_raw, defer_start=req.deferStart,
    )


class Command:
    """One run: its process group (pgid == pid), pidfd, pipes and timers.

    A plain class (one is made per command, on the request's path): the scalar defaults are class
    attributes, an instance holds what its constructor sets and what changes later."""

    pid: int = 0
    pidfd: int = -1
    started_ns: int = 0
    popen: subprocess.Popen | None = None
    cgroup: str | None = None
    timed_out: bool = False
    killed_by_request: bool = False
    status: int | None = None
    rusage: object = None
    exit_ns: int = 0
    finished: bool = False
    # --- emulated commands (ctrld --mediate) ---
    live: object = None  # simterpose.live.LiveProcess
    host: str = ""  # simulated host
    sim_start_ns: int = -1
    # --- ownership, flow control, stdin, leftovers ---
    output_paused: bool = False  # the owner's backlog is full: the pipes are not being read
    stdin_fd: int = -1
    stdin_file: object = None  # Popen's file object owning stdin_fd
    stdin_closing: bool = False  # CloseStdin came: close once stdin_buf is written
    leftover: bool = False  # the leader ended but processes of its group / cgroup still run

    def __init__(self, spec: RunSpec, owner, request_id: int, identity=None, host: str = ""):
        self.spec = spec
        self.owner = owner  # the Connection that asked for it (None once it disconnected)
        self.request_id = request_id
        self.identity = identity  # ctrld.auth.Identity of the requester; outlives its connection
        if host:
            self.host = host
        self.pipes: dict = {}  # fd -> g.Stream value
        self.timers: list = []
        self.pending_signals: list = []  # asked for before the process had started (emulated)
        self.stdin_buf = bytearray()
        self.waiters: list = []  # (connection, request_id) of WaitProcess requests


class ProcessTable:
    """Spawns commands and reports their life through `emit(command, body, extension)`.

    `extension` is True for union members that only v2 clients receive (see ctrld.fbs).
    """

    def __init__(self, loop, emit, cgroup_root: str | None = None):
        self.loop = loop
        self.emit = emit
        self.cgroup_root = cgroup_root
        self.by_pid: dict[int, Command] = {}
        self._cgroup_seq = 0
        self.mediator = None  # ctrld.mediate.Mediator on a mediating daemon
        self.starting: set[Command] = set()  # emulated commands whose process has not started yet
        # Bracket the handling of a child's exit, so that its events leave in one write at the end
        # (set by the daemon; see Daemon.batch_begin).
        self.batch_begin = self.batch_end = self.flush = _nothing
        self._devnull = -1
        self.holding = False  # the frames being emitted may wait for the owner's next write
        self._env: dict | None = None  # the daemon's environment, for posix_spawn
        self._exit_ep = None  # epoll set of the running commands' pidfds (see _watch_exit)
        self._exit_of_fd: dict[int, Command] = {}
        # A command was started while handling the current input: before its frames leave, the
        # daemon looks whether it has already exited (see Daemon.batch_end).
        self.spawned = False
        self._fds_checked = False
        self.leftovers: dict[int, Command] = {}  # leader pid -> command whose processes outlive it
        self._sweep = None
        # pid -> (identity, ProcessTerminatedT or its frame, CLOCK_MONOTONIC ns of the end) of ended
        # commands, oldest first (WaitProcess; see ended())
        self.history: dict[int, tuple] = {}

    def sim_now(self) -> int:
        """The simulated clock (ns) for events' sim_time_ns; -1 when the daemon does not mediate."""
        return -1 if self.mediator is None else self.mediator.now_ns()

    # ------------------------------------------------------------------ spawn
    def start(self, spec: RunSpec, owner, request_id: int) -> Command:
        cmd = Command(spec=spec, owner=owner, request_id=request_id, identity=getattr(owner, "identity", None))
        files = []
        try:
            if self._devnull < 0:
                self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            # One /dev/null for all commands (Popen's DEVNULL opens and closes one per spawn).
            stdout = stderr = devnull = self._devnull
            if spec.capture_stdout:
                stdout = subprocess.PIPE
            elif spec.stdout_path:
                stdout = open(spec.stdout_path, "ab")  # noqa: SIM115 - closed right after spawn
                files.append(stdout)
            if spec.capture_stderr:
                stderr = subprocess.PIPE
            elif spec.stderr_path:
                stderr = open(spec.stderr_path, "ab")  # noqa: SIM115
                files.append(stderr)
            preexec = self._cgroup_preexec(cmd) if self.cgroup_root else None
        except (OSError, ValueError) as e:
            for f in files:
                f.close()
            self._creation_error(cmd, e)
            return cmd
        if spec.env_raw is not None:
            try:
                return self._start_raw(cmd, stdout, stderr, preexec)
            finally:
                for f in files:
                    f.close()
        if preexec is None and spec.cwd is None and spec.run_as is None and self.mediator is None:
            try:
                started = self._start_spawn(cmd, stdout, stderr)
            except BaseException:
                for f in files:
                    f.close()
                raise
            if started:
                for f in files:
                    f.close()
                return cmd
            # posix_spawn could not start it (exec failed, ...): Popen below tries again, and
            # reports a failure the seed's way, with the pid of the child that tried.
        user = group = extra_groups = None
        if spec.run_as is not None:
            user, group, extra_groups = spec.run_as

        # Popen is constructed in two steps so that, when exec fails, the pid of the child that
        # tried (already reaped by Popen) is still known: the seed reports ExecveTerminated{pid>0}.
        popen = subprocess.Popen.__new__(subprocess.Popen)
        cmd.started_ns = now_ns()
        try:
            # start_new_session: own session and process group (pgid == pid), so the whole tree
            # can be signalled and a Ctrl-C on the daemon's terminal does not reach commands.
            popen.__init__(
                spec.argv, executable=spec.path or None, env=spec.env, cwd=spec.cwd,
                stdin=subprocess.PIPE if spec.stdin_pipe else devnull, stdout=stdout, stderr=stderr,
                start_new_session=True, preexec_fn=preexec, user=user, group=group, extra_groups=extra_groups,
            )
        except (OSError, subprocess.SubprocessError, ValueError, TypeError) as e:
            pid = getattr(popen, "pid", None)
            if isinstance(e, OSError) and pid:
                self._exec_failed(cmd, pid, e)
            else:
                self._creation_error(cmd, e)
            self._remove_cgroup(cmd)
            return cmd
        finally:
            for f in files:
                f.close()

        cmd.popen = popen
        if popen.stdin is not None:
            cmd.stdin_file = popen.stdin
            cmd.stdin_fd = popen.stdin.fileno()
            os.set_blocking(cmd.stdin_fd, False)
        fds = [(f.fileno(), stream) for f, stream in ((popen.stdout, g.Stream.stdout), (popen.stderr, g.Stream.stderr))
               if f is not None]
        self._started(cmd, popen.pid, fds)
        return cmd

    def _start_spawn(self, cmd: Command, stdout, stderr) -> bool:
        """Spawn with os.posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) then exec), the common
        case's fast path: no cwd, run-as user, cgroup or raw environment (those need code between
        fork and exec: Popen).  False, with nothing left open, when it could not start the command.

        Popen does the same system calls, but with ~70 µs of Python around them per command
        (measured in the daemon: Popen.__init__ 154 µs of CPU per /bin/echo, os.posix_spawn
        83 µs; 45 µs when run in a hot loop).  What Popen guaranteed is kept: own session and process group
        (`setsid`, as start_new_session; pgid == pid), SIGPIPE and SIGXFSZ back to their default
        (`setsigdef`, as restore_signals: Python ignores both), and no descriptor of the daemon
        inherited (Popen's close_fds; here every descriptor is close-on-exec: Python creates them
        so (PEP 446) and _no_inherited_fds() marks those the daemon was started with).
        See posix_spawn(3), posix_spawn_file_actions_adddup2(3).
        """
        spec = cmd.spec
        path = spec.path or spec.argv[0]
        if "/" not in path and spec.env is not None and spec.env.get("PATH") != os.environ.get("PATH"):
            return False  # Popen searches the command's own PATH; posix_spawnp would use the daemon's
        if not self._fds_checked:
            self._no_inherited_fds()
        ours = []  # parent's ends of the pipes
        theirs = []  # child's ends, closed once it has them
        fds = []
        stdin_w = -1
        if spec.stdin_pipe:
            r, stdin_w = os.pipe()
            ours.append(stdin_w)
            theirs.append(r)
            child_fds = [r]
        else:
            child_fds = [self._devnull]
        for target, stream in ((stdout, g.Stream.stdout), (stderr, g.Stream.stderr)):
            if target is subprocess.PIPE:
                r, w = os.pipe()
                ours.append(r)
                theirs.append(w)
                fds.append((r, stream))
                child_fds.append(w)
            else:
                child_fds.append(target if isinstance(target, int) else target.fileno())
        pid = 0
        try:
            if min(child_fds) > 2:  # dup2(fd, fd) would keep close-on-exec: leave that to Popen
                env = spec.env if spec.env is not None else self._environ()
                spawn = os.posix_spawn if "/" in path else os.posix_spawnp
                cmd.started_ns = now_ns()
                pid = spawn(path, spec.argv, env, file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_fds[0], 0), (os.POSIX_SPAWN_DUP2, child_fds[1], 1),
                    (os.POSIX_SPAWN_DUP2, child_fds[2], 2)], setsid=True, setsigdef=_DEFAULT_SIGNALS)
        except (OSError, ValueError, TypeError):
            pid = 0
        finally:
            for fd in theirs:
                os.close(fd)
            if not pid:
                for fd in ours:
                    os.close(fd)
        if not pid:
            return False
        if stdin_w >= 0:
            cmd.stdin_fd = stdin_w
            os.set_blocking(stdin_w, False)
        self._started(cmd, pid, fds)
        return True

    def _environ(self) -> dict:
        """The daemon's environment for commands that inherit it, converted once (os.posix_spawn
        converts a mapping at each call: 40 µs for os.environ itself, 10 µs for a plain dict).
        The daemon never changes its environment once started."""
        if self._env is None:
            # bytes: posix_spawn then only joins each name and value (str ones are encoded first)
            self._env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
        return self._env

    def _no_inherited_fds(self) -> None:
        """Mark close-on-exec the descriptors above 2 that the daemon inherited from whoever
        started it (Python's own are already so): posix_spawn closes nothing, unlike Popen's
        close_fds."""
        self._fds_checked = True
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            names = []
        for name in names:
            fd = int(name)
            if fd > 2:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass  # the directory's own descriptor, already closed

    def _started(self, cmd: Command, pid: int, fds: list) -> None:
        spec = cmd.spec
        cmd.pid = pid
        # The child cannot have been reaped yet (only we reap), so the pid is still ours.
        cmd.pidfd = os.pidfd_open(cmd.pid)
        self.by_pid[cmd.pid] = cmd
        self._watch_exit(cmd)
        for fd, stream in fds:
            os.set_blocking(fd, False)
            cmd.pipes[fd] = stream
            self.loop.add_reader(fd, self._on_output, cmd, fd)
        if spec.timeout_ms:
            cmd.timers.append(self.loop.call_later(spec.timeout_ms / 1000, self._on_timeout, cmd))

        t = cmd.started_ns
        st = self.sim_now()
        rid = cmd.request_id
        # ProcessLaunched and ExecveTerminated{success}, laid out directly, delivered together.
        frames = (encode_launched(pid, rid, t, st)
                  + encode_execve_ok(pid, wire_str(spec.argv[0]), True, rid, t, 0, st))
        # Held back for a client that waits for the end (RunCommand.defer_start): they leave with
        # the command's first output or its end, one write and one wake-up of the client fewer.
        self.holding = spec.defer_start
        try:
            self.emit(cmd, frames, False)
        finally:
            self.holding = False

    def _start_raw(self, cmd: Command, stdout, stderr, preexec) -> Command:
        """Spawn with the environment entries exactly as sent (execve through libc: Python's own
        spawn functions only take a mapping).  fork + exec, exec failure reported through a
        close-on-exec pipe as subprocess does; used only for such environments."""
        spec = cmd.spec
        path = spec.path or spec.argv[0]
        candidates = [path] if "/" in path else [os.path.join(d, path) for d in os.get_exec_path()]
        argv = (ctypes.c_char_p * (len(spec.argv) + 1))(*[os.fsencode(a) for a in spec.argv], None)
        envp = (ctypes.c_char_p * (len(spec.env_raw) + 1))(*spec.env_raw, None)
        execve = ctypes.CDLL(None, use_errno=True).execve
        ends = []  # (parent's read end, child's write end) per captured stream
        fds = []
        std = []
        for target, stream in ((stdout, g.Stream.stdout), (stderr, g.Stream.stderr)):
            if target is subprocess.PIPE:
                r, w = os.pipe()
                ends.append((r, w))
                fds.append((r, stream))
                std.append(w)
            else:
                std.append(target.fileno() if hasattr(target, "fileno") else target)
        stdin_r = self._devnull
        if spec.stdin_pipe:
            stdin_r, cmd.stdin_fd = os.pipe()
        err_r, err_w = os.pipe()  # both close-on-exec
        cmd.started_ns = now_ns()
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe work and exec; never returns
            code = errno.EIO
            # Which step failed, sent with the errno: a missing cwd must be reported naming the
            # directory, not the program (which exists), as Popen does on the other paths.
            step = _STEP_SETUP
            try:
                os.setsid()
                os.dup2(stdin_r, 0)
                os.dup2(std[0], 1)
                os.dup2(std[1], 2)
                if spec.cwd:
                    step = _STEP_CHDIR
                    os.chdir(spec.cwd)
                    step = _STEP_SETUP
                if preexec is not None:
                    preexec()
                if spec.run_as is not None:
                    uid, gid, groups = spec.run_as
                    os.setgroups(groups)
                    os.setgid(gid)
                    os.setuid(uid)
                step = _STEP_EXEC
                for c in candidates:
                    execve(os.fsencode(c), argv, envp)
                    code = ctypes.get_errno()
                    if code not in (errno.ENOENT, errno.ENOTDIR) and len(candidates) > 1:
                        break
            except OSError as e:
                code = e.errno or errno.EIO
            except BaseException:
                code = errno.EIO
            os.write(err_w, struct.pack("ii", code, step))
            os._exit(EXEC_FAILED_CODE)
        os.close(err_w)
        for _r, w in ends:
            os.close(w)
        if spec.stdin_pipe:
            os.close(stdin_r)
        data = b""
        while True:
            chunk = os.read(err_r, 4)
            if not chunk:
                break
            data += chunk
        os.close(err_r)
        if data:
            os.waitpid(pid, 0)
            for r, _w in ends:
                os.close(r)
            if cmd.stdin_fd >= 0:
                os.close(cmd.stdin_fd)
                cmd.stdin_fd = -1
            code, step = struct.unpack("ii", data[:8]) if len(data) >= 8 else (errno.EIO, _STEP_SETUP)
            # Named as Popen names them (subprocess._execute_child): the directory when chdir
            # failed, the program when exec did, nothing for the other steps before exec.
            filename = {_STEP_CHDIR: spec.cwd, _STEP_EXEC: path}.get(step)
            self._exec_failed(cmd, pid, OSError(code, os.strerror(code), filename))
            self._remove_cgroup(cmd)
            return cmd
        if cmd.stdin_fd >= 0:
            os.set_blocking(cmd.stdin_fd, False)
        self._started(cmd, pid, fds)
        return cmd

    def _exec_failed(self, cmd: Command, pid: int, e: OSError) -> None:
        cmd.pid = pid
        t = now_ns()
        rid = cmd.request_id
        code = e.errno or errno.EIO
        what = e.strerror or str(e)
        if e.filename:
            what = f"{what}: {e.filename}"
        st = self.sim_now()
        self.emit(cmd, g.ProcessLaunchedT(pid=pid, requestId=rid, timeNs=t, simTimeNs=st), False)
        self._exec_failed_end(cmd, pid, code, what, t, st)

    def _exec_failed_end(self, cmd: Command, pid: int, code: int, what: str, t: int, st: int) -> None:
        rid = cmd.request_id
        self.emit(
            cmd,
            g.ExecveTerminatedT(
                pid=pid, commandName=wire_str(cmd.spec.argv[0]), success=False, requestId=rid, timeNs=t,
                execErrno=code, message=what, simTimeNs=st,
            ),
            False,
        )
        cmd.finished = True
        self._terminated(
            cmd,
            g.ProcessTerminatedT(
                pid=pid, errorCode=EXEC_FAILED_CODE, requestId=rid, timeNs=t, exitCode=EXEC_FAILED_CODE,
                execFailed=True, wallNs=t - cmd.started_ns, simTimeNs=st, message=what,
            ),
        )

    def _terminated(self, cmd: Command, body) -> None:
        """Emit the end of a command (a ProcessTerminatedT or its frame) and send it at once, keep it
        for WaitProcess, answer those waiting for it."""
        self.emit(cmd, body, False)
        self.flush()
        if not cmd.pid:
            return
        history = self.history
        if cmd.pid in history:  # a recycled pid: its entry moves to the end
            del history[cmd.pid]
        history[cmd.pid] = (cmd.identity, body, cmd.exit_ns or now_ns())
        if len(history) > HISTORY_MAX:
            del history[next(iter(history))]
        if cmd.waiters:
            for conn, rid in cmd.waiters:
                conn.waits -= 1
                if not conn.closed:
                    conn.send(self.terminated_copy(body, rid))
            cmd.waiters.clear()

    def ended(self, pid: int) -> tuple | None:
        """(owner identity, ProcessTerminatedT or its frame) of command `pid` if it ended within the
        last HISTORY_S seconds (and is among the last HISTORY_MAX to end), else None."""
        entry = self.history.get(pid)
        if entry is None:
            return None
        identity, body, t = entry
        if now_ns() - t > HISTORY_S * 1e9:
            # Expired: it and every older entry (the dict is in order of ends) go.
            history = self.history
            while history:
                oldest = next(iter(history))
                del history[oldest]
                if oldest == pid:
                    break
            return None
        return identity, body

    @staticmethod
    def terminated_copy(body, request_id: int) -> g.ProcessTerminatedT:
        """The ProcessTerminated of a command (a ProcessTerminatedT or its frame), addressed to
        another request (WaitProcess)."""
        c = codec.decode(body[4:])[1] if isinstance(body, bytes) else copy.copy(body)
        c.requestId = request_id
        return c

    def waiting_lists(self):
        for cmd in list(self.by_pid.values()) + list(self.leftovers.values()) + list(self.starting):
            if cmd.waiters:
                yield cmd.waiters

    def _creation_error(self, cmd: Command, e: Exception) -> None:
        code = getattr(e, "errno", None) or errno.EINVAL
        self.emit(
            cmd,
            g.ChildCreationErrorT(errorCode=code, requestId=cmd.request_id, timeNs=now_ns(), message=str(e),
                                  simTimeNs=self.sim_now()),
            False,
        )
        cmd.finished = True

    # ------------------------------------------------------------------ cgroup v2
    def _cgroup_preexec(self, cmd: Command):
        """Per-command cgroup under a delegated cgroup v2 directory, for `cgroup.kill`.

        The child moves itself in before exec (preexec_fn; the daemon is single-threaded, so this
        is safe), hence even its fastest descendants are inside.
        """
        self._cgroup_seq += 1
        path = os.path.join(self.cgroup_root, f"cmd-{os.getpid()}-{self._cgroup_seq}")
        os.mkdir(path)
        cmd.cgroup = path
        procs = os.path.join(path, "cgroup.procs")

        def join():
            with open(procs, "w") as f:
                f.write("0")

        return join

    def _remove_cgroup(self, cmd: Command, tries: int = 20) -> None:
        if cmd.cgroup:
            try:
                os.rmdir(cmd.cgroup)
                cmd.cgroup = None
            except OSError:
                # Still populated: killed descendants take a moment to leave, escaped ones may
                # live on (then the directory stays, and `ctrld` shows nothing for it).
                if tries:
                    self.loop.call_later(0.05, self._remove_cgroup, cmd, tries - 1)

    # ------------------------------------------------------------------ events
    # ------------------------------------------------------------------ flow control
    def pause_output(self, cmd: Command) -> None:
        """Stop reading the command's pipes: once a pipe is full the command blocks in write()."""
        if cmd.output_paused:
            return
        cmd.output_paused = True
        for fd in cmd.pipes:
            self.loop.remove_reader(fd)

    def resume_output(self, cmd: Command) -> None:
        if not cmd.output_paused:
            return
        cmd.output_paused = False
        for fd in cmd.pipes:
            self.loop.add_reader(fd, self._on_output, cmd, fd)

    # ------------------------------------------------------------------ stdin
    def feed_stdin(self, cmd: Command, data: bytes) -> None:
        if cmd.stdin_closing:
            return
        cmd.stdin_buf += data
        owner = cmd.owner
        if owner is not None:
            owner.stdin_queued += len(data)
        self._write_stdin(cmd)
        if cmd.stdin_buf:
            self.loop.add_writer(cmd.stdin_fd, self._write_stdin, cmd)
            if owner is not None and owner.stdin_queued > owner.limits.stdin_high:
                # The command does not read its stdin as fast as the client sends it: stop reading
                # the client's requests until the pipe takes the backlog (bounded memory).
                owner.pause_reading("stdin")

    def _write_stdin(self, cmd: Command) -> None:
        written = 0
        try:
            while cmd.stdin_buf:
                n = os.write(cmd.stdin_fd, cmd.stdin_buf[:65536])
                del cmd.stdin_buf[:n]
                written += n
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: the command closed its stdin; what is left cannot be delivered
            written += len(cmd.stdin_buf)
            cmd.stdin_buf.clear()
            cmd.stdin_closing = True
        owner = cmd.owner
        if owner is not None and written:
            owner.stdin_queued -= written
            if owner.stdin_queued <= owner.limits.stdin_high // 4:
                owner.resume_reading("stdin")
        if not cmd.stdin_buf:
            self.loop.remove_writer(cmd.stdin_fd)
            if cmd.stdin_closing:
                self._close_stdin(cmd)

    def close_stdin(self, cmd: Command) -> None:
        cmd.stdin_closing = True
        if not cmd.stdin_buf:
            self._close_stdin(cmd)

    def _close_stdin(self, cmd: Command) -> None:
        if cmd.stdin_fd < 0:
            return
        self.loop.remove_writer(cmd.stdin_fd)
        owner = cmd.owner
        if owner is not None and cmd.stdin_buf:
            owner.stdin_queued -= len(cmd.stdin_buf)
            owner.resume_reading("stdin") if owner.stdin_queued <= owner.limits.stdin_high // 4 else None
        cmd.stdin_buf.clear()
        if cmd.stdin_file is not None:
            try:
                cmd.stdin_file.close()
            except OSError:
                pass
        else:
            os.close(cmd.stdin_fd)
        cmd.stdin_fd = -1

    def _on_output(self, cmd: Command, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.emit(
                cmd,
                g.OutputChunkT(requestId=cmd.request_id, pid=cmd.pid, stream=cmd.pipes[fd], data=data, timeNs=now_ns(),
                               simTimeNs=self.sim_now()),
                True,
            )
        else:
            self._close_pipe(cmd, fd)
            if cmd.status is not None and not cmd.pipes:
                self._finish(cmd)

    def _close_pipe(self, cmd: Command, fd: int) -> None:
        self.loop.remove_reader(fd)
        del cmd.pipes[fd]
        if cmd.popen is None:  # posix_spawn'ed or emulated command: the pipe is ours
            os.close(fd)
            return
        # The Popen file objects own these fds: close through them.
        for f in (cmd.popen.stdout, cmd.popen.stderr):
            if f is not None and not f.closed and f.fileno() == fd:
                f.close()

    # Exits: every pidfd sits in one epoll set of ours, itself registered once with the loop.
    # asyncio's add_reader/remove_reader per command cost ~50 µs of CPU on the daemon's critical
    # path (a Handle, a SelectorKey, the transport checks); epoll_ctl on our own set is one system
    # call each way, and several exits seen together are handled (and answered) in one batch.
    def _watch_exit(self, cmd: Command) -> None:
        if self._exit_ep is None:
            self._exit_ep = select.epoll()
            self.loop.add_reader(self._exit_ep.fileno(), self._on_exits)
        self._exit_ep.register(cmd.pidfd, select.EPOLLIN)
        self._exit_of_fd[cmd.pidfd] = cmd
        self.spawned = True

    def _on_exits(self) -> None:
        self.batch_begin()
        try:
            if len(self._exit_of_fd) == 1:
                # One command runs: it is the one whose pidfd is readable (wait4 below has the
                # last word: WNOHANG answers 0 while it has not exited).  No epoll_wait needed.
                self.spawned = False
                self._exited(next(iter(self._exit_of_fd.values())))
            else:
                self.reap_ready()
        finally:
            self.batch_end()

    def reap_ready(self) -> None:
        """Handle the commands that have exited (their pidfd is readable), without waiting."""
        self.spawned = False
        if self._exit_ep is None:
            return
        for fd, _mask in self._exit_ep.poll(0):
            cmd = self._exit_of_fd.get(fd)
            if cmd is not None:
                self._exited(cmd)

    def _exited(self, cmd: Command) -> None:
        if cmd.timed_out:
            # Clean up the rest of the tree while the leader is a zombie: its pgid cannot have been
            # reused yet.
            self._signal_group(cmd, signal.SIGKILL)
        try:
            pid, status, rusage = os.wait4(cmd.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, rusage = cmd.pid, 0, None
        if pid == 0:  # spurious wake-up: not exited yet (the pidfd stays watched)
            return
        cmd.exit_ns = now_ns()
        cmd.status = status
        cmd.rusage = rusage
        # Tell Popen the child is reaped, so it never waits for it (and __del__ never tracks it).
        if cmd.popen is not None:
            cmd.popen.returncode = os.waitstatus_to_exitcode(status)
        pidfd, cmd.pidfd = cmd.pidfd, -1
        for t in cmd.timers:
            t.cancel()
        cmd.timers.clear()
        try:
            # The client waits for the end: it leaves first (usually from _finish, right here);
            # closing descriptors can wait until it is on its way (no request is served meanwhile).
            self._drain_after_exit(cmd)
        finally:
            self._close_stdin(cmd)
            # Closing the pidfd takes it out of the epoll set (epoll(7)) when it is the last
            # reference to it.  It is, unless another thread forked meanwhile (--mediate: the
            # emulation's tracer): its child may hold a copy until it execs, which would keep the
            # exited pidfd in the set under a number that we reuse; then it is unregistered first.
            if self.mediator is not None:
                self._exit_ep.unregister(pidfd)
            del self._exit_of_fd[pidfd]
            os.close(pidfd)

    def _drain_after_exit(self, cmd: Command) -> None:
        # Output written just before exit is usually already in the pipes: read it now.
        for fd in list(cmd.pipes):
            while fd in cmd.pipes and not cmd.output_paused:
                try:
                    data = os.read(fd, READ_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self._close_pipe(cmd, fd)
                    break
                self.emit(
                    cmd,
                    g.OutputChunkT(requestId=cmd.request_id, pid=cmd.pid, stream=cmd.pipes[fd], data=data, timeNs=now_ns(),
                               simTimeNs=self.sim_now()),
                    True,
                )
        if cmd.pipes:
            cmd.timers.append(self.loop.call_later(PIPE_DRAIN_S, self._drain_deadline, cmd))
        else:
            self._finish(cmd)

    def _drain_deadline(self, cmd: Command) -> None:
        if cmd.output_paused and cmd.owner is not None:
            # The client has not taken what is in the pipes yet: wait for it, not for the clock.
            cmd.timers.append(self.loop.call_later(PIPE_DRAIN_S, self._drain_deadline, cmd))
            return
        for fd in list(cmd.pipes):
            self._close_pipe(cmd, fd)
        self._finish(cmd)

    def _finish(self, cmd: Command) -> None:
        if cmd.finished:
            return
        cmd.finished = True
        for t in cmd.timers:
            t.cancel()
        cmd.timers.clear()
        self.by_pid.pop(cmd.pid, None)
        if cmd.live is not None:
            self._finish_emulated(cmd)
            return
        status = cmd.status
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            exit_code, error_code = -1, 128 + sig
        else:
            sig = 0
            exit_code = error_code = os.WEXITSTATUS(status)
        ru = cmd.rusage
        if ru is not None:
            user, system, rss = int(ru.ru_utime * 1e9), int(ru.ru_stime * 1e9), ru.ru_maxrss
        else:
            user = system = rss = 0
        # Laid out directly (no ProcessTerminatedT to build: WaitProcess decodes the frame if asked).
        frame = encode_terminated(cmd.pid, error_code, cmd.request_id, cmd.exit_ns, exit_code, sig, cmd.timed_out,
                                  False, user, system, rss, cmd.exit_ns - cmd.started_ns, self.sim_now(), -1)
        # The end is sent first (it is what the client waits for), the bookkeeping follows in the
        # same handler: no request of any client can be served in between.
        self._terminated(cmd, frame)
        if self._group_alive(cmd):
            # Processes of its group (or cgroup) outlive the leader: keep them visible (status),
            # killable through the leader's pid, and clean the cgroup once they are gone.
            cmd.leftover = True
            self.leftovers[cmd.pid] = cmd
            if self._sweep is None:
                self._sweep = self.loop.call_later(LEFTOVER_SWEEP_S, self._sweep_leftovers)
        else:
            self._remove_cgroup(cmd)

    # ------------------------------------------------------------------ leftovers
    @staticmethod
    def _cgroup_populated(cmd: Command) -> bool:
        if not cmd.cgroup:
            return False
        try:
            with open(os.path.join(cmd.cgroup, "cgroup.events")) as f:
                return "populated 1" in f.read()
        except OSError:
            return False

    def _group_alive(self, cmd: Command) -> bool:
        """Does any process of the command's process group (pgid == leader pid) or cgroup run?
        The leader is reaped: while members remain, the kernel keeps the pgid from being reused."""
        try:
            os.killpg(cmd.pid, 0)
            return True
        except ProcessLookupError:
            pass
        except PermissionError:
            return True
        return self._cgroup_populated(cmd)

    def _sweep_leftovers(self) -> None:
        self._sweep = None
        for pid, cmd in list(self.leftovers.items()):
            if not self._group_alive(cmd):
                del self.leftovers[pid]
                cmd.leftover = False
                self._remove_cgroup(cmd)
        if self.leftovers:
            self._sweep = self.loop.call_later(LEFTOVER_SWEEP_S, self._sweep_leftovers)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._exit_ep is not None:
            self.loop.remove_reader(self._exit_ep.fileno())
            self._exit_ep.close()
            self._exit_ep = None

    def _on_timeout(self, cmd: Command) -> None:
        if cmd.status is not None:
            return
        cmd.timed_out = True
        self._signal_group(cmd, signal.SIGTERM)
        cmd.timers.append(self.loop.call_later(cmd.spec.grace_ms / 1000, self._on_grace_over, cmd))

    def _on_grace_over(self, cmd: Command) -> None:
        if cmd.status is None:
            self._signal_group(cmd, signal.SIGKILL)

    # ------------------------------------------------------------------ kill
    def _signal_group(self, cmd: Command, sig: int) -> None:
        if cmd.live is not None:
            self._signal_emulated(cmd, sig)
            return
        if sig == signal.SIGKILL and cmd.cgroup:
            try:
                with open(os.path.join(cmd.cgroup, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
        try:
            os.killpg(cmd.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            # The leader changed its process group to one we may not signal: signal it alone.
            signal.pidfd_send_signal(cmd.pidfd, sig)

    def kill(self, cmd: Command, sig: int) -> None:
        """Signal the command's whole process group (the leader is not reaped yet: pgid is ours;
        for a leftover group, members keep the pgid).  Signal 0 only checks that it still exists."""
        if cmd.leftover:
            if not self._group_alive(cmd):
                raise ProcessLookupError(errno.ESRCH, "the command's processes have all exited")
            if sig:
                self._signal_leftover(cmd, sig)
            return
        if cmd.status is not None or cmd.finished:
            raise ProcessLookupError(errno.ESRCH, "the command has already exited")
        if sig == 0:
            return  # a liveness probe: unreaped, hence alive (or a zombie about to be reported)
        cmd.killed_by_request = True
        self._signal_group(cmd, sig)

    def _signal_leftover(self, cmd: Command, sig: int) -> None:
        if sig == signal.SIGKILL and cmd.cgroup:
            try:
                with open(os.path.join(cmd.cgroup, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
        try:
            os.killpg(cmd.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for cmd in list(self.by_pid.values()) + list(self.starting):
            if cmd.status is None:
                self._signal_group(cmd, sig)
        for cmd in list(self.leftovers.values()):
            self._signal_leftover(cmd, sig)

    # ------------------------------------------------------------------ emulated commands
    def start_emulated(self, spec: RunSpec, owner, request_id: int, host: str) -> Command:
        """Launch `spec` inside the daemon's emulation on simulated `host`, at the current simulated
        date.  ProcessLaunched comes when the emulation has started it (pid known)."""
        m = self.mediator
        cmd = Command(spec=spec, owner=owner, request_id=request_id, host=host, identity=getattr(owner, "identity", None))
        cmd.started_ns = now_ns()
        ours = []  # descriptors to close once launch() has duplicated them
        readers = {}
        try:
            ends = []
            for capture, path, stream in ((spec.capture_stdout, spec.stdout_path, g.Stream.stdout),
                                          (spec.capture_stderr, spec.stderr_path, g.Stream.stderr)):
                if capture:
                    r, w = os.pipe()
                    readers[r] = stream
                    ours.append(w)
                elif path:
                    w = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
                    ours.append(w)
                else:
                    w = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                    ours.append(w)
                ends.append(w)
        except OSError as e:
            for fd in ours + list(readers):
                os.close(fd)
            self._creation_error(cmd, e)
            return cmd
        argv = list(spec.argv)
        if spec.path and spec.path != argv[0]:
            argv[0] = spec.path  # the emulation runs argv[0]
        try:
            cmd.live = m.launch(
                host, argv, spec.env, spec.cwd, ends[0], ends[1],
                on_start=lambda p: m.hop(self._emu_started, cmd, now_ns()),
                on_exit=lambda p: m.hop(self._emu_exited, cmd, now_ns()),
            )
        except m.LaunchError as e:
            for fd in readers:
                os.close(fd)
            self._exec_failed_end(cmd, 0, e.errno or errno.ENOENT, str(e), now_ns(), self.sim_now())
            return cmd
        finally:
            for fd in ours:
                os.close(fd)  # launch() duplicated them
        for fd, stream in readers.items():
            os.set_blocking(fd, False)
            cmd.pipes[fd] = stream
            self.loop.add_reader(fd, self._on_output, cmd, fd)
        self.starting.add(cmd)
        if spec.timeout_ms:  # wall-clock timeout, like a plain command's
            cmd.timers.append(self.loop.call_later(spec.timeout_ms / 1000, self._on_timeout, cmd))
        return cmd

    def _emu_started(self, cmd: Command, t: int) -> None:
        p = cmd.live
        self.starting.discard(cmd)
        if cmd.finished or p.pid is None:
            return
        cmd.pid = p.pid
        cmd.sim_start_ns = to_ns(p.sim_start)
        if cmd.status is None:
            self.by_pid[cmd.pid] = cmd
        rid, st = cmd.request_id, cmd.sim_start_ns
        self.emit(cmd, g.ProcessLaunchedT(pid=cmd.pid, requestId=rid, timeNs=t, simTimeNs=st, host=cmd.host), False)
        self.emit(
            cmd,
            g.ExecveTerminatedT(pid=cmd.pid, commandName=wire_str(cmd.spec.argv[0]), success=True, requestId=rid, timeNs=t,
                                simTimeNs=st),
            False,
        )
        for sig in cmd.pending_signals:
            self.mediator.kill(p, sig)
        cmd.pending_signals.clear()

    def _emu_exited(self, cmd: Command, t: int) -> None:
        p = cmd.live
        self.starting.discard(cmd)
        if cmd.finished:
            return
        for timer in cmd.timers:
            timer.cancel()
        cmd.timers.clear()
        if p.pid is None:
            # The emulation could not start it (the program failed to execute under the tracer).
            for fd in list(cmd.pipes):
                self._close_pipe(cmd, fd)
            self._exec_failed_end(cmd, 0, errno.ENOEXEC, p.error or "could not be started", t,
                                  to_ns(p.sim_end))
            return
        if cmd.pid == 0:  # on_start's hop has not run (cannot happen: FIFO), be safe
            self._emu_started(cmd, t)
        cmd.exit_ns = t
        cmd.status = p.exit_status if p.exit_status is not None else 255
        self._drain_after_exit(cmd)

    def _finish_emulated(self, cmd: Command) -> None:
        p = cmd.live
        if p.signal:
            sig, exit_code, error_code = p.signal, -1, 128 + p.signal
        else:
            sig = 0
            exit_code = error_code = p.exit_status if p.exit_status is not None else 255
        # No rusage for emulated processes: the emulation reaps them (user/sys/max_rss stay 0).
        self._terminated(
            cmd,
            g.ProcessTerminatedT(
                pid=cmd.pid, errorCode=error_code, requestId=cmd.request_id, timeNs=cmd.exit_ns,
                exitCode=exit_code, signal=sig, timedOut=cmd.timed_out, wallNs=cmd.exit_ns - cmd.started_ns,
                simTimeNs=to_ns(p.sim_end), simStartNs=cmd.sim_start_ns, message=p.error,
            ),
        )

    def _signal_emulated(self, cmd: Command, sig: int) -> None:
        """The emulation signals the root process only (emulated trees share the daemon's process
        group: there is no group of their own to signal)."""
        if cmd.live.pid is None:
            cmd.pending_signals.append(sig)
        else:
            self.mediator.kill(cmd.live, sig)
