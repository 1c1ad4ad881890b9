/*
 * bulk_receiver PORT [BIND_ADDR]
 *
 * Accept one TCP connection and read it to EOF, checksumming the stream
 * (FNV-1a 64) so the sender's checksum can be compared with ours. Closing
 * afterwards gives the sender the EOF it waits for.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        usage("PORT [BIND_ADDR]");
    const char *port = parse_port(argv[1]);

    int lfd = tcp_listen(port, argc > 2 ? argv[2] : NULL);
    int fd = accept_one(lfd);
    close(lfd);

    static char buf[65536];
    long long total = 0;
    uint64_t sum = FNV64_INIT;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("read after %lld bytes", total);
        if (n == 0)
            break;
        sum = fnv1a64(sum, buf, (size_t)n);
        total += n;
    }
    close(fd);
    printf("receiver: %lld bytes checksum %016llx\n", total, (unsigned long long)sum);
    return 0;
}
