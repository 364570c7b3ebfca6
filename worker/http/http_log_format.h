/*
 * access_log_format: the form of an access log line (http_log_format.c).
 *
 * A format is compiled once, when the configuration is read, into a list
 * of parts, each a literal and a variable; a line is then written by
 * walking the list, without parsing or allocating.  It depends on nothing
 * but libc, so that the configuration half of the service (and its fuzzer)
 * can link it.
 */
#ifndef SPINDLE_WORKER_HTTP_LOG_FORMAT_H
#define SPINDLE_WORKER_HTTP_LOG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_LOGFMT_HDRS 6 /* request headers one format may name */

enum http_logfmt_kind {
    HTTP_LOGFMT_COMBINED, /* nginx's "combined", written by http_access_log.c itself */
    HTTP_LOGFMT_JSON,     /* one JSON object per line */
    HTTP_LOGFMT_TEMPLATE, /* nginx's log_format syntax */
};

/* What a compiled format needs beyond the request line and the counts. */
#define HTTP_LOGFMT_NEED_TIME  0x1u  /* $request_time: the request's start */
#define HTTP_LOGFMT_NEED_MSEC  0x2u  /* $msec: the wall clock in ms */
#define HTTP_LOGFMT_NEED_PID   0x4u  /* $pid */
#define HTTP_LOGFMT_NEED_LOCAL 0x8u  /* $time_local */
#define HTTP_LOGFMT_NEED_ISO   0x10u /* $time_iso8601 */

struct http_logfmt_part;

struct http_logfmt {
    enum http_logfmt_kind kind;
    unsigned need; /* HTTP_LOGFMT_NEED_* */
    unsigned nparts;
    const struct http_logfmt_part *parts;
    /* The request headers a line shows (names as in a request, matched
     * without regard to case): captured per request into the slots of
     * struct http_log_rec in this order. */
    unsigned nhdrs;
    const char *hdrs[HTTP_LOGFMT_HDRS];
    size_t hdr_lens[HTTP_LOGFMT_HDRS];
};

/* The format of "access_log_format = combined", the default: its header
 * slots are 0 Referer and 1 User-Agent. */
extern const struct http_logfmt http_logfmt_combined;

/* (pointer, length): a value absent is (NULL, 0). */
struct http_log_slice {
    const char *p;
    size_t n;
};

/* One request's values, as the access log gathers them. */
struct http_log_rec {
    const char *remote_addr;                     /* NUL-terminated */
    struct http_log_slice line;                  /* the request line as received */
    struct http_log_slice hdr[HTTP_LOGFMT_HDRS]; /* the format's hdrs[], in order */
    unsigned status;
    uint64_t body_bytes_sent, bytes_sent, request_length;
    uint64_t request_ns;       /* the request's duration */
    uint64_t upstream_ns;      /* 0: not proxied */
    const char *upstream_addr; /* NULL: not proxied */
    const char *time_local;    /* "23/Nov/2026:03:45:38 +0000" (26 bytes), or NULL */
    const char *time_iso8601;  /* "2026-11-23T03:45:38+00:00" (25 bytes), or NULL */
    uint64_t msec;             /* wall clock, milliseconds since the epoch */
    long pid;
    bool https;
};

/*
 * Compiles the value of access_log_format: "combined", "json" or a template
 * of literal text and $name or ${name} variables.  Returns a format from
 * malloc (http_logfmt_free), the static http_logfmt_combined for
 * "combined", or NULL with a message naming the fault in err (an unknown
 * variable, too many headers, out of memory).
 */
const struct http_logfmt *http_logfmt_compile(const char *spec, char *err, size_t errlen);

/* Frees a compiled format.  Accepts NULL and http_logfmt_combined. */
void http_logfmt_free(const struct http_logfmt *f);

/*
 * Writes the line of r in format f (JSON or a template; not combined) at
 * d, at most cap bytes (cap >= 2), the last one '\n'.  A value from the
 * client is escaped: in a template as nginx does (bytes below 0x20 and
 * from 0x7f, '"' and '\' as \xHH), in JSON as a JSON string (invalid UTF-8
 * bytes as \u00XX) and cut at HTTP_LOGFMT_FIELD_MAX bytes.  A template line
 * longer than cap is cut; a JSON line always fits in HTTP_LOGFMT_LINE_MAX.
 * Returns the length.
 */
size_t http_logfmt_write(const struct http_logfmt *f, const struct http_log_rec *r, char *d,
                         size_t cap);

#define HTTP_LOGFMT_FIELD_MAX 1024
#define HTTP_LOGFMT_LINE_MAX  16384

#endif
