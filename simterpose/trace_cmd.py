"""`simterpose trace [-o FILE] [-e trace=SET] [-f] [-s N] [--vdso keep] [--cpu N] -- CMD ARGS...`

Runs CMD under the tracing engine with a logging policy and prints strace-like lines for the chosen
syscalls (default: %network,%time). Every process and thread of the tree is always traced (the seccomp
filter is inherited); like strace, lines of children are printed only with -f, and then every line
is prefixed with "[pid TID]". The exit status is CMD's (128+N when it was killed by signal N).
"""

from __future__ import annotations

import argparse
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", dest="output", metavar="FILE", help="write the trace to FILE (default: stderr)")
    parser.add_argument("-e", dest="expr", metavar="trace=SET", action="append", default=[],
                        help="syscalls to show: comma list of names and classes (%%network, %%time, "
                             "%%process, %%file, %%desc, %%signal, all; '!' negates). "
                             "Default: trace=%%network,%%time")
    parser.add_argument("-f", dest="follow", action="store_true",
                        help="also show children and threads (each line prefixed with [pid TID])")
    parser.add_argument("-s", dest="strsize", metavar="N", type=int, default=32,
                        help="maximum string/buffer size to print (default 32)")
    parser.add_argument("--vdso", choices=("disable", "keep"), default="disable",
                        help="'disable' (default) makes glibc's clock_gettime/gettimeofday/time real "
                             "syscalls so they are seen; 'keep' leaves the vDSO alone")
    parser.add_argument("--cpu", type=int, metavar="N", default=None,
                        help="pin the tracer and its tracees to CPU N (faster stops)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")


class _Stop(Exception):
    def __init__(self, sig: int):
        self.sig = sig


def main(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("simterpose trace: no command given (usage: simterpose trace [OPTIONS] -- CMD ARGS...)",
              file=sys.stderr)
        return 2
    from .tracer import strace
    from .tracer.engine import Tracer

    try:
        numbers: set[int] = set()
        for expr in args.expr or [strace.DEFAULT_SET]:
            if not expr.startswith("trace=") and "=" in expr:
                raise ValueError(f"only -e trace=SET is supported, not {expr!r}")
            numbers |= strace.parse_set(expr)
    except ValueError as e:
        print(f"simterpose trace: {e}", file=sys.stderr)
        return 2

    out = open(args.output, "w", buffering=1) if args.output else sys.stderr

    def write(line: str) -> None:
        out.write(line + "\n")

    policy = strace.StracePolicy(numbers, write, follow=args.follow, strsize=args.strsize)
    tracer = Tracer(policy, vdso=args.vdso, cpu=args.cpu)

    # A signal to the tracer ends the whole run: the tracees cannot outlive it (PTRACE_O_EXITKILL,
    # and a seccomp-traced process without its tracer would fail every traced syscall).
    def on_signal(sig, _frame):
        raise _Stop(sig)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            root = tracer.spawn(command)
            policy.root_pid = root.pid
            return tracer.run()
        except _Stop as stop:
            tracer.kill_all()
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
            try:
                while tracer.step():  # reap: no zombie or stopped tracee is left behind
                    pass
            except _Stop:
                pass
            print(f"simterpose trace: killed by {strace.signame(stop.sig)}; traced processes killed",
                  file=sys.stderr)
            return 128 + stop.sig
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if out is not sys.stderr:
            out.close()
