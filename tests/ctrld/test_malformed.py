"""Malformed input: undecodable frames and unknown union tags get an Error event on that
connection, oversized frames close it; the daemon and the other clients carry on."""

from __future__ import annotations

import random
import socket
import struct

import flatbuffers

from ctrld.client import Client
from ctrld.protocol import codec
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import arun


class Raw:
    def __init__(self, daemon):
        self.s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        self.buf = b""
        assert self.recv()[0] == "TCPSocketListening"

    def send(self, payload: bytes):
        self.s.sendall(struct.pack("<I", len(payload)) + payload)

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from("<I", self.buf)
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return codec.decode(frame)
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def close(self):
        self.s.close()


def _message_with_tag(tag: int) -> bytes:
    b = flatbuffers.Builder(64)
    g.AckStart(b)
    g.AckAddRequestId(b, 7)
    t = g.AckEnd(b)
    g.MessageStart(b)
    g.MessageAddEventsType(b, tag)
    g.MessageAddEvents(b, t)
    b.Finish(g.MessageEnd(b))
    return bytes(b.Output())


def _healthy(daemon) -> bool:
    async def go():
        async with await Client.connect(daemon.tcp) as c:
            return (await c.run(["echo", "ok"])).stdout
    return arun(go()) == b"ok\n"


def test_garbage_frame_gets_error_and_connection_survives(daemon):
    r = Raw(daemon)
    r.send(b"\xff" * 3)
    kind, err = r.recv()
    assert kind == "Error" and "undecodable" in err.message and err.requestId == 0
    r.send(bytes(random.Random(1).randrange(256) for _ in range(200)))
    assert r.recv()[0] == "Error"
    # the same connection still serves a proper request
    r.send(codec.encode(g.RunCommandT(path="/bin/true", args=["true"], requestId=3))[4:])
    kinds = [r.recv()[0] for _ in range(3)]
    assert kinds == ["ProcessLaunched", "ExecveTerminated", "ProcessTerminated"]
    r.close()
    assert _healthy(daemon)


def test_unknown_union_tag(daemon):
    r = Raw(daemon)
    r.send(_message_with_tag(200))
    kind, err = r.recv()
    assert kind == "Error" and "unknown union tag 200" in err.message
    r.send(_message_with_tag(g.Event.Ack))  # a daemon->client member is not a request
    kind, err = r.recv()
    assert kind == "Error" and "unexpected message type Ack" in err.message
    r.close()
    assert _healthy(daemon)


def test_oversized_frame_closes_only_that_connection(daemon):
    r = Raw(daemon)
    r.s.sendall(struct.pack("<I", codec.DEFAULT_MAX_FRAME + 1))
    kind, err = r.recv()
    assert kind == "Error" and "exceeds" in err.message
    try:
        r.recv()
        closed = False
    except (EOFError, ConnectionError):
        closed = True
    assert closed
    assert _healthy(daemon)


def test_configurable_frame_cap(start_daemon):
    d = start_daemon("--max-frame", "1024")

    async def go():
        async with await Client.connect(d.tcp) as c:
            small = await c.run(["true"])
            big = None
            try:
                await c.run(["echo", "x" * 2000])
            except Exception as e:  # the daemon hangs up on the oversized frame
                big = e
            return small, big

    small, big = arun(go())
    assert small.exit_code == 0 and big is not None
    assert d.alive()


def test_mutated_frames_with_honest_client(daemon):
    """Bit-flipped versions of valid requests, interleaved with an honest client's commands."""
    rng = random.Random(42)
    valid = codec.encode(g.RunCommandT(path="/bin/true", args=["true"], requestId=9, envp=["A=1"]))[4:]
    attacker = Raw(daemon)

    async def honest():
        async with await Client.connect(daemon.unix) as c:
            return [(await c.run(["echo", str(i)])).stdout for i in range(5)]

    for _ in range(300):
        m = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        attacker.send(bytes(m))
    outs = arun(honest())
    attacker.close()
    assert outs == [f"{i}\n".encode() for i in range(5)]
    assert daemon.alive()


def test_frames_before_a_bogus_length_are_still_served(daemon):
    r = Raw(daemon)
    ok = codec.encode(g.StatusRequestT(requestId=4))
    r.s.sendall(ok + struct.pack("<I", 0xFFFFFFF0))  # one segment: a good frame, then garbage
    kind, reply = r.recv()
    assert kind == "StatusReply" and reply.requestId == 4
    kind, err = r.recv()
    assert kind == "Error" and "exceeds" in err.message
    r.close()
