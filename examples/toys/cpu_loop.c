/*
 * cpu_loop ITERATIONS
 *
 * Pure computation, no syscall inside the loop: under an emulator its
 * duration shows the cost of just running a traced process. ITERATIONS
 * takes 1000-based suffixes (10M = 10000000).
 */
#include "toys.h"

/* Written each iteration so the compiler cannot drop or shorten the loop. */
static volatile uint32_t sink;

int main(int argc, char **argv)
{
    if (argc != 2)
        usage("ITERATIONS");
    long long iterations = parse_size(argv[1], "ITERATIONS", 0, LLONG_MAX);

    uint64_t x = 0;
    for (long long i = 0; i < iterations; i++) {
        x = mix64(x ^ (uint64_t)i);
        sink = (uint32_t)x;
    }
    printf("cpu_loop: %lld iterations result %08x\n", iterations, (unsigned)(uint32_t)(x ^ (x >> 32)));
    return 0;
}
