/*
 * ev_echo: the libevent (bufferevent) baseline for spindle's echo benchmarks.
 *
 * Same process model as ev_http (prefork.h): N worker processes (-w N), each with its own
 * event_base and its own SO_REUSEPORT listener on the same port; the parent reports
 * readiness and stops the workers on SIGTERM/SIGINT. The event base runs without locks
 * and with epoll's changelist, which folds EV_WRITE add/delete pairs into one epoll_ctl
 * per loop pass.
 *
 * Each connection is a socket bufferevent with TCP_NODELAY. The read callback moves the
 * whole input buffer to the output buffer (evbuffer_add_buffer moves chains, it does not
 * copy). Backpressure: when more than OUT_HIGH bytes wait to be sent, reading stops until
 * the output drains below OUT_HIGH / 2, so a client that does not read cannot make the
 * server buffer without bound. Connections idle for -i seconds (default 300, spindle's
 * idle_timeout in the benchmark config) are closed.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "prefork.h"

#define OUT_HIGH (256 * 1024)

static struct timeval idle_tv;

static void die(const char *what)
{
    fprintf(stderr, "ev_echo[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ev_echo -p PORT [-a ADDR] [-w WORKERS] [-i IDLE_SECONDS] [-b BACKLOG] [-C]\n"
            "  -a ADDR     IPv4 address to listen on (default 127.0.0.1)\n"
            "  -w N        worker processes, one event_base each (default 1)\n"
            "  -i SECONDS  close connections idle that long, 0 = never (default 300)\n"
            "  -C          no epoll changelist (libevent's default)\n");
    exit(2);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void on_drained(struct bufferevent *bev, void *arg)
{
    (void)arg;
    /* Output fell below the low watermark: resume reading, stop write callbacks. */
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void on_flushed_close(struct bufferevent *bev, void *arg)
{
    (void)arg;
    bufferevent_free(bev);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    /* On EOF, send back what was already read, then close. */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_setcb(bev, NULL, on_flushed_close, on_event, NULL);
        return;
    }
    bufferevent_free(bev);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    (void)arg;
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= OUT_HIGH) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, OUT_HIGH / 2, 0);
        bufferevent_setcb(bev, on_read, on_drained, on_event, NULL);
    }
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct event_base *base = arg;
    struct bufferevent *bev;
    int one = 1;

    (void)lev;
    (void)sa;
    (void)socklen;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    if (idle_tv.tv_sec > 0)
        bufferevent_set_timeouts(bev, &idle_tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void run_worker(const struct prefork *pf, int listen_fd, int ready_fd)
{
    struct event_base *base = prefork_event_base(pf);
    struct evconnlistener *lev;

    /* backlog 0: the socket is already listening. */
    lev = evconnlistener_new(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                             0, listen_fd);
    if (lev == NULL)
        die("evconnlistener_new");
    prefork_ready(ready_fd);
    event_base_dispatch(base);
    evconnlistener_free(lev);
    event_base_free(base);
}

int main(int argc, char **argv)
{
    struct prefork pf = PREFORK_INIT("ev_echo", run_worker);
    int idle = 300;
    int opt;

    while ((opt = getopt(argc, argv, PREFORK_OPTIONS "i:h")) != -1) {
        if (prefork_option(&pf, opt, optarg) == 0)
            continue;
        switch (opt) {
        case 'i':
            idle = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!prefork_valid(&pf) || idle < 0 || optind != argc)
        usage();
    idle_tv.tv_sec = idle;
    return prefork_run(&pf);
}
