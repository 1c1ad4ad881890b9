/*
 * epoll_server PORT NCLIENTS [BIND_ADDR]
 *
 * Single-threaded echo server multiplexing the listening socket and all
 * (nonblocking) client sockets with epoll (level-triggered). Exits once
 * NCLIENTS clients have been accepted and have all closed their connection.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <sys/epoll.h>

static void watch(int epfd, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, op, fd, &ev) < 0)
        die_errno("epoll_ctl(fd %d)", fd);
}

static uint32_t interest(const struct echo_conn *c)
{
    return c->off < c->len ? EPOLLOUT : EPOLLIN;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT NCLIENTS [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long nclients = parse_int(argv[2], "NCLIENTS", 0, 100000);
    ignore_sigpipe();

    int lfd = tcp_listen(port, argc > 3 ? argv[3] : NULL);
    set_nonblocking(lfd); /* a client may vanish between epoll_wait and accept */
    int epfd = epoll_create1(0);
    if (epfd < 0)
        die_errno("epoll_create1");
    if (nclients > 0)
        watch(epfd, EPOLL_CTL_ADD, lfd, EPOLLIN, NULL); /* ptr NULL marks the listener */

    struct echo_conn *conns = xmalloc((size_t)nclients * sizeof *conns);
    long long accepted = 0, open = 0, total = 0;

    while (accepted < nclients || open > 0) {
        struct epoll_event events[64];
        int nev = epoll_wait(epfd, events, 64, -1);
        if (nev < 0) {
            if (errno == EINTR)
                continue;
            die_errno("epoll_wait");
        }
        for (int k = 0; k < nev; k++) {
            struct echo_conn *c = events[k].data.ptr;
            if (c == NULL) {
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
                    struct echo_conn *nc = &conns[accepted++];
                    nc->fd = fd;
                    nc->len = nc->off = 0;
                    watch(epfd, EPOLL_CTL_ADD, fd, EPOLLIN, nc);
                    open++;
                }
                if (accepted == nclients) {
                    watch(epfd, EPOLL_CTL_DEL, lfd, 0, NULL);
                    close(lfd); /* later connection attempts get refused */
                }
                continue;
            }
            uint32_t before = interest(c);
            if (echo_step(c, &total) == ECHO_DONE) {
                /* Explicit DEL rather than relying on close() to do it. */
                watch(epfd, EPOLL_CTL_DEL, c->fd, 0, NULL);
                close(c->fd);
                c->fd = -1;
                open--;
            } else if (interest(c) != before) {
                watch(epfd, EPOLL_CTL_MOD, c->fd, interest(c), c);
            }
        }
    }
    if (nclients == 0)
        close(lfd);
    close(epfd);
    free(conns);
    printf("epoll server: served %lld clients, %lld bytes\n", nclients, total);
    return 0;
}
