/*
 * HTTP/1.1 request parsing: the request head, chunked bodies and request paths.
 *
 * Everything here is pure and zero-copy: no allocation, no fd, no global state.
 * Results are (pointer, length) slices into the caller's buffer, valid as long
 * as that buffer is neither freed nor moved.  The parsers can be fed again from
 * the start of the buffer when more bytes arrive (the head parser) or with only
 * the new bytes (the chunked decoder).
 *
 * Return conventions follow picohttpparser: a count >= 0 on success,
 * SP_HTTP_INCOMPLETE (-2) when more input is needed and SP_HTTP_INVALID (-1)
 * when the input can never become valid.  On SP_HTTP_INVALID an enum
 * sp_http_error says why; sp_http_error_status() maps it to the status code
 * to answer (400, 413, 414, 431, 501, 505) before closing the connection.
 */
#ifndef SPINDLE_HTTP_PARSER_H
#define SPINDLE_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SP_HTTP_INVALID    (-1)
#define SP_HTTP_INCOMPLETE (-2)

/* Defaults used when no limits are given (nginx allows 8 KiB per header line). */
#define SP_HTTP_MAX_HEAD_DEFAULT   16384
#define SP_HTTP_MAX_TARGET_DEFAULT 8192
/* Fixed bounds of the chunked decoder: one chunk-size line (with extensions)
 * and the whole trailer section. */
#define SP_HTTP_CHUNK_LINE_MAX 4096
#define SP_HTTP_TRAILER_MAX    8192

/* Methods are case-sensitive (RFC 9110 9.1): "get" is SP_HTTP_OTHER. */
enum sp_http_method {
    SP_HTTP_METHOD_NONE = 0, /* not parsed yet */
    SP_HTTP_GET,
    SP_HTTP_HEAD,
    SP_HTTP_POST,
    SP_HTTP_PUT,
    SP_HTTP_DELETE,
    SP_HTTP_OPTIONS,
    SP_HTTP_PATCH,
    SP_HTTP_TRACE,
    SP_HTTP_CONNECT,
    SP_HTTP_OTHER, /* any other valid token: answer 405 or 501 */
};

/* Why a parse failed.  The comment gives the status sp_http_error_status() returns. */
enum sp_http_error {
    SP_HTTP_OK = 0,
    SP_HTTP_EMETHOD,            /* 400 method is not a token or not followed by one SP */
    SP_HTTP_ETARGET,            /* 400 bad byte in the target, bad form, not one SP after it */
    SP_HTTP_EVERSION,           /* 400 malformed version: "HTTP/1.x", "HTTX/1.1", "HTTP/1" */
    SP_HTTP_EVERSION_UNSUPP,    /* 505 well-formed but not 1.0/1.1: "HTTP/2.0", "HTTP/3" */
    SP_HTTP_ELINE,              /* 400 bare CR (CR not followed by LF) */
    SP_HTTP_EHEADER_NAME,       /* 400 no colon, empty name, bad byte or space before ':' */
    SP_HTTP_EHEADER_VALUE,      /* 400 NUL, control byte or DEL in a field value */
    SP_HTTP_EOBS_FOLD,          /* 400 header line starting with SP or HTAB */
    SP_HTTP_EHOST,              /* 400 Host missing (HTTP/1.1), repeated or malformed */
    SP_HTTP_ECONTENT_LENGTH,    /* 400 Content-Length not 1*DIGIT or above INT64_MAX */
    SP_HTTP_ECL_CONFLICT,       /* 400 two different Content-Length values */
    SP_HTTP_ECL_AND_TE,         /* 400 both Content-Length and Transfer-Encoding */
    SP_HTTP_ETRANSFER_CODING,   /* 400 chunked not last or repeated, empty, or in HTTP/1.0 */
    SP_HTTP_ETE_UNKNOWN,        /* 501 a transfer coding other than chunked */
    SP_HTTP_EURI_TOO_LONG,      /* 414 target longer than limits->max_target */
    SP_HTTP_EHEAD_TOO_LARGE,    /* 431 head longer than limits->max_head */
    SP_HTTP_ETOO_MANY_HEADERS,  /* 431 more header lines than the caller's array holds */
    SP_HTTP_ECHUNK,             /* 400 chunked framing: bad hex, missing CRLF, bad trailer */
    SP_HTTP_ECHUNK_SIZE,        /* 400 chunk size above 2^62 */
    SP_HTTP_EBODY_TOO_LARGE,    /* 413 chunk sizes add up beyond max_body */
    SP_HTTP_ETRAILER_TOO_LARGE, /* 431 trailer section above SP_HTTP_TRAILER_MAX */
    SP_HTTP_ESTATUS,            /* 502 response: malformed status code or status line */
};

/* How the request-target was written (RFC 9112 3.2). */
enum sp_http_target_form {
    SP_HTTP_FORM_ORIGIN = 0, /* "/path?query" */
    SP_HTTP_FORM_ABSOLUTE,   /* "http://host:port/path?query" (http or https only) */
    SP_HTTP_FORM_AUTHORITY,  /* "host:port", CONNECT only */
    SP_HTTP_FORM_ASTERISK,   /* "*", OPTIONS only */
};

/* Bits of sp_http_request.flags, set while the headers are scanned. */
#define SP_HTTP_F_CL_PRESENT      (1u << 0)  /* Content-Length seen (valid) */
#define SP_HTTP_F_CL_CONFLICT     (1u << 1)  /* two different values: ECL_CONFLICT */
#define SP_HTTP_F_CL_INVALID      (1u << 2)  /* unparsable value: ECONTENT_LENGTH */
#define SP_HTTP_F_TE_PRESENT      (1u << 3)  /* Transfer-Encoding seen */
#define SP_HTTP_F_TE_CHUNKED      (1u << 4)  /* chunked seen (last coding on success) */
#define SP_HTTP_F_TE_UNKNOWN      (1u << 5)  /* another coding: ETE_UNKNOWN */
#define SP_HTTP_F_CONN_CLOSE      (1u << 6)  /* Connection: close */
#define SP_HTTP_F_CONN_KEEP_ALIVE (1u << 7)  /* Connection: keep-alive */
#define SP_HTTP_F_CONN_UPGRADE    (1u << 8)  /* Connection: upgrade */
#define SP_HTTP_F_EXPECT_CONTINUE (1u << 9)  /* Expect: 100-continue, HTTP/1.1 only */
#define SP_HTTP_F_EXPECT_OTHER    (1u << 10) /* another expectation: 417 if you like */
#define SP_HTTP_F_HOST            (1u << 11) /* Host header seen */

/* One header line; both slices point into the parsed buffer.  The value has
 * its leading and trailing SP/HTAB removed and may be empty. */
struct sp_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Bounds on what one request head may occupy. */
struct sp_http_limits {
    size_t max_head;   /* bytes up to the end of the blank line; > 0 */
    size_t max_target; /* bytes of the request-target */
};

/*
 * The parsed head.  Every pointer is a slice into the buffer given to
 * sp_http_parse_request() (NULL with length 0 when absent).  Known headers
 * also stay in headers[]; for Range, If-None-Match and If-Modified-Since the
 * first line wins.
 */
struct sp_http_request {
    enum sp_http_method method;
    const char *method_str;
    size_t method_len;
    enum sp_http_target_form form;
    const char *target; /* the request-target as sent */
    size_t target_len;
    /* Path part of an origin or absolute form, before '?', still percent-encoded.
     * NULL for "http://host" (treat as "/"), the authority form and "*". */
    const char *path;
    size_t path_len;
    const char *query; /* after '?', without it; NULL when there is no '?' */
    size_t query_len;
    const char *authority; /* host[:port] of an absolute or authority form */
    size_t authority_len;
    int minor_version; /* 0 or 1 (HTTP/1.0, HTTP/1.1) */

    struct sp_http_header *headers; /* the caller's array */
    size_t num_headers;
    size_t head_len; /* bytes consumed, the same as the return value */

    unsigned flags;          /* SP_HTTP_F_* */
    uint64_t content_length; /* valid when flags has SP_HTTP_F_CL_PRESENT, else 0 */
    /* The effective host: the target's authority for the absolute form (RFC
     * 9112 3.2.2 says to ignore Host then), else the Host header; may be empty. */
    const char *host;
    size_t host_len;
    const char *if_none_match;
    size_t if_none_match_len;
    const char *if_modified_since;
    size_t if_modified_since_len;
    const char *range;
    size_t range_len;

    enum sp_http_error error; /* SP_HTTP_OK unless SP_HTTP_INVALID was returned */
};

/*
 * Parses the request head at the start of buf[0..len).
 *
 * Returns the head length (> 0, the offset of the first body or pipelined byte)
 * when the head is complete and valid; SP_HTTP_INCOMPLETE when every byte so far
 * can start a valid head (call again from buf with more bytes); SP_HTTP_INVALID
 * with req->error set otherwise.  Bytes past the head are never read, so two
 * pipelined requests yield only the first head.
 *
 * limits: NULL for the defaults above.  Input that already exceeds a limit fails
 * (EURI_TOO_LONG, EHEAD_TOO_LARGE) even when incomplete, so the caller need not
 * buffer more than max_head bytes; it can size its buffer to max_head.
 * headers: caller storage for up to max_headers lines; req->headers points to it.
 * A head with more lines fails with ETOO_MANY_HEADERS.
 *
 * Syntax: lines end in CRLF or a bare LF; a bare CR is invalid.  Empty lines
 * before the request line are skipped and counted in the head length.  The
 * request line needs exactly one SP between its parts.  Field values may hold
 * SP, HTAB, visible ASCII and bytes >= 0x80; the target visible ASCII and bytes
 * >= 0x80 but no '#'.
 *
 * Semantics checked: Host (exactly one for HTTP/1.1, at most one for 1.0),
 * Content-Length against Transfer-Encoding and itself, transfer codings (only
 * "chunked", last, and not in HTTP/1.0).  The body is:
 * SP_HTTP_F_TE_CHUNKED: chunked (use sp_http_chunked_decode); SP_HTTP_F_CL_PRESENT:
 * content_length bytes (the caller applies its own limit, 413); neither: none.
 *
 * Only a positive return makes req meaningful; otherwise it holds the partial
 * parse and, on SP_HTTP_INVALID, the error and the flags seen so far.  The parse
 * restarts from buf[0] on every call: a head arriving in n pieces costs n scans
 * of up to max_head bytes.  sp_http_parse_request_resume() avoids that.
 */
ssize_t sp_http_parse_request(const char *buf, size_t len, const struct sp_http_limits *limits,
                              struct sp_http_request *req, struct sp_http_header *headers,
                              size_t max_headers);

/*
 * Where the parse of an incomplete head stopped.  Zero it for a new head.  It
 * counts from the head's first byte, so the caller may move the head between
 * calls.  scanned and state are private.
 */
struct sp_http_resume {
    size_t scanned;    /* bytes of the head known to hold no end and no bad byte */
    unsigned state;    /* where the line scan stands at buf[scanned] */
    uint64_t examined; /* bytes looked at by all calls so far; never reset */
};

/*
 * sp_http_parse_request() for a head that arrives in pieces.  The first call
 * (rs zeroed) parses at once, as cheaply as sp_http_parse_request().  After an
 * SP_HTTP_INCOMPLETE, later calls look only at the new bytes, for the blank
 * line that ends the head or a byte no head may hold (a control byte, a bare
 * CR, a folded line), and parse in full once, when one shows up or the input
 * reaches max_head.  Fed one byte at a time, a head of n bytes costs at most
 * 2n bytes examined instead of about n^2/2.
 *
 * Returns what sp_http_parse_request() returns for buf[0..len), except that a
 * head made invalid by a later piece may be reported only once its blank line
 * or max_head bytes have arrived (SP_HTTP_INCOMPLETE until then).  On
 * SP_HTTP_INCOMPLETE req may be left untouched.  On any other return rs is
 * reset (but for examined), ready for the next head.
 */
ssize_t sp_http_parse_request_resume(struct sp_http_resume *rs, const char *buf, size_t len,
                                     const struct sp_http_limits *limits,
                                     struct sp_http_request *req, struct sp_http_header *headers,
                                     size_t max_headers);

/* Whether the connection may stay open after this request: HTTP/1.1 unless
 * "Connection: close", HTTP/1.0 only with "Connection: keep-alive". */
static inline bool sp_http_keep_alive(const struct sp_http_request *req)
{
    if (req->flags & SP_HTTP_F_CONN_CLOSE)
        return false;
    return req->minor_version >= 1 || (req->flags & SP_HTTP_F_CONN_KEEP_ALIVE) != 0;
}

/* The value of the hexadecimal digit c (either case), or -1. */
static inline int sp_http_hex_digit(char c)
{
    if ((unsigned)(c - '0') <= 9)
        return c - '0';
    if ((unsigned)((c | 0x20) - 'a') <= 5)
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* The status code to answer for err (400, 413, 414, 431, 501 or 505; 200 for
 * SP_HTTP_OK), and a short static English description for logs. */
int sp_http_error_status(enum sp_http_error err);
const char *sp_http_error_str(enum sp_http_error err);

/* The canonical name of a method ("GET"); "" for SP_HTTP_OTHER and NONE. */
const char *sp_http_method_name(enum sp_http_method m);

/*
 * Incremental, in-place decoder of a chunked body (RFC 9112 7.1).  Initialise it
 * with sp_http_chunked_init() once per body; fields other than total and error
 * are private.
 */
struct sp_http_chunked {
    uint64_t max_body;  /* limit on the sum of chunk sizes */
    uint64_t total;     /* data bytes decoded so far */
    uint64_t remaining; /* private: data bytes left in the current chunk */
    uint32_t line_len;  /* private: bytes of the current size or trailer line */
    uint32_t trailer_len;
    int state;
    enum sp_http_error error; /* set when SP_HTTP_INVALID is returned */
};

/* max_body: UINT64_MAX for no limit. */
void sp_http_chunked_init(struct sp_http_chunked *d, uint64_t max_body);

/*
 * Decodes the next *len bytes of a chunked body in buf, in place: the data bytes
 * are moved to buf[0..*len) (the new *len) and the framing is dropped.  Pass only
 * bytes not given before; decoded bytes are the caller's to use before the next
 * call.
 *
 * Returns SP_HTTP_INCOMPLETE while the body goes on; when the final CRLF has been
 * seen, the count (>= 0) of bytes after the body, which belong to the next
 * pipelined request and have been moved to buf[*len ..]; SP_HTTP_INVALID with
 * d->error = ECHUNK (bad hex digit, bad extension, missing CRLF after data or in
 * a trailer; line ends must be CRLF here), ECHUNK_SIZE, EBODY_TOO_LARGE (checked
 * as soon as a chunk size is read, before its data) or ETRAILER_TOO_LARGE.
 * Chunk extensions and trailer fields are checked for syntax and skipped.  Once
 * complete, further calls return every byte as trailing.
 */
ssize_t sp_http_chunked_decode(struct sp_http_chunked *d, char *buf, size_t *len);

/* True once the final chunk and trailers have been consumed. */
bool sp_http_chunked_done(const struct sp_http_chunked *d);

/*
 * Percent-decodes src[0..len) into dst (capacity cap; dst may equal src, the
 * result is never longer).  Returns the decoded length, -EINVAL for a '%' not
 * followed by two hex digits or for a NUL, raw or decoded ("%00"), -ENOSPC if
 * cap is too small.  "+" is not a space here: that applies to query strings only.
 */
ssize_t sp_http_pct_decode(const char *src, size_t len, char *dst, size_t cap);

/*
 * Normalises a decoded absolute path in place: collapses "//", drops "."
 * segments and resolves ".." ones.  A trailing '/' is kept, and a final "." or
 * ".." leaves one ("/a/b/.." gives "/a/").  Returns the new length (>= 1),
 * -EINVAL if path does not start with '/', -EPERM if a ".." would climb above
 * the root ("/../etc/passwd"): answer 400 or 404, never look it up.
 */
ssize_t sp_http_path_normalize(char *path, size_t len);

/*
 * sp_http_pct_decode() then sp_http_path_normalize(), into dst (cap >= len, or 1
 * for an empty path).  Decoding comes first, so "/%2e%2e/x" is refused and
 * "%2F" acts as a '/' ("/a%2F..%2Fb" gives "/b").  An empty path gives "/".
 * Returns the length of the clean path in dst or a -errno of either step.
 */
ssize_t sp_http_path_clean(const char *path, size_t len, char *dst, size_t cap);

#endif
