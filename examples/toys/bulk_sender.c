/*
 * bulk_sender HOST PORT M [CHUNK]
 *
 * Connect (retrying while refused) and send M bytes of pattern stream 0 in
 * writes of CHUNK bytes (default 65536), then shutdown(SHUT_WR) and wait for
 * the receiver to close: only then has everything surely been read.
 * M and CHUNK take 1000-based suffixes: 100M = 100000000 bytes.
 * The checksum depends on M only, not on CHUNK.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5)
        usage("HOST PORT M [CHUNK]");
    const char *host = argv[1];
    const char *port = parse_port(argv[2]);
    long long m = parse_size(argv[3], "M", 0, LLONG_MAX);
    long long chunk = argc > 4 ? parse_size(argv[4], "CHUNK", 1, 1LL << 30) : 65536;
    ignore_sigpipe();

    int fd = tcp_connect_retry(host, port);
    char *buf = xmalloc((size_t)chunk);
    uint64_t sum = FNV64_INIT;
    for (long long sent = 0; sent < m;) {
        size_t len = (size_t)(m - sent < chunk ? m - sent : chunk);
        pattern_fill(buf, len, 0, (uint64_t)sent);
        sum = fnv1a64(sum, buf, len);
        if (write_full(fd, buf, len) < 0)
            die_errno("write after %lld bytes", sent);
        sent += (long long)len;
    }
    if (shutdown(fd, SHUT_WR) < 0)
        die_errno("shutdown");

    /* The receiver sends nothing; any byte before EOF is a protocol error. */
    for (;;) {
        ssize_t n = read(fd, buf, (size_t)chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("waiting for the receiver to close");
        if (n == 0)
            break;
        die("receiver unexpectedly sent %zd bytes", n);
    }
    close(fd);
    free(buf);
    printf("sender: %lld bytes checksum %016llx\n", m, (unsigned long long)sum);
    return 0;
}
