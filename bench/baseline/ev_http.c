/*
 * ev_http: the libevent (evhttp) baseline for spindle's HTTP benchmarks.
 *
 * Process model (prefork.h): N worker processes (-w N), each with its own event_base and
 * its own SO_REUSEPORT listener bound to the same port, so the kernel spreads connections
 * the way it does for spindle and nginx. The parent only forks, reports readiness, and
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "prefork.h"

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

static void run_worker(const struct prefork *pf, int listen_fd, int ready_fd)
{
    struct event_base *base = prefork_event_base(pf);
    struct evhttp *http;
    struct rlimit rl;

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
    if (evhttp_accept_socket_with_handle(http, listen_fd) == NULL)
        die("evhttp_accept_socket_with_handle");

    prefork_ready(ready_fd);
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

int main(int argc, char **argv)
{
    struct prefork pf = PREFORK_INIT("ev_http", run_worker);
    int opt;

    srv.nodelay = 1;
    while ((opt = getopt(argc, argv, PREFORK_OPTIONS "f:nh")) != -1) {
        if (prefork_option(&pf, opt, optarg) == 0)
            continue;
        switch (opt) {
        case 'f':
            load_file(optarg);
            break;
        case 'n':
            srv.nodelay = 0;
            break;
        default:
            usage();
        }
    }
    if (!prefork_valid(&pf) || optind != argc)
        usage();
    pf.nodelay = srv.nodelay;
    return prefork_run(&pf);
}
