/*
 * thread_server PORT NCLIENTS [BIND_ADDR]
 *
 * Accept NCLIENTS connections, starting a thread per connection that echoes
 * until EOF; then join all threads. Fails if any thread hit an error.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>

struct client {
    pthread_t thread;
    int fd;
    int err; /* errno of the failure, 0 if all went well */
};

static void *serve(void *arg)
{
    struct client *c = arg;
    if (echo_until_eof(c->fd) < 0)
        c->err = errno;
    close(c->fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT NCLIENTS [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long nclients = parse_int(argv[2], "NCLIENTS", 0, 10000);
    ignore_sigpipe();

    int lfd = tcp_listen(port, argc > 3 ? argv[3] : NULL);
    struct client *clients = xmalloc((size_t)nclients * sizeof *clients);
    for (long long i = 0; i < nclients; i++) {
        clients[i].fd = accept_one(lfd);
        clients[i].err = 0;
        int rc = pthread_create(&clients[i].thread, NULL, serve, &clients[i]);
        if (rc) {
            errno = rc;
            die_errno("pthread_create");
        }
    }
    close(lfd);

    int failed = 0;
    for (long long i = 0; i < nclients; i++) {
        pthread_join(clients[i].thread, NULL);
        if (clients[i].err) {
            fprintf(stderr, "%s: client %lld: echo: %s\n", program_invocation_short_name, i,
                    strerror(clients[i].err));
            failed++;
        }
    }
    free(clients);
    if (failed)
        die("%d of %lld clients failed", failed, nclients);
    printf("thread server: served %lld clients\n", nclients);
    return 0;
}
