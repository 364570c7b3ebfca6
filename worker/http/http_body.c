/*
 * Request bodies: a reader that streams the decoded bytes of the current
 * request's body (Content-Length or chunked), sends "100 Continue" when the
 * client waits for it, and leaves what follows the body (the next pipelined
 * request) where the body began.
 *
 * The body is read into the connection's input after the head, decoded in
 * place (chunked framing dropped) and handed out from there: the input
 * holds c->in[at..pos) delivered body bytes, c->in[pos..pos+pend) decoded
 * bytes not yet delivered, and c->in[pos+pend..len) input after the body
 * (once it is complete; a chunked decoder swallows all input before that).
 * When everything decoded has been delivered the space is reused for the
 * next read, so a body of any length passes through HTTP_BODY_ROOM bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "spindle/timer.h"

int64_t http_ms_left(uint64_t deadline_ns)
{
    uint64_t now = sp_now_ns();
    if (now >= deadline_ns)
        return 0;
    return (int64_t)((deadline_ns - now + 999999) / 1000000);
}

ssize_t http_in_read(struct http_conn *c, uint64_t deadline)
{
    int64_t left = http_ms_left(deadline);
    if (left == 0)
        return -ETIMEDOUT;
    return sp_stream_read(c->stream, c->in + c->len, c->cap - c->len, left);
}

/* Records an error: status is what to answer (0: none, drop the connection). */
static int body_fail(struct http_body *b, unsigned status, int err)
{
    b->pend = 0;
    b->state = HTTP_BODY_FAILED;
    b->status = status;
    b->error = err;
    return err;
}

/* Takes the n raw bytes at c->in[s..s+n), the end of the input. */
static int body_decode(struct http_conn *c, size_t s, size_t n)
{
    struct http_body *b = &c->body;
    b->pos = s;
    if (!b->chunked) {
        size_t take = (uint64_t)n < b->left ? n : (size_t)b->left;
        b->left -= take;
        b->pend = take;
        if (b->left == 0)
            b->state = HTTP_BODY_DONE;
        return 0;
    }
    size_t m = n;
    ssize_t r = sp_http_chunked_decode(&b->dec, c->in + s, &m);
    if (r == SP_HTTP_INVALID) {
        unsigned st = (unsigned)sp_http_error_status(b->dec.error);
        return body_fail(b, st, st == 413 ? -EMSGSIZE : -EPROTO);
    }
    b->pend = m;
    if (r == SP_HTTP_INCOMPLETE) {
        c->len = s + m;
    } else {
        /* Complete: the r bytes after the body sit right after the data. */
        c->len = s + m + (size_t)r;
        b->state = HTTP_BODY_DONE;
    }
    return 0;
}

void http_body_begin(struct http_conn *c, const struct sp_http_request *req, size_t at)
{
    const struct sp_http_conf *conf = c->hs->conf;
    struct http_body *b = &c->body;

    b->state = HTTP_BODY_READING;
    b->chunked = (req->flags & SP_HTTP_F_TE_CHUNKED) != 0;
    b->expect = (req->flags & SP_HTTP_F_EXPECT_CONTINUE) != 0;
    b->at = at;
    b->pos = at;
    b->pend = 0;
    b->deadline = 0;
    b->bytes_in = 0;
    b->status = 0;
    b->error = 0;
    if (b->chunked) {
        sp_http_chunked_init(&b->dec, conf->max_body_size);
    } else {
        b->left = req->content_length;
        if (b->left > conf->max_body_size) {
            body_fail(b, 413, -EMSGSIZE);
            return;
        }
        if (b->left == 0) {
            b->state = HTTP_BODY_DONE;
            return;
        }
    }
    body_decode(c, at, c->len - at);
}

static int send_continue(struct http_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (http_out_text(&c->out, cont, sizeof(cont) - 1) != 0)
        return c->out.error;
    return http_out_flush(&c->out);
}

/*
 * Makes decoded bytes available at c->in[pos..pos+pend), reading when none
 * are.  Returns 1 when there are some, 0 at the end of the body (what
 * followed it now starts at c->in[at]), or a -errno error.
 */
static int body_fill(struct http_conn *c)
{
    struct http_body *b = &c->body;

    while (b->pend == 0) {
        switch (b->state) {
        case HTTP_BODY_NONE:
            return 0;
        case HTTP_BODY_FAILED:
            return b->error;
        case HTTP_BODY_DONE: {
            /* Everything delivered: move what follows to where the body began. */
            size_t tail = c->len - b->pos;
            memmove(c->in + b->at, c->in + b->pos, tail);
            c->len = b->at + tail;
            b->state = HTTP_BODY_NONE;
            return 0;
        }
        case HTTP_BODY_READING:
            break;
        }
        c->len = b->at; /* everything after the head is delivered body */
        if (b->expect) {
            b->expect = false;
            int rc = send_continue(c);
            if (rc != 0)
                return body_fail(b, 0, rc);
        }
        if (!b->deadline)
            b->deadline = sp_now_ns() + (uint64_t)c->hs->conf->body_timeout_ms * 1000000ull;
        ssize_t got = http_in_read(c, b->deadline);
        if (got == -ETIMEDOUT)
            return body_fail(b, 408, -ETIMEDOUT);
        if (got == 0)
            return body_fail(b, 0, -ECONNABORTED);
        if (got < 0)
            return body_fail(b, 0, (int)got);
        b->bytes_in += (uint64_t)got;
        c->len += (size_t)got;
        int rc = body_decode(c, b->at, (size_t)got);
        if (rc != 0)
            return rc;
    }
    return 1;
}

ssize_t http_body_read(struct http_conn *c, void *buf, size_t len)
{
    struct http_body *b = &c->body;
    if (len == 0)
        return 0;
    int rc = body_fill(c);
    if (rc <= 0)
        return rc;
    size_t k = len < b->pend ? len : b->pend;
    memcpy(buf, c->in + b->pos, k);
    b->pos += k;
    b->pend -= k;
    return (ssize_t)k;
}

int http_body_read_all(struct http_conn *c, char **ptr, size_t *len)
{
    struct http_body *b = &c->body;
    size_t max = c->hs->conf->max_body_size;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc;

    *ptr = NULL;
    *len = 0;
    while ((rc = body_fill(c)) > 0) {
        if (b->pend > max - n) {
            rc = body_fail(b, 413, -EMSGSIZE);
            break;
        }
        if (n + b->pend > cap) {
            /* Content-Length: the whole body at once; chunked: doubling. */
            size_t want = b->chunked ? cap * 2 : n + b->pend + (size_t)b->left;
            if (want < n + b->pend)
                want = n + b->pend;
            if (want < 4096)
                want = 4096;
            if (want > max)
                want = max;
            char *nb = realloc(buf, want);
            if (!nb) {
                rc = body_fail(b, 500, -ENOMEM);
                break;
            }
            buf = nb;
            cap = want;
        }
        memcpy(buf + n, c->in + b->pos, b->pend);
        n += b->pend;
        b->pos += b->pend;
        b->pend = 0;
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *ptr = buf;
    *len = n;
    return 0;
}

int http_body_discard(struct http_conn *c)
{
    struct http_body *b = &c->body;
    int rc;
    while ((rc = body_fill(c)) > 0) {
        b->pos += b->pend;
        b->pend = 0;
    }
    return rc;
}
