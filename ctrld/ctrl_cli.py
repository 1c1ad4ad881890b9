"""`ctrl`: command-line client of ctrld.

    ctrl --connect 127.0.0.1:7600 run --timeout 10 -- make -j4
    ctrl --connect a=host1:7600 --connect b=host2:7600 run -- uname -n     # fan-out, prefixed lines
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

import uvloop

from ctrld import client as cl
from ctrld.protocol.generated import ctrld_generated as g

EXIT_USAGE = 2
EXIT_CONNECT = 255  # like ssh: the command did not run because the daemon could not be reached


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctrl", description="Drive ctrld daemons: run/kill commands, watch files and ports.")
    p.add_argument("--connect", "-c", action="append", metavar="[NAME=]ADDR",
                   help="daemon address: HOST:PORT, [V6]:PORT or unix:PATH; repeat to fan out "
                   f"(default $CTRLD_ADDR or 127.0.0.1:{cl.DEFAULT_PORT})")
    p.add_argument("--token-file", help="file holding the daemon's token")
    p.add_argument("--tls", action="store_true", help="use TLS (implied by --tls-ca)")
    p.add_argument("--tls-ca", help="CA certificate(s) to verify the daemon with")
    p.add_argument("--tls-cert", help="client certificate (when the daemon requires one)")
    p.add_argument("--tls-key", help="key of --tls-cert")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a command, stream its output, exit with its status")
    r.add_argument("--timeout", type=float, metavar="S", help="SIGTERM after S seconds (then SIGKILL after --grace)")
    r.add_argument("--grace", type=float, metavar="S", help="between SIGTERM and SIGKILL (default 2)")
    r.add_argument("--env", action="append", default=[], metavar="K=V", help="add to the daemon's environment")
    r.add_argument("--clean-env", action="store_true", help="only the --env variables, not the daemon's")
    r.add_argument("--cwd", metavar="DIR")
    r.add_argument("--detach-on-exit", action="store_true",
                   help="leave the command running if ctrl is interrupted (default: it is killed)")
    r.add_argument("--host", metavar="H", help="simulated host to run on (daemon started with --mediate; "
                   "default: the daemon's default host)")
    r.add_argument("--unmediated", action="store_true", help="a plain process even when the daemon mediates")
    r.add_argument("-n", "--no-stdin", action="store_true",
                   help="give the command no stdin (/dev/null); by default ctrl's stdin is forwarded "
                   "(one daemon only: fanned-out commands get /dev/null, as with pdsh)")
    r.add_argument("--user", type=int, metavar="UID", help="run as this uid (a root daemon; needs the daemon's uid)")
    r.add_argument("--group", type=int, metavar="GID", help="with --user: primary group (default: UID's)")
    r.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- ARGV...")

    k = sub.add_parser("kill", help="signal a command's process tree (-s 0: only check that it runs)")
    k.add_argument("pid", type=int)
    k.add_argument("--signal", "-s", default="KILL", help="name or number (default KILL; 0 kills nothing)")

    wt = sub.add_parser("wait", help="wait for a command to end (or report how it ended) and exit with its status")
    wt.add_argument("pid", type=int)

    w = sub.add_parser("watch-file", help="wait for events on a file or directory (it may not exist yet)")
    w.add_argument("path", help="absolute path on the daemon's machine (a relative one is refused)")
    w.add_argument("--events", help="comma list of created,modified,deleted,accessed "
                   "(default: all but accessed; none when --size is given)")
    w.add_argument("--size", type=int, default=0, help="report when the file reaches this many bytes")
    w.add_argument("--timeout", type=float, metavar="S")
    w.add_argument("--count", type=int, default=1, help="exit after this many events (0: until timeout)")

    wp = sub.add_parser("watch-port", help="wait until a TCP port is in LISTEN")
    wp.add_argument("port", type=int)
    wp.add_argument("--timeout", type=float, default=10.0, metavar="S")
    wp.add_argument("--host", metavar="H", help="mediating daemon: only a listen on this simulated host counts "
                    "(default: any host)")
    wp.add_argument("--unmediated", action="store_true", help="mediating daemon: watch the real machine's sockets")

    sub.add_parser("ps", help="commands the daemon runs")
    sub.add_parser("status", help="machine state")
    return p


def _parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise SystemExit(f"ctrl: unknown signal {text!r}") from None


def _targets(args) -> list[tuple[str, str]]:
    specs = args.connect or [os.environ.get("CTRLD_ADDR", f"127.0.0.1:{cl.DEFAULT_PORT}")]
    out = []
    for s in specs:
        name, sep, addr = s.partition("=")
        out.append((name, addr) if sep else (s, s))
    return out


async def _connect(args) -> list[cl.Client]:
    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    ssl_ctx = None
    if args.tls or args.tls_ca or args.tls_cert:
        from ctrld.auth import client_tls_context

        ssl_ctx = client_tls_context(args.tls_ca, args.tls_cert, args.tls_key)

    async def one(name, addr):
        try:
            return await cl.Client.connect(addr, token=token, ssl=ssl_ctx, name=name, timeout=args.connect_timeout)
        except (OSError, asyncio.TimeoutError, cl.CtrlError, ValueError) as e:
            code = getattr(e, "errno", None)
            # asyncio words refusals as "Connect call failed (...)": say what the errno says.
            why = os.strerror(code) if isinstance(code, int) and code > 0 else (
                getattr(e, "strerror", None) or str(e) or type(e).__name__)
            return cl.CtrlError(f"cannot connect to {name}: {why}")

    targets = _targets(args)
    results = await asyncio.gather(*(one(n, a) for n, a in targets))
    clients = [r for r in results if isinstance(r, cl.Client)]
    failed = {n: r for (n, _a), r in zip(targets, results) if not isinstance(r, cl.Client)}
    return clients, failed


class _Prefixer:
    """pdsh-style output: whole lines, each prefixed with the daemon's name."""

    def __init__(self, prefix: bool):
        self.prefix = prefix
        self.partial: dict[tuple[str, int], bytes] = {}

    def write(self, name: str, stream: int, data: bytes) -> None:
        out = sys.stdout.buffer if stream == g.Stream.stdout else sys.stderr.buffer
        if not self.prefix:
            out.write(data)
            out.flush()
            return
        buf = self.partial.get((name, stream), b"") + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            out.write(name.encode() + b": " + line + b"\n")
        self.partial[(name, stream)] = rest
        out.flush()

    def flush(self, name: str | None = None) -> None:
        for (n, stream), rest in list(self.partial.items()):
            if rest and (name is None or n == name):
                self.write(n, stream, b"\n")


def _stdin_reader(loop, queue: asyncio.Queue) -> None:
    """Thread: read ctrl's stdin (a pipe, a file or a terminal: os.read works on all, where the
    event loop cannot watch regular files) and hand it over, at most a few chunks ahead."""
    while True:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        try:
            asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except (RuntimeError, asyncio.CancelledError):
            return  # the loop is gone: ctrl is exiting
        if not data:
            return


async def _pump_stdin(handle: cl.RunHandle) -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    threading.Thread(target=_stdin_reader, args=(asyncio.get_running_loop(), queue), daemon=True,
                     name="ctrl-stdin").start()
    try:
        while True:
            data = await queue.get()
            if not data:
                handle.close_stdin()
                return
            await handle.write_stdin(data)  # waits while the daemon has not taken the previous chunk
    except cl.CtrlError:
        return  # the connection ended: the run reports it


def _describe(r: cl.RunResult, argv0: str, timeout) -> str | None:
    if r.exec_failed:
        return f"cannot execute {argv0}: {r.message}"
    if r.timed_out:
        return (f"timed out after {timeout:g} s, killed by {signal.Signals(r.signal).name}"
                if r.signal else f"timed out after {timeout:g} s")
    if r.signal:
        return f"killed by {signal.Signals(r.signal).name}"
    return None


async def cmd_run(args, clients, failed=None) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("ctrl run: missing command (ctrl run [OPTIONS] -- ARGV...)", file=sys.stderr)
        return EXIT_USAGE
    env = {}
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep:
            print(f"ctrl run: --env {kv!r} is not K=V", file=sys.stderr)
            return EXIT_USAGE
        env[k] = v
    failed = dict(failed or {})
    fan_out = len(clients) + len(failed) > 1
    out = _Prefixer(prefix=fan_out)
    forward_stdin = not args.no_stdin and not fan_out
    run_as = (args.user, args.group, None) if args.user is not None else None
    if args.group is not None and args.user is None:
        print("ctrl run: --group needs --user", file=sys.stderr)
        return EXIT_USAGE
    statuses: dict[str, tuple[int, str | None]] = {}
    for name, err in failed.items():  # unreachable hosts: reported, the others go on (pdsh)
        print(f"ctrl: {err}", file=sys.stderr)
        statuses[name] = (EXIT_CONNECT, "cannot connect")

    async def one(c: cl.Client) -> None:
        who = f"{c.name}: " if fan_out else ""
        pump = None
        try:
            h = await c.start(argv, env=env or None, inherit_env=not args.clean_env, cwd=args.cwd,
                              timeout=args.timeout, grace=args.grace, kill_on_disconnect=not args.detach_on_exit,
                              host=args.host, unmediated=args.unmediated, stdin=forward_stdin, run_as=run_as)
            if forward_stdin:
                pump = asyncio.create_task(_pump_stdin(h))
            # collect=False: output goes straight to our stdout/stderr, nothing is kept (constant memory)
            r = await h.wait(lambda stream, data: out.write(c.name, stream, data), collect=False)
        except cl.ConnectionLost:
            out.flush(c.name)
            print(f"ctrl: {c.name}: connection lost", file=sys.stderr, flush=True)
            statuses[c.name] = (EXIT_CONNECT, "connection lost")
            return
        except cl.CtrlError as e:
            print(f"ctrl: {who}{e}", file=sys.stderr, flush=True)
            statuses[c.name] = (EXIT_CONNECT if e.code == 0 else 1, str(e))
            return
        finally:
            if pump is not None:
                pump.cancel()
        why = _describe(r, argv[0], args.timeout)
        if why:
            print(f"ctrl: {who}{why}", file=sys.stderr)
        statuses[c.name] = (r.status, why)

    # Each host on its own: a failure on one never cancels (nor, through kill_on_disconnect, kills)
    # the commands of the others.
    await asyncio.gather(*(one(c) for c in clients))
    out.flush()
    worst = max((st for st, _ in statuses.values()), default=0)
    if fan_out and worst:
        print("ctrl: status per host:", file=sys.stderr)
        names = [n for n, _a in _targets(args)]
        for name in names:
            st, why = statuses.get(name, (EXIT_CONNECT, "?"))
            print(f"ctrl:   {name}: {st}{' (' + why + ')' if why else ''}", file=sys.stderr)
    return worst


async def cmd_kill(args, clients) -> int:
    sig = _parse_signal(args.signal)
    rc = 0
    for c in clients:
        try:
            await c.kill(args.pid, sig=sig)
        except cl.CtrlError as e:
            print(f"ctrl: {c.name}: {e}", file=sys.stderr)
            rc = 1
    return rc


async def cmd_wait(args, clients) -> int:
    worst = 0
    for c in clients:
        who = f"{c.name}: " if len(clients) > 1 else ""
        try:
            b = await c.wait_pid(args.pid)
        except cl.ConnectionLost:
            raise
        except cl.CtrlError as e:
            print(f"ctrl: {c.name}: {e}", file=sys.stderr)
            worst = max(worst, 1)
            continue
        if b.execFailed:
            print(f"{who}{args.pid}: could not execute ({b.message or 'exec failed'})")
        elif b.signal:
            print(f"{who}{args.pid}: killed by {signal.Signals(b.signal).name}")
        else:
            print(f"{who}{args.pid}: exited with {b.exitCode}")
        worst = max(worst, b.errorCode)
    return worst


async def cmd_watch_file(args, clients) -> int:
    if args.events is None:
        events = [] if args.size else ["created", "modified", "deleted"]
    else:
        events = [e.strip() for e in args.events.split(",") if e.strip()]
    bad = [e for e in events if e not in cl.MASK_OF_EVENT]
    if bad:
        print(f"ctrl: unknown event {bad[0]!r} (created, modified, deleted, accessed)", file=sys.stderr)
        return EXIT_USAGE

    async def one(c):
        w = await c.watch_file(args.path, events=events, size=args.size, timeout=args.timeout)
        # Scripts can wait for this line: events happening from now on will be reported.
        print(f"ctrl: {c.name + ': ' if len(clients) > 1 else ''}watching {args.path}", file=sys.stderr, flush=True)
        seen = 0
        async for ev in w.events():
            if ev.kind == "InotifyPathUpdated":
                what = cl.EVENT_NAMES.get(ev.body.triggerEvents, "?")
                extra = f" size={ev.body.size64}" if ev.body.triggerEvents == g.InotifyEvent.size_reached else ""
                print(f"{c.name + ': ' if len(clients) > 1 else ''}{what} {ev.body.path}{extra}", flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    await w.remove()
            elif ev.kind == "WatchEnded" and ev.body.reason == g.WatchEndReason.timeout:
                print(f"ctrl: {c.name}: watch timed out", file=sys.stderr)
                return 1
        return 0 if seen else 1

    return max(await asyncio.gather(*(one(c) for c in clients)))


async def cmd_watch_port(args, clients) -> int:
    async def one(c):
        w = await c.watch_port(args.port, timeout=args.timeout, host=args.host, unmediated=args.unmediated)
        async for ev in w.events():
            if ev.kind == "SocketWatchTerminated":
                if ev.body.state == g.SocketState.listeing:
                    where = f" on {ev.body.host} at simulated {ev.body.simTimeNs / 1e9:.9f} s" if ev.body.host else ""
                    print(f"{c.name + ': ' if len(clients) > 1 else ''}port {args.port} is listening{where}", flush=True)
                    return 0
                print(f"ctrl: {c.name}: port {args.port} not listening after {args.timeout:g} s", file=sys.stderr)
                return 1
        return 1

    return max(await asyncio.gather(*(one(c) for c in clients)))


async def cmd_ps(args, clients) -> int:
    print(f"{'DAEMON':<16} {'PID':>7} {'REQ':>5} {'CLIENT':>6} {'OWNER':>10} {'AGE':>8}  COMMAND")
    for c in clients:
        s = await c.status()
        for p in sorted(s.processes or [], key=lambda p: p.startedNs):
            age = (s.timeNs - p.startedNs) / 1e9  # both on the daemon's monotonic clock
            where = f"[{p.host}] " if p.host else ""  # emulated, on this simulated host
            left = "(leftover) " if p.leftover else ""  # the leader ended, its group still runs
            print(f"{c.name:<16} {p.pid:>7} {p.requestId:>5} {p.clientId:>6} {p.owner or '-':>10} {age:>7.1f}s  "
                  f"{where}{left}{' '.join(p.args)}")
    return 0


async def cmd_status(args, clients) -> int:
    for c in clients:
        s = await c.status()
        gib = 1024 * 1024
        print(f"{c.name}: {s.hostname}  cpus={s.cpuCount}  load={s.load1:.2f} {s.load5:.2f} {s.load15:.2f}  "
              f"mem={s.memAvailableKb / gib:.1f}/{s.memTotalKb / gib:.1f} GiB available  up={s.uptimeS / 3600:.1f} h")
        print(f"{c.name}: ctrld {s.daemonVersion} pid={s.daemonPid} rss={s.daemonRssKb / 1024:.1f} MiB  "
              f"clients={s.clients} processes={len(s.processes or [])} watches={len(s.watches or [])}")
        if s.mediate:
            print(f"{c.name}: mediating ({s.mediate})  simulated clock={s.simTimeNs / 1e9:.9f} s  "
                  f"default host={s.defaultHost}")
            for h in s.simHosts or []:
                procs = h.processes or []
                print(f"{c.name}:   host {h.name}{' (' + h.ip + ')' if h.ip else ''}: {len(procs)} process(es)")
                for p in procs:
                    print(f"{c.name}:     pid={p.pid} req={p.requestId} client={p.clientId} "
                          f"since simulated {p.simStartNs / 1e9:.9f} s  {' '.join(p.args)}")
    return 0


COMMANDS = {"run": cmd_run, "kill": cmd_kill, "wait": cmd_wait, "watch-file": cmd_watch_file,
            "watch-port": cmd_watch_port, "ps": cmd_ps, "status": cmd_status}


async def _main(args) -> int:
    clients, failed = await _connect(args)
    try:
        if args.cmd == "run" and len(clients) + len(failed) > 1:
            return await cmd_run(args, clients, failed)  # fan-out: the reachable hosts go on
        if failed:
            raise next(iter(failed.values()))
        return await COMMANDS[args.cmd](args, clients)
    finally:
        for c in clients:
            await c.close()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return uvloop.run(_main(args))
    except cl.CtrlError as e:
        print(f"ctrl: {e}", file=sys.stderr)
        return EXIT_CONNECT if isinstance(e, cl.ConnectionLost) or "cannot connect" in str(e) else 1
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"ctrl: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
