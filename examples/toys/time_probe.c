/*
 * time_probe [SLEEP_SECONDS]
 *
 * Print what the four usual clocks say, sleep SLEEP_SECONDS (default 1,
 * may be fractional), print them again, then the monotonic time slept.
 * Unlike the other toys it prints times: that is its job, to show whether
 * an emulator virtualises them. It goes through the glibc wrappers, which
 * use the vDSO (no real syscall), the hardest path for a tracer to catch.
 * Also built with -static (time_probe_static), where the vDSO is found
 * without the dynamic loader.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <sys/time.h>

static void now(clockid_t clock, struct timespec *ts)
{
    if (clock_gettime(clock, ts) < 0)
        die_errno("clock_gettime(%d)", (int)clock);
}

static struct timespec probe(void)
{
    struct timespec rt, mono;
    struct timeval tv;
    now(CLOCK_REALTIME, &rt);
    now(CLOCK_MONOTONIC, &mono);
    if (gettimeofday(&tv, NULL) < 0)
        die_errno("gettimeofday");
    time_t t = time(NULL);
    printf("realtime=%lld.%09ld monotonic=%lld.%09ld gettimeofday=%lld.%06ld time=%lld\n",
           (long long)rt.tv_sec, rt.tv_nsec, (long long)mono.tv_sec, mono.tv_nsec,
           (long long)tv.tv_sec, (long)tv.tv_usec, (long long)t);
    return mono;
}

int main(int argc, char **argv)
{
    if (argc > 2)
        usage("[SLEEP_SECONDS]");
    struct timespec nap = argc > 1 ? parse_seconds(argv[1], "SLEEP_SECONDS") : (struct timespec){1, 0};

    struct timespec before = probe();
    while (nanosleep(&nap, &nap) < 0) {
        if (errno != EINTR)
            die_errno("nanosleep");
    }
    struct timespec after = probe();

    long long ns = (after.tv_sec - before.tv_sec) * 1000000000LL + (after.tv_nsec - before.tv_nsec);
    printf("slept_monotonic=%lld.%09lld\n", ns / 1000000000LL, ns % 1000000000LL);
    return 0;
}
