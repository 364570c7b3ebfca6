/*
 * libFuzzer target for sp_http_chunked_decode().
 *
 * The first input byte picks how the rest is cut into pieces (1 to 16 bytes,
 * or 0: one piece); each piece is decoded from its own heap buffer so that
 * ASan sees any access outside it.  The decoder must give the same data, the
 * same end and the same trailing bytes however the body is cut, and a limit
 * one byte below what was decoded must fail with EBODY_TOO_LARGE.
 */
#include "spindle/http_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

struct result {
    ssize_t rc;
    enum sp_http_error err;
    char *out; /* decoded data, then the trailing bytes */
    size_t data_len, rest_len;
    uint64_t total;
};

static void decode(const char *body, size_t len, size_t step, uint64_t max_body, struct result *r)
{
    struct sp_http_chunked d;
    size_t off = 0;

    r->out = malloc(len + 1);
    CHECK(r->out != NULL);
    r->data_len = r->rest_len = 0;
    r->rc = SP_HTTP_INCOMPLETE;
    sp_http_chunked_init(&d, max_body);
    while (off < len) {
        size_t piece = step == 0 || len - off < step ? len - off : step, n = piece;
        char *buf = malloc(piece);

        CHECK(buf != NULL);
        memcpy(buf, body + off, piece);
        r->rc = sp_http_chunked_decode(&d, buf, &n);
        CHECK(r->rc >= SP_HTTP_INCOMPLETE);
        CHECK(n <= piece);
        memcpy(r->out + r->data_len, buf, n);
        r->data_len += n;
        off += piece;
        if (r->rc >= 0) {
            CHECK(sp_http_chunked_done(&d));
            CHECK(n + (size_t)r->rc <= piece);
            /* The trailing bytes of this piece and everything after it. */
            memcpy(r->out + r->data_len, buf + n, (size_t)r->rc);
            memcpy(r->out + r->data_len + r->rc, body + off, len - off);
            r->rest_len = (size_t)r->rc + (len - off);
        }
        free(buf);
        if (r->rc != SP_HTTP_INCOMPLETE)
            break;
    }
    if (r->rc == SP_HTTP_INVALID)
        CHECK(d.error != SP_HTTP_OK);
    else
        CHECK(d.error == SP_HTTP_OK);
    r->err = d.error;
    r->total = d.total;
    CHECK(d.total == r->data_len && d.total <= max_body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct result whole, cut, limited;
    const char *body;
    size_t step;

    if (size == 0)
        return 0;
    step = data[0] % 17;
    body = (const char *)data + 1;
    size--;

    decode(body, size, 0, UINT64_MAX, &whole);
    decode(body, size, step, UINT64_MAX, &cut);
    CHECK(whole.rc == cut.rc || (whole.rc >= 0 && cut.rc >= 0));
    CHECK(whole.err == cut.err);
    CHECK(whole.data_len == cut.data_len);
    CHECK(memcmp(whole.out, cut.out, whole.data_len) == 0);
    CHECK(whole.rest_len == cut.rest_len);
    CHECK(memcmp(whole.out + whole.data_len, cut.out + cut.data_len, whole.rest_len) == 0);
    if (whole.rc >= 0)
        CHECK(whole.data_len + whole.rest_len < size);

    if (whole.total > 0) {
        decode(body, size, step, whole.total - 1, &limited);
        CHECK(limited.rc == SP_HTTP_INVALID && limited.err == SP_HTTP_EBODY_TOO_LARGE);
        CHECK(limited.data_len < whole.data_len);
        CHECK(memcmp(limited.out, whole.out, limited.data_len) == 0);
        free(limited.out);
    }
    free(whole.out);
    free(cut.out);
    return 0;
}
