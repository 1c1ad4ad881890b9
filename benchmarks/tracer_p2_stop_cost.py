"""P2: microseconds per intercepted syscall (one seccomp stop, registers read and written), as
[(traced - traced empty) - (native - native empty)] / stops, next to `strace --seccomp-bpf` on the
same loop in the same run. Pinned (tracer and tracee on CPU 0) and unpinned. Goal: faster than strace."""

import argparse

from tracer_common import best, table, time_native, time_strace, time_traced, toy

from simterpose.tracer import names
from simterpose.tracer.engine import Policy
from simterpose.tracer.results import Value


class EmulateGetpid(Policy):
    """getpid answered in its seccomp stop: GETREGS, SETREGS (orig_rax=-1, rax=value), CONT."""

    def __init__(self):
        self.handlers = {names.number("getpid"): lambda sc: Value(sc.task.process.pid)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    loop = toy("syscall_loop")
    n, rows = a.n, []
    for label, cpu in (("pinned", 0), ("unpinned", None)):
        t = best({
            "native": lambda cpu=cpu: time_native([loop, str(n), "getpid"], cpu),
            "native0": lambda cpu=cpu: time_native([loop, "0", "getpid"], cpu),
            "traced": lambda cpu=cpu: time_traced([loop, str(n), "getpid"], EmulateGetpid, cpu),
            "traced0": lambda cpu=cpu: time_traced([loop, "0", "getpid"], EmulateGetpid, cpu),
            "strace": lambda cpu=cpu: time_strace([loop, str(n), "getpid"], "getpid", cpu),
            "strace0": lambda cpu=cpu: time_strace([loop, "0", "getpid"], "getpid", cpu),
        }, a.reps)
        nat = t["native"] - t["native0"]
        ours = ((t["traced"] - t["traced0"]) - nat) / n * 1e6
        if "strace" in t:
            theirs = ((t["strace"] - t["strace0"]) - nat) / n * 1e6
            rows.append([label, f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}",
                         "yes" if ours < theirs else "NO", f"{1e6 / ours / 1000:.0f}k"])
        else:
            rows.append([label, f"{ours:.2f}", "n/a", "n/a", "n/a", f"{1e6 / ours / 1000:.0f}k"])
    table(f"P2: µs per intercepted getpid, {n} calls (min of {a.reps} interleaved runs)",
          ["placement", "simterpose µs", "strace --seccomp-bpf µs", "ratio", "faster", "stops/s"], rows)


if __name__ == "__main__":
    main()
