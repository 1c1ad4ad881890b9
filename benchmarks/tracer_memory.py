"""Tracee memory bandwidth: reading and writing 1 MB of a stopped tracee's memory through the open
/proc/PID/mem fd (Memory.read / read_into / write), next to process_vm_readv/writev and a
PTRACE_PEEKDATA word loop on the same buffer in the same run. Goal: >= 2 GB/s."""

import argparse
import ctypes
import os
import sys
import time

from tracer_common import table

from simterpose.tracer import names
from simterpose.tracer.engine import Policy, Tracer
from simterpose.tracer.results import Value

MB = 1 << 20
TRACEE = "import os\nfd = os.open('/dev/null', os.O_WRONLY)\nbuf = bytearray(b'x' * (1 << 20))\nos.write(fd, buf)"


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _vm(fn_name, pid, addr, buf):
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, fn_name)
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
    fn.restype = ctypes.c_ssize_t
    local = _Iovec(ctypes.addressof(buf), len(buf))
    remote = _Iovec(addr, len(buf))
    return lambda: fn(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


def rate(fn, size, reps) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return size / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    results = {}

    class P(Policy):
        def __init__(self):
            self.handlers = {names.number("write"): self.write}

        def write(self, sc):
            if sc.args[2] != MB:
                return Value(sc.args[2])
            mem, addr, pid = sc.mem, sc.args[1], sc.pid
            data = os.urandom(MB)
            into = bytearray(MB)
            c_buf = (ctypes.c_char * MB).from_buffer(into)
            results["read (pread)"] = rate(lambda: mem.read(addr, MB), MB, a.reps)
            results["read_into (preadv)"] = rate(lambda: mem.read_into(addr, into), MB, a.reps)
            results["write (pwrite)"] = rate(lambda: mem.write(addr, data), MB, a.reps)
            assert mem.read(addr, MB) == data
            results["process_vm_readv"] = rate(_vm("process_vm_readv", pid, addr, c_buf), MB, a.reps)
            results["process_vm_writev"] = rate(_vm("process_vm_writev", pid, addr, c_buf), MB, a.reps)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
            libc.ptrace.restype = ctypes.c_long
            small = 64 * 1024

            def peek():
                for off in range(0, small, 8):
                    libc.ptrace(2, sc.tid, ctypes.c_void_p(addr + off), None)  # PTRACE_PEEKDATA
            results["PTRACE_PEEKDATA loop"] = rate(peek, small, 3)
            return Value(MB)

    tracer = Tracer(P())
    tracer.spawn([sys.executable, "-c", TRACEE])
    assert tracer.run() == 0
    base = results["read (pread)"]
    table(f"Tracee memory, 1 MB buffer (best of {a.reps}; PEEKDATA on 64 KB)",
          ["method", "GB/s", "vs read (pread)", ">= 2 GB/s"],
          [[k, f"{v:.3f}", f"{v / base:.3f}", "yes" if v >= 2 else "NO"] for k, v in results.items()])


if __name__ == "__main__":
    main()
