/*
 * HTTP/1.1 request head parser and chunked body decoder.
 *
 * The head parser is a single forward scan with one table lookup per byte, in
 * the manner of picohttpparser.  A full parse starts from the first byte and
 * keeps no state, which keeps it simple and fuzzable.  A head that arrives in
 * pieces is not parsed again after every piece (with a 1 MB limit that would
 * cost gigabytes of scanning per trickled head): the resuming entry point
 * looks at each new byte once, for the end of the head, and parses in full
 * once (like picohttpparser's last_len, but with the line state kept).
 *
 * Every error is raised by a byte that no continuation can make valid, or by a
 * complete line.  So a prefix of a valid head is always SP_HTTP_INCOMPLETE, and
 * once a prefix is invalid, every longer input is too.  The fuzzers check this.
 */
#include "spindle/http_parser.h"

#include <errno.h>
#include <string.h>

#include "http_lex.h"

/* The character classes of http_lex.h, one entry per byte. */
const unsigned char sp_http_char_class[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    4,  15, 6,  5,  15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 6,  /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 6,  14, 6,  6,  /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 7,  15, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x80 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x90 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xa0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xb0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xc0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xd0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xe0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xf0 */
};

/* Parser position: p moves towards end, which is the end of the input or the
 * head size limit, whichever comes first. */
struct scan {
    const char *p, *end;
    size_t len, max_head;
    struct sp_http_request *req;
    bool blank; /* still in the empty lines before the request line */
};

static ssize_t fail(struct sp_http_request *req, enum sp_http_error e)
{
    req->error = e;
    return SP_HTTP_INVALID;
}

/* The scan reached s->end without finishing the head.  If that is the size
 * limit, the head cannot fit: say so now rather than wait for more bytes. */
static ssize_t need_more(struct scan *s)
{
    if (s->len >= s->max_head)
        return fail(s->req, SP_HTTP_EHEAD_TOO_LARGE);
    return SP_HTTP_INCOMPLETE;
}

static enum sp_http_method lookup_method(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return SP_HTTP_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return SP_HTTP_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return SP_HTTP_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return SP_HTTP_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return SP_HTTP_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return SP_HTTP_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return SP_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return SP_HTTP_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return SP_HTTP_CONNECT;
        break;
    }
    return SP_HTTP_OTHER;
}

/* Splits [s, end) at the first '?' into path and query. */
static void split_query(struct sp_http_request *req, const char *s, const char *end)
{
    const char *q = memchr(s, '?', (size_t)(end - s));

    if (q != NULL) {
        req->query = q + 1;
        req->query_len = (size_t)(end - q - 1);
        end = q;
    }
    if (end > s) {
        req->path = s;
        req->path_len = (size_t)(end - s);
    }
}

static bool all_host_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!IS(s[i], C_HOST))
            return false;
    return true;
}

/* Classifies the request-target t[0..n), n > 0 (RFC 9112 3.2). */
static enum sp_http_error parse_target(struct sp_http_request *req, const char *t, size_t n)
{
    const char *end = t + n, *a, *s;

    req->target = t;
    req->target_len = n;
    if (req->method == SP_HTTP_CONNECT) {
        if (!all_host_chars(t, n))
            return SP_HTTP_ETARGET;
        req->form = SP_HTTP_FORM_AUTHORITY;
        req->authority = t;
        req->authority_len = n;
        return SP_HTTP_OK;
    }
    if (t[0] == '/') {
        req->form = SP_HTTP_FORM_ORIGIN;
        split_query(req, t, end);
        return SP_HTTP_OK;
    }
    if (n == 1 && t[0] == '*') {
        req->form = SP_HTTP_FORM_ASTERISK;
        return req->method == SP_HTTP_OPTIONS ? SP_HTTP_OK : SP_HTTP_ETARGET;
    }
    if (n > 7 && eq_ci(t, "http://", 7))
        a = t + 7;
    else if (n > 8 && eq_ci(t, "https://", 8))
        a = t + 8;
    else
        return SP_HTTP_ETARGET;
    /* userinfo ('@') is not a host character: RFC 9110 4.2.4 says to reject it. */
    for (s = a; s < end && *s != '/' && *s != '?'; s++)
        if (!IS(*s, C_HOST))
            return SP_HTTP_ETARGET;
    if (s == a)
        return SP_HTTP_ETARGET;
    req->form = SP_HTTP_FORM_ABSOLUTE;
    req->authority = a;
    req->authority_len = (size_t)(s - a);
    split_query(req, s, end);
    return SP_HTTP_OK;
}

static ssize_t parse_request_line(struct scan *s, const struct sp_http_limits *lim)
{
    struct sp_http_request *req = s->req;
    const char *p = s->p, *end = s->end, *m, *t;
    enum sp_http_error err;
    int major, minor = -1, n;

    /* RFC 9112 2.2: empty lines before the request line are ignored. */
    for (;;) {
        if (p == end)
            return need_more(s);
        if (*p != '\r' && *p != '\n')
            break;
        if ((n = eol(p, end)) <= 0)
            return n == 0 ? need_more(s) : fail(req, SP_HTTP_ELINE);
        p += n;
    }
    s->blank = false;

    for (m = p; p < end && IS(*p, C_TOKEN); p++)
        ;
    if (p == end)
        return need_more(s);
    if (*p != ' ' || p == m)
        return fail(req, SP_HTTP_EMETHOD);
    req->method = lookup_method(m, (size_t)(p - m));
    req->method_str = m;
    req->method_len = (size_t)(p - m);

    for (t = ++p; p < end && IS(*p, C_TARGET); p++)
        ;
    if ((size_t)(p - t) > lim->max_target)
        return fail(req, SP_HTTP_EURI_TOO_LONG);
    if (p == end)
        return need_more(s);
    if (*p != ' ' || p == t)
        return fail(req, p > t && (*p == '\r' || *p == '\n') ? SP_HTTP_EVERSION : SP_HTTP_ETARGET);
    if ((err = parse_target(req, t, (size_t)(p - t))) != SP_HTTP_OK)
        return fail(req, err);
    p++;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT.  "HTTP/2" and "HTTP/3" are read
     * too, so that they get 505 rather than 400. */
    for (n = 0; n < 5; n++, p++) {
        if (p == end)
            return need_more(s);
        if (*p != "HTTP/"[n])
            return fail(req, SP_HTTP_EVERSION);
    }
    if (p == end)
        return need_more(s);
    if ((unsigned)(*p - '0') > 9)
        return fail(req, SP_HTTP_EVERSION);
    major = *p++ - '0';
    if (p == end)
        return need_more(s);
    if (*p == '.') {
        if (++p == end)
            return need_more(s);
        if ((unsigned)(*p - '0') > 9)
            return fail(req, SP_HTTP_EVERSION);
        minor = *p++ - '0';
        if (p == end)
            return need_more(s);
    }
    if (*p != '\r' && *p != '\n')
        return fail(req, SP_HTTP_EVERSION);
    if ((n = eol(p, end)) <= 0)
        return n == 0 ? need_more(s) : fail(req, SP_HTTP_ELINE);
    p += n;
    if (major == 1 && minor < 0)
        return fail(req, SP_HTTP_EVERSION);
    if (major != 1 || minor > 1)
        return fail(req, SP_HTTP_EVERSION_UNSUPP);
    req->minor_version = minor;
    s->p = p;
    return 0;
}

static enum sp_http_error on_content_length(struct sp_http_request *req, const char *v, size_t n)
{
    uint64_t cl = 0;

    /* 1*DIGIT only: no sign, no list, nothing that could be read two ways. */
    if (n == 0)
        goto invalid;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(v[i] - '0');
        if (d > 9 || cl > ((uint64_t)INT64_MAX - d) / 10)
            goto invalid;
        cl = cl * 10 + d;
    }
    if (req->flags & SP_HTTP_F_TE_PRESENT)
        return SP_HTTP_ECL_AND_TE;
    if ((req->flags & SP_HTTP_F_CL_PRESENT) && req->content_length != cl) {
        req->flags |= SP_HTTP_F_CL_CONFLICT;
        return SP_HTTP_ECL_CONFLICT;
    }
    req->flags |= SP_HTTP_F_CL_PRESENT;
    req->content_length = cl;
    return SP_HTTP_OK;
invalid:
    req->flags |= SP_HTTP_F_CL_INVALID;
    return SP_HTTP_ECONTENT_LENGTH;
}

/* Transfer codings may be spread over several lines; chunked must come last
 * and once (RFC 9112 6.1), and HTTP/1.0 has no transfer coding at all. */
static enum sp_http_error on_transfer_encoding(struct sp_http_request *req, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *e;
    size_t len;

    req->flags |= SP_HTTP_F_TE_PRESENT;
    if (req->minor_version == 0)
        return SP_HTTP_ETRANSFER_CODING;
    if (req->flags & SP_HTTP_F_CL_PRESENT)
        return SP_HTTP_ECL_AND_TE;
    while ((len = next_elem(&p, end, &e)) != 0) {
        if (req->flags & SP_HTTP_F_TE_CHUNKED)
            return SP_HTTP_ETRANSFER_CODING;
        if (len != 7 || !eq_ci(e, "chunked", 7)) {
            req->flags |= SP_HTTP_F_TE_UNKNOWN;
            return SP_HTTP_ETE_UNKNOWN;
        }
        req->flags |= SP_HTTP_F_TE_CHUNKED;
    }
    return SP_HTTP_OK;
}

static void on_connection(struct sp_http_request *req, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *e;
    size_t len;

    while ((len = next_elem(&p, end, &e)) != 0) {
        if (len == 5 && eq_ci(e, "close", 5))
            req->flags |= SP_HTTP_F_CONN_CLOSE;
        else if (len == 10 && eq_ci(e, "keep-alive", 10))
            req->flags |= SP_HTTP_F_CONN_KEEP_ALIVE;
        else if (len == 7 && eq_ci(e, "upgrade", 7))
            req->flags |= SP_HTTP_F_CONN_UPGRADE;
    }
}

static void keep_first(const char **slot, size_t *slot_len, const char *v, size_t n)
{
    if (*slot == NULL) {
        *slot = v;
        *slot_len = n;
    }
}

/* Looks at one header line for the fields the server acts on. */
static enum sp_http_error on_header(struct sp_http_request *req, const struct sp_http_header *h)
{
    const char *n = h->name, *v = h->value;
    size_t vl = h->value_len;

    switch (h->name_len) {
    case 4:
        if (!eq_ci(n, "host", 4))
            break;
        /* RFC 9112 3.2: more than one Host, or a bad one, is a 400. */
        if ((req->flags & SP_HTTP_F_HOST) || !all_host_chars(v, vl))
            return SP_HTTP_EHOST;
        req->flags |= SP_HTTP_F_HOST;
        req->host = v;
        req->host_len = vl;
        break;
    case 5:
        if (eq_ci(n, "range", 5))
            keep_first(&req->range, &req->range_len, v, vl);
        break;
    case 6:
        if (!eq_ci(n, "expect", 6))
            break;
        /* RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client. */
        if (vl == 12 && eq_ci(v, "100-continue", 12)) {
            if (req->minor_version >= 1)
                req->flags |= SP_HTTP_F_EXPECT_CONTINUE;
        } else {
            req->flags |= SP_HTTP_F_EXPECT_OTHER;
        }
        break;
    case 10:
        if (eq_ci(n, "connection", 10))
            on_connection(req, v, vl);
        break;
    case 13:
        if (eq_ci(n, "if-none-match", 13))
            keep_first(&req->if_none_match, &req->if_none_match_len, v, vl);
        break;
    case 14:
        if (eq_ci(n, "content-length", 14))
            return on_content_length(req, v, vl);
        break;
    case 17:
        if (eq_ci(n, "transfer-encoding", 17))
            return on_transfer_encoding(req, v, vl);
        if (eq_ci(n, "if-modified-since", 17))
            keep_first(&req->if_modified_since, &req->if_modified_since_len, v, vl);
        break;
    }
    return SP_HTTP_OK;
}

static ssize_t parse_headers(struct scan *s, struct sp_http_header *headers, size_t max_headers)
{
    struct sp_http_request *req = s->req;
    const char *p = s->p;
    enum sp_http_error err;
    int r;

    while ((r = lex_header_line(&p, s->end, &headers[req->num_headers],
                                req->num_headers == max_headers)) == LEX_HEADER) {
        if ((err = on_header(req, &headers[req->num_headers++])) != SP_HTTP_OK)
            return fail(req, err);
    }
    if (r == LEX_MORE)
        return need_more(s);
    if (r < 0)
        return fail(req, (enum sp_http_error) - r);
    s->p = p;
    return 0;
}

static const struct sp_http_limits default_limits = {
    .max_head = SP_HTTP_MAX_HEAD_DEFAULT,
    .max_target = SP_HTTP_MAX_TARGET_DEFAULT,
};

/* The full parse; *sc tells where it stopped. */
static ssize_t parse_head(struct scan *sc, const char *buf, size_t len,
                          const struct sp_http_limits *lim, struct sp_http_request *req,
                          struct sp_http_header *headers, size_t max_headers)
{
    ssize_t rc;

    *req = (struct sp_http_request){.headers = headers};
    *sc = (struct scan){.p = buf,
                        .end = buf + (len < lim->max_head ? len : lim->max_head),
                        .len = len,
                        .max_head = lim->max_head,
                        .req = req,
                        .blank = true};

    if ((rc = parse_request_line(sc, lim)) != 0)
        return rc;
    if ((rc = parse_headers(sc, headers, max_headers)) != 0)
        return rc;

    if (req->minor_version == 1 && !(req->flags & SP_HTTP_F_HOST))
        return fail(req, SP_HTTP_EHOST);
    if ((req->flags & SP_HTTP_F_TE_PRESENT) && !(req->flags & SP_HTTP_F_TE_CHUNKED))
        return fail(req, SP_HTTP_ETRANSFER_CODING);
    if (req->form == SP_HTTP_FORM_ABSOLUTE) {
        req->host = req->authority;
        req->host_len = req->authority_len;
    }
    req->head_len = (size_t)(sc->p - buf);
    return (ssize_t)req->head_len;
}

ssize_t sp_http_parse_request(const char *buf, size_t len, const struct sp_http_limits *limits,
                              struct sp_http_request *req, struct sp_http_header *headers,
                              size_t max_headers)
{
    struct scan s;

    return parse_head(&s, buf, len, limits != NULL ? limits : &default_limits, req, headers,
                      max_headers);
}

/*
 * The line scan of a resumed parse: where it stands before the next byte.  It
 * only finds where the head ends (an empty line after a non-empty one) and the
 * bytes that make any head invalid; the full parse does the rest, once.
 */
enum {
    L_BLANK = 0, /* at the start of a line, no request line yet */
    L_BLANK_CR,  /* after a CR there */
    L_LINE,      /* inside a line */
    L_LINE_CR,   /* after a CR inside a line */
    L_LF,        /* at the start of a line after a non-empty one */
    L_LF_CR,     /* after a CR there */
};

/* The line scan's state at the end of buf[0..len), len > 0, where a full
 * parse returned SP_HTTP_INCOMPLETE (no end of head, no bad byte).  Only the
 * last two bytes matter, and whether a request line has begun. */
static unsigned scan_state_at(const char *buf, size_t len, bool blank)
{
    char last = buf[len - 1];

    if (blank)
        return last == '\r' ? L_BLANK_CR : L_BLANK;
    if (last == '\n')
        return L_LF;
    if (last == '\r')
        return len >= 2 && buf[len - 2] == '\n' ? L_LF_CR : L_LINE_CR;
    return L_LINE;
}

/* Runs the line scan over buf[from..end).  Returns true when a full parse is
 * due: the head has ended, or a byte that no head may hold came; false with
 * *state updated when neither happened. */
static bool scan_lines(const char *p, const char *end, unsigned *state)
{
    unsigned st = *state;

    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;

        switch (st) {
        case L_BLANK:
            if (c == '\r')
                st = L_BLANK_CR;
            else if (c != '\n')
                st = L_LINE;
            break;
        case L_LF:
            if (c == '\n')
                return true;
            if (c == '\r') {
                st = L_LF_CR;
                break;
            }
            if (is_ows((char)c)) /* obs-fold */
                return true;
            st = L_LINE;
            break;
        case L_LINE:
            if (c == '\n')
                st = L_LF;
            else if (c == '\r')
                st = L_LINE_CR;
            break;
        case L_BLANK_CR:
        case L_LINE_CR:
        case L_LF_CR:
            /* A bare CR is invalid; CR LF at the start of a line after the
             * request line ends the head. */
            if (c != '\n' || st == L_LF_CR)
                return true;
            st = st == L_BLANK_CR ? L_BLANK : L_LF;
            continue;
        }
        /* No head holds a control byte but HTAB, CR and LF, or DEL. */
        if (sp_http_char_class[c] == 0 && c != '\r' && c != '\n')
            return true;
    }
    *state = st;
    return false;
}

ssize_t sp_http_parse_request_resume(struct sp_http_resume *rs, const char *buf, size_t len,
                                     const struct sp_http_limits *limits,
                                     struct sp_http_request *req, struct sp_http_header *headers,
                                     size_t max_headers)
{
    const struct sp_http_limits *lim = limits != NULL ? limits : &default_limits;
    size_t end = len < lim->max_head ? len : lim->max_head;
    struct scan s;
    ssize_t rc;

    if (rs->scanned > 0 && len < lim->max_head) {
        /* Bytes before rs->scanned were scanned already; the scan state
         * carries what they told. */
        if (end <= rs->scanned)
            return SP_HTTP_INCOMPLETE;
        rs->examined += end - rs->scanned;
        if (!scan_lines(buf + rs->scanned, buf + end, &rs->state)) {
            rs->scanned = end;
            return SP_HTTP_INCOMPLETE;
        }
    }
    rc = parse_head(&s, buf, len, lim, req, headers, max_headers);
    rs->examined += rc > 0 ? (size_t)rc : end;
    if (rc == SP_HTTP_INCOMPLETE && len > 0) {
        rs->scanned = len;
        rs->state = scan_state_at(buf, len, s.blank);
    } else {
        rs->scanned = 0;
        rs->state = L_BLANK;
    }
    return rc;
}

int sp_http_error_status(enum sp_http_error err)
{
    switch (err) {
    case SP_HTTP_OK:
        return 200;
    case SP_HTTP_EVERSION_UNSUPP:
        return 505;
    case SP_HTTP_ETE_UNKNOWN:
        return 501;
    case SP_HTTP_EURI_TOO_LONG:
        return 414;
    case SP_HTTP_EHEAD_TOO_LARGE:
    case SP_HTTP_ETOO_MANY_HEADERS:
    case SP_HTTP_ETRAILER_TOO_LARGE:
        return 431;
    case SP_HTTP_EBODY_TOO_LARGE:
        return 413;
    case SP_HTTP_ESTATUS:
        return 502;
    default:
        return 400;
    }
}

const char *sp_http_error_str(enum sp_http_error err)
{
    static const char *const str[] = {
        [SP_HTTP_OK] = "no error",
        [SP_HTTP_EMETHOD] = "malformed method",
        [SP_HTTP_ETARGET] = "malformed request-target",
        [SP_HTTP_EVERSION] = "malformed HTTP version",
        [SP_HTTP_EVERSION_UNSUPP] = "unsupported HTTP version",
        [SP_HTTP_ELINE] = "bare CR",
        [SP_HTTP_EHEADER_NAME] = "malformed header name",
        [SP_HTTP_EHEADER_VALUE] = "control character in header value",
        [SP_HTTP_EOBS_FOLD] = "obsolete line folding",
        [SP_HTTP_EHOST] = "missing, repeated or malformed Host",
        [SP_HTTP_ECONTENT_LENGTH] = "malformed Content-Length",
        [SP_HTTP_ECL_CONFLICT] = "conflicting Content-Length values",
        [SP_HTTP_ECL_AND_TE] = "both Content-Length and Transfer-Encoding",
        [SP_HTTP_ETRANSFER_CODING] = "malformed Transfer-Encoding",
        [SP_HTTP_ETE_UNKNOWN] = "unsupported transfer coding",
        [SP_HTTP_EURI_TOO_LONG] = "request-target too long",
        [SP_HTTP_EHEAD_TOO_LARGE] = "request head too large",
        [SP_HTTP_ETOO_MANY_HEADERS] = "too many header lines",
        [SP_HTTP_ECHUNK] = "malformed chunked framing",
        [SP_HTTP_ECHUNK_SIZE] = "chunk size too large",
        [SP_HTTP_EBODY_TOO_LARGE] = "body too large",
        [SP_HTTP_ETRAILER_TOO_LARGE] = "trailer section too large",
        [SP_HTTP_ESTATUS] = "malformed status line",
    };

    if ((unsigned)err < sizeof(str) / sizeof(str[0]) && str[err] != NULL)
        return str[err];
    return "unknown error";
}

const char *sp_http_method_name(enum sp_http_method m)
{
    static const char *const names[] = {
        [SP_HTTP_GET] = "GET",     [SP_HTTP_HEAD] = "HEAD",     [SP_HTTP_POST] = "POST",
        [SP_HTTP_PUT] = "PUT",     [SP_HTTP_DELETE] = "DELETE", [SP_HTTP_OPTIONS] = "OPTIONS",
        [SP_HTTP_PATCH] = "PATCH", [SP_HTTP_TRACE] = "TRACE",   [SP_HTTP_CONNECT] = "CONNECT",
    };

    if ((unsigned)m < sizeof(names) / sizeof(names[0]) && names[m] != NULL)
        return names[m];
    return "";
}

/* ---- chunked bodies ---------------------------------------------------- */

enum {
    CH_SIZE_FIRST, /* first hex digit of a chunk size */
    CH_SIZE,       /* more hex digits, BWS, ';' or CR */
    CH_SIZE_WS,    /* BWS after the size: only ';' may follow */
    CH_EXT,        /* chunk extensions, up to CR */
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CH_TRAILER_NAME,  /* field name, up to its ':' */
    CH_TRAILER,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
};

/* Chunk sizes stay below 2^62: no sender means more, and total + size
 * cannot overflow. */
#define CHUNK_SIZE_MAX (UINT64_C(1) << 62)

void sp_http_chunked_init(struct sp_http_chunked *d, uint64_t max_body)
{
    *d = (struct sp_http_chunked){.max_body = max_body, .state = CH_SIZE_FIRST};
}

bool sp_http_chunked_done(const struct sp_http_chunked *d)
{
    return d->state == CH_DONE;
}

ssize_t sp_http_chunked_decode(struct sp_http_chunked *d, char *buf, size_t *len)
{
    size_t src = 0, dst = 0, n = *len, k;
    enum sp_http_error err;
    int v;

    while (src < n && d->state != CH_DONE) {
        char c = buf[src];

        if (d->state == CH_DATA) {
            k = n - src < d->remaining ? n - src : (size_t)d->remaining;
            memmove(buf + dst, buf + src, k);
            dst += k;
            src += k;
            d->total += k;
            if ((d->remaining -= k) == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        src++;
        switch (d->state) {
        case CH_SIZE_FIRST:
        case CH_SIZE:
            if ((v = sp_http_hex_digit(c)) >= 0) {
                if (d->state == CH_SIZE_FIRST)
                    d->remaining = 0;
                if (d->remaining >= CHUNK_SIZE_MAX >> 4) {
                    err = SP_HTTP_ECHUNK_SIZE;
                    goto invalid;
                }
                d->remaining = d->remaining << 4 | (unsigned)v;
                d->state = CH_SIZE;
                if (d->remaining > d->max_body - d->total) {
                    err = SP_HTTP_EBODY_TOO_LARGE;
                    goto invalid;
                }
            } else if (d->state == CH_SIZE && c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (d->state == CH_SIZE && c == ';') {
                d->state = CH_EXT;
            } else if (d->state == CH_SIZE && is_ows(c)) {
                d->state = CH_SIZE_WS;
            } else {
                goto bad;
            }
            break;
        case CH_SIZE_WS:
            if (c == ';')
                d->state = CH_EXT;
            else if (!is_ows(c))
                goto bad;
            break;
        case CH_EXT:
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (!IS(c, C_VALUE))
                goto bad;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                goto bad;
            d->line_len = 0;
            d->state = d->remaining != 0 ? CH_DATA : CH_TRAILER_START;
            continue;
        case CH_DATA_CR:
            if (c != '\r')
                goto bad;
            d->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                goto bad;
            d->line_len = 0;
            d->state = CH_SIZE_FIRST;
            continue;
        case CH_TRAILER_START:
            if (c == '\r')
                d->state = CH_END_LF;
            else if (IS(c, C_TOKEN))
                d->state = CH_TRAILER_NAME;
            else
                goto bad;
            break;
        case CH_TRAILER_NAME:
            /* A trailer is a field line: "name:" (RFC 9112 7.1.2). */
            if (c == ':')
                d->state = CH_TRAILER;
            else if (!IS(c, C_TOKEN))
                goto bad;
            break;
        case CH_TRAILER:
            if (c == '\r')
                d->state = CH_TRAILER_LF;
            else if (!IS(c, C_VALUE))
                goto bad;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                goto bad;
            d->state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (c != '\n')
                goto bad;
            d->state = CH_DONE;
            break;
        }
        /* Framing bytes: bound each size line and the trailer section, so
         * that endless extensions or trailers cannot keep a connection busy. */
        if (d->state >= CH_TRAILER_START) {
            if (++d->trailer_len > SP_HTTP_TRAILER_MAX) {
                err = SP_HTTP_ETRAILER_TOO_LARGE;
                goto invalid;
            }
        } else if (++d->line_len > SP_HTTP_CHUNK_LINE_MAX) {
            goto bad;
        }
    }

    if (d->state != CH_DONE) {
        *len = dst;
        return SP_HTTP_INCOMPLETE;
    }
    k = n - src;
    memmove(buf + dst, buf + src, k);
    *len = dst;
    return (ssize_t)k;

bad:
    err = SP_HTTP_ECHUNK;
invalid:
    d->error = err;
    *len = dst;
    return SP_HTTP_INVALID;
}
