"""`simterpose run`: run a scenario's processes on a simulated platform and report what happened."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: The network model of a run that names none. CM02 (latency + size / bandwidth, max-min sharing):
#: against real runs in network namespaces it is the closest of the models SimGrid offers on bulk
#: transfers and request/response traffic alike; LV08 (SimGrid's own default) charges 13.01 times the
#: latency on every transfer (+1000 % on a ping-pong) and ns-3 a TCP handshake and close on every one
#: (docs/compare.md has the measurements).
DEFAULT_NETWORK_MODEL = "CM02"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="a YAML scenario (or use --platform and --deployment)")
    p.add_argument("--platform", help="SimGrid platform XML")
    p.add_argument("--deployment", help="SimGrid deployment XML (<actor> or <process> elements)")
    p.add_argument("--mediate", choices=("address-translation", "full-mediation"),
                   default="address-translation",
                   help="address-translation (default): the kernel carries the bytes over loopback, "
                        "addresses are translated; full-mediation: the emulator carries them")
    p.add_argument("--network-model", default=None,
                   help=f"SimGrid network model: {DEFAULT_NETWORK_MODEL} (default: it is the closest to real runs "
                        "in network namespaces, within 10 %% on bulk transfers and ping-pongs, see "
                        "docs/compare.md), LV08 (SimGrid's default, 13x the latency per transfer: ~10x too "
                        "slow on request/response traffic), SMPI, IB, Constant, ns-3 (packet-level TCP; "
                        "every transfer is a TCP connection of its own). 'help' lists the models the "
                        "linked SimGrid offers")
    p.add_argument("--tcp-slow-start", choices=("auto", "on", "off"), default=None,
                   help="model Linux TCP's slow start on connections between hosts: a stream's data leaves "
                        "in rounds one round trip apart, from 10 segments (Linux's initial window), the "
                        "window growing by what each round acknowledged until it covers the route's "
                        "bandwidth-delay product, and restarting after an idle RTO (RFC 5681). auto "
                        "(default): on under CM02, whose transfers otherwise run at the links' rate from "
                        "their first byte (a 1 MB transfer was 25-34 %% shorter than the real run without "
                        "it, see docs/compare.md); off under LV08/SMPI/IB (their latency factors already "
                        "stand for slow start) and ns-3 (which simulates TCP itself; 'on' is refused there)")
    p.add_argument("--cpu-model", default="measured",
                   help="measured (default): charge real CPU bursts; none: charge nothing (deterministic); "
                        "per-syscall=SECONDS: a fixed cost per intercepted syscall (deterministic)")
    p.add_argument("--unblocked-syscall-latency", type=_date, default=None, metavar="SECONDS",
                   help="simulated cost of one busy-wait step (a poll answered at once, an EAGAIN), "
                        "charged per 100 steps at one date so that polling loops let time advance "
                        "(default 10us; 0 disables; see docs/emulator.md)")
    p.add_argument("--reference-speed", default=1e9, type=_speed,
                   help="flop/s that one second of real CPU is worth (default 1Gf: a 1Gf host replays "
                        "CPU bursts at their real duration)")
    p.add_argument("--epoch", type=int, default=None,
                   help="CLOCK_REALTIME at simulated date 0, in Unix seconds (fixed default: reproducible)")
    p.add_argument("--stop-time", type=_date, default=None,
                   help="kill everything at this simulated date (seconds, or with a unit: 500ms, 2m)")
    p.add_argument("--cfg", metavar="KEY:VALUE", action="append", type=_cfg, default=[],
                   help="a SimGrid setting, as SimGrid's --cfg (e.g. network/crosstraffic:0); repeatable")
    p.add_argument("--log", metavar="SETTING", action="append", default=[], type=_log,
                   help="a SimGrid log setting, as SimGrid's --log (e.g. root.thresh:info); repeatable. "
                        "Without it SimGrid says nothing but critical errors")
    p.add_argument("--seed", type=_seed, default=None,
                   help="every random byte the processes get (getrandom, /dev/urandom, /dev/random, AT_RANDOM) "
                        "derives from this integer (default: the scenario's seed:, else 1)")
    p.add_argument("--heartbeat", metavar="SECONDS", type=_period, default=None,
                   help="print one progress line on stderr every SECONDS of wall time (simulated date, "
                        "processes alive, syscalls/s), for logs; on a terminal a live line is shown anyway")
    p.add_argument("--data-dir", metavar="DIR",
                   help="Shadow-like outputs: DIR/hosts/HOST/PROGRAM.N.{stdout,stderr,syscalls} (N: the "
                        "process's rank in the scenario), DIR/hosts/HOST/eth0.pcap and DIR/results.json; "
                        "--log-dir, --pcap-dir and --json still choose those outputs' place when given")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--log-dir", metavar="DIR",
                   help="keep each process's stdout, stderr and log of intercepted syscalls here")
    p.add_argument("--pcap-dir", metavar="DIR",
                   help="write one pcap per host: payloads on the virtual network, simulated dates")
    p.add_argument("--vdso", choices=("disable", "keep"), default="disable",
                   help="keep: leave the vDSO alone (clock reads then escape virtual time)")
    p.add_argument("--cpu", default="auto", metavar="N|auto|none",
                   help="pin the tracer and every tracee to one CPU: N, or auto (default: the CPU the run "
                        "starts on), or none. One CPU avoids a cross-CPU wake-up at every syscall stop "
                        "(2-3x faster on syscall-heavy programs); simulated dates do not depend on it")


def _pinned_cpu(arg: str) -> Optional[int]:
    """The CPU to pin the run to (None: no pinning). Raises ValueError with the reason."""
    if arg == "none":
        return None
    allowed = os.sched_getaffinity(0)
    if arg == "auto":
        from .procfs import current_cpu
        cpu = current_cpu()
        return cpu if cpu in allowed else min(allowed)
    try:
        cpu = int(arg)
    except ValueError:
        raise ValueError("expected a CPU number, auto or none") from None
    if cpu not in allowed:
        raise ValueError(f"not a CPU this process may use ({sorted(allowed)})")
    return cpu


def main(args) -> int:
    from .randomness import DEFAULT_SEED
    from .scenario import ScenarioError, load_deployment, load_scenario
    from .time.clock import DEFAULT_EPOCH

    if args.network_model == "help":
        from .sim import NETWORK_MODELS, network_models

        for name, text in network_models().items():
            mark = "" if name in NETWORK_MODELS else "  (not supported by simterpose)"
            print(f"{name}: {text}{mark}")
        return 0
    try:
        if args.scenario:
            scenario = load_scenario(args.scenario, platform=args.platform)
        elif args.platform and args.deployment:
            scenario = load_deployment(args.deployment, args.platform)
        else:
            print("simterpose run: give a YAML scenario, or --platform P.xml --deployment D.xml", file=sys.stderr)
            return 2
    except ScenarioError as e:
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2
    ref_speed = args.reference_speed
    simgrid_config = dict(args.cfg)
    # SimGrid's own spelling of the network model wins over the scenario's, as --network-model does.
    network_model = simgrid_config.pop("network/model", None) or args.network_model or scenario.network_model \
        or DEFAULT_NETWORK_MODEL
    from .emulator import RunConfig
    from .sim import QUIET_LOGS

    data = None
    if args.data_dir:
        try:
            data = DataDir.create(Path(args.data_dir), logs=not args.log_dir, pcaps=not args.pcap_dir)
        except OSError as e:
            print(f"simterpose run: --data-dir {args.data_dir}: {e.strerror or e}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"simterpose run: {e}", file=sys.stderr)
            return 2
        args.json = args.json or str(data.root / "results.json")
    log_dir = Path(args.log_dir) if args.log_dir else (data.staging_logs if data else None)
    pcap_dir = Path(args.pcap_dir) if args.pcap_dir else (data.staging_pcaps if data else None)
    # Outputs are checked before the run, not found unwritable after it (and its results lost).
    for flag, d in (("--log-dir", log_dir), ("--pcap-dir", pcap_dir)):
        if d is not None:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                print(f"simterpose run: {flag} {d}: {e.strerror or e}", file=sys.stderr)
                return 2
    if args.json:
        j = Path(args.json)
        if j.is_dir() or not j.parent.is_dir() or not os.access(j.parent, os.W_OK):
            why = "is a directory" if j.is_dir() else "its directory does not exist or is not writable"
            print(f"simterpose run: --json {args.json}: {why}", file=sys.stderr)
            return 2
    try:
        cpu = _pinned_cpu(args.cpu)
    except ValueError as e:
        print(f"simterpose run: --cpu {args.cpu}: {e}", file=sys.stderr)
        return 2
    try:
        config = RunConfig(network_model=network_model,
                           tcp_slow_start=_first(args.tcp_slow_start, scenario.tcp_slow_start, "auto"),
                           simgrid_config=simgrid_config,
                           simgrid_log=[QUIET_LOGS[0], *args.log] if args.log else None,
                           cpu_model=args.cpu_model, reference_speed=ref_speed,
                           epoch=DEFAULT_EPOCH if args.epoch is None else args.epoch,
                           vdso=args.vdso, stop_time=args.stop_time, log_dir=log_dir, cpu=cpu,
                           mediate=args.mediate, pcap_dir=pcap_dir,
                           seed=_first(args.seed, scenario.seed, DEFAULT_SEED), own_process_group=True,
                           **({} if args.unblocked_syscall_latency is None else
                              {"unblocked_syscall_latency": args.unblocked_syscall_latency}))
    except ValueError as e:
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2
    with Interruption() as interruption:
        status = _run(args, scenario, config, data, interruption)
    return status


def _run(args, scenario, config, data, interruption: "Interruption") -> int:
    from .emulator import Emulation
    from .progress import Progress
    from .scenario import ScenarioError, signal_name
    from .sim import SimulationError

    progress = Progress(sys.stderr, live=sys.stderr.isatty(), heartbeat=args.heartbeat)
    try:
        emulation = Emulation(scenario, config)
        emulation.progress = progress
        interruption.attach(emulation)
        records = emulation.run()
    except (SimulationError, ScenarioError) as e:
        progress.close()
        print(f"simterpose run: {e}", file=sys.stderr)
        return 2
    finally:
        if data is not None:
            data.file_outputs(scenario)
    progress.close()

    from .outcome import judge

    stopped = None
    if emulation.interrupted is not None:
        stopped = {"signal": signal_name(emulation.interrupted), "simulated_time": emulation.interrupted_at}
        running = sum(r.interrupted for r in records)
        print(f"simterpose run: interrupted at t={emulation.interrupted_at:.6f} s ({stopped['signal']}): "
              f"{running} process{'' if running == 1 else 'es'} still running, killed", file=sys.stderr)
    outcomes = [judge(spec, r, args.stop_time) for spec, r in zip(scenario.processes, records, strict=True)]
    if args.json:  # first: a reader that went away (`| head`) must not cost the results
        doc = {"simulated_time": emulation.final_time,
               "interrupted": stopped,
               "hosts": {h.name: {"ip": h.ip, "alias": h.resolvable_name} for h in _scenario_hosts(scenario)},
               "processes": [_process_json(r, o) for r, o in zip(records, outcomes, strict=True)]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    failed = 0
    for h in _aliased_hosts(scenario):
        print(f"alias: host '{h.name}' is {h.alias} to programs ({h.ip})")
    for spec, r, o in zip(scenario.processes, records, outcomes, strict=True):
        status = "-" if r.exit_status is None else str(r.exit_status)
        if o.final_state is not None and o.final_state.kind == "running":
            by_stop_time = args.stop_time is not None and r.end is not None and r.end >= args.stop_time and (
                spec.kill_time is None or spec.kill_time > args.stop_time)
            status += (" (running when interrupted, killed)" if r.interrupted else
                       " (running at --stop-time, killed)" if by_stop_time else " (running at kill_time, killed)")
        elif o.signal is not None:
            status += f" ({o.signal})"
        span = f"{_t(r.start)} -> {_t(r.end)}"
        verdict = "ok" if o.ok else f"UNEXPECTED (expected {o.expected})"
        print(f"{r.host:>12}  exit={status:<4} virtual {span}  wall {r.wall or 0:.3f}s  {verdict}  "
              f"{shlex.join(r.argv)}")
        if o.error:
            print(f"{'':>12}  error: {o.error}")
        failed += not o.ok
    print(f"simulated time: {emulation.final_time:.9f} s")
    if interruption.signum is not None:
        return 128 + interruption.signum  # as a shell reports a command a signal ended: 130, 143
    return 1 if failed else 0


class Interruption:
    """Ctrl-C (SIGINT) and SIGTERM during `simterpose run`: instead of dying (tracees would die with
    us, PTRACE_O_EXITKILL, and every result would be lost), stop the emulation where it is
    (`Emulation.interrupt`), then report as usual and exit 128+N. Handlers are Python's: they run
    between two bytecodes of the main thread, the one that runs the scheduler. A signal that comes
    before the emulation exists is passed on once it does (the run then starts nothing)."""

    def __init__(self):
        self.signum: int | None = None
        self._emulation = None
        self._previous: dict = {}
        self._ignored: list = []

    def __enter__(self) -> "Interruption":
        for sig in (signal.SIGINT, signal.SIGTERM):
            # An ignored signal stays ignored (`nohup`, or a shell script's `simterpose run &`,
            # which must survive a Ctrl-C meant for the script's foreground job).
            if signal.getsignal(sig) is signal.SIG_IGN:
                self._ignored.append(sig)
            else:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def attach(self, emulation) -> None:
        self._emulation = emulation
        # SimGrid's Engine, created with the emulation, put its own SIGINT handler in place (it exits
        # the process with status 1): ours again.
        for sig in self._previous:
            signal.signal(sig, self._on_signal)
        for sig in self._ignored:
            signal.signal(sig, signal.SIG_IGN)
        if self.signum is not None:
            emulation.interrupt(self.signum)

    def _on_signal(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self._emulation is not None:
                self._emulation.interrupt(signum)


@dataclass
class DataDir:
    """``--data-dir``: the emulator writes its logs and pcaps where ``--log-dir`` and ``--pcap-dir``
    would put them (two staging directories inside DIR), then they are filed per host, as Shadow
    lays them out: ``hosts/HOST/PROGRAM.N.EXT`` and ``hosts/HOST/eth0.pcap``."""

    root: Path
    staging_logs: Path | None
    staging_pcaps: Path | None

    @classmethod
    def create(cls, root: Path, logs: bool, pcaps: bool) -> "DataDir":
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            # Outputs of two runs must not mix: Shadow refuses an existing data directory too.
            raise ValueError(f"--data-dir {root}: exists and is not an empty directory")
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, root / ".logs" if logs else None, root / ".pcaps" if pcaps else None)

    def host_dir(self, host: str, alias: str) -> Path:
        # A host name is a directory name unless it cannot be one; the alias always can.
        name = host if host not in (".", "..") and "/" not in host and "\0" not in host else alias
        return self.root / "hosts" / name

    def file_outputs(self, scenario) -> None:
        hosts = {h.name: h.resolvable_name for h in scenario.platform_info.hosts}
        for name, alias in hosts.items():
            self.host_dir(name, alias).mkdir(parents=True, exist_ok=True)
        if self.staging_logs is not None and self.staging_logs.is_dir():
            for i, spec in enumerate(scenario.processes):
                # the emulator's names (emulator.py, ScenarioProcess.start): INDEX-HOST-PROGRAM.EXT
                stem = f"{i}-{spec.host}-{Path(spec.argv[0]).name}"
                for ext in ("stdout", "stderr", "syscalls"):
                    src = self.staging_logs / f"{stem}.{ext}"
                    if src.exists():
                        dst = self.host_dir(spec.host, hosts[spec.host]) / f"{Path(spec.argv[0]).name}.{i}.{ext}"
                        src.rename(dst)
            shutil.rmtree(self.staging_logs, ignore_errors=True)
        if self.staging_pcaps is not None and self.staging_pcaps.is_dir():
            for name, alias in hosts.items():
                src = self.staging_pcaps / f"{name}.pcap"  # net/pcap.py's name: HOST.pcap
                if src.exists():
                    src.rename(self.host_dir(name, alias) / "eth0.pcap")
            shutil.rmtree(self.staging_pcaps, ignore_errors=True)


def _speed(text: str) -> float:
    from .scenario import parse_speed

    try:
        value = parse_speed(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid speed {text!r} (e.g. 1Gf, 500Mf)") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: must be > 0")
    return value


def _date(text: str) -> float:
    from .scenario import parse_time

    try:
        value = parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r} (seconds, or e.g. 500ms, 2m)") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: must be >= 0")
    return value


def _seed(text: str) -> int:
    from .randomness import parse_seed

    try:
        return parse_seed(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _first(*values):
    return next(v for v in values if v is not None)


def _period(text: str) -> float:
    from .scenario import parse_time

    try:
        value = parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid period {text!r} (seconds, or e.g. 500ms, 1m)") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid period {text!r}: must be > 0")
    return value


def _cfg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY:VALUE (e.g. network/crosstraffic:0), got {text!r}")
    return key.strip(), value.strip()


# SimGrid's --log grammar (xbt_log_control_set): CATEGORY.thres[hold]:LEVEL, .fmt/.layout:FORMAT,
# .app[ender]:..., .add[itivity]:yes|no, or no_loc. Anything else makes SimGrid abort the process.
_LOG_SETTING = re.compile(r"^(no_loc|\w+(\.\w+)*\.(thres\w*|fmt|layout|app\w*|add\w*):\S.*)$")


def _log(text: str) -> str:
    if not _LOG_SETTING.match(text):
        raise argparse.ArgumentTypeError(f"invalid SimGrid log setting {text!r} (e.g. root.thresh:info)")
    return text


def _t(v) -> str:
    return "?" if v is None else f"{v:.6f}"


def _process_json(record, outcome) -> dict:
    doc = dict(record.virtual(), wall=record.wall)
    doc["error"] = outcome.error
    doc["final_state"] = None if outcome.final_state is None else outcome.final_state.as_json()
    doc["signal"] = outcome.signal
    doc["ok"] = outcome.ok
    return doc


def _scenario_hosts(scenario):
    """The platform hosts the scenario's processes run on, in platform order."""
    used = {p.host for p in scenario.processes}
    return [h for h in scenario.platform_info.hosts if h.name in used]


def _aliased_hosts(scenario):
    return [h for h in _scenario_hosts(scenario) if h.alias]
