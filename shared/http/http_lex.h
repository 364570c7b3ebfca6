/*
 * The lexical pieces shared by the request and the response parsers: the
 * character classes, line ends, case-insensitive literals and list elements.
 * Private to shared/http/.
 */
#ifndef SPINDLE_HTTP_LEX_H
#define SPINDLE_HTTP_LEX_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
