/*
 * Test modules for the system call hooks (spindle/hook.h): HTTP handlers
 * written as blocking code, built by make check in two variants.
 *
 *   slow.so (-DMOD_SLOW)   answers "slow QUERY\n" after a plain usleep() of
 *                          delay_ms (default 200), the stand-in for a slow
 *                          backend.  With the hooks on, the sleeps of many
 *                          requests overlap on one thread.
 *   curl_fetch.so          fetches its url key (the request's query string
 *                          appended after '?') with libcurl's easy API,
 *                          curl_easy_perform(), which blocks: with the hooks
 *                          on it parks the handler's fiber; with them off it
 *                          holds the worker's thread for the whole transfer.
 *                          Answers 200 with the body fetched, 502 with
 *                          curl's message when the transfer fails.
 *
 * tests/integration/test_hooks_curl.py runs them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spindle/http_handler.h"
#include "spindle/module.h"

#ifndef MOD_SLOW
#include <curl/curl.h>
#endif

struct blocking_conf {
    const char *url;
    int64_t delay_ms;
};

static const struct sp_conf_key blocking_keys[] = {
    {"url", sp_conf_set_string, offsetof(struct blocking_conf, url), 0, 0, NULL, 0},
    {"delay", sp_conf_set_duration, offsetof(struct blocking_conf, delay_ms), 0, 60000, "0..60s",
     0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void blocking_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct blocking_conf *c = conf;
    (void)ctx;
    c->delay_ms = 200;
}

static int answer(struct sp_http_resp *resp, unsigned status, const char *body, size_t len)
{
    sp_http_resp_status(resp, status);
    sp_http_resp_header(resp, "Content-Type", "text/plain");
    return sp_http_resp_body(resp, body, len) == 0 ? 0 : -1;
}

#ifdef MOD_SLOW

static int blocking_init(const void *conf, void **state, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    *state = (void *)conf;
    return 0;
}

static void blocking_fini(void *state)
{
    (void)state;
}

static int blocking_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    const struct blocking_conf *c = state;
    size_t ql = 0;
    const char *q = sp_http_req_query(req, &ql);
    char body[256];
    usleep((useconds_t)(c->delay_ms * 1000)); /* plain libc: the hooks make it park the fiber */
    int n = snprintf(body, sizeof(body), "slow %.*s\n", (int)(ql < 200 ? ql : 200), q ? q : "");
    return answer(resp, 200, body, (size_t)n);
}

#else

static int blocking_init(const void *conf, void **state, char *err, size_t errlen)
{
    const struct blocking_conf *c = conf;
    if (!c->url) {
        snprintf(err, errlen, "curl_fetch: no url");
        return -1;
    }
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(rc));
        return -1;
    }
    *state = (void *)conf;
    return 0;
}

static void blocking_fini(void *state)
{
    (void)state;
    curl_global_cleanup();
}

struct body {
    char buf[4096];
    size_t len;
};

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n, room = sizeof(b->buf) - b->len;
    memcpy(b->buf + b->len, data, len < room ? len : room);
    b->len += len < room ? len : room;
    return len;
}

static int blocking_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    const struct blocking_conf *c = state;
    size_t ql = 0;
    const char *q = sp_http_req_query(req, &ql);
    char url[1024];
    snprintf(url, sizeof(url), "%s?%.*s", c->url, (int)(ql < 512 ? ql : 512), q ? q : "");

    struct body b = {.len = 0};
    CURL *h = curl_easy_init();
    if (!h)
        return answer(resp, 500, "curl_easy_init failed\n", 22);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM: several transfers per thread */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "fetch failed: %s, status %ld\n", curl_easy_strerror(rc),
                         status);
        return answer(resp, 502, msg, (size_t)n);
    }
    return answer(resp, 200, b.buf, b.len);
}

#endif

static const struct sp_http_handler_def blocking_http = {.handle = blocking_handle};

const struct sp_module spindle_module = {
    .api_version = SP_API_VERSION,
#ifdef MOD_SLOW
    .name = "slow",
#else
    .name = "curl_fetch",
#endif
    .conf_size = sizeof(struct blocking_conf),
    .keys = blocking_keys,
    .defaults = blocking_defaults,
    .init = blocking_init,
    .fini = blocking_fini,
    .http = &blocking_http,
};
