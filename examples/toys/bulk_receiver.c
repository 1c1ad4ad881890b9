/*
 * bulk_receiver PORT [BIND_ADDR [CHUNK]]
 *
 * CHUNK (default 65536, k/M suffixes) is the size of each read(); BIND_ADDR may be "-" for any.
 * Accept one TCP connection and read it to EOF, checksumming the stream
 * (FNV-1a 64) so the sender's checksum can be compared with ours. Closing
 * afterwards gives the sender the EOF it waits for.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4)
        usage("PORT [BIND_ADDR [CHUNK]]");
    const char *port = parse_port(argv[1]);
    const char *bind_addr = argc > 2 && strcmp(argv[2], "-") != 0 ? argv[2] : NULL;
    size_t chunk = argc > 3 ? (size_t)parse_size(argv[3], "CHUNK", 1, 1LL << 30) : 65536;

    int lfd = tcp_listen(port, bind_addr);
    int fd = accept_one(lfd);
    close(lfd);

    char *buf = xmalloc(chunk);
    long long total = 0;
    uint64_t sum = FNV64_INIT;
    for (;;) {
        ssize_t n = read(fd, buf, chunk);
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
