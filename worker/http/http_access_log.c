/*
 * The access log: one line per answered request, in nginx's "combined" form:
 *
 *   127.0.0.1 - - [23/Nov/2026:03:45:38 +0000] "GET /a HTTP/1.1" 200 13 "-" "curl/8.5.0"
 *
 * (the request line as received; the byte count is that of the body bytes
 * the client was sent, less than the body's length when a write failed).
 * Lines of a batch of pipelined requests are queued until their bytes are
 * written (http_log_commit), then collect in a buffer of the scheduler
 * thread (a connection never leaves its thread, so no lock), which is
 * written with one write(2) when it is full, every second (a fiber per
 * thread, started with the thread's first line), on drain (the draining
 * thread's), on reopen (the reopening thread's) and at exit (every thread's,
 * once they have stopped).  The file is opened O_APPEND and only whole lines
 * are written, so the lines of threads and workers never interleave.  The
 * master opens the file (and reopens it on SIGUSR1) and hands the fd over:
 * the worker may run as a user that cannot open it.  A reopen puts the new
 * file under the old fd number (dup2), so a thread writing meanwhile writes
 * whole lines to one file or the other; lines other threads had buffered go
 * to the new file.  Bytes outside printable ASCII, '"' and '\' are written
 * as \xHH.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "spindle/clock.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"

#define LOG_BUF_SIZE  (64 * 1024)
#define LOG_LINE_MAX  4096 /* longer lines are cut (the target, then the agent) */
#define LOG_FIELD_MAX 1024

/* One scheduler thread's lines, touched only by that thread (and at exit). */
struct log_buf {
    char *buf;
    size_t len;
    time_t tsec; /* second of tstr */
    char tstr[40];
    bool flusher; /* the thread's flushing fiber runs */
} __attribute__((aligned(64)));

struct http_log {
    char *path;
    int fd; /* the number stays; reopen puts the new file under it */
    unsigned nbufs;
    struct log_buf *bufs; /* one per scheduler thread */
};

struct http_log *http_log_open(const char *path, int fd, unsigned threads, char *err, size_t errlen)
{
    struct http_log *log = NULL;
    if (fd < 0) {
        snprintf(err, errlen, "access_log %s: %s", path, strerror(-fd));
        return NULL;
    }
    if (threads == 0)
        threads = 1;
    log = calloc(1, sizeof(*log));
    if (!log || !(log->path = strdup(path)) ||
        !(log->bufs = aligned_alloc(64, threads * sizeof(*log->bufs))))
        goto nomem;
    memset(log->bufs, 0, threads * sizeof(*log->bufs));
    log->nbufs = threads;
    for (unsigned i = 0; i < threads; i++)
        if (!(log->bufs[i].buf = malloc(LOG_BUF_SIZE)))
            goto nomem;
    log->fd = fd;
    return log;
nomem:
    snprintf(err, errlen, "out of memory");
    close(fd);
    if (log) {
        for (unsigned i = 0; i < log->nbufs; i++)
            free(log->bufs[i].buf);
        free(log->bufs);
        free(log->path);
        free(log);
    }
    return NULL;
}

/* The calling scheduler thread's buffer. */
static struct log_buf *my_buf(struct http_log *log)
{
    unsigned i = sp_iom_thread_index();
    return &log->bufs[i < log->nbufs ? i : 0];
}

/* Writes b with one write(2) (more only if the file takes part of it).  A
 * failed write loses the lines: the log must never stop the service. */
static void flush_buf(struct http_log *log, struct log_buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(log->fd, b->buf + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    b->len = 0;
}

/* Runs on each thread that has logged, flushing that thread's buffer. */
static void log_flusher(void *arg)
{
    struct http_log *log = arg;
    for (;;) {
        sp_sleep(1000);
        flush_buf(log, my_buf(log));
    }
}

void http_log_flush(struct http_log *log)
{
    if (log)
        flush_buf(log, my_buf(log));
}

void http_log_reopen(struct http_log *log, int fd)
{
    flush_buf(log, my_buf(log));
    /* On failure the old file stays in use rather than lose the log. */
    if (dup2(fd, log->fd) >= 0)
        fcntl(log->fd, F_SETFD, FD_CLOEXEC);
    close(fd);
}

void http_log_close(struct http_log *log)
{
    if (!log)
        return;
    for (unsigned i = 0; i < log->nbufs; i++) {
        flush_buf(log, &log->bufs[i]);
        free(log->bufs[i].buf);
    }
    close(log->fd);
    free(log->bufs);
    free(log->path);
    free(log);
}

/* ---- formatting --------------------------------------------------------- */

/* Appends s[0..n) escaped, at most max output bytes, to d.  Returns the count. */
static size_t escape(char *d, const char *s, size_t n, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            if (o + 1 > max)
                break;
            d[o++] = (char)ch;
        } else {
            if (o + 4 > max)
                break;
            d[o++] = '\\';
            d[o++] = 'x';
            d[o++] = hex[ch >> 4];
            d[o++] = hex[ch & 15];
        }
    }
    return o;
}

void http_peer_name(struct http_conn *c)
{
    struct sockaddr_storage ss;
    strcpy(c->peer, "-");
    if (worker_conn_peer(c->hs->svc->worker, c->stream->fd, &ss) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof(c->peer));
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, sizeof(c->peer));
}

static const struct sp_http_header *find_header(const struct sp_http_request *req, const char *name,
                                                size_t nl)
{
    for (size_t i = 0; req->headers && i < req->num_headers; i++)
        if (req->headers[i].name_len == nl && strncasecmp(req->headers[i].name, name, nl) == 0)
            return &req->headers[i];
    return NULL;
}

static size_t quoted(char *d, const char *v, size_t vl, size_t max)
{
    size_t n = 0;
    d[n++] = ' ';
    d[n++] = '"';
    if (vl)
        n += escape(d + n, v, vl, max);
    else
        d[n++] = '-';
    d[n++] = '"';
    return n;
}

/* Appends one line for e, whose body_sent bytes went out. */
static void log_line(struct http_log *log, struct http_conn *c, const struct http_log_entry *e,
                     uint64_t body_sent)
{
    char line[LOG_LINE_MAX];
    size_t n;

    if (!c->peer[0])
        http_peer_name(c);
    n = strlen(c->peer);
    memcpy(line, c->peer, n);
    memcpy(line + n, " - - ", 5);
    n += 5;
    size_t time_at = n;
    n += 28; /* "[dd/Mon/yyyy:hh:mm:ss +0000]", filled in below */
    /* The request line as received, like nginx's $request: a 414 keeps its
     * (cut) target, an "HTTP/2.0" line its version. */
    n += quoted(line + n, e->line, e->line_len, LOG_FIELD_MAX * 2 + 64);
    n += (size_t)snprintf(line + n, 48, " %u %llu", e->status, (unsigned long long)body_sent);
    n += quoted(line + n, e->referer, e->referer_len, LOG_FIELD_MAX / 2);
    n += quoted(line + n, e->agent, e->agent_len, LOG_FIELD_MAX / 2);
    line[n++] = '\n';

    struct log_buf *b = my_buf(log);
    time_t now = sp_wall_sec();
    if (now != b->tsec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(b->tstr, sizeof(b->tstr), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
        b->tsec = now;
    }
    memcpy(line + time_at, b->tstr, 28);
    if (LOG_BUF_SIZE - b->len < n)
        flush_buf(log, b);
    memcpy(b->buf + b->len, line, n);
    b->len += n;
    if (!b->flusher) {
        struct sp_iom *iom = sp_iom_current();
        if (iom && sp_iom_spawn(iom, log_flusher, log) == 0)
            b->flusher = true;
        else
            flush_buf(log, b); /* no fiber to flush later: write now */
    }
}

void http_log_add(struct http_conn *c, const struct http_txn *t)
{
    const struct sp_http_request *req = t->req;
    const struct sp_http_header *h;

    if (!c->hs->log || !t->status)
        return;
    if (c->nlogq == HTTP_LOG_QUEUE)
        http_log_commit(c);
    struct http_log_entry *e = &c->logq[c->nlogq++];
    *e = (struct http_log_entry){.line = t->line,
                                 .line_len = t->line_len,
                                 .status = t->status,
                                 .body_at = t->body_at,
                                 .body_len = t->body_len};
    if ((h = find_header(req, "Referer", 7)) != NULL) {
        e->referer = h->value;
        e->referer_len = h->value_len;
    }
    if ((h = find_header(req, "User-Agent", 10)) != NULL) {
        e->agent = h->value;
        e->agent_len = h->value_len;
    }
}

void http_log_commit(struct http_conn *c)
{
    struct http_out *o = &c->out;

    if (c->nlogq == 0)
        return;
    http_out_flush(o);
    for (unsigned i = 0; i < c->nlogq; i++) {
        const struct http_log_entry *e = &c->logq[i];
        uint64_t sent = o->written > e->body_at ? o->written - e->body_at : 0;
        log_line(c->hs->log, c, e, sent < e->body_len ? sent : e->body_len);
    }
    c->nlogq = 0;
}
