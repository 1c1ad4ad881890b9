"""Build (once) and locate the C launcher that starts every traced tree (see launcher.c for why),
cached by source hash (`cbuild`)."""

from pathlib import Path

from .cbuild import built

_SOURCE = Path(__file__).with_name("launcher.c")
_cached: str | None = None


def path() -> str:
    global _cached
    if _cached is None:
        _cached = str(built(_SOURCE, "launcher", "", ["-O2", "-Wall", "-lseccomp"], "libseccomp-dev"))
    return _cached
