/*
 * toys.h - helpers shared by the toy programs of examples/toys.
 *
 * The toys are the workloads every simterpose test runs, first natively and
 * then under the emulator, and the two outputs are compared byte for byte.
 * So everything here is deterministic: no timings, pids or ports are printed,
 * and the data patterns depend only on the program arguments.
 *
 * Everything is `static inline` so that each toy (a single .c file) can
 * include this header without getting unused-function warnings and without
 * linking anything else.
 */
#ifndef TOYS_H
#define TOYS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* program_invocation_short_name, accept4 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Errors and usage                                                    */
/* ------------------------------------------------------------------ */

/* Print "prog: message" on stderr and exit 1. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Like die(), with ": strerror(errno)" appended. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void die_errno(const char *fmt, ...)
{
    int saved = errno; /* stdio below may clobber errno */
    va_list ap;
    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(saved));
    exit(1);
}

/* Print the synopsis and exit 2 (the usual exit code for a usage error). */
__attribute__((noreturn))
static inline void usage(const char *synopsis)
{
    fprintf(stderr, "usage: %s %s\n", program_invocation_short_name, synopsis);
    exit(2);
}

/* ------------------------------------------------------------------ */
/* Argument parsing: strict, so that a typo is an error, not a zero.   */
/* ------------------------------------------------------------------ */

/* A plain decimal integer in [min, max]. */
static inline long long parse_int(const char *s, const char *what, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        die("invalid %s '%s' (expected an integer in [%lld, %lld])", what, s, min, max);
    return v;
}

/*
 * A count with an optional 1000-based suffix: k = 10^3, M = 10^6, G = 10^9
 * (so "100M" is 100000000, like network rates, not 100 MiB).
 */
static inline long long parse_size(const char *s, const char *what, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    long long mult = 1;
    if (errno || end == s || v < 0)
        die("invalid %s '%s' (expected a count >= 0)", what, s);
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': mult = 1000LL; end++; break;
    case 'M': mult = 1000000LL; end++; break;
    case 'G': mult = 1000000000LL; end++; break;
    default: die("invalid %s '%s' (suffixes: k, M, G, 1000-based)", what, s);
    }
    if (*end != '\0' || v > LLONG_MAX / mult)
        die("invalid %s '%s'", what, s);
    v *= mult;
    if (v < min || v > max)
        die("%s %lld out of range [%lld, %lld]", what, v, min, max);
    return v;
}

/* A TCP/UDP port; 0 is refused because the toys never print their port. */
static inline const char *parse_port(const char *s)
{
    parse_int(s, "port", 1, 65535);
    return s; /* getaddrinfo wants the string form */
}

/* Non-negative, possibly fractional, seconds (e.g. "0.25") as a timespec. */
static inline struct timespec parse_seconds(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(d) || d < 0 || d > 1e9)
        die("invalid %s '%s' (expected seconds >= 0)", what, s);
    struct timespec ts;
    ts.tv_sec = (time_t)d;
    ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9 + 0.5);
    if (ts.tv_nsec >= 1000000000L) { /* rounding up, e.g. 0.9999999999 */
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ------------------------------------------------------------------ */
/* Deterministic data and checksums                                    */
/* ------------------------------------------------------------------ */

/* splitmix64 finaliser: a cheap, well-mixed 64-bit hash. */
static inline uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/*
 * Fill buf with bytes [pos, pos + len) of the pattern stream number `seed`.
 * A byte depends only on (seed, position), so a stream is identical however
 * it is cut into chunks. Bytes look random, and every 256th byte (including
 * the first) is forced to zero so that even a tiny message carries a NUL:
 * a data path that treats payloads as C strings gets caught.
 */
static inline void pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t pos)
{
    unsigned char *p = buf;
    uint64_t key = mix64(seed);
    uint64_t word = mix64(key ^ (pos >> 3)); /* 8 bytes per hash */
    for (size_t i = 0; i < len; i++, pos++) {
        if ((pos & 7) == 0)
            word = mix64(key ^ (pos >> 3));
        p[i] = (pos & 255) == 0 ? 0 : (unsigned char)(word >> (8 * (pos & 7)));
    }
}

/* FNV-1a 64: start from FNV64_INIT and feed the stream in any chunking. */
#define FNV64_INIT 0xcbf29ce484222325ULL
static inline uint64_t fnv1a64(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* I/O loops: the kernel (or the emulator) may return partial counts   */
/* or EINTR at any time, and the toys must not care.                   */
/* ------------------------------------------------------------------ */

/* Read exactly len bytes unless EOF comes first. Returns bytes read, or -1. */
static inline ssize_t read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break; /* EOF */
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Write all len bytes. Returns 0, or -1 with errno set. */
static inline int write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Allocate or die: the toys have nothing sensible to do without memory. */
static inline void *xmalloc(size_t len)
{
    void *p = malloc(len ? len : 1);
    if (!p)
        die("out of memory (%zu bytes)", len);
    return p;
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */
/* ------------------------------------------------------------------ */

/* A peer that goes away must give an EPIPE error message, not a silent death. */
static inline void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

static inline void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        die_errno("fcntl(O_NONBLOCK)");
}

/*
 * Bind a socket of the given type (SOCK_STREAM: also listen) on port.
 * Without bind_addr: the IPv4 wildcard. With it: a numeric IPv4 or IPv6
 * address (no name resolution on the server side, to keep it predictable).
 */
static inline int bind_socket(const char *port, const char *bind_addr, int socktype)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = bind_addr ? AF_UNSPEC : AF_INET;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(bind_addr, port, &hints, &res);
    if (rc)
        die("bad bind address '%s': %s", bind_addr ? bind_addr : "0.0.0.0", gai_strerror(rc));

    int fd = -1, err = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Tests restart servers on the same port right away: skip TIME_WAIT. */
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            die_errno("setsockopt(SO_REUSEADDR)");
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            (socktype != SOCK_STREAM || listen(fd, 128) == 0))
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        errno = err;
        die_errno("bind/listen on port %s", port);
    }
    return fd;
}

static inline int tcp_listen(const char *port, const char *bind_addr)
{
    return bind_socket(port, bind_addr, SOCK_STREAM);
}

/* accept() that retries on EINTR and dies on anything else. */
static inline int accept_one(int lfd)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0)
            return fd;
        if (errno != EINTR)
            die_errno("accept");
    }
}

/*
 * Connect to host:port, trying every address getaddrinfo gives. While all of
 * them refuse, retry every 10 ms, TOY_CONNECT_RETRIES times (default 1000,
 * i.e. ~10 s), so a client may be started before its server.
 */
static inline int tcp_connect_retry(const char *host, const char *port)
{
    long long tries = 1000;
    const char *env = getenv("TOY_CONNECT_RETRIES");
    if (env && *env)
        tries = parse_int(env, "TOY_CONNECT_RETRIES", 1, 1000000000LL);

    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        die("cannot resolve '%s': %s", host, gai_strerror(rc));

    for (long long attempt = 1;; attempt++) {
        int err = 0;
        for (ai = res; ai; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd < 0)
                die_errno("socket");
            int r;
            do
                r = connect(fd, ai->ai_addr, ai->ai_addrlen);
            while (r < 0 && errno == EINTR);
            if (r == 0) {
                freeaddrinfo(res);
                return fd;
            }
            err = errno;
            close(fd); /* a socket is unusable after a failed connect */
            if (err != ECONNREFUSED) {
                errno = err;
                die_errno("connect to %s port %s", host, port);
            }
        }
        if (attempt >= tries) {
            errno = err;
            die_errno("connect to %s port %s (gave up after %lld tries)", host, port, tries);
        }
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        while (nanosleep(&ten_ms, &ten_ms) < 0 && errno == EINTR)
            ;
    }
}

/* ------------------------------------------------------------------ */
/* Echo helpers for the servers                                        */
/* ------------------------------------------------------------------ */

/* Blocking echo until EOF (fork/thread servers). Returns bytes echoed, or -1. */
static inline long long echo_until_eof(int fd)
{
    char buf[16384];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? total : -1;
        if (write_full(fd, buf, (size_t)n) < 0)
            return -1;
        total += n;
    }
}

/*
 * One nonblocking client of the poll/select/epoll servers. Its state is a
 * buffer of received bytes not yet written back: while it is non-empty the
 * server waits for "writable" and does not read more (so a slow reader
 * cannot make the server buffer without bound); otherwise it waits for
 * "readable".
 */
struct echo_conn {
    int fd;       /* -1 once closed */
    size_t len;   /* bytes in buf */
    size_t off;   /* bytes of buf already written back */
    char buf[16384];
};

enum echo_want { ECHO_WANT_READ, ECHO_WANT_WRITE, ECHO_DONE };

/* Write out as much of the pending buffer as the socket takes. */
static inline enum echo_want echo_flush(struct echo_conn *c, long long *total)
{
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->buf + c->off, c->len - c->off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return ECHO_WANT_WRITE;
            die_errno("write to client");
        }
        c->off += (size_t)n;
        *total += n;
    }
    c->off = c->len = 0;
    return ECHO_WANT_READ;
}

/*
 * Make progress on a client the multiplexer reported ready (for whatever
 * it was waiting for). Returns what to wait for next, or ECHO_DONE at EOF
 * (the caller then closes the fd).
 */
static inline enum echo_want echo_step(struct echo_conn *c, long long *total)
{
    if (c->off < c->len)
        return echo_flush(c, total);
    for (;;) {
        ssize_t n = read(c->fd, c->buf, sizeof c->buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return ECHO_WANT_READ; /* spurious wakeup */
            die_errno("read from client");
        }
        if (n == 0)
            return ECHO_DONE;
        c->len = (size_t)n;
        c->off = 0;
        return echo_flush(c, total); /* usually completes at once */
    }
}

#endif /* TOYS_H */
