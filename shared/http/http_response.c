/*
 * HTTP/1.1 response head parser (see http_response.h).
 *
 * The same single forward scan as the request parser, over a status line
 * instead of a request line.  What the body's framing needs (Content-Length,
 * Transfer-Encoding) is only noted while the header lines are read and judged
 * once the head is complete: whether a bad Content-Length matters depends on
 * a Transfer-Encoding that may come after it, and on the status and method.
 */
#include "spindle/http_response.h"

#include <string.h>

#include "http_lex.h"

struct rscan {
    const char *p, *end; /* end: the end of the input or max_head, whichever is first */
    size_t len, max_head;
    struct sp_http_response *resp;
    unsigned chunked_seen; /* times "chunked" was listed */
    bool te_coding;        /* Transfer-Encoding listed at least one coding */
};

static ssize_t fail(struct sp_http_response *resp, enum sp_http_error e)
{
    resp->error = e;
    return SP_HTTP_INVALID;
}

static ssize_t need_more(struct rscan *s)
{
    if (s->len >= s->max_head)
        return fail(s->resp, SP_HTTP_EHEAD_TOO_LARGE);
    return SP_HTTP_INCOMPLETE;
}

/* Reads the literal lit at s->p.  Returns 0 when it is there, SP_HTTP_INCOMPLETE
 * when the input ends inside it, SP_HTTP_INVALID with err at the first
 * byte that differs. */
static ssize_t expect_bytes(struct rscan *s, const char *lit, size_t n, enum sp_http_error err)
{
    for (size_t i = 0; i < n; i++, s->p++) {
        if (s->p == s->end)
            return need_more(s);
        if (*s->p != lit[i])
            return fail(s->resp, err);
    }
    return 0;
}

static ssize_t parse_status_line(struct rscan *s)
{
    struct sp_http_response *resp = s->resp;
    const char *end = s->end, *r;
    ssize_t rc;
    int n;

    /* Skip the empty lines some servers send after a body. */
    for (;;) {
        if (s->p == end)
            return need_more(s);
        if (*s->p != '\r' && *s->p != '\n')
            break;
        if ((n = eol(s->p, end)) <= 0)
            return n == 0 ? need_more(s) : fail(resp, SP_HTTP_ELINE);
        s->p += n;
    }

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT */
    if ((rc = expect_bytes(s, "HTTP/", 5, SP_HTTP_EVERSION)) != 0)
        return rc;
    if (s->p == end)
        return need_more(s);
    if ((unsigned)(*s->p - '0') > 9)
        return fail(resp, SP_HTTP_EVERSION);
    if (*s->p++ != '1')
        return fail(resp, SP_HTTP_EVERSION_UNSUPP);
    if ((rc = expect_bytes(s, ".", 1, SP_HTTP_EVERSION)) != 0)
        return rc;
    if (s->p == end)
        return need_more(s);
    if ((unsigned)(*s->p - '0') > 9)
        return fail(resp, SP_HTTP_EVERSION);
    resp->minor_version = *s->p++ == '0' ? 0 : 1;
    if ((rc = expect_bytes(s, " ", 1, SP_HTTP_EVERSION)) != 0)
        return rc;

    /* status-code = 3DIGIT, 100 and up */
    for (int i = 0; i < 3; i++, s->p++) {
        if (s->p == end)
            return need_more(s);
        unsigned d = (unsigned)(*s->p - '0');
        if (d > 9 || (i == 0 && d == 0))
            return fail(resp, SP_HTTP_ESTATUS);
        resp->status = resp->status * 10 + d;
    }

    /* [SP reason-phrase] line end */
    if (s->p == end)
        return need_more(s);
    if (*s->p == ' ')
        s->p++;
    else if (*s->p != '\r' && *s->p != '\n')
        return fail(resp, SP_HTTP_ESTATUS);
    for (r = s->p; s->p < end && IS(*s->p, C_VALUE); s->p++)
        ;
    if (s->p == end)
        return need_more(s);
    if (*s->p != '\r' && *s->p != '\n')
        return fail(resp, SP_HTTP_ESTATUS);
    if ((n = eol(s->p, end)) <= 0)
        return n == 0 ? need_more(s) : fail(resp, SP_HTTP_ELINE);
    resp->reason = r;
    resp->reason_len = (size_t)(s->p - r);
    s->p += n;
    return 0;
}

static void on_content_length(struct sp_http_response *resp, const char *v, size_t n)
{
    uint64_t cl = 0;

    /* 1*DIGIT only, as for requests: a list ("5, 5") is refused too. */
    if (n == 0) {
        resp->flags |= SP_HTTP_F_CL_INVALID;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(v[i] - '0');
        if (d > 9 || cl > ((uint64_t)INT64_MAX - d) / 10) {
            resp->flags |= SP_HTTP_F_CL_INVALID;
            return;
        }
        cl = cl * 10 + d;
    }
    if ((resp->flags & SP_HTTP_F_CL_PRESENT) && resp->content_length != cl)
        resp->flags |= SP_HTTP_F_CL_CONFLICT;
    resp->flags |= SP_HTTP_F_CL_PRESENT;
    resp->content_length = cl;
}

/* The codings may be spread over several lines: TE_CHUNKED says whether the
 * last one so far is chunked. */
static void on_transfer_encoding(struct rscan *s, const char *v, size_t n)
{
    struct sp_http_response *resp = s->resp;
    const char *p = v, *end = v + n, *e;
    size_t len;

    resp->flags |= SP_HTTP_F_TE_PRESENT;
    while ((len = next_elem(&p, end, &e)) != 0) {
        s->te_coding = true;
        if (len == 7 && eq_ci(e, "chunked", 7)) {
            s->chunked_seen++;
            resp->flags |= SP_HTTP_F_TE_CHUNKED;
        } else {
            resp->flags |= SP_HTTP_F_TE_UNKNOWN;
            resp->flags &= ~SP_HTTP_F_TE_CHUNKED;
        }
    }
}

static void on_connection(struct sp_http_response *resp, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *e;
    size_t len;

    while ((len = next_elem(&p, end, &e)) != 0) {
        if (len == 5 && eq_ci(e, "close", 5))
            resp->flags |= SP_HTTP_F_CONN_CLOSE;
        else if (len == 10 && eq_ci(e, "keep-alive", 10))
            resp->flags |= SP_HTTP_F_CONN_KEEP_ALIVE;
        else if (len == 7 && eq_ci(e, "upgrade", 7))
            resp->flags |= SP_HTTP_F_CONN_UPGRADE;
    }
}

static void on_header(struct rscan *s, const struct sp_http_header *h)
{
    switch (h->name_len) {
    case 10:
        if (eq_ci(h->name, "connection", 10))
            on_connection(s->resp, h->value, h->value_len);
        break;
    case 14:
        if (eq_ci(h->name, "content-length", 14))
            on_content_length(s->resp, h->value, h->value_len);
        break;
    case 17:
        if (eq_ci(h->name, "transfer-encoding", 17))
            on_transfer_encoding(s, h->value, h->value_len);
        break;
    }
}

static ssize_t parse_headers(struct rscan *s, struct sp_http_header *headers, size_t max_headers)
{
    struct sp_http_response *resp = s->resp;
    const char *p = s->p;
    int r;

    while ((r = lex_header_line(&p, s->end, &headers[resp->num_headers],
                                resp->num_headers == max_headers)) == LEX_HEADER)
        on_header(s, &headers[resp->num_headers++]);
    if (r == LEX_MORE)
        return need_more(s);
    if (r < 0)
        return fail(resp, (enum sp_http_error) - r);
    s->p = p;
    return 0;
}

/* RFC 9112 6.3, in its order.  Returns SP_HTTP_OK or why the framing is
 * invalid. */
static enum sp_http_error frame(struct rscan *s, enum sp_http_method method)
{
    struct sp_http_response *resp = s->resp;
    unsigned st = resp->status, f = resp->flags;

    /* 1: no body, whatever the headers say. */
    if (method == SP_HTTP_HEAD || (st < 200 && st != 101) || st == 204 || st == 304) {
        resp->framing = SP_HTTP_BODY_NONE;
        return SP_HTTP_OK;
    }
    /* 2: the connection becomes a tunnel (101 is 1xx, but what follows it is
     * the new protocol). */
    if (st == 101 || (method == SP_HTTP_CONNECT && st / 100 == 2)) {
        resp->framing = SP_HTTP_BODY_TUNNEL;
        return SP_HTTP_OK;
    }
    /* 3, 4: Transfer-Encoding wins; a Content-Length beside it is ignored but
     * makes the connection unfit for reuse. */
    if (f & SP_HTTP_F_TE_PRESENT) {
        if (!s->te_coding || s->chunked_seen > 1)
            return SP_HTTP_ETRANSFER_CODING;
        if (f & SP_HTTP_F_CL_PRESENT || f & SP_HTTP_F_CL_INVALID)
            resp->flags |= SP_HTTP_F_FRAMING_SUSPECT;
        if (resp->minor_version == 0) {
            resp->flags |= SP_HTTP_F_FRAMING_SUSPECT;
            resp->framing = SP_HTTP_BODY_CLOSE;
        } else {
            resp->framing = f & SP_HTTP_F_TE_CHUNKED ? SP_HTTP_BODY_CHUNKED : SP_HTTP_BODY_CLOSE;
        }
        return SP_HTTP_OK;
    }
    /* 5, 6: Content-Length, which must be valid and single-valued. */
    if (f & SP_HTTP_F_CL_INVALID)
        return SP_HTTP_ECONTENT_LENGTH;
    if (f & SP_HTTP_F_CL_CONFLICT)
        return SP_HTTP_ECL_CONFLICT;
    if (f & SP_HTTP_F_CL_PRESENT) {
        resp->framing = SP_HTTP_BODY_LENGTH;
        return SP_HTTP_OK;
    }
    /* 8: until the server closes. */
    resp->framing = SP_HTTP_BODY_CLOSE;
    return SP_HTTP_OK;
}

ssize_t sp_http_parse_response(const char *buf, size_t len, size_t max_head,
                               enum sp_http_method method, struct sp_http_response *resp,
                               struct sp_http_header *headers, size_t max_headers)
{
    enum sp_http_error err;
    ssize_t rc;

    if (max_head == 0)
        max_head = SP_HTTP_MAX_HEAD_DEFAULT;
    *resp = (struct sp_http_response){.headers = headers};
    struct rscan s = {
        .p = buf,
        .end = buf + (len < max_head ? len : max_head),
        .len = len,
        .max_head = max_head,
        .resp = resp,
    };
    if ((rc = parse_status_line(&s)) != 0)
        return rc;
    if ((rc = parse_headers(&s, headers, max_headers)) != 0)
        return rc;
    if ((err = frame(&s, method)) != SP_HTTP_OK)
        return fail(resp, err);
    resp->head_len = (size_t)(s.p - buf);
    return (ssize_t)resp->head_len;
}

bool sp_http_response_keep_alive(const struct sp_http_response *resp)
{
    if (resp->flags & (SP_HTTP_F_CONN_CLOSE | SP_HTTP_F_FRAMING_SUSPECT))
        return false;
    if (resp->framing == SP_HTTP_BODY_CLOSE || resp->framing == SP_HTTP_BODY_TUNNEL)
        return false;
    return resp->minor_version >= 1 || (resp->flags & SP_HTTP_F_CONN_KEEP_ALIVE) != 0;
}
