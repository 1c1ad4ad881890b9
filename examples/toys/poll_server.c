/*
 * poll_server PORT NCLIENTS [BIND_ADDR]
 *
 * Single-threaded echo server multiplexing the listening socket and all
 * (nonblocking) client sockets with poll(2). Exits once NCLIENTS clients
 * have been accepted and have all closed their connection.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <poll.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT NCLIENTS [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long nclients = parse_int(argv[2], "NCLIENTS", 0, 100000);
    ignore_sigpipe();

    int lfd = tcp_listen(port, argc > 3 ? argv[3] : NULL);
    set_nonblocking(lfd); /* a client may vanish between poll and accept */

    struct echo_conn *conns = xmalloc((size_t)nclients * sizeof *conns);
    struct pollfd *pfds = xmalloc((size_t)(nclients + 1) * sizeof *pfds);
    long long *owner = xmalloc((size_t)(nclients + 1) * sizeof *owner); /* pfds[k] -> conns index, -1: listener */
    long long accepted = 0, open = 0, total = 0;

    while (accepted < nclients || open > 0) {
        /* Rebuild the interest list: simple, and O(n) is fine for a toy. */
        nfds_t nfds = 0;
        if (accepted < nclients) {
            pfds[nfds] = (struct pollfd){.fd = lfd, .events = POLLIN};
            owner[nfds++] = -1;
        }
        for (long long i = 0; i < accepted; i++) {
            struct echo_conn *c = &conns[i];
            if (c->fd < 0)
                continue;
            short ev = c->off < c->len ? POLLOUT : POLLIN;
            pfds[nfds] = (struct pollfd){.fd = c->fd, .events = ev};
            owner[nfds++] = i;
        }

        if (poll(pfds, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            die_errno("poll");
        }

        for (nfds_t k = 0; k < nfds; k++) {
            if (!pfds[k].revents)
                continue;
            if (owner[k] < 0) {
                /* Accept everything pending, up to NCLIENTS. */
                while (accepted < nclients) {
                    int fd = accept(lfd, NULL, NULL);
                    if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                            continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                            break;
                        die_errno("accept");
                    }
                    set_nonblocking(fd);
                    conns[accepted].fd = fd;
                    conns[accepted].len = conns[accepted].off = 0;
                    accepted++;
                    open++;
                }
                if (accepted == nclients)
                    close(lfd); /* later connection attempts get refused */
                continue;
            }
            struct echo_conn *c = &conns[owner[k]];
            if (echo_step(c, &total) == ECHO_DONE) {
                close(c->fd);
                c->fd = -1;
                open--;
            }
        }
    }
    if (nclients == 0)
        close(lfd);
    free(conns);
    free(pfds);
    free(owner);
    printf("poll server: served %lld clients, %lld bytes\n", nclients, total);
    return 0;
}
