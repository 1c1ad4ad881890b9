"""P1: a loop of 2 000 000 getpid that the policy did not subscribe to, under the tracer vs native,
start-up removed. Goal: ratio <= 1.15 (an unsubscribed syscall never stops)."""

import argparse

from tracer_common import best, seccomp_only_helper, table, time_native, time_traced, toy

from simterpose.tracer import names
from simterpose.tracer.engine import Policy
from simterpose.tracer.results import Native


class NetTimePolicy(Policy):
    """A realistic filter: socket and time syscalls subscribed, getpid not."""

    def __init__(self):
        self.handlers = {names.number(n): (lambda sc: Native()) for n in
                         ("socket", "connect", "accept", "sendto", "recvfrom", "clock_gettime", "nanosleep")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    loop = toy("syscall_loop")
    floor = seccomp_only_helper()
    nrs = ",".join(str(n) for n in sorted(NetTimePolicy().handlers))
    rows = []
    for label, cpu in (("pinned", 0), ("unpinned", None)):
        t = best({
            "native": lambda cpu=cpu: time_native([loop, str(a.n), "getpid"], cpu),
            "native0": lambda cpu=cpu: time_native([loop, "0", "getpid"], cpu),
            "traced": lambda cpu=cpu: time_traced([loop, str(a.n), "getpid"], NetTimePolicy, cpu),
            "traced0": lambda cpu=cpu: time_traced([loop, "0", "getpid"], NetTimePolicy, cpu),
            "filter": lambda cpu=cpu: time_native([floor, nrs, "--", loop, str(a.n), "getpid"], cpu),
            "filter0": lambda cpu=cpu: time_native([floor, nrs, "--", loop, "0", "getpid"], cpu),
        }, a.reps)
        filt = t["filter"] - t["filter0"]
        nat, tr = t["native"] - t["native0"], t["traced"] - t["traced0"]
        rows.append([label, f"{nat * 1e3:.1f}", f"{tr * 1e3:.1f}", f"{tr / nat:.3f}",
                     f"{(tr - nat) / a.n * 1e9:+.1f}", f"{filt / nat:.3f}", f"{tr / filt:.3f}",
                     f"{t['traced0'] * 1e3:.1f}", f"{t['native0'] * 1e3:.1f}",
                     "yes" if tr / nat <= 1.15 else "NO"])
    table(f"P1: {a.n} untraced getpid (min of {a.reps} interleaved runs, start-up removed)",
          ["placement", "native ms", "traced ms", "ratio", "ns/call", "filter-only/native",
           "traced/filter-only", "traced empty ms", "native empty ms", "ratio<=1.15"], rows)
    print("filter-only = the same seccomp filter loaded with no tracer at all: the kernel's own cost of\n"
          "running a filtered process, a floor no tracer can go below.")


if __name__ == "__main__":
    main()
