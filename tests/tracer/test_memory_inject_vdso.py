"""Tracee memory helpers, syscall injection, vDSO hiding, and the tracer dying with its tracees."""

import errno
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import PY, TablePolicy, run_traced

from simterpose.tracer import engine as eng
from simterpose.tracer import names
from simterpose.tracer.memory import MemoryError_, SockAddr, decode_sockaddr, encode_sockaddr
from simterpose.tracer.results import Native, Value

# The tracee writes a 1 MB buffer to /dev/null: at that stop, the buffer is scratch space we own.
SCRATCH = "import os\nfd = os.open('/dev/null', os.O_WRONLY)\nbuf = bytearray(1 << 20)\nprint(os.write(fd, buf))"


def test_memory_round_trips(tmp_path):
    checks = []

    def write(sc):
        if sc.args[2] != 1 << 20:
            return Native()
        mem, base = sc.mem, sc.args[1]
        # bulk
        blob = os.urandom(1 << 20)
        mem.write(base, blob)
        assert mem.read(base, 1 << 20) == blob
        into = bytearray(4096)
        assert mem.read_into(base + 100, into) == 4096 and bytes(into) == blob[100:4196]
        # C strings, including one ending right before the end of what we read per page
        mem.write(base + 4090, b"hello world\0junk")
        assert mem.read_cstring(base + 4090) == b"hello world"
        assert mem.read_cstring(base + 4090, limit=5) == b"hello"
        # integers and time structures
        mem.write_u64(base, 2**64 - 2)
        assert mem.read_u64(base) == 2**64 - 2
        mem.write_i32(base, -5)
        assert mem.read_i32(base) == -5
        mem.write_timespec(base, 1234, 999_999_999)
        assert mem.read_timespec(base) == (1234, 999_999_999)
        mem.write_timeval(base + 16, -1, 7)
        assert mem.read_timeval(base + 16) == (-1, 7)
        # iovecs: gather/scatter through an array stored in the tracee
        mem.write(base + 8192, b"AAAA" + b"BBBBBB")
        iov = [(base + 8192, 4), (base + 8196, 6)]
        mem.write_iovec(base + 16384, iov)
        assert mem.read_iovec(base + 16384, 2) == iov
        assert mem.gather(iov) == b"AAAABBBBBB" and mem.gather(iov, limit=5) == b"AAAAB"
        assert mem.scatter(iov, b"123456789") == 9 and mem.read(base + 8192, 10) == b"123456789B"
        # pollfds
        pfds = [(3, 1, 0), (-1, 4, 0x20), (7, 0x2001, 1)]
        mem.write_pollfds(base, pfds)
        assert mem.read_pollfds(base, 3) == pfds
        # sockaddrs of every family, as the kernel would store them (truncated to the buffer)
        for sa in (SockAddr((socket.AF_INET, "10.0.0.7", 8080)),
                   SockAddr((socket.AF_INET6, "fe80::1", 443, 5, 2)),
                   SockAddr((socket.AF_UNIX, b"/tmp/some.sock")),
                   SockAddr((socket.AF_UNIX, b"\0abstract"))):
            raw = encode_sockaddr(sa)
            mem.write_i32(base + 512, 128)
            assert mem.write_sockaddr(base, base + 512, sa) == len(raw)
            assert mem.read_i32(base + 512) == len(raw)
            assert mem.read_sockaddr(base, len(raw)) == sa
        mem.write_i32(base + 512, 4)  # too small: truncated, full length reported
        mem.write(base, b"\xff" * 16)
        assert mem.write_sockaddr(base, base + 512, SockAddr((socket.AF_INET, "1.2.3.4", 1))) == 16
        assert mem.read(base, 6) == struct.pack("<H", 2) + struct.pack(">H", 1) + b"\xff\xff"
        # faults
        with pytest.raises(MemoryError_):
            mem.read(0, 8)
        with pytest.raises(MemoryError_):
            mem.write(8, b"x")
        checks.append("ok")
        return Value(77)

    r = run_traced([PY, "-c", SCRATCH], {"write": write}, tmp_path)
    assert checks == ["ok"], r.err
    assert r.rc == 0 and r.out.strip().endswith("77")


def test_sockaddr_codec_against_the_socket_module():
    # Bytes made by the kernel (getsockname of real sockets) decode to what Python reports.
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    raw = struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", port, 0) + socket.inet_pton(
        socket.AF_INET6, "::1") + struct.pack("<I", 0)
    assert decode_sockaddr(raw) == (socket.AF_INET6, "::1", port, 0, 0)
    assert encode_sockaddr(decode_sockaddr(raw)) == raw
    s.close()
    with pytest.raises(ValueError):
        decode_sockaddr(b"\x02\x00\x00")


# -- syscall injection -----------------------------------------------------------------------------
def test_injection_creates_a_real_fd_and_restores_registers(tmp_path):
    injected = []

    def getppid(sc):
        tracer = holder[0]
        fd = tracer.inject(sc, names.number("socket"), socket.AF_INET, socket.SOCK_STREAM, 0)
        injected.append((sc.pid, fd, os.readlink(f"/proc/{sc.pid}/fd/{fd}")))
        bad = tracer.inject(sc, names.number("close"), 9999)
        injected.append(bad)
        return Native()  # the original syscall runs with its own registers

    policy = TablePolicy({"getppid": getppid})
    tracer = eng.Tracer(policy)
    holder = [tracer]
    out = tmp_path / "out"
    code = "import os\nprint(os.getppid())\nprint(sorted(os.listdir('/proc/self/fd')))"
    with open(out, "wb") as f:
        tracer.spawn([PY, "-c", code], stdout=f.fileno())
        assert tracer.run() == 0
    (pid, fd, link), bad = injected
    assert fd >= 3 and link.startswith("socket:[")
    assert bad == -errno.EBADF
    lines = out.read_text().splitlines()
    assert lines[0] == str(os.getpid())  # getppid ran natively after the injections
    assert str(fd) in eval(lines[1])  # the injected fd belongs to the tracee


INJECT_SIG = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static volatile int got;
static void on_usr1(int s) { (void)s; got++; }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    long a = syscall(SYS_getppid);
    long b = syscall(SYS_getppid);
    printf("%ld %ld %d\n", a, b, got);
    return 0;
}
"""


def test_injection_with_a_pending_signal(tmp_path, cbuild):
    exe = cbuild("inject_sig", INJECT_SIG)
    results = []

    def getppid(sc):
        if not results:
            os.kill(sc.pid, signal.SIGUSR1)  # pending while we inject
            time.sleep(0.01)
            results.append(holder[0].inject(sc, names.number("getpid")))
        return Native()

    policy = TablePolicy({"getppid": getppid})
    tracer = eng.Tracer(policy)
    holder = [tracer]
    out = tmp_path / "out"
    with open(out, "wb") as f:
        root = tracer.spawn([exe], stdout=f.fileno())
        assert tracer.run() == 0
    assert results == [root.pid]
    a, b, got = out.read_text().split()
    assert a == b == str(os.getpid()) and got == "1"


# -- vDSO ------------------------------------------------------------------------------------------
TIME_PY = "import time; time.time(); time.monotonic(); time.clock_gettime(time.CLOCK_REALTIME)"


def _count_time(argv, tmp_path, vdso="disable", fake=False):
    counts = {"clock_gettime": 0, "gettimeofday": 0, "time": 0}

    def counter(sc):
        counts[sc.name] += 1
        if not fake:
            return Native()
        if sc.name == "clock_gettime":
            sc.mem.write_timespec(sc.args[1], 1234, 5)
            return Value(0)
        if sc.name == "gettimeofday":
            if sc.args[0]:
                sc.mem.write_timeval(sc.args[0], 1234, 6)
            return Value(0)
        if sc.args[0]:
            sc.mem.write_u64(sc.args[0], 1234)
        return Value(1234)

    r = run_traced(argv, {n: counter for n in counts}, tmp_path, vdso=vdso)
    assert r.rc == 0, r.err
    return counts, r.out


@pytest.mark.parametrize("toy", ["time_probe", "time_probe_static"])
def test_vdso_time_calls_become_stops(tmp_path, toys, toy):
    counts, out = _count_time([str(toys / toy), "0"], tmp_path, fake=True)
    # two probes: 2 clock_gettime, 1 gettimeofday, 1 time each (plus the nanosleep's own clock)
    assert counts["clock_gettime"] >= 4 and counts["gettimeofday"] == 2 and counts["time"] == 2
    assert "realtime=1234.000000005 monotonic=1234.000000005 gettimeofday=1234.000006 time=1234" in out


@pytest.mark.parametrize("toy", ["time_probe", "time_probe_static"])
def test_vdso_keep_leaves_it_alone(tmp_path, toys, toy):
    counts, out = _count_time([str(toys / toy), "0"], tmp_path, vdso="keep", fake=True)
    assert counts == {"clock_gettime": 0, "gettimeofday": 0, "time": 0}
    assert "realtime=1234" not in out


def test_vdso_python_and_raw_syscall(tmp_path, toys):
    counts, _ = _count_time([PY, "-c", TIME_PY], tmp_path)
    assert counts["clock_gettime"] >= 3
    kept, _ = _count_time([PY, "-c", TIME_PY], tmp_path, vdso="keep")
    assert kept["clock_gettime"] < counts["clock_gettime"]
    # A raw syscall() always stops, vDSO or not.
    for mode in ("disable", "keep"):
        raw, _ = _count_time([str(toys / "syscall_loop"), "1000", "clock_gettime"], tmp_path, vdso=mode)
        assert raw["clock_gettime"] >= 1000


def test_vdso_hidden_through_exec_chains(tmp_path, toys):
    counts, out = _count_time(["/bin/sh", "-c", f"exec {toys / 'time_probe_static'} 0"], tmp_path,
                              fake=True)
    assert counts["gettimeofday"] == 2 and "time=1234" in out


# -- the tracer dying ------------------------------------------------------------------------------
DYING_TRACER = """
import sys
from simterpose.tracer.engine import Tracer, Policy
from simterpose.tracer import names
from simterpose.tracer.results import Blocked, Native
class P(Policy):
    def __init__(self):
        self.handlers = {names.number("getppid"): self.getppid, names.number("pause"): lambda sc: Blocked()}
    def getppid(self, sc):
        print(sc.pid, flush=True)
        return Native()
t = Tracer(P())
t.spawn(["/bin/sh", "-c", sys.argv[1]])
t.run()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_tracer_killed_by_sigkill_leaves_no_tracee(tmp_path, env_with_project):
    # Three processes report their pids (getppid is traced), one is stopped in a Blocked syscall,
    # the others sleep; then the tracer is SIGKILLed.
    script = (f"for i in 1 2; do ({PY} -c 'import os,time; os.getppid(); time.sleep(60)' &) ; done; "
              f"{PY} -c 'import os, signal; os.getppid(); signal.pause()'")
    proc = subprocess.Popen([PY, "-c", DYING_TRACER, script], stdout=subprocess.PIPE,
                            env=env_with_project, text=True)
    pids = [int(proc.stdout.readline()) for _ in range(3)]
    time.sleep(0.2)
    assert all(_alive(p) for p in pids)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def test_trace_cmd_sigterm_kills_the_tree(tmp_path, env_with_project):
    script = f"{PY} -c 'import os, time; os.getppid(); time.sleep(60)' & {PY} -c 'import os, time; os.getppid(); time.sleep(60)'; wait"
    proc = subprocess.Popen([PY, "-m", "simterpose.cli", "trace", "-f", "-e", "trace=getppid", "--",
                             "/bin/sh", "-c", script], stderr=subprocess.PIPE, env=env_with_project,
                            text=True)
    pids = []
    while len(pids) < 2:
        line = proc.stderr.readline()
        m = re.match(r"\[pid (\d+)\] getppid\(\)", line)
        if m:
            pids.append(int(m.group(1)))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert not [p for p in pids if _alive(p)]
    assert "killed by SIGTERM" in proc.stderr.read()


def test_emulated_time_written_into_a_static_binary_matches_python(tmp_path):
    # Python's time.time() goes through clock_gettime(CLOCK_REALTIME): the fake is what it sees.
    def cg(sc):
        sc.mem.write_timespec(sc.args[1], 1_000_000_000, 250_000_000)
        return Value(0)

    r = run_traced([PY, "-c", "import time; print(time.time())"], {"clock_gettime": cg}, tmp_path)
    assert r.out.strip() == "1000000000.25"
    assert sys.platform == "linux"


NESTED = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static volatile long in_handler;
static void on_usr1(int s) { (void)s; in_handler = syscall(SYS_gettid); }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    long a = syscall(SYS_getppid);
    printf("%ld %ld\n", a, in_handler);
    return 0;
}
"""


def test_injection_while_a_signal_handler_makes_a_traced_syscall(tmp_path, cbuild):
    # The handler runs between the injection and the original call's re-stop, and its own traced
    # syscall (same `syscall()` instruction) must get its own handler, not the original's result.
    exe = cbuild("inject_nested", NESTED)
    injected = []

    def getppid(sc):
        if not injected:
            os.kill(sc.pid, signal.SIGUSR1)
            time.sleep(0.01)
            injected.append(holder[0].inject(sc, names.number("getpid")))
            assert sc.nr == names.number("getppid") and sc.regs.orig_rax == sc.nr
        return Value(111)

    policy = TablePolicy({"getppid": getppid, "gettid": lambda sc: Value(222)})
    tracer = eng.Tracer(policy)
    holder = [tracer]
    out = tmp_path / "out"
    with open(out, "wb") as f:
        root = tracer.spawn([exe], stdout=f.fileno())
        assert tracer.run() == 0
    assert injected == [root.pid]
    assert out.read_text() == "111 222\n"
