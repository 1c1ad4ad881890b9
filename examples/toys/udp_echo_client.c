/*
 * udp_echo_client HOST PORT N S
 *
 * Send N datagrams of S bytes one at a time, each waiting for its echo.
 * UDP may lose datagrams (or the server may not be up yet), so a datagram
 * is resent when no echo arrives within 1 s (SO_RCVTIMEO), at most 5 times.
 * Datagram i carries pattern stream i; a reply that does not match (a late
 * echo of an earlier resend) is skipped, so only the right echo counts.
 */
#include "toys.h"

#define MAX_RESENDS 5

int main(int argc, char **argv)
{
    if (argc != 5)
        usage("HOST PORT N S");
    const char *host = argv[1];
    const char *port = parse_port(argv[2]);
    long long n = parse_size(argv[3], "N", 0, LLONG_MAX);
    long long s = parse_size(argv[4], "S", 0, 65507); /* max IPv4 UDP payload */

    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        die("cannot resolve '%s': %s", host, gai_strerror(rc));
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0)
        die_errno("socket");
    struct timeval one_second = {1, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &one_second, sizeof one_second) < 0)
        die_errno("setsockopt(SO_RCVTIMEO)");

    char *out = xmalloc((size_t)s);
    char *in = xmalloc((size_t)s + 1); /* +1: a longer reply must not look equal */
    for (long long i = 0; i < n; i++) {
        pattern_fill(out, (size_t)s, (uint64_t)i, 0);
        int sends = 0, echoed = 0;
        while (!echoed) {
            if (sends == 1 + MAX_RESENDS)
                die("no echo for datagram %lld after %d sends", i, sends);
            ssize_t r;
            do
                r = sendto(fd, out, (size_t)s, 0, res->ai_addr, res->ai_addrlen);
            while (r < 0 && errno == EINTR);
            if (r != s)
                die_errno("sendto (datagram %lld)", i);
            sends++;
            /* Wait for the matching echo; a timeout means resend. */
            for (;;) {
                ssize_t got = recvfrom(fd, in, (size_t)s + 1, 0, NULL, NULL);
                if (got < 0) {
                    if (errno == EINTR)
                        continue;
                    if (errno == EAGAIN || errno == EWOULDBLOCK)
                        break;
                    die_errno("recvfrom (datagram %lld)", i);
                }
                if (got == s && memcmp(in, out, (size_t)s) == 0) {
                    echoed = 1;
                    break;
                }
            }
        }
    }
    freeaddrinfo(res);
    close(fd);
    free(out);
    free(in);
    printf("udp client: %lld datagrams of %lld bytes ok\n", n, s);
    return 0;
}
