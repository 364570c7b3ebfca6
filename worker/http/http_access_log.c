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
 *
 * access_log_format picks another form (http_log_format.c): "json" or a
 * template.  Combined, the default, keeps the hand-written path below; the
 * others are written by the compiled format straight into the thread's
 * buffer.  Either way an entry captures the request headers its format
 * names when the request is answered.
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

/* A time string and the second it was made for. */
struct stamp {
    time_t sec;
    char str[40];
};

/* One scheduler thread's lines, touched only by that thread (and at exit). */
struct log_buf {
    char *buf;
    size_t len;
    struct stamp tlocal, tiso; /* the two forms of the time, per second */
    bool flusher;              /* the thread's flushing fiber runs */
} __attribute__((aligned(64)));

struct http_log {
    const struct http_logfmt *fmt; /* borrowed from the configuration */
    long pid;
    char *path;
    int fd; /* the number stays; reopen puts the new file under it */
    unsigned nbufs;
    struct log_buf *bufs; /* one per scheduler thread */
};

struct http_log *http_log_open(const char *path, const struct http_logfmt *fmt, int fd,
                               unsigned threads, char *err, size_t errlen)
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
    log->fmt = fmt;
    log->pid = (long)getpid();
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
    const char *name =
        worker_conn_peer_name(c->hs->svc->worker, c->stream->fd, c->peer, sizeof(c->peer));
    if (name != c->peer)
        strcpy(c->peer, name);
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
    /* As nginx: "-" for a header that is absent, "" for an empty one. */
    if (v)
        n += escape(d + n, v, vl, max);
    else
        d[n++] = '-';
    d[n++] = '"';
    return n;
}

/* Writes v in decimal at d (at most 20 bytes).  Returns the length.  By
 * hand: snprintf's machinery cost a third of a combined line. */
static size_t decimal(char *d, uint64_t v)
{
    char b[20];
    size_t i = sizeof(b);
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(d, b + i, sizeof(b) - i);
    return sizeof(b) - i;
}

/* The thread's second in strftime's fmt, made once a second. */
static const char *stamp(struct stamp *st, const char *fmt)
{
    time_t now = sp_wall_sec();
    if (now != st->sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(st->str, sizeof(st->str), fmt, &tm);
        st->sec = now;
    }
    return st->str;
}

/* "[dd/Mon/yyyy:hh:mm:ss +0000]" (28 bytes). */
static const char *time_local(struct log_buf *b)
{
    return stamp(&b->tlocal, "[%d/%b/%Y:%H:%M:%S +0000]");
}

/* "yyyy-mm-ddThh:mm:ss+00:00" (25 bytes), nginx's $time_iso8601. */
static const char *time_iso(struct log_buf *b)
{
    return stamp(&b->tiso, "%Y-%m-%dT%H:%M:%S+00:00");
}

static void start_flusher(struct http_log *log, struct log_buf *b);

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
    line[n++] = ' ';
    n += decimal(line + n, e->status);
    line[n++] = ' ';
    n += decimal(line + n, body_sent);
    n += quoted(line + n, e->hdr[0].p, e->hdr[0].n, LOG_FIELD_MAX / 2); /* Referer */
    n += quoted(line + n, e->hdr[1].p, e->hdr[1].n, LOG_FIELD_MAX / 2); /* User-Agent */
    line[n++] = '\n';

    struct log_buf *b = my_buf(log);
    memcpy(line + time_at, time_local(b), 28);
    if (LOG_BUF_SIZE - b->len < n)
        flush_buf(log, b);
    memcpy(b->buf + b->len, line, n);
    b->len += n;
    start_flusher(log, b);
}

/* Appends the line of e in a compiled format (JSON, a template); now_ns is
 * when its last byte went out. */
static void log_line_fmt(struct http_log *log, struct http_conn *c, const struct http_log_entry *e,
                         uint64_t body_sent, uint64_t now_ns)
{
    const struct http_logfmt *f = log->fmt;
    struct log_buf *b = my_buf(log);
    struct http_log_rec r = {
        .line = {e->line, e->line_len},
        .status = e->status,
        .body_bytes_sent = body_sent,
        .bytes_sent = body_sent + (e->body_at > e->head_at ? e->body_at - e->head_at : 0),
        .request_length = e->request_length,
        .request_ns = now_ns > e->start_ns ? now_ns - e->start_ns : 0,
        .upstream_ns = e->upstream_ns,
        .upstream_addr = e->upstream_addr,
        .pid = log->pid,
        .https = c->stream != &c->sock,
    };

    if (!c->peer[0])
        http_peer_name(c);
    r.remote_addr = c->peer;
    memcpy(r.hdr, e->hdr, sizeof(r.hdr));
    if (f->need & HTTP_LOGFMT_NEED_LOCAL)
        r.time_local = time_local(b) + 1;
    if (f->need & HTTP_LOGFMT_NEED_ISO)
        r.time_iso8601 = time_iso(b);
    if (f->need & HTTP_LOGFMT_NEED_MSEC)
        r.msec = sp_wall_ns() / 1000000u;
    if (LOG_BUF_SIZE - b->len < HTTP_LOGFMT_LINE_MAX)
        flush_buf(log, b);
    b->len += http_logfmt_write(f, &r, b->buf + b->len, HTTP_LOGFMT_LINE_MAX);
    start_flusher(log, b);
}

/* Starts the thread's flushing fiber with its first line. */
static void start_flusher(struct http_log *log, struct log_buf *b)
{
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
    const struct http_logfmt *f;
    const struct sp_http_header *h;

    if (!c->hs->log || !t->status)
        return;
    f = c->hs->log->fmt;
    if (c->nlogq == HTTP_LOG_QUEUE)
        http_log_commit(c);
    struct http_log_entry *e = &c->logq[c->nlogq++];
    /* Field by field: combined, on the hot path, fills only its own. */
    e->line = t->line;
    e->line_len = t->line_len;
    e->status = t->status;
    e->body_at = t->body_at;
    e->body_len = t->body_len;
    if (c->hs->log_full) {
        e->start_ns = t->start_ns;
        e->head_at = t->head_at;
        e->request_length = t->request_length;
        e->upstream_ns = t->upstream_ns;
        e->upstream_addr = t->upstream_addr;
    }
    for (unsigned i = 0; i < f->nhdrs; i++) {
        h = find_header(req, f->hdrs[i], f->hdr_lens[i]);
        e->hdr[i] =
            h ? (struct http_log_slice){h->value, h->value_len} : (struct http_log_slice){NULL, 0};
    }
}

void http_log_commit(struct http_conn *c)
{
    struct http_out *o = &c->out;

    if (c->nlogq == 0)
        return;
    http_out_flush(o);
    struct http_log *log = c->hs->log;
    uint64_t now = log->fmt->need & HTTP_LOGFMT_NEED_TIME ? sp_now_ns() : 0;
    for (unsigned i = 0; i < c->nlogq; i++) {
        const struct http_log_entry *e = &c->logq[i];
        uint64_t sent = o->written > e->body_at ? o->written - e->body_at : 0;
        sent = sent < e->body_len ? sent : e->body_len;
        if (log->fmt->kind == HTTP_LOGFMT_COMBINED)
            log_line(log, c, e, sent);
        else
            log_line_fmt(log, c, e, sent, now);
    }
    c->nlogq = 0;
}
