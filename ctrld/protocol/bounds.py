"""An expansion budget for incoming requests, checked by walking the frame before decoding it.

FlatBuffers lets any number of offsets point at the same string, vector or table: a legal 1 MiB
frame whose `args` vector holds 1024 offsets to one 1 MiB string decodes into 1 GiB of Python
strings.  Python FlatBuffers has no verifier, and the object API materialises everything it
reaches, so the daemon walks the request's structure first, without building anything, and adds
up what decoding would produce: the bytes of every string and vector, and the number of vector
entries and tables.  A frame whose total exceeds a budget proportional to its own size (a frame
written by any builder, even one that shares strings, stays far below it), or more objects than
ENTRIES_MAX whatever its size, is refused before a single object is made.  The walk also checks that every offset stays inside the frame.

The walk follows ctrld.fbs for the messages a daemon accepts (the requests); tests check these
field lists against the generated code.
"""

from __future__ import annotations

import struct

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")

# How much decoding may produce, relative to the frame's size.  Sharing an offset two or three
# times is legal and harmless; a thousand times is an attack.
BYTES_FACTOR = 2
BYTES_SLACK = 4096
ENTRIES_SLACK = 64
# ...and never more than this many objects in all, whatever the frame's size.  A budget relative to
# the frame alone is not enough: each decoded object costs Python 50-300 bytes against the 4 bytes
# of a shared offset, so a 16 MiB frame (the default --max-frame) holding 4 M offsets to one 2-byte
# string decoded into 4 M bytes objects, then as many str (the daemon peaked at 912 MiB), and one
# holding 2.4 M offsets to one watch table kept the daemon busy 45 s and peaked at 578 MiB.  2**19
# objects is ~256 K argv strings: more than execve takes with the default 8 MiB stack limit
# (ARG_MAX 2 MiB, at least 9 bytes per string with its pointer), so no runnable command is refused.
ENTRIES_MAX = 1 << 19
# A table decodes into an object with its __dict__ (object API): it counts as this many entries.
# Honest frames stay within the budget (a watch, SurveillanceEvent + Inotify + path, is ~10 entries
# for ~48 bytes of frame); a vector of offsets to one shared table no longer gets 4 bytes a table.
TABLE_WEIGHT = 4

# Per table: (slot, kind, detail) for every field that is not an inline scalar.
#   "s" string; "S" [string]; "V" vector of scalars (detail: element size); "T" [table] (detail:
#   table name); "U" union value (detail: {tag: table name}; its type byte is the slot before).
_SCHEMA: dict[str, list] = {
    "RunCommand": [
        (0, "s", None), (1, "S", None), (2, "S", None), (5, "T", "SurveillanceEvent"), (7, "s", None),
        (12, "s", None), (13, "s", None), (16, "s", None), (20, "V", 4),
    ],
    "SurveillanceEvent": [(1, "U", {1: "Inotify", 2: "TCPSocket"})],
    "Inotify": [(0, "s", None)],
    "TCPSocket": [(2, "s", None)],
    "KillProcess": [],
    "EstablishTCPConnection": [],
    "EstablishUnixConnection": [(0, "s", None)],
    "Hello": [(1, "s", None), (2, "s", None)],
    "RemoveWatch": [],
    "Subscribe": [],
    "StatusRequest": [],
    "StdinData": [(1, "V", 1)],
    "CloseStdin": [],
    "WaitProcess": [],
}
REQUEST_TABLES = frozenset(_SCHEMA)
_SLOTS = {name: max((f[0] for f in fields), default=-1) + 1 for name, fields in _SCHEMA.items()}
_VT_STRUCTS = [struct.Struct("<%dH" % n) for n in range(max(_SLOTS.values()) + 1)]


class ExpansionError(ValueError):
    """The frame would decode into far more than its own size (shared offsets) or points outside itself."""


class _Walk:
    __slots__ = ("buf", "size", "bytes_left", "entries_left")

    def __init__(self, buf, budget_bytes: int, budget_entries: int):
        self.buf = buf
        self.size = len(buf)
        self.bytes_left = budget_bytes
        self.entries_left = budget_entries

    def _target(self, at: int) -> int:
        """Where the uoffset stored at `at` points, checked to lie inside the frame."""
        if at < 0 or at + 4 > self.size:
            raise ExpansionError("offset outside the frame")
        t = at + _U32.unpack_from(self.buf, at)[0]
        if t + 4 > self.size:
            raise ExpansionError("offset outside the frame")
        return t

    def _spend(self, nbytes: int, entries: int) -> None:
        self.bytes_left -= nbytes
        self.entries_left -= entries
        if self.bytes_left < 0 or self.entries_left < 0:
            raise ExpansionError("the frame would expand far beyond its size (shared offsets); refused")

    def _string(self, at: int) -> None:
        s = self._target(at)
        n = _U32.unpack_from(self.buf, s)[0]
        if s + 4 + n > self.size:
            raise ExpansionError("string overruns the frame")
        self._spend(n, 1)

    def table(self, name: str, pos: int) -> None:
        if pos < 0 or pos + 4 > self.size:
            raise ExpansionError("table outside the frame")
        self._spend(0, TABLE_WEIGHT)
        vtable = pos - _I32.unpack_from(self.buf, pos)[0]
        if vtable < 0 or vtable + 4 > self.size:
            raise ExpansionError("vtable outside the frame")
        vt_size = _U16.unpack_from(self.buf, vtable)[0]
        if vtable + vt_size > self.size:
            raise ExpansionError("vtable outside the frame")
        fields = _SCHEMA[name]
        if not fields:
            return
        # The field offsets of the slots this table's vtable holds (slot k at vtable + 4 + 2k,
        # present when it fits in vt_size), read in one unpack, as far as the last walked slot.
        nslots = min(max(vt_size - 4, 0) // 2, _SLOTS[name])
        offsets = _VT_STRUCTS[nslots].unpack_from(self.buf, vtable + 4)
        for slot, kind, detail in fields:
            if slot >= nslots:
                continue
            o = offsets[slot]
            if not o:
                continue
            at = pos + o
            if kind == "s":
                self._string(at)
            elif kind == "U":
                to = offsets[slot - 1]  # the union's type field: the slot before
                tag = self.buf[pos + to] if to and pos + to < self.size else 0
                sub = detail.get(tag)
                if sub is not None:
                    self.table(sub, self._target(at))
            else:
                vec = self._target(at)
                n = _U32.unpack_from(self.buf, vec)[0]
                width = detail if kind == "V" else 4
                if vec + 4 + n * width > self.size:
                    raise ExpansionError("vector overruns the frame")
                # A byte vector becomes one bytes object; other vectors one object per entry.
                self._spend(n * width if kind == "V" else 0, 1 if width == 1 else n)
                if kind == "S":
                    for k in range(n):
                        self._string(vec + 4 + 4 * k)
                elif kind == "T":
                    for k in range(n):
                        self.table(detail, self._target(vec + 4 + 4 * k))


def check(name: str, payload, pos: int) -> None:
    """Raise ExpansionError unless decoding request `name` at `pos` of `payload` stays within the
    frame's budget.  Messages that are not requests are not walked (the daemon refuses them anyway)."""
    if name not in _SCHEMA:
        return
    n = len(payload)
    entries = min(BYTES_FACTOR * n // 4 + ENTRIES_SLACK, ENTRIES_MAX)
    _Walk(payload, BYTES_FACTOR * n + BYTES_SLACK, entries).table(name, pos)


def field_lists() -> dict[str, list]:
    """The walked schema (for the test that compares it with the generated code)."""
    return _SCHEMA
