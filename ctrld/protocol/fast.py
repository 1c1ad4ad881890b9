"""Hand-laid FlatBuffers for the hot messages (a command's request and events).

The `flatbuffers` Python runtime builds a buffer with one method call per byte group and reads one
with several calls per field: ~15-30 µs per message, for each of the four messages of a command on
both ends.  The tables below are laid out once, from a per-table field list, into a fixed
`struct` format: encoding is one `pack` (plus the strings), decoding one `unpack_from` per field.

Encoding writes every scalar field explicitly, defaults included (FlatBuffers allows it; readers
see the same values), so that a table's layout does not depend on its values.  The layout follows
the format's rules: size prefix, root offset, the `Message` table, then the event's vtable and
table, then its strings and vectors, every offset pointing forward, every scalar aligned to its
size from the start of the frame (what the official builders produce and verifiers check).

Decoding reads exactly what the generated object API reads and builds the same object-API table
(`g.ProcessTerminatedT`, ...): strings decoded as UTF-8, vectors of strings left as bytes.

The field lists mirror ctrld.fbs (slot = position of the field in its table, union fields take
two slots); `benchmarks/ctrld_codec.py` checks them against the generated code in both directions.
"""

from __future__ import annotations

import operator
import struct

from ctrld.protocol import bounds
from ctrld.protocol.generated import ctrld_generated as g

# kind: a struct code for scalars; "s" string, "S" [string], "V" [ubyte]; "X" a field this fast
# path does not handle (decoding falls back to the object API when it is present).
_SPECS = {
    "RunCommand": [
        ("path", "s", None), ("args", "S", None), ("envp", "S", None), ("flags", "I", 0),
        ("stackSize", "I", 0), ("toWatch", "X", None), ("requestId", "Q", 0), ("cwd", "s", None),
        ("timeoutMs", "I", 0), ("graceMs", "I", 0), ("captureStdout", "?", False),
        ("captureStderr", "?", False), ("stdoutPath", "s", None), ("stderrPath", "s", None),
        ("killOnDisconnect", "?", False), ("inheritEnv", "?", False), ("host", "s", None),
        ("unmediated", "?", False), ("runAsUid", "q", -1), ("runAsGid", "q", -1), ("runAsGroups", "X", None),
        ("stdinPipe", "?", False), ("deferStart", "?", False),
    ],
    "KillProcess": [
        ("pid", "i", 0), ("requestId", "Q", 0), ("targetRequestId", "Q", 0), ("signal", "i", 0), ("probe", "?", False),
    ],
    "ExecveTerminated": [
        ("pid", "i", 0), ("commandName", "s", None), ("success", "?", False), ("requestId", "Q", 0),
        ("timeNs", "Q", 0), ("execErrno", "i", 0), ("message", "s", None), ("simTimeNs", "q", -1),
    ],
    "ProcessLaunched": [
        ("pid", "i", 0), ("requestId", "Q", 0), ("timeNs", "Q", 0), ("simTimeNs", "q", -1), ("host", "s", None),
    ],
    "ChildCreationError": [
        ("errorCode", "I", 0), ("requestId", "Q", 0), ("timeNs", "Q", 0), ("message", "s", None),
        ("simTimeNs", "q", -1),
    ],
    "ProcessTerminated": [
        ("pid", "i", 0), ("errorCode", "I", 0), ("requestId", "Q", 0), ("timeNs", "Q", 0),
        ("exitCode", "i", -1), ("signal", "i", 0), ("timedOut", "?", False), ("execFailed", "?", False),
        ("userCpuNs", "Q", 0), ("sysCpuNs", "Q", 0), ("maxRssKb", "Q", 0), ("wallNs", "Q", 0),
        ("simTimeNs", "q", -1), ("simStartNs", "q", -1), ("message", "s", None),
    ],
    "TCPSocketListening": [("port", "H", 0), ("requestId", "Q", 0), ("timeNs", "Q", 0)],
    "Error": [("requestId", "Q", 0), ("code", "i", 0), ("message", "s", None), ("timeNs", "Q", 0)],
    "OutputChunk": [
        ("requestId", "Q", 0), ("pid", "i", 0), ("stream", "b", g.Stream.stdout), ("data", "V", None),
        ("timeNs", "Q", 0), ("simTimeNs", "q", -1),
    ],
    "Ack": [("requestId", "Q", 0), ("timeNs", "Q", 0)],
    "StdinData": [("requestId", "Q", 0), ("data", "V", None)],
    "CloseStdin": [("requestId", "Q", 0)],
    "WaitProcess": [("requestId", "Q", 0), ("pid", "i", 0)],
}

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_U8 = struct.Struct("<B")
_ZEROS = bytes(8)
_MSG_VTABLE = 8  # the Message vtable sits at frame offset 8, its table at 16
_MSG_TABLE = 16
_EVENT_VTABLE = 28  # right after the Message table (soffset, events offset, events_type + padding)


class _Table:
    def __init__(self, name: str, fields: list):
        self.name = name
        self.tag = getattr(g.Event, name)
        self.cls = getattr(g, name + "T")
        self.fields = fields
        self.nslots = len(fields)
        vt_len = 4 + 2 * self.nslots
        table = _EVENT_VTABLE + vt_len
        table += (4 - table % 8) % 8  # soffset at 4 mod 8: the 8-byte fields that follow are aligned
        self.table = table
        size = {"s": 4, "S": 4, "V": 4, "X": 4}

        def width(kind):
            return size.get(kind) or struct.calcsize(kind)

        order = sorted(range(self.nslots), key=lambda i: -width(fields[i][1]))  # stable: 8, 4, 2, 1
        self.offset = [0] * self.nslots  # field offset inside the table
        at = 4
        fmt = ""
        for i in order:
            self.offset[i] = at
            kind = fields[i][1]
            fmt += "I" if kind in size else kind
            at += width(kind)
        self.inline = at
        end = table + at
        pad = (4 - end % 4) % 4
        self.end = end + pad  # strings and vectors start here
        self.order = order
        # The whole head: size prefix, root offset, Message vtable + table, event vtable, event table.
        gap = table - (_EVENT_VTABLE + vt_len)
        self.head = struct.Struct(
            "<II" + "HHHH" + "iIB3x" + "HH" + "H" * self.nslots + "x" * gap + "i" + fmt + "x" * pad
        )
        self.attrs = [f[0] for f in fields]
        # Message vtable: its size, the table's size, events_type at +8, events at +4.
        self.const_prefix = (8, 9, 8, 4, _MSG_TABLE - _MSG_VTABLE, table - (_MSG_TABLE + 4), self.tag,
                             vt_len, at)
        self.decoders = [(f[0], 4 + 2 * i, f[1], f[2]) for i, f in enumerate(fields)]
        # Decoding a table laid out as encode() lays it out (every frame this daemon and its client
        # write): the vtable read in one unpack and compared with this layout, then every inline
        # field in one unpack; the object is filled through its __dict__ (the generated __init__
        # would first set every field to its default).  Any other layout takes the general path.
        self.vt_struct = struct.Struct("<HH" + "H" * self.nslots)
        self.inline_struct = struct.Struct("<" + fmt)
        self.canon_vt = (vt_len, at, *self.offset)
        self.order_attrs = [fields[i][0] for i in order]
        self.order_refs = [(k, fields[i][1], 2 + i) for k, i in enumerate(order) if fields[i][1] in size]
        self.ref_offsets = {2 + i for i, f in enumerate(fields) if f[1] in size}  # positions in canon_vt
        self.direct = set(vars(self.cls())) == set(self.attrs)  # the object holds exactly the fields
        # Vtables of this layout seen so far (which strings and vectors are absent varies), each with
        # the inline positions of its absent references and its present ones (position, kind, offset).
        self.known_vts: dict[tuple, tuple] = {}
        # The same, keyed by the whole head of a frame body laid out by encode() (root offset, the
        # Message table, this table's vtable and offset to it: fixed bytes for a given layout), for
        # decode_own(); the event table then starts at body offset `self.table - 4`.
        self.by_head: dict[bytes, tuple] = {}
        # Encoding works in the inline order: one attrgetter call reads every field.
        self.getter = (operator.attrgetter(*self.order_attrs) if self.nslots > 1
                       else lambda body, a=self.order_attrs[0]: (getattr(body, a),))
        self.order_defaults = [(k, fields[i][2]) for k, i in enumerate(order) if fields[i][1] not in size]
        # The scalars among the values (compared with None: never a [ubyte] field, which may hold
        # a numpy array that == cannot compare).
        picks = [k for k, _default in self.order_defaults]
        self.pick_scalars = (operator.itemgetter(*picks) if len(picks) > 1
                             else (lambda values, k=picks[0]: (values[k],)) if picks else (lambda values: ()))
        self.order_ref_info = [(k, i, fields[i][1], table + self.offset[i]) for k, i in enumerate(order)
                               if fields[i][1] in size]

    # ------------------------------------------------------------------ encode
    def encode(self, body) -> bytes | None:
        """The size-prefixed frame of `body`, or None when it sets a field this path does not lay out."""
        table = self.table
        vt = list(self.offset)
        values = list(self.getter(body))  # in inline order
        if None in self.pick_scalars(values):  # a scalar left at None: its default
            for k, default in self.order_defaults:
                if values[k] is None:
                    values[k] = default
        tail = []
        pos = self.end
        for k, i, kind, at in self.order_ref_info:
            v = values[k]
            if v is None:
                vt[i] = 0
                values[k] = 0
                continue
            if kind == "X":
                return None  # e.g. RunCommand.to_watch: the generated code packs it
            values[k] = pos - at
            if kind == "s":
                pos = _put_string(tail, pos, v)
            elif kind == "V":
                data = bytes(v)
                n = len(data)
                tail.append(_U32.pack(n))
                tail.append(data)
                pad = (4 - n % 4) % 4
                if pad:
                    tail.append(_ZEROS[:pad])
                pos += 4 + n + pad
            else:  # "S", [string]: the vector of offsets, then its strings
                n = len(v)
                strings = []
                spos = pos + 4 + 4 * n
                offs = []
                for k, s in enumerate(v):
                    offs.append(spos - (pos + 4 + 4 * k))
                    spos = _put_string(strings, spos, s)
                tail.append(struct.pack("<%dI" % (n + 1), n, *offs))
                tail.extend(strings)
                pos = spos
        total = pos + (8 - pos % 8) % 8
        head = self.head.pack(total - 4, _MSG_TABLE - 4, *self.const_prefix, *vt, table - _EVENT_VTABLE, *values)
        if not tail:
            return head + _ZEROS[: total - pos]
        tail.append(_ZEROS[: total - pos])
        return head + b"".join(tail)

    def compile_encoder(self, present: tuple = ()):
        """A function of this table's scalar fields and of the string / [string] fields `present`, by
        name and in schema order (every other string or vector absent), returning the frame encode()
        writes for those values: the same bytes without an object to build nor the field walk (the
        hot messages of a command's life).  Scalars must be given (no None); strings as str."""
        kinds = {f[0]: f[1] for f in self.fields}
        for name in present:
            if kinds.get(name) not in ("s", "S"):
                raise ValueError(f"{self.name}.{name} is not a string or [string] field")
        names = [f[0] for f in self.fields if f[1] not in "sSVX" or f[0] in present]
        src = [f"def encode({', '.join(names)}):"]
        vt = list(self.offset)
        inline_of = {}  # field index -> expression of its inline value, for the references
        for i, (attr, kind, _default) in enumerate(self.fields):
            if kind in "sSVX" and attr not in present:
                vt[i] = 0
                inline_of[i] = "0"
        pos = str(self.end)  # frame position where the next string goes (an expression)
        if present:
            src.append("    out = [None]")
        # Strings and vectors in inline order, as encode() lays them out.
        for _k, i, kind, at in self.order_ref_info:
            attr = self.fields[i][0]
            if attr not in present:
                continue
            inline_of[i] = f"o_{attr}"
            src.append(f"    o_{attr} = {pos} - {at}")
            if kind == "s":
                src.append(f"    b_{attr} = {attr}.encode('utf-8') if {attr}.__class__ is str else bytes({attr})")
                src.append(f"    n_{attr} = len(b_{attr})")
                src.append(f"    out += (U32(n_{attr}), b_{attr}, ZEROS[:1 + (3 - n_{attr}) % 4])")
                src.append(f"    p_{attr} = {pos} + 5 + n_{attr} + (3 - n_{attr}) % 4")
            else:
                src.append(f"    p_{attr} = PUT_STRINGS(out, {pos}, {attr})")
            pos = f"p_{attr}"
        inline = [inline_of.get(i, self.fields[i][0]) for i in self.order]
        # Everything between the size prefix and the inline fields is fixed for this layout.
        vt_len = 4 + 2 * self.nslots
        mid = struct.pack("<I" + "HHHH" + "iIB3x" + "HH" + "H" * self.nslots + "x" * (self.table - _EVENT_VTABLE - vt_len)
                          + "i", _MSG_TABLE - 4, *self.const_prefix, *vt, self.table - _EVENT_VTABLE)
        assert 4 + len(mid) == self.table + 4
        inline_struct = struct.Struct(self.inline_struct.format + "x" * (self.end - self.table - self.inline))
        values = ", ".join(inline)
        if present:
            src.append(f"    total = {pos} + (8 - {pos} % 8) % 8")
            src.append(f"    out.append(ZEROS[:total - {pos}])")
            src.append(f"    out[0] = U32(total - 4) + MID + INLINE({values})")
            src.append("    return b''.join(out)")
        else:
            total = self.end + (8 - self.end % 8) % 8
            src.append(f"    return PREFIX + INLINE({values}) + TAIL")
        scope = {"INLINE": inline_struct.pack, "MID": mid, "U32": _U32.pack, "ZEROS": _ZEROS,
                 "PUT_STRINGS": _put_strings}
        if not present:
            scope["PREFIX"] = _U32.pack(total - 4) + mid
            scope["TAIL"] = _ZEROS[: total - self.end]
        exec("\n".join(src), scope)  # noqa: S102 - source built from the field list above
        return scope["encode"]

    # ------------------------------------------------------------------ decode
    def decode(self, buf, pos: int):
        """The object-API table at `pos` of `buf`, or None when it has a field this path does not
        decode (the caller then uses the generated code)."""
        vtable = pos - _I32.unpack_from(buf, pos)[0]
        vt_size = _U16.unpack_from(buf, vtable)[0]
        if vt_size == self.canon_vt[0] and self.direct:
            vt = self.vt_struct.unpack_from(buf, vtable)
            refs = self.known_vts.get(vt)
            if refs is None and all(a == b or (not a and k in self.ref_offsets)
                                    for k, (a, b) in enumerate(zip(vt, self.canon_vt))):
                refs = ([k for k, _kind, at in self.order_refs if not vt[at]],
                        [(k, kind, vt[at]) for k, kind, at in self.order_refs if vt[at]])
                if len(self.known_vts) < 64:
                    self.known_vts[vt] = refs
            if refs is not None:
                return self._decode_canonical(buf, pos, refs)
        obj = self.cls()
        unpack = struct.unpack_from
        for attr, voff, kind, default in self.decoders:
            o = _U16.unpack_from(buf, vtable + voff)[0] if voff < vt_size else 0
            if not o:
                value = default
            elif kind == "s":
                value = _get_bytes(buf, pos + o).decode("utf-8")
            elif kind == "S":
                value = _get_strings(buf, pos + o)
            elif kind == "V":
                value = _get_vector(buf, pos + o)
            elif kind == "X":
                return None
            else:
                value = unpack("<" + kind, buf, pos + o)[0]
            setattr(obj, attr, value)
        return obj

    def _decode_canonical(self, buf, pos: int, refs: tuple):
        values = list(self.inline_struct.unpack_from(buf, pos + 4))
        absent, present = refs
        for k in absent:
            values[k] = None
        for k, kind, o in present:
            if kind == "s":
                values[k] = _get_bytes(buf, pos + o).decode("utf-8")
            elif kind == "S":
                values[k] = _get_strings(buf, pos + o)
            elif kind == "V":
                values[k] = _get_vector(buf, pos + o)
            else:
                return None  # "X": the generated code decodes it
        obj = self.cls.__new__(self.cls)
        obj.__dict__.update(zip(self.order_attrs, values))
        return obj


def _put_string(out: list, pos: int, s) -> int:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)  # strict, as the generated CreateString
    n = len(b)
    pad = (4 - (n + 1) % 4) % 4
    out.append(_U32.pack(n))
    out.append(b)
    out.append(_ZEROS[: 1 + pad])
    return pos + 4 + n + 1 + pad


def _put_strings(out: list, pos: int, strings) -> int:
    """A [string] vector at `pos` (its offsets, then its strings), as encode() lays it out."""
    n = len(strings)
    spos = pos + 4 + 4 * n
    offs = []
    parts = []
    for k, s in enumerate(strings):
        offs.append(spos - (pos + 4 + 4 * k))
        spos = _put_string(parts, spos, s)
    out.append(struct.pack("<%dI" % (n + 1), n, *offs))
    out += parts
    return spos


def _get_bytes(buf, at: int) -> bytes:
    start = at + _U32.unpack_from(buf, at)[0]
    n = _U32.unpack_from(buf, start)[0]
    return bytes(buf[start + 4 : start + 4 + n])


def _get_strings(buf, at: int) -> list:
    vec = at + _U32.unpack_from(buf, at)[0]
    n = _U32.unpack_from(buf, vec)[0]
    return [_get_bytes(buf, vec + 4 + 4 * k) for k in range(n)]


def _get_vector(buf, at: int) -> bytes:
    start = at + _U32.unpack_from(buf, at)[0]
    n = _U32.unpack_from(buf, start)[0]
    data = bytes(buf[start + 4 : start + 4 + n])
    if len(data) != n:
        raise ValueError("vector overruns its frame")
    return data


TABLES = {name: _Table(name, fields) for name, fields in _SPECS.items()}
ENCODER_OF_CLASS = {t.cls: t for t in TABLES.values()}
# The events of a plain command's life, as the daemon sends them (no host, no message).
encode_launched = TABLES["ProcessLaunched"].compile_encoder()
encode_execve_ok = TABLES["ExecveTerminated"].compile_encoder(("commandName",))
encode_terminated = TABLES["ProcessTerminated"].compile_encoder()
# A plain RunCommand (what Client.start sends without env, cwd, output files, host nor run-as).
encode_run_plain = TABLES["RunCommand"].compile_encoder(("path", "args"))
DECODER_OF_TAG = {t.tag: t for t in TABLES.values()}
EVENT_TABLES = {t.tag: t for t in TABLES.values() if t.name not in bounds.REQUEST_TABLES}


# The first 16 bytes of every frame body encode() writes: root offset, the Message vtable, the
# Message table's offset back to it.
_OWN_MESSAGE_HEAD = struct.pack("<IHHHHi", _MSG_TABLE - 4, 8, 9, 8, 4, _MSG_TABLE - _MSG_VTABLE)


def decode_own(payload):
    """(table, object) of an event whose frame body has a layout encode() writes and decode_own()
    has seen before (one slice and one dict lookup to recognise it), else None.  Not for requests:
    they are walked first (bounds.py)."""
    if payload[:16] != _OWN_MESSAGE_HEAD or len(payload) < 24:
        return None
    table = EVENT_TABLES.get(payload[20])
    if table is None:
        return None
    pos = table.table - 4
    head = payload[: pos + 4]
    refs = table.by_head.get(head)
    if refs is not None:
        return table, table._decode_canonical(payload, pos, refs)
    # Not seen yet: is it laid out as encode() does (event table right after its vtable)?
    if 16 + _U32.unpack_from(payload, 16)[0] != pos or len(payload) < pos + 4:
        return None
    vtable = pos - _I32.unpack_from(payload, pos)[0]
    if vtable != _EVENT_VTABLE - 4:
        return None
    obj = table.decode(payload, pos)  # records the vtable among known_vts when it is canonical
    if obj is None:
        return None
    refs = table.known_vts.get(table.vt_struct.unpack_from(payload, vtable))
    if refs is not None and len(table.by_head) < 64:
        table.by_head[bytes(head)] = refs
    return table, obj


def decode_message(payload):
    """(tag, table position) of a frame body; tag 0 when the message carries no event."""
    if payload[:16] == _OWN_MESSAGE_HEAD and len(payload) >= 24:
        # Laid out by encode(): the Message table at 12 holds the event's offset at 16, its tag at 20.
        return payload[20], 16 + _U32.unpack_from(payload, 16)[0]
    root = _U32.unpack_from(payload, 0)[0]
    vtable = root - _I32.unpack_from(payload, root)[0]
    vt_size = _U16.unpack_from(payload, vtable)[0]
    o = _U16.unpack_from(payload, vtable + 4)[0] if vt_size > 4 else 0
    tag = _U8.unpack_from(payload, root + o)[0] if o else 0
    o = _U16.unpack_from(payload, vtable + 6)[0] if vt_size > 6 else 0
    if not o:
        return tag, None
    at = root + o
    return tag, at + _U32.unpack_from(payload, at)[0]
