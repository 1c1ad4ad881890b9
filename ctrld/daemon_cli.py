"""`ctrld` entry point: parse the options, refuse unsafe configurations, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
import threading

from ctrld import auth
from ctrld.protocol.codec import DEFAULT_MAX_FRAME

DEFAULT_PORT = 7600


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad HOST:PORT {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctrld",
        description="ctrld: experiment control daemon (run/kill commands, watch files and ports) "
        "speaking FlatBuffers over TCP, TLS or a unix socket.",
    )
    p.add_argument("--tcp", action="append", type=parse_hostport, metavar="HOST:PORT",
                   help=f"listen on TCP (repeatable; port 0 picks a free one). Default 127.0.0.1:{DEFAULT_PORT} "
                   "when neither --tcp nor --unix is given")
    p.add_argument("--unix", action="append", metavar="PATH", help="listen on a unix socket (mode 0600, peer uid checked)")
    p.add_argument("--token-file", help="clients must present this token (Hello) in their first frame on TCP")
    p.add_argument("--tls-cert", help="serve TCP with TLS: certificate chain (PEM)")
    p.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA (PEM)")
    p.add_argument("--allow-uid", action="append", type=int, default=[],
                   help="extra uid served without a token on the unix socket and loopback TCP (the daemon's uid "
                   "and root always are); the unix socket is then created 0666, each peer's uid checked")
    p.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME,
                   help="largest accepted frame in bytes once authenticated (default 16 MiB; 64 KiB before)")
    p.add_argument("--max-connections", type=int, default=256, help="connections at once (default 256)")
    p.add_argument("--max-pending", type=int, default=64,
                   help="connections still owing their Hello{token} (default 64; the oldest is evicted)")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="S",
                   help="close a connection that has not authenticated after S seconds (default 10)")
    p.add_argument("--max-processes", type=int, default=256, help="running commands per connection (default 256)")
    p.add_argument("--max-watches", type=int, default=1024, help="watches per connection (default 1024)")
    p.add_argument("--log-file", metavar="F", help="log here instead of stderr (reopened on SIGHUP, for logrotate)")
    p.add_argument("--cgroup", metavar="DIR",
                   help="a delegated cgroup v2 directory: each command gets its own child cgroup, killed with cgroup.kill")
    m = p.add_argument_group("emulation (ctrld --mediate)")
    m.add_argument("--mediate", choices=["address-translation", "full-mediation"],
                   help="own one simterpose emulation: commands run on simulated hosts of --platform, at the "
                   "current simulated date, and talk through the simulated network")
    m.add_argument("--platform", metavar="P.xml", help="SimGrid platform of the emulation (with --mediate)")
    m.add_argument("--network-model", metavar="M",
                   help="SimGrid network model: CM02 (default, see `simterpose run --help`), LV08, SMPI, IB, "
                   "Constant, ns-3 (packet-level TCP, when the linked SimGrid has it)")
    m.add_argument("--cpu-model", metavar="M", help="measured (default), none, per-syscall=SECONDS")
    m.add_argument("--tcp-slow-start", choices=("auto", "on", "off"),
                   help="TCP slow start on simulated streams (default auto: on under CM02; see "
                   "`simterpose run --help`)")
    m.add_argument("--default-host", metavar="H", help="simulated host of commands that name none "
                   "(default: the platform's first host)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def check_config(args) -> None:
    """Raise auth.ConfigError for configurations the daemon must refuse."""
    if not args.tcp and not args.unix:
        args.tcp = [("127.0.0.1", DEFAULT_PORT)]
    if bool(args.tls_cert) != bool(args.tls_key):
        raise auth.ConfigError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise auth.ConfigError("--tls-client-ca needs --tls-cert/--tls-key")
    exposed = [h for h, _ in args.tcp or [] if not auth.is_loopback(h)]
    if exposed and not (args.token_file or args.tls_client_ca):
        # TLS alone encrypts but lets anyone in: off loopback a client must prove something.
        what = "TLS without --tls-client-ca does not authenticate clients" if args.tls_cert else "no authentication"
        raise auth.ConfigError(
            f"refusing to listen on non-loopback address {exposed[0]} without authentication ({what}): "
            "give --token-file FILE and/or --tls-cert/--tls-key with --tls-client-ca (or bind 127.0.0.1)"
        )
    for name in ("max_connections", "max_pending", "max_processes", "max_watches"):
        if getattr(args, name) < 1:
            raise auth.ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.handshake_timeout <= 0:
        raise auth.ConfigError("--handshake-timeout must be positive")
    if args.cgroup and not os.path.exists(os.path.join(args.cgroup, "cgroup.kill")):
        raise auth.ConfigError(f"--cgroup {args.cgroup}: not a cgroup v2 directory with cgroup.kill")
    if args.max_frame < 64:
        raise auth.ConfigError("--max-frame must be at least 64 bytes")
    if args.mediate and not args.platform:
        raise auth.ConfigError("--mediate needs --platform P.xml (the SimGrid platform to emulate)")
    if not args.mediate:
        given = [o for o, v in (("--platform", args.platform), ("--network-model", args.network_model),
                                ("--cpu-model", args.cpu_model), ("--default-host", args.default_host),
                                ("--tcp-slow-start", args.tcp_slow_start)) if v]
        if given:
            raise auth.ConfigError(f"{given[0]} only makes sense with --mediate address-translation|full-mediation")


def _release_startup_memory() -> None:
    """Give back to the OS the heap freed after start-up (notably when modules were compiled from
    source because no bytecode cache could be written): ~3 MB of the idle RSS."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def _raise_fd_limit(need: int) -> None:
    """Each connection and each command's pipes take descriptors: ask for the hard limit, so that
    --max-connections (not EMFILE) is what refuses connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        logging.getLogger("ctrld").warning("descriptor limit %d is below what --max-connections needs (~%d)", soft, need)


class _ReopenableFileHandler(logging.StreamHandler):
    """--log-file: SIGHUP reopens the file (after logrotate moved it)."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(open(path, "a", buffering=1))  # noqa: SIM115 - lives as long as the daemon

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", buffering=1)  # noqa: SIM115
            old.close()
        finally:
            self.release()


def _on_sighup(handler) -> None:
    log = logging.getLogger("ctrld")
    if handler is not None:
        try:
            handler.reopen()
        except OSError as e:
            log.error("SIGHUP: cannot reopen %s: %s", handler.path, e)
            return
    log.warning("SIGHUP: logs reopened, still serving")


async def serve(args, log_handler=None) -> int:
    from ctrld.server import Daemon, Limits

    token = auth.read_token(args.token_file) if args.token_file else None
    tls = auth.server_tls_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    mediator = None
    if args.mediate:
        from ctrld.mediate import Mediator

        mediator = Mediator(asyncio.get_running_loop(), args.mediate, args.platform, network_model=args.network_model,
                            cpu_model=args.cpu_model, default_host=args.default_host,
                            tcp_slow_start=args.tcp_slow_start)
    limits = Limits(max_connections=args.max_connections, max_pending=args.max_pending,
                    handshake_s=args.handshake_timeout, max_processes=args.max_processes, max_watches=args.max_watches,
                    preauth_frame=min(args.max_frame, Limits.preauth_frame))
    _raise_fd_limit(args.max_connections * 2 + 64)
    daemon = Daemon(max_frame=args.max_frame, token=token, allowed_uids=auth.allowed_uids(args.allow_uid),
                    cgroup_root=args.cgroup, mediator=mediator, limits=limits)
    asyncio.get_running_loop().set_exception_handler(daemon.exception_handler)
    try:
        for host, port in args.tcp or []:
            await daemon.listen_tcp(host, port, tls)
        for path in args.unix or []:
            await daemon.listen_unix(path)
    except OSError as e:
        await daemon.close()
        raise auth.ConfigError(f"cannot listen: {e.strerror or e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _on_sighup, log_handler)
    _release_startup_memory()
    for a in daemon.addresses:
        print(f"ctrld: listening on {a}", flush=True)
    if mediator is not None:
        print(f"ctrld: mediating ({mediator.mode}) {args.platform}: hosts {' '.join(mediator.hosts)}, "
              f"default {mediator.default_host}", flush=True)
    print(f"ctrld: ready pid={os.getpid()}", flush=True)
    await stop.wait()
    await daemon.close()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handler = None
    level = logging.INFO if args.verbose else logging.WARNING
    try:
        if args.log_file:
            handler = _ReopenableFileHandler(args.log_file)
            handler.setFormatter(logging.Formatter("%(asctime)s ctrld: %(message)s"))
            logging.basicConfig(level=level, handlers=[handler])
        else:
            logging.basicConfig(level=level, format="ctrld: %(message)s")
        check_config(args)
        # asyncio's own loop: uvloop measured within the noise here (-0..25 us of CPU per command)
        # and costs 2.4 MiB of idle RSS (docs/ctrld.md); `ctrl` runs on uvloop.
        rc = asyncio.run(serve(args, handler))
        if args.mediate:
            from ctrld.mediate import THREAD_NAME

            if any(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate()):
                # Its thread is not a daemon thread: exiting normally would wait for it forever.
                print("ctrld: the emulation did not stop in time; exiting anyway", file=sys.stderr, flush=True)
                os._exit(rc)
            engine = sys.modules.get("simterpose.sim.engine")
            if engine is not None and engine.hard_exit_needed():
                engine.exit_now(rc)  # SimGrid's ns-3 model crashes in static destructors at exit
        return rc
    except auth.ConfigError as e:
        print(f"ctrld: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"ctrld: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
