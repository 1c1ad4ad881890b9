"""`simterpose` command line: one subcommand per module, imported lazily (start-up stays small)."""

import argparse
import importlib
import os
import signal
import sys

from . import __version__

# subcommand -> (module, one-line help). Each module has add_arguments(parser) and main(args) -> int.
SUBCOMMANDS = {
    "trace": ("simterpose.trace_cmd", "run a command under the tracer, printing strace-like lines"),
    "run": ("simterpose.run_cmd", "run a scenario on a simulated SimGrid platform"),
    "compare": ("simterpose.compare", "run a scenario emulated and for real (network namespaces), compare"),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line on stderr, exit status 2 (argparse's default prints the whole usage
    first; `simterpose run -h` still shows it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, where a vanished reader is caught, rather than at interpreter exit
        engine = sys.modules.get("simterpose.sim.engine")
        if engine is not None and engine.hard_exit_needed():
            engine.exit_now(status)  # SimGrid's ns-3 model crashes in static destructors at exit
        return status
    except KeyboardInterrupt:
        # Ctrl-C before or after a run (during one, `simterpose run` stops it and reports): no traceback.
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # Our reader went away (`simterpose run ... | head`): stop quietly, as a command killed by
        # SIGPIPE would. Python would complain again at exit while flushing stdout: point it elsewhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def _main(argv) -> int:
    parser = _Parser(prog="simterpose", description=sys.modules[__package__].__doc__)
    parser.add_argument("--version", action="version", version=f"simterpose {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    # Only the chosen subcommand's module is imported.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 2
    return importlib.import_module(SUBCOMMANDS[args.cmd][0]).main(args)


if __name__ == "__main__":
    sys.exit(main())
