/*
 * pingpong_server PORT N S [BIND_ADDR]
 *
 * Accept one TCP connection, then N times: read exactly S bytes and write
 * them back. The request/response lock-step makes it a latency benchmark.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5)
        usage("PORT N S [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long n = parse_size(argv[2], "N", 0, LLONG_MAX);
    long long s = parse_size(argv[3], "S", 1, 1LL << 30);
    ignore_sigpipe();

    int lfd = tcp_listen(port, argc > 4 ? argv[4] : NULL);
    int fd = accept_one(lfd);
    close(lfd); /* one client only */

    char *buf = xmalloc((size_t)s);
    for (long long i = 0; i < n; i++) {
        ssize_t got = read_full(fd, buf, (size_t)s);
        if (got < 0)
            die_errno("read message %lld", i);
        if (got != s)
            die("client closed after %lld messages (%zd of %lld bytes of the next)", i, got, s);
        if (write_full(fd, buf, (size_t)s) < 0)
            die_errno("write message %lld", i);
    }
    close(fd);
    free(buf);
    printf("server: echoed %lld messages of %lld bytes\n", n, s);
    return 0;
}
