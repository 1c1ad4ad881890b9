"""`ctrld` entry point (placeholder until the daemon lands)."""

import argparse


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="ctrld", description="ctrld: experiment control daemon (coming: issue 3)").parse_args(argv)
    return 0
