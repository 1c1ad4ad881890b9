/*
 * simterpose launcher: the first process of every traced tree.
 *
 *   launcher [-C DIR] NR[,NR...] -- PATH ARGV0 ARGV1 ...
 *
 * Why a tiny C helper instead of fork() + Python code in the child: the tracer runs inside a
 * multi-threaded interpreter (SimGrid actors are OS threads), where running Python after fork() is
 * fragile. The helper is started with posix_spawn, so nothing of the parent runs in the child.
 *
 * Order matters (see FACTS.md section 1): the filter must be loaded only after the tracer has set its
 * ptrace options, otherwise SECCOMP_RET_TRACE syscalls fail with ENOSYS. Hence PTRACE_TRACEME, then a
 * SIGSTOP that the tracer waits for (and sets PTRACE_O_TRACESECCOMP etc. at), and only then the
 * filter and the exec. We use TRACEME rather than PTRACE_SEIZE because this self-stop gives the
 * tracer a race-free point to set its options before the filter exists.
 */
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void fail(const char *what, int err)
{
    fprintf(stderr, "simterpose launcher: %s: %s\n", what, strerror(err));
    _exit(127);
}

int main(int argc, char **argv)
{
    int i = 1;
    const char *dir = NULL;
    if (i + 1 < argc && strcmp(argv[i], "-C") == 0) {
        dir = argv[i + 1];
        i += 2;
    }
    if (argc - i < 4 || strcmp(argv[i + 1], "--") != 0) {
        fprintf(stderr, "usage: launcher [-C DIR] NR[,NR...] -- PATH ARGV0 [ARGS...]\n");
        return 127;
    }
    const char *numbers = argv[i];
    char *path = argv[i + 2];
    char **child_argv = &argv[i + 3];

    /* A program starts with every signal at its default action and none blocked, as from a
     * shell: not with what the tracer's process had (Python ignores SIGPIPE and SIGXFSZ, and
     * posix_spawn leaves glibc's internal signals 32 and 33 ignored), which exec keeps. Else
     * `yes | head -c 1` would not kill yes with SIGPIPE, it would print "Broken pipe". */
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = {0};
    for (int sig = 1; sig < NSIG; sig++) /* the raw call: glibc's refuses 32 and 33 */
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask); /* EINVAL for KILL, STOP */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* The tracer cannot chdir for us: that would move all of its threads. */
    if (dir != NULL && chdir(dir) != 0)
        fail(dir, errno);
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
        fail("ptrace(TRACEME)", errno);
    raise(SIGSTOP); /* the tracer sets its options here */

    /* Unsubscribed syscalls are allowed without a stop; subscribed ones stop the tracee (TRACE).
     * Syscalls of another ABI (int 0x80, x32) raise SIGSYS (TRAP) instead of killing the process:
     * the tracer sees the signal, with the ABI in its siginfo, and names it in a clear "unsupported"
     * error. (Not TRACE with another data value: telling the two apart would cost a GETEVENTMSG
     * at every stop.) */
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL)
        fail("seccomp_init", ENOMEM);
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
    if (rc < 0)
        fail("seccomp_attr_set(BADARCH)", -rc);
    /* prctl(PR_SET_NO_NEW_PRIVS) lets an unprivileged user load the filter; libseccomp does it. */
    const char *p = numbers;
    while (*p) {
        char *end;
        long nr = strtol(p, &end, 10);
        if (end == p)
            fail("bad syscall list", EINVAL);
        rc = seccomp_rule_add(ctx, SCMP_ACT_TRACE(0), (int)nr, 0);
        if (rc < 0)
            fail("seccomp_rule_add", -rc);
        p = (*end == ',') ? end + 1 : end;
    }
    rc = seccomp_load(ctx);
    if (rc < 0)
        fail("seccomp_load", -rc);
    seccomp_release(ctx);

    execvp(path, child_argv);
    fail(path, errno);
    return 127;
}
