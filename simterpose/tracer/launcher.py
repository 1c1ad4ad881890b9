"""Build (once) and locate the C launcher that starts every traced tree (see launcher.c for why).

The binary is cached per source hash under $SIMTERPOSE_CACHE (default ~/.cache/simterpose), so an
edited launcher.c is rebuilt automatically and several checkouts never share a stale binary.
"""

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

_SOURCE = Path(__file__).with_name("launcher.c")
_cached: str | None = None


def path() -> str:
    global _cached
    if _cached is not None:
        return _cached
    src = _SOURCE.read_bytes()
    digest = hashlib.sha1(src).hexdigest()[:12]
    cache = Path(os.environ.get("SIMTERPOSE_CACHE", Path.home() / ".cache" / "simterpose"))
    binary = cache / f"launcher-{digest}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        # Build into a temporary name then rename: concurrent first runs never see a partial file.
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".launcher-")
        os.close(fd)
        try:
            subprocess.run(["gcc", "-O2", "-Wall", "-o", tmp, str(_SOURCE), "-lseccomp"],
                           check=True, capture_output=True, text=True)
        except FileNotFoundError:
            os.unlink(tmp)
            raise RuntimeError("building the simterpose launcher needs gcc (apt-get install gcc)") from None
        except subprocess.CalledProcessError as e:
            os.unlink(tmp)
            raise RuntimeError(f"building the simterpose launcher failed (libseccomp-dev installed?):\n"
                               f"{e.stderr}") from None
        os.replace(tmp, binary)
    _cached = str(binary)
    return _cached
