/*
 * HTTP responses: the per-batch output buffer, the Date cache, response heads,
 * error responses and the prebuilt responses of "return" lines.
 *
 * Every response of a batch is appended to one buffer (and, for bodies that
 * live elsewhere, one iovec list) and written with a single writev, so a
 * batch of pipelined requests costs one system call to answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "spindle/clock.h"
#include "spindle/http_date.h"
#include "spindle/http_write.h"
#include "spindle/io.h"

/* ---- output buffer ------------------------------------------------------ */

void http_out_init(struct http_out *o, struct sp_stream *stream, char *buf, size_t cap,
                   int64_t send_timeout_ms)
{
    o->stream = stream;
    o->send_timeout_ms = send_timeout_ms;
    o->buf = buf;
    o->cap = cap;
    o->len = 0;
    o->mark = 0;
    o->niov = 0;
    o->nrefs = 0;
    o->sent = 0;
    o->queued = 0;
    o->written = 0;
    o->error = 0;
}

/* Moves the text appended since the last piece into iov[]. */
static void seal_text(struct http_out *o)
{
    if (o->len > o->mark) {
        o->iov[o->niov].iov_base = o->buf + o->mark;
        o->iov[o->niov].iov_len = o->len - o->mark;
        o->niov++;
        o->mark = o->len;
    }
}

static void release_refs(struct http_out *o)
{
    for (int i = 0; i < o->nrefs; i++)
        http_file_release(o->refs[i]);
    o->nrefs = 0;
}

int http_out_flush(struct http_out *o)
{
    seal_text(o);
    if (o->niov > 0 && o->error == 0) {
        size_t total = 0, left = 0;
        for (int i = 0; i < o->niov; i++)
            total += o->iov[i].iov_len;
        ssize_t n = sp_stream_writev(o->stream, o->iov, o->niov, o->send_timeout_ms);
        if (n < 0) {
            /* The write consumed iov[] as far as the socket took it. */
            for (int i = 0; i < o->niov; i++)
                left += o->iov[i].iov_len;
            o->error = (int)n;
            n = (ssize_t)(total - left);
        }
        o->sent += (uint64_t)n;
        o->written += (uint64_t)n;
    }
    release_refs(o);
    o->niov = 0;
    o->len = 0;
    o->mark = 0;
    return o->error;
}

void http_out_discard(struct http_out *o)
{
    release_refs(o);
    o->niov = 0;
    o->len = 0;
    o->mark = 0;
}

char *http_out_space(struct http_out *o, size_t n)
{
    /* One iov slot stays free for the text sealed at the flush. */
    if (o->cap - o->len < n || o->niov > HTTP_OUT_IOV - 2)
        if (http_out_flush(o) != 0)
            return NULL;
    return o->error ? NULL : o->buf + o->len;
}

int http_out_text(struct http_out *o, const void *p, size_t n)
{
    if (n > o->cap) {
        if (http_out_flush(o) != 0)
            return o->error;
        o->queued += n;
        ssize_t w = sp_stream_write(o->stream, p, n, o->send_timeout_ms);
        if (w < 0)
            return o->error = (int)w;
        o->sent += (uint64_t)w;
        o->written += (uint64_t)w;
        return 0;
    }
    char *d = http_out_space(o, n);
    if (!d)
        return o->error;
    memcpy(d, p, n);
    o->len += n;
    return 0;
}

int http_out_ref(struct http_out *o, const void *p, size_t n, struct http_file *ref)
{
    if (o->niov > HTTP_OUT_IOV - 3 && http_out_flush(o) != 0) {
        if (ref)
            http_file_release(ref);
        return o->error;
    }
    if (o->error) {
        if (ref)
            http_file_release(ref);
        return o->error;
    }
    seal_text(o);
    o->iov[o->niov].iov_base = (void *)p;
    o->iov[o->niov].iov_len = n;
    o->niov++;
    o->queued += n;
    if (ref)
        o->refs[o->nrefs++] = ref;
    return 0;
}

/* ---- dates ----------------------------------------------------------------- */

/* The Date string of this thread.  A fiber may resume on another thread in
 * multi-thread mode, so the thread-local is only ever touched inside this
 * function, which the compiler cannot inline into a caller that parks. */
static __thread time_t date_sec;
static __thread char date_str[SP_HTTP_DATE_LEN];

__attribute__((noinline)) void http_date_now(char *dst)
{
    time_t now = sp_wall_sec();
    if (now != date_sec) {
        sp_http_date_format(now, date_str);
        date_sec = now;
    }
    memcpy(dst, date_str, SP_HTTP_DATE_LEN);
}

/* ---- heads ------------------------------------------------------------------- */

/* Writes "HTTP/1.1 NNN Reason\r\nServer: spindle\r\nDate: " at d.  Returns the length. */
static size_t status_line(char *d, unsigned status)
{
    size_t n = sp_http_put_status_line(d, status);
    memcpy(d + n, "Server: spindle\r\nDate: ", 23);
    return n + 23;
}

int http_head(struct http_out *o, struct http_txn *t, unsigned status, const char *ctype,
              uint64_t content_length, const char *extra, size_t extra_len)
{
    size_t ctl = ctype ? strlen(ctype) : 0;
    /* status line and fixed headers, ~ 80 + reason; content type; length. */
    size_t max = 128 + SP_HTTP_DATE_LEN + ctl + 16 + 40 + SP_HTTP_CONNECTION_MAX + extra_len + 3;
    if (max > o->cap)
        return -E2BIG;
    char *d = http_out_space(o, max);
    if (!d)
        return o->error;
    size_t n = status_line(d, status);
    memcpy(d + n, t->date, SP_HTTP_DATE_LEN);
    n += SP_HTTP_DATE_LEN;
    memcpy(d + n, "\r\n", 2);
    n += 2;
    if (ctype) {
        memcpy(d + n, "Content-Type: ", 14);
        n += 14;
        memcpy(d + n, ctype, ctl);
        n += ctl;
        memcpy(d + n, "\r\n", 2);
        n += 2;
    }
    if (!sp_http_status_has_body(status)) {
        content_length = 0;
    } else if (content_length != HTTP_LEN_CHUNKED) {
        n += sp_http_put_content_length(d + n, content_length);
    } else if (t->req->minor_version >= 1) {
        memcpy(d + n, "Transfer-Encoding: chunked\r\n", 28);
        n += 28;
    }
    n += sp_http_put_connection(d + n, t->close, t->req->minor_version);
    if (extra_len) {
        memcpy(d + n, extra, extra_len);
        n += extra_len;
    }
    memcpy(d + n, "\r\n", 2);
    n += 2;
    http_out_commit(o, n);
    t->status = status;
    /* A streamed body counts its pieces as they are sent. */
    t->body_len = t->head || content_length == HTTP_LEN_CHUNKED ? 0 : content_length;
    t->body_at = o->queued;
    return 0;
}

int http_error(struct http_out *o, struct http_txn *t, unsigned status, const char *extra)
{
    char body[64];
    size_t n = sp_http_put_status(body, status, sizeof(body) - 4 - 1);
    body[n++] = '\n';
    int rc = http_head(o, t, status, "text/plain", n, extra, extra ? strlen(extra) : 0);
    if (rc == 0 && !t->head)
        rc = http_out_text(o, body, n);
    return rc;
}

/* ---- prebuilt responses ------------------------------------------------------ */

/* Bodies up to this size are copied into the output; longer ones are written
 * from the configuration's memory by reference. */
#define PREBUILT_COPY_MAX 2048

int http_prebuilt_init(struct http_prebuilt *pb, const struct sp_http_return *r)
{
    size_t ctl = strlen(r->content_type);
    char *h = malloc(128 + SP_HTTP_DATE_LEN + ctl + 64);
    if (!h)
        return -ENOMEM;
    size_t n = status_line(h, r->status);
    pb->date_off = n;
    memset(h + n, ' ', SP_HTTP_DATE_LEN);
    n += SP_HTTP_DATE_LEN;
    memcpy(h + n, "\r\nContent-Type: ", 16);
    n += 16;
    memcpy(h + n, r->content_type, ctl);
    n += ctl;
    memcpy(h + n, "\r\n", 2);
    n += 2;
    pb->body = r->body;
    pb->body_len = r->body_len;
    if (sp_http_status_has_body(r->status)) {
        n += sp_http_put_content_length(h + n, r->body_len);
    } else {
        pb->body_len = 0;
    }
    pb->status = r->status;
    pb->head = h;
    pb->head_len = n;
    return 0;
}

int http_prebuilt_send(struct http_out *o, struct http_txn *t, const struct http_prebuilt *pb)
{
    size_t body = t->head ? 0 : pb->body_len;
    size_t copy = body <= PREBUILT_COPY_MAX ? body : 0;
    size_t n = pb->head_len + SP_HTTP_CONNECTION_MAX + 1 + 2 + copy;
    char *d = http_out_space(o, n);
    if (!d)
        return o->error;
    memcpy(d, pb->head, pb->head_len);
    memcpy(d + pb->date_off, t->date, SP_HTTP_DATE_LEN);
    n = pb->head_len;
    n += sp_http_put_connection(d + n, t->close, t->req->minor_version);
    d[n++] = '\r';
    d[n++] = '\n';
    memcpy(d + n, pb->body, copy);
    n += copy;
    http_out_commit(o, n);
    t->status = pb->status;
    t->body_len = body;
    t->body_at = o->queued - copy;
    if (body > copy)
        return http_out_ref(o, pb->body, body, NULL);
    return 0;
}
