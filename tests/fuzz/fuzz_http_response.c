/*
 * libFuzzer target for sp_http_parse_response().
 *
 * The first byte picks the request method answered ('H' HEAD, 'C' CONNECT,
 * anything else GET) and the rest is the response.  Besides memory safety it checks the parser's
 * contract: results lie inside the input, a complete head is found again in
 * any longer input and its prefixes are incomplete, invalid input stays
 * invalid when more bytes arrive, a head fails just below its size as too
 * large, and the framing follows RFC 9112 6.3.
 */
#include "spindle/http_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MAX_HEADERS 32
#define MAX_HEAD    4096

static ssize_t parse(const char *buf, size_t len, size_t max_head, enum sp_http_method m,
                     struct sp_http_response *resp, struct sp_http_header *h)
{
    /* An exact-size copy, so that a read past the end shows under ASan. */
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    ssize_t rc = sp_http_parse_response(copy, len, max_head, m, resp, h, MAX_HEADERS);
    if (rc > 0) {
        CHECK(resp->reason >= copy && resp->reason + resp->reason_len <= copy + rc);
        for (size_t i = 0; i < resp->num_headers; i++) {
            CHECK(h[i].name >= copy && h[i].name + h[i].name_len <= copy + rc);
            CHECK(h[i].value >= copy && h[i].value + h[i].value_len <= copy + rc);
            CHECK(h[i].name_len > 0);
        }
    }
    free(copy);
    return rc;
}

static void check_framing(const struct sp_http_response *r, enum sp_http_method m)
{
    CHECK(r->error == SP_HTTP_OK);
    CHECK(r->status >= 100 && r->status <= 999);
    CHECK(r->minor_version == 0 || r->minor_version == 1);
    bool no_body = m == SP_HTTP_HEAD || (r->status < 200 && r->status != 101) || r->status == 204 ||
                   r->status == 304;
    if (no_body)
        CHECK(r->framing == SP_HTTP_BODY_NONE);
    else if (r->status == 101 || (m == SP_HTTP_CONNECT && r->status / 100 == 2))
        CHECK(r->framing == SP_HTTP_BODY_TUNNEL);
    else if (r->flags & SP_HTTP_F_TE_PRESENT)
        CHECK(r->framing == (r->minor_version == 1 && (r->flags & SP_HTTP_F_TE_CHUNKED)
                                 ? SP_HTTP_BODY_CHUNKED
                                 : SP_HTTP_BODY_CLOSE));
    else if (r->flags & SP_HTTP_F_CL_PRESENT)
        CHECK(r->framing == SP_HTTP_BODY_LENGTH && r->content_length <= INT64_MAX);
    else
        CHECK(r->framing == SP_HTTP_BODY_CLOSE);
    if (r->framing == SP_HTTP_BODY_LENGTH)
        CHECK(!(r->flags & (SP_HTTP_F_CL_INVALID | SP_HTTP_F_CL_CONFLICT)));
    if (r->flags & SP_HTTP_F_CONN_CLOSE || r->framing == SP_HTTP_BODY_CLOSE ||
        r->framing == SP_HTTP_BODY_TUNNEL)
        CHECK(!sp_http_response_keep_alive(r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_http_header h[MAX_HEADERS];
    struct sp_http_response r, r2;

    if (size == 0 || size > MAX_HEAD)
        return 0;
    enum sp_http_method m = data[0] == 'H'   ? SP_HTTP_HEAD
                            : data[0] == 'C' ? SP_HTTP_CONNECT
                                             : SP_HTTP_GET;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    ssize_t rc = parse(buf, len, MAX_HEAD, m, &r, h);
    CHECK(rc == SP_HTTP_INVALID || rc == SP_HTTP_INCOMPLETE || (rc > 0 && (size_t)rc <= len));
    if (rc > 0) {
        CHECK(r.head_len == (size_t)rc);
        check_framing(&r, m);
        /* Found again, alike, with only the head; every prefix is incomplete. */
        CHECK(parse(buf, (size_t)rc, MAX_HEAD, m, &r2, h) == rc);
        CHECK(r2.status == r.status && r2.framing == r.framing && r2.flags == r.flags);
        for (size_t k = 0; k < (size_t)rc; k += 1 + k / 16)
            CHECK(parse(buf, k, MAX_HEAD, m, &r2, h) == SP_HTTP_INCOMPLETE);
        /* One byte less room than the head needs is too large. */
        CHECK(parse(buf, (size_t)rc, (size_t)rc - 1, m, &r2, h) == SP_HTTP_INVALID &&
              r2.error == SP_HTTP_EHEAD_TOO_LARGE);
    } else if (rc == SP_HTTP_INVALID) {
        /* Invalid stays invalid, with the same error, as bytes arrive. */
        char *more = malloc(len + 4);
        CHECK(more != NULL);
        memcpy(more, buf, len);
        memcpy(more + len, "\r\n\r\n", 4);
        CHECK(parse(more, len + 4, MAX_HEAD, m, &r2, h) == SP_HTTP_INVALID);
        CHECK(r2.error == r.error || r.error == SP_HTTP_EHEAD_TOO_LARGE ||
              r2.error == SP_HTTP_EHEAD_TOO_LARGE);
        free(more);
    }
    return 0;
}
