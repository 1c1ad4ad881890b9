"""Every timeout is a wait in simulated time (issue 12): poll/select/epoll over pipes, eventfd and
empty sets, futex waits (threading.Event, Lock, pthread_cond_timedwait, sem_timedwait), and POSIX
timers. Each wait lasts exactly its simulated duration, in far less wall-clock time.
"""

import subprocess

import pytest
from net_helpers import PYTHON, emulate, native, py

MODES = ["address-translation", "full-mediation"]

PY_WAITS = r"""
import os, select, socket, threading, time
def measure(name, fn):
    t0 = time.monotonic()
    fn()
    print(name, round(time.monotonic() - t0, 6), flush=True)
r, w = os.pipe()
measure("select-pipe", lambda: select.select([r], [], [], 0.5))
p = select.poll(); p.register(r, select.POLLIN)
measure("poll-pipe", lambda: p.poll(250))
efd = os.eventfd(0)
ep = select.epoll(); ep.register(efd, select.EPOLLIN)
measure("epoll-eventfd", lambda: ep.poll(0.75))
measure("epoll-empty", lambda: select.epoll().poll(0.2))
measure("select-empty", lambda: select.select([], [], [], 0.1))
a, b = socket.socketpair()
measure("poll-unix", lambda: select.select([a], [], [], 0.3))
measure("event-wait", lambda: threading.Event().wait(1.5))
lock = threading.Lock(); lock.acquire()
measure("lock-acquire", lambda: lock.acquire(timeout=0.5))
threading.Timer(0.4, lambda: os.write(w, b"x")).start()
measure("read-pipe-written-by-a-thread", lambda: os.read(r, 1))
threading.Timer(0.6, lambda: b.send(b"y")).start()
measure("recv-unix-sent-by-a-thread", lambda: a.recv(1))
"""

C_WAITS = r"""
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <time.h>
#include <errno.h>

static double mono(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static struct timespec in(clockid_t c, double s)
{
    struct timespec t;
    clock_gettime(c, &t);
    long ns = t.tv_nsec + (long)(s * 1e9);
    t.tv_sec += ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

int main(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;      /* CLOCK_REALTIME deadlines (jemalloc's) */
    pthread_condattr_t attr;
    pthread_cond_t cm;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cm, &attr);
    sem_t sem;
    sem_init(&sem, 0, 0);

    double t0 = mono();
    pthread_mutex_lock(&m);
    struct timespec d = in(CLOCK_REALTIME, 1.0);
    int rc = pthread_cond_timedwait(&c, &m, &d);
    printf("cond_timedwait_realtime %s %.6f\n", rc == ETIMEDOUT ? "ETIMEDOUT" : "?", mono() - t0);
    t0 = mono();
    d = in(CLOCK_MONOTONIC, 0.25);
    rc = pthread_cond_timedwait(&cm, &m, &d);
    printf("cond_timedwait_monotonic %s %.6f\n", rc == ETIMEDOUT ? "ETIMEDOUT" : "?", mono() - t0);
    pthread_mutex_unlock(&m);
    t0 = mono();
    d = in(CLOCK_REALTIME, 0.5);
    rc = sem_timedwait(&sem, &d);
    printf("sem_timedwait %s %.6f\n", rc == -1 && errno == ETIMEDOUT ? "ETIMEDOUT" : "?", mono() - t0);
    return 0;
}
"""

C_TIMERS = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double t0;
static double mono(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static volatile int ticks;
static volatile int code, value;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    ticks++;
    code = si->si_code;
    value = si->si_value.sival_int;
}

static void on_thread(union sigval v)
{
    printf("thread notified value=%d at %.6f\n", v.sival_int, mono() - t0);
    fflush(stdout);
}

int main(void)
{
    t0 = mono();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN, &sa, NULL);

    /* A periodic SIGEV_SIGNAL timer: first at 0.5 s, then every 0.25 s. */
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN;
    ev.sigev_value.sival_int = 42;
    timer_t t;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 250000000}, {0, 500000000}};
    timer_settime(t, 0, &its, NULL);
    while (ticks < 3)
        pause();
    printf("3 signals at %.6f code=%s value=%d\n", mono() - t0, code == SI_TIMER ? "SI_TIMER" : "?", value);
    struct itimerspec cur;
    timer_gettime(t, &cur);
    printf("next in %ld.%09ld every %ld.%09ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec,
           (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    timer_delete(t);

    /* glibc's SIGEV_THREAD: a helper thread, told through SIGEV_THREAD_ID and si_value. */
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = on_thread;
    ev.sigev_value.sival_int = 7;
    timer_create(CLOCK_REALTIME, &ev, &t);
    struct itimerspec once = {{0, 0}, {1, 0}};
    timer_settime(t, 0, &once, NULL);
    sleep(2);
    printf("done at %.6f\n", mono() - t0);
    return 0;
}
"""


def _c(cbuild, name, src):
    return {"host": "h1", "path": str(cbuild(name, src)), "args": []}


@pytest.fixture
def cbuild(tmp_path):
    import subprocess

    def build(name, src):
        c = tmp_path / f"{name}.c"
        c.write_text(src)
        exe = tmp_path / name
        subprocess.run(["cc", "-O2", "-o", str(exe), str(c), "-lpthread", "-lrt"], check=True)
        return exe
    return build


@pytest.mark.parametrize("mode", MODES)
def test_python_timeouts_and_blocking_local_io_wait_in_simulated_time(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", PY_WAITS)], mode).check_ok()
    assert r.stdout(0).splitlines() == [
        "select-pipe 0.5", "poll-pipe 0.25", "epoll-eventfd 0.75", "epoll-empty 0.2", "select-empty 0.1",
        "poll-unix 0.3", "event-wait 1.5", "lock-acquire 0.5", "read-pipe-written-by-a-thread 0.4",
        "recv-unix-sent-by-a-thread 0.6",
    ]
    total = 0.5 + 0.25 + 0.75 + 0.2 + 0.1 + 0.3 + 1.5 + 0.5 + 0.4 + 0.6
    assert r.end(0) == pytest.approx(total, abs=1e-3)
    assert r.procs[0]["wall"] < total  # nobody slept for real


@pytest.mark.parametrize("mode", MODES)
def test_futex_timeouts_of_glibc_condition_variables_and_semaphores(tmp_path, mode, cbuild):
    r = emulate(tmp_path, [_c(cbuild, "c_waits", C_WAITS)], mode).check_ok()
    assert r.stdout(0).splitlines() == [
        "cond_timedwait_realtime ETIMEDOUT 1.000000",
        "cond_timedwait_monotonic ETIMEDOUT 0.250000",
        "sem_timedwait ETIMEDOUT 0.500000",
    ]


@pytest.mark.parametrize("mode", MODES)
def test_posix_timers_signal_and_thread_notifications(tmp_path, mode, cbuild):
    r = emulate(tmp_path, [_c(cbuild, "c_timers", C_TIMERS)], mode).check_ok()
    assert r.stdout(0).splitlines() == [
        "3 signals at 1.000000 code=SI_TIMER value=42",
        "next in 0.250000000 every 0.250000000",
        "thread notified value=7 at 2.000000",
        "done at 3.000000",
    ]


UNIX_SERVER = r"""
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen()
c, _ = s.accept()                      # waits (in simulated time) for the other scenario process
print("server got", c.recv(100).decode(), flush=True)
c.sendall(b"pong")
"""

UNIX_CLIENT = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
time.sleep(0.25)
s.sendall(b"ping")
print("client got", s.recv(100).decode(), "at", round(time.monotonic() - 86400, 6))
"""


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_of_one_host_talk_over_a_unix_socket(tmp_path, mode):
    path = tmp_path / "s.sock"
    r = emulate(tmp_path, [py("h1", UNIX_SERVER, path), py("h1", UNIX_CLIENT, path, start_time=0.5)],
                mode).check_ok()
    assert r.stdout(0) == "server got ping\n"
    assert r.stdout(1) == "client got pong at 0.75\n"


def test_a_task_asleep_in_the_kernel_on_something_outside_the_simulation_is_named_not_hung(tmp_path):
    # flock(2) is left to the kernel: a process waiting there for a lock that another holds while
    # it sleeps in simulated time would hang the run (that time cannot pass while a task is in the
    # kernel). Instead, the watchdog (STALL_SECONDS of silence) names the syscall and stops that
    # process; the other processes of the run finish normally.
    holder = "import fcntl, time; f = open('lk', 'w'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(1)"
    waiter = "import fcntl; f = open('lk', 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('got it')"
    r = emulate(tmp_path, [py("h1", holder, cwd=str(tmp_path)), py("h1", waiter, cwd=str(tmp_path), start_time=0.5),
                           {"host": "h2", "path": "/bin/sleep", "args": ["2"]}], "address-translation")
    assert r.rc == 1
    holder_, waiter_, sleeper = r.procs
    assert "sleeps in the kernel in flock()" in waiter_["error"]
    assert holder_["ok"] and holder_["end"] == 1.0
    assert sleeper["ok"] and sleeper["end"] == 2.0


FIFO_SCRIPT = ("rm -f f g; mkfifo f g; "
               "(sleep 1; echo reader-first > f) & cat f; wait; "          # the reader waits in open
               "(sleep 0.5; cat g) & echo writer-first > g; wait; "         # the writer waits in open
               "exec 3<>f; echo read-write >&3; head -c 10 <&3; echo; exec 3>&-; "   # O_RDWR never waits
               "cat f & echo last > f; wait")                               # EOF when the writer closes


@pytest.mark.parametrize("mode", MODES)
def test_fifos_opened_by_path_wait_for_the_other_side_in_simulated_time(tmp_path, mode):
    """fifo(7): a blocking open for reading waits for a writer, and one for writing for a reader;
    here in simulated time (the other side sleeps in simulated time first), with Linux's output."""
    (tmp_path / "native").mkdir()
    expected = subprocess.run(["bash", "-c", FIFO_SCRIPT], cwd=tmp_path / "native", capture_output=True,
                              text=True, timeout=60, check=True).stdout
    assert expected == "reader-first\nwriter-first\nread-write\nlast\n"
    r = emulate(tmp_path, [{"host": "h1", "path": "/bin/bash", "args": ["-c", FIFO_SCRIPT], "cwd": str(tmp_path)}],
                mode).check_ok()
    assert r.stdout(0) == expected
    assert r.end(0) == pytest.approx(1.5, abs=1e-6)


C_SIGMASK_WAITS = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_usr1(int s) { (void)s; handled++; }

static void kick(long ms)     /* a child sends us SIGUSR1 after ms */
{
    pid_t parent = getpid();
    if (fork() == 0) {
        struct timespec t = {0, ms * 1000000L};
        nanosleep(&t, NULL);
        kill(parent, SIGUSR1);
        _exit(0);
    }
}

static void report(const char *name, int rc, int err)
{
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("%s rc=%d %s handled=%d usr1-blocked-after=%d\n", name, rc,
           rc < 0 ? (err == EINTR ? "EINTR" : strerror(err)) : "-", (int)handled, sigismember(&now, SIGUSR1));
    fflush(stdout);
    handled = 0;
    wait(NULL);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, none;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr1, NULL);   /* blocked everywhere but in the waits */
    int p[2];
    pipe(p);
    struct pollfd pfd = {p[0], POLLIN, 0};
    struct timespec five = {5, 0}, short_ = {0, 300000000L};
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]}, out[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int rc;

    kick(300); rc = ppoll(&pfd, 1, &five, &none); report("ppoll", rc, errno);
    kick(300); rc = pselect(p[0] + 1, &r, NULL, NULL, &five, &none); report("pselect", rc, errno);
    kick(300); rc = epoll_pwait(ep, out, 4, 5000, &none); report("epoll_pwait", rc, errno);
    kick(300); rc = epoll_pwait2(ep, out, 4, &five, &none); report("epoll_pwait2", rc, errno);
    /* A wait whose mask keeps it blocked: it times out, the signal stays pending (then taken). */
    kick(100); rc = ppoll(&pfd, 1, &short_, &usr1); report("ppoll-mask-blocks-it", rc, errno);
    rc = sigsuspend(&none); report("sigsuspend-takes-it", rc, errno);
    return 0;
}
"""


@pytest.mark.parametrize("mode", MODES)
def test_waits_under_a_temporary_signal_mask_end_as_on_linux(tmp_path, mode, cbuild):
    """ppoll, pselect, epoll_pwait and epoll_pwait2 with a mask that unblocks a signal the program
    otherwise blocks: the signal ends the wait (EINTR), its handler runs, the old mask is back —
    as natively; and each wait lasts exactly until the signal's simulated date."""
    exe = cbuild("sigmask_waits", C_SIGMASK_WAITS)
    expected = native([exe])[0]
    assert expected.splitlines()[0] == "ppoll rc=-1 EINTR handled=1 usr1-blocked-after=1"
    r = emulate(tmp_path, [{"host": "h1", "path": str(exe), "args": []}], mode).check_ok()
    assert r.stdout(0) == expected
    assert r.end(0) == pytest.approx(4 * 0.3 + 0.3, abs=1e-3)


C_SPIN = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile int flag;

static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec t = {0, 300000000L};
    nanosleep(&t, NULL);          /* 0.3 s of simulated time */
    flag = 1;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) {               /* "forever": compute without any syscall, never ending */
        for (;;)
            flag++;
    }
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
    while (!flag)                 /* spin on memory: no syscall at all */
        ;
    pthread_join(t, NULL);
    printf("the spinning thread saw the sleeper's write\n");
    return 0;
}
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_thread_spinning_on_memory_is_preempted_and_sees_a_sleeping_threads_write(tmp_path, mode, cbuild):
    """With --cpu-model measured, a task computing without syscalls is preempted and its CPU time
    charged: the clock moves, so the thread asleep in simulated time wakes and writes the flag the
    other spins on (without preemption the run hangs: the loop waits for the spinner forever)."""
    exe = cbuild("spin", C_SPIN)
    expected = native([exe])[0]
    r = emulate(tmp_path, [{"host": "h1", "path": str(exe), "args": []}], mode, cpu_model="measured").check_ok()
    assert r.stdout(0) == expected == "the spinning thread saw the sleeper's write\n"
    assert r.end(0) >= 0.3


@pytest.mark.parametrize("mode", MODES)
def test_a_computation_without_syscalls_ends_at_its_kill_date(tmp_path, mode, cbuild):
    """An endless loop without syscalls (--cpu-model measured) is preempted until its kill date,
    where it is killed as asked — not left to run forever."""
    exe = cbuild("spin", C_SPIN)
    r = emulate(tmp_path, [{"host": "h1", "path": str(exe), "args": ["forever"], "kill_time": 0.4,
                            "expected_final_state": "running"}], mode, cpu_model="measured").check_ok()
    assert r.procs[0]["end"] == pytest.approx(0.4, abs=1e-9)


PY_POLL_AN_EPOLL_FD = r"""
import select, socket, threading
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a, b = socket.socketpair()                       # a kernel descriptor, for the kernel's half
ep = select.epoll()
ep.register(r.fileno(), select.EPOLLIN)
ep.register(a.fileno(), select.EPOLLIN)
print("nothing yet", select.select([ep.fileno()], [], [], 0)[0] == [])
threading.Timer(0.3, lambda: w.sendto(b"x", r.getsockname())).start()
print("select wakes on the simulated half", select.select([ep.fileno()], [], [], 5)[0] == [ep.fileno()])
p = select.poll(); p.register(ep.fileno(), select.POLLIN)
print("poll", [ev for _, ev in p.poll(0)])
r.recv(1)
print("drained", p.poll(0))
threading.Timer(0.2, lambda: b.send(b"y")).start()
print("poll wakes on the kernel half", [ev for _, ev in p.poll(5000)])
"""


@pytest.mark.parametrize("mode", MODES)
def test_poll_and_select_on_an_epoll_descriptor_see_both_halves(tmp_path, mode):
    """An epoll descriptor is readable (poll, select) while its interest list has an event to
    report, whether the event is on a simulated socket or a kernel descriptor, as on Linux."""
    expected = native([PYTHON, "-c", PY_POLL_AN_EPOLL_FD])[0]
    assert "select wakes on the simulated half True" in expected
    r = emulate(tmp_path, [py("h1", PY_POLL_AN_EPOLL_FD)], mode).check_ok()
    assert r.stdout(0) == expected
    assert r.end(0) == pytest.approx(0.5, abs=1e-3)


C_TIMER_OVERRUNS = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t handled, overrun;

static void on_usr1(int s, siginfo_t *si, void *ctx) { (void)s; (void)ctx; handled++; overrun = si->si_overrun; }

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    timer_t t;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec every10ms = {{0, 10000000L}, {0, 10000000L}};
    timer_settime(t, 0, &every10ms, NULL);
    struct timespec d = {0, 105000000L};     /* 10 expiries while SIGUSR1 is blocked */
    nanosleep(&d, NULL);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);   /* one signal, the other 9 expiries overran */
    printf("handled %d si_overrun %d timer_getoverrun %d\n", (int)handled, (int)overrun, timer_getoverrun(t));
    return 0;
}
"""


@pytest.mark.parametrize("mode", MODES)
def test_posix_timer_overruns_are_counted_while_the_signal_is_pending(tmp_path, mode, cbuild):
    """timer_getoverrun(2): expiries while the timer's signal is still pending queue nothing; the
    one signal delivered says how many overran (si_overrun), as natively (where the count may be
    off by one: kernel timers are not exact)."""
    exe = cbuild("timer_overruns", C_TIMER_OVERRUNS)
    natively = native([exe])[0].split()
    assert natively[:2] == ["handled", "1"] and 8 <= int(natively[3]) <= 10 and natively[3] == natively[5]
    r = emulate(tmp_path, [{"host": "h1", "path": str(exe), "args": []}], mode).check_ok()
    assert r.stdout(0) == "handled 1 si_overrun 9 timer_getoverrun 9\n"
