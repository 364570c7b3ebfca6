/*
 * The RESP2 command parser: multibulk frames and inline lines, read
 * incrementally.
 *
 * The parser remembers where it stopped (state, pos, mark) so that a call
 * with more bytes looks only at the new ones: a header line is searched for
 * its \r from where the last search ended, and a bulk's payload is only
 * counted, never scanned.  It decides from the bytes alone, never from how
 * they were split between calls: a command fed byte by byte gives the same
 * result, error included, as the same command fed whole.  That is why the
 * line limits are checked against the line's length, not against what one
 * call happened to hold (Redis checks only the bytes buffered when no line
 * end was found, so its answer to a long line depends on the reads).
 */
#include "spindle/resp.h"

#include <assert.h>
#include <string.h>

enum {
    ST_START = 0, /* a zeroed parser: the first byte decides the kind */
    ST_COUNT,     /* multibulk: the *N line */
    ST_HEADER,    /* multibulk: a $LEN line, starting at mark */
    ST_PAYLOAD,   /* multibulk: bulk_len bytes and \r\n, starting at pos */
    ST_LINE,      /* inline: looking for the \n */
    ST_SPLIT,     /* inline: the line is whole; splitting it from pos */
    ST_DONE,
    ST_ERROR
};

static const struct sp_resp_limits default_limits = {
    .max_args = 1024 * 1024,
    .max_arg_size = 512 * 1024 * 1024,
};

/* "expected '$', got 'X'" for every byte X, so that the error can be a static
 * string that names the byte, as Redis's does. */
#define GOT(c)                                                                                     \
    {                                                                                              \
        'e', 'x', 'p', 'e', 'c', 't', 'e', 'd', ' ', '\'', '$', '\'', ',', ' ', 'g', 'o', 't',     \
            ' ', '\'', (char)(c), '\'', '\0'                                                       \
    }
#define GOT4(c)   GOT(c), GOT((c) + 1), GOT((c) + 2), GOT((c) + 3)
#define GOT16(c)  GOT4(c), GOT4((c) + 4), GOT4((c) + 8), GOT4((c) + 12)
#define GOT64(c)  GOT16(c), GOT16((c) + 16), GOT16((c) + 32), GOT16((c) + 48)
#define GOT256(c) GOT64(c), GOT64((c) + 64), GOT64((c) + 128), GOT64((c) + 192)
static const char expected_dollar[256][22] = {GOT256(0)};

enum line_result { LINE_FOUND, LINE_MORE, LINE_TOO_LONG };

void sp_resp_reset(struct sp_resp_parser *p)
{
    memset(p, 0, sizeof(*p));
    p->bulk_len = -1;
}

static enum sp_resp_status fail(struct sp_resp_parser *p, const char *why)
{
    p->state = ST_ERROR;
    p->error = why;
    return SP_RESP_ERROR;
}

static enum sp_resp_status done(struct sp_resp_parser *p, size_t used)
{
    p->state = ST_DONE;
    p->used = used;
    return SP_RESP_DONE;
}

/*
 * Redis's string2ll: an optional '-', then digits without a leading zero
 * ("0" alone is fine), at most 20 characters, within int64_t.  Returns false
 * for anything else, the empty string included.
 */
static bool parse_int(const char *s, size_t n, int64_t *out)
{
    bool neg = false;
    uint64_t v = 0, max;
    size_t i = 0;

    if (n == 0 || n > 20)
        return false;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    if (s[0] == '-') {
        neg = true;
        if (++i == n)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9 || v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/*
 * The fast path of a header line's number: what every client sends, 1 to 18
 * digits without a leading zero (or "0" alone) followed by \r\n, all in
 * buf[pos..len).  Returns the number and the index after the \n in *next,
 * or -1 for anything else: then the general path (find_cr, parse_int) reads
 * the line, so that a partial or unusual line gets the same answer, or the
 * same error, as before.
 */
static inline int64_t short_number(const char *buf, size_t pos, size_t len, size_t *next)
{
    size_t end = len < pos + 18 ? len : pos + 18, i = pos;
    int64_t v = 0;

    if (i >= len)
        return -1;
    if (buf[i] == '0') {
        i++;
    } else {
        for (; i < end; i++) {
            unsigned d = (unsigned char)buf[i] - '0';
            if (d > 9)
                break;
            v = v * 10 + (int64_t)d;
        }
        if (i == pos)
            return -1;
    }
    if (i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    *next = i + 2;
    return v;
}

/*
 * Finds the \r\n that ends the header line starting at p->mark, searching
 * from p->pos (where the last search stopped).  The line, its '*' or '$'
 * included, may hold SP_RESP_INLINE_MAX bytes before the \r.  On LINE_FOUND
 * *cr is the \r's index and the byte after it is there; on LINE_MORE p->pos
 * records how far the search went.
 */
static enum line_result find_cr(struct sp_resp_parser *p, const char *buf, size_t len, size_t *cr)
{
    size_t limit = p->mark + SP_RESP_INLINE_MAX + 1;
    size_t end = len < limit ? len : limit;
    const char *r = p->pos < end ? memchr(buf + p->pos, '\r', end - p->pos) : NULL;

    if (r == NULL) {
        p->pos = end;
        return len >= limit ? LINE_TOO_LONG : LINE_MORE;
    }
    p->pos = (size_t)(r - buf);
    if (p->pos + 1 >= len)
        return LINE_MORE; /* the \n is still to come; the search resumes at the \r */
    *cr = p->pos;
    return LINE_FOUND;
}

/* Reads a $LEN line.  Returns DONE when it is read (the parser is then at the
 * payload), else what sp_resp_parse returns. */
static enum sp_resp_status bulk_header(struct sp_resp_parser *p, const char *buf, size_t len,
                                       const struct sp_resp_limits *lim)
{
    enum line_result r;
    size_t cr;
    int64_t ll;

    if (p->pos == p->mark) {
        size_t next;
        if (p->pos >= len)
            return SP_RESP_MORE;
        if (buf[p->pos] != '$')
            return fail(p, expected_dollar[(unsigned char)buf[p->pos]]);
        ll = short_number(buf, p->pos + 1, len, &next);
        if (ll >= 0 && (uint64_t)ll <= lim->max_arg_size) {
            p->bulk_len = ll;
            p->pos = next;
            p->state = ST_PAYLOAD;
            return SP_RESP_DONE;
        }
    }
    if ((r = find_cr(p, buf, len, &cr)) != LINE_FOUND)
        return r == LINE_MORE ? SP_RESP_MORE : fail(p, "too big bulk count string");
    if (buf[cr + 1] != '\n' || !parse_int(buf + p->mark + 1, cr - p->mark - 1, &ll) || ll < 0 ||
        (uint64_t)ll > lim->max_arg_size)
        return fail(p, "invalid bulk length");
    p->bulk_len = ll;
    p->pos = cr + 2;
    p->state = ST_PAYLOAD;
    return SP_RESP_DONE;
}

static enum sp_resp_status multibulk(struct sp_resp_parser *p, const char *buf, size_t len,
                                     struct sp_resp_arg *args, size_t cap,
                                     const struct sp_resp_limits *lim)
{
    enum sp_resp_status st;
    enum line_result r;
    size_t cr;
    int64_t ll;

    if (p->state == ST_COUNT) {
        size_t next;
        ll = p->pos == 1 ? short_number(buf, 1, len, &next) : -1;
        if (ll > 0 && (uint64_t)ll <= lim->max_args) {
            p->want_args = ll;
            p->pos = p->mark = next;
            p->state = ST_HEADER;
            goto args;
        }
        if ((r = find_cr(p, buf, len, &cr)) != LINE_FOUND)
            return r == LINE_MORE ? SP_RESP_MORE : fail(p, "too big mbulk count string");
        if (buf[cr + 1] != '\n' || !parse_int(buf + 1, cr - 1, &ll) ||
            (ll > 0 && (uint64_t)ll > lim->max_args))
            return fail(p, "invalid multibulk length");
        if (ll <= 0)
            return done(p, cr + 2);
        /* Only a number: the arguments are recorded as they arrive. */
        p->want_args = ll;
        p->pos = p->mark = cr + 2;
        p->state = ST_HEADER;
    }
args:
    while ((int64_t)p->nargs < p->want_args) {
        if (p->state == ST_HEADER && (st = bulk_header(p, buf, len, lim)) != SP_RESP_DONE)
            return st;
        /* Counted, not scanned: this is O(1) however often it is resumed. */
        if ((uint64_t)(len - p->pos) < (uint64_t)p->bulk_len + 2)
            return SP_RESP_MORE;
        size_t end = p->pos + (size_t)p->bulk_len;
        if (buf[end] != '\r' || buf[end + 1] != '\n')
            return fail(p, "expected CRLF after bulk data");
        if (p->nargs == cap)
            return SP_RESP_GROW;
        args[p->nargs].off = p->pos;
        args[p->nargs].len = (size_t)p->bulk_len;
        p->nargs++;
        p->pos = p->mark = end + 2;
        p->bulk_len = -1;
        p->state = ST_HEADER;
    }
    return done(p, p->pos);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static enum sp_resp_status inline_cmd(struct sp_resp_parser *p, const char *buf, size_t len,
                                      struct sp_resp_arg *args, size_t cap,
                                      const struct sp_resp_limits *lim)
{
    if (p->state == ST_LINE) {
        size_t limit = SP_RESP_INLINE_MAX + 1;
        size_t end = len < limit ? len : limit;
        const char *nl = p->pos < end ? memchr(buf + p->pos, '\n', end - p->pos) : NULL;

        if (nl == NULL) {
            p->pos = end;
            return len >= limit ? fail(p, "too big inline request") : SP_RESP_MORE;
        }
        /* used is known now; mark is where the arguments end, before a \r. */
        p->used = (size_t)(nl - buf) + 1;
        p->mark = p->used - 1;
        if (p->mark > 0 && buf[p->mark - 1] == '\r')
            p->mark--;
        p->pos = 0;
        p->state = ST_SPLIT;
    }
    for (;;) {
        while (p->pos < p->mark && is_blank(buf[p->pos]))
            p->pos++;
        if (p->pos == p->mark)
            return done(p, p->used);
        if (p->nargs == lim->max_args)
            return fail(p, "too big inline request");
        if (p->nargs == cap)
            return SP_RESP_GROW; /* resumes at this argument's first byte */
        size_t start = p->pos;
        while (p->pos < p->mark && !is_blank(buf[p->pos]))
            p->pos++;
        if (p->pos - start > lim->max_arg_size)
            return fail(p, "too big inline request");
        args[p->nargs].off = start;
        args[p->nargs].len = p->pos - start;
        p->nargs++;
    }
}

enum sp_resp_status sp_resp_parse(struct sp_resp_parser *p, const char *buf, size_t len,
                                  struct sp_resp_arg *args, size_t cap,
                                  const struct sp_resp_limits *lim)
{
    assert(cap >= p->nargs);
    if (lim == NULL)
        lim = &default_limits;
    switch (p->state) {
    case ST_START:
        if (len == 0)
            return SP_RESP_MORE;
        p->bulk_len = -1;
        p->multibulk = buf[0] == '*';
        p->state = p->multibulk ? ST_COUNT : ST_LINE;
        p->pos = p->multibulk ? 1 : 0;
        p->mark = 0;
        break;
    case ST_DONE:
        return SP_RESP_DONE;
    case ST_ERROR:
        return SP_RESP_ERROR;
    default:
        break;
    }
    assert(p->pos <= len); /* the caller gave fewer bytes than before */
    if (p->multibulk)
        return multibulk(p, buf, len, args, cap, lim);
    return inline_cmd(p, buf, len, args, cap, lim);
}
