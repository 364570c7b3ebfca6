/*
 * The lexical pieces shared by the request and the response parsers: the
 * character classes, line ends, case-insensitive literals and list elements.
 * Private to shared/http/.
 */
#ifndef SPINDLE_HTTP_LEX_H
#define SPINDLE_HTTP_LEX_H

#include <stdbool.h>
#include <stddef.h>

#include "spindle/http_parser.h"

enum {
    C_TOKEN = 1,  /* tchar (RFC 9110 5.6.2) */
    C_TARGET = 2, /* request-target byte: VCHAR but '#', or >= 0x80 */
    C_VALUE = 4,  /* field value byte: VCHAR, SP, HTAB, obs-text */
    C_HOST = 8,   /* uri-host [":" port]: unreserved, sub-delims, ':', '[', ']', '%' */
};

/* Defined in http_parser.c. */
extern const unsigned char sp_http_char_class[256];

#define IS(c, k) (sp_http_char_class[(unsigned char)(c)] & (k))

/* p is at '\r' or '\n'.  Returns the size of the line ending (1 or 2), 0 when
 * a CR is the last byte available, -1 for a bare CR. */
static inline int eol(const char *p, const char *end)
{
    if (*p == '\n')
        return 1;
    if (p + 1 == end)
        return 0;
    return p[1] == '\n' ? 2 : -1;
}

/* Case-insensitive comparison with a lowercase literal.  OR-ing 0x20 folds
 * only letters here: the literals hold letters, digits, '-', ':' and '/', and
 * the other bytes that fold onto those are control bytes, which never get past
 * the character classes. */
static inline bool eq_ci(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != lower[i])
            return false;
    return true;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Next element of a comma-separated list (RFC 9110 5.6.1), skipping empty
 * ones and OWS.  Returns its length, 0 at the end of the list. */
static inline size_t next_elem(const char **pp, const char *end, const char **elem)
{
    const char *p = *pp, *e;

    while (p < end && (*p == ',' || is_ows(*p)))
        p++;
    *elem = p;
    while (p < end && *p != ',')
        p++;
    e = p;
    while (e > *elem && is_ows(e[-1]))
        e--;
    *pp = p;
    return (size_t)(e - *elem);
}

/* What lex_header_line() found. */
enum { LEX_MORE = 0, LEX_HEADER = 1, LEX_END = 2 };

/*
 * One line of a head's field section at *pp (RFC 9112 5): a header (h gets
 * its name and its value without surrounding OWS; LEX_HEADER) or the blank
 * line that ends the section (LEX_END); *pp moves past the line.  LEX_MORE
 * when the line is incomplete (*pp unchanged), or -(enum sp_http_error):
 * obs-fold (which a server may reject with 400; we do, and a proxy may
 * answer 502), a header when full is set (no room for one more), whitespace
 * before the colon or a bad byte in the name or the value, a bare CR.
 */
static inline int lex_header_line(const char **pp, const char *end, struct sp_http_header *h,
                                  bool full)
{
    const char *p = *pp, *name, *value, *vend;
    int n;

    if (p == end)
        return LEX_MORE;
    if (*p == '\r' || *p == '\n') {
        if ((n = eol(p, end)) <= 0)
            return n == 0 ? LEX_MORE : -SP_HTTP_ELINE;
        *pp = p + n;
        return LEX_END;
    }
    if (is_ows(*p))
        return -SP_HTTP_EOBS_FOLD;
    if (full)
        return -SP_HTTP_ETOO_MANY_HEADERS;
    for (name = p; p < end && IS(*p, C_TOKEN); p++)
        ;
    if (p == end)
        return LEX_MORE;
    if (*p != ':' || p == name)
        return -SP_HTTP_EHEADER_NAME;
    h->name = name;
    h->name_len = (size_t)(p - name);
    for (p++; p < end && is_ows(*p); p++)
        ;
    for (value = p; p < end && IS(*p, C_VALUE); p++)
        ;
    if (p == end)
        return LEX_MORE;
    if (*p != '\r' && *p != '\n')
        return -SP_HTTP_EHEADER_VALUE;
    if ((n = eol(p, end)) <= 0)
        return n == 0 ? LEX_MORE : -SP_HTTP_ELINE;
    for (vend = p; vend > value && is_ows(vend[-1]); vend--)
        ;
    h->value = value;
    h->value_len = (size_t)(vend - value);
    *pp = p + n;
    return LEX_HEADER;
}

#endif
