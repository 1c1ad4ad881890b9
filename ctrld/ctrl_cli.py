"""`ctrl` entry point (placeholder until the daemon lands)."""

import argparse


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="ctrl", description="ctrl: command-line client of ctrld (coming: issue 3)").parse_args(argv)
    return 0
