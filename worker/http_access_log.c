/*
 * The access log: one line per answered request, in nginx's "combined" form:
 *
 *   127.0.0.1 - - [23/Nov/2026:03:45:38 +0000] "GET /a HTTP/1.1" 200 13 "-" "curl/8.5.0"
 *
 * (the request line as received; the byte count is that of the body bytes
 * the client was sent, less than the body's length when a write failed).
 * Lines of a batch of pipelined requests are queued until their bytes are
 * written (http_log_commit), then collect in a per-worker buffer that
 * is written with one write(2) when it is full, every second (a fiber of the
 * service), on reopen and at exit.  The file is opened O_APPEND and only whole
 * lines are written, so the workers' lines never interleave.  The master
 * opens the file (and reopens it on SIGUSR1) and hands the fd over: the
 * worker may run as a user that cannot open it.  Bytes outside
 * printable ASCII, '"' and '\' are written as \xHH.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

#define LOG_BUF_SIZE  (64 * 1024)
#define LOG_LINE_MAX  4096 /* longer lines are cut (the target, then the agent) */
#define LOG_FIELD_MAX 1024

struct http_log {
    char *path;
    int fd;
    bool mt;
    pthread_mutex_t lock;
    char *buf;
    size_t len;
    time_t tsec; /* second of tstr */
    char tstr[40];
};

struct http_log *http_log_open(const char *path, int fd, bool mt, char *err, size_t errlen)
{
    struct http_log *log = NULL;
    if (fd < 0) {
        snprintf(err, errlen, "access_log %s: %s", path, strerror(-fd));
        return NULL;
    }
    log = calloc(1, sizeof(*log));
    if (!log || !(log->buf = malloc(LOG_BUF_SIZE)) || !(log->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        goto fail;
    }
    log->fd = fd;
    log->mt = mt;
    pthread_mutex_init(&log->lock, NULL);
    return log;
fail:
    if (log) {
        free(log->buf);
        free(log->path);
        free(log);
    }
    return NULL;
}

/* Writes the buffer.  Lock held.  A failed write loses the lines: the log
 * must never stop the service. */
static void flush_locked(struct http_log *log)
{
    size_t off = 0;
    while (off < log->len) {
        ssize_t n = write(log->fd, log->buf + off, log->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    log->len = 0;
}

void http_log_flush(struct http_log *log)
{
    if (!log)
        return;
    http_lock(&log->lock, log->mt);
    flush_locked(log);
    http_unlock(&log->lock, log->mt);
}

void http_log_reopen(struct http_log *log, int fd)
{
    http_lock(&log->lock, log->mt);
    flush_locked(log);
    close(log->fd);
    log->fd = fd;
    http_unlock(&log->lock, log->mt);
}

void http_log_close(struct http_log *log)
{
    if (!log)
        return;
    http_log_flush(log);
    close(log->fd);
    pthread_mutex_destroy(&log->lock);
    free(log->buf);
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

static void peer_name(struct http_conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    strcpy(c->peer, "-");
    if (getpeername(c->stream.fd, (struct sockaddr *)&ss, &len) != 0)
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
        peer_name(c);
    n = strlen(c->peer);
    memcpy(line, c->peer, n);
    memcpy(line + n, " - - ", 5);
    n += 5;
    size_t time_at = n;
    n += 28; /* "[dd/Mon/yyyy:hh:mm:ss +0000]" filled in under the lock */
    /* The request line as received, like nginx's $request: a 414 keeps its
     * (cut) target, an "HTTP/2.0" line its version. */
    n += quoted(line + n, e->line, e->line_len, LOG_FIELD_MAX * 2 + 64);
    n += (size_t)snprintf(line + n, 48, " %u %llu", e->status, (unsigned long long)body_sent);
    n += quoted(line + n, e->referer, e->referer_len, LOG_FIELD_MAX / 2);
    n += quoted(line + n, e->agent, e->agent_len, LOG_FIELD_MAX / 2);
    line[n++] = '\n';

    http_lock(&log->lock, log->mt);
    time_t now = time(NULL);
    if (now != log->tsec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(log->tstr, sizeof(log->tstr), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
        log->tsec = now;
    }
    memcpy(line + time_at, log->tstr, 28);
    if (LOG_BUF_SIZE - log->len < n)
        flush_locked(log);
    memcpy(log->buf + log->len, line, n);
    log->len += n;
    http_unlock(&log->lock, log->mt);
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
