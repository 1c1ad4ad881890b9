/*
 * fork_server PORT NCLIENTS [BIND_ADDR]
 *
 * Accept NCLIENTS connections, forking a child per connection that echoes
 * until EOF and exits; then wait for all children. Fails if any child did.
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <sys/wait.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        usage("PORT NCLIENTS [BIND_ADDR]");
    const char *port = parse_port(argv[1]);
    long long nclients = parse_int(argv[2], "NCLIENTS", 0, 100000);
    ignore_sigpipe(); /* inherited by the children */

    int lfd = tcp_listen(port, argc > 3 ? argv[3] : NULL);
    fflush(stdout); /* nothing buffered may be duplicated into the children */
    for (long long i = 0; i < nclients; i++) {
        int fd = accept_one(lfd);
        pid_t pid = fork();
        if (pid < 0)
            die_errno("fork");
        if (pid == 0) {
            close(lfd);
            long long n = echo_until_eof(fd);
            if (n < 0)
                die_errno("client %lld: echo", i);
            close(fd);
            _exit(0); /* skip atexit/stdio teardown belonging to the parent */
        }
        close(fd); /* the child owns the connection now */
    }
    close(lfd);

    int failed = 0;
    for (long long i = 0; i < nclients; i++) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            die_errno("wait");
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    if (failed)
        die("%d of %lld children failed", failed, nclients);
    printf("fork server: served %lld clients\n", nclients);
    return 0;
}
