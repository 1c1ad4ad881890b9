"""The engine on real processes: emulation in one stop, exit stops, blocking, process trees, exec,
signals, exit statuses, io_uring refusal, CPU pinning."""

import errno
import os
import signal
import time

import pytest
from conftest import PY, TablePolicy, run_traced

from simterpose.tracer import engine as eng
from simterpose.tracer import names
from simterpose.tracer.results import Blocked, Errno, Native, Unsupported, Value


class CountingTracer(eng.Tracer):
    """Counts syscall-exit stops, to prove an emulated syscall costs exactly one stop."""

    exit_stops = 0

    def _on_syscall_exit(self, task):
        self.exit_stops += 1
        super()._on_syscall_exit(task)


def test_value_and_errno_emulated_in_one_stop(tmp_path):
    calls = []

    def getpid(sc):
        calls.append(sc.tid)
        return Value(4242)

    def socket_(sc):
        calls.append(sc.tid)
        assert sc.args[0] == 2 and sc.iarg(1) & 0xF == 1  # AF_INET, SOCK_STREAM
        return Errno(errno.EACCES)

    policy = TablePolicy({"getpid": getpid, "socket": socket_})
    tracer = CountingTracer(policy)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        tracer.spawn([PY, "-c", "import os, socket\nprint(os.getpid(), os.getpid())\n"
                      "try:\n socket.socket()\nexcept OSError as e: print(e.errno)"], stdout=f.fileno())
        assert tracer.run() == 0
    assert out.read_text().split() == ["4242", "4242", str(errno.EACCES)]
    assert len(calls) == 3
    assert tracer.exit_stops == 0


def test_native_on_exit_sees_and_rewrites_result(tmp_path):
    seen = []

    def getuid(sc):
        return Native(on_exit=lambda sc, ret: seen.append(ret) or 31337)

    r = run_traced([PY, "-c", "import os; print(os.getuid())"], {"getuid": getuid}, tmp_path)
    assert r.rc == 0
    assert seen == [os.getuid()]
    assert r.out.strip() == "31337"


def test_unsubscribed_syscalls_never_stop(tmp_path):
    seen = set()
    r = run_traced(["/bin/sh", "-c", "echo hi; /bin/true"],
                   {"getppid": lambda sc: seen.add(sc.name) or Native()}, tmp_path)
    assert r.rc == 0 and r.out == "hi\n"
    assert seen <= {"getppid"}


def test_blocked_stays_stopped_until_completed(tmp_path):
    policy = TablePolicy({"nanosleep": lambda sc: Blocked("sleep"),
                          "clock_nanosleep": lambda sc: Blocked("sleep")})
    tracer = eng.Tracer(policy)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        proc = tracer.spawn([PY, "-c", "import time; time.sleep(100); print('woke')"], stdout=f.fileno())
        while tracer.step():
            pass
    [task] = tracer.blocked()
    assert task.tid == proc.pid
    time.sleep(0.05)
    # The tracee is in a ptrace stop ("t"), not running or sleeping in the kernel.
    assert open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "t"
    assert out.read_text() == ""
    t0 = time.monotonic()
    tracer.complete(task, Value(0))
    assert tracer.run() == 0
    assert time.monotonic() - t0 < 5
    assert out.read_text() == "woke\n"


def test_retry_reruns_handler(tmp_path):
    ready = []

    def sleep(sc):
        return Value(0) if ready else Blocked()

    policy = TablePolicy({"clock_nanosleep": sleep, "nanosleep": sleep})
    tracer = eng.Tracer(policy)
    tracer.spawn([PY, "-c", "import time; time.sleep(50)"])
    while tracer.step():
        pass
    [task] = tracer.blocked()
    assert tracer.retry(task) is False
    ready.append(1)
    assert tracer.retry(task) is True
    assert tracer.run() == 0


def test_unsupported_stops_the_run_with_a_clear_message(tmp_path):
    def no(sc):
        raise Unsupported(sc.name, "not in this test")

    messages = []
    tracer = eng.Tracer(TablePolicy({"getpid": no}), log=messages.append)
    tracer.spawn([PY, "-c", "import os; os.getpid(); import time; time.sleep(30)"])
    t0 = time.monotonic()
    rc = tracer.run()
    assert time.monotonic() - t0 < 10
    assert rc != 0 and not tracer.tasks
    assert "unsupported syscall getpid: not in this test" in messages[0]


@pytest.mark.parametrize("abi", ["int80", "x32", "own_sigsys"])
def test_foreign_abi_is_named_and_a_programs_own_sigsys_is_its_own(tmp_path, cbuild, abi):
    """A syscall of another ABI (int 0x80, x32) stops the run with a message naming it; a SIGSYS the
    program raises itself is delivered to it as usual (its handler runs)."""
    exe = cbuild("foreign_abi", r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void on_sys(int s) { (void)s; write(1, "own sigsys\n", 11); _exit(3); }
int main(int argc, char **argv) {
    long r;
    signal(SIGSYS, on_sys);
    if (!strcmp(argv[1], "int80")) {            /* getpid, i386 number 20 */
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    } else if (!strcmp(argv[1], "x32")) {       /* getpid, x32 number 39 | __X32_SYSCALL_BIT */
        __asm__ volatile("syscall" : "=a"(r) : "a"(0x40000000L + 39) : "rcx", "r11", "memory");
    } else {
        raise(SIGSYS);
    }
    printf("survived %ld\n", r);
    return 0;
}
""")
    messages = []
    tracer = eng.Tracer(TablePolicy({"nanosleep": lambda sc: Value(0)}), log=messages.append)
    out = tmp_path / "out"
    with open(out, "wb") as o:
        tracer.spawn([exe, abi], stdout=o.fileno())
        rc = tracer.run()
    if abi == "own_sigsys":
        assert (rc, out.read_text(), messages) == (3, "own sigsys\n", [])
    else:
        kind = "x32" if abi == "x32" else "32-bit (int 0x80)"
        number = 39 if abi == "x32" else 20
        assert rc != 0 and out.read_text() == ""
        assert messages == [f"unsupported syscall ABI {kind}: syscall number {number} in process "
                            f"{messages[0].rsplit(' ', 1)[1]}"]


def test_io_uring_setup_is_refused(tmp_path):
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nbuf = ctypes.create_string_buffer(120)\n"
            "rc = libc.syscall(425, 8, buf)\nprint(rc, ctypes.get_errno())")
    r = run_traced([PY, "-c", code], {}, tmp_path)
    assert r.out.split() == ["-1", str(errno.ENOSYS)]


# -- process trees ---------------------------------------------------------------------------------
def test_follows_fork_exec_and_threads(tmp_path):
    code = """
import os, threading, subprocess, sys
def t(): os.getpid()
ths = [threading.Thread(target=t) for _ in range(4)]
[x.start() for x in ths]; [x.join() for x in ths]
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        os.getpid()
        os.execv("/bin/sh", ["sh", "-c", "exit %d" % i])
    pids.append(pid)
codes = sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids)
print(os.getpid(), codes)
"""
    stops = []
    r = run_traced([PY, "-c", code], {"getpid": lambda sc: stops.append((sc.pid, sc.tid)) or Native()},
                   tmp_path)
    assert r.rc == 0, r.err
    root = int(r.out.split()[0])
    assert r.out.split(None, 1)[1].strip() == "[0, 1, 2, 3, 4]"
    threads = [f for f in r.policy.forks if f[2]]
    procs = [f for f in r.policy.forks if not f[2]]
    assert len(threads) >= 4 and len(procs) >= 5
    # getpid seen from the 4 threads (pid = root, tid != root) and the 5 children.
    assert len({tid for pid, tid in stops if pid == root and tid != root}) >= 4
    assert {c for _, c, _ in procs} <= {pid for pid, _ in stops} | {c for _, c, _ in procs}
    assert len({pid for pid, _ in stops if pid != root}) == 5
    assert len(r.policy.execs) >= 6  # the root's own exec and the five children's
    assert sorted(os.WEXITSTATUS(s) for p, s in r.policy.exits if p != root) == [0, 1, 2, 3, 4]
    assert not r.tracer.tasks


def test_many_quick_children_early_sigstop(tmp_path):
    # Children that start and exit at once exercise both orders of the child's first SIGSTOP and
    # the parent's fork event.
    code = "import os\nfor i in range(60):\n  p = os.fork()\n  if p == 0: os._exit(i % 7)\n  os.waitpid(p, 0)\nprint('ok')"
    r = run_traced([PY, "-c", code], {"getpid": lambda sc: Native()}, tmp_path)
    assert r.rc == 0 and r.out == "ok\n"
    assert len([f for f in r.policy.forks if not f[2]]) == 60
    assert not r.tracer.tasks and not r.tracer._early


def test_exec_from_a_non_leader_thread(tmp_path):
    code = f"""
import os, threading, time
def go():
    os.execv({PY!r}, [{PY!r}, "-c", "import os; print('after', os.getpid()); raise SystemExit(7)"])
threading.Thread(target=go).start()
time.sleep(30)
"""
    r = run_traced([PY, "-c", code], {"getpid": lambda sc: Value(4242)}, tmp_path)
    assert r.rc == 7, r.err
    assert r.out == "after 4242\n"  # the new image is still traced and filtered
    assert not r.tracer.tasks


def test_exit_codes_and_deaths_by_signal(tmp_path):
    assert run_traced(["/bin/sh", "-c", "exit 3"], {}, tmp_path).rc == 3
    r = run_traced([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], {}, tmp_path)
    assert r.rc == 128 + signal.SIGSEGV
    [(pid, status)] = r.policy.exits
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    # A real crash (NULL dereference), delivered through a signal-delivery stop.
    r = run_traced([PY, "-c", "import ctypes; ctypes.string_at(0)"], {}, tmp_path)
    assert r.rc == 128 + signal.SIGSEGV
    assert (r.policy.signals[-1][1]) == signal.SIGSEGV


def test_exec_failure_exits_127_with_a_message(tmp_path):
    r = run_traced(["/nonexistent/prog", "x"], {}, tmp_path)
    assert r.rc == 127
    assert "/nonexistent/prog" in r.err and "No such file" in r.err


# -- signals -------------------------------------------------------------------------------------
def test_sigalrm_interrupts_blocking_recv(tmp_path):
    code = """
import signal, socket
class Alarm(Exception): pass
def on(sig, frm): raise Alarm()
signal.signal(signal.SIGALRM, on)
a, b = socket.socketpair()
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    a.recv(10)
except Alarm:
    print("interrupted")
"""
    recvs = []
    r = run_traced([PY, "-c", code], {"recvfrom": lambda sc: recvs.append(sc.tid) or Native()}, tmp_path)
    assert r.rc == 0 and r.out == "interrupted\n"
    assert recvs and (r.tracer.root.pid, signal.SIGALRM) in r.policy.signals


def test_sigalrm_with_restart_repeats_the_stop(tmp_path, cbuild):
    # A C handler with SA_RESTART: the kernel restarts recv, and its seccomp stop comes again.
    exe = cbuild("restart_recv", r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static int sv[2];
static void on_alarm(int s) { (void)s; write(sv[1], "x", 1); }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    alarm(1);
    char c; ssize_t n = recv(sv[0], &c, 1, 0);
    printf("%zd %c\n", n, c);
    return 0;
}""")
    recvs = []
    r = run_traced([exe], {"recvfrom": lambda sc: recvs.append(sc.tid) or Native()}, tmp_path)
    assert r.rc == 0 and r.out == "1 x\n"
    assert len(recvs) == 2  # restarted syscalls stop again: handlers must be idempotent


def test_sigchld_reaches_the_parent(tmp_path):
    code = """
import os, signal, time
got = []
signal.signal(signal.SIGCHLD, lambda s, f: got.append(s))
pid = os.fork()
if pid == 0:
    os._exit(5)
while not got: time.sleep(0.01)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), len(got))
"""
    r = run_traced([PY, "-c", code], {}, tmp_path)
    assert r.rc == 0 and r.out == "5 1\n"
    assert any(sig == signal.SIGCHLD for _, sig in r.policy.signals)


def test_sigterm_to_the_tree(tmp_path):
    code = "import os, time\nfor i in range(3):\n  if os.fork() == 0: time.sleep(60); os._exit(0)\ntime.sleep(60)"
    policy = TablePolicy({})
    tracer = eng.Tracer(policy)
    root = tracer.spawn([PY, "-c", code])
    deadline = time.monotonic() + 10
    while len([f for f in policy.forks if not f[2]]) < 3 and time.monotonic() < deadline:
        tracer.step()
    pids = [root.pid] + [c for _, c, t in policy.forks if not t]
    for p in pids:
        os.kill(p, signal.SIGTERM)
    t0 = time.monotonic()
    assert tracer.run() == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 10
    killed = {p: os.WTERMSIG(s) for p, s in policy.exits if os.WIFSIGNALED(s)}
    assert all(killed.get(p) == signal.SIGTERM for p in pids)


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGTSTP"])
def test_group_stop_never_hangs(tmp_path, sig):
    code = f"import os, signal; os.kill(os.getpid(), signal.{sig}); print('after')"
    t0 = time.monotonic()
    r = run_traced([PY, "-c", code], {"getpid": lambda sc: Native()}, tmp_path)
    assert r.rc == 0 and r.out == "after\n"
    assert time.monotonic() - t0 < 10


def test_cpu_pinning(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs to tell pinned from unpinned")
    before = os.sched_getaffinity(0)
    seen = []

    def getpid(sc):
        seen.append(os.sched_getaffinity(sc.pid))
        return Native()

    try:
        r = run_traced([PY, "-c", "import os; os.getpid()"], {"getpid": getpid}, tmp_path, cpu=1)
        assert os.sched_getaffinity(0) == {1}
    finally:
        os.sched_setaffinity(0, before)
    assert r.rc == 0 and seen == [{1}]


def test_names_table():
    assert names.number("connect") == 42 and names.name(42) == "connect"
    assert names.name(435) == "clone3" and names.name(9999) == "syscall_9999"
    with pytest.raises(ValueError):
        names.number("no_such_syscall")
