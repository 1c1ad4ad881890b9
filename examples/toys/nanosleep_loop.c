/*
 * nanosleep_loop N MICROSECONDS
 *
 * N consecutive nanosleeps of MICROSECONDS each (glibc nanosleep, as a
 * normal program would do): under an emulator the sleeps should take
 * simulated, not real, time. N takes 1000-based suffixes.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc != 3)
        usage("N MICROSECONDS");
    long long n = parse_size(argv[1], "N", 0, LLONG_MAX);
    long long us = parse_int(argv[2], "MICROSECONDS", 0, 1000000000LL);

    for (long long i = 0; i < n; i++) {
        struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) < 0) {
            if (errno != EINTR)
                die_errno("nanosleep");
        }
    }
    printf("nanosleep_loop: %lld x %lld us\n", n, us);
    return 0;
}
