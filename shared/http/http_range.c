/* Range requests and validators (see http_range.h). */
#include "spindle/http_range.h"

#include <string.h>
#include <strings.h>

#include "spindle/http_date.h"

bool sp_http_etag_listed(const char *v, size_t n, const char *etag, size_t etag_len)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == 1 && v[s] == '*')
            return true;
        if (e - s > 2 && v[s] == 'W' && v[s + 1] == '/')
            s += 2;
        if (e - s == etag_len && memcmp(v + s, etag, e - s) == 0)
            return true;
    }
    return false;
}

bool sp_http_if_range_match(const char *v, size_t n, const char *etag, size_t etag_len,
                            const char *lastmod)
{
    return (n == etag_len && memcmp(v, etag, etag_len) == 0) ||
           (lastmod && n == SP_HTTP_DATE_LEN && memcmp(v, lastmod, SP_HTTP_DATE_LEN) == 0);
}

static bool read_u64(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (p == end || (unsigned)(*p - '0') > 9)
        return false;
    for (; p < end && (unsigned)(*p - '0') <= 9; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *pp = p;
    *out = v;
    return true;
}

enum sp_http_range sp_http_range_parse(const char *v, size_t n, uint64_t size, uint64_t *start,
                                       uint64_t *count)
{
    const char *p = v, *end = v + n;
    uint64_t a, b;

    if (n < 6 || strncasecmp(p, "bytes=", 6) != 0 || memchr(v, ',', n))
        return SP_HTTP_RANGE_NONE; /* another unit, or several ranges: whole file */
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && *p == '-') {
        p++;
        if (!read_u64(&p, end, &b) || p != end)
            return SP_HTTP_RANGE_NONE;
        if (b == 0 || size == 0)
            return SP_HTTP_RANGE_UNSATISFIABLE;
        if (b > size)
            b = size;
        *start = size - b;
        *count = b;
        return SP_HTTP_RANGE_ONE;
    }
    if (!read_u64(&p, end, &a) || p == end || *p++ != '-')
        return SP_HTTP_RANGE_NONE;
    if (p == end) {
        b = UINT64_MAX;
    } else {
        if (!read_u64(&p, end, &b) || p != end)
            return SP_HTTP_RANGE_NONE;
        if (b < a)
            return SP_HTTP_RANGE_NONE; /* invalid: ignored (RFC 9110 14.1.1) */
    }
    if (a >= size)
        return SP_HTTP_RANGE_UNSATISFIABLE;
    if (b >= size)
        b = size - 1;
    *start = a;
    *count = b - a + 1;
    return SP_HTTP_RANGE_ONE;
}
