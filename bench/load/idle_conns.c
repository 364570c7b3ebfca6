/*
 * idle_conns: opens N keep-alive HTTP connections and holds them idle.
 *
 * Each connection sends one GET request (-u PATH, default /plaintext) and reads the full
 * response (Content-Length or chunked); after that it stays open and silent. Connections
 * are made non-blocking, at most -c at a time, from source addresses 127.0.0.1 ..
 * 127.0.0.K (-b K; each address has its own ~28k ephemeral ports, so large N works).
 *
 * When every connection is either idle or failed, one line "ready open=X failed=Y" is
 * printed (and flushed), then the connections are held until SIGTERM, SIGINT or SIGUSR1,
 * or for -s seconds. A connection the server closes or resets while idle is a failure.
 *
 * The last line is machine-readable: "RESULT key=value ...". Exit status 1 on any failure.
 * Used to measure server memory per idle keep-alive connection.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RESP_MAX   8192
#define MAX_EVENTS 256

enum state { CONNECTING, WAITING, IDLE, DONE };

struct conn {
    int fd;
    enum state state;
    char *buf; /* response bytes, only while WAITING */
    uint32_t len;
};

static struct {
    uint64_t connect_errors, request_errors, status_errors, closed_idle, resets_idle;
    uint64_t unexpected_data, timeouts;
} err;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: idle_conns -p PORT -n N [-a ADDR] [-b K] [-c CONCURRENCY] [-u PATH]\n"
                    "                  [-s HOLD_SECONDS] [-T SETUP_TIMEOUT]\n"
                    "  defaults: -a 127.0.0.1 -b N/25000+1 -c 256 -u /plaintext -s 0 (until a "
                    "signal) -T 60\n");
    exit(2);
}

/*
 * Returns 1 when buf holds a whole response, 0 if more is needed, -1 if it cannot be
 * parsed. *status gets the status code.
 */
static int response_complete(const char *buf, uint32_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    const char *p;
    size_t head;

    if (end == NULL)
        return len >= RESP_MAX ? -1 : 0;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(buf + 9);
    head = (size_t)(end - buf) + 4;
    for (p = buf; p < end; p++) {
        if (*p != '\n')
            continue;
        if (strncasecmp(p + 1, "content-length:", 15) == 0)
            return len >= head + strtoul(p + 16, NULL, 10) ? 1 : 0;
        if (strncasecmp(p + 1, "transfer-encoding:", 18) == 0)
            return memmem(buf + head - 2, len - head + 2, "\r\n0\r\n\r\n", 7) != NULL ? 1 : 0;
    }
    /* No body framing: only valid for responses without a body. */
    return (*status == 204 || *status == 304 || *status < 200) ? 1 : -1;
}

static int start_connect(struct conn *c, const struct sockaddr_in *dst, int src_index, int ep)
{
    struct sockaddr_in src;
    struct epoll_event ev;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)src_index);
    /* Defer the port choice to connect(), which only needs the 4-tuple to be unique. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)) {
        int e = errno;

        close(fd);
        return -e;
    }
    ev.events = EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    c->fd = fd;
    c->state = CONNECTING;
    return 0;
}

static void finish(struct conn *c, int ep, enum state state)
{
    free(c->buf);
    c->buf = NULL;
    if (state == DONE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = state;
}

/* Advances a connection that is CONNECTING or WAITING; returns 1 if it left those states. */
static int step(struct conn *c, int ep, const char *req, size_t req_len)
{
    struct epoll_event ev;
    int status = 0, r;

    if (c->state == CONNECTING) {
        int so_error = 0;
        socklen_t sl = sizeof(so_error);

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &sl);
        if (so_error != 0) {
            if (err.connect_errors++ == 0)
                fprintf(stderr, "idle_conns: connect: %s\n", strerror(so_error));
            finish(c, ep, DONE);
            return 1;
        }
        if (write(c->fd, req, req_len) != (ssize_t)req_len) {
            err.request_errors++;
            finish(c, ep, DONE);
            return 1;
        }
        c->buf = malloc(RESP_MAX);
        c->len = 0;
        if (c->buf == NULL) {
            err.request_errors++;
            finish(c, ep, DONE);
            return 1;
        }
        c->state = WAITING;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return 0;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, RESP_MAX - c->len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            if (err.request_errors++ == 0)
                fprintf(stderr, "idle_conns: reading the response: %s\n",
                        n == 0 ? "connection closed" : strerror(errno));
            finish(c, ep, DONE);
            return 1;
        }
        c->len += (uint32_t)n;
        r = response_complete(c->buf, c->len, &status);
        if (r == 0 && c->len < RESP_MAX)
            continue;
        if (r == 1 && status == 200) {
            finish(c, ep, IDLE);
            return 1;
        }
        if (r == 1) {
            if (err.status_errors++ == 0)
                fprintf(stderr, "idle_conns: response status %d\n", status);
        } else if (err.request_errors++ == 0) {
            fprintf(stderr, "idle_conns: unparsable response\n");
        }
        finish(c, ep, DONE);
        return 1;
    }
}

/* An idle connection became readable: whatever it is, the connection is lost. */
static void idle_event(struct conn *c, int ep)
{
    char buf[512];
    ssize_t n = read(c->fd, buf, sizeof(buf));

    if (n > 0)
        err.unexpected_data++;
    else if (n == 0)
        err.closed_idle++;
    else if (errno == EAGAIN || errno == EINTR)
        return;
    else
        err.resets_idle++;
    finish(c, ep, DONE);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/plaintext";
    int port = -1, n = 0, nsrc = 0, conc = 256, opt, ep, sfd;
    double hold = 0, setup_timeout = 60, deadline, t0;
    struct sockaddr_in dst;
    struct epoll_event ev, evs[MAX_EVENTS];
    struct conn *conns;
    struct rlimit rl;
    sigset_t mask;
    char req[512];
    size_t req_len;
    int next = 0, active = 0, settled = 0, open = 0, stop = 0;
    uint64_t errors;

    while ((opt = getopt(argc, argv, "a:p:n:b:c:u:s:T:h")) != -1) {
        switch (opt) {
        case 'a':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'b':
            nsrc = atoi(optarg);
            break;
        case 'c':
            conc = atoi(optarg);
            break;
        case 'u':
            path = optarg;
            break;
        case 's':
            hold = atof(optarg);
            break;
        case 'T':
            setup_timeout = atof(optarg);
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || port > 65535 || n < 1 || nsrc < 0 || nsrc > 250 || conc < 1 || hold < 0 ||
        strlen(path) > 256 || optind != argc)
        usage();
    if (nsrc == 0)
        nsrc = n / 25000 + 1;
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
        fprintf(stderr, "idle_conns: bad IPv4 address %s\n", host);
        return 2;
    }
    req_len = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
                               host, port);

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)n + 16) {
        fprintf(stderr, "idle_conns: %d connections need %d descriptors, the limit is %lu\n", n,
                n + 16, (unsigned long)rl.rlim_cur);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)n, sizeof(*conns));
    if (sfd < 0 || ep < 0 || conns == NULL) {
        perror("idle_conns: setup");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].state = DONE;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    t0 = now_s();
    deadline = t0 + setup_timeout;
    while (settled < n && !stop) {
        int k;

        while (active < conc && next < n) {
            int r = start_connect(&conns[next], &dst, next % nsrc, ep);

            if (r < 0) {
                if (err.connect_errors++ == 0)
                    fprintf(stderr, "idle_conns: connect: %s\n", strerror(-r));
                settled++;
            } else {
                active++;
            }
            next++;
        }
        if (now_s() > deadline) {
            for (int i = 0; i < next; i++)
                if (conns[i].state == CONNECTING || conns[i].state == WAITING) {
                    err.timeouts++;
                    finish(&conns[i], ep, DONE);
                    settled++;
                }
            err.timeouts += (uint64_t)(n - next);
            settled += n - next;
            next = n;
            break;
        }
        k = epoll_wait(ep, evs, MAX_EVENTS, 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c == NULL) {
                stop = 1;
                continue;
            }
            if (c->state == IDLE) {
                idle_event(c, ep);
                continue;
            }
            if (c->state != CONNECTING && c->state != WAITING)
                continue;
            if (step(c, ep, req, req_len)) {
                active--;
                settled++;
            }
        }
    }
    for (int i = 0; i < n; i++)
        open += conns[i].state == IDLE;
    printf("ready open=%d failed=%d setup_s=%.2f\n", open, n - open, now_s() - t0);
    fflush(stdout);

    deadline = hold > 0 ? now_s() + hold : 0;
    while (!stop) {
        int timeout = 1000, k;

        if (hold > 0) {
            double left = deadline - now_s();

            if (left <= 0)
                break;
            timeout = left < 1 ? (int)(left * 1000) + 1 : 1000;
        }
        k = epoll_wait(ep, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c == NULL)
                stop = 1;
            else if (c->state == IDLE)
                idle_event(c, ep);
        }
    }

    open = 0;
    for (int i = 0; i < n; i++) {
        open += conns[i].state == IDLE;
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].buf);
    }
    errors = err.connect_errors + err.request_errors + err.status_errors + err.closed_idle +
             err.resets_idle + err.unexpected_data + err.timeouts;
    printf("RESULT target=%d open=%d connect_errors=%lu request_errors=%lu status_errors=%lu "
           "timeouts=%lu closed_idle=%lu resets_idle=%lu unexpected_data=%lu errors=%lu\n",
           n, open, (unsigned long)err.connect_errors, (unsigned long)err.request_errors,
           (unsigned long)err.status_errors, (unsigned long)err.timeouts,
           (unsigned long)err.closed_idle, (unsigned long)err.resets_idle,
           (unsigned long)err.unexpected_data, (unsigned long)errors);
    return errors == 0 && open == n ? 0 : 1;
}
