/*
 * hello: a module with an HTTP handler that answers JSON built from the
 * query string.
 *
 *     [module hello]
 *     path = hello.so
 *     greeting = Hi               ; default "Hello"
 *
 *     [http web]
 *     listen = 127.0.0.1:8080
 *     handle /hello = hello
 *
 *     $ curl 'http://127.0.0.1:8080/hello?name=world&lang=en'
 *     {"greeting":"Hi","path":"/hello","query":{"name":"world","lang":"en"},"hits":1}
 *
 * Built out of tree against an installed spindle (see the Makefile beside
 * this file).  Query values are shown as sent (still percent-encoded).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spindle/http_handler.h>
#include <spindle/module.h>

struct hello_conf {
    const char *greeting;
};

/* Shared by every scheduler thread of the worker: what changes is atomic. */
struct hello_state {
    const char *greeting; /* the configuration's, which outlives the state */
    atomic_ulong hits;
};

static const struct sp_conf_key hello_keys[] = {
    {"greeting", sp_conf_set_string, offsetof(struct hello_conf, greeting), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void hello_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct hello_conf *c = conf;
    c->greeting = sp_conf_strdup(ctx, "Hello", 5);
}

static int hello_init(const void *conf, void **state, char *err, size_t errlen)
{
    const struct hello_conf *c = conf;
    struct hello_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "hello: out of memory");
        return -1;
    }
    st->greeting = c->greeting;
    *state = st;
    return 0;
}

static void hello_fini(void *state)
{
    free(state);
}

/* A JSON string builder over a fixed buffer; len past cap means "too long". */
struct out {
    char buf[4096];
    size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n <= sizeof(o->buf))
        memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_json_string(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            put(o, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put(o, esc, 6);
        } else {
            put(o, s + i, 1);
        }
    }
    put(o, "\"", 1);
}

/* "a=1&b=2" as {"a":"1","b":"2"} (a key without '=' gets ""). */
static void put_query(struct out *o, const char *q, size_t n)
{
    bool first = true;
    put(o, "{", 1);
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t pl = amp ? (size_t)(amp - q) : n;
        if (pl > 0) {
            const char *eq = memchr(q, '=', pl);
            size_t kl = eq ? (size_t)(eq - q) : pl;
            if (!first)
                put(o, ",", 1);
            first = false;
            put_json_string(o, q, kl);
            put(o, ":", 1);
            put_json_string(o, eq ? eq + 1 : "", eq ? pl - kl - 1 : 0);
        }
        q += pl + (amp != NULL);
        n -= pl + (amp != NULL);
    }
    put(o, "}", 1);
}

static int hello_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    struct hello_state *st = state;
    enum sp_http_method m = sp_http_req_method(req);
    size_t pl, ql;
    const char *path = sp_http_req_path(req, &pl);
    const char *query = sp_http_req_query(req, &ql);
    struct out o = {.len = 0};
    char hits[32];

    if (m != SP_HTTP_GET && m != SP_HTTP_HEAD) {
        sp_http_resp_status(resp, 405);
        sp_http_resp_header(resp, "Allow", "GET, HEAD");
        sp_http_resp_header(resp, "Content-Type", "text/plain");
        return sp_http_resp_body(resp, "405 Method Not Allowed\n", 23) == 0 ? 0 : -1;
    }
    put(&o, "{\"greeting\":", 12);
    put_json_string(&o, st->greeting, strlen(st->greeting));
    put(&o, ",\"path\":", 8);
    put_json_string(&o, path, pl);
    put(&o, ",\"query\":", 9);
    put_query(&o, query ? query : "", ql);
    snprintf(hits, sizeof(hits), ",\"hits\":%lu}\n", atomic_fetch_add(&st->hits, 1) + 1);
    put(&o, hits, strlen(hits));
    if (o.len > sizeof(o.buf)) {
        sp_http_resp_status(resp, 414);
        return sp_http_resp_body(resp, NULL, 0) == 0 ? 0 : -1;
    }
    sp_http_resp_header(resp, "Content-Type", "application/json");
    /* A write error: the connection is gone, close it. */
    return sp_http_resp_body(resp, o.buf, o.len) == 0 ? 0 : -1;
}

static const struct sp_http_handler_def hello_http = {.handle = hello_handle};

const struct sp_module spindle_module = {
    .api_version = SP_API_VERSION,
    .name = "hello",
    .conf_size = sizeof(struct hello_conf),
    .keys = hello_keys,
    .defaults = hello_defaults,
    .init = hello_init,
    .fini = hello_fini,
    .http = &hello_http,
};
