"""The C fast path of every syscall stop (stops.c): `wait_stop` (waitpid + GETREGS) and `answer`
(SETREGS + CONT), one call each instead of two or three ctypes calls and their Python.

Built once per source and interpreter by gcc against this interpreter's headers (Debian:
libpython3.11-dev) and cached like the launcher (`cbuild`). Measured: −10 % CPU on a full-mediation
ping-pong, whose every stop is answered in place (docs/emulator.md).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sysconfig
from pathlib import Path

from .cbuild import built

_SOURCE = Path(__file__).with_name("stops.c")


def _load():
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]   # e.g. .cpython-311-x86_64-linux-gnu.so
    path = built(_SOURCE, "stops", suffix,
                 ["-O2", "-Wall", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}"],
                 "libpython3.11-dev (Python.h)")
    # The module's init function is PyInit__stops: load it under that name from the cache.
    spec = importlib.util.spec_from_file_location("_stops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_stops = _load()
wait_stop = _stops.wait_stop
answer = _stops.answer
