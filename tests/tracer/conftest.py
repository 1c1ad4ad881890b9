"""Helpers for the tracer tests: run a real command under the engine with a table of handlers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simterpose.tracer import names
from simterpose.tracer.engine import Policy, Tracer

PY = sys.executable


class TablePolicy(Policy):
    """A policy from a {name: handler} table; records fork/exec/exit/signal events."""

    def __init__(self, table=None):
        self.handlers = {names.number(n): h for n, h in (table or {}).items()}
        self.forks, self.execs, self.exits, self.signals = [], [], [], []

    def on_fork(self, parent, child, is_thread):
        self.forks.append((parent.tid, child.tid, is_thread))

    def on_exec(self, process):
        self.execs.append(process.pid)

    def on_process_exit(self, process, status):
        self.exits.append((process.pid, status))

    def on_signal(self, task, sig):
        self.signals.append((task.tid, sig))
        return sig


class Run:
    def __init__(self, tracer, policy, rc, out, err):
        self.tracer, self.policy, self.rc, self.out, self.err = tracer, policy, rc, out, err


def run_traced(argv, table=None, tmp=None, policy=None, **tracer_kw) -> Run:
    """Run argv under a Tracer; stdout/stderr go to files (no pipe can fill up and block the tracee)."""
    policy = policy or TablePolicy(table)
    tracer = Tracer(policy, log=lambda m: print("engine:", m, file=sys.stderr), **tracer_kw)
    tmp = Path(tmp or "/tmp")
    out_p, err_p = tmp / f"out.{os.getpid()}", tmp / f"err.{os.getpid()}"
    with open(out_p, "wb") as o, open(err_p, "wb") as e:
        tracer.spawn(argv, stdout=o.fileno(), stderr=e.fileno())
        rc = tracer.run()
    out, err = out_p.read_text(), err_p.read_text()
    out_p.unlink()
    err_p.unlink()
    return Run(tracer, policy, rc, out, err)


@pytest.fixture(scope="session")
def cbuild(tmp_path_factory):
    """Compile a small C program (source text) into a session tmp dir; returns its path."""
    d = tmp_path_factory.mktemp("csnippets")
    cache = {}

    def build(name: str, source: str, *flags: str) -> str:
        if name not in cache:
            src = d / f"{name}.c"
            src.write_text(source)
            exe = d / name
            subprocess.run(["gcc", "-O1", "-o", str(exe), str(src), *flags], check=True)
            cache[name] = str(exe)
        return cache[name]

    return build
