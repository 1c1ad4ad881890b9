"""`simterpose compare`: run a scenario emulated (simterpose run) and for real (network namespaces).

Each repetition runs the scenario once per requested network model under ``simterpose run`` (a
subprocess each: one SimGrid Engine per process), then once for real: every simulated host is a
network namespace with the host's virtual IP, links are veths shaped with tc (rates) plus a
userspace delay line (latencies), host names resolve as in the emulation (see
:mod:`simterpose.realnet`). Per process it prints the exit statuses, whether stdout is the same, the
real and simulated durations (end - start) and the relative error (simulated - real) / real.
``--json FILE`` writes everything, ``--plot FILE.png`` draws both timelines side by side.

Exit status: 0 when every process of every run exited as the scenario expects, 1 otherwise, 2 on a
usage error, a platform the real run cannot reproduce, or without root.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALL_MODELS = ("LV08", "CM02")
ROOT = Path(__file__).resolve().parent.parent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="a YAML scenario (or use --platform and --deployment)")
    p.add_argument("--platform", help="SimGrid platform XML")
    p.add_argument("--deployment", help="SimGrid deployment XML")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run both sides N times; durations are averaged (default 1)")
    p.add_argument("--network-model", default=None,
                   help="network model of the emulated run (the scenario's, else run's default, CM02); a "
                        f"comma-separated list (e.g. CM02,ns-3), or 'all' for {','.join(ALL_MODELS)}, compares "
                        "each with the real run and says which is closest for each process")
    p.add_argument("--cpu-model", default="measured", help="passed to simterpose run (default measured)")
    p.add_argument("--tcp-slow-start", choices=("auto", "on", "off"), default=None,
                   help="passed to simterpose run (default: the scenario's tcp_slow_start, else auto: on "
                        "under CM02); ns-3 runs always get auto (ns-3 simulates TCP itself)")
    p.add_argument("--json", metavar="FILE", help="write all results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the timelines of both runs (PNG)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="keep each run's stdout/stderr files here (DIR/real-1, DIR/CM02-1, ...)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="kill the real run's processes after this many seconds (default 120)")


def _err(message: str) -> int:
    print(f"simterpose compare: {message}", file=sys.stderr)
    return 2


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(args) -> int:
    from .realnet.netns import RealNetError, RealNetwork, remove_stale
    from .realnet.topology import TopologyError, build_topology
    from .scenario import ScenarioError, load_deployment, load_scenario

    if args.repeat < 1:
        return _err("--repeat must be at least 1")
    try:
        if args.scenario:
            scenario = load_scenario(args.scenario, platform=args.platform)
            scenario_args = [args.scenario] + (["--platform", args.platform] if args.platform else [])
        elif args.platform and args.deployment:
            scenario = load_deployment(args.deployment, args.platform)
            scenario_args = ["--platform", args.platform, "--deployment", args.deployment]
        else:
            return _err("give a YAML scenario, or --platform P.xml --deployment D.xml")
    except ScenarioError as e:
        return _err(str(e))
    from .run_cmd import DEFAULT_NETWORK_MODEL

    requested = args.network_model or scenario.network_model or DEFAULT_NETWORK_MODEL
    models = list(ALL_MODELS) if requested.lower() == "all" else [m.strip() for m in requested.split(",") if m.strip()]
    if len(set(models)) != len(models) or not models:
        return _err(f"--network-model {requested}: give each model once")
    info = scenario.platform_info
    if os.geteuid() != 0:
        return _err("the real run needs root (network namespaces); run it as root")
    for tool in ("ip", "tc", "unshare", "bash", "hostname"):
        if shutil.which(tool) is None:
            return _err(f"the real run needs '{tool}' (iproute2, util-linux, bash, hostname)")
    from .sim import NETWORK_MODELS, network_models

    offered = network_models()
    for m in models:
        if m not in offered or m not in NETWORK_MODELS:
            usable = [x for x in offered if x in NETWORK_MODELS]
            return _err(f"unknown network model {m!r} (the linked SimGrid offers {', '.join(usable)})")
    from .sim.predict import PredictionError, predict_routes

    used = list(dict.fromkeys(p.host for p in scenario.processes))
    try:
        # SimGrid's own routes: implicit ones (clusters, cabinets) too, exactly as the emulation sees them.
        routes = predict_routes(info.path, used)
    except (PredictionError, OSError) as e:
        return _err(f"SimGrid could not compute the platform's routes: {e}")
    try:
        topology = build_topology(info, used, routes)
    except TopologyError as e:
        return _err(f"the real run cannot reproduce this platform: {e}")

    remove_stale()
    net = RealNetwork(topology, {h.name: h.ip for h in info.hosts})
    atexit.register(net.cleanup)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    # explicit: a shell starts background jobs with SIGINT ignored, and Python keeps it so
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="simterpose-compare-"))
    log_root = Path(args.log_dir) if args.log_dir else work
    runs: dict[str, list[dict]] = {m: [] for m in models}
    runs["real"] = []
    try:
        net.setup()
        for rep in range(1, args.repeat + 1):
            for model in models:
                runs[model].append(_emulated(scenario_args, model, args.cpu_model, log_root / f"{model}-{rep}",
                                                 args.tcp_slow_start))
            runs["real"].append(_real(net, scenario, args.timeout, log_root / f"real-{rep}"))
    except (RealNetError, EmulationFailed) as e:
        return _err(str(e))
    except (KeyboardInterrupt, _Terminated):
        print("simterpose compare: interrupted; namespaces removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        net.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(work, ignore_errors=True)

    summary = _summarise(scenario, models, runs)
    _print_report(summary, models, args.repeat)
    doc = {"scenario": str(scenario.path), "platform": str(scenario.platform), "repeat": args.repeat,
           "models": models, "cpu_model": args.cpu_model, "tcp_slow_start": args.tcp_slow_start, "topology": topology.describe(),
           "closest": overall_closest(summary, models), "processes": summary, "runs": _strip_outputs(runs)}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if args.plot:
        plot_timelines(summary, models, args.plot)
    ok = all(p["ok"] for p in summary)
    return 0 if ok else 1


# ------------------------------------------------------------------------------------------------
# The two sides
# ------------------------------------------------------------------------------------------------


class EmulationFailed(RuntimeError):
    pass


def _emulated(scenario_args: list[str], model: str, cpu_model: str, out_dir: Path,
              slow_start: str | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "result.json"
    cmd = [sys.executable, "-m", "simterpose.cli", "run", *scenario_args, "--network-model", model,
           "--cpu-model", cpu_model, "--json", str(js), "--log-dir", str(out_dir)]
    if model == "ns-3":
        cmd += ["--tcp-slow-start", "auto"]   # a scenario's `on` is for the flow models
    elif slow_start is not None:
        cmd += ["--tcp-slow-start", slow_start]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if not js.exists():
        raise EmulationFailed(f"simterpose run --network-model {model} failed ({p.returncode}): "
                              f"{p.stderr.strip()[-2000:]}")
    doc = json.loads(js.read_text())
    for i, proc in enumerate(doc["processes"]):
        found = sorted(out_dir.glob(f"{i}-*.stdout"))
        proc["stdout"] = found[0].read_bytes() if found else b""
    doc["wall"] = wall
    return doc


def _real(net, scenario, timeout: float, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    procs = net.run(scenario.processes, timeout, log_dir=out_dir)
    return {"wall": time.monotonic() - t0,
            "processes": [{"host": p.host, "argv": p.argv, "exit_status": p.exit_status, "start": p.start,
                           "end": p.end, "error": p.error, "stdout": p.stdout} for p in procs]}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def _duration(p: dict) -> float | None:
    if p.get("start") is None or p.get("end") is None:
        return None
    return p["end"] - p["start"]


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _side(runs: list[dict], i: int) -> dict:
    procs = [r["processes"][i] for r in runs]
    durations = [_duration(p) for p in procs]
    return {"exit_status": [p["exit_status"] for p in procs], "durations": durations,
            "duration": _mean(durations), "start": _mean([p["start"] for p in procs]),
            "end": _mean([p["end"] for p in procs]),
            "errors": [p["error"] for p in procs if p.get("error")]}


def _summarise(scenario, models: list[str], runs: dict[str, list[dict]]) -> list[dict]:
    out = []
    for i, spec in enumerate(scenario.processes):
        real = _side(runs["real"], i)
        expected = spec.expected_exit

        def fine(statuses, errors, expected=expected):
            return not errors and all(s is not None and (expected is None or s == expected) for s in statuses)

        ok = fine(real["exit_status"], real["errors"])
        emulated = {}
        for m in models:
            side = _side(runs[m], i)
            side["output_equal"] = all(e["processes"][i]["stdout"] == r["processes"][i]["stdout"]
                                       for e, r in zip(runs[m], runs["real"]))
            side["relative_error"] = ((side["duration"] - real["duration"]) / real["duration"]
                                      if side["duration"] is not None and real["duration"] else None)
            ok = ok and fine(side["exit_status"], side["errors"])
            emulated[m] = side
        out.append({"index": i, "host": spec.host, "argv": list(spec.argv), "expected_exit": expected,
                    "real": real, "emulated": emulated, "closest": _closest(emulated), "ok": ok})
    return out


def _closest(emulated: dict) -> dict | None:
    """The model whose duration is nearest the real one: {"model", "relative_error"} (first listed
    wins a tie), or None when no model has an error to compare."""
    known = [(abs(side["relative_error"]), m) for m, side in emulated.items() if side["relative_error"] is not None]
    if not known:
        return None
    _, model = min(known, key=lambda item: item[0])
    return {"model": model, "relative_error": emulated[model]["relative_error"]}


def overall_closest(summary: list[dict], models: list[str]) -> dict | None:
    """Across processes: the model with the smallest mean |error|, with its mean and worst |error|."""
    best = None
    for m in models:
        errors = [abs(p["emulated"][m]["relative_error"]) for p in summary
                  if p["emulated"][m]["relative_error"] is not None]
        if len(errors) != len(summary) or not errors:
            continue
        entry = {"model": m, "mean_abs_error": statistics.fmean(errors), "max_abs_error": max(errors)}
        if best is None or entry["mean_abs_error"] < best["mean_abs_error"]:
            best = entry
    return best


def _strip_outputs(runs: dict[str, list[dict]]) -> dict:
    clean = {}
    for kind, reps in runs.items():
        clean[kind] = [dict(r, processes=[{k: v for k, v in p.items() if k != "stdout"} for p in r["processes"]])
                       for r in reps]
    return clean


def _fmt(v, spec=".3f", none="?") -> str:
    return none if v is None else format(v, spec)


def _print_report(summary: list[dict], models: list[str], repeat: int) -> None:
    head = f"{'#':>2} {'host':<8} {'exit real/' + '/'.join(models):<22} {'output':<8} {'real (s)':>9}"
    for m in models:
        head += f" {m + ' (s)':>10} {'error':>8}"
    print(head + f"  {'closest':<14}  command")
    for p in summary:
        statuses = [p["real"]["exit_status"]] + [p["emulated"][m]["exit_status"] for m in models]
        exits = "/".join(",".join("-" if s is None else str(s) for s in side) for side in statuses)
        output = "equal" if all(p["emulated"][m]["output_equal"] for m in models) else "DIFFERENT"
        line = f"{p['index']:>2} {p['host']:<8} {exits:<22} {output:<8} {_fmt(p['real']['duration']):>9}"
        for m in models:
            e = p["emulated"][m]
            err = None if e["relative_error"] is None else 100 * e["relative_error"]
            line += f" {_fmt(e['duration']):>10} {_fmt(err, '+.1f') + '%':>8}"
        c = p["closest"]
        closest = "?" if c is None else f"{c['model']} {100 * c['relative_error']:+.1f}%"
        print(line + f"  {closest:<14}  " + shlex.join(p["argv"]))
        for err in p["real"]["errors"]:
            print(f"{'':>11} real: {err}")
        for m in models:
            for err in p["emulated"][m]["errors"]:
                print(f"{'':>11} {m}: {err}")
    note = f" (mean of {repeat} runs)" if repeat > 1 else ""
    print(f"durations are end - start of each process{note}; error = (simulated - real) / real")
    best = overall_closest(summary, models)
    if best is not None and len(models) > 1:
        print(f"closest model: {best['model']} (mean |error| {100 * best['mean_abs_error']:.1f} %, "
              f"worst {100 * best['max_abs_error']:.1f} %)")


def plot_timelines(summary: list[dict], models: list[str], path: str) -> None:
    """One row per process; in each row one bar per run kind (real, then each model), start -> end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["real"] + models
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    height = 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * len(summary) * max(1, len(kinds) / 2)))
    labels = []
    for row, p in enumerate(summary):
        labels.append(f"{p['host']}: {Path(p['argv'][0]).name}")
        for k, kind in enumerate(kinds):
            side = p["real"] if kind == "real" else p["emulated"][kind]
            if side["start"] is None or side["end"] is None:
                continue
            y = row - 0.4 + k * height
            ax.broken_barh([(side["start"], side["end"] - side["start"])], (y, height * 0.9),
                           color=colors[k % len(colors)], label=(kind if kind == "real" else f"emulated {kind}")
                           if row == 0 else None)
    ax.set_yticks(range(len(summary)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("time since the start of the run (s): real seconds / simulated seconds")
    ax.set_title("simterpose compare: real run vs emulated run(s)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(kinds), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
