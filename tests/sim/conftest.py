"""Helpers for SimGrid tests: one Engine per process, so every scenario runs in a fresh subprocess."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PLATFORMS = ROOT / "examples" / "platforms"
TWO_HOSTS = PLATFORMS / "two_hosts.xml"
FOUR_HOSTS = PLATFORMS / "four_hosts_backbone.xml"

_PRELUDE = """
import json, sys
import simterpose.sim as S
def emit(obj):
    sys.stdout.write("RESULT " + json.dumps(obj) + "\\n")
"""


def run_sim(code: str, timeout: float = 30.0, expect_rc: int = 0) -> dict:
    """Run ``code`` (which calls ``emit(obj)`` once) in a fresh interpreter; return ``obj``.

    The code sees ``S`` (simterpose.sim), ``TWO_HOSTS`` and ``FOUR_HOSTS`` (platform paths as str).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    script = _PRELUDE + f"TWO_HOSTS = {str(TWO_HOSTS)!r}\nFOUR_HOSTS = {str(FOUR_HOSTS)!r}\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == expect_rc, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    results = [line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, f"expected one RESULT line:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = json.loads(results[0])
    out["_stderr"] = proc.stderr
    return out


@pytest.fixture()
def simrun():
    return run_sim


@pytest.fixture()
def two_hosts() -> Path:
    return TWO_HOSTS


@pytest.fixture()
def four_hosts() -> Path:
    return FOUR_HOSTS
