"""`simterpose` command line."""

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simterpose", description=__doc__)
    p.add_argument("--version", action="version", version=f"simterpose {__version__}")
    p.add_subparsers(dest="cmd")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd is None:
        build_parser().print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
