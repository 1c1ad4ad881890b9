"""Helpers of the virtual-time and CLI tests: each `simterpose run` is its own process (the SimGrid
Engine is a singleton per process), on a scenario written into the test's tmp_path."""

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
SIMTERPOSE = ROOT / ".venv" / "bin" / "simterpose"
PLATFORMS = ROOT / "examples" / "platforms"
TWO_HOSTS = PLATFORMS / "two_hosts.xml"                 # h1, h2: 1Gf each
FOUR_HOSTS = PLATFORMS / "four_hosts_backbone.xml"      # h1, h2: 1Gf; h3: 2Gf; h4: 500Mf
EPOCH = 1_700_000_000  # CLOCK_REALTIME at simulated date 0 unless --epoch says otherwise


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    wall: float                 # of the whole `simterpose run` command
    doc: Optional[dict]         # the --json document, if written
    logs: Path                  # the --log-dir

    @property
    def procs(self) -> list:
        return self.doc["processes"]

    def out(self, index: int) -> str:
        """stdout of the scenario's process number `index`."""
        (f,) = self.logs.glob(f"{index}-*.stdout")
        return f.read_text()

    def virtual(self) -> dict:
        """The JSON without its wall-clock durations: what must not change from run to run."""
        return {"simulated_time": self.doc["simulated_time"],
                "processes": [{k: v for k, v in p.items() if k != "wall"} for p in self.procs]}


def simterpose_run(args: list, cwd: Path, timeout: float = 30) -> Run:
    """`simterpose run ARGS --json cwd/result.json --log-dir cwd/logs`, run in cwd."""
    cwd = Path(cwd)
    js, logs = cwd / "result.json", cwd / "logs"
    for f in logs.glob("*") if logs.is_dir() else ():
        f.unlink()
    js.unlink(missing_ok=True)
    t0 = time.monotonic()
    p = subprocess.run([str(SIMTERPOSE), "run", *map(str, args), "--json", str(js), "--log-dir", str(logs)],
                       cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    doc = json.loads(js.read_text()) if js.exists() else None
    return Run(p.returncode, p.stdout, p.stderr, wall, doc, logs)


def write_scenario(directory: Path, processes: list, platform: Path = TWO_HOSTS, name="scenario.yaml",
                   model: str | None = "LV08") -> Path:
    """A YAML scenario; `model` LV08 (SimGrid's default) by default: the model these tests' expected
    dates were written for (`simterpose run` itself defaults to CM02 since issue 16); None: no
    network_model key (the runner's default)."""
    path = Path(directory) / name
    doc: dict = {"platform": str(platform), "processes": processes}
    if model is not None:
        doc["network_model"] = model
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def runner(directory: Path, toys: Path):
    """run(processes, *options, platform=TWO_HOSTS, timeout=30) -> Run: a YAML scenario of `processes`
    (dicts as in a scenario file; "{toys}" in a path is the toys directory) under `simterpose run`."""

    def run(processes: list, *options, platform: Path = TWO_HOSTS, timeout: float = 30) -> Run:
        procs = [dict(p, path=p["path"].format(toys=toys)) if "path" in p else p for p in processes]
        return simterpose_run([write_scenario(directory, procs, platform), *options], directory, timeout=timeout)

    return run


def c_builder(directory: Path):
    """build(name, source) -> path of the binary compiled (once) from the C source text."""
    built = {}

    def build(name: str, source: str) -> str:
        if name not in built:
            (directory / f"{name}.c").write_text(source)
            subprocess.run(["gcc", "-O1", "-Wall", "-o", str(directory / name), str(directory / f"{name}.c")],
                           check=True)
            built[name] = str(directory / name)
        return built[name]

    return build
