"""Reference dates computed by SimGrid itself, in a fresh subprocess.

Only one SimGrid Engine may exist per process, so a test (or a process that already runs a
simulation) cannot build a second one to learn what SimGrid predicts; these functions start
``python -m simterpose.sim.predict``, hand it a JSON request on stdin and read JSON dates back.
Each call costs a subprocess (≈ 0.1 s).

    predict_transfers("two_hosts.xml", "CM02", [("h1", "h2", 10**6, 0.0)])   # -> [0.115]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class PredictionError(RuntimeError):
    pass


def _run(request: dict[str, Any], timeout: float = 60.0) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "simterpose.sim.predict"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise PredictionError(f"prediction subprocess failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise PredictionError(f"prediction subprocess printed no result: {proc.stdout!r} {proc.stderr!r}")
    return json.loads(lines[-1])["result"]


def predict_transfers(
    platform: str | os.PathLike,
    model: str,
    transfers: Sequence[tuple[str, str, int, float]],
    extra_config: dict[str, Any] | None = None,
) -> list[float]:
    """End dates of ``(src, dst, nbytes, start_time)`` transfers all running in one simulation."""
    return _run({"kind": "transfers", "platform": str(platform), "model": model,
                 "extra_config": extra_config or {}, "items": [list(t) for t in transfers]})


def predict_sequence(
    platform: str | os.PathLike,
    model: str,
    transfers: Sequence[tuple[str, str, int]],
    start_time: float = 0.0,
    extra_config: dict[str, Any] | None = None,
) -> list[float]:
    """End dates of ``(src, dst, nbytes)`` transfers done one after the other (ping-pong style):
    the first starts at ``start_time``, each next one when the previous ends."""
    return _run({"kind": "sequence", "platform": str(platform), "model": model, "start_time": start_time,
                 "extra_config": extra_config or {}, "items": [list(t) for t in transfers]})


def predict_executions(
    platform: str | os.PathLike,
    executions: Sequence[tuple[str, float, float]],
    extra_config: dict[str, Any] | None = None,
) -> list[float]:
    """End dates of ``(host, flops, start_time)`` computations all running in one simulation."""
    return _run({"kind": "executions", "platform": str(platform), "model": "LV08",
                 "extra_config": extra_config or {}, "items": [list(e) for e in executions]})


def predict_routes(platform: str | os.PathLike, hosts: Sequence[str]) -> dict[tuple[str, str], list | None]:
    """The route SimGrid builds between every ordered pair of distinct ``hosts``: a list of links
    ``[name, bandwidth B/s, latency s, sharing policy or "?"]``, or None when the platform has no route.
    Works on every platform SimGrid loads, implicit routes (clusters, cabinets) included."""
    answer = _run({"kind": "routes", "platform": str(platform), "model": "CM02", "hosts": list(hosts)})
    return {(a, b): links for a, b, links in answer}


def _serve(request: dict[str, Any]) -> list:
    from . import engine as S

    sim = S.Simulation(request["platform"], request["model"], request.get("extra_config") or {})
    if request["kind"] == "routes":
        pairs = []
        for a in request["hosts"]:
            for b in request["hosts"]:
                if a != b:
                    r = sim.route(a, b)
                    pairs.append([a, b, None if r is None else
                                  [[lk.name, lk.bandwidth, lk.latency, lk.sharing_policy] for lk in r.links]])
        return pairs
    items = request["items"]
    ends: list[float] = [float("nan")] * len(items)
    kind = request["kind"]

    if kind == "transfers":
        def one(i, src, dst, nbytes, start):
            S.sleep_until(float(start))
            S.transfer(src, dst, int(nbytes))
            ends[i] = S.now()

        for i, (src, dst, nbytes, start) in enumerate(items):
            sim.spawn(f"transfer-{i}", src, one, i, src, dst, nbytes, start)
    elif kind == "sequence":
        def chain():
            S.sleep_until(float(request.get("start_time", 0.0)))
            for i, (src, dst, nbytes) in enumerate(items):
                S.transfer(src, dst, int(nbytes))
                ends[i] = S.now()

        sim.spawn("sequence", items[0][0] if items else sim.host_names[0], chain)
    elif kind == "executions":
        def compute(i, flops, start):
            S.sleep_until(float(start))
            S.execute(float(flops))
            ends[i] = S.now()

        for i, (host, flops, start) in enumerate(items):
            sim.spawn(f"exec-{i}", host, compute, i, flops, start)
    else:
        raise ValueError(f"unknown request kind {kind!r}")
    sim.run()
    return ends


def main() -> int:
    request = json.loads(sys.stdin.read())
    result = _serve(request)
    sys.stdout.write(json.dumps({"result": result}) + "\n")
    sys.stdout.flush()
    from .engine import exit_now, hard_exit_needed

    if hard_exit_needed():
        exit_now(0)  # SimGrid's ns-3 model crashes in static destructors at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
