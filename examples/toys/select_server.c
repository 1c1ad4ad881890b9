/*
 * select_server PORT NCLIENTS [BIND_ADDR]
 *
 * Single-threaded echo server multiplexing the listening socket and all
 * (nonblocking) client sockets with select(2). Exits once NCLIENTS clients
 * have been accepted and have all closed their connection.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <sys/select.h>

/* select() cannot watch descriptors >= FD_SETSIZE: refuse them loudly. */
static void check_fd(int fd)
{
    if (fd >= FD_SETSIZE)
        die("descriptor %d does not fit in an fd_set (FD_SETSIZE %d)", fd, FD_SETSIZE);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT NCLIENTS [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long nclients = parse_int(argv[2], "NCLIENTS", 0, FD_SETSIZE);
    ignore_sigpipe();

    int lfd = tcp_listen(port, argc > 3 ? argv[3] : NULL);
    check_fd(lfd);
    set_nonblocking(lfd); /* a client may vanish between select and accept */

    struct echo_conn *conns = xmalloc((size_t)nclients * sizeof *conns);
    long long accepted = 0, open = 0, total = 0;

    while (accepted < nclients || open > 0) {
        fd_set rfds, wfds;
        FD_ZERO(&rfds);
        FD_ZERO(&wfds);
        int maxfd = -1;
        if (accepted < nclients) {
            FD_SET(lfd, &rfds);
            maxfd = lfd;
        }
        for (long long i = 0; i < accepted; i++) {
            struct echo_conn *c = &conns[i];
            if (c->fd < 0)
                continue;
            FD_SET(c->fd, c->off < c->len ? &wfds : &rfds);
            if (c->fd > maxfd)
                maxfd = c->fd;
        }

        if (select(maxfd + 1, &rfds, &wfds, NULL, NULL) < 0) {
            if (errno == EINTR)
                continue;
            die_errno("select");
        }

        /* Serve the clients first: the sets describe them, not new ones. */
        for (long long i = 0; i < accepted; i++) {
            struct echo_conn *c = &conns[i];
            if (c->fd < 0 || !(FD_ISSET(c->fd, &rfds) || FD_ISSET(c->fd, &wfds)))
                continue;
            if (echo_step(c, &total) == ECHO_DONE) {
                close(c->fd);
                c->fd = -1;
                open--;
            }
        }

        if (accepted < nclients && FD_ISSET(lfd, &rfds)) {
            while (accepted < nclients) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                    if (errno == EAGAIN || errno == EWOULDBLOCK)
                        break;
                    die_errno("accept");
                }
                check_fd(fd);
                set_nonblocking(fd);
                conns[accepted].fd = fd;
                conns[accepted].len = conns[accepted].off = 0;
                accepted++;
                open++;
            }
            if (accepted == nclients)
                close(lfd); /* later connection attempts get refused */
        }
    }
    if (nclients == 0)
        close(lfd);
    free(conns);
    printf("select server: served %lld clients, %lld bytes\n", nclients, total);
    return 0;
}
