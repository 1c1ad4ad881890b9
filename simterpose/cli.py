"""`simterpose` command line: one subcommand per module, imported lazily (start-up stays small)."""

import argparse
import importlib
import sys

from . import __version__

# subcommand -> (module, one-line help). Each module has add_arguments(parser) and main(args) -> int.
SUBCOMMANDS = {
    "trace": ("simterpose.trace_cmd", "run a command under the tracer, printing strace-like lines"),
    "run": ("simterpose.run_cmd", "run a scenario on a simulated SimGrid platform"),
    "compare": ("simterpose.compare", "run a scenario emulated and for real (network namespaces), compare"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="simterpose", description=sys.modules[__package__].__doc__)
    parser.add_argument("--version", action="version", version=f"simterpose {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
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
