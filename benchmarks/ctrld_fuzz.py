"""Fuzz the daemon: 10 000 random and mutated frames from several connections while an honest
client runs commands on its own connection; report crashes and whether the honest client saw
every one of its events.

Frames: 1/3 random bytes, 2/3 mutations of valid requests (byte flips, truncation, extension,
random union tag); 1 in 200 is an oversized or garbage length prefix (the daemon must close that
connection - the fuzzer then reconnects).  One frame in 8 is *structural*: a legal FlatBuffer
whose offsets are shared (a DAG: one string or one watch table referenced from up to 4096 vector
entries, up to 1 MiB frames) or re-pointed at other objects of the frame; these are what expand
in memory, and the daemon's peak RSS is reported.

Second phase, an unauthenticated flood against a daemon with a token: 400 connections opened as
fast as possible, each idling, announcing a 16 MiB frame, or sending garbage instead of Hello,
while the token holder keeps running commands; reported: refusals, the token holder's runs and
their worst latency, the daemon's peak RSS.

Run: .venv/bin/python benchmarks/ctrld_fuzz.py [frames]
"""

from __future__ import annotations

import asyncio
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flatbuffers  # noqa: E402

from ctrld.client import Client  # noqa: E402
from ctrld.protocol import codec  # noqa: E402
from ctrld.protocol.generated import ctrld_generated as g  # noqa: E402
from ctrld.testing import DaemonProc  # noqa: E402

N_FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ATTACKERS = 4
HONEST_RUNS = 60


def seeds(tmp: str) -> list[bytes]:
    sv = g.SurveillanceEventT()
    sv.eventType, sv.event = g.Surveillance.TCPSocket, g.TCPSocketT(destport=1, timeoutMs=50)
    ino = g.SurveillanceEventT()
    ino.eventType, ino.event = g.Surveillance.Inotify, g.InotifyT(rootPaths=tmp, mask=0x100, timeoutMs=50)
    bodies = [
        g.RunCommandT(path="/bin/true", args=["true", "x"], envp=["A=1"], requestId=7, timeoutMs=500),
        g.RunCommandT(requestId=8, toWatch=[sv, ino]),
        g.KillProcessT(pid=999_999, requestId=9),
        g.StatusRequestT(requestId=10),
        g.HelloT(version=2, clientName="fuzz"),
        g.RemoveWatchT(requestId=8),
        g.SubscribeT(requestId=11, enable=False),
    ]
    return [codec.encode(b)[4:] for b in bodies]


def _finish(b: flatbuffers.Builder, tag: int, table: int) -> bytes:
    g.MessageStart(b)
    g.MessageAddEventsType(b, tag)
    g.MessageAddEvents(b, table)
    b.Finish(g.MessageEnd(b))
    return bytes(b.Output())


def structural(rng: random.Random, base: list[bytes]) -> bytes:
    """A frame whose offsets are shared: it decodes (if it were decoded naively) into far more
    than its size; or a valid frame with one uoffset re-pointed at another object inside it."""
    kind = rng.randrange(4)
    size = rng.choice([1024, 16 * 1024, 256 * 1024, 1024 * 1024])
    copies = rng.choice([16, 256, 1024, 4096])
    b = flatbuffers.Builder(size + 8 * copies + 256)
    if kind == 0:  # args / envp pointing many times at one string
        big = b.CreateString("A" * size)
        vecs = []
        for _ in range(2):
            g.RunCommandStartArgsVector(b, copies)
            for _ in range(copies):
                b.PrependUOffsetTRelative(big)
            vecs.append(b.EndVector())
        path = b.CreateString("/bin/true")
        g.RunCommandStart(b)
        g.RunCommandAddPath(b, path)
        g.RunCommandAddArgs(b, vecs[0])
        g.RunCommandAddEnvp(b, vecs[1])
        g.RunCommandAddRequestId(b, rng.randrange(1, 1 << 32))
        return _finish(b, g.Event.RunCommand, g.RunCommandEnd(b))
    if kind == 1:  # to_watch pointing many times at one table (itself pointing at one big path)
        big = b.CreateString("/tmp/" + "d" * size)
        g.InotifyStart(b)
        g.InotifyAddRootPaths(b, big)
        ino = g.InotifyEnd(b)
        g.SurveillanceEventStart(b)
        g.SurveillanceEventAddEventType(b, g.Surveillance.Inotify)
        g.SurveillanceEventAddEvent(b, ino)
        sv = g.SurveillanceEventEnd(b)
        g.RunCommandStartToWatchVector(b, copies)
        for _ in range(copies):
            b.PrependUOffsetTRelative(sv)
        vec = b.EndVector()
        g.RunCommandStart(b)
        g.RunCommandAddToWatch(b, vec)
        g.RunCommandAddRequestId(b, rng.randrange(1, 1 << 32))
        return _finish(b, g.Event.RunCommand, g.RunCommandEnd(b))
    if kind == 2:  # a Hello whose token is huge (only Hello is read before authentication)
        tok = b.CreateString("t" * size)
        g.HelloStart(b)
        g.HelloAddToken(b, tok)
        return _finish(b, g.Event.Hello, g.HelloEnd(b))
    # re-point: a 4-byte aligned word of a valid frame replaced by the distance to another offset
    m = bytearray(rng.choice(base))
    at = rng.randrange(0, max(1, len(m) - 4)) & ~3
    target = rng.randrange(0, len(m)) & ~3
    struct.pack_into("<I", m, at, (target - at) % (1 << 32))
    return bytes(m)


def mutate(rng: random.Random, base: list[bytes]) -> bytes:
    r = rng.random()
    if r < 1 / 8:
        return structural(rng, base)
    if r < 1 / 3:
        return rng.randbytes(rng.randrange(0, 300))
    m = bytearray(rng.choice(base))
    op = rng.randrange(4)
    if op == 0:
        for _ in range(rng.randrange(1, 8)):
            m[rng.randrange(len(m))] = rng.randrange(256)
    elif op == 1:
        del m[rng.randrange(len(m)) :]
    elif op == 2:
        m += rng.randbytes(rng.randrange(1, 64))
    else:  # random union tag: Message's type byte is the first byte of its last field region; flip near the root
        pos = struct.unpack_from("<I", m)[0] if len(m) >= 4 else 0
        if pos < len(m):
            for i in range(max(0, pos - 8), min(len(m), pos + 8)):
                if rng.random() < 0.3:
                    m[i] = rng.randrange(256)
    return bytes(m)


async def attacker(d: DaemonProc, frames: list[bytes], stats: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
    drain_task = asyncio.create_task(_drain(reader, stats))
    for f in frames:
        if f is None:  # a bogus length prefix: the daemon hangs up, we reconnect
            writer.write(struct.pack("<I", 0xFFFF_FFF0))
            await writer.drain()
            await drain_task
            writer.close()
            stats["closed_by_daemon"] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
            drain_task = asyncio.create_task(_drain(reader, stats))
            continue
        writer.write(struct.pack("<I", len(f)) + f)
        stats["sent"] += 1
        if stats["sent"] % 64 == 0:
            await writer.drain()
            await asyncio.sleep(0)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    drain_task.cancel()


async def _drain(reader, stats) -> None:
    try:
        while True:
            n = struct.unpack("<I", await reader.readexactly(4))[0]
            kind, _ = codec.decode(await reader.readexactly(n))
            stats["replies"] += 1
            stats["errors"] += kind == "Error"
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def honest(d: DaemonProc, report: dict) -> None:
    async with await Client.connect(d.unix) as c:
        for i in range(HONEST_RUNS):
            r = await c.run(["sh", "-c", f"echo run {i}; echo err {i} >&2; exit {i % 7}"])
            kinds = [e.kind for e in r.events]
            ok = (kinds[0] == "ProcessLaunched" and kinds[1] == "ExecveTerminated" and kinds[-1] == "ProcessTerminated"
                  and r.stdout == f"run {i}\n".encode() and r.stderr == f"err {i}\n".encode() and r.exit_code == i % 7)
            report["ok" if ok else "bad"] += 1


async def flood(tmp: str) -> None:
    token = "fuzz-token-0123456789abcdef"
    Path(f"{tmp}/token").write_text(token)
    d = DaemonProc(["--tcp", "127.0.0.1:0", "--token-file", f"{tmp}/token", "--handshake-timeout", "3"])
    stats = {"opened": 0, "refused_at_connect": 0, "answered": 0, "closed_by_daemon": 0}
    lat = []
    runs = {"ok": 0, "failed": 0}
    stop = asyncio.Event()

    async def attacker(i: int):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        except OSError:
            stats["refused_at_connect"] += 1
            return
        stats["opened"] += 1
        mode = i % 3
        if mode == 1:
            writer.write(struct.pack("<I", 16 * 1024 * 1024 - 1) + bytes(60000))
        elif mode == 2:
            writer.write(struct.pack("<I", 64) + bytes(64))
        try:
            # the daemon answers (refusal, eviction, handshake deadline) then hangs up
            if await asyncio.wait_for(reader.read(65536), 30):
                stats["answered"] += 1
            await asyncio.wait_for(reader.read(), 30)
            stats["closed_by_daemon"] += 1
        except (asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()

    async def holder():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                async with await Client.connect(d.tcp, token=token, timeout=30) as c:
                    ok = (await c.run(["echo", "x"])).stdout == b"x\n"
                runs["ok" if ok else "failed"] += 1
            except Exception:
                runs["failed"] += 1
            lat.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)

    t0 = time.perf_counter()
    try:
        h = asyncio.create_task(holder())
        await asyncio.gather(*(attacker(i) for i in range(400)))
        await asyncio.sleep(1)
        stop.set()
        await h
        elapsed = time.perf_counter() - t0
        alive = d.alive()
        peak = d.memory_kib()[1]
    finally:
        d.stop()
    print(f"unauthenticated flood: 400 connections in {elapsed:.1f} s ({stats['opened']} opened, "
          f"{stats['refused_at_connect']} refused by the kernel, {stats['closed_by_daemon']} closed by the daemon), "
          f"daemon alive: {alive}, peak RSS {peak / 1024:.1f} MiB")
    print(f"  token holder meanwhile: {runs['ok']} runs OK, {runs['failed']} failed; connect+run latency "
          f"median {statistics.median(lat) * 1000:.1f} ms, worst {max(lat) * 1000:.1f} ms")
    print(f"  tracebacks in the daemon's log: {d.stderr_text.count('Traceback')}; "
          f"log lines: {len(d.stderr_text.splitlines())}")


async def main() -> None:
    rng = random.Random(20240601)
    with tempfile.TemporaryDirectory() as tmp:
        base = seeds(tmp)
        frames = [None if rng.random() < 1 / 200 else mutate(rng, base) for _ in range(N_FRAMES)]
        d = DaemonProc(["--tcp", "127.0.0.1:0", "--unix", f"{tmp}/s.sock"], env={"PWD": tmp})
        stats = {"sent": 0, "replies": 0, "errors": 0, "closed_by_daemon": 0}
        report = {"ok": 0, "bad": 0}
        t0 = time.perf_counter()
        try:
            chunks = [frames[i::ATTACKERS] for i in range(ATTACKERS)]
            await asyncio.gather(honest(d, report), *(attacker(d, ch, stats) for ch in chunks))
            elapsed = time.perf_counter() - t0
            alive = d.alive()
            # after the storm: the daemon still serves a fresh client
            async with await Client.connect(d.tcp) as c:
                after = (await c.run(["echo", "after"])).stdout == b"after\n"
        finally:
            peak = d.memory_kib()[1] if d.alive() else 0
            rc = d.stop()
        crashes = 0 if alive and after else 1
        tracebacks = d.stderr_text.count("Traceback")
    print(f"fuzz: {stats['sent']} frames ({N_FRAMES} planned, {stats['closed_by_daemon']} bogus length prefixes) "
          f"from {ATTACKERS} connections in {elapsed:.1f} s")
    print(f"  daemon crashes: {crashes}  (alive during the run: {alive}, serves afterwards: {after}, exit code {rc})")
    print(f"  tracebacks in the daemon's log (requests that failed inside a handler): {tracebacks}")
    print(f"  daemon peak RSS (structural frames included): {peak / 1024:.1f} MiB")
    print(f"  replies to the fuzzer: {stats['replies']} ({stats['errors']} Error events)")
    print(f"  honest client: {report['ok']}/{HONEST_RUNS} runs with every event (launched, execve, stdout, stderr, exit) "
          f"{'- OK' if report['ok'] == HONEST_RUNS else '- MISSING EVENTS'}")


if __name__ == "__main__":
    asyncio.run(main())
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(flood(tmp))
