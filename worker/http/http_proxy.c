/*
 * Proxy lines: "proxy PREFIX = UPSTREAM" forwards the requests under PREFIX
 * to the servers of [upstream UPSTREAM] over HTTP/1.1 and streams their
 * answers back.
 *
 * What goes upstream: the method, the clean path (decoded and normalised, as
 * routing saw it, percent-encoded again where a path needs it) and the query
 * as received; every header but the hop-by-hop ones (RFC 9110 7.6.1:
 * Connection, those it names, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade) and those spindle rewrites (Content-Length,
 * Expect, X-Forwarded-For, X-Forwarded-Proto); Host as received;
 * X-Forwarded-For with the client's address appended; X-Forwarded-Proto:
 * https for a connection over TLS, else http.  The body is re-framed: Content-Length when the
 * client sent one, else chunked, as spindle decoded it, never in the client's framing.  An "Expect:
 * 100-continue" is answered by the body reader when it first waits for the body.
 *
 * Buffers are bounded: the request body passes through one buffer of
 * PROXY_BUF bytes, the answer through another, whatever their lengths.  The
 * answer's head must fit in PROXY_BUF (else 502).  Its body keeps its
 * framing when it has a length; a chunked body, or one that ends with the
 * upstream's close, is sent chunked to an HTTP/1.1 client (to HTTP/1.0: until
 * close).  An interim 1xx answer other than 100 is passed to an HTTP/1.1
 * client.
 *
 * Which server, and on which connection: http_upstream.c.
 *
 * Failures: a refused or timed-out connect, or a fresh connection closed
 * before any byte of the answer when the request is idempotent, moves on to
 * the next server (the request's body is never replayed: once some of it was
 * read, only the first server is tried); none left: 502.  No answer within
 * read_timeout: 504.  An answer that is not HTTP/1.x: 502, and the
 * connection is closed.  Once the head went out to the client, an upstream
 * that fails (closes early, times out, breaks the chunked framing) ends the
 * client's connection, so that the client sees a truncated answer, never a
 * complete-looking one.  A client gone mid-answer closes the upstream
 * connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_proxy.h"
#include "spindle/http_write.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/timer.h"
#include "spindle/waitq.h"

/* What forwarding one attempt came to. */
enum attempt {
    ATTEMPT_OK = 0, /* an answer's head is in r->resp */
    ATTEMPT_STALE,  /* a pooled connection was closed under us: retry, no failure */
    ATTEMPT_NEXT,   /* this server failed; another may be tried */
    ATTEMPT_502,    /* failed, and no other server may be tried */
    ATTEMPT_504,    /* no answer within read_timeout */
    ATTEMPT_BODY,   /* reading the client's body failed (c->body says how) */
};

/* ---- the request head ----------------------------------------------------- */

static bool name_is(const struct sp_http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/* Records the tokens of the Connection lines of hdrs: the header names
 * they make hop-by-hop. */
static void conn_tokens(struct proxy_req *r, const struct sp_http_header *hdrs, size_t n)
{
    r->nconn = 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_is(&hdrs[i], "connection"))
            continue;
        const char *p = hdrs[i].value, *end = p + hdrs[i].value_len;
        while (p < end && r->nconn < PROXY_CONN_HDRS) {
            while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s) {
                r->conn_names[r->nconn] = s;
                r->conn_lens[r->nconn++] = (size_t)(p - s);
            }
        }
    }
}

/* Whether a header is not forwarded: hop-by-hop (RFC 9110 7.6.1), named by
 * Connection, or one the proxy writes itself (extra, NULL-terminated). */
static bool hop_by_hop(const struct proxy_req *r, const struct sp_http_header *h,
                       const char *const *extra)
{
    static const char *const hop[] = {"connection", "keep-alive",     "proxy-connection",
                                      "te",         "trailer",        "transfer-encoding",
                                      "upgrade",    "content-length", NULL};
    for (const char *const *n = hop; *n; n++)
        if (name_is(h, *n))
            return true;
    for (const char *const *n = extra; *n; n++)
        if (name_is(h, *n))
            return true;
    for (unsigned i = 0; i < r->nconn; i++)
        if (h->name_len == r->conn_lens[i] &&
            strncasecmp(h->name, r->conn_names[i], h->name_len) == 0)
            return true;
    return false;
}

/* Bytes a path needs in a request line as they are ("/", unreserved,
 * sub-delims, ':' and '@'); anything else is percent-encoded. */
static bool path_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("/-._~!$&'()*+,;=:@", ch) != NULL;
}

static const char *const req_own[] = {"expect", "x-forwarded-for", "x-forwarded-proto", NULL};

/* The most bytes head_write() writes. */
static size_t head_size(const struct proxy_req *r)
{
    const struct sp_http_request *q = r->t->req;
    size_t n = q->method_len + 3 * r->t->path_len + q->query_len + 256;
    for (size_t i = 0; i < q->num_headers; i++)
        n += q->headers[i].name_len + q->headers[i].value_len + 4;
    return n;
}

/* Writes the request head for the upstream at d (head_size() bytes). */
static size_t head_write(struct proxy_req *r, char *d)
{
    static const char hex[] = "0123456789ABCDEF";
    const struct sp_http_request *q = r->t->req;
    size_t o = 0;

    memcpy(d + o, q->method_str, q->method_len);
    o += q->method_len;
    d[o++] = ' ';
    for (size_t i = 0; i < r->t->path_len; i++) {
        unsigned char ch = (unsigned char)r->t->path[i];
        if (path_char(ch)) {
            d[o++] = (char)ch;
        } else {
            d[o++] = '%';
            d[o++] = hex[ch >> 4];
            d[o++] = hex[ch & 15];
        }
    }
    if (q->query) {
        d[o++] = '?';
        memcpy(d + o, q->query, q->query_len);
        o += q->query_len;
    }
    memcpy(d + o, " HTTP/1.1\r\n", 11);
    o += 11;
    for (size_t i = 0; i < q->num_headers; i++) {
        const struct sp_http_header *h = &q->headers[i];
        if (hop_by_hop(r, h, req_own))
            continue;
        o += sp_http_put_header(d + o, h->name, h->name_len, h->value, h->value_len);
    }
    /* One X-Forwarded-For line: the lists received, in order, then the
     * client. */
    http_peer_name(r->c);
    memcpy(d + o, "X-Forwarded-For: ", 17);
    o += 17;
    for (size_t i = 0; i < q->num_headers; i++) {
        const struct sp_http_header *h = &q->headers[i];
        if (name_is(h, "x-forwarded-for") && h->value_len > 0) {
            memcpy(d + o, h->value, h->value_len);
            o += h->value_len;
            memcpy(d + o, ", ", 2);
            o += 2;
        }
    }
    size_t pl = strnlen(r->c->peer, 63);
    memcpy(d + o, r->c->peer, pl);
    o += pl;
    static const char plain[] = "\r\nX-Forwarded-Proto: http\r\n";
    static const char tls[] = "\r\nX-Forwarded-Proto: https\r\n";
    bool is_plain = r->c->stream->ops == &sp_socket_stream_ops;
    memcpy(d + o, is_plain ? plain : tls, is_plain ? sizeof(plain) - 1 : sizeof(tls) - 1);
    o += is_plain ? sizeof(plain) - 1 : sizeof(tls) - 1;
    if (!(q->flags & SP_HTTP_F_HOST)) {
        /* HTTP/1.0 without Host: HTTP/1.1 needs one. */
        const char *host = r->up->servers[r->peer].text;
        if (strncmp(host, "unix:", 5) == 0)
            host = "localhost";
        o += (size_t)sprintf(d + o, "Host: %s\r\n", host);
    }
    if (r->upgrade) {
        o += sp_http_put_header(d + o, "Upgrade", 7, r->upgrade, r->upgrade_len);
        memcpy(d + o, "Connection: upgrade\r\n", 21);
        o += 21;
    }
    if (q->flags & SP_HTTP_F_TE_CHUNKED) {
        memcpy(d + o, "Transfer-Encoding: chunked\r\n", 28);
        o += 28;
    } else if (q->content_length > 0 || (q->flags & SP_HTTP_F_CL_PRESENT)) {
        o += sp_http_put_content_length(d + o, q->content_length);
    }
    memcpy(d + o, "\r\n", 2);
    return o + 2;
}

/* The request's body, as decoded, in its new framing.  Returns 0, -EPIPE
 * (the upstream failed) or 1 (the client's body failed). */
static int body_send(struct proxy_req *r)
{
    const struct sp_http_request *q = r->t->req;
    bool chunked = (q->flags & SP_HTTP_F_TE_CHUNKED) != 0;
    int64_t to = r->up->send_timeout_ms;

    if (!chunked && q->content_length == 0)
        return 0;
    r->body_started = true;
    for (;;) {
        char *data = r->body + PROXY_CHUNK_MAX;
        ssize_t n = http_body_read(r->c, data, PROXY_BODY_BUF);
        if (n < 0)
            return 1;
        if (n == 0)
            break;
        char *p = data;
        size_t len = (size_t)n;
        if (chunked) {
            char line[PROXY_CHUNK_MAX + 1];
            int k = snprintf(line, sizeof(line), "%zx\r\n", len);
            p -= k;
            memcpy(p, line, (size_t)k);
            memcpy(data + len, "\r\n", 2);
            len += (size_t)k + 2;
        }
        if (sp_write(r->fd, p, len, to) < 0)
            return -EPIPE;
    }
    if (chunked && sp_write(r->fd, "0\r\n\r\n", 5, to) < 0)
        return -EPIPE;
    return 0;
}

/* ---- one attempt ---------------------------------------------------------- */

/* Passes an interim 1xx answer (not 100: spindle answers Expect itself) to
 * an HTTP/1.1 client.  Returns 0 or -errno. */
static int interim_send(struct proxy_req *r)
{
    struct http_out *o = &r->c->out;
    if (r->resp.status == 100 || r->t->req->minor_version == 0)
        return 0;
    if (http_out_text(o, r->buf, r->resp.head_len) != 0)
        return o->error;
    return http_out_flush(o);
}

/* Reads the answer's head into r->buf.  An error before its first byte on
 * a pooled connection is a stale connection. */
static enum attempt head_read(struct proxy_req *r)
{
    enum sp_http_method m = r->t->req->method;
    r->rlen = 0;
    /* The answer is hardly ever there yet: wait for it rather than spend a
     * read on EAGAIN first (a read event usually finds the fd's readiness
     * clear, so this parks at once).  sp_read() still times the wait. */
    int wrc = sp_wait(r->fd, SP_IO_READ, r->up->read_timeout_ms);
    if (wrc == -ETIMEDOUT)
        return ATTEMPT_504;
    for (;;) {
        ssize_t n = wrc < 0 ? wrc
                            : sp_read(r->fd, r->buf + r->rlen, sizeof(r->buf) - r->rlen,
                                      r->up->read_timeout_ms);
        if (n == -ETIMEDOUT)
            return ATTEMPT_504;
        if (n <= 0) {
            if (r->rlen == 0 && r->reused && r->idempotent)
                return ATTEMPT_STALE;
            if (r->rlen == 0 && r->idempotent)
                return ATTEMPT_NEXT;
            return ATTEMPT_502;
        }
        r->rlen += (size_t)n;
        for (;;) {
            ssize_t h = sp_http_parse_response(r->buf, r->rlen, sizeof(r->buf), m, &r->resp,
                                               r->hdrs, HTTP_MAX_HDRS);
            if (h == SP_HTTP_INCOMPLETE)
                break;
            if (h == SP_HTTP_INVALID)
                return ATTEMPT_502;
            if (r->resp.status >= 200 || r->resp.status == 101)
                return ATTEMPT_OK;
            if (interim_send(r) != 0)
                return ATTEMPT_502;
            memmove(r->buf, r->buf + h, r->rlen - (size_t)h);
            r->rlen -= (size_t)h;
        }
        if (r->rlen == sizeof(r->buf))
            return ATTEMPT_502; /* cannot happen: the parser says too large first */
    }
}

/* Sends the request on r->fd and reads the answer's head. */
static enum attempt attempt_send(struct proxy_req *r)
{
    char *head = r->buf;
    size_t need = head_size(r);
    COUNT(r->th->peers[r->peer].requests);
    if (need > sizeof(r->buf) && !(head = malloc(need)))
        return ATTEMPT_502;
    size_t len = head_write(r, head);
    ssize_t w = sp_write(r->fd, head, len, r->up->send_timeout_ms);
    if (head != r->buf)
        free(head);
    if (w < 0)
        return r->reused ? ATTEMPT_STALE : ATTEMPT_NEXT;
    int rc = body_send(r);
    if (rc == 1)
        return ATTEMPT_BODY;
    if (rc < 0)
        return ATTEMPT_502;
    return head_read(r);
}

/* Tries the servers in turn until one answers with a head. */
static enum attempt forward(struct proxy_req *r)
{
    uint64_t tried = 0;
    enum attempt a = ATTEMPT_502;

    for (;;) {
        int peer = http_upstream_pick(r, tried, sp_now_ns());
        if (peer < 0)
            return a == ATTEMPT_NEXT ? ATTEMPT_502 : a;
        r->peer = (unsigned)peer;
        r->t->upstream_addr = r->up->servers[peer].text;
        tried |= 1ull << peer;
        http_upstream_release(r);
        http_upstream_hold(r, r->peer);
        for (;;) {
            r->fd = http_upstream_take(r, r->peer);
            r->reused = r->fd >= 0;
            if (!r->reused && http_upstream_connect(r, r->peer) != 0) {
                a = ATTEMPT_NEXT;
                break;
            }
            a = attempt_send(r);
            if (a != ATTEMPT_STALE)
                break;
            http_upstream_close(r);
        }
        if (a == ATTEMPT_OK || a == ATTEMPT_BODY)
            return a;
        http_upstream_close(r);
        http_upstream_failed(r, r->peer);
        if (a != ATTEMPT_NEXT || r->body_started)
            return a == ATTEMPT_NEXT ? ATTEMPT_502 : a;
    }
}

/* ---- the answer ----------------------------------------------------------- */

static const char *const resp_own[] = {NULL};

/* Room in the client's output for a head made of the upstream's headers
 * and extra bytes of our own, after noting the tokens of its Connection
 * headers (hop_by_hop() drops them).  Returns the room, or NULL with *rc
 * set (-E2BIG: larger than the buffer; else the output's error). */
static char *head_space(struct proxy_req *r, size_t extra, int *rc)
{
    struct http_out *o = &r->c->out;
    const struct sp_http_response *rs = &r->resp;
    size_t need = SP_HTTP_STATUS_LINE_MAX + extra;

    conn_tokens(r, rs->headers, rs->num_headers);
    for (size_t i = 0; i < rs->num_headers; i++)
        need += rs->headers[i].name_len + rs->headers[i].value_len + 4;
    char *d = need > o->cap ? NULL : http_out_space(o, need);
    if (!d)
        *rc = need > o->cap ? -E2BIG : o->error;
    return d;
}

/* Sends the answer's head to the client; chunked says the body is re-chunked. */
static int answer_head(struct proxy_req *r, bool chunked)
{
    struct http_out *o = &r->c->out;
    struct http_txn *t = r->t;
    const struct sp_http_response *rs = &r->resp;
    int rc;
    char *d = head_space(r, rs->reason_len + 64 + SP_HTTP_CONNECTION_MAX, &rc), *s = d;
    if (!d)
        return rc;
    if (rs->reason_len > 0) {
        /* The upstream's reason phrase, which the parser checked. */
        d += sprintf(d, "HTTP/1.1 %03u ", rs->status);
        memcpy(d, rs->reason, rs->reason_len);
        d += rs->reason_len;
        memcpy(d, "\r\n", 2);
        d += 2;
    } else {
        d += sp_http_put_status_line(d, rs->status);
    }
    for (size_t i = 0; i < rs->num_headers; i++) {
        const struct sp_http_header *h = &rs->headers[i];
        if (hop_by_hop(r, h, resp_own)) {
            /* A length that frames what the client gets is kept. */
            if (!(name_is(h, "content-length") && !chunked && rs->framing != SP_HTTP_BODY_CLOSE &&
                  !(rs->flags & SP_HTTP_F_FRAMING_SUSPECT)))
                continue;
        }
        d += sp_http_put_header(d, h->name, h->name_len, h->value, h->value_len);
    }
    if (chunked) {
        memcpy(d, "Transfer-Encoding: chunked\r\n", 28);
        d += 28;
    }
    d += sp_http_put_connection(d, t->close, t->req->minor_version);
    memcpy(d, "\r\n", 2);
    d += 2;
    http_out_commit(o, (size_t)(d - s));
    t->status = rs->status;
    t->body_at = o->queued;
    return 0;
}

/* Sends data[0..n) of the body, as a chunk when chunked.  Returns 0 or
 * -errno (the client is gone). */
static int answer_data(struct proxy_req *r, const char *data, size_t n, bool chunked)
{
    struct http_out *o = &r->c->out;
    if (n == 0)
        return 0;
    if (chunked) {
        char line[PROXY_CHUNK_MAX + 1];
        int k = snprintf(line, sizeof(line), "%zx\r\n", n);
        if (http_out_text(o, line, (size_t)k) != 0)
            return o->error;
    }
    if (http_out_ref(o, data, n, NULL) != 0 || (chunked && http_out_text(o, "\r\n", 2) != 0))
        return o->error;
    r->t->body_len += n;
    return http_out_flush(o);
}

/* Streams the answer's body to the client.  Returns 1 when the upstream
 * connection may be pooled, 0 when it must be closed, -errno when the
 * client connection must be dropped. */
static int answer_body(struct proxy_req *r, bool chunked)
{
    const struct sp_http_response *rs = &r->resp;
    size_t have = r->rlen - rs->head_len;
    char *p = r->buf + rs->head_len;
    uint64_t left = rs->content_length;
    struct sp_http_chunked dec;
    bool done = false;

    if (rs->framing == SP_HTTP_BODY_NONE || r->t->head)
        return have == 0 && rs->framing == SP_HTTP_BODY_NONE && sp_http_response_keep_alive(rs);
    if (rs->framing == SP_HTTP_BODY_TUNNEL)
        return 0;
    if (rs->framing == SP_HTTP_BODY_CHUNKED)
        sp_http_chunked_init(&dec, UINT64_MAX);
    for (;;) {
        size_t extra = 0;
        if (rs->framing == SP_HTTP_BODY_LENGTH) {
            size_t take = have < left ? have : (size_t)left;
            extra = have - take;
            have = take;
            left -= take;
            done = left == 0;
        } else if (rs->framing == SP_HTTP_BODY_CHUNKED) {
            size_t m = have;
            ssize_t rc = sp_http_chunked_decode(&dec, p, &m);
            if (rc == SP_HTTP_INVALID)
                return -EPROTO;
            have = m;
            if (rc >= 0) {
                done = true;
                extra = (size_t)rc;
            }
        }
        int rc = answer_data(r, p, have, chunked);
        if (rc != 0)
            return rc;
        if (done) {
            if (chunked &&
                (http_out_text(&r->c->out, "0\r\n\r\n", 5) != 0 || http_out_flush(&r->c->out) != 0))
                return r->c->out.error;
            return extra == 0 && sp_http_response_keep_alive(rs);
        }
        ssize_t n = sp_read(r->fd, r->buf, sizeof(r->buf), r->up->read_timeout_ms);
        if (n == 0 && rs->framing == SP_HTTP_BODY_CLOSE) {
            done = true;
            have = 0;
            if (chunked &&
                (http_out_text(&r->c->out, "0\r\n\r\n", 5) != 0 || http_out_flush(&r->c->out) != 0))
                return r->c->out.error;
            return 0;
        }
        if (n <= 0)
            return n == 0 ? -EPIPE : (int)n; /* cut short: the client must see it */
        p = r->buf;
        have = (size_t)n;
    }
}

/* ---- tunnels (Upgrade) ---------------------------------------------------- */

/* One direction of a tunnel; the upstream-to-client one runs on a fiber of
 * its own, beside the request's. */
struct pump {
    struct sp_stream *from, *to; /* the client's may be TLS */
    char *buf;
    size_t cap;
    struct tunnel *tn;
};

struct tunnel {
    struct pump up, down;   /* client to upstream, upstream to client */
    struct sp_stream upstr; /* the upstream connection, as a stream */
    int64_t idle_ms;
    uint64_t last; /* sp_now_ns() of the last bytes either way */
    bool down_done;
    struct sp_waitq done;
};

/* Copies until the end of stream, which is passed on as a half close
 * (shutdown SHUT_WR), so that each side may finish what it sends.  An
 * error, or idle_ms with no bytes either way, tears both connections down,
 * which wakes the other direction too. */
static void pump_run(struct pump *p)
{
    struct tunnel *tn = p->tn;
    for (;;) {
        int64_t left = tn->idle_ms - (int64_t)((sp_now_ns() - tn->last) / 1000000ull);
        ssize_t n = left > 0 ? sp_stream_read(p->from, p->buf, p->cap, left) : -ETIMEDOUT;
        if (n == -ETIMEDOUT && sp_now_ns() - tn->last < ms_ns(tn->idle_ms))
            continue; /* the other direction moved meanwhile */
        if (n == 0) {
            sp_stream_shutdown(p->to, SHUT_WR);
            return;
        }
        if (n < 0 || sp_stream_write(p->to, p->buf, (size_t)n, tn->idle_ms) < 0)
            break;
        tn->last = sp_now_ns();
    }
    sp_stream_shutdown(p->from, SHUT_RDWR);
    sp_stream_shutdown(p->to, SHUT_RDWR);
}

static void pump_down(void *arg)
{
    struct tunnel *tn = arg;
    pump_run(&tn->down);
    tn->down_done = true;
    sp_waitq_signal(&tn->done);
}

/*
 * After a 101 answer to an Upgrade: bytes pass both ways until both sides
 * have ended their streams, or one fails, or read_timeout passes with no
 * bytes either way.  The client's bytes already read after its request go
 * first.  Returns -ECONNABORTED: the client connection is over.
 */
static int tunnel(struct proxy_req *r)
{
    struct http_conn *c = r->c;
    const struct sp_http_request *q = r->t->req;
    size_t at = (size_t)(q->method_str - c->in) + q->head_len;
    size_t extra = r->rlen - r->resp.head_len;
    struct tunnel tn = {
        .idle_ms = r->up->read_timeout_ms,
        .last = sp_now_ns(),
    };
    sp_stream_socket(&tn.upstr, r->fd);
    tn.up =
        (struct pump){.from = c->stream, .to = &tn.upstr, .buf = r->body, .cap = sizeof(r->body)};
    tn.down =
        (struct pump){.from = &tn.upstr, .to = c->stream, .buf = r->buf, .cap = sizeof(r->buf)};

    tn.up.tn = tn.down.tn = &tn;
    sp_waitq_init(&tn.done);
    if (http_out_flush(&c->out) != 0)
        return -ECONNABORTED;
    if (extra > 0 && sp_stream_write(c->stream, r->buf + r->resp.head_len, extra, tn.idle_ms) < 0)
        return -ECONNABORTED;
    if (at < c->len && sp_write(r->fd, c->in + at, c->len - at, tn.idle_ms) < 0)
        return -ECONNABORTED;
    c->len = at;
    if (sp_iom_spawn(sp_iom_current(), pump_down, &tn) != 0)
        return -ECONNABORTED;
    pump_run(&tn.up);
    while (!tn.down_done)
        sp_waitq_wait(&tn.done, -1);
    return -ECONNABORTED;
}

/* The 101 head: the upstream's headers less the hop-by-hop ones, with the
 * protocol the client asked for. */
static int tunnel_head(struct proxy_req *r)
{
    struct http_out *o = &r->c->out;
    const struct sp_http_response *rs = &r->resp;
    int rc;
    char *d = head_space(r, r->upgrade_len + 64, &rc), *s = d;
    if (!d)
        return rc;
    d += sp_http_put_status_line(d, 101);
    for (size_t i = 0; i < rs->num_headers; i++)
        if (!hop_by_hop(r, &rs->headers[i], resp_own))
            d += sp_http_put_header(d, rs->headers[i].name, rs->headers[i].name_len,
                                    rs->headers[i].value, rs->headers[i].value_len);
    d += sp_http_put_header(d, "Upgrade", 7, r->upgrade, r->upgrade_len);
    memcpy(d, "Connection: upgrade\r\n\r\n", 23);
    d += 23;
    http_out_commit(o, (size_t)(d - s));
    r->t->status = 101;
    r->t->close = true;
    r->t->body_at = o->queued;
    return 0;
}

/* The upstream's answer, head and body, to the client. */
static int answer(struct proxy_req *r)
{
    const struct sp_http_response *rs = &r->resp;
    struct http_txn *t = r->t;
    bool unframed = rs->framing == SP_HTTP_BODY_CHUNKED || rs->framing == SP_HTTP_BODY_CLOSE;
    bool chunked = unframed && !t->head && t->req->minor_version >= 1;

    if (rs->framing == SP_HTTP_BODY_TUNNEL && rs->status == 101 && r->upgrade) {
        int rc = tunnel_head(r);
        if (rc == 0)
            rc = tunnel(r);
        http_upstream_close(r);
        return rc == -E2BIG ? http_error(&r->c->out, t, 502, NULL) : rc;
    }
    if (rs->framing == SP_HTTP_BODY_TUNNEL) {
        /* A switch the client did not ask for, or a 2xx to CONNECT. */
        http_upstream_close(r);
        http_upstream_failed(r, r->peer);
        COUNT(r->th->bad_gateway);
        return http_error(&r->c->out, t, 502, NULL);
    }
    if (unframed && !t->head && !chunked)
        t->close = true; /* HTTP/1.0: the body ends with the connection */
    int rc = answer_head(r, chunked);
    if (rc == -E2BIG) {
        http_upstream_close(r);
        COUNT(r->th->bad_gateway);
        return http_error(&r->c->out, t, 502, NULL);
    }
    if (rc == 0)
        rc = answer_body(r, chunked);
    if (rc == 1)
        http_upstream_put(r);
    else
        http_upstream_close(r);
    return rc < 0 ? rc : 0;
}

/* ---- the entry point ------------------------------------------------------ */

/* A GET without a body that asks to switch protocols (Connection: upgrade
 * and an Upgrade header, HTTP/1.1) is forwarded with its Upgrade. */
static void upgrade_find(struct proxy_req *r)
{
    const struct sp_http_request *q = r->t->req;
    if (!(q->flags & SP_HTTP_F_CONN_UPGRADE) || q->method != SP_HTTP_GET || q->minor_version == 0 ||
        (q->flags & SP_HTTP_F_TE_CHUNKED) || q->content_length > 0)
        return;
    for (size_t i = 0; i < q->num_headers; i++) {
        if (name_is(&q->headers[i], "upgrade") && q->headers[i].value_len > 0) {
            r->upgrade = q->headers[i].value;
            r->upgrade_len = q->headers[i].value_len;
            return;
        }
    }
}

static bool idempotent(enum sp_http_method m)
{
    return m == SP_HTTP_GET || m == SP_HTTP_HEAD || m == SP_HTTP_PUT || m == SP_HTTP_DELETE ||
           m == SP_HTTP_OPTIONS || m == SP_HTTP_TRACE;
}

int http_proxy_run(struct http_conn *c, struct http_txn *t, struct http_proxy *px)
{
    struct proxy_req *r = malloc(sizeof(*r));
    int rc = 0;

    if (!r)
        return http_error(&c->out, t, 500, NULL);
    r->c = c;
    r->t = t;
    r->up = px->up;
    r->px = px;
    r->th = &px->threads[sp_iom_thread_index() % px->nthreads];
    r->fd = -1;
    r->held = -1;
    r->reused = false;
    r->body_started = false;
    r->idempotent = idempotent(t->req->method);
    r->rlen = 0;
    r->upgrade = NULL;
    r->upgrade_len = 0;
    t->body_len = 0;
    conn_tokens(r, t->req->headers, t->req->num_headers);
    upgrade_find(r);

    COUNT(r->th->requests);
    uint64_t start = sp_now_ns();
    switch (forward(r)) {
    case ATTEMPT_OK:
        http_upstream_ok(r, r->peer);
        rc = answer(r);
        break;
    case ATTEMPT_BODY:
        http_upstream_close(r); /* c->body has the client's error */
        break;
    case ATTEMPT_504:
        COUNT(r->th->timeouts);
        rc = http_error(&c->out, t, 504, NULL);
        break;
    default:
        COUNT(r->th->bad_gateway);
        rc = http_error(&c->out, t, 502, NULL);
        break;
    }
    t->upstream_ns = sp_now_ns() - start; /* the access log's $upstream_response_time */
    http_upstream_close(r);
    http_upstream_release(r);
    free(r);
    return rc;
}
