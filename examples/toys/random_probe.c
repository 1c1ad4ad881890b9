/*
 * random_probe
 *
 * Print 16 bytes, in hex, from every way a Linux program gets random numbers
 * from the kernel: the AT_RANDOM bytes of its exec (getauxval(3)), the glibc
 * getrandom() wrapper and the raw getrandom syscall (getrandom(2)), read,
 * readv and pread on /dev/urandom, read on /dev/random (random(4)), and
 * getrandom in a forked child. Also checks that poll says /dev/urandom is
 * readable. Like time_probe it prints what an emulator is meant to control
 * (here, under `simterpose run --seed N`, the same bytes in every run):
 *
 *   at_random=HEX getrandom=HEX syscall=HEX
 *   urandom_read=HEX urandom_readv=HEX urandom_pread=HEX random_read=HEX poll=POLLIN
 *   child_getrandom=HEX
 */
#include "toys.h" /* first: it defines _GNU_SOURCE */

#include <poll.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define N 16

static void hex(const char *name, const unsigned char *b, const char *end)
{
    printf("%s=", name);
    for (int i = 0; i < N; i++)
        printf("%02x", b[i]);
    fputs(end, stdout);
}

static int open_device(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("open %s", path);
    return fd;
}

static void read_all(int fd, unsigned char *b, const char *what)
{
    ssize_t n = read(fd, b, N);
    if (n != N)
        die_errno("read %s (%zd bytes)", what, n);
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage("");
    unsigned char b[N];

    const unsigned char *at = (const unsigned char *)getauxval(AT_RANDOM);
    if (at == NULL)
        die("no AT_RANDOM in the auxiliary vector");
    hex("at_random", at, " ");
    if (getrandom(b, N, 0) != N)
        die_errno("getrandom");
    hex("getrandom", b, " ");
    if (syscall(SYS_getrandom, b, N, GRND_NONBLOCK) != N)
        die_errno("syscall(getrandom)");
    hex("syscall", b, "\n");

    int fd = open_device("/dev/urandom");
    read_all(fd, b, "/dev/urandom");
    hex("urandom_read", b, " ");
    struct iovec iov[2] = {{b, N / 2}, {b + N / 2, N / 2}};
    if (readv(fd, iov, 2) != N)
        die_errno("readv /dev/urandom");
    hex("urandom_readv", b, " ");
    if (pread(fd, b, N, 0) != N)
        die_errno("pread /dev/urandom");
    hex("urandom_pread", b, " ");
    int rfd = open_device("/dev/random");
    read_all(rfd, b, "/dev/random");
    hex("random_read", b, " ");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, -1) != 1)
        die_errno("poll /dev/urandom");
    printf("poll=%s\n", p.revents & POLLIN ? "POLLIN" : "none");
    close(rfd);
    close(fd);
    fflush(stdout);

    pid_t child = fork();
    if (child < 0)
        die_errno("fork");
    if (child == 0) {
        if (getrandom(b, N, 0) != N)
            die_errno("getrandom in the child");
        hex("child_getrandom", b, "\n");
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the child failed");
    return 0;
}
