/*
 * epoll_srv: the floor under every server in the benchmark.  A bare epoll loop that
 * does only what a benchmark request needs, so its throughput is what the kernel's
 * loopback TCP allows one core to do: no fibers, no timers, no parser beyond finding
 * "\r\n\r\n", no error handling beyond closing the connection.  It is not a server
 * to run; it tells how far from the kernel's limit spindle and the baselines are.
 *
 *   -m http   answers GET /plaintext and GET /json (anything else: 404) with the
 *             headers the other servers send (Server, Date cached per second,
 *             Content-Type, Content-Length); every complete request in a read gets
 *             its response appended to one buffer, written with one write
 *   -m echo   writes back every byte it reads
 *
 * Same process model as the libevent baselines (prefork.h).  Connections are
 * edge-triggered for reading and writing from the start, so no epoll_ctl follows the
 * accept; TCP_NODELAY is set on each.  A read shorter than the buffer counts as
 * draining the socket (new bytes raise a new edge), as in spindle.  Request bodies are
 * not understood: the benchmark sends none.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "prefork.h"

#define IN_CAP 16384
/* Room for the responses to a full input buffer of the shortest requests
 * ("GET / HTTP/1.1\r\n\r\n", 18 bytes; a response is under 160). */
#define OUT_CAP    ((IN_CAP / 18 + 1) * 160)
#define MAX_EVENTS 256

struct conn {
    size_t in_len;  /* unparsed request bytes kept in in[] */
    size_t out_off; /* out[out_off..out_len) still to be written */
    size_t out_len;
    char in[IN_CAP];
    char out[OUT_CAP];
};

static int echo_mode;
static struct conn **conns; /* by fd */
static size_t conns_len;
static char date[40];
static time_t date_sec;

static void die(const char *what)
{
    fprintf(stderr, "epoll_srv[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: epoll_srv -m http|echo -p PORT [-a ADDR] [-w WORKERS] [-b BACKLOG]\n");
    exit(2);
}

static void refresh_date(void)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now == date_sec)
        return;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    date_sec = now;
}

static void conn_close(int fd)
{
    free(conns[fd]);
    conns[fd] = NULL;
    close(fd);
}

/* Appends one response for the request head at req; 0, or -1 when out[] is full. */
static int respond(struct conn *c, const char *req)
{
    static const char plain[] = "Hello, World!";
    static const char json[] = "{\"message\":\"Hello, World!\"}";
    const char *status = "200 OK", *type = "text/plain", *body = plain;
    size_t len = sizeof(plain) - 1;
    int n;

    if (strncmp(req, "GET /json ", 10) == 0) {
        type = "application/json";
        body = json;
        len = sizeof(json) - 1;
    } else if (strncmp(req, "GET /plaintext ", 15) != 0) {
        status = "404 Not Found";
        body = "";
        len = 0;
    }
    n = snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                 "HTTP/1.1 %s\r\nServer: epoll\r\nDate: %s\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 status, date, type, len, body);
    if (n < 0 || (size_t)n >= OUT_CAP - c->out_len)
        return -1;
    c->out_len += (size_t)n;
    return 0;
}

/* Writes what is pending; 0 when all is written or the socket is full, -1 to close. */
static int flush_out(int fd, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Reads until the socket is drained, answering as it goes; -1 to close. */
static int on_readable(int fd, struct conn *c)
{
    for (;;) {
        if (c->out_len > 0) /* the peer is not reading: wait for EPOLLOUT */
            return 0;
        ssize_t n = read(fd, c->in + c->in_len, IN_CAP - c->in_len - 1);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        size_t space = IN_CAP - c->in_len - 1;
        if (echo_mode) {
            memcpy(c->out, c->in, (size_t)n);
            c->out_len = (size_t)n;
        } else {
            char *p = c->in, *end;
            c->in_len += (size_t)n;
            c->in[c->in_len] = '\0';
            refresh_date();
            while ((end = strstr(p, "\r\n\r\n")) != NULL) {
                if (respond(c, p) < 0)
                    return -1;
                p = end + 4;
            }
            c->in_len -= (size_t)(p - c->in);
            memmove(c->in, p, c->in_len);
            if (c->in_len == IN_CAP - 1) /* a head longer than the buffer */
                return -1;
        }
        if (flush_out(fd, c) < 0)
            return -1;
        if ((size_t)n < space)
            return 0;
    }
}

static void on_accept(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;

        if (fd < 0) {
            if (errno == EAGAIN || errno == EMFILE || errno == ENFILE)
                return;
            continue;
        }
        if ((size_t)fd >= conns_len || (conns[fd] = calloc(1, sizeof(struct conn))) == NULL) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(fd);
    }
}

static void run_worker(const struct prefork *pf, int listen_fd, int ready_fd)
{
    struct epoll_event evs[MAX_EVENTS];
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = listen_fd};
    int ep = epoll_create1(EPOLL_CLOEXEC);

    (void)pf;
    conns_len = 1 << 20;
    conns = calloc(conns_len, sizeof(*conns));
    if (ep < 0 || conns == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &lev) < 0)
        die("epoll set-up");
    prefork_ready(ready_fd);
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);

        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            struct conn *c = conns[fd];

            if (fd == listen_fd) {
                on_accept(ep, listen_fd);
                continue;
            }
            if (c == NULL)
                continue;
            /* Reading stopped while a response waited for room: resume once it went. */
            int read_now = evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
            if (c->out_len > 0 && (evs[i].events & EPOLLOUT)) {
                if (flush_out(fd, c) < 0) {
                    conn_close(fd);
                    continue;
                }
                read_now |= c->out_len == 0;
            }
            if (read_now && on_readable(fd, c) < 0)
                conn_close(fd);
        }
    }
}

int main(int argc, char **argv)
{
    struct prefork pf = PREFORK_INIT("epoll_srv", run_worker);
    const char *mode = NULL;
    int opt;

    while ((opt = getopt(argc, argv, PREFORK_OPTIONS "m:")) != -1) {
        if (opt == 'm')
            mode = optarg;
        else if (opt == 'C' || prefork_option(&pf, opt, optarg) < 0)
            usage(); /* -C is libevent's; there is no event base here */
    }
    if (mode == NULL || !prefork_valid(&pf) ||
        (strcmp(mode, "http") != 0 && strcmp(mode, "echo") != 0))
        usage();
    echo_mode = strcmp(mode, "echo") == 0;
    return prefork_run(&pf);
}
