"""`simterpose run`: run a scenario's processes on a simulated platform and report what happened."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="a YAML scenario (or use --platform and --deployment)")
    p.add_argument("--platform", help="SimGrid platform XML")
    p.add_argument("--deployment", help="SimGrid deployment XML (<actor> or <process> elements)")
    p.add_argument("--mediate", choices=("address-translation", "full-mediation"),
                   default="address-translation",
                   help="address-translation (default): the kernel carries the bytes over loopback, "
                        "addresses are translated; full-mediation: the emulator carries them")
    p.add_argument("--network-model", default=None,
                   help="SimGrid network model: LV08 (default), CM02, SMPI, IB, Constant")
    p.add_argument("--cpu-model", default="measured",
                   help="measured (default): charge real CPU bursts; none: charge nothing (deterministic); "
                        "per-syscall=SECONDS: a fixed cost per intercepted syscall (deterministic)")
    p.add_argument("--reference-speed", default="1Gf",
                   help="flop/s that one second of real CPU is worth (default 1Gf: a 1Gf host replays "
                        "CPU bursts at their real duration)")
    p.add_argument("--epoch", type=int, default=None,
                   help="CLOCK_REALTIME at simulated date 0, in Unix seconds (fixed default: reproducible)")
    p.add_argument("--stop-time", type=float, default=None, help="kill everything at this simulated date")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--log-dir", metavar="DIR",
                   help="keep each process's stdout, stderr and log of intercepted syscalls here")
    p.add_argument("--pcap-dir", metavar="DIR",
                   help="write one pcap per host: payloads on the virtual network, simulated dates")
    p.add_argument("--vdso", choices=("disable", "keep"), default="disable",
                   help="keep: leave the vDSO alone (clock reads then escape virtual time)")
    p.add_argument("--cpu", type=int, default=None, help="pin tracers and tracees to this CPU")


def main(args) -> int:
    from .scenario import ScenarioError, load_deployment, load_scenario, parse_speed
    from .time.clock import DEFAULT_EPOCH

    try:
        if args.scenario:
            scenario = load_scenario(args.scenario, platform=args.platform)
        elif args.platform and args.deployment:
            scenario = load_deployment(args.deployment, args.platform)
        else:
            print("simterpose run: give a YAML scenario, or --platform P.xml --deployment D.xml", file=sys.stderr)
            return 2
        ref_speed = parse_speed(args.reference_speed)
    except ScenarioError as e:
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2
    from .emulator import Emulation, RunConfig

    log_dir = Path(args.log_dir) if args.log_dir else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    try:
        config = RunConfig(network_model=args.network_model or scenario.network_model or "LV08",
                           cpu_model=args.cpu_model, reference_speed=ref_speed,
                           epoch=DEFAULT_EPOCH if args.epoch is None else args.epoch,
                           vdso=args.vdso, stop_time=args.stop_time, log_dir=log_dir, cpu=args.cpu,
                           mediate=args.mediate, pcap_dir=Path(args.pcap_dir) if args.pcap_dir else None)
    except ValueError as e:
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2
    from .sim import SimulationError

    try:
        emulation = Emulation(scenario, config)
        records = emulation.run()
    except (SimulationError, ScenarioError) as e:
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2

    failed = 0
    for h in _aliased_hosts(scenario):
        print(f"alias: host '{h.name}' is {h.alias} to programs ({h.ip})")
    for r in records:
        status = "-" if r.exit_status is None else str(r.exit_status)
        span = f"{_t(r.start)} -> {_t(r.end)}"
        verdict = "ok" if r.ok else "UNEXPECTED"
        print(f"{r.host:>12}  exit={status:<4} virtual {span}  wall {r.wall or 0:.3f}s  {verdict}  "
              f"{shlex.join(r.argv)}")
        if r.error:
            print(f"{'':>12}  error: {r.error}")
        failed += not r.ok
    print(f"simulated time: {emulation.final_time:.9f} s")
    if args.json:
        doc = {"simulated_time": emulation.final_time,
               "hosts": {h.name: {"ip": h.ip, "alias": h.resolvable_name} for h in _scenario_hosts(scenario)},
               "processes": [dict(r.virtual(), wall=r.wall) for r in records]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0


def _t(v) -> str:
    return "?" if v is None else f"{v:.6f}"


def _scenario_hosts(scenario):
    """The platform hosts the scenario's processes run on, in platform order."""
    used = {p.host for p in scenario.processes}
    return [h for h in scenario.platform_info.hosts if h.name in used]


def _aliased_hosts(scenario):
    return [h for h in _scenario_hosts(scenario) if h.alias]
