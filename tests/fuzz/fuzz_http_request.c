/*
 * libFuzzer target for sp_http_parse_request() and the path helpers.
 *
 * Besides memory safety (ASan, UBSan) it checks the parser's contract on every
 * input: results lie inside the input, a complete head is found again in any
 * longer input, its prefixes are incomplete, invalid input stays invalid when
 * more bytes arrive, and each limit fails with its own error just below the
 * size of a head that parsed; the resuming parser agrees with the full one.
 */
#include "spindle/http_parser.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MAX_HEADERS 32

static void check_slice(const char *buf, size_t len, const char *p, size_t n)
{
    if (p == NULL) {
        CHECK(n == 0);
        return;
    }
    CHECK(p >= buf && n <= len && (size_t)(p - buf) <= len - n);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_request(const char *buf, size_t head, const struct sp_http_request *req,
                          const struct sp_http_header *h, size_t cap)
{
    CHECK(req->head_len == head);
    CHECK(req->error == SP_HTTP_OK);
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->method > SP_HTTP_METHOD_NONE && req->method <= SP_HTTP_OTHER);
    CHECK(req->method_len > 0);
    check_slice(buf, head, req->method_str, req->method_len);
    if (req->method != SP_HTTP_OTHER)
        CHECK(strlen(sp_http_method_name(req->method)) == req->method_len &&
              memcmp(sp_http_method_name(req->method), req->method_str, req->method_len) == 0);
    CHECK(req->target_len > 0);
    check_slice(buf, head, req->target, req->target_len);
    check_slice(buf, head, req->path, req->path_len);
    check_slice(buf, head, req->query, req->query_len);
    check_slice(buf, head, req->authority, req->authority_len);
    check_slice(buf, head, req->host, req->host_len);
    check_slice(buf, head, req->if_none_match, req->if_none_match_len);
    check_slice(buf, head, req->if_modified_since, req->if_modified_since_len);
    check_slice(buf, head, req->range, req->range_len);
    if (req->form == SP_HTTP_FORM_ORIGIN)
        CHECK(req->path != NULL && req->path[0] == '/' && req->path == req->target);
    if (req->path != NULL)
        CHECK(memchr(req->path, '?', req->path_len) == NULL);
    if (req->minor_version == 1)
        CHECK(req->flags & SP_HTTP_F_HOST);
    /* Framing is never ambiguous. */
    CHECK(!((req->flags & SP_HTTP_F_CL_PRESENT) && (req->flags & SP_HTTP_F_TE_PRESENT)));
    CHECK(!(req->flags & (SP_HTTP_F_CL_CONFLICT | SP_HTTP_F_CL_INVALID | SP_HTTP_F_TE_UNKNOWN)));
    if (req->flags & SP_HTTP_F_TE_PRESENT)
        CHECK(req->flags & SP_HTTP_F_TE_CHUNKED);
    if (!(req->flags & SP_HTTP_F_CL_PRESENT))
        CHECK(req->content_length == 0);
    CHECK(req->content_length <= INT64_MAX);
    if (req->flags & SP_HTTP_F_CONN_CLOSE)
        CHECK(!sp_http_keep_alive(req));

    CHECK(req->headers == h && req->num_headers <= cap);
    for (size_t i = 0; i < req->num_headers; i++) {
        CHECK(h[i].name_len > 0);
        check_slice(buf, head, h[i].name, h[i].name_len);
        check_slice(buf, head, h[i].value, h[i].value_len);
        CHECK(h[i].name[h[i].name_len] == ':');
        CHECK(memchr(h[i].name, ' ', h[i].name_len) == NULL);
        CHECK(memchr(h[i].value, '\r', h[i].value_len) == NULL);
        CHECK(memchr(h[i].value, '\n', h[i].value_len) == NULL);
        CHECK(memchr(h[i].value, '\0', h[i].value_len) == NULL);
        if (h[i].value_len > 0)
            CHECK(!is_ows(h[i].value[0]) && !is_ows(h[i].value[h[i].value_len - 1]));
    }
}

static ssize_t parse(const char *buf, size_t len, const struct sp_http_limits *lim,
                     struct sp_http_request *req, struct sp_http_header *h, size_t cap)
{
    ssize_t rc = sp_http_parse_request(buf, len, lim, req, h, cap);

    CHECK(rc > 0 || rc == SP_HTTP_INVALID || rc == SP_HTTP_INCOMPLETE);
    if (rc > 0) {
        CHECK((size_t)rc <= len);
        check_request(buf, (size_t)rc, req, h, cap);
    } else if (rc == SP_HTTP_INVALID) {
        int st = sp_http_error_status(req->error);
        CHECK(req->error != SP_HTTP_OK);
        CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505);
    } else {
        CHECK(req->error == SP_HTTP_OK);
    }
    return rc;
}

/* The resuming parser, fed buf in pieces (one byte each for short inputs,
 * else thirds), agrees with a full parse of the same bytes at every step, but
 * may report an invalid head later. */
static void check_resume(const char *buf, size_t size, ssize_t full_rc,
                         const struct sp_http_request *full)
{
    struct sp_http_header h[MAX_HEADERS];
    struct sp_http_request req;
    struct sp_http_resume rs = {0};
    size_t step = size <= 512 ? 1 : size / 3 + 1;
    ssize_t rc = SP_HTTP_INCOMPLETE;

    for (size_t n = step < size ? step : size; rc == SP_HTTP_INCOMPLETE; n += step) {
        if (n > size)
            n = size;
        rc = sp_http_parse_request_resume(&rs, buf, n, NULL, &req, h, MAX_HEADERS);
        CHECK(rc > 0 || rc == SP_HTTP_INVALID || rc == SP_HTTP_INCOMPLETE);
        if (n == size)
            break;
    }
    CHECK(rs.examined <= 2 * (uint64_t)size + 3 * size / (step ? step : 1) + 3);
    if (rc == SP_HTTP_INCOMPLETE) {
        CHECK(full_rc == SP_HTTP_INCOMPLETE || full_rc == SP_HTTP_INVALID);
        return;
    }
    CHECK(rs.scanned == 0);
    if (rc > 0) {
        /* A head found early is the same head as the full parse's. */
        CHECK(full_rc == rc && req.num_headers == full->num_headers);
        CHECK(req.content_length == full->content_length && req.flags == full->flags);
    } else {
        CHECK(full_rc == SP_HTTP_INVALID && req.error == full->error);
    }
}

/* A clean path is absolute and holds no empty, "." or ".." segment. */
static void check_path(const char *path, size_t len)
{
    char out[256];
    ssize_t n;

    if (len > sizeof(out))
        return;
    n = sp_http_path_clean(path, len, out, sizeof(out));
    if (n < 0) {
        CHECK(n == -EINVAL || n == -EPERM);
        return;
    }
    CHECK(n >= 1 && (size_t)n <= (len ? len : 1) && out[0] == '/');
    CHECK(memchr(out, '\0', (size_t)n) == NULL);
    for (ssize_t i = 0; i < n; i++) {
        if (out[i] != '/')
            continue;
        size_t seg = 0;
        while (i + 1 + (ssize_t)seg < n && out[i + 1 + seg] != '/')
            seg++;
        bool last = i + 1 + (ssize_t)seg == n;
        CHECK(seg > 0 || last);
        CHECK(!(seg == 1 && out[i + 1] == '.'));
        CHECK(!(seg == 2 && out[i + 1] == '.' && out[i + 2] == '.'));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct sp_http_header h[MAX_HEADERS];
    struct sp_http_request req, again;
    struct sp_http_limits lim = {SP_HTTP_MAX_HEAD_DEFAULT, SP_HTTP_MAX_TARGET_DEFAULT};
    ssize_t rc = parse(buf, size, NULL, &req, h, MAX_HEADERS);

    check_resume(buf, size, rc, &req);

    if (rc > 0) {
        size_t head = (size_t)rc, target_len = req.target_len, nh = req.num_headers;

        /* The head alone parses the same; every prefix of it is incomplete. */
        CHECK(parse(buf, head, NULL, &again, h, MAX_HEADERS) == rc);
        CHECK(parse(buf, head - 1, NULL, &again, h, MAX_HEADERS) == SP_HTTP_INCOMPLETE);
        CHECK(parse(buf, head / 2, NULL, &again, h, MAX_HEADERS) == SP_HTTP_INCOMPLETE);

        /* Limits just large enough pass; one less fails with the right error. */
        lim.max_head = head;
        lim.max_target = target_len;
        CHECK(parse(buf, size, &lim, &again, h, nh) == rc);
        lim.max_head = head - 1;
        CHECK(parse(buf, size, &lim, &again, h, nh) == SP_HTTP_INVALID);
        CHECK(again.error == SP_HTTP_EHEAD_TOO_LARGE);
        lim.max_head = head;
        lim.max_target = target_len - 1;
        CHECK(parse(buf, size, &lim, &again, h, nh) == SP_HTTP_INVALID);
        CHECK(again.error == SP_HTTP_EURI_TOO_LONG);
        if (nh > 0) {
            lim.max_target = target_len;
            CHECK(parse(buf, size, &lim, &again, h, nh - 1) == SP_HTTP_INVALID);
            CHECK(again.error == SP_HTTP_ETOO_MANY_HEADERS);
        }

        parse(buf, size, NULL, &req, h, MAX_HEADERS);
        if (req.path != NULL || req.form == SP_HTTP_FORM_ABSOLUTE)
            check_path(req.path, req.path_len);
        if (req.query != NULL && req.query_len <= 256) {
            char q[256];
            ssize_t n = sp_http_pct_decode(req.query, req.query_len, q, sizeof(q));
            CHECK(n == -EINVAL || (n >= 0 && (size_t)n <= req.query_len));
        }
    } else if (rc == SP_HTTP_INCOMPLETE) {
        CHECK(parse(buf, size / 2, NULL, &again, h, MAX_HEADERS) == SP_HTTP_INCOMPLETE);
    } else {
        /* More bytes never repair an invalid head, nor change the reason. */
        char *more = malloc(size + 4);
        CHECK(more != NULL);
        memcpy(more, buf, size);
        memcpy(more + size, "\r\n\r\n", 4);
        CHECK(parse(more, size + 4, NULL, &again, h, MAX_HEADERS) == SP_HTTP_INVALID);
        CHECK(again.error == req.error);
        free(more);
    }
    /* Any input is also a path to clean. */
    check_path(buf, size);
    return 0;
}
