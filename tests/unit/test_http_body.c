/*
 * The HTTP request body reader (worker/http/http_body.c) against a real socket:
 * Content-Length and chunked bodies streamed in small reads or read whole,
 * split at every byte between what came with the head and what follows on
 * the socket, 100 Continue, and the failures a handler must answer: too
 * large (413), bad framing (400), too slow (408), client gone.  After the
 * body, the next pipelined request must be where the body began.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime_test.h"
#include "http.h"

/* The output's cached-file references: none in these tests. */
void http_file_release(struct http_file *f)
{
    (void)f;
}

static const char next_req[] = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";

struct bodycase {
    int sv[2];
    struct sp_http_conf conf;
    struct http_svc hs;
    struct http_conn c;
    struct sp_http_request req;
    struct sp_http_header hdrs[16];
    size_t at;
    char in[HTTP_IN_SIZE], out[1024];
    /* the client */
    const char *rest; /* written by the client after the head, a byte at a time when bytewise */
    size_t rest_len;
    bool bytewise, close_after, wait_continue;
    char continue_got[64];
    /* results */
    size_t chunk; /* read size for http_body_read; 0: http_body_read_all */
    int rc;
    unsigned status;
    char got[400000];
    size_t ngot;
    char tail[256];
    size_t ntail;
};

/* Sets up the server side: head (and the first body bytes) in the input. */
static struct bodycase *bodycase_new(const char *head_and_start, size_t len)
{
    struct bodycase *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    unix_pair(b->sv);
    b->conf.max_body_size = 1 << 20;
    b->conf.body_timeout_ms = 5000;
    b->hs.conf = &b->conf;
    b->c.hs = &b->hs;
    b->c.in = b->in;
    b->c.cap = sizeof(b->in);
    sp_stream_socket(&b->c.sock, b->sv[0]);
    b->c.stream = &b->c.sock;
    http_out_init(&b->c.out, b->c.stream, b->out, sizeof(b->out), 1000);
    assert_true(len <= sizeof(b->in));
    memcpy(b->in, head_and_start, len);
    b->c.len = len;
    struct sp_http_limits lim = {.max_head = 8192, .max_target = 4096};
    ssize_t r = sp_http_parse_request(b->in, len, &lim, &b->req, b->hdrs, 16);
    assert_true(r > 0);
    b->at = (size_t)r;
    return b;
}

static void bodycase_free(struct bodycase *b)
{
    close(b->sv[0]);
    close(b->sv[1]);
    free(b);
}

static void body_server(void *arg)
{
    struct bodycase *b = arg;
    struct http_conn *c = &b->c;
    http_body_begin(c, &b->req, b->at);
    if (b->chunk == 0) {
        char *p;
        size_t n;
        b->rc = http_body_read_all(c, &p, &n);
        if (b->rc == 0) {
            CHECK(n <= sizeof(b->got));
            CHECK((n == 0) == (p == NULL));
            if (n)
                memcpy(b->got, p, n);
            b->ngot = n;
            free(p);
        }
    } else {
        ssize_t n;
        while ((n = http_body_read(c, b->got + b->ngot, b->chunk)) > 0) {
            CHECK((size_t)n <= b->chunk);
            b->ngot += (size_t)n;
        }
        b->rc = (int)n;
        /* The end, or the error, sticks. */
        CHECK(http_body_read(c, b->got, 1) == n);
    }
    b->status = c->body.status;
    if (b->rc == 0) {
        b->ntail = c->len - b->at;
        CHECK(b->ntail <= sizeof(b->tail));
        memcpy(b->tail, c->in + b->at, b->ntail);
    }
    /* Tells the client the server is done (EOF after what it wrote). */
    shutdown(b->sv[0], SHUT_WR);
}

static void body_client(void *arg)
{
    struct bodycase *b = arg;
    int fd = b->sv[1];
    if (b->wait_continue) {
        static const char want[] = "HTTP/1.1 100 Continue\r\n\r\n";
        CHECK(read_full(fd, b->continue_got, sizeof(want) - 1, 5000) == sizeof(want) - 1);
    }
    if (b->bytewise) {
        for (size_t i = 0; i < b->rest_len; i++) {
            CHECK(sp_write(fd, b->rest + i, 1, 5000) == 1);
            sp_yield();
        }
    } else if (b->rest_len) {
        CHECK(sp_write(fd, b->rest, b->rest_len, 5000) == (ssize_t)b->rest_len);
    }
    if (b->close_after) {
        shutdown(fd, SHUT_WR);
    }
    /* Waits for the server to finish (anything it wrote is checked by the case). */
    char buf[64];
    while (sp_read(fd, buf, sizeof(buf), 10000) > 0)
        ;
}

static void run_case(struct bodycase *b)
{
    run_fibers(1, body_server, body_client, b);
}

static char *concat(const char *a, size_t an, const char *b, size_t bn, size_t *n)
{
    char *p = malloc(an + bn + 1);
    assert_non_null(p);
    memcpy(p, a, an);
    memcpy(p + an, b, bn);
    *n = an + bn;
    return p;
}

/* ---- Content-Length ---------------------------------------------------------------- */

static void test_content_length_streamed(void **state)
{
    (void)state;
    static char body[50000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", sizeof(body));
    /* 100 body bytes came with the head; the rest and the next request follow. */
    size_t n0;
    char *start = concat(head, (size_t)hl, body, 100, &n0);
    struct bodycase *b = bodycase_new(start, n0);
    size_t nrest;
    char *rest = concat(body + 100, sizeof(body) - 100, next_req, sizeof(next_req) - 1, &nrest);
    b->rest = rest;
    b->rest_len = nrest;
    b->chunk = 7;
    run_case(b);
    assert_int_equal(b->rc, 0);
    assert_int_equal(b->ngot, sizeof(body));
    assert_memory_equal(b->got, body, sizeof(body));
    assert_int_equal(b->ntail, sizeof(next_req) - 1);
    assert_memory_equal(b->tail, next_req, sizeof(next_req) - 1);
    assert_int_equal(b->c.body.bytes_in, nrest);
    bodycase_free(b);
    free(rest);
    free(start);
}

static void test_content_length_all_in_buffer(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                              "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    struct bodycase *b = bodycase_new(req, sizeof(req) - 1);
    run_case(b); /* read_all, no socket read */
    assert_int_equal(b->rc, 0);
    assert_int_equal(b->ngot, 5);
    assert_memory_equal(b->got, "hello", 5);
    assert_int_equal(b->ntail, sizeof(next_req) - 1);
    assert_memory_equal(b->tail, next_req, sizeof(next_req) - 1);
    assert_int_equal(b->c.body.bytes_in, 0);
    bodycase_free(b);
}

static void test_no_body(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /next "
                              "HTTP/1.1\r\nHost: x\r\n\r\n";
    struct bodycase *b = bodycase_new(req, sizeof(req) - 1);
    b->chunk = 16;
    run_case(b);
    assert_int_equal(b->rc, 0);
    assert_int_equal(b->ngot, 0);
    assert_int_equal(b->ntail, sizeof(next_req) - 1);
    bodycase_free(b);
}

/* ---- chunked --------------------------------------------------------------------- */

static const char chunked_head[] =
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
static const char chunked_body[] = "5\r\nhello\r\n1;ext=1\r\n \r\nc\r\nchunked body\r\n"
                                   "0\r\nX-Trailer: t\r\n\r\n";
static const char chunked_data[] = "hello chunked body";

/* Every split of the body and the next request between the head's read and
 * the socket, the rest written a byte at a time; streamed in 3-byte reads
 * and read whole. */
static void test_chunked_split_at_every_byte(void **state)
{
    (void)state;
    size_t blen = sizeof(chunked_body) - 1;
    size_t nall;
    char *all = concat(chunked_body, blen, next_req, sizeof(next_req) - 1, &nall);
    for (size_t chunk = 0; chunk <= 3; chunk += 3) {
        for (size_t k = 0; k <= nall; k++) {
            size_t n0;
            char *start = concat(chunked_head, sizeof(chunked_head) - 1, all, k, &n0);
            struct bodycase *b = bodycase_new(start, n0);
            b->rest = all + k;
            b->rest_len = nall - k;
            b->bytewise = true;
            b->chunk = chunk;
            run_case(b);
            if (b->rc != 0 || b->ngot != sizeof(chunked_data) - 1 ||
                memcmp(b->got, chunked_data, b->ngot) != 0)
                fail_msg("split at %zu, reads of %zu: rc %d, got %zu bytes", k, chunk, b->rc,
                         b->ngot);
            /* The next request: whole, or at least the part of it that came
             * with the head. */
            size_t want = k > blen ? k - blen : 0;
            if (b->ntail < want || b->ntail > sizeof(next_req) - 1 ||
                memcmp(b->tail, next_req, b->ntail) != 0)
                fail_msg("split at %zu: tail of %zu bytes is not the next request", k, b->ntail);
            bodycase_free(b);
            free(start);
        }
    }
    free(all);
}

static void test_chunked_bad_framing(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhelloXX";
    struct bodycase *b = bodycase_new(req, sizeof(req) - 1);
    run_case(b);
    assert_int_equal(b->rc, -EPROTO);
    assert_int_equal(b->status, 400);
    bodycase_free(b);
}

/* ---- limits and failures ----------------------------------------------------------- */

static void test_too_large(void **state)
{
    (void)state;
    static const char cl[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
    struct bodycase *b = bodycase_new(cl, sizeof(cl) - 1);
    b->conf.max_body_size = 100;
    b->chunk = 10;
    run_case(b);
    assert_int_equal(b->rc, -EMSGSIZE);
    assert_int_equal(b->status, 413);
    assert_int_equal(b->c.body.bytes_in, 0); /* refused before reading */
    bodycase_free(b);

    /* Chunked: refused once the chunk sizes add up beyond the limit. */
    struct bodycase *c = bodycase_new(chunked_head, sizeof(chunked_head) - 1);
    c->conf.max_body_size = 100;
    static const char big[] = "40\r\n" /* 64 */
                              "0123456789012345678901234567890123456789012345678901234567890123"
                              "\r\n40\r\n";
    c->rest = big;
    c->rest_len = sizeof(big) - 1;
    run_case(c);
    assert_int_equal(c->rc, -EMSGSIZE);
    assert_int_equal(c->status, 413);
    bodycase_free(c);

    /* Exactly the limit is fine. */
    static const char exact[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    struct bodycase *d = bodycase_new(exact, sizeof(exact) - 1);
    d->conf.max_body_size = 100;
    static char hundred[100];
    memset(hundred, 'h', sizeof(hundred));
    d->rest = hundred;
    d->rest_len = sizeof(hundred);
    run_case(d);
    assert_int_equal(d->rc, 0);
    assert_int_equal(d->ngot, 100);
    bodycase_free(d);
}

static void test_client_gone(void **state)
{
    (void)state;
    static const char cl[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc";
    for (size_t chunk = 0; chunk <= 8; chunk += 8) {
        struct bodycase *b = bodycase_new(cl, sizeof(cl) - 1);
        b->rest = "defghij";
        b->rest_len = 7;
        b->close_after = true;
        b->chunk = chunk;
        run_case(b);
        assert_int_equal(b->rc, -ECONNABORTED);
        assert_int_equal(b->status, 0); /* nothing to answer: drop */
        if (chunk)
            assert_int_equal(b->ngot, 10); /* what came was delivered */
        bodycase_free(b);
    }
    /* Chunked, cut inside a chunk. */
    struct bodycase *c = bodycase_new(chunked_head, sizeof(chunked_head) - 1);
    c->rest = "10\r\nabc";
    c->rest_len = 7;
    c->close_after = true;
    run_case(c);
    assert_int_equal(c->rc, -ECONNABORTED);
    bodycase_free(c);
}

static void test_timeout(void **state)
{
    (void)state;
    static const char cl[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
    struct bodycase *b = bodycase_new(cl, sizeof(cl) - 1);
    b->conf.body_timeout_ms = 50;
    b->chunk = 4;
    int64_t t0 = now_ms();
    run_case(b); /* the client sends nothing more and waits */
    assert_int_equal(b->rc, -ETIMEDOUT);
    assert_int_equal(b->status, 408);
    assert_int_equal(b->ngot, 3);
    assert_true(now_ms() - t0 >= 50);
    bodycase_free(b);
}

/* ---- 100 Continue ------------------------------------------------------------------ */

static void test_expect_continue(void **state)
{
    (void)state;
    static const char cl[] =
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    struct bodycase *b = bodycase_new(cl, sizeof(cl) - 1);
    b->wait_continue = true; /* the client sends the body only after 100 Continue */
    b->rest = "hello";
    b->rest_len = 5;
    run_case(b);
    assert_int_equal(b->rc, 0);
    assert_memory_equal(b->continue_got, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    assert_int_equal(b->ngot, 5);
    assert_memory_equal(b->got, "hello", 5);
    bodycase_free(b);
}

/* The body came with the head: no 100 Continue (the server's first bytes
 * would be it; here the server writes nothing at all). */
struct no_continue {
    struct bodycase *b;
    char first[8];
    ssize_t n;
};

static void nc_server(void *arg)
{
    struct no_continue *nc = arg;
    body_server(nc->b); /* ends with shutdown(SHUT_WR) */
}

static void nc_client(void *arg)
{
    struct no_continue *nc = arg;
    nc->n = sp_read(nc->b->sv[1], nc->first, sizeof(nc->first), 5000);
}

static void test_expect_continue_body_already_here(void **state)
{
    (void)state;
    static const char cl[] =
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
    struct no_continue nc = {.b = bodycase_new(cl, sizeof(cl) - 1), .n = 1};
    run_fibers(1, nc_server, nc_client, &nc);
    assert_int_equal(nc.b->rc, 0);
    assert_int_equal(nc.b->ngot, 5);
    assert_int_equal(nc.n, 0); /* end of stream, no 100 Continue */
    bodycase_free(nc.b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        RT_TEST(test_content_length_streamed),
        RT_TEST(test_content_length_all_in_buffer),
        RT_TEST(test_no_body),
        RT_TEST(test_chunked_split_at_every_byte),
        RT_TEST(test_chunked_bad_framing),
        RT_TEST(test_too_large),
        RT_TEST(test_client_gone),
        RT_TEST(test_timeout),
        RT_TEST(test_expect_continue),
        RT_TEST(test_expect_continue_body_already_here),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
