/*
 * Tests of shared/http/http_response.c: the response head parser a proxy uses
 * on its upstream side, and the framing rules of RFC 9112 6.3.
 *
 * Every parse runs on a heap copy of exactly the bytes given, so that a read
 * past the end shows up under ASan and valgrind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spindle/http_response.h"

#define MAX_HEADERS 16

static struct sp_http_header hdrs[MAX_HEADERS];

static ssize_t parse_n(const char *s, size_t len, enum sp_http_method m, size_t max_head,
                       struct sp_http_response *resp)
{
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, s, len);
    ssize_t rc = sp_http_parse_response(buf, len, max_head, m, resp, hdrs, MAX_HEADERS);
    /* The slices would dangle: keep only what the tests compare. */
    resp->reason = NULL;
    for (size_t i = 0; i < resp->num_headers && rc > 0; i++)
        hdrs[i].name = hdrs[i].value = NULL;
    free(buf);
    return rc;
}

struct resp_case {
    const char *name;
    const char *raw;
    enum sp_http_method method; /* of the request answered; 0 for GET */
    ssize_t rc;                 /* > 0: strlen(raw) minus trailing bytes, given as body */
    enum sp_http_error error;
    unsigned status;
    enum sp_http_framing framing;
    uint64_t content_length;
    bool keep_alive;
};

#define OK(n, raw, st, fr, cl, ka)                                                                 \
    {                                                                                              \
        n, raw, SP_HTTP_GET, 1, SP_HTTP_OK, st, fr, cl, ka                                         \
    }
#define OKM(n, raw, m, st, fr, cl, ka)                                                             \
    {                                                                                              \
        n, raw, m, 1, SP_HTTP_OK, st, fr, cl, ka                                                   \
    }
#define BAD(n, raw, err)                                                                           \
    {                                                                                              \
        n, raw, SP_HTTP_GET, SP_HTTP_INVALID, err, 0, 0, 0, false                                  \
    }

static const struct resp_case cases[] = {
    OK("length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, SP_HTTP_BODY_LENGTH, 5, true),
    OK("length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, SP_HTTP_BODY_LENGTH, 0,
       true),
    OK("bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\n\n", 200, SP_HTTP_BODY_LENGTH, 1, true),
    OK("same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
       200, SP_HTTP_BODY_LENGTH, 7, true),
    OK("no reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 404, SP_HTTP_BODY_LENGTH, 0, true),
    OK("empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 404, SP_HTTP_BODY_LENGTH, 0,
       true),
    OK("reason with spaces and obs-text", "HTTP/1.1 200 Very \xc3\xa9 Fine\r\n\r\n", 200,
       SP_HTTP_BODY_CLOSE, 0, false),
    OK("empty lines first", "\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200,
       SP_HTTP_BODY_LENGTH, 2, true),
    OK("newer minor", "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\n", 200, SP_HTTP_BODY_LENGTH, 2,
       true),
    OK("status 999", "HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\n", 999, SP_HTTP_BODY_LENGTH, 2,
       true),
    /* RFC 9112 6.3 rule 1: no body whatever the headers say. */
    OK("204", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, SP_HTTP_BODY_NONE, 10,
       true),
    OK("304", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 304,
       SP_HTTP_BODY_NONE, 0, true),
    OK("100", "HTTP/1.1 100 Continue\r\n\r\n", 100, SP_HTTP_BODY_NONE, 0, true),
    OK("103", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", 103,
       SP_HTTP_BODY_NONE, 0, true),
    OK("304 ignores a bad length", "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", 304,
       SP_HTTP_BODY_NONE, 0, true),
    OKM("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", SP_HTTP_HEAD, 200,
        SP_HTTP_BODY_NONE, 100, true),
    OKM("HEAD chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", SP_HTTP_HEAD, 200,
        SP_HTTP_BODY_NONE, 0, true),
    /* Rule 2: tunnels. */
    OKM("CONNECT 200", "HTTP/1.1 200 Connection Established\r\nContent-Length: 9\r\n\r\n",
        SP_HTTP_CONNECT, 200, SP_HTTP_BODY_TUNNEL, 9, false),
    OKM("CONNECT 407", "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n", SP_HTTP_CONNECT, 407,
        SP_HTTP_BODY_LENGTH, 0, true),
    OK("101",
       "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 101,
       SP_HTTP_BODY_TUNNEL, 0, false),
    /* Rules 3 and 4: Transfer-Encoding. */
    OK("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
       SP_HTTP_BODY_CHUNKED, 0, true),
    OK("gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", 200,
       SP_HTTP_BODY_CHUNKED, 0, true),
    OK("codings over two lines",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
       SP_HTTP_BODY_CHUNKED, 0, true),
    OK("chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 200,
       SP_HTTP_BODY_CLOSE, 0, false),
    OK("gzip only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 200, SP_HTTP_BODY_CLOSE,
       0, false),
    OK("chunked beats length",
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
       SP_HTTP_BODY_CHUNKED, 3, false),
    OK("chunked beats a bad length",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: -1\r\n\r\n", 200,
       SP_HTTP_BODY_CHUNKED, 0, false),
    OK("chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
       SP_HTTP_BODY_CLOSE, 0, false),
    BAD("chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        SP_HTTP_ETRANSFER_CODING),
    BAD("empty coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
        SP_HTTP_ETRANSFER_CODING),
    /* Rules 5 and 6: Content-Length. */
    BAD("two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        SP_HTTP_ECL_CONFLICT),
    BAD("length list", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("signed length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", SP_HTTP_ECONTENT_LENGTH),
    BAD("huge length", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
        SP_HTTP_ECONTENT_LENGTH),
    OK("largest length", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n", 200,
       SP_HTTP_BODY_LENGTH, INT64_MAX, true),
    /* Rule 8: until close. */
    OK("no framing", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", 200, SP_HTTP_BODY_CLOSE, 0, false),
    /* Connection. */
    OK("close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200,
       SP_HTTP_BODY_LENGTH, 0, false),
    OK("1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, SP_HTTP_BODY_LENGTH, 0, false),
    OK("1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
       200, SP_HTTP_BODY_LENGTH, 0, true),
    /* Status lines. */
    BAD("HTTP/2", "HTTP/2 200 OK\r\n\r\n", SP_HTTP_EVERSION_UNSUPP),
    BAD("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", SP_HTTP_EVERSION_UNSUPP),
    BAD("lowercase", "http/1.1 200 OK\r\n\r\n", SP_HTTP_EVERSION),
    BAD("no minor", "HTTP/1 200 OK\r\n\r\n", SP_HTTP_EVERSION),
    BAD("two spaces", "HTTP/1.1  200 OK\r\n\r\n", SP_HTTP_ESTATUS),
    BAD("two digits", "HTTP/1.1 20 OK\r\n\r\n", SP_HTTP_ESTATUS),
    BAD("four digits", "HTTP/1.1 2000 OK\r\n\r\n", SP_HTTP_ESTATUS),
    BAD("status 099", "HTTP/1.1 099 Low\r\n\r\n", SP_HTTP_ESTATUS),
    BAD("control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", SP_HTTP_ESTATUS),
    BAD("bare CR", "HTTP/1.1 200 OK\rX: y\r\n\r\n", SP_HTTP_ELINE),
    BAD("ICY", "ICY 200 OK\r\n\r\n", SP_HTTP_EVERSION),
    /* Header lines. */
    BAD("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", SP_HTTP_EOBS_FOLD),
    BAD("space before colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("no colon", "HTTP/1.1 200 OK\r\nXa\r\n\r\n", SP_HTTP_EHEADER_NAME),
    BAD("NUL in value", "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", SP_HTTP_EHEADER_VALUE),
};

static size_t raw_len(const struct resp_case *c)
{
    /* Cases hold one NUL at most, inside a value: count to the blank line. */
    size_t n = strlen(c->raw);
    if (strcmp(c->name, "NUL in value") == 0)
        n += 1 + strlen(c->raw + n + 1);
    return n;
}

static void check_case(const struct resp_case *c)
{
    struct sp_http_response resp;
    size_t len = raw_len(c);
    ssize_t rc = parse_n(c->raw, len, c->method, 0, &resp);

    if (c->rc > 0) {
        if (rc != (ssize_t)len)
            fail_msg("%s: rc %zd error %s", c->name, rc, sp_http_error_str(resp.error));
        assert_int_equal(resp.head_len, len);
        assert_int_equal(resp.status, c->status);
        assert_int_equal(resp.framing, c->framing);
        assert_int_equal(resp.content_length, c->content_length);
        if (sp_http_response_keep_alive(&resp) != c->keep_alive)
            fail_msg("%s: keep-alive %d", c->name, !c->keep_alive);
    } else {
        if (rc != c->rc || resp.error != c->error)
            fail_msg("%s: rc %zd error %s, not %s", c->name, rc, sp_http_error_str(resp.error),
                     sp_http_error_str(c->error));
    }
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
}

/* Split at every byte: every proper prefix of a valid head is incomplete,
 * and an invalid one is incomplete up to some point and invalid from there
 * on, with the same error. */
static void test_every_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct resp_case *c = &cases[i];
        size_t len = raw_len(c);
        bool invalid = false;
        for (size_t k = 0; k < len; k++) {
            struct sp_http_response resp;
            ssize_t rc = parse_n(c->raw, k, c->method, 0, &resp);
            if (c->rc > 0 && rc != SP_HTTP_INCOMPLETE)
                fail_msg("%s: prefix %zu gives %zd", c->name, k, rc);
            if (c->rc < 0) {
                if (invalid && rc != SP_HTTP_INVALID)
                    fail_msg("%s: prefix %zu valid again", c->name, k);
                if (rc == SP_HTTP_INVALID) {
                    invalid = true;
                    if (resp.error != c->error)
                        fail_msg("%s: prefix %zu: %s", c->name, k, sp_http_error_str(resp.error));
                } else if (rc != SP_HTTP_INCOMPLETE) {
                    fail_msg("%s: prefix %zu gives %zd", c->name, k, rc);
                }
            }
        }
    }
}

/* Bytes after the head (a body, the next response) are never read. */
static void test_body_follows(void **state)
{
    (void)state;
    static const char raw[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    char buf[sizeof(raw)];
    struct sp_http_response resp;
    memcpy(buf, raw, sizeof(raw));
    size_t len = sizeof(raw) - 1;

    ssize_t rc = sp_http_parse_response(buf, len, 0, SP_HTTP_GET, &resp, hdrs, MAX_HEADERS);
    assert_int_equal(rc, 47);
    assert_int_equal(resp.framing, SP_HTTP_BODY_CHUNKED);
    assert_int_equal(resp.num_headers, 1);
    assert_int_equal(resp.reason_len, 2);
    assert_memory_equal(resp.reason, "OK", 2);
    assert_memory_equal(resp.headers[0].value, "chunked", 7);

    struct sp_http_chunked dec;
    sp_http_chunked_init(&dec, UINT64_MAX);
    size_t body = len - (size_t)rc;
    ssize_t left = sp_http_chunked_decode(&dec, buf + rc, &body);
    assert_int_equal(body, 5);
    assert_memory_equal(buf + rc, "hello", 5);
    assert_int_equal(left, 27);

    char *next = buf + rc + body;
    rc = sp_http_parse_response(next, (size_t)left, 0, SP_HTTP_GET, &resp, hdrs, MAX_HEADERS);
    assert_int_equal(rc, left);
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.framing, SP_HTTP_BODY_NONE);
}

/* A 1xx is interim: the final response follows it. */
static void test_interim_then_final(void **state)
{
    (void)state;
    static const char raw[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
                              "2\r\n\r\nok";
    struct sp_http_response resp;
    ssize_t rc =
        sp_http_parse_response(raw, sizeof(raw) - 1, 0, SP_HTTP_POST, &resp, hdrs, MAX_HEADERS);
    assert_int_equal(rc, 25);
    assert_int_equal(resp.status, 100);
    ssize_t rc2 = sp_http_parse_response(raw + rc, sizeof(raw) - 1 - (size_t)rc, 0, SP_HTTP_POST,
                                         &resp, hdrs, MAX_HEADERS);
    assert_int_equal(rc2, (ssize_t)(sizeof(raw) - 1 - (size_t)rc - 2));
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.framing, SP_HTTP_BODY_LENGTH);
}

static void test_limits(void **state)
{
    (void)state;
    static const char raw[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    size_t len = sizeof(raw) - 1;
    struct sp_http_response resp;

    /* Exactly max_head fits; one byte less does not, and says so at once. */
    assert_int_equal(parse_n(raw, len, SP_HTTP_GET, len, &resp), len);
    assert_int_equal(parse_n(raw, len, SP_HTTP_GET, len - 1, &resp), SP_HTTP_INVALID);
    assert_int_equal(resp.error, SP_HTTP_EHEAD_TOO_LARGE);
    assert_int_equal(parse_n(raw, len - 1, SP_HTTP_GET, len - 1, &resp), SP_HTTP_INVALID);
    assert_int_equal(parse_n(raw, len - 2, SP_HTTP_GET, len - 1, &resp), SP_HTTP_INCOMPLETE);

    /* More header lines than the array holds. */
    char many[1024];
    size_t n = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= MAX_HEADERS; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: y\r\n", i);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    assert_int_equal(parse_n(many, n, SP_HTTP_GET, 0, &resp), SP_HTTP_INVALID);
    assert_int_equal(resp.error, SP_HTTP_ETOO_MANY_HEADERS);
    assert_int_equal(sp_http_error_status(SP_HTTP_ESTATUS), 502);
}

/* Random bytes, and valid heads with random bytes changed: never a crash or
 * a read past the end (ASan, valgrind); a success always describes a head
 * inside the input with a status from 100, and parsing is deterministic. */
static void test_garbage(void **state)
{
    (void)state;
    static const char alphabet[] = "HTP/1.0 29\r\n:ckdlenghtsra-,\t\x80\x01";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char buf[256];

    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        if (iter % 2) {
            const struct resp_case *c = &cases[iter / 2 % (sizeof(cases) / sizeof(cases[0]))];
            len = raw_len(c);
            memcpy(buf, c->raw, len);
            for (int k = 0; k < 3 && len; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[x % len] = alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
            }
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            len = x % sizeof(buf);
            for (size_t k = 0; k < len; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[k] = k < 9 && (x & 1) ? "HTTP/1.1 "[k] : (char)(x >> 24);
            }
        }
        struct sp_http_response a, b;
        ssize_t rc = parse_n(buf, len, SP_HTTP_GET, 128, &a);
        assert_true(rc == SP_HTTP_INVALID || rc == SP_HTTP_INCOMPLETE ||
                    (rc > 0 && (size_t)rc <= len && (size_t)rc <= 128));
        if (rc > 0) {
            assert_true(a.status >= 100 && a.status <= 999);
            assert_true(a.minor_version == 0 || a.minor_version == 1);
        }
        assert_int_equal(parse_n(buf, len, SP_HTTP_GET, 128, &b), rc);
        assert_int_equal(a.error, b.error);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_body_follows), cmocka_unit_test(test_interim_then_final),
        cmocka_unit_test(test_limits),       cmocka_unit_test(test_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
