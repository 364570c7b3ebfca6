/*
 * RESP2 reply builders: appends to a growable buffer.
 *
 * These run once or more per command of a server measured against
 * redis-server, so each builder reserves its whole reply at once (one
 * capacity check), writes the numbers with a table of digit pairs instead of
 * snprintf, and the buffer grows by doubling, so appends are amortised O(1).
 */
#include "spindle/resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 256
/* The longest number header: a type byte, "-9223372036854775808", \r\n. */
#define NUM_HEAD_MAX (1 + 20 + 2)

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

void sp_resp_out_init(struct sp_resp_out *o)
{
    o->buf = NULL;
    o->len = o->cap = 0;
    o->failed = false;
    o->borrowed = false;
}

void sp_resp_out_init_buf(struct sp_resp_out *o, char *buf, size_t cap)
{
    o->buf = buf;
    o->len = 0;
    o->cap = cap;
    o->failed = false;
    o->borrowed = true;
}

void sp_resp_out_free(struct sp_resp_out *o)
{
    if (o == NULL)
        return;
    if (!o->borrowed)
        free(o->buf);
    sp_resp_out_init(o);
}

static char *grow(struct sp_resp_out *o, size_t n)
{
    size_t cap = o->cap ? o->cap : INITIAL_CAP;
    char *b;

    if (n > SIZE_MAX / 2 - o->len)
        goto fail;
    while (cap - o->len < n)
        cap *= 2;
    if (o->borrowed) { /* the caller's buffer is full: move to the heap */
        if ((b = malloc(cap)) == NULL)
            goto fail;
        memcpy(b, o->buf, o->len);
        o->borrowed = false;
    } else if ((b = realloc(o->buf, cap)) == NULL) {
        goto fail;
    }
    o->buf = b;
    o->cap = cap;
    return b + o->len;
fail:
    o->failed = true;
    return NULL;
}

/* The hot path: two tests when there is room.  A failed buffer may still
 * have room, hence the first. */
static inline char *room(struct sp_resp_out *o, size_t n)
{
    if (o->failed)
        return NULL;
    if (o->cap - o->len >= n)
        return o->buf + o->len;
    return grow(o, n);
}

char *sp_resp_out_reserve(struct sp_resp_out *o, size_t n)
{
    return room(o, n);
}

static unsigned count_digits(uint64_t v)
{
    unsigned n = 1;

    for (;;) {
        if (v < 10)
            return n;
        if (v < 100)
            return n + 1;
        if (v < 1000)
            return n + 2;
        if (v < 10000)
            return n + 3;
        v /= 10000;
        n += 4;
    }
}

/* Writes v's digits at p; returns the byte after them. */
static char *put_u64(char *p, uint64_t v)
{
    unsigned n = count_digits(v);
    char *end = p + n;

    p = end;
    while (v >= 100) {
        unsigned i = (unsigned)(v % 100) * 2;
        v /= 100;
        p -= 2;
        memcpy(p, digit_pairs + i, 2);
    }
    if (v >= 10)
        memcpy(p - 2, digit_pairs + v * 2, 2);
    else
        p[-1] = (char)('0' + v);
    return end;
}

/* Writes "<type>[-]<v>\r\n" at p, which has NUM_HEAD_MAX bytes; returns its
 * length. */
static size_t put_head(char *p, char type, bool neg, uint64_t v)
{
    char *q = p;

    *q++ = type;
    if (neg)
        *q++ = '-';
    q = put_u64(q, v);
    *q++ = '\r';
    *q++ = '\n';
    return (size_t)(q - p);
}

/* Replaces \r and \n with spaces, so that a line reply stays one line. */
static void sanitise(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n')
            s[i] = ' ';
}

static void line(struct sp_resp_out *o, char type, const char *s)
{
    size_t n = strlen(s);
    char *p = n <= SIZE_MAX - 3 ? room(o, n + 3) : NULL;

    if (p == NULL) {
        o->failed = true;
        return;
    }
    p[0] = type;
    memcpy(p + 1, s, n);
    sanitise(p + 1, n);
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    o->len += n + 3;
}

void sp_resp_simple(struct sp_resp_out *o, const char *s)
{
    line(o, '+', s);
}

void sp_resp_error(struct sp_resp_out *o, const char *s)
{
    line(o, '-', s);
}

void sp_resp_errorf(struct sp_resp_out *o, const char *fmt, ...)
{
    va_list ap;
    char *p;
    int n;

    /* Formatted straight into the buffer: first into the room there is,
     * again into exactly enough room if it did not fit (+1 for vsnprintf's
     * NUL, overwritten by the \r). */
    if ((p = room(o, 64)) == NULL)
        return;
    va_start(ap, fmt);
    n = vsnprintf(p + 1, o->cap - o->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = true;
        return;
    }
    if ((size_t)n + 3 > o->cap - o->len) {
        if ((p = room(o, (size_t)n + 3)) == NULL)
            return;
        va_start(ap, fmt);
        vsnprintf(p + 1, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    p[0] = '-';
    sanitise(p + 1, (size_t)n);
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    o->len += (size_t)n + 3;
}

void sp_resp_int(struct sp_resp_out *o, int64_t v)
{
    char *p = room(o, NUM_HEAD_MAX);

    if (p == NULL)
        return;
    /* 0 - (uint64_t)v is |v|, INT64_MIN included. */
    o->len += put_head(p, ':', v < 0, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

void sp_resp_bulk(struct sp_resp_out *o, const void *s, size_t len)
{
    char *p = len <= SIZE_MAX - NUM_HEAD_MAX - 2 ? room(o, NUM_HEAD_MAX + len + 2) : NULL;
    size_t h;

    if (p == NULL) {
        o->failed = true;
        return;
    }
    h = put_head(p, '$', false, len);
    if (len > 0)
        memcpy(p + h, s, len);
    p[h + len] = '\r';
    p[h + len + 1] = '\n';
    o->len += h + len + 2;
}

static void literal(struct sp_resp_out *o, const char *s, size_t n)
{
    char *p = room(o, n);

    if (p == NULL)
        return;
    memcpy(p, s, n);
    o->len += n;
}

void sp_resp_null(struct sp_resp_out *o)
{
    literal(o, "$-1\r\n", 5);
}

void sp_resp_null_array(struct sp_resp_out *o)
{
    literal(o, "*-1\r\n", 5);
}

void sp_resp_array(struct sp_resp_out *o, size_t n)
{
    char *p = room(o, NUM_HEAD_MAX);

    if (p == NULL)
        return;
    o->len += put_head(p, '*', false, n);
}
