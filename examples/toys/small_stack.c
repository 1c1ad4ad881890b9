/* Runs socket and file syscalls on a 4 KiB stack (as a coroutine, a goroutine or a sigaltstack
 * handler would) and checks that nothing below its stack pointer was written: an emulator may only
 * touch memory the program handed it.
 * Usage: small_stack IPV4 PORT   (a UDP destination; nothing needs to listen there)
 * Prints "stack intact" and exits 0, or names the first changed byte and exits 1. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <ucontext.h>
#include <unistd.h>

#define AREA (64 * 1024)
#define STACK 4096
#define PATTERN 0xA5

static unsigned char area[AREA] __attribute__((aligned(4096)));
static ucontext_t main_ctx, small_ctx;
static const char *ip;
static int port, failures;

static void on_small_stack(void)
{
    /* Only syscalls here: libc's printf would need more than 4 KiB. */
    int fd = open("/etc/hosts", O_RDONLY);
    if (fd < 0) failures++; else close(fd);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (bind(s, (struct sockaddr *)&any, sizeof any) < 0) failures++;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &to.sin_addr);
    /* unconnected first: a refusal of this datagram is not reported to a later call */
    if (sendto(s, "ping", 4, 0, (struct sockaddr *)&to, sizeof to) != 4) failures++;
    if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) failures++;
    if (send(s, "pong", 4, 0) != 4) failures++;
    close(s);
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: small_stack IPV4 PORT\n"); return 2; }
    ip = argv[1];
    port = atoi(argv[2]);
    memset(area, PATTERN, sizeof area);
    getcontext(&small_ctx);
    small_ctx.uc_stack.ss_sp = area + AREA - STACK;   /* the top 4 KiB; below it, the guard */
    small_ctx.uc_stack.ss_size = STACK;
    small_ctx.uc_link = &main_ctx;
    makecontext(&small_ctx, on_small_stack, 0);
    swapcontext(&main_ctx, &small_ctx);
    for (size_t i = 0; i < AREA - STACK; i++)
        if (area[i] != PATTERN) {
            printf("byte %zu below the stack changed (0x%02x)\n", AREA - STACK - i, area[i]);
            return 1;
        }
    if (failures) { printf("%d syscalls failed\n", failures); return 1; }
    printf("stack intact\n");
    return 0;
}
