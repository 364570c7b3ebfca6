/*
 * Tests of shared/http/http_parser.c and shared/http/http_path.c.
 *
 * Every parse runs on a heap copy of exactly the bytes given, so that a read
 * past the end shows up under ASan and valgrind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spindle/http_parser.h"

#define MAX_HEADERS 64

static struct sp_http_header hdrs[MAX_HEADERS];

/* Parses a private copy of s[0..len); the copy is left for the caller to free
 * (*copy) so that slices can still be checked. */
static ssize_t parse_copy(const char *s, size_t len, const struct sp_http_limits *lim,
                          size_t max_headers, struct sp_http_request *req, char **copy)
{
    char *buf = malloc(len ? len : 1);

    assert_non_null(buf);
    memcpy(buf, s, len);
    *copy = buf;
    return sp_http_parse_request(buf, len, lim, req, hdrs, max_headers);
}

/* Parses a copy that stays valid, for the slices, until the next call. */
static ssize_t parse(const char *s, size_t len, struct sp_http_request *req)
{
    static char *last;

    free(last);
    return parse_copy(s, len, NULL, MAX_HEADERS, req, &last);
}

/* ---- the table ---------------------------------------------------------- */

struct req_case {
    const char *raw;
    size_t len;
    ssize_t rc; /* ALL: the whole input is the head */
    enum sp_http_error err;
    size_t max_target, max_head, max_headers; /* 0: default */
};

#define ALL ((ssize_t)1 << 40)
#define VALID(s)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1, ALL, SP_HTTP_OK, 0, 0, 0                                                 \
    }
#define BAD(s, e)                                                                                  \
    {                                                                                              \
        s, sizeof(s) - 1, SP_HTTP_INVALID, e, 0, 0, 0                                              \
    }
#define MORE(s)                                                                                    \
    {                                                                                              \
        s, sizeof(s) - 1, SP_HTTP_INCOMPLETE, SP_HTTP_OK, 0, 0, 0                                  \
    }
#define LIMITED(s, rc, e, t, h, n)                                                                 \
    {                                                                                              \
        s, sizeof(s) - 1, rc, e, t, h, n                                                           \
    }

#define H "Host: example.com\r\n"

static const struct req_case cases[] = {
    /* valid */
    VALID("GET / HTTP/1.1\r\n" H "\r\n"),
    VALID("GET / HTTP/1.0\r\n\r\n"),
    VALID("GET / HTTP/1.1\nHost: a\n\n"),
    VALID("GET / HTTP/1.1\r\nHost: a\n\r\n"),
    VALID("\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n"),
    VALID("\nGET / HTTP/1.1\r\n" H "\r\n"),
    VALID("GET /a/b?x=1&y=%20 HTTP/1.1\r\n" H "\r\n"),
    VALID("GET / HTTP/1.1\r\nHost:    a   \r\nX-Spaces: a b\t c \t\r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "X-Empty:\r\nX-Empty-2:   \r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "User-Agent: curl/8.0\r\nAccept: */*\r\nA: 1\r\nB: 2\r\n"
          "C: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\n"),
    VALID("HEAD /index.html HTTP/1.1\r\n" H "\r\n"),
    VALID("POST /form HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n"),
    VALID("PUT /f HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"),
    VALID("PUT /f HTTP/1.1\r\n" H "Transfer-Encoding: ,  CHUNKED , \r\n\r\n"),
    VALID("DELETE /f HTTP/1.1\r\n" H "\r\n"),
    VALID("OPTIONS * HTTP/1.1\r\n" H "\r\n"),
    VALID("PATCH /f HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n"),
    VALID("TRACE / HTTP/1.1\r\n" H "\r\n"),
    VALID("CONNECT example.com:443 HTTP/1.1\r\n" H "\r\n"),
    VALID("PURGE /cache HTTP/1.1\r\n" H "\r\n"),
    VALID("get / HTTP/1.1\r\n" H "\r\n"),
    VALID("GET http://example.com/a?b HTTP/1.1\r\n" H "\r\n"),
    VALID("GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: \r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "Content-Length: 7\r\ncontent-length: 7\r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "Content-Length: 5 \r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "Content-Length: 0009223372036854775807\r\n\r\n"),
    VALID("GET /caf\xc3\xa9 HTTP/1.1\r\n" H "X-Name: Jos\xc3\xa9\r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "Connection: Keep-Alive, Upgrade\r\nUpgrade: x\r\n\r\n"),
    VALID("GET / HTTP/1.1\r\n" H "Expect: 100-continue\r\n\r\n"),
    VALID("GET / HTTP/1.1\r\nhOsT: [::1]:8080\r\n\r\n"),

    /* incomplete */
    MORE(""),
    MORE("\r"),
    MORE("\r\n"),
    MORE("GET"),
    MORE("GET / HTTP/1.1\r"),
    MORE("GET / HTTP/1.1\r\n" H),
    MORE("GET / HTTP/1.1\r\n" H "\r"),
    MORE("GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaa"),

    /* 400: request line */
    BAD("G@T / HTTP/1.1\r\n" H "\r\n", SP_HTTP_EMETHOD),
    BAD("GE(T / HTTP/1.1\r\n" H "\r\n", SP_HTTP_EMETHOD),
    BAD(" GET / HTTP/1.1\r\n" H "\r\n", SP_HTTP_EMETHOD),
    BAD("GET\t/ HTTP/1.1\r\n" H "\r\n", SP_HTTP_EMETHOD),
    BAD("GET\0/ HTTP/1.1\r\n" H "\r\n", SP_HTTP_EMETHOD),
    BAD("GET  / HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET /a\0b HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET /a\x7f HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET /a#frag HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET /a\tb HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET * HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("CONNECT / HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET ftp://example.com/ HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET http://user@example.com/ HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET http:///x HTTP/1.1\r\n" H "\r\n", SP_HTTP_ETARGET),
    BAD("GET /\r\n\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTX/1.1\r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / http/1.1\r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTP/1.x\r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTP/1\r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTP/1.10\r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTP/1.1 \r\n" H "\r\n", SP_HTTP_EVERSION),
    BAD("GET / HTTP/1.1\r\r\n" H "\r\n", SP_HTTP_ELINE),
    BAD("\rGET / HTTP/1.1\r\n" H "\r\n", SP_HTTP_ELINE),

    /* 505 */
    BAD("GET / HTTP/2.0\r\n" H "\r\n", SP_HTTP_EVERSION_UNSUPP),
    BAD("GET / HTTP/1.2\r\n" H "\r\n", SP_HTTP_EVERSION_UNSUPP),
    BAD("GET / HTTP/3\r\n" H "\r\n", SP_HTTP_EVERSION_UNSUPP),
    BAD("GET / HTTP/0.9\r\n\r\n", SP_HTTP_EVERSION_UNSUPP),

    /* 400: header lines */
    BAD("GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\n" H "No colon: x\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\nHost : a\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\n" H "X-A\t: b\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\n" H ": empty name\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\n" H "X-A\0: b\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("GET / HTTP/1.1\r\n" H "X-A: b\r\n c\r\n\r\n", SP_HTTP_EOBS_FOLD),
    BAD("GET / HTTP/1.1\r\n\tX-A: b\r\n" H "\r\n", SP_HTTP_EOBS_FOLD),
    BAD("GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", SP_HTTP_EHEADER_VALUE),
    BAD("GET / HTTP/1.1\r\n" H "X-A: a\x01\r\n\r\n", SP_HTTP_EHEADER_VALUE),
    BAD("GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n", SP_HTTP_EHEADER_VALUE),
    BAD("GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", SP_HTTP_ELINE),
    BAD("GET / HTTP/1.1\r\n" H "X-A: b\r\r\n\r\n", SP_HTTP_ELINE),
    BAD("GET / HTTP/1.1\r\n" H "\r\r\n", SP_HTTP_ELINE),

    /* 400: Host */
    BAD("GET / HTTP/1.1\r\n\r\n", SP_HTTP_EHOST),
    BAD("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", SP_HTTP_EHOST),
    BAD("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", SP_HTTP_EHOST),
    BAD("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", SP_HTTP_EHOST),
    BAD("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", SP_HTTP_EHOST),
    BAD("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", SP_HTTP_EHOST),

    /* 400: framing, the request smuggling cases */
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 0x10\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775808\r\n\r\n",
        SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n",
        SP_HTTP_ECONTENT_LENGTH),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        SP_HTTP_ECL_CONFLICT),
    BAD("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        SP_HTTP_ECL_AND_TE),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        SP_HTTP_ECL_AND_TE),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n",
        SP_HTTP_ETRANSFER_CODING),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        SP_HTTP_ETRANSFER_CODING),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", SP_HTTP_ETRANSFER_CODING),
    BAD("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SP_HTTP_ETRANSFER_CODING),

    /* 501 */
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", SP_HTTP_ETE_UNKNOWN),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", SP_HTTP_ETE_UNKNOWN),
    BAD("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;x=1\r\n\r\n", SP_HTTP_ETE_UNKNOWN),

    /* 414 and 431, also before the head is complete */
    LIMITED("GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n", SP_HTTP_INVALID, SP_HTTP_EURI_TOO_LONG,
            10, 0, 0),
    LIMITED("GET /0123456789", SP_HTTP_INVALID, SP_HTTP_EURI_TOO_LONG, 10, 0, 0),
    LIMITED("GET /012345678 HTTP/1.1\r\nHost: a\r\n\r\n", ALL, SP_HTTP_OK, 10, 0, 0),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaa\r\n\r\n", SP_HTTP_INVALID,
            SP_HTTP_EHEAD_TOO_LARGE, 0, 32, 0),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaa", SP_HTTP_INVALID,
            SP_HTTP_EHEAD_TOO_LARGE, 0, 32, 0),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nX: aaaaaaaaaaaaaaaa\r\n\r\n", ALL, SP_HTTP_OK, 0, 48, 0),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nX: aaaaaaaaaaaaaaaaa\r\n\r\n", SP_HTTP_INVALID,
            SP_HTTP_EHEAD_TOO_LARGE, 0, 48, 0),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", SP_HTTP_INVALID,
            SP_HTTP_ETOO_MANY_HEADERS, 0, 0, 2),
    LIMITED("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n", ALL, SP_HTTP_OK, 0, 0, 2),
};

static ssize_t run_case(const struct req_case *c, size_t len, struct sp_http_request *req,
                        char **buf)
{
    struct sp_http_limits lim = {
        .max_head = c->max_head ? c->max_head : SP_HTTP_MAX_HEAD_DEFAULT,
        .max_target = c->max_target ? c->max_target : SP_HTTP_MAX_TARGET_DEFAULT,
    };

    return parse_copy(c->raw, len, &lim, c->max_headers ? c->max_headers : MAX_HEADERS, req, buf);
}

static void test_table(void **state)
{
    (void)state;
    assert_true(sizeof(cases) / sizeof(cases[0]) >= 40);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct req_case *c = &cases[i];
        struct sp_http_request req;
        char *buf;
        ssize_t want = c->rc == ALL ? (ssize_t)c->len : c->rc;
        ssize_t rc = run_case(c, c->len, &req, &buf);

        if (rc != want || req.error != c->err)
            print_error("case %zu \"%.*s\": rc %zd (want %zd), error %s (want %s)\n", i,
                        (int)c->len, c->raw, rc, want, sp_http_error_str(req.error),
                        sp_http_error_str(c->err));
        assert_int_equal(rc, want);
        assert_int_equal(req.error, c->err);
        if (rc > 0) {
            assert_int_equal(req.head_len, (size_t)rc);
            assert_true(req.minor_version == 0 || req.minor_version == 1);
        }
        free(buf);
    }
}

/* Every proper prefix of a valid head needs more bytes: it is never invalid. */
static void test_valid_prefixes_incomplete(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct req_case *c = &cases[i];

        if (c->rc != ALL)
            continue;
        for (size_t n = 0; n < c->len; n++) {
            struct sp_http_request req;
            char *buf;
            ssize_t rc = run_case(c, n, &req, &buf);

            if (rc != SP_HTTP_INCOMPLETE)
                print_error("case %zu prefix %zu: rc %zd (%s)\n", i, n, rc,
                            sp_http_error_str(req.error));
            assert_int_equal(rc, SP_HTTP_INCOMPLETE);
            free(buf);
        }
    }
}

/* Once a prefix of an invalid input is invalid, so is every longer one, with
 * the same reason. */
static void test_invalid_stays_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct req_case *c = &cases[i];
        enum sp_http_error first = SP_HTTP_OK;

        if (c->rc != SP_HTTP_INVALID)
            continue;
        for (size_t n = 0; n <= c->len; n++) {
            struct sp_http_request req;
            char *buf;
            ssize_t rc = run_case(c, n, &req, &buf);

            if (first != SP_HTTP_OK) {
                assert_int_equal(rc, SP_HTTP_INVALID);
                assert_int_equal(req.error, first);
            } else if (rc == SP_HTTP_INVALID) {
                first = req.error;
            } else {
                assert_int_equal(rc, SP_HTTP_INCOMPLETE);
            }
            free(buf);
        }
        assert_int_equal(first, c->err);
    }
}

static bool slice_is(const char *p, size_t n, const char *want)
{
    if (want == NULL)
        return p == NULL && n == 0;
    return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Feeds c->raw one byte at a time to the resuming parser, then once more
 * with an end of head appended; checks each answer against a full parse of
 * the same bytes. */
static void resume_case(const struct req_case *c, const char *raw, size_t len, bool ended)
{
    struct sp_http_limits lim = {
        .max_head = c->max_head ? c->max_head : SP_HTTP_MAX_HEAD_DEFAULT,
        .max_target = c->max_target ? c->max_target : SP_HTTP_MAX_TARGET_DEFAULT,
    };
    size_t nh = c->max_headers ? c->max_headers : MAX_HEADERS;
    struct sp_http_resume rs = {0};
    struct sp_http_request req, full;
    static struct sp_http_header fh[MAX_HEADERS];

    for (size_t n = 1; n <= len; n++) {
        ssize_t rc = sp_http_parse_request_resume(&rs, raw, n, &lim, &req, hdrs, nh);
        ssize_t want = sp_http_parse_request(raw, n, &lim, &full, fh, nh);

        bool late = rc == SP_HTTP_INCOMPLETE && want == SP_HTTP_INVALID && !(ended && n == len);

        if (rc != want && !late)
            print_error("\"%.*s\" at %zu: rc %zd, full parse %zd\n", (int)len, raw, n, rc, want);
        if (late)
            continue;
        assert_int_equal(rc, want);
        if (rc == SP_HTTP_INVALID)
            assert_int_equal(req.error, full.error);
        if (rc != SP_HTTP_INCOMPLETE)
            return;
    }
}

/* The resuming parser answers as a full parse does, or later (never
 * differently) for an invalid head, but at the latest at its end. */
static void test_resume_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct req_case *c = &cases[i];
        char *buf = malloc(c->len + 4);

        assert_non_null(buf);
        memcpy(buf, c->raw, c->len);
        memcpy(buf + c->len, "\r\n\r\n", 4);
        resume_case(c, buf, c->len, false);
        resume_case(c, buf, c->len + 4, true);
        free(buf);
    }
}

/* Builds a head of about size bytes: a request line, Host, and header lines
 * of up to 16 KB.  Returns its length. */
static size_t big_head(char *buf, size_t size)
{
    size_t len = (size_t)sprintf(buf, "GET /big HTTP/1.1\r\nHost: example.com\r\n");

    for (int i = 0; len + 64 < size; i++) {
        size_t n = size - len - 64 < 16384 ? size - len - 64 : 16384;
        len += (size_t)sprintf(buf + len, "X-Pad-%d: ", i);
        memset(buf + len, 'a' + i % 26, n);
        len += n;
        memcpy(buf + len, "\r\n", 2);
        len += 2;
    }
    memcpy(buf + len, "\r\n", 2);
    return len + 2;
}

/* A head that trickles in one byte at a time is looked at no more than twice
 * in all, not once per piece: 600 KB would otherwise cost 180 GB of scanning. */
static void test_resume_linear(void **state)
{
    struct sp_http_limits lim = {.max_head = 1 << 20, .max_target = 8192};
    size_t cap = 600 * 1024;
    char *buf = malloc(cap);
    struct sp_http_resume rs = {0};
    struct sp_http_request req;
    ssize_t rc = SP_HTTP_INCOMPLETE;
    size_t len, n;

    (void)state;
    assert_non_null(buf);
    len = big_head(buf, cap);
    for (n = 1; n <= len && rc == SP_HTTP_INCOMPLETE; n++) {
        rc = sp_http_parse_request_resume(&rs, buf, n, &lim, &req, hdrs, MAX_HEADERS);
        if (rs.examined > 2 * (uint64_t)len)
            break;
    }
    if (rs.examined > 2 * (uint64_t)len)
        print_error("%" PRIu64 " bytes examined after %zu of a %zu-byte head\n", rs.examined, n,
                    len);
    assert_true(rs.examined <= 2 * (uint64_t)len);
    assert_int_equal(rc, (ssize_t)len);
    assert_int_equal(n - 1, len);
    assert_true(req.num_headers > 30);
    assert_true(slice_is(req.host, req.host_len, "example.com"));
    assert_true(slice_is(req.headers[req.num_headers - 1].name,
                         req.headers[req.num_headers - 1].name_len, "X-Pad-37"));
    assert_int_equal(rs.scanned, 0);

    /* The next head starts afresh: a pipelined request costs one parse. */
    rs.examined = 0;
    rc = sp_http_parse_request_resume(&rs, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, &lim, &req,
                                      hdrs, MAX_HEADERS);
    assert_int_equal(rc, 27);
    assert_int_equal(rs.examined, 27);

    /* Garbage after the first piece fails at once, not at max_head. */
    rs = (struct sp_http_resume){0};
    memcpy(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: \x01", 29);
    assert_int_equal(sp_http_parse_request_resume(&rs, buf, 20, &lim, &req, hdrs, MAX_HEADERS),
                     SP_HTTP_INCOMPLETE);
    assert_int_equal(sp_http_parse_request_resume(&rs, buf, 29, &lim, &req, hdrs, MAX_HEADERS),
                     SP_HTTP_INVALID);
    assert_int_equal(req.error, SP_HTTP_EHEADER_VALUE);
    free(buf);
}

static void test_fields(void **state)
{
    static const char raw[] = "GET /a/b?x=1 HTTP/1.1\r\n"
                              "Host: example.com:8080\r\n"
                              "User-Agent:  spindle-test \t\r\n"
                              "If-None-Match: \"abc\"\r\n"
                              "If-Modified-Since: Sat, 29 Oct 1994 19:43:31 GMT\r\n"
                              "Range: bytes=0-99\r\n"
                              "range: bytes=5-6\r\n"
                              "\r\nBODY";
    struct sp_http_request req;
    char *buf;
    ssize_t rc = parse_copy(raw, sizeof(raw) - 1, NULL, MAX_HEADERS, &req, &buf);

    (void)state;
    assert_int_equal(rc, sizeof(raw) - 1 - 4);
    assert_int_equal(req.method, SP_HTTP_GET);
    assert_true(slice_is(req.method_str, req.method_len, "GET"));
    assert_int_equal(req.form, SP_HTTP_FORM_ORIGIN);
    assert_true(slice_is(req.target, req.target_len, "/a/b?x=1"));
    assert_true(slice_is(req.path, req.path_len, "/a/b"));
    assert_true(slice_is(req.query, req.query_len, "x=1"));
    assert_null(req.authority);
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.num_headers, 6);
    assert_ptr_equal(req.headers, hdrs);
    assert_true(slice_is(hdrs[0].name, hdrs[0].name_len, "Host"));
    assert_true(slice_is(hdrs[1].name, hdrs[1].name_len, "User-Agent"));
    assert_true(slice_is(hdrs[1].value, hdrs[1].value_len, "spindle-test"));
    assert_true(slice_is(req.host, req.host_len, "example.com:8080"));
    assert_true(slice_is(req.if_none_match, req.if_none_match_len, "\"abc\""));
    assert_true(slice_is(req.if_modified_since, req.if_modified_since_len,
                         "Sat, 29 Oct 1994 19:43:31 GMT"));
    assert_true(slice_is(req.range, req.range_len, "bytes=0-99"));
    /* Zero copy: slices point into the parsed buffer. */
    assert_ptr_equal(req.target, buf + 4);
    assert_ptr_equal(hdrs[0].value, buf + 29);
    assert_int_equal(req.flags, SP_HTTP_F_HOST);
    assert_int_equal(req.content_length, 0);
    assert_true(sp_http_keep_alive(&req));
    assert_int_equal(req.error, SP_HTTP_OK);
    free(buf);
}

static void test_target_forms(void **state)
{
    struct sp_http_request req;
    char *buf;
    static const char abs[] = "GET http://Example.COM:80/p/q?k=v HTTP/1.1\r\nHost: other\r\n\r\n";
    static const char bare[] = "GET http://example.com?k HTTP/1.1\r\nHost: other\r\n\r\n";
    static const char conn[] = "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
    static const char star[] = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char empty_q[] = "GET /x? HTTP/1.1\r\nHost: a\r\n\r\n";

    (void)state;
    assert_int_equal(parse_copy(abs, sizeof(abs) - 1, NULL, MAX_HEADERS, &req, &buf),
                     sizeof(abs) - 1);
    assert_int_equal(req.form, SP_HTTP_FORM_ABSOLUTE);
    assert_true(slice_is(req.authority, req.authority_len, "Example.COM:80"));
    assert_true(slice_is(req.host, req.host_len, "Example.COM:80"));
    assert_true(slice_is(req.path, req.path_len, "/p/q"));
    assert_true(slice_is(req.query, req.query_len, "k=v"));
    free(buf);

    assert_int_equal(parse_copy(bare, sizeof(bare) - 1, NULL, MAX_HEADERS, &req, &buf),
                     sizeof(bare) - 1);
    assert_true(slice_is(req.authority, req.authority_len, "example.com"));
    assert_true(slice_is(req.path, req.path_len, NULL));
    assert_true(slice_is(req.query, req.query_len, "k"));
    free(buf);

    assert_int_equal(parse_copy(conn, sizeof(conn) - 1, NULL, MAX_HEADERS, &req, &buf),
                     sizeof(conn) - 1);
    assert_int_equal(req.method, SP_HTTP_CONNECT);
    assert_int_equal(req.form, SP_HTTP_FORM_AUTHORITY);
    assert_true(slice_is(req.authority, req.authority_len, "[::1]:443"));
    assert_true(slice_is(req.path, req.path_len, NULL));
    free(buf);

    assert_int_equal(parse_copy(star, sizeof(star) - 1, NULL, MAX_HEADERS, &req, &buf),
                     sizeof(star) - 1);
    assert_int_equal(req.method, SP_HTTP_OPTIONS);
    assert_int_equal(req.form, SP_HTTP_FORM_ASTERISK);
    assert_true(slice_is(req.target, req.target_len, "*"));
    free(buf);

    assert_int_equal(parse_copy(empty_q, sizeof(empty_q) - 1, NULL, MAX_HEADERS, &req, &buf),
                     sizeof(empty_q) - 1);
    assert_true(slice_is(req.path, req.path_len, "/x"));
    assert_non_null(req.query);
    assert_int_equal(req.query_len, 0);
    free(buf);
}

static void test_methods(void **state)
{
    static const struct {
        const char *name;
        enum sp_http_method m;
    } ms[] = {
        {"GET", SP_HTTP_GET},     {"HEAD", SP_HTTP_HEAD},      {"POST", SP_HTTP_POST},
        {"PUT", SP_HTTP_PUT},     {"DELETE", SP_HTTP_DELETE},  {"OPTIONS", SP_HTTP_OPTIONS},
        {"PATCH", SP_HTTP_PATCH}, {"TRACE", SP_HTTP_TRACE},    {"GETS", SP_HTTP_OTHER},
        {"Get", SP_HTTP_OTHER},   {"M-SEARCH", SP_HTTP_OTHER},
    };
    char raw[128];
    struct sp_http_request req;

    (void)state;
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        int n = snprintf(raw, sizeof(raw), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", ms[i].name);

        assert_int_equal(parse(raw, (size_t)n, &req), n);
        assert_int_equal(req.method, ms[i].m);
        assert_true(slice_is(req.method_str, req.method_len, ms[i].name));
        if (ms[i].m != SP_HTTP_OTHER)
            assert_string_equal(sp_http_method_name(ms[i].m), ms[i].name);
    }
    assert_string_equal(sp_http_method_name(SP_HTTP_CONNECT), "CONNECT");
    assert_string_equal(sp_http_method_name(SP_HTTP_OTHER), "");
}

static void test_pipelined(void **state)
{
    static const char raw[] = "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    struct sp_http_request req;
    ssize_t first, second;

    (void)state;
    first = parse(raw, sizeof(raw) - 1, &req);
    assert_int_equal(first, 32);
    assert_true(slice_is(req.path, req.path_len, "/first"));
    assert_true(sp_http_keep_alive(&req));
    second = parse(raw + first, sizeof(raw) - 1 - (size_t)first, &req);
    assert_int_equal(second, sizeof(raw) - 1 - (size_t)first);
    assert_true(slice_is(req.path, req.path_len, "/second"));
    assert_false(sp_http_keep_alive(&req));
}

static void test_case_insensitive_names(void **state)
{
    static const char raw[] = "POST / HTTP/1.1\r\nhOST: a\r\ncOnTeNt-LeNgTh: 42\r\n"
                              "CONNECTION: CLOSE\r\nEXPECT: 100-Continue\r\n"
                              "if-none-match: *\r\nIF-MODIFIED-SINCE: x\r\nRANGE: bytes=1-\r\n\r\n";
    struct sp_http_request req;

    (void)state;
    assert_int_equal(parse(raw, sizeof(raw) - 1, &req), sizeof(raw) - 1);
    assert_true(req.flags & SP_HTTP_F_HOST);
    assert_true(req.flags & SP_HTTP_F_CL_PRESENT);
    assert_int_equal(req.content_length, 42);
    assert_true(req.flags & SP_HTTP_F_CONN_CLOSE);
    assert_true(req.flags & SP_HTTP_F_EXPECT_CONTINUE);
    assert_true(slice_is(req.if_none_match, req.if_none_match_len, "*"));
    assert_true(slice_is(req.if_modified_since, req.if_modified_since_len, "x"));
    assert_true(slice_is(req.range, req.range_len, "bytes=1-"));
}

static void test_content_length_values(void **state)
{
    static const struct {
        const char *v;
        uint64_t want; /* UINT64_MAX: invalid */
    } cl[] = {
        {"0", 0},
        {"5", 5},
        {"5 ", 5},
        {"\t5", 5},
        {"007", 7},
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775808", UINT64_MAX},
        {"18446744073709551616", UINT64_MAX},
        {"+5", UINT64_MAX},
        {"", UINT64_MAX},
        {"5a", UINT64_MAX},
        {"5;", UINT64_MAX},
        {"1,1", UINT64_MAX},
    };
    char raw[128];
    struct sp_http_request req;

    (void)state;
    for (size_t i = 0; i < sizeof(cl) / sizeof(cl[0]); i++) {
        int n = snprintf(raw, sizeof(raw),
                         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", cl[i].v);
        ssize_t rc = parse(raw, (size_t)n, &req);

        if (cl[i].want == UINT64_MAX) {
            assert_int_equal(rc, SP_HTTP_INVALID);
            assert_int_equal(req.error, SP_HTTP_ECONTENT_LENGTH);
            assert_true(req.flags & SP_HTTP_F_CL_INVALID);
            assert_int_equal(sp_http_error_status(req.error), 400);
        } else {
            assert_int_equal(rc, n);
            assert_int_equal(req.flags & (SP_HTTP_F_CL_PRESENT | SP_HTTP_F_CL_INVALID),
                             SP_HTTP_F_CL_PRESENT);
            assert_int_equal(req.content_length, cl[i].want);
        }
    }
}

static void test_transfer_encoding_flags(void **state)
{
    static const char chunked[] =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char gzip[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
    static const char cl2[] =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    struct sp_http_request req;

    (void)state;
    assert_int_equal(parse(chunked, sizeof(chunked) - 1, &req), sizeof(chunked) - 1);
    assert_int_equal(req.flags &
                         (SP_HTTP_F_TE_PRESENT | SP_HTTP_F_TE_CHUNKED | SP_HTTP_F_CL_PRESENT),
                     SP_HTTP_F_TE_PRESENT | SP_HTTP_F_TE_CHUNKED);
    assert_int_equal(parse(gzip, sizeof(gzip) - 1, &req), SP_HTTP_INVALID);
    assert_true(req.flags & SP_HTTP_F_TE_UNKNOWN);
    assert_int_equal(sp_http_error_status(req.error), 501);
    assert_int_equal(parse(cl2, sizeof(cl2) - 1, &req), SP_HTTP_INVALID);
    assert_true(req.flags & SP_HTTP_F_CL_CONFLICT);
    assert_int_equal(sp_http_error_status(req.error), 400);
}

static void test_keep_alive(void **state)
{
    static const struct {
        const char *raw;
        bool keep;
    } ka[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: foo,,  keep-alive \r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
    };
    struct sp_http_request req;

    (void)state;
    for (size_t i = 0; i < sizeof(ka) / sizeof(ka[0]); i++) {
        size_t n = strlen(ka[i].raw);

        assert_int_equal(parse(ka[i].raw, n, &req), n);
        if (sp_http_keep_alive(&req) != ka[i].keep)
            print_error("case %zu: %s\n", i, ka[i].raw);
        assert_int_equal(sp_http_keep_alive(&req), ka[i].keep);
    }
}

static void test_expect(void **state)
{
    static const char v11[] = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n";
    static const char v10[] = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    static const char other[] = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n";
    struct sp_http_request req;

    (void)state;
    assert_true(parse(v11, sizeof(v11) - 1, &req) > 0);
    assert_int_equal(req.flags & (SP_HTTP_F_EXPECT_CONTINUE | SP_HTTP_F_EXPECT_OTHER),
                     SP_HTTP_F_EXPECT_CONTINUE);
    assert_true(parse(v10, sizeof(v10) - 1, &req) > 0);
    assert_false(req.flags & SP_HTTP_F_EXPECT_CONTINUE);
    assert_true(parse(other, sizeof(other) - 1, &req) > 0);
    assert_int_equal(req.flags & (SP_HTTP_F_EXPECT_CONTINUE | SP_HTTP_F_EXPECT_OTHER),
                     SP_HTTP_F_EXPECT_OTHER);
}

/* The default limits, with inputs built at run time. */
static void test_default_limits(void **state)
{
    size_t cap = 64 * 1024;
    char *raw = malloc(cap);
    struct sp_http_request req;
    int n;

    (void)state;
    assert_non_null(raw);
    /* A target of exactly SP_HTTP_MAX_TARGET_DEFAULT bytes passes, one more fails. */
    memcpy(raw, "GET /", 5);
    memset(raw + 5, 'a', SP_HTTP_MAX_TARGET_DEFAULT - 1);
    n = 5 + SP_HTTP_MAX_TARGET_DEFAULT - 1;
    n += sprintf(raw + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(parse(raw, (size_t)n, &req), n);
    raw[4 + SP_HTTP_MAX_TARGET_DEFAULT] = 'a';
    assert_int_equal(parse(raw, 4 + SP_HTTP_MAX_TARGET_DEFAULT + 1, &req), SP_HTTP_INVALID);
    assert_int_equal(sp_http_error_status(req.error), 414);

    /* An endless header: 431 as soon as the limit is reached, not "incomplete". */
    n = sprintf(raw, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(raw + n, 'b', cap - (size_t)n);
    assert_int_equal(parse(raw, SP_HTTP_MAX_HEAD_DEFAULT - 1, &req), SP_HTTP_INCOMPLETE);
    assert_int_equal(parse(raw, SP_HTTP_MAX_HEAD_DEFAULT, &req), SP_HTTP_INVALID);
    assert_int_equal(req.error, SP_HTTP_EHEAD_TOO_LARGE);
    assert_int_equal(parse(raw, cap, &req), SP_HTTP_INVALID);
    assert_int_equal(sp_http_error_status(req.error), 431);

    /* A flood of empty lines counts against the head size too. */
    memset(raw, '\n', cap);
    assert_int_equal(parse(raw, SP_HTTP_MAX_HEAD_DEFAULT - 1, &req), SP_HTTP_INCOMPLETE);
    assert_int_equal(parse(raw, cap, &req), SP_HTTP_INVALID);
    assert_int_equal(req.error, SP_HTTP_EHEAD_TOO_LARGE);
    free(raw);
}

static void test_error_status(void **state)
{
    (void)state;
    assert_int_equal(sp_http_error_status(SP_HTTP_OK), 200);
    assert_int_equal(sp_http_error_status(SP_HTTP_EMETHOD), 400);
    assert_int_equal(sp_http_error_status(SP_HTTP_EOBS_FOLD), 400);
    assert_int_equal(sp_http_error_status(SP_HTTP_ECL_AND_TE), 400);
    assert_int_equal(sp_http_error_status(SP_HTTP_EVERSION_UNSUPP), 505);
    assert_int_equal(sp_http_error_status(SP_HTTP_ETE_UNKNOWN), 501);
    assert_int_equal(sp_http_error_status(SP_HTTP_EURI_TOO_LONG), 414);
    assert_int_equal(sp_http_error_status(SP_HTTP_EHEAD_TOO_LARGE), 431);
    assert_int_equal(sp_http_error_status(SP_HTTP_ETOO_MANY_HEADERS), 431);
    assert_int_equal(sp_http_error_status(SP_HTTP_EBODY_TOO_LARGE), 413);
    assert_int_equal(sp_http_error_status(SP_HTTP_ECHUNK), 400);
    for (int e = SP_HTTP_OK; e <= SP_HTTP_ETRAILER_TOO_LARGE; e++)
        assert_string_not_equal(sp_http_error_str((enum sp_http_error)e), "unknown error");
    assert_string_equal(sp_http_error_str((enum sp_http_error)999), "unknown error");
}

/* ---- chunked bodies ---------------------------------------------------- */

struct chunk_result {
    ssize_t rc;
    enum sp_http_error err;
    char data[256];
    size_t data_len;
    char rest[64];
    size_t rest_len;
};

/* Feeds body[0..len) to a fresh decoder in pieces of the sizes given by cut
 * (0-terminated list of offsets, or NULL for one piece), each piece in its own
 * heap buffer, and gathers the output. */
static void decode_pieces(const char *body, size_t len, uint64_t max_body, const size_t *cuts,
                          struct chunk_result *r)
{
    struct sp_http_chunked d;
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    sp_http_chunked_init(&d, max_body);
    r->rc = SP_HTTP_INCOMPLETE;
    while (r->rc == SP_HTTP_INCOMPLETE && off < len) {
        size_t next = cuts != NULL && *cuts != 0 ? *cuts++ : len, n = next - off;
        char *buf = malloc(n ? n : 1);

        assert_non_null(buf);
        memcpy(buf, body + off, n);
        r->rc = sp_http_chunked_decode(&d, buf, &n);
        assert_true(n <= next - off);
        assert_true(r->data_len + n <= sizeof(r->data));
        memcpy(r->data + r->data_len, buf, n);
        r->data_len += n;
        if (r->rc >= 0) {
            assert_true(n + (size_t)r->rc <= next - off);
            assert_true(sp_http_chunked_done(&d));
            memcpy(r->rest, buf + n, (size_t)r->rc);
            r->rest_len = (size_t)r->rc;
            /* Trailing bytes of later pieces belong to the next request too. */
            memcpy(r->rest + r->rest_len, body + next, len - next);
            r->rest_len += len - next;
        }
        free(buf);
        off = next;
    }
    r->err = d.error;
    assert_int_equal(d.total, r->data_len);
}

static const char chunked_body[] = "5\r\nhello\r\n"
                                   "1;name=value; q=\"x y\"\r\n \r\n"
                                   "00000A \t;ext\r\n0123456789\r\n"
                                   "b\r\n, and more!\r\n"
                                   "0\r\n"
                                   "X-Trailer: yes\r\n"
                                   "X-Other: also\r\n"
                                   "\r\n"
                                   "GET / HTTP/1.1\r\n";
static const char chunked_data[] = "hello 0123456789, and more!";

static void test_chunked_simple(void **state)
{
    struct chunk_result r;

    (void)state;
    decode_pieces(chunked_body, sizeof(chunked_body) - 1, UINT64_MAX, NULL, &r);
    assert_int_equal(r.rc, 16);
    assert_int_equal(r.data_len, sizeof(chunked_data) - 1);
    assert_memory_equal(r.data, chunked_data, r.data_len);
    assert_int_equal(r.rest_len, 16);
    assert_memory_equal(r.rest, "GET / HTTP/1.1\r\n", 16);
}

/* Splitting the input anywhere, once or at every byte, changes nothing. */
static void test_chunked_every_split(void **state)
{
    size_t len = sizeof(chunked_body) - 1, cuts[sizeof(chunked_body) + 1];
    struct chunk_result r;

    (void)state;
    for (size_t at = 1; at < len; at++) {
        cuts[0] = at;
        cuts[1] = 0;
        decode_pieces(chunked_body, len, UINT64_MAX, cuts, &r);
        assert_int_equal(r.rc >= 0, 1);
        assert_int_equal(r.data_len, sizeof(chunked_data) - 1);
        assert_memory_equal(r.data, chunked_data, r.data_len);
        assert_int_equal(r.rest_len, 16);
        assert_memory_equal(r.rest, "GET / HTTP/1.1\r\n", 16);
    }
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    cuts[len] = 0;
    decode_pieces(chunked_body, len, UINT64_MAX, cuts, &r);
    assert_int_equal(r.data_len, sizeof(chunked_data) - 1);
    assert_memory_equal(r.data, chunked_data, r.data_len);
    assert_int_equal(r.rest_len, 16);
}

static void test_chunked_cases(void **state)
{
    static const struct {
        const char *body;
        uint64_t max_body;
        ssize_t rc;
        enum sp_http_error err;
        const char *data;
    } cc[] = {
        {"0\r\n\r\n", UINT64_MAX, 0, SP_HTTP_OK, ""},
        {"0\r\n\r\nX", UINT64_MAX, 1, SP_HTTP_OK, ""},
        {"3\r\nabc\r\n0\r\n\r\n", 3, 0, SP_HTTP_OK, "abc"},
        {"3\r\nabc\r\n1\r\n", 3, SP_HTTP_INVALID, SP_HTTP_EBODY_TOO_LARGE, "abc"},
        {"4\r\nab", 3, SP_HTTP_INVALID, SP_HTTP_EBODY_TOO_LARGE, ""},
        {"FfFf\r\nab", UINT64_MAX, SP_HTTP_INCOMPLETE, SP_HTTP_OK, "ab"},
        {"3fffffffffffffff\r\n", UINT64_MAX, SP_HTTP_INCOMPLETE, SP_HTTP_OK, ""},
        {"4000000000000000\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK_SIZE, ""},
        {"ffffffffffffffffffff\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK_SIZE, ""},
        {"g\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"-1\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0x5\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"5 \r\nhello\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"5\nhello\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"5\r\nhelloX\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, "hello"},
        {"5\r\nhello\n0\r\n\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, "hello"},
        {"5\r\nhelloX\n0\r\n\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, "hello"},
        {"5\r\nhello\r\r", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, "hello"},
        {"5;a\x01\r\nhello\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"5;a\rb\r\nhello\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0\r\n: no name\r\n\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0\r\n folded\r\n\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0\r\nA: b\n\r\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0\r\nA: b\r\n\n", UINT64_MAX, SP_HTTP_INVALID, SP_HTTP_ECHUNK, ""},
        {"0\r\nA: b\r\n", UINT64_MAX, SP_HTTP_INCOMPLETE, SP_HTTP_OK, ""},
        {"2\r\nab\r\n", UINT64_MAX, SP_HTTP_INCOMPLETE, SP_HTTP_OK, "ab"},
    };
    struct chunk_result r;

    (void)state;
    for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
        decode_pieces(cc[i].body, strlen(cc[i].body), cc[i].max_body, NULL, &r);
        if (r.rc != cc[i].rc || r.err != cc[i].err)
            print_error("chunked case %zu: rc %zd, %s\n", i, r.rc, sp_http_error_str(r.err));
        assert_int_equal(r.rc, cc[i].rc);
        assert_int_equal(r.err, cc[i].err);
        assert_int_equal(r.data_len, strlen(cc[i].data));
        assert_memory_equal(r.data, cc[i].data, r.data_len);
    }
    assert_int_equal(sp_http_error_status(SP_HTTP_EBODY_TOO_LARGE), 413);
}

static void test_chunked_framing_limits(void **state)
{
    size_t cap = SP_HTTP_TRAILER_MAX + 64;
    char *body = malloc(cap);
    struct sp_http_chunked d;
    size_t n;

    (void)state;
    assert_non_null(body);
    /* An endless chunk extension fails instead of being skipped forever. */
    memcpy(body, "1;", 2);
    memset(body + 2, 'x', cap - 2);
    sp_http_chunked_init(&d, UINT64_MAX);
    n = SP_HTTP_CHUNK_LINE_MAX - 1;
    assert_int_equal(sp_http_chunked_decode(&d, body, &n), SP_HTTP_INCOMPLETE);
    memcpy(body, "1;", 2);
    memset(body + 2, 'x', cap - 2);
    sp_http_chunked_init(&d, UINT64_MAX);
    n = cap;
    assert_int_equal(sp_http_chunked_decode(&d, body, &n), SP_HTTP_INVALID);
    assert_int_equal(d.error, SP_HTTP_ECHUNK);

    /* So does an endless trailer section. */
    memcpy(body, "0\r\n", 3);
    for (size_t i = 3; i + 5 <= cap; i += 5)
        memcpy(body + i, "A:b\r\n", 5);
    sp_http_chunked_init(&d, UINT64_MAX);
    n = cap;
    assert_int_equal(sp_http_chunked_decode(&d, body, &n), SP_HTTP_INVALID);
    assert_int_equal(d.error, SP_HTTP_ETRAILER_TOO_LARGE);
    assert_int_equal(sp_http_error_status(d.error), 431);
    free(body);
}

/* After the end, all input is the next request's. */
static void test_chunked_after_done(void **state)
{
    struct sp_http_chunked d;
    char buf[] = "0\r\n\r\nabc";
    size_t n = 5;

    (void)state;
    sp_http_chunked_init(&d, UINT64_MAX);
    assert_int_equal(sp_http_chunked_decode(&d, buf, &n), 0);
    assert_int_equal(n, 0);
    n = 3;
    assert_int_equal(sp_http_chunked_decode(&d, buf + 5, &n), 3);
    assert_int_equal(n, 0);
    assert_memory_equal(buf + 5, "abc", 3);
}

/* ---- paths ---------------------------------------------------------------- */

static void test_path_clean(void **state)
{
    static const struct {
        const char *in;
        const char *out; /* NULL: error */
        int err;
    } pc[] = {
        {"/", "/", 0},
        {"", "/", 0},
        {"/index.html", "/index.html", 0},
        {"/a/b/c", "/a/b/c", 0},
        {"/a/b/", "/a/b/", 0},
        {"//a///b", "/a/b", 0},
        {"/a/./b/.", "/a/b/", 0},
        {"/a/../b", "/b", 0},
        {"/a/b/..", "/a/", 0},
        {"/a/b/../..", "/", 0},
        {"/a/b/../../", "/", 0},
        {"/..a/b..c/...", "/..a/b..c/...", 0},
        {"/.hidden", "/.hidden", 0},
        {"/%41%62c", "/Abc", 0},
        {"/a%20b", "/a b", 0},
        {"/a+b", "/a+b", 0},
        {"/a%2Fb", "/a/b", 0},
        {"/a%2f..%2fb", "/b", 0},
        {"/caf%C3%A9", "/caf\xc3\xa9", 0},
        {"/..", NULL, -EPERM},
        {"/../etc/passwd", NULL, -EPERM},
        {"/a/../../etc/passwd", NULL, -EPERM},
        {"/%2e%2e/x", NULL, -EPERM},
        {"/%2E%2E%2Fx", NULL, -EPERM},
        {"/a/%2e%2e/%2e%2e/x", NULL, -EPERM},
        {"/a%2F..%2F..%2Fx", NULL, -EPERM},
        {"/%00", NULL, -EINVAL},
        {"/a%00.html", NULL, -EINVAL},
        {"/%", NULL, -EINVAL},
        {"/%4", NULL, -EINVAL},
        {"/%zz", NULL, -EINVAL},
        {"/%4g", NULL, -EINVAL},
        {"a/b", NULL, -EINVAL},
        {"%2Fa", "/a", 0},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(pc) / sizeof(pc[0]); i++) {
        size_t len = strlen(pc[i].in);
        ssize_t n = sp_http_path_clean(pc[i].in, len, out, sizeof(out));

        if (pc[i].out == NULL) {
            if (n != pc[i].err)
                print_error("path %s: %zd\n", pc[i].in, n);
            assert_int_equal(n, pc[i].err);
        } else {
            if (n < 0 || !slice_is(out, (size_t)n, pc[i].out))
                print_error("path %s: %zd \"%.*s\"\n", pc[i].in, n, n > 0 ? (int)n : 0, out);
            assert_true(n > 0);
            assert_true(slice_is(out, (size_t)n, pc[i].out));
        }
    }
}

static void test_path_buffers(void **state)
{
    char buf[16] = "/a/%2e%2e/b%20c";
    char small[3];

    (void)state;
    /* In place. */
    assert_int_equal(sp_http_pct_decode(buf, 15, buf, 15), 9);
    assert_memory_equal(buf, "/a/../b c", 9);
    assert_int_equal(sp_http_path_normalize(buf, 9), 4);
    assert_memory_equal(buf, "/b c", 4);
    /* Too small an output. */
    assert_int_equal(sp_http_pct_decode("/abcd", 5, small, sizeof(small)), -ENOSPC);
    assert_int_equal(sp_http_pct_decode("/%41", 4, small, 2), 2);
    assert_int_equal(sp_http_path_clean("", 0, small, 0), -ENOSPC);
    assert_int_equal(sp_http_path_normalize(buf, 0), -EINVAL);
    /* A raw NUL is refused like "%00". */
    assert_int_equal(sp_http_pct_decode("/a\0b", 4, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sp_http_path_clean("/a\0b", 4, buf, sizeof(buf)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_valid_prefixes_incomplete),
        cmocka_unit_test(test_invalid_stays_invalid),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_case_insensitive_names),
        cmocka_unit_test(test_content_length_values),
        cmocka_unit_test(test_transfer_encoding_flags),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_error_status),
        cmocka_unit_test(test_chunked_simple),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_cases),
        cmocka_unit_test(test_chunked_framing_limits),
        cmocka_unit_test(test_chunked_after_done),
        cmocka_unit_test(test_path_clean),
        cmocka_unit_test(test_path_buffers),
        cmocka_unit_test(test_resume_table),
        cmocka_unit_test(test_resume_linear),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
