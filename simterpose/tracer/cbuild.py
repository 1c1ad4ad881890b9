"""Build (once) the C parts of the tracer and cache them by source hash.

Each artifact is cached under $SIMTERPOSE_CACHE (default ~/.cache/simterpose) with the hash of its
source and build command in its name, so an edited source is rebuilt automatically and several
checkouts never share a stale file. Builds go to a temporary name then are renamed: concurrent first
runs never see a partial file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("SIMTERPOSE_CACHE", Path.home() / ".cache" / "simterpose"))


def built(source: Path, name: str, suffix: str, gcc_args: list[str], needs: str) -> Path:
    """The file `gcc SOURCE GCC_ARGS -o OUT` makes (libraries in gcc_args come after the source),
    cached as `name-<hash><suffix>`. Raises RuntimeError naming `needs` (what to install) when gcc
    is missing or the build fails."""
    digest = hashlib.sha1(source.read_bytes() + "\0".join(gcc_args).encode()).hexdigest()[:12]
    cache = cache_dir()
    target = cache / f"{name}-{digest}{suffix}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{name}-")
    os.close(fd)
    try:
        subprocess.run(["gcc", str(source), *gcc_args, "-o", tmp], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        os.unlink(tmp)
        raise RuntimeError(f"building simterpose's {name} needs gcc (apt-get install gcc)") from None
    except subprocess.CalledProcessError as e:
        os.unlink(tmp)
        raise RuntimeError(f"building simterpose's {name} failed ({needs} installed?):\n{e.stderr}") from None
    os.replace(tmp, target)
    return target
