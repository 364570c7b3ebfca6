/*
 * ev_echo: the libevent (bufferevent) baseline for spindle's echo benchmarks.
 *
 * Same process model as ev_http: N worker processes (-w N), each with its own event_base
 * and its own SO_REUSEPORT listener on the same port; the parent reports readiness and
 * stops the workers on SIGTERM/SIGINT. The event base runs without locks and with epoll's
 * changelist, which folds EV_WRITE add/delete pairs into one epoll_ctl per loop pass.
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
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define MAX_WORKERS 256
#define OUT_HIGH    (256 * 1024)

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

static int open_listener(const char *addr, int port, int backlog)
{
    struct sockaddr_in sin;
    int one = 1;
    int fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        fprintf(stderr, "ev_echo: bad address %s\n", addr);
        exit(2);
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        die("setsockopt(SO_REUSEPORT)");
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        die("bind");
    if (listen(fd, backlog) < 0)
        die("listen");
    return fd;
}

static void run_worker(const char *addr, int port, int backlog, int changelist, int ready_fd)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;
    struct evconnlistener *lev;
    int flags = EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_IGNORE_ENV;
    int fd;

    if (changelist)
        flags |= EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST;
    if (cfg == NULL || event_config_set_flag(cfg, flags) < 0)
        die("event_config");
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base == NULL)
        die("event_base_new_with_config");
    fd = open_listener(addr, port, backlog);
    /* backlog 0: the socket is already listening. */
    lev = evconnlistener_new(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                             0, fd);
    if (lev == NULL)
        die("evconnlistener_new");
    if (write(ready_fd, "r", 1) != 1)
        die("write(ready)");
    close(ready_fd);
    event_base_dispatch(base);
    evconnlistener_free(lev);
    event_base_free(base);
}

static void stop_workers(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            waitpid(pids[i], NULL, 0);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1";
    int port = -1, workers = 1, backlog = 4096, idle = 300, changelist = 1;
    pid_t pids[MAX_WORKERS];
    sigset_t mask, old;
    struct rlimit rl;
    int ready[2];
    int opt;
    int ret = 0;

    while ((opt = getopt(argc, argv, "a:p:w:i:b:Ch")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'w':
            workers = atoi(optarg);
            break;
        case 'i':
            idle = atoi(optarg);
            break;
        case 'b':
            backlog = atoi(optarg);
            break;
        case 'C':
            changelist = 0;
            break;
        default:
            usage();
        }
    }
    if (port < 0 || port > 65535 || workers < 1 || workers > MAX_WORKERS || idle < 0 ||
        optind != argc)
        usage();
    idle_tv.tv_sec = idle;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &old);
    if (pipe2(ready, O_CLOEXEC) < 0)
        die("pipe2");

    for (int i = 0; i < workers; i++) {
        pid_t parent = getpid();
        pid_t pid = fork();

        if (pid < 0)
            die("fork");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            sigprocmask(SIG_SETMASK, &old, NULL);
            close(ready[0]);
            run_worker(addr, port, backlog, changelist, ready[1]);
            _exit(0);
        }
        pids[i] = pid;
    }
    close(ready[1]);
    for (int i = 0; i < workers; i++) {
        char c;

        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "ev_echo: a worker failed to start\n");
            stop_workers(pids, workers);
            return 1;
        }
    }
    close(ready[0]);
    printf("ev_echo: listening on %s:%d, master %d, workers", addr, port, (int)getpid());
    for (int i = 0; i < workers; i++)
        printf(" %d", (int)pids[i]);
    printf("\n");
    fflush(stdout);

    for (;;) {
        int sig;
        pid_t dead;

        if (sigwait(&mask, &sig) != 0)
            continue;
        if (sig != SIGCHLD)
            break;
        dead = waitpid(-1, NULL, WNOHANG);
        if (dead > 0) {
            fprintf(stderr, "ev_echo: worker %d exited, stopping\n", (int)dead);
            for (int i = 0; i < workers; i++)
                if (pids[i] == dead)
                    pids[i] = -1;
            ret = 1;
            break;
        }
    }
    stop_workers(pids, workers);
    return ret;
}
