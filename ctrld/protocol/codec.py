"""Framing and (de)serialisation of ctrld messages.

A frame is a u32 little-endian length followed by a FlatBuffer whose root is `Message` - exactly
FlatBuffers' size-prefixed buffer, and exactly the seed daemon's format.

Python FlatBuffers has no verifier: a corrupt buffer raises (struct.error, IndexError, ...) from
inside accessors.  `decode` therefore unpacks the whole message eagerly with the object API inside
one try/except, so callers only ever see `ProtocolError`.  The messages of a command's life are
laid out and read by ctrld/protocol/fast.py (same bytes semantics, ~10x faster); the others go
through the generated object API.
"""

from __future__ import annotations

import struct
import time

import flatbuffers

from ctrld.protocol import bounds, fast
from ctrld.protocol.generated import ctrld_generated as g

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
# Before a connection is authenticated only Hello is accepted, in frames of at most this size.
PREAUTH_MAX_FRAME = 64 * 1024
_LEN = struct.Struct("<I")

# Union member name <-> tag <-> object-API class, derived from the generated code so that the
# table stays right when members are appended to the schema.
TAG_OF_NAME: dict[str, int] = {
    name: value for name, value in vars(g.Event).items() if isinstance(value, int) and name != "NONE"
}
NAME_OF_TAG: dict[int, str] = {v: k for k, v in TAG_OF_NAME.items()}
_CLASS_OF_TAG = {tag: getattr(g, name + "T") for tag, name in NAME_OF_TAG.items()}
_TAG_OF_CLASS = {cls: tag for tag, cls in _CLASS_OF_TAG.items()}
# Reader classes (g.RunCommand, ...) for the messages ctrld/protocol/fast.py does not lay out.
_READER_OF_TAG = {tag: getattr(g, name) for tag, name in NAME_OF_TAG.items()}
_OUTPUT_CHUNK = fast.TABLES["OutputChunk"]

SEED_MEMBERS = frozenset(
    [
        "RunCommand", "KillProcess", "EstablishTCPConnection", "EstablishUnixConnection",
        "ExecveTerminated", "ProcessLaunched", "ChildCreationError", "ProcessTerminated",
        "TCPSocketListening", "InotifyPathUpdated", "InotifyWatchListUpdated", "SocketWatched",
        "SocketWatchTerminated",
    ]
)


class ProtocolError(Exception):
    """A frame that cannot be decoded (corrupt, unknown union tag, too large)."""


class FrameTooLarge(ProtocolError):
    pass


def now_ns() -> int:
    return time.monotonic_ns()


def encode(body) -> bytes:
    """Serialise one object-API table (e.g. `g.ProcessLaunchedT(...)`) as a size-prefixed frame."""
    table = fast.ENCODER_OF_CLASS.get(type(body))
    if table is not None:  # the hot messages: laid out directly (see ctrld/protocol/fast.py)
        frame = table.encode(body)
        if frame is not None:
            return frame
    b = flatbuffers.Builder(128)
    off = body.Pack(b)
    g.MessageStart(b)
    g.MessageAddEventsType(b, _TAG_OF_CLASS[type(body)])
    g.MessageAddEvents(b, off)
    b.FinishSizePrefixed(g.MessageEnd(b))
    return bytes(b.Output())


def encode_output_chunk(request_id: int, pid: int, stream: int, data: bytes, time_ns: int,
                        sim_time_ns: int = -1) -> bytes:
    return _OUTPUT_CHUNK.encode(g.OutputChunkT(requestId=request_id, pid=pid, stream=stream, data=data,
                                               timeNs=time_ns, simTimeNs=sim_time_ns))


def decode(payload: bytes, accept: frozenset[str] | None = None):
    """Decode one frame body (without its length prefix) into (member name, object-API table).

    `accept`: the member names the caller handles; any other member raises ProtocolError before
    the (possibly costly) unpacking is done.  Requests are walked first (ctrld/protocol/bounds.py):
    one that would decode into far more than its own size is refused before anything is built.
    """
    try:
        if accept is None:  # events (clients): the layouts the daemon writes, recognised at once
            own = fast.decode_own(payload)
            if own is not None:
                return own[0].name, own[1]
        tag, pos = fast.decode_message(payload)
        name = NAME_OF_TAG.get(tag)
        if name is None:
            raise ProtocolError(f"unknown union tag {tag}" if tag else "message carries no event")
        if accept is not None and name not in accept:
            raise ProtocolError(f"unexpected message type {name}")
        if pos is None:
            raise ProtocolError(f"{name} without a body")
        if name in bounds.REQUEST_TABLES:
            bounds.check(name, payload, pos)
        table = fast.DECODER_OF_TAG.get(tag)
        if table is not None:
            body = table.decode(payload, pos)
            if body is not None:
                return name, body
        reader = _READER_OF_TAG[tag]()
        reader.Init(payload, pos)
        return name, _CLASS_OF_TAG[tag].InitFromObj(reader)
    except ProtocolError:
        raise
    except bounds.ExpansionError as e:
        raise ProtocolError(str(e)) from None
    except Exception as e:  # no verifier: any accessor may fail on a corrupt buffer
        raise ProtocolError(f"undecodable frame ({type(e).__name__}: {e})") from None


class FrameSplitter:
    """Cuts a byte stream into frame bodies; refuses frames above `max_frame` bytes.

    After a refused length prefix the stream cannot be re-synchronised: `error` is set, the
    complete frames that preceded it are still returned, and nothing more is accepted.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self.error: FrameTooLarge | None = None
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buf = self._buf
        if buf:  # the rest of a partial frame: continue in the buffer
            buf += data
            data = buf
        # else the frames are cut from `data` itself (one copy each, none for the buffer), and only
        # an incomplete tail is kept
        frames = []
        pos = 0
        end = len(data)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(data, pos)
            if n > self.max_frame:
                self.error = FrameTooLarge(f"frame of {n} bytes exceeds the {self.max_frame}-byte limit")
                buf.clear()
                return frames
            if end - pos - 4 < n:
                break
            frames.append(bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        if data is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += memoryview(data)[pos:]
        return frames


def wire_str(value: str) -> str:
    """A string FlatBuffers can carry (valid UTF-8): argv entries that were not UTF-8 (decoded with
    surrogateescape by as_str) get U+FFFD for their undecodable bytes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def as_str(value) -> str | None:
    """Strings inside vectors are not decoded by the object API: give them back as str."""
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "surrogateescape")
