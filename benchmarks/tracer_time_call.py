"""An emulated time call: clock_gettime answered in its seccomp stop with a timespec written into the
tracee (/proc/PID/mem) and rax=0 -- one stop. Same formula as P2, pinned and unpinned, next to
letting the kernel run it (Native) and to asking for the exit stop too (2 stops). Goal: <= 10 µs pinned."""

import argparse

from tracer_common import best, table, time_native, time_traced, toy

from simterpose.tracer import names
from simterpose.tracer.engine import Policy
from simterpose.tracer.results import Native, Value

NR = names.number("clock_gettime")


class FakeClock(Policy):
    def __init__(self):
        self.now = 0
        self.handlers = {NR: self.clock_gettime}

    def clock_gettime(self, sc):
        self.now += 1000
        sc.mem.write_timespec(sc.args[1], self.now // 1_000_000_000, self.now % 1_000_000_000)
        return Value(0)


class PassThrough(Policy):
    handlers = {NR: lambda sc: Native()}


class ExitStop(Policy):
    handlers = {NR: lambda sc: Native(on_exit=lambda sc, ret: None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    loop = toy("syscall_loop")
    n, rows = a.n, []
    for label, cpu in (("pinned", 0), ("unpinned", None)):
        fns = {"native": lambda cpu=cpu: time_native([loop, str(n), "clock_gettime"], cpu),
               "native0": lambda cpu=cpu: time_native([loop, "0", "clock_gettime"], cpu)}
        for name, pol in (("emulated", FakeClock), ("native-run", PassThrough), ("exit-stop", ExitStop)):
            fns[name] = lambda pol=pol, cpu=cpu: time_traced([loop, str(n), "clock_gettime"], pol, cpu)
            fns[name + "0"] = lambda pol=pol, cpu=cpu: time_traced([loop, "0", "clock_gettime"], pol, cpu)
        t = best(fns, a.reps)
        nat = t["native"] - t["native0"]
        us = {k: ((t[k] - t[k + "0"]) - nat) / n * 1e6 for k in ("emulated", "native-run", "exit-stop")}
        rows.append([label, f"{us['emulated']:.2f}", f"{us['native-run']:.2f}", f"{us['exit-stop']:.2f}",
                     f"{us['exit-stop'] / us['emulated']:.2f}",
                     ("yes" if us["emulated"] <= 10 else "NO") if cpu is not None else "-"])
    table(f"Emulated clock_gettime, {n} calls (µs per call over native, min of {a.reps} interleaved runs)",
          ["placement", "emulated (1 stop)", "kernel runs it (1 stop)", "with exit stop (2)",
           "exit-stop/emulated", "<=10 µs"], rows)


if __name__ == "__main__":
    main()
