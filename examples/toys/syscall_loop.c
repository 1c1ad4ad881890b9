/*
 * syscall_loop N [getpid|clock_gettime|nanosleep0]
 *
 * Make N real syscalls of one kind (default getpid) to measure the per
 * syscall overhead of a tracer. They go through syscall(2) so that neither
 * glibc caching (getpid) nor the vDSO (clock_gettime) can avoid the kernel.
 * nanosleep0 is a raw nanosleep of 0 ns: a syscall that may block.
 * N = 0 is the "empty program" baseline. N takes 1000-based suffixes.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <sys/syscall.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        usage("N [getpid|clock_gettime|nanosleep0]");
    long long n = parse_size(argv[1], "N", 0, LLONG_MAX);
    const char *kind = argc > 2 ? argv[2] : "getpid";

    if (strcmp(kind, "getpid") == 0) {
        for (long long i = 0; i < n; i++)
            syscall(SYS_getpid);
    } else if (strcmp(kind, "clock_gettime") == 0) {
        struct timespec ts;
        for (long long i = 0; i < n; i++)
            if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) < 0)
                die_errno("clock_gettime");
    } else if (strcmp(kind, "nanosleep0") == 0) {
        for (long long i = 0; i < n; i++) {
            struct timespec zero = {0, 0};
            if (syscall(SYS_nanosleep, &zero, NULL) < 0 && errno != EINTR)
                die_errno("nanosleep");
        }
    } else {
        usage("N [getpid|clock_gettime|nanosleep0]");
    }
    printf("syscall_loop: %lld %s\n", n, kind);
    return 0;
}
