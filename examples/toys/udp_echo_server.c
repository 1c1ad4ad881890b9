/*
 * udp_echo_server PORT N [BIND_ADDR]
 *
 * Receive N datagrams and send each back to whoever sent it
 * (recvfrom/sendto on one unconnected socket), then exit.
 */
#include "toys.h"

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT N [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long n = parse_size(argv[2], "N", 0, LLONG_MAX);

    int fd = bind_socket(port, argc > 3 ? argv[3] : NULL, SOCK_DGRAM);
    static char buf[65536]; /* the largest possible UDP payload fits */
    for (long long i = 0; i < n; i++) {
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof from;
        ssize_t got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
        if (got < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            die_errno("recvfrom (datagram %lld)", i);
        }
        ssize_t sent;
        do
            sent = sendto(fd, buf, (size_t)got, 0, (struct sockaddr *)&from, fromlen);
        while (sent < 0 && errno == EINTR);
        if (sent != got)
            die_errno("sendto (datagram %lld)", i);
    }
    close(fd);
    printf("udp server: echoed %lld datagrams\n", n);
    return 0;
}
