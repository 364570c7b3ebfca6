/*
 * Range requests and validators (RFC 9110 13.1 and 14): Range, If-Range and
 * If-None-Match, read against what the caller knows of the representation
 * (its size, its strong entity tag with the quotes, its Last-Modified date).
 */
#ifndef SPINDLE_HTTP_RANGE_H
#define SPINDLE_HTTP_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sp_http_range {
    SP_HTTP_RANGE_NONE,          /* serve the whole representation (200) */
    SP_HTTP_RANGE_ONE,           /* serve *start, *count bytes (206) */
    SP_HTTP_RANGE_UNSATISFIABLE, /* answer 416 with "Content-Range: bytes * / size" */
};

/*
 * Reads a Range value v[0..n) against a representation of size bytes.  One
 * "bytes=" range (a-b, a-, -n, the unit in any case, OWS after '=') gives
 * RANGE_ONE with *start and *count (> 0), the last byte clamped to size; one
 * that starts at or after the end, a suffix of 0 bytes or any range of an
 * empty representation gives RANGE_UNSATISFIABLE.  Several ranges, another
 * unit, b < a or anything malformed give RANGE_NONE: RFC 9110 14.2 lets a
 * server ignore Range, and one that answers only single ranges does so.
 */
enum sp_http_range sp_http_range_parse(const char *v, size_t n, uint64_t size, uint64_t *start,
                                       uint64_t *count);

/* Whether an If-Range value v[0..n) holds exactly etag[0..etag_len) or the
 * IMF-fixdate lastmod[0..SP_HTTP_DATE_LEN) (lastmod may be NULL).  Only then
 * may Range apply (RFC 9110 13.1.5: strong comparison, exact date). */
bool sp_http_if_range_match(const char *v, size_t n, const char *etag, size_t etag_len,
                            const char *lastmod);

/* Whether an If-None-Match list v[0..n) holds "*" or etag[0..etag_len) by
 * weak comparison (a "W/" prefix in the list is ignored; RFC 9110 13.1.2). */
bool sp_http_etag_listed(const char *v, size_t n, const char *etag, size_t etag_len);

#endif
