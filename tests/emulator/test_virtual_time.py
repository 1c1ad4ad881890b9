"""Virtual time on a SimGrid platform, as `simterpose run` shows it to real, unmodified programs.

Every test runs `simterpose run` as its own process on a real SimGrid platform
(examples/platforms) and real binaries: the toys of build/toys, python3, /bin/sh, or a small C
program compiled here. With `--cpu-model none` computing costs no simulated time at all, so the
dates below are exact.
"""

import re
import subprocess
import time

import pytest
from simrun_helpers import EPOCH, FOUR_HOSTS, c_builder, runner


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


@pytest.fixture(scope="module")
def cbuild(tmp_path_factory):
    return c_builder(tmp_path_factory.mktemp("cprogs"))


TIME_PROBE_LINE = re.compile(r"realtime=(\d+\.\d{9}) monotonic=(\d+\.\d{9}) "
                             r"gettimeofday=(\d+\.\d{6}) time=(\d+)")


def probe(stdout: str) -> tuple[list[dict], str]:
    """time_probe's output: its two clock lines (as dicts of strings) and its slept_monotonic."""
    lines = stdout.splitlines()
    assert len(lines) == 3, stdout
    clocks = []
    for line in lines[:2]:
        m = TIME_PROBE_LINE.fullmatch(line)
        assert m, line
        clocks.append(dict(zip(("realtime", "monotonic", "gettimeofday", "time"), m.groups(), strict=True)))
    assert lines[2].startswith("slept_monotonic="), stdout
    return clocks, lines[2].split("=", 1)[1]


UPTIME = 86_400


def expected_clocks(date: str, epoch: int = EPOCH) -> dict:
    """What time_probe prints at simulated date `date` ("S.NNNNNNNNN")."""
    sec, ns = date.split(".")
    # MONOTONIC counts from a fixed simulated boot one day before date 0 (never 0: Go checks it).
    return {"realtime": f"{epoch + int(sec)}.{ns}", "monotonic": f"{UPTIME + int(sec)}.{ns}",
            "gettimeofday": f"{epoch + int(sec)}.{ns[:6]}", "time": str(epoch + int(sec))}


# -- sleeping ----------------------------------------------------------------------------------

def test_a_2s_sleep_ends_at_exactly_2s_in_a_fraction_of_the_wall_time(run):
    r = run([{"host": "h1", "path": "{toys}/time_probe", "args": [2]}], "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    (p,) = r.procs
    assert (p["start"], p["end"], p["exit_status"]) == (0.0, 2.0, 0)
    assert r.doc["simulated_time"] == 2.0
    # The sleep never happens for real: the process is done well before 2 s of wall time.
    assert p["wall"] < 1.0
    assert r.wall < 1.5


def test_realtime_and_monotonic_read_the_simulated_date(run):
    r = run([{"host": "h1", "path": "{toys}/time_probe", "args": [2]},
             {"host": "h2", "path": "{toys}/time_probe", "args": [0.75], "start_time": 1.5}],
            "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    # h1: from date 0 to date 2.
    (before, after), slept = probe(r.out(0))
    assert before == expected_clocks("0.000000000")
    assert after == expected_clocks("2.000000000")
    assert slept == "2.000000000"
    # h2 starts at 1.5, sleeps 0.75: REALTIME is the epoch plus the simulated date, to the ns.
    (before, after), slept = probe(r.out(1))
    assert before == expected_clocks("1.500000000")
    assert after == expected_clocks("2.250000000")
    assert slept == "0.750000000"


def test_a_static_binary_reads_virtual_clocks_too(run):
    # No dynamic loader, so nothing can be preloaded: the clock calls are virtualised at the
    # syscall level (with the vDSO hidden, glibc's clock_gettime becomes a real syscall).
    r = run([{"host": "h1", "path": "{toys}/time_probe_static", "args": [1.25], "start_time": 0.5}],
            "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    (before, after), slept = probe(r.out(0))
    assert before == expected_clocks("0.500000000")
    assert after == expected_clocks("1.750000000")
    assert slept == "1.250000000"


def test_two_processes_on_two_hosts_end_in_the_order_of_their_sleeps(run, tmp_path):
    # Each appends its host name to one shared file after sleeping: the file shows the simulated
    # order, although h1's process was started first.
    shared = tmp_path / "order.txt"
    r = run([{"host": "h1", "path": "/bin/sh", "args": ["-c", f"sleep 2; echo h1 >> {shared}"]},
             {"host": "h2", "path": "/bin/sh", "args": ["-c", f"sleep 0.5; echo h2 >> {shared}"]}],
            "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    assert [p["end"] for p in r.procs] == [2.0, 0.5]
    assert shared.read_text() == "h2\nh1\n"


# -- start_time, kill_time, --stop-time, --epoch -----------------------------------------------

def test_start_time_and_kill_time_are_honoured(run):
    r = run([{"host": "h1", "path": "/bin/sleep", "args": [100], "start_time": 1, "kill_time": 3,
              "expected_exit": None},
             {"host": "h2", "path": "{toys}/time_probe", "args": [0.5], "start_time": 2.5}],
            "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    killed, late = r.procs
    # Started at 1, killed (SIGKILL: 128+9) at 3, long before its 100 s sleep is over.
    assert (killed["start"], killed["end"], killed["exit_status"]) == (1.0, 3.0, 137)
    # The late starter's first clock read is at 2.5.
    assert (late["start"], late["end"]) == (2.5, 3.0)
    (before, _), _ = probe(r.out(1))
    assert before == expected_clocks("2.500000000")
    assert r.doc["simulated_time"] == 3.0


def test_stop_time_kills_everything_still_running_at_that_date(run):
    procs = [{"host": "h1", "path": "/bin/sleep", "args": [100], "expected_exit": None},
             {"host": "h2", "path": "/bin/sleep", "args": [1]}]
    r = run(procs, "--cpu-model", "none", "--stop-time", "5")
    assert r.rc == 0, r.stdout + r.stderr
    assert r.doc["simulated_time"] == 5.0
    assert [(p["end"], p["exit_status"]) for p in r.procs] == [(5.0, 137), (1.0, 0)]
    # A process killed by --stop-time did not exit as expected unless told so.
    procs[0]["expected_exit"] = 0
    r = run(procs, "--cpu-model", "none", "--stop-time", "5")
    assert r.rc == 1
    assert "UNEXPECTED" in r.stdout


def test_epoch_sets_realtime_at_date_0(run):
    r = run([{"host": "h1", "path": "{toys}/time_probe", "args": [1]}], "--cpu-model", "none",
            "--epoch", "1000000000")
    assert r.rc == 0, r.stderr
    (before, after), _ = probe(r.out(0))
    assert before == expected_clocks("0.000000000", epoch=1_000_000_000)
    assert after == expected_clocks("1.000000000", epoch=1_000_000_000)


# -- sleeps, waits and timers ------------------------------------------------------------------

CLOCK_PROBE = r"""
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <sys/select.h>
#include <time.h>

#define BOOT 86400LL  /* MONOTONIC at simulated date 0 (the simulated uptime) */

static void show(const char *what)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("%s %lld.%09ld\n", what, (long long)t.tv_sec - BOOT, t.tv_nsec);  /* the date */
}

int main(void)
{
    struct timespec t = {BOOT + 2, 500000000};
    show("start");
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);   /* until MONOTONIC = 2.5 */
    show("abs_monotonic");
    clock_gettime(CLOCK_REALTIME, &t);                           /* until the next whole second */
    t.tv_sec += 1;
    t.tv_nsec = 0;
    clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, NULL);
    show("abs_realtime");
    t.tv_sec = BOOT + 1;                                         /* a date in the past: no wait */
    t.tv_nsec = 0;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    show("abs_past");
    struct timeval tv = {0, 250000};
    select(0, NULL, NULL, NULL, &tv);
    show("select");
    poll(NULL, 0, 750);
    show("poll");
    struct timespec ts = {0, 500000000};
    ppoll(NULL, 0, &ts, NULL);
    show("ppoll");
    ts.tv_sec = 1;
    ts.tv_nsec = 0;
    pselect(0, NULL, NULL, NULL, &ts, NULL);
    show("pselect");
    return 0;
}
"""


def test_absolute_sleeps_and_descriptorless_select_poll_wait_in_simulated_time(run, cbuild):
    prog = cbuild("clock_probe", CLOCK_PROBE)
    # Started at 1: an absolute sleep until MONOTONIC 2.5 ends at 2.5, not at 1 + 2.5.
    r = run([{"host": "h1", "path": prog, "start_time": 1}], "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    assert r.out(0).splitlines() == [
        "start 1.000000000",
        "abs_monotonic 2.500000000",
        "abs_realtime 3.000000000",   # REALTIME = epoch (whole seconds) + date: next second is date 3
        "abs_past 3.000000000",
        "select 3.250000000",
        "poll 4.000000000",
        "ppoll 4.500000000",
        "pselect 5.500000000",
    ]
    assert r.procs[0]["end"] == 5.5


ALARMS = """
import signal, time
def date():
    return time.monotonic() - 86400   # MONOTONIC minus the simulated uptime at date 0
signal.signal(signal.SIGALRM, lambda s, f: print("SIGALRM at", date(), flush=True))
signal.alarm(3)
time.sleep(10)          # interrupted at 3 by the alarm; Python sleeps the rest (PEP 475)
print("slept until", date())
signal.setitimer(signal.ITIMER_REAL, 0.5, 0.25)
time.sleep(1)
signal.setitimer(signal.ITIMER_REAL, 0)
print("done at", date())
"""


def test_alarm_and_setitimer_raise_sigalrm_at_their_virtual_dates(run):
    r = run([{"host": "h1", "path": "/usr/bin/python3", "args": ["-c", ALARMS]}], "--cpu-model", "none")
    assert r.rc == 0, r.stdout + r.stderr
    assert r.out(0).splitlines() == [
        "SIGALRM at 3.0",
        "slept until 10.0",
        "SIGALRM at 10.5",      # setitimer(0.5, every 0.25) at date 10
        "SIGALRM at 10.75",
        "SIGALRM at 11.0",
        "done at 11.0",
    ]


def test_a_timer_wakes_a_process_waiting_in_pause(run):
    code = ("import signal, time\n"
            "signal.signal(signal.SIGALRM, lambda s, f: None)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.5)\n"
            "signal.pause()\n"
            "print(time.monotonic() - 86400)\n")   # the date: MONOTONIC minus the simulated uptime
    r = run([{"host": "h1", "path": "/usr/bin/python3", "args": ["-c", code]}], "--cpu-model", "none",
            timeout=5)
    assert r.out(0) == "0.5\n"


ALARM_SIGINFO = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int code = -1, pid = -1;
static void handler(int sig, siginfo_t *si, void *ctx) { (void)sig; (void)ctx; code = si->si_code; pid = si->si_pid; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    pause();
    printf("handler code=%d pid=%d\n", code, pid);
    raise(SIGALRM);                                   /* sent by the process itself: SI_TKILL */
    printf("raise code=%d self=%d\n", code, pid == getpid());

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct itimerval it = {{0, 0}, {0, 500000}};
    setitimer(ITIMER_REAL, &it, NULL);
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    printf("sigwaitinfo sig=%d code=%d pid=%d\n", sig, si.si_code, si.si_pid);

    int fd = signalfd(-1, &set, 0);
    alarm(1);
    struct signalfd_siginfo ssi;
    ssize_t n = read(fd, &ssi, sizeof ssi);
    printf("signalfd n=%zd signo=%u code=%d pid=%u\n", n, ssi.ssi_signo, ssi.ssi_code, ssi.ssi_pid);
    return 0;
}
"""


@pytest.mark.parametrize("mode", ["address-translation", "full-mediation"])
def test_the_sigalrm_of_alarm_and_setitimer_comes_from_the_kernel(run, cbuild, mode):
    """it_real_fn sends SIGALRM with si_code SI_KERNEL (128) and si_pid 0; the emulator sends it
    with kill(2) (SI_USER, its own pid): the program sees the kernel's, in a SA_SIGINFO handler,
    from sigwaitinfo and from a signalfd, as it does natively."""
    prog = cbuild("alarm_siginfo", ALARM_SIGINFO)
    native = subprocess.run([prog], capture_output=True, text=True, timeout=30, check=True).stdout
    assert "handler code=128 pid=0" in native, native
    r = run([{"host": "h1", "path": prog}], "--cpu-model", "none", "--mediate", mode)
    assert r.rc == 0, r.stdout + r.stderr
    assert r.out(0) == native


# -- CPU models --------------------------------------------------------------------------------

def test_a_cpu_bound_loop_takes_twice_as_long_on_a_host_half_as_fast(run):
    # h1 computes at 1Gf, h4 at 500Mf; the real CPU time of each burst is replayed on the host.
    loop = {"path": "{toys}/cpu_loop", "args": ["60M"]}
    r = run([dict(loop, host="h1"), dict(loop, host="h4")], "--cpu-model", "measured", platform=FOUR_HOSTS)
    assert r.rc == 0, r.stderr
    fast, slow = (p["end"] - p["start"] for p in r.procs)
    assert fast > 0.02  # it did compute: tens of ms at least
    assert slow / fast == pytest.approx(2.0, rel=0.05)


CPU_CLOCK = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    volatile unsigned x = 1;
    for (long i = 0, n = atol(argv[1]); i < n; i++)
        x = x * 2654435761u + (unsigned)i;
    long long cpu1 = ns(CLOCK_PROCESS_CPUTIME_ID);
    long long thread = ns(CLOCK_THREAD_CPUTIME_ID);
    long long cpu2 = ns(CLOCK_PROCESS_CPUTIME_ID);
    long long mono = ns(CLOCK_MONOTONIC) - 86400000000000LL;   /* the date, not the uptime */
    printf("%lld %lld %lld %lld\n", cpu1, thread, cpu2, mono);
    return 0;
}
"""


CPU_TIMER = r"""
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;
static void on_signal(int sig) { (void)sig; fired++; }
static void *idle(void *arg) { (void)arg; pause(); return NULL; }

int main(void)
{
    signal(SIGUSR1, on_signal);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    timer_t timer;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &timer) != 0) {
        printf("timer_create: %s\n", strerror(errno));
        return 1;
    }
    struct itimerspec its = {{0, 0}, {0, 10000000}};       /* 10 ms of CPU time */
    timer_settime(timer, 0, &its, NULL);
    int calls = 0;
    while (!fired && calls < 1000) {
        syscall(SYS_time, NULL);                            /* one intercepted call */
        calls++;
    }
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    timer_gettime(timer, &its);
    printf("fired=%d calls=%d cpu_ms=%lld left=%ld\n", (int)fired, calls,
           (long long)cpu.tv_sec * 1000 + cpu.tv_nsec / 1000000, its.it_value.tv_nsec);

    pthread_t thread;
    pthread_create(&thread, NULL, idle, NULL);
    clockid_t clock;
    pthread_getcpuclockid(thread, &clock);
    timer_t thread_timer;
    printf("thread clock timer: %s\n", timer_create(clock, &ev, &thread_timer) == 0 ? "ok" : strerror(errno));
    printf("thread clock read: %s\n", clock_gettime(clock, &cpu) == 0 ? "ok" : strerror(errno));
    return 0;
}
"""


def test_timers_on_cpu_time_clocks_expire_when_the_charged_cpu_time_reaches_them(run, cbuild):
    """timer_create on CPU-time clocks (haproxy's per-thread watchdog: the run used to end with
    "unsupported syscall timer_create"): the timer expires once the computation charged to the
    process reaches it; with --cpu-model none nothing is charged and it never does. A thread's
    CPU clock (pthread_getcpuclockid) can be read and can carry a timer."""
    prog = cbuild("cpu_timer", CPU_TIMER)
    # per-syscall=0.001: every intercepted call charges 1 ms first, so the 10th call reaches the
    # 10 ms; the timers are looked at when the clock next moves, the 11th call's charge, and the
    # handler runs as that call returns (the same count every run).
    r = run([{"host": "h1", "path": prog}], "--cpu-model", "per-syscall=0.001", platform=FOUR_HOSTS)
    assert r.rc == 0, r.stderr
    first, *rest = r.out(0).splitlines()
    values = dict(kv.split("=") for kv in first.split())
    assert (values["fired"], values["calls"], values["left"]) == ("1", "11", "0"), first   # disarmed once expired
    assert rest == ["thread clock timer: ok", "thread clock read: ok"]
    r = run([{"host": "h1", "path": prog}], "--cpu-model", "none", platform=FOUR_HOSTS)
    assert r.rc == 0, r.stderr
    assert r.out(0).splitlines() == ["fired=0 calls=1000 cpu_ms=0 left=10000000",
                                     "thread clock timer: ok", "thread clock read: ok"]


def cpu_clock_values(r, index: int) -> list[int]:
    return [int(v) for v in r.out(index).split()]


def test_the_cpu_time_clocks_count_the_simulated_cpu_time_charged(run, cbuild):
    prog = cbuild("cpu_clock", CPU_CLOCK)
    one = {"path": prog, "args": ["100000000"]}
    # per-syscall=0.001: each intercepted syscall costs 1 ms of reference CPU (2 ms on the 500Mf h4),
    # charged before it is answered; so consecutive CPU clock reads differ by exactly that.
    r = run([dict(one, host="h1"), dict(one, host="h4")], "--cpu-model", "per-syscall=0.001",
            platform=FOUR_HOSTS)
    assert r.rc == 0, r.stderr
    for index, step in ((0, 1_000_000), (1, 2_000_000)):
        cpu1, thread, cpu2, mono = cpu_clock_values(r, index)
        assert cpu1 > 0
        assert (thread - cpu1, cpu2 - thread, mono - cpu2) == (step, step, step)
        assert mono == cpu2 + step  # everything this process did was CPU: no sleep
    # none: no CPU time is ever charged.
    r = run([dict(one, host="h1")], "--cpu-model", "none", platform=FOUR_HOSTS)
    assert cpu_clock_values(r, 0) == [0, 0, 0, 0]
    # measured: the loop's real CPU time (tens of ms), which is also all the simulated time elapsed.
    r = run([dict(one, host="h1")], "--cpu-model", "measured", platform=FOUR_HOSTS)
    cpu1, thread, cpu2, mono = cpu_clock_values(r, 0)
    assert cpu1 > 10_000_000
    assert cpu1 <= thread <= cpu2 <= mono
    assert mono == pytest.approx(cpu2, rel=0.05)


def test_per_syscall_cpu_model_is_exact(run):
    # time_probe's syscalls between its two MONOTONIC reads: gettimeofday, time, getrandom (glibc's
    # malloc draws its tcache key at the first allocation, printf's buffer; seeded, hence
    # intercepted), clock_nanosleep, clock_gettime(REALTIME), clock_gettime(MONOTONIC): 6 x 1 ms on
    # top of the 2 s sleep.
    r = run([{"host": "h1", "path": "{toys}/time_probe", "args": [2]}], "--cpu-model", "per-syscall=0.001")
    assert r.rc == 0, r.stderr
    (before, after), slept = probe(r.out(0))
    assert slept == "2.006000000"
    # Each clock read is 1 ms after the previous one.
    rt = before["realtime"].split(".")
    assert before["monotonic"] == f"{int(rt[0]) - EPOCH + UPTIME}.{int(rt[1]) + 1_000_000:09d}"


# -- determinism and escaping it ---------------------------------------------------------------

def test_two_runs_give_byte_identical_virtual_results_and_logs(run, tmp_path, cbuild):
    prog = cbuild("clock_probe", CLOCK_PROBE)
    procs = [{"host": "h1", "path": "{toys}/time_probe", "args": [1.5]},
             {"host": "h2", "path": "{toys}/time_probe_static", "args": [0.25], "start_time": 0.5},
             {"host": "h1", "path": prog},
             {"host": "h2", "path": "/bin/sh", "args": ["-c", "sleep 1; echo forked and waited"]}]
    results = []
    for _ in range(2):
        r = run(procs, "--cpu-model", "per-syscall=0.0001")
        assert r.rc == 0, r.stdout + r.stderr
        logs = {f.name: f.read_bytes() for f in sorted(r.logs.iterdir())}
        results.append((r.virtual(), logs))
    (virt1, logs1), (virt2, logs2) = results
    assert virt1 == virt2
    assert sorted(logs1) == sorted(logs2)
    assert len(logs1) == 3 * len(procs)  # .stdout, .stderr, .syscalls each
    for name in logs1:
        assert logs1[name] == logs2[name], f"{name} differs between two runs"
    assert b"clock_nanosleep" in logs1["0-h1-time_probe.syscalls"]


def test_vdso_keep_leaves_the_clocks_real(run):
    r = run([{"host": "h1", "path": "{toys}/time_probe", "args": [1]}], "--cpu-model", "none",
            "--vdso", "keep")
    assert r.rc == 0, r.stderr
    (before, after), slept = probe(r.out(0))
    # The clock reads went to the vDSO: real time, not the simulated date...
    assert before["monotonic"] != expected_clocks("0.000000000")["monotonic"]
    assert abs(float(before["realtime"]) - time.time()) < 3600
    # ...while the sleep (a syscall) was still simulated: it took no real second.
    assert float(slept) < 0.5
    assert r.procs[0]["end"] == 1.0


RUSAGE = r"""
import resource, subprocess
x = sum(range(2_000_000))          # real CPU work, charged nothing with --cpu-model none
subprocess.run(["true"])
print(resource.getrusage(resource.RUSAGE_SELF)[:3], resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
"""


def test_getrusage_reports_the_charged_cpu_time_not_the_real_one(run):
    # Real CPU times differ from run to run (and leaked into iperf3's JSON): they must not show.
    outs = set()
    for _ in range(2):
        r = run([{"host": "h1", "path": "/usr/bin/python3", "args": ["-c", RUSAGE]}], "--cpu-model", "none")
        assert r.rc == 0, r.stderr
        outs.add(r.out(0))
    assert outs == {"(0.0, 0.0, 0) (0.0, 0.0)\n"}
