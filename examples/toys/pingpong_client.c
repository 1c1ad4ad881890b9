/*
 * pingpong_client HOST PORT N S
 *
 * Connect (retrying while refused, so it may start before the server), then
 * N times: send S bytes, read S bytes back and check they are what was sent.
 * Message i carries pattern stream i, so a reordered or stale reply is
 * detected, not just a corrupted one.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc != 5)
        usage("HOST PORT N S");
    const char *host = argv[1];
    const char *port = parse_port(argv[2]);
    long long n = parse_size(argv[3], "N", 0, LLONG_MAX);
    long long s = parse_size(argv[4], "S", 1, 1LL << 30);
    ignore_sigpipe();

    int fd = tcp_connect_retry(host, port);
    char *out = xmalloc((size_t)s);
    char *in = xmalloc((size_t)s);
    for (long long i = 0; i < n; i++) {
        pattern_fill(out, (size_t)s, (uint64_t)i, 0);
        if (write_full(fd, out, (size_t)s) < 0)
            die_errno("write message %lld", i);
        ssize_t got = read_full(fd, in, (size_t)s);
        if (got < 0)
            die_errno("read reply %lld", i);
        if (got != s)
            die("server closed during reply %lld (%zd of %lld bytes)", i, got, s);
        if (memcmp(in, out, (size_t)s) != 0)
            die("reply %lld differs from the message sent", i);
    }
    close(fd);
    free(out);
    free(in);
    printf("client: %lld messages of %lld bytes ok\n", n, s);
    return 0;
}
