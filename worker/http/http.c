/*
 * The HTTP/1.x service: the connection loop and routing (bodies: http_body.c).
 *
 * A connection runs on a fiber only while it has work.  Each pass reads once,
 * answers every complete request in the input (pipelining) into one output
 * buffer and writes it once.  When the input holds no partial request and a
 * non-blocking read finds nothing, the fd goes to sp_iom_watch() and the
 * fiber ends: an idle keep-alive connection holds no fiber, no buffer and no
 * allocation of ours, only the IOManager's per-fd entry.
 *
 * Timeouts: a request head must be complete header_timeout after its first
 * byte and a body body_timeout after its head (408, then close).  An idle
 * connection is closed silently after keepalive_timeout; a new connection
 * that has sent nothing waits as long (header_timeout when keep-alive is
 * off).
 *
 * Errors caused by the input (400, 408, 413, 414, 431, 501 for a transfer
 * coding, 505) are answered with "Connection: close" and end the connection
 * after a short lingering read, so that the answer is not destroyed by a
 * reset while the client is still sending.  404, 405 and 501 for an unknown
 * method keep the connection.
 *
 * Routing, on the clean path (decoded, normalised): an exact path (a return
 * line, the status page) wins; then the longest "handle" prefix that matches
 * whole segments ("/hello" takes "/hello" and "/hello/x", not "/helloworld");
 * then the files under root.  A handler is a module's, or a built-in one
 * (the status page): both are written against spindle/http_handler.h and
 * run through http_handler.c.
 *
 * Methods: return paths answer GET, HEAD and POST; the status page and
 * static files GET and HEAD; handle prefixes every known method (the handler
 * decides); other known methods get 405 with Allow, unknown method tokens
 * 501.
 *
 * Bodies: the built-in routes read none, so a body is dropped before they
 * answer (a "100 Continue" must go out before the answer, not after it).  A
 * handler route runs with the body unread; what it leaves is dropped after
 * it, unless the client is still waiting for "100 Continue": then it never
 * sends the body and the connection closes after the answer.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "spindle/config.h"
#include "http_tls.h"
#include "spindle/clock.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/module.h"
#include "spindle/clock.h"
#include "spindle/timer.h"

/* How long a connection that ends after an error still reads (and drops)
 * what the client sends, so that the client sees the answer. */
#define HTTP_LINGER_MS      2000
#define HTTP_LINGER_READ_MS 500
/* Paths up to this length are cleaned on the stack. */
#define HTTP_PATH_STACK 2048

enum conn_end {
    END_KEEP = 0, /* go on with the next batch */
    END_CLOSE,    /* answered with Connection: close */
    END_LINGER,   /* answered an error: linger, then close */
    END_DROP,     /* peer gone or write failed: close now */
};

static const char allow_get_head[] = "Allow: GET, HEAD\r\n";
static const char allow_return[] = "Allow: GET, HEAD, POST\r\n";

/* ---- routes ------------------------------------------------------------------ */

static size_t path_hash(const char *p, size_t n)
{
    uint64_t h = http_hash(p, n);
    return (size_t)(h ^ (h >> 29));
}

static const struct http_route *route_find(const struct http_svc *hs, const char *p, size_t n)
{
    if (!hs->routes)
        return NULL;
    for (size_t i = path_hash(p, n) & hs->routes_mask;; i = (i + 1) & hs->routes_mask) {
        const struct http_route *r = &hs->routes[i];
        if (!r->path)
            return NULL;
        if (r->path_len == n && memcmp(r->path, p, n) == 0)
            return r;
    }
}

static int route_add(struct http_svc *hs, const char *path, const struct http_route *how)
{
    size_t n = strlen(path);
    if (route_find(hs, path, n))
        return 0; /* the first line for a path wins */
    for (size_t i = path_hash(path, n) & hs->routes_mask;; i = (i + 1) & hs->routes_mask) {
        struct http_route *r = &hs->routes[i];
        if (!r->path) {
            *r = *how;
            r->path = path;
            r->path_len = n;
            return 1;
        }
    }
}

/* What dispatch() returns besides 0 and a write error (-errno): the
 * connection ends because of the body, as c->body says (DISPATCH_BODY: it
 * failed, its error to be answered unless something was; DISPATCH_LINGER:
 * the client waits for a "100 Continue" that will not come). */
#define DISPATCH_BODY   1
#define DISPATCH_LINGER 2

/* Drops the body before a built-in answer.  True when that failed: nothing
 * is answered then (return DISPATCH_BODY). */
static inline bool body_skip(struct http_conn *c)
{
    return __builtin_expect(c->body.state != HTTP_BODY_NONE, 0) && http_body_discard(c) != 0;
}

static int answer_return(struct http_conn *c, struct http_txn *t, const void *pb)
{
    return http_prebuilt_send(&c->out, t, pb);
}

/* A return route of a service with handle lines, where a body may still be
 * unread (see process()). */
static int answer_return_body(struct http_conn *c, struct http_txn *t, const void *pb)
{
    if (body_skip(c))
        return DISPATCH_BODY;
    return http_prebuilt_send(&c->out, t, pb);
}

/* The health path: 200 while serving, 503 from the start of a graceful stop
 * (drain_delay) on, so that a balancer stops sending here first. */
static int answer_health(struct http_conn *c, struct http_txn *t, const void *arg)
{
    static const char nocache[] = "Cache-Control: no-store\r\n";
    bool soon = worker_drain_soon(c->hs->svc->worker);
    const char *body = soon ? "draining\n" : "ok\n";
    size_t n = strlen(body);
    (void)arg;
    if (body_skip(c))
        return DISPATCH_BODY;
    int rc = http_head(&c->out, t, soon ? 503 : 200, "text/plain", n, nocache, sizeof(nocache) - 1);
    if (rc == 0 && !t->head)
        rc = http_out_text(&c->out, body, n);
    return rc;
}

/* An exact route's handler (the status page): its path is the request's
 * clean path.  It reads no body. */
static int answer_handler(struct http_conn *c, struct http_txn *t, const void *arg)
{
    const struct http_handler *h = arg;
    if (body_skip(c))
        return DISPATCH_BODY;
    t->path = h->prefix;
    t->path_len = h->prefix_len;
    return http_handler_run(c, t, h);
}

/* The handle line whose prefix takes the clean path p[0..n): the longest
 * that matches whole segments (hs->handlers is sorted longest first). */
static const struct http_handler *prefix_find(const struct http_svc *hs, const char *p, size_t n)
{
    for (size_t i = 0; i < hs->nhandlers; i++) {
        const struct http_handler *h = &hs->handlers[i];
        size_t k = h->prefix_len;
        if (k <= n && memcmp(h->prefix, p, k) == 0 && (k == n || p[k] == '/' || k == 1))
            return h;
    }
    return NULL;
}

/* Whether a raw path needs decoding or normalising before lookup. */
static bool path_needs_clean(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%')
            return true;
        if (p[i] == '/' && i + 1 < n && (p[i + 1] == '/' || p[i + 1] == '.'))
            return true;
    }
    return n == 0;
}

/* ---- dispatch ------------------------------------------------------------------ */

/* After a handler (rc: what running it returned): drops what it left of
 * the body, or ends the connection when the client waits for a "100
 * Continue" (it would never send the body).  Counts the body's bytes here,
 * as process() does for the bodies it drops.  Returns what dispatch()
 * returns. */
static int handler_body_end(struct http_conn *c, const struct http_txn *t, int rc)
{
    struct http_body *b = &c->body;
    const struct sp_http_request *req = t->req;

    if (!(req->flags & SP_HTTP_F_TE_CHUNKED) && req->content_length == 0)
        return rc;
    if (rc == 0 && b->state == HTTP_BODY_READING && b->expect)
        rc = DISPATCH_LINGER;
    else if (rc == 0 && b->state != HTTP_BODY_FAILED)
        http_body_discard(c);
    if (rc == 0 && b->state == HTTP_BODY_FAILED)
        rc = DISPATCH_BODY;
    atomic_fetch_add(&worker_counters(c->hs->svc->worker)->bytes_in, b->bytes_in);
    return rc;
}

/* A path no exact route takes: a handle prefix, the files, or 404.  Apart
 * from dispatch_path() so that the exact routes' path stays short. */
static __attribute__((noinline)) int dispatch_prefix(struct http_conn *c, struct http_txn *t,
                                                     const char *path, size_t len)
{
    struct http_svc *hs = c->hs;
    enum sp_http_method m = t->req->method;

    if (hs->nhandlers) {
        const struct http_handler *h = prefix_find(hs, path, len);
        if (h) {
            t->path = path;
            t->path_len = len;
            int rc = h->proxy ? http_proxy_run(c, t, h->proxy) : http_handler_run(c, t, h);
            return handler_body_end(c, t, rc);
        }
    }
    if (body_skip(c))
        return DISPATCH_BODY;
    if (!hs->st)
        return http_error(&c->out, t, 404, NULL);
    if (m != SP_HTTP_GET && m != SP_HTTP_HEAD)
        return http_error(&c->out, t, 405, allow_get_head);
    return http_static_serve(c, t, path, len);
}

static int dispatch_path(struct http_conn *c, struct http_txn *t, const char *path, size_t len)
{
    enum sp_http_method m = t->req->method;
    bool get_head = m == SP_HTTP_GET || m == SP_HTTP_HEAD;
    const struct http_route *r = route_find(c->hs, path, len);

    if (!r)
        return dispatch_prefix(c, t, path, len);
    /* The answer drops the body itself (when it may be unread). */
    if (!get_head && !(r->post && m == SP_HTTP_POST))
        return body_skip(c) ? DISPATCH_BODY
                            : http_error(&c->out, t, 405, r->post ? allow_return : allow_get_head);
    return r->answer(c, t, r->arg);
}

/* Decodes and normalises the path first.  Apart from dispatch() so that
 * its buffer is on the stack only when a path needs it. */
static __attribute__((noinline)) int dispatch_clean(struct http_conn *c, struct http_txn *t)
{
    const struct sp_http_request *req = t->req;
    char stack_path[HTTP_PATH_STACK];
    size_t len = req->path_len, cap = len ? len : 1;
    char *buf = cap <= sizeof(stack_path) ? stack_path : malloc(cap);
    int rc;

    if (!buf)
        return http_error(&c->out, t, 500, NULL);
    ssize_t n = sp_http_path_clean(req->path, len, buf, cap);
    if (n < 0) {
        /* A bad escape, an encoded NUL, or ".." above the root: never looked up. */
        t->close = true;
        rc = body_skip(c) ? DISPATCH_BODY : http_error(&c->out, t, 400, NULL);
    } else {
        rc = dispatch_path(c, t, buf, (size_t)n);
    }
    if (buf != stack_path)
        free(buf);
    return rc;
}

/* Answers one parsed request (its body begun, see process()).  Returns 0, a
 * write error (-errno: drop the connection) or DISPATCH_BODY/LINGER. */
static int dispatch(struct http_conn *c, struct http_txn *t)
{
    const struct sp_http_request *req = t->req;

    if (req->method == SP_HTTP_OTHER)
        return body_skip(c) ? DISPATCH_BODY : http_error(&c->out, t, 501, NULL);
    if (req->form == SP_HTTP_FORM_AUTHORITY || req->form == SP_HTTP_FORM_ASTERISK)
        return body_skip(c) ? DISPATCH_BODY : http_error(&c->out, t, 405, allow_get_head);
    if (path_needs_clean(req->path, req->path_len))
        return dispatch_clean(c, t);
    return dispatch_path(c, t, req->path, req->path_len);
}

/* ---- input buffer ----------------------------------------------------------- */

/* Room the input needs to hold a head of max_header_size and a body read. */
static size_t in_cap_needed(const struct http_svc *hs)
{
    return hs->conf->max_header_size + HTTP_BODY_ROOM;
}

/* Moves the input to a heap buffer big enough for any head.  Returns 0,
 * -ENOSPC when it is that big already, or -ENOMEM (the caller answers 500,
 * or drops the connection between requests). */
static int in_grow(struct http_conn *c)
{
    size_t need = in_cap_needed(c->hs);
    if (c->cap >= need)
        return -ENOSPC;
    char *b = malloc(need);
    if (!b)
        return -ENOMEM;
    memcpy(b, c->in, c->len);
    free(c->heap_in);
    c->heap_in = b;
    c->in = b;
    c->cap = need;
    return 0;
}

/* ---- one batch ---------------------------------------------------------------- */

static void txn_init(struct http_txn *t, struct http_conn *c, const struct sp_http_request *req)
{
    t->req = req;
    t->date = c->date;
    t->head = req->method == SP_HTTP_HEAD;
    t->close = !sp_http_keep_alive(req) || c->hs->conf->keepalive_timeout_ms == 0 ||
               worker_draining(c->hs->svc->worker);
    t->status = 0;
    t->body_len = 0;
    t->body_at = 0;
    t->line = NULL;
    t->line_len = 0;
}

/* The request line at p[0..n) as received, without its end (or as much of
 * it as arrived, up to a bound: the log cuts it shorter anyway). */
static void txn_line(struct http_txn *t, const struct http_conn *c, const char *p, size_t n)
{
    if (!c->hs->log)
        return; /* only the access log reads it */
    const char *lf = memchr(p, '\n', n < 8192 ? n : 8192);
    size_t len = lf ? (size_t)(lf - p) : (n < 8192 ? n : 8192);
    if (len > 0 && p[len - 1] == '\r')
        len--;
    t->line = p;
    t->line_len = len;
    if (!c->hs->log_full)
        return; /* combined needs nothing more */
    t->start_ns = c->hs->conf->access_log_format->need & HTTP_LOGFMT_NEED_TIME ? sp_now_ns() : 0;
    t->head_at = c->out.queued;
    t->request_length = n + t->req->content_length;
    t->upstream_ns = 0;
    t->upstream_addr = NULL;
}

/* A request is answered: counted by its status for the metrics page, then
 * logged.  Every answer passes here once. */
static inline void txn_done(struct http_conn *c, const struct http_txn *t)
{
    if (__builtin_expect(t->status >= 400, 0)) {
        struct metrics_svc *m = c->hs->metrics;
        if (m)
            atomic_fetch_add_explicit(t->status >= 500 ? &m->status_5xx : &m->status_4xx, 1,
                                      memory_order_relaxed);
    }
    http_log_add(c, t);
}

/* Answers an error that ends the connection.  A HEAD (when the request line
 * was read) gets the head of the answer only, as for any other status. */
static enum conn_end fail_request(struct http_conn *c, struct http_txn *t, unsigned status)
{
    t->close = true;
    http_error(&c->out, t, status, NULL);
    txn_done(c, t);
    return END_LINGER;
}

/* The length of the complete empty lines (CRLF or LF) at the start of p[0..n). */
static size_t blank_lines(const char *p, size_t n)
{
    size_t i = 0;
    for (;;) {
        if (i < n && p[i] == '\n')
            i++;
        else if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
            i += 2;
        else
            return i;
    }
}

/* Ends the connection after dispatch() returned rc (not 0), logging the
 * request (its error answered first when a failed body left nothing
 * answered). */
static __attribute__((noinline)) enum conn_end dispatch_end(struct http_conn *c, struct http_txn *t,
                                                            int rc)
{
    if (rc == DISPATCH_BODY && t->status == 0 && c->body.status != 0)
        return fail_request(c, t, c->body.status);
    txn_done(c, t);
    return rc == DISPATCH_LINGER ? END_LINGER : END_DROP;
}

/*
 * Answers every complete request in c->in[0..len) and moves a partial one to
 * the front.  *served counts the answers.
 */
static enum conn_end process(struct http_conn *c, unsigned *served, uint64_t *bytes_in)
{
    struct http_svc *hs = c->hs;
    struct sp_http_header hdrs[HTTP_MAX_HDRS];
    struct sp_http_request req;
    struct http_txn t;
    size_t off = 0;

    while (off < c->len) {
        /* RFC 9112 2.2: empty lines before a request line are ignored.  Drop
         * them here, so that a stray CRLF after a request leaves nothing
         * pending: the connection goes idle (keepalive_timeout) instead of
         * waiting for a head (header_timeout, then an unsolicited 408).  A
         * lone CR waits for its LF. */
        size_t blank = blank_lines(c->in + off, c->len - off);
        if (blank > 0) {
            off += blank;
            c->head = (struct sp_http_resume){0};
            continue;
        }
        /* c->head belongs to the request at off: a partial head left by the
         * previous batch, moved to the front, or a fresh one (reset by the
         * parser once a head is complete). */
        ssize_t r = sp_http_parse_request_resume(&c->head, c->in + off, c->len - off, &hs->limits,
                                                 &req, hdrs, HTTP_MAX_HDRS);
        if (r == SP_HTTP_INCOMPLETE)
            break;
        txn_init(&t, c, &req);
        txn_line(&t, c, c->in + off, r > 0 ? (size_t)r : c->len - off);
        (*served)++;
        if (r == SP_HTTP_INVALID)
            return fail_request(c, &t, (unsigned)sp_http_error_status(req.error));

        size_t body_at = off + (size_t)r;
        bool has_body = (req.flags & SP_HTTP_F_TE_CHUNKED) || req.content_length > 0;
        if (has_body) {
            if ((req.flags & SP_HTTP_F_CL_PRESENT) && req.content_length > hs->conf->max_body_size)
                return fail_request(c, &t, 413);
            bool complete =
                !(req.flags & SP_HTTP_F_TE_CHUNKED) && c->len - body_at >= req.content_length;
            if (!complete && c->cap - body_at < HTTP_BODY_ROOM) {
                /* The rest of the body is read into the space after the head
                 * (the body bytes already here are dropped first).  Make room
                 * by moving this request to the front, or by growing the
                 * buffer, and parse it again where it now lies.  Log what
                 * was answered first: its slices point where this moves. */
                http_log_commit(c);
                if (off > 0) {
                    memmove(c->in, c->in + off, c->len - off);
                    c->len -= off;
                    off = 0;
                } else if (in_grow(c) != 0) {
                    return fail_request(c, &t, 500);
                }
                (*served)--;
                continue;
            }
            /* Without handle lines nothing reads bodies: drop it before
             * answering, so that the routes need not check.  Otherwise the
             * route reads it or drops it (see the top). */
            http_body_begin(c, &req, body_at);
            if (!hs->nhandlers) {
                int rc = http_body_discard(c);
                *bytes_in += c->body.bytes_in;
                if (rc != 0 && c->body.status == 0)
                    return END_DROP;
                if (rc != 0)
                    return fail_request(c, &t, c->body.status);
            }
        } else {
            c->body.state = HTTP_BODY_NONE;
        }

        int rc = dispatch(c, &t);
        if (rc != 0)
            return dispatch_end(c, &t, rc);
        txn_done(c, &t);
        if (t.close) {
            /* Only whether input is left matters now (see conn_run). */
            c->len -= body_at;
            return END_CLOSE;
        }
        off = body_at;
    }
    if (off > 0) {
        http_log_commit(c);
        memmove(c->in, c->in + off, c->len - off);
        c->len -= off;
    }
    return END_KEEP;
}

/* ---- connection life ------------------------------------------------------------ */

static void conn_ready(int fd, int status, void *arg);
static void conn_ready_tls(int fd, int status, void *arg);

static void conn_closed(struct http_svc *hs, struct sp_stream *s)
{
    sp_stream_close(s);
    worker_conn_closed(hs->svc->worker);
}

/* Nothing is buffered and the socket is empty: the fd waits in a watch (no
 * fiber, no buffer) for its next bytes or its idle timeout.  Returns false
 * when no watch could be set: the connection is dropped. */
static bool conn_park(struct http_conn *c, bool fresh)
{
    struct http_svc *hs = c->hs;
    struct worker *w = hs->svc->worker;
    int64_t idle = hs->conf->keepalive_timeout_ms;
    if (fresh && idle == 0)
        idle = hs->conf->header_timeout_ms;
    if (worker_draining(w) && idle > WORKER_DRAIN_IDLE_MS)
        idle = WORKER_DRAIN_IDLE_MS;
    free(c->heap_in);
    c->heap_in = NULL;
    /* A TLS session waits in the watch too (its SSL object on the heap):
     * try_read said nothing decrypted is left inside it. */
    if (c->stream != &c->sock)
        return sp_iom_watch(worker_iom(w), c->stream->fd, idle, conn_ready_tls, c->stream) == 0;
    return sp_iom_watch(worker_iom(w), c->stream->fd, idle, conn_ready, hs) == 0;
}

/* The rest of a partial head did not come within header_timeout: 408. */
static enum conn_end conn_head_timeout(struct http_conn *c, struct worker_counters *wc)
{
    struct sp_http_request none = {.method = SP_HTTP_METHOD_NONE, .minor_version = 1};
    struct http_txn t;
    http_date_now(c->date);
    txn_init(&t, c, &none);
    txn_line(&t, c, c->in, c->len);
    enum conn_end end = fail_request(c, &t, 408);
    http_log_commit(c);
    http_out_flush(&c->out);
    atomic_fetch_add(&wc->requests, 1);
    return end;
}

/* The connection is over: lingers when the peer may still be sending (so
 * that our close does not reset our last answer), then closes. */
static void conn_finish(struct http_conn *c, enum conn_end end, struct worker_counters *wc)
{
    atomic_fetch_add(&wc->bytes_out, c->out.sent);
    http_out_discard(&c->out);
    if (end == END_CLOSE) {
        /* Bytes still coming after a request we answered with close would
         * make our close a reset that may destroy the answer. */
        ssize_t more = c->len ? 1 : sp_stream_try_read(c->stream, c->in, c->cap);
        if (more > 0)
            end = END_LINGER;
    }
    if (end == END_LINGER && c->out.error == 0)
        sp_stream_linger(c->stream, c->in, c->cap, HTTP_LINGER_MS, HTTP_LINGER_READ_MS);
    free(c->heap_in);
    c->heap_in = NULL;
    conn_closed(c->hs, c->stream);
}

/* A connection's active stretch: reads, answers every complete request
 * read, writes, until the socket is empty with nothing left over (then the
 * fd is parked in a watch) or the connection ends. */
static void conn_run(struct http_conn *c, bool fresh)
{
    struct http_svc *hs = c->hs;
    struct worker_counters *wc = worker_counters(hs->svc->worker);
    const uint64_t header_ns = (uint64_t)hs->conf->header_timeout_ms * 1000000ull;
    uint64_t head_deadline = 0;
    bool dry = false; /* the last sp_try_read was short: the socket is empty */
    enum conn_end end;

    for (;;) {
        ssize_t n;
        if (c->len == 0) {
            /* After a short sp_try_read the fd may be watched at once (io.h):
             * bytes arriving since still wake the watch.  That saves a read
             * that would only say EAGAIN. */
            n = dry ? -EAGAIN : sp_stream_try_read(c->stream, c->in, c->cap);
            dry = n > 0 && (size_t)n < c->cap;
            if (n == -EAGAIN) {
                if (conn_park(c, fresh))
                    return;
                end = END_DROP;
                break;
            }
        } else {
            if (c->cap - c->len < HTTP_BODY_ROOM && c->cap < in_cap_needed(hs) && in_grow(c) != 0) {
                end = END_DROP;
                break;
            }
            n = http_in_read(c, head_deadline);
            dry = false;
            if (n == -ETIMEDOUT) {
                end = conn_head_timeout(c, wc);
                break;
            }
        }
        if (n <= 0) {
            end = END_DROP;
            break;
        }
        uint64_t bytes_in = (uint64_t)n;
        unsigned served = 0;
        /* A request's time counts from the start of the scheduler pass
         * that read it (the thread's clock reading, no system call) to a
         * fresh reading once its answer is written. */
        uint64_t t0 = sp_clock_pass_ns();
        c->len += (size_t)n;
        http_date_now(c->date);
        end = process(c, &served, &bytes_in);
        http_log_commit(c);
        if (http_out_flush(&c->out) != 0)
            end = END_DROP;
        atomic_fetch_add(&wc->bytes_in, bytes_in);
        if (served) {
            if (hs->metrics)
                metrics_observe(hs->metrics, sp_now_ns() - t0, served);
            atomic_fetch_add(&wc->requests, served);
            atomic_fetch_add(&wc->bytes_out, c->out.sent);
            c->out.sent = 0;
            fresh = false;
            head_deadline = 0;
        }
        if (end != END_KEEP)
            break;
        /* A partial head is left: its first byte came with this read (or an
         * earlier one, whose deadline stands). */
        if (c->len && head_deadline == 0)
            head_deadline = sp_now_ns() + header_ns;
    }
    conn_finish(c, end, wc);
}

/*
 * The buffers and state of an active connection.  A stack page costs memory
 * only once it is touched, and a request touches the start of each buffer:
 * with the state at the top (beside the fiber's own page) and the input at
 * the bottom (beside the frames of the calls below), a small request touches
 * about four pages.  That is what a burst of connections keeps warm in the
 * fiber pool.
 */
struct conn_frame {
    char in[HTTP_IN_SIZE];
    char out[HTTP_OUT_SIZE];
    struct http_log_entry logq[HTTP_LOG_QUEUE];
    struct http_conn c;
};

static void conn_frame_run(struct conn_frame *f, struct http_svc *hs, int fd, struct sp_stream *tls,
                           bool fresh)
{
    memset(&f->c, 0, offsetof(struct http_conn, out));
    f->c.hs = hs;
    f->c.in = f->in;
    f->c.cap = sizeof(f->in);
    f->c.logq = f->logq;
    sp_stream_socket(&f->c.sock, fd);
    f->c.stream = tls ? tls : &f->c.sock;
    http_out_init(&f->c.out, f->c.stream, f->out, sizeof(f->out), hs->conf->send_timeout_ms);
    conn_run(&f->c, fresh);
}

/* The frame of a deep enough stack.  Apart from conn_start() so that the
 * heap path does not reserve it too: a frame larger than a small stack
 * would jump over its guard page. */
static __attribute__((noinline)) void conn_start_on_stack(struct http_svc *hs, int fd,
                                                          struct sp_stream *tls, bool fresh)
{
    struct conn_frame f;
    conn_frame_run(&f, hs, fd, tls, fresh);
}

static __attribute__((noinline)) void conn_start_on_heap(struct http_svc *hs, int fd,
                                                         struct sp_stream *tls, bool fresh)
{
    struct conn_frame *f = malloc(sizeof(*f));
    if (!f) {
        struct sp_stream s;
        sp_log_error("http: no memory for connection buffers; closing fd %d", fd);
        sp_stream_socket(&s, fd);
        conn_closed(hs, tls ? tls : &s);
        return;
    }
    conn_frame_run(f, hs, fd, tls, fresh);
    free(f);
}

/* Runs a connection's active stretch with its buffers on this fiber's stack,
 * or on the heap when the configured stack is too small for them.  tls:
 * the connection's TLS stream, or NULL for a plain socket. */
static void conn_start(struct http_svc *hs, int fd, struct sp_stream *tls, bool fresh)
{
    if (hs->bufs_on_stack)
        conn_start_on_stack(hs, fd, tls, fresh);
    else
        conn_start_on_heap(hs, fd, tls, fresh);
}

/* The watch of an idle connection ended. */
static void conn_ready(int fd, int status, void *arg)
{
    struct http_svc *hs = arg;
    if (status == -ECANCELED) {
        /* Someone closed the fd under the watch; it is gone already. */
        worker_conn_closed(hs->svc->worker);
        return;
    }
    if (status < 0) {
        /* keepalive_timeout, or a draining worker's grace: close silently. */
        struct sp_stream s;
        sp_stream_socket(&s, fd);
        conn_closed(hs, &s);
        return;
    }
    conn_start(hs, fd, NULL, false);
}

/* The watch of an idle TLS connection ended; arg is its stream. */
static void conn_ready_tls(int fd, int status, void *arg)
{
    struct sp_stream *s = arg;
    struct http_svc *hs = http_tls_svc(s);
    if (status == -ECANCELED) {
        http_tls_drop(s);
        worker_conn_closed(hs->svc->worker);
        return;
    }
    if (status < 0) {
        conn_closed(hs, s);
        return;
    }
    conn_start(hs, fd, s, false);
}

/* Whether a new connection on fd came through a listen address flagged
 * tls: looked up only for a section that has both kinds. */
static bool conn_is_tls(struct http_svc *hs, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (hs->tls == NULL)
        return false;
    if (hs->tls_only)
        return true;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    const struct sp_config *cfg = worker_config(hs->svc->worker);
    const struct sp_listen_conf *l = sp_config_find_conflict(cfg, (struct sockaddr *)&ss);
    return l != NULL && l->tls;
}

/* ---- the service's definition ----------------------------------------------------- */

static int handler_longer(const void *a, const void *b)
{
    size_t x = ((const struct http_handler *)a)->prefix_len;
    size_t y = ((const struct http_handler *)b)->prefix_len;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The state of the proxy lines' upstreams, one per [upstream] the service
 * names, shared by its lines. */
static struct http_proxy *proxy_for(struct http_svc *hs, const struct sp_upstream_conf *up,
                                    unsigned threads, char *err, size_t errlen)
{
    for (size_t i = 0; i < hs->nproxies; i++)
        if (hs->upstreams[i] == up)
            return hs->proxies[i];
    struct http_proxy *px = http_proxy_new(up, hs->svc->worker, threads, err, errlen);
    if (px) {
        hs->upstreams[hs->nproxies] = up;
        hs->proxies[hs->nproxies++] = px;
        if (http_proxy_start(px) != 0) {
            snprintf(err, errlen, "[upstream %s]: cannot start its health check", up->name);
            return NULL;
        }
    }
    return px;
}

/* The routes of the proxy lines, after the handle lines' in hs->handlers. */
static int proxies_init(struct http_svc *hs, unsigned threads, char *err, size_t errlen)
{
    const struct sp_http_conf *conf = hs->conf;
    const struct sp_config *cfg = worker_config(hs->svc->worker);

    hs->proxies = calloc(conf->nproxies, sizeof(*hs->proxies));
    hs->upstreams = calloc(conf->nproxies, sizeof(*hs->upstreams));
    if (!hs->proxies || !hs->upstreams) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < conf->nproxies; i++) {
        const struct sp_http_proxy *pl = &conf->proxies[i];
        const struct sp_upstream_conf *up = sp_config_find_upstream(cfg, pl->upstream);
        if (!up) {
            snprintf(err, errlen, "proxy %s: no upstream %s", pl->prefix, pl->upstream);
            return -1;
        }
        struct http_proxy *px = proxy_for(hs, up, threads, err, errlen);
        if (!px)
            return -1;
        hs->handlers[conf->nhandles + i] = (struct http_handler){
            .proxy = px, .prefix = pl->prefix, .prefix_len = strlen(pl->prefix)};
    }
    return 0;
}

/* Resolves the module of each handle line (spindle/module.h: the loader has
 * registered the modules before the services start) and the upstream of
 * each proxy line; one table, longest prefix first. */
static int handlers_init(struct http_svc *hs, unsigned threads, char *err, size_t errlen)
{
    const struct sp_http_conf *conf = hs->conf;

    if (conf->nhandles + conf->nproxies == 0)
        return 0;
    hs->handlers = calloc(conf->nhandles + conf->nproxies, sizeof(*hs->handlers));
    if (!hs->handlers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < conf->nhandles; i++) {
        const struct sp_http_handle *hd = &conf->handles[i];
        const struct sp_module_instance *mi = sp_module_find(hd->module);
        if (!mi) {
            snprintf(err, errlen, "handle %s: no module %s", hd->prefix, hd->module);
            return -1;
        }
        if (!mi->def->http || !mi->def->http->handle) {
            snprintf(err, errlen, "handle %s: module %s has no HTTP handler", hd->prefix,
                     hd->module);
            return -1;
        }
        hs->handlers[i] = (struct http_handler){.prefix = hd->prefix,
                                                .prefix_len = strlen(hd->prefix),
                                                .def = mi->def->http,
                                                .state = mi->state};
    }
    if (conf->nproxies && proxies_init(hs, threads, err, errlen) != 0)
        return -1;
    hs->nhandlers = conf->nhandles + conf->nproxies;
    qsort(hs->handlers, hs->nhandlers, sizeof(*hs->handlers), handler_longer);
    return 0;
}

/* The TLS contexts of a section with a listen address flagged tls. */
static int tls_init(struct http_svc *hs, const struct sp_config *cfg, char *err, size_t errlen)
{
    unsigned plain = 0;
    if (cfg->stack_size < 64 * 1024) {
        snprintf(err, errlen, "tls needs a stack_size of at least 64k (have %zu)", cfg->stack_size);
        return -1;
    }
    for (unsigned i = 0; i < cfg->nlistens; i++)
        plain += cfg->services[cfg->listens[i].service].conf == hs->conf && !cfg->listens[i].tls;
    hs->tls_only = plain == 0;
    if (!(hs->tls = http_tls_new(hs->conf, err, errlen)))
        return -1;
    return 0;
}

/* Worker-wide state every http service shares (the MIME table): freed when
 * the last one ends. */
static unsigned http_live;

static int http_init(struct service *svc, char *err, size_t errlen)
{
    const struct sp_http_conf *conf = svc->conf;
    const struct sp_config *cfg = worker_config(svc->worker);
    struct http_svc *hs = calloc(1, sizeof(*hs));
    if (!hs)
        goto nomem;
    svc->state = hs;
    http_live++;
    hs->svc = svc;
    hs->conf = conf;
    if (svc->section) /* a test's service may have none */
        hs->metrics = metrics_proc_svc(worker_metrics_proc(svc->worker), svc->section->name);
    unsigned threads = cfg->threads > 1 ? cfg->threads : 1;
    hs->bufs_on_stack = cfg->stack_size >= 64 * 1024;
    hs->limits.max_head = conf->max_header_size;
    /* Below the head limit, so that a long target is 414 rather than 431. */
    hs->limits.max_target = conf->max_header_size - 32;

    size_t nroutes = conf->nreturns + 2, slots = 8;
    while (slots < nroutes * 2)
        slots *= 2;
    hs->routes = calloc(slots, sizeof(*hs->routes));
    hs->prebuilt = calloc(conf->nreturns ? conf->nreturns : 1, sizeof(*hs->prebuilt));
    if (!hs->routes || !hs->prebuilt)
        goto nomem;
    hs->routes_mask = slots - 1;
    for (unsigned i = 0; i < conf->nreturns; i++) {
        if (http_prebuilt_init(&hs->prebuilt[i], &conf->returns[i]) != 0)
            goto nomem;
        hs->nprebuilt = i + 1;
        struct http_route r = {.answer = conf->nhandles + conf->nproxies ? answer_return_body
                                                                         : answer_return,
                               .arg = &hs->prebuilt[i],
                               .post = true};
        route_add(hs, conf->returns[i].path, &r);
    }
    if (conf->status_path) {
        hs->status = (struct http_handler){.prefix = conf->status_path,
                                           .prefix_len = strlen(conf->status_path),
                                           .def = &http_status_handler,
                                           .state = hs};
        struct http_route r = {.answer = answer_handler, .arg = &hs->status};
        route_add(hs, conf->status_path, &r);
    }
    if (conf->metrics_path) {
        hs->metrics_page = (struct http_handler){.prefix = conf->metrics_path,
                                                 .prefix_len = strlen(conf->metrics_path),
                                                 .def = &http_metrics_handler,
                                                 .state = hs};
        struct http_route r = {.answer = answer_handler, .arg = &hs->metrics_page};
        route_add(hs, conf->metrics_path, &r);
    }
    if (conf->health_path) {
        struct http_route r = {.answer = answer_health};
        route_add(hs, conf->health_path, &r);
    }
    if (handlers_init(hs, threads, err, errlen) != 0)
        return -1;

    if (conf->tls && tls_init(hs, cfg, err, errlen) != 0)
        return -1;
    if (conf->root && !(hs->st = http_static_new(conf, threads, err, errlen)))
        return -1;
    if (conf->access_log) {
        if (!(hs->log = http_log_open(conf->access_log, conf->access_log_format, svc->log_fd,
                                      threads, err, errlen)))
            return -1;
        hs->log_full = conf->access_log_format->kind != HTTP_LOGFMT_COMBINED;
    }
    return 0;

nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void http_handle(struct service *svc, int fd)
{
    struct http_svc *hs = svc->state;
    if (conn_is_tls(hs, fd)) {
        struct sp_stream *s = http_tls_accept(hs, hs->tls, fd);
        if (s == NULL) {
            worker_conn_closed(svc->worker);
            return;
        }
        conn_start(hs, fd, s, true);
        return;
    }
    conn_start(hs, fd, NULL, true);
}

static void http_drain(struct service *svc)
{
    struct http_svc *hs = svc->state;
    if (hs->log)
        http_log_flush(hs->log);
}

static void http_reopen(struct service *svc, int fd)
{
    struct http_svc *hs = svc->state;
    if (hs && hs->log)
        http_log_reopen(hs->log, fd);
    else
        close(fd);
}

/* The scheduler has stopped: a fiber still parked in a connection (a stop
 * without drain) never runs again, so nothing uses hs after this. */
static void http_fini(struct service *svc)
{
    struct http_svc *hs = svc->state;
    if (!hs)
        return;
    http_log_close(hs->log);
    http_static_free(hs->st);
    http_tls_free(hs->tls);
    for (size_t i = 0; i < hs->nprebuilt; i++)
        free(hs->prebuilt[i].head);
    free(hs->prebuilt);
    free(hs->routes);
    free(hs->handlers);
    for (size_t i = 0; i < hs->nproxies; i++)
        http_proxy_free(hs->proxies[i]);
    free(hs->proxies);
    free(hs->upstreams);
    free(hs);
    svc->state = NULL;
    if (--http_live == 0)
        http_mime_free();
}

const struct sp_service_def sp_service_http = {
    HTTP_CONF_DEF,       .init = http_init,     .handle = http_handle,
    .drain = http_drain, .reopen = http_reopen, .fini = http_fini,
};
