/*
 * ev_http: the libevent (evhttp) baseline for spindle's HTTP benchmarks.
 *
 * Process model: N worker processes (-w N), each with its own event_base and its own
 * SO_REUSEPORT listener bound to the same port, so the kernel spreads connections the
 * way it does for spindle and nginx. The parent only forks, reports readiness, and
 * stops the workers on SIGTERM/SIGINT (or when one of them dies).
 *
 * It is tuned the way a careful libevent user would tune it, so that ratios against it
 * mean something: TCP_NODELAY on every connection (evhttp never sets it, and Nagle plus
 * delayed ACKs cost pipelined clients 3x), no locking in the event base, the epoll
 * changelist (it folds the per-request EV_WRITE add/delete pairs into at most one epoll_ctl
 * per loop pass: 15-35% more requests/s on loopback), the Date header
 * formatted once per second, static bodies, and the file served from memory by reference.
 *
 * Routes: /plaintext, /json, and /NAME for the file given with -f (its basename).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define MAX_WORKERS 256

static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

/* One worker's state; each worker process has exactly one. */
static struct {
    time_t date_sec;
    char date[64];
    char file_path[256]; /* URL path of the in-memory file, "" if none */
    const char *file_data;
    size_t file_len;
    /* conn_by_fd[fd] is the connection that already got TCP_NODELAY on fd. */
    struct evhttp_connection **conn_by_fd;
    size_t conn_by_fd_len;
    int nodelay;
} srv;

static void die(const char *what)
{
    fprintf(stderr, "ev_http[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: ev_http -p PORT [-a ADDR] [-w WORKERS] [-f FILE] [-b BACKLOG] [-n] "
                    "[-C]\n"
                    "  -a ADDR     IPv4 address to listen on (default 127.0.0.1)\n"
                    "  -w N        worker processes, one event_base each (default 1)\n"
                    "  -f FILE     serve FILE from memory at /BASENAME\n"
                    "  -n          leave Nagle on (as evhttp ships); default sets TCP_NODELAY\n"
                    "  -C          no epoll changelist (libevent's default; slower here)\n");
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static const char *http_date(void)
{
    time_t now = time(NULL);

    if (now != srv.date_sec) {
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(srv.date, sizeof(srv.date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        srv.date_sec = now;
    }
    return srv.date;
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    size_t fd = (size_t)(uintptr_t)arg;

    if (fd < srv.conn_by_fd_len && srv.conn_by_fd[fd] == evcon)
        srv.conn_by_fd[fd] = NULL;
}

/*
 * libevent 2.1 has no hook between accept() and the first request, so the first request
 * of each connection sets TCP_NODELAY (the listener has it too, and Linux copies it to
 * accepted sockets; this keeps the baseline correct where that does not hold). The fd
 * table plus the close callback make it one setsockopt per connection, not per request.
 */
static void nodelay_once(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev;
    evutil_socket_t fd;
    int one = 1;

    if (!srv.nodelay || evcon == NULL)
        return;
    bev = evhttp_connection_get_bufferevent(evcon);
    fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || (size_t)fd >= srv.conn_by_fd_len || srv.conn_by_fd[fd] == evcon)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    srv.conn_by_fd[fd] = evcon;
    evhttp_connection_set_closecb(evcon, on_conn_close, (void *)(uintptr_t)fd);
}

static int path_is(const char *uri, const char *path)
{
    size_t n = strlen(path);

    return strncmp(uri, path, n) == 0 && (uri[n] == '\0' || uri[n] == '?');
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    const char *type;

    (void)arg;
    nodelay_once(req);
    evhttp_add_header(headers, "Server", "libevent");
    evhttp_add_header(headers, "Date", http_date());
    if (path_is(uri, "/plaintext")) {
        type = "text/plain";
        evbuffer_add(out, plaintext_body, sizeof(plaintext_body) - 1);
    } else if (path_is(uri, "/json")) {
        type = "application/json";
        evbuffer_add(out, json_body, sizeof(json_body) - 1);
    } else if (srv.file_path[0] != '\0' && path_is(uri, srv.file_path)) {
        type = "application/octet-stream";
        /* By reference: the bytes live for the whole process. */
        evbuffer_add_reference(out, srv.file_data, srv.file_len, NULL, NULL);
    } else {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    evhttp_add_header(headers, "Content-Type", type);
    evhttp_send_reply(req, HTTP_OK, "OK", NULL);
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
        fprintf(stderr, "ev_http: bad address %s\n", addr);
        exit(2);
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        die("setsockopt(SO_REUSEPORT)");
    if (srv.nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
    struct evhttp *http;
    struct rlimit rl;
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

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        rl.rlim_cur = 1 << 20;
    srv.conn_by_fd_len = (size_t)rl.rlim_cur;
    srv.conn_by_fd = calloc(srv.conn_by_fd_len, sizeof(*srv.conn_by_fd));
    if (srv.conn_by_fd == NULL)
        die("calloc");

    http = evhttp_new(base);
    if (http == NULL)
        die("evhttp_new");
    evhttp_set_timeout(http, 75);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, on_request, NULL);
    fd = open_listener(addr, port, backlog);
    if (evhttp_accept_socket_with_handle(http, fd) == NULL)
        die("evhttp_accept_socket_with_handle");

    if (write(ready_fd, "r", 1) != 1)
        die("write(ready)");
    close(ready_fd);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
}

static void load_file(const char *path)
{
    const char *name = strrchr(path, '/');
    struct stat st;
    char *data;
    size_t off = 0;
    int fd;

    name = name ? name + 1 : path;
    if (strlen(name) + 2 > sizeof(srv.file_path)) {
        fprintf(stderr, "ev_http: file name too long: %s\n", name);
        exit(2);
    }
    snprintf(srv.file_path, sizeof(srv.file_path), "/%s", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        die(path);
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL)
        die("malloc");
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, data + off, (size_t)st.st_size - off);

        if (n <= 0)
            die(path);
        off += (size_t)n;
    }
    close(fd);
    srv.file_data = data;
    srv.file_len = off;
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
    int port = -1, workers = 1, backlog = 4096, changelist = 1;
    pid_t pids[MAX_WORKERS];
    sigset_t mask, old;
    int ready[2];
    int opt;
    int ret = 0;

    srv.nodelay = 1;
    while ((opt = getopt(argc, argv, "a:p:w:f:b:nCh")) != -1) {
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
        case 'f':
            load_file(optarg);
            break;
        case 'b':
            backlog = atoi(optarg);
            break;
        case 'n':
            srv.nodelay = 0;
            break;
        case 'C':
            changelist = 0;
            break;
        default:
            usage();
        }
    }
    if (port < 0 || port > 65535 || workers < 1 || workers > MAX_WORKERS || optind != argc)
        usage();

    raise_nofile();
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
            /* Workers die with the parent, whatever killed it. */
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
            fprintf(stderr, "ev_http: a worker failed to start\n");
            stop_workers(pids, workers);
            return 1;
        }
    }
    close(ready[0]);
    printf("ev_http: listening on %s:%d, master %d, workers", addr, port, (int)getpid());
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
            fprintf(stderr, "ev_http: worker %d exited, stopping\n", (int)dead);
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
