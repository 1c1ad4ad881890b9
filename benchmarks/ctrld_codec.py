"""ctrld/protocol/fast.py vs the generated object API: same tables both ways, then speed side by side.

  * check: for every table fast.py lays out, random values (defaults, extremes, absent and
    non-ASCII strings, empty vectors) are encoded by one side and decoded by the other, in both
    directions, and by fast.py on both sides (its one-unpack path for its own layout), and must
    come back equal; every scalar must be aligned to its size in the frame.
  * speed: encode and decode of a command's four messages, fast path vs generated code.

Run: .venv/bin/python benchmarks/ctrld_codec.py
"""

from __future__ import annotations

import random
import struct
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flatbuffers  # noqa: E402

from ctrld.protocol import codec, fast  # noqa: E402
from ctrld.protocol.generated import ctrld_generated as g  # noqa: E402

ROUNDS = 300


def generated_encode(body) -> bytes:
    b = flatbuffers.Builder(128)
    off = body.Pack(b)
    g.MessageStart(b)
    g.MessageAddEventsType(b, codec.TAG_OF_NAME[type(body).__name__[:-1]])
    g.MessageAddEvents(b, off)
    b.FinishSizePrefixed(g.MessageEnd(b))
    return bytes(b.Output())


def generated_decode(payload: bytes):
    msg = g.Message.GetRootAs(payload, 0)
    table = msg.Events()
    name = codec.NAME_OF_TAG[msg.EventsType()]
    reader = getattr(g, name)()
    reader.Init(table.Bytes, table.Pos)
    return getattr(g, name + "T").InitFromObj(reader)


def normal(body) -> dict:
    out = {}
    for k, v in vars(body).items():
        if type(v).__name__ == "ndarray":  # generated [ubyte] with numpy
            v = bytes(v.tolist())
        elif isinstance(v, list):
            v = [x.encode() if isinstance(x, str) else bytes(x) for x in v]
        out[k] = v
    return out


def random_value(rnd: random.Random, kind: str):
    if kind == "s":
        return rnd.choice([None, "", "x", "héllo wörld ✓", "a" * rnd.randint(0, 40)])
    if kind == "S":
        return rnd.choice([None, [], [b"/bin/echo", b"hello", b""], [b"x" * rnd.randint(0, 9) for _ in range(rnd.randint(0, 5))]])
    if kind == "V":
        return rnd.choice([None, b"", bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 20)))])
    if kind == "?":
        return rnd.choice([True, False])
    if kind == "X":
        return None
    bits = struct.calcsize(kind) * 8
    if kind.islower():
        return rnd.choice([0, -1, 1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, rnd.randint(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)])
    return rnd.choice([0, 1, 2**bits - 1, rnd.randint(0, 2**bits - 1)])


def check() -> int:
    rnd = random.Random(1)
    n = 0
    for name, t in fast.TABLES.items():
        for i, (attr, kind, _default) in enumerate(t.fields):
            width = 4 if kind in "sSVX" else struct.calcsize(kind)
            assert (t.table + t.offset[i]) % width == 0, f"{name}.{attr} misaligned"
        for _ in range(ROUNDS):
            body = t.cls()
            for attr, kind, _default in t.fields:
                setattr(body, attr, random_value(rnd, kind))
            frame = t.encode(body)
            assert struct.unpack_from("<I", frame)[0] == len(frame) - 4 and len(frame) % 8 == 0
            assert normal(generated_decode(frame[4:])) == normal(body), f"{name}: fast encode != generated decode"
            tag, pos = fast.decode_message(frame[4:])
            assert normal(t.decode(frame[4:], pos)) == normal(body), f"{name}: fast encode != fast decode"
            ref = generated_encode(body)
            tag, pos = fast.decode_message(ref[4:])
            assert tag == t.tag
            assert normal(t.decode(ref[4:], pos)) == normal(generated_decode(ref[4:])), f"{name}: fast decode"
            n += 3
    return n


def speed() -> None:
    t = codec.now_ns()
    bodies = [
        g.RunCommandT(path="/bin/echo", args=["/bin/echo", "hello"], requestId=5, inheritEnv=True),
        g.ProcessLaunchedT(pid=1234, requestId=5, timeNs=t),
        g.ExecveTerminatedT(pid=1234, commandName="/bin/echo", success=True, requestId=5, timeNs=t),
        g.ProcessTerminatedT(pid=1234, requestId=5, timeNs=t, exitCode=0, userCpuNs=1000, sysCpuNs=2000,
                             maxRssKb=1800, wallNs=700000),
    ]
    print(f"{'message':<20} {'encode generated':>17} {'encode fast':>12} {'decode generated':>17} {'decode fast':>12}")
    for body in bodies:
        frame = codec.encode(body)
        payload = frame[4:]
        n = 3000
        times = [
            timeit.timeit(lambda: generated_encode(body), number=n) / n,  # noqa: B023
            timeit.timeit(lambda: codec.encode(body), number=n) / n,  # noqa: B023
            timeit.timeit(lambda: generated_decode(payload), number=n) / n,  # noqa: B023
            timeit.timeit(lambda: codec.decode(payload), number=n) / n,  # noqa: B023
        ]
        print(f"{type(body).__name__[:-1]:<20} " + " ".join(f"{x * 1e6:14.1f} µs" for x in times))


if __name__ == "__main__":
    print(f"check: {check()} round trips equal (fast <-> generated, both directions)")
    speed()
