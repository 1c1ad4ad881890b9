"""Shared fixtures: where the toy binaries are, and the project's virtualenv python."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOYS = ROOT / "build" / "toys"


@pytest.fixture(scope="session")
def toys() -> Path:
    """Directory of the toy binaries built by `make toys` (built here if missing)."""
    if not TOYS.is_dir() or not any(TOYS.iterdir()):
        subprocess.run(["make", "-C", str(ROOT), "toys"], check=True)
    return TOYS


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture()
def env_with_project() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
