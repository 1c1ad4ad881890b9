/* The kernel's floor for one emulated syscall, without any Python (run by interception_floor.py).
 *
 * A tracee calls getppid() N times; a supervisor answers each call with 42 and the kernel runs
 * nothing, in the two ways Linux offers:
 *   ptrace   seccomp RET_TRACE: waitpid, PTRACE_GETREGS, PTRACE_SETREGS (orig_rax = -1, rax = 42),
 *            PTRACE_CONT per call (what simterpose's tracer does at every emulated syscall);
 *   notify   seccomp RET_USER_NOTIF (seccomp_unotify(2)): ioctl NOTIF_RECV, ioctl NOTIF_SEND.
 * Supervisor and tracee share CPU 0, as `simterpose run` pins them by default. Prints one line per
 * method: "<method> <microseconds per call>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long n_calls = 200000;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A filter sending getppid to `action`, everything else allowed; returns seccomp()'s result. */
static int install(unsigned action, unsigned flags)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void tracee_loop(void)
{
    long sum = 0;
    for (long i = 0; i < n_calls; i++)
        sum += syscall(SYS_getppid);
    _exit(sum == 42L * n_calls ? 0 : 1);  /* every call answered by the supervisor */
}

static double with_ptrace(void)
{
    int status;
    struct user_regs_struct regs;
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        install(SECCOMP_RET_TRACE, 0);
        tracee_loop();
    }
    waitpid(child, &status, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, child, 0, 0);
    double t0 = now();
    for (;;) {
        waitpid(child, &status, 0);
        if (WIFEXITED(status) || WIFSIGNALED(status))
            break;
        if ((status >> 16) == PTRACE_EVENT_SECCOMP) {
            ptrace(PTRACE_GETREGS, child, 0, &regs);
            regs.orig_rax = -1;
            regs.rax = 42;
            ptrace(PTRACE_SETREGS, child, 0, &regs);
        }
        ptrace(PTRACE_CONT, child, 0, 0);
    }
    double t = (now() - t0) / n_calls;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ptrace: the tracee saw wrong answers\n");
        exit(1);
    }
    return t;
}

static double with_user_notification(void)
{
    int sv[2], status, listener = -1;
    char cbuf[CMSG_SPACE(sizeof(int))], byte = 'x';
    struct iovec io = {&byte, 1};
    struct msghdr msg = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
    pid_t child = fork();
    if (child == 0) {
        /* The listener is created by the tracee itself and handed to the supervisor (SCM_RIGHTS). */
        int fd = install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        if (fd < 0) {
            perror("seccomp(NEW_LISTENER)");
            _exit(2);
        }
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
        sendmsg(sv[1], &msg, 0);
        close(fd);
        tracee_loop();
    }
    if (recvmsg(sv[0], &msg, 0) <= 0 || CMSG_FIRSTHDR(&msg) == NULL) {
        fprintf(stderr, "notify: no listener received\n");
        exit(1);
    }
    memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof listener);
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    double t0 = now();
    for (long answered = 0; answered < n_calls;) {
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR)
                continue;
            perror("NOTIF_RECV");
            exit(1);
        }
        resp.id = req.id;
        resp.val = 42;
        resp.error = 0;
        resp.flags = 0;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0)
            answered++;
    }
    double t = (now() - t0) / n_calls;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "notify: the tracee saw wrong answers\n");
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n_calls = atol(argv[1]);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    sched_setaffinity(0, sizeof cpus, &cpus);
    printf("ptrace %.3f\n", with_ptrace() * 1e6);
    printf("notify %.3f\n", with_user_notification() * 1e6);
    return 0;
}
