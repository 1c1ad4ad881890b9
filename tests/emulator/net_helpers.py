"""Helpers of the network tests: scenarios run by `simterpose run` in a subprocess (one SimGrid
Engine per process), the same programs run natively, and SimGrid's own predictions.

`emulate(tmp_path, processes, ...)` writes a YAML scenario into a fresh directory under tmp_path,
runs `simterpose run SCENARIO --mediate MODE --cpu-model none --json ... --log-dir ...` and returns
a `NetRun`: the JSON results and each process's stdout/stderr/syscall log (by scenario index).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
PLATFORMS = ROOT / "examples" / "platforms"
TWO_HOSTS = PLATFORMS / "two_hosts.xml"            # h1 10.0.0.1, h2 10.0.0.2: one 10MBps/10ms link
FOUR_HOSTS = PLATFORMS / "four_hosts_backbone.xml"  # h1..h4: 100MBps/1ms private links, 10MBps backbone
TOYS = ROOT / "build" / "toys"
SIMTERPOSE = ROOT / ".venv" / "bin" / "simterpose"
PYTHON = sys.executable
EPS = 1e-6  # simulated dates: exact up to the clock's nanoseconds and float sums


@dataclass
class NetRun:
    rc: int
    output: str       # the runner's stdout + stderr
    doc: dict         # the --json document ({} if none was written)
    logs: Path        # the --log-dir

    @property
    def procs(self) -> list[dict]:
        return self.doc["processes"]

    def _file(self, i: int, ext: str) -> str:
        found = sorted(self.logs.glob(f"{i}-*.{ext}"))
        assert len(found) == 1, (i, ext, found)
        return found[0].read_text(errors="replace")

    def stdout(self, i: int) -> str:
        return self._file(i, "stdout")

    def stderr(self, i: int) -> str:
        return self._file(i, "stderr")

    def syscalls(self, i: int) -> str:
        return self._file(i, "syscalls")

    def end(self, i: int) -> float:
        return self.procs[i]["end"]

    def virtual(self) -> dict:
        """The JSON results without wall-clock times: what two runs must agree on."""
        return dict(self.doc, processes=[{k: v for k, v in p.items() if k != "wall"} for p in self.procs])

    def check_ok(self) -> "NetRun":
        """Every process exited as expected, without an emulator error."""
        detail = self.output
        if self.doc:
            detail += "".join(f"\n--- process {i}: {p}\nstdout: {self.stdout(i)!r}\nstderr: {self.stderr(i)!r}"
                              for i, p in enumerate(self.procs))
        assert self.rc == 0, f"simterpose run exited {self.rc}:\n{detail}"
        assert all(p["error"] is None for p in self.procs), detail
        return self


def emulate(tmp_path: Path, processes: list[dict], mode: str, platform: Path = TWO_HOSTS,
            model: str | None = None, cpu_model: str = "none", extra: tuple = (),
            timeout: float = 120.0, keys: dict | None = None) -> NetRun:
    i = 0
    while (tmp_path / f"run{i}").exists():
        i += 1
    base = tmp_path / f"run{i}"
    base.mkdir(parents=True)
    scenario = base / "scenario.yaml"
    # Without a model: LV08, SimGrid's default, which these tests' expected dates were written for
    # (`simterpose run` defaults to CM02 since issue 16: test_run_options checks that default).
    doc: dict = {"platform": str(platform), "processes": processes, "network_model": model or "LV08", **(keys or {})}
    scenario.write_text(yaml.safe_dump(doc, sort_keys=False))
    out_json, logs = base / "result.json", base / "logs"
    cmd = [str(SIMTERPOSE), "run", str(scenario), "--mediate", mode, "--cpu-model", cpu_model,
           "--json", str(out_json), "--log-dir", str(logs), *map(str, extra)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=base)
    result = json.loads(out_json.read_text()) if out_json.exists() else {}
    return NetRun(proc.returncode, proc.stdout + proc.stderr, result, logs)


def toy(name: str, host: str, *args, **extra) -> dict:
    """A scenario process running build/toys/NAME ARGS."""
    return {"host": host, "path": str(TOYS / name), "args": [str(a) for a in args], **extra}


def py(host: str, code: str, *args, **extra) -> dict:
    """A scenario process running `python -c CODE ARGS` (this interpreter, unmodified)."""
    return {"host": host, "path": PYTHON, "args": ["-c", code, *map(str, args)], **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def native(*commands, timeout: float = 120.0) -> list[str]:
    """Run commands concurrently on this machine, in the order given; their stdouts."""
    procs = [subprocess.Popen([str(a) for a in c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, (p.args, out, err)
        outs.append(out)
    return outs


def syn_synack(client: str, server: str) -> list[tuple[str, str, int]]:
    """The transfers of a TCP connection set-up, as the emulator charges them."""
    return [(client, server, 0), (server, client, 0)]
