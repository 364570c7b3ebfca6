/*
 * Request path helpers: percent-decoding and normalisation.
 *
 * A path must be decoded before it is normalised, or "%2e%2e" would slip past
 * the ".." check; sp_http_path_clean() does both in that order.
 */
#include "spindle/http_parser.h"

#include <errno.h>
#include <string.h>

ssize_t sp_http_pct_decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t i = 0, o = 0;

    while (i < len) {
        char c = src[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = sp_http_hex_digit(src[i + 1])) < 0 ||
                (lo = sp_http_hex_digit(src[i + 2])) < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            i += 3;
        } else {
            i++;
        }
        /* No file name holds a NUL; a C string would end there. */
        if (c == '\0')
            return -EINVAL;
        if (o == cap)
            return -ENOSPC;
        dst[o++] = c;
    }
    return (ssize_t)o;
}

ssize_t sp_http_path_normalize(char *path, size_t len)
{
    size_t i = 1, w = 1;

    if (len == 0 || path[0] != '/')
        return -EINVAL;
    /* w, the end of the output, never passes i, so the work is done in place;
     * the output always ends in '/' before a segment is appended. */
    while (i <= len) {
        size_t j = i, seg;

        while (j < len && path[j] != '/')
            j++;
        seg = j - i;
        if (seg == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (w == 1)
                return -EPERM;
            for (w--; path[w - 1] != '/'; w--)
                ;
        } else if (seg != 0 && !(seg == 1 && path[i] == '.')) {
            memmove(path + w, path + i, seg);
            w += seg;
            if (j < len)
                path[w++] = '/';
        }
        i = j + 1;
    }
    return (ssize_t)w;
}

ssize_t sp_http_path_clean(const char *path, size_t len, char *dst, size_t cap)
{
    ssize_t n;

    if (len == 0) {
        if (cap == 0)
            return -ENOSPC;
        dst[0] = '/';
        return 1;
    }
    if ((n = sp_http_pct_decode(path, len, dst, cap)) < 0)
        return n;
    return sp_http_path_normalize(dst, (size_t)n);
}
