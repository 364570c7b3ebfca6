/*
 * A test module: a TCP service that sends "GREETING vN\n" first, then
 * echoes every line upper-cased, and an HTTP handler that answers every
 * request with "GREETING vN\n".  Built several times by make check
 * (tests/modules/local.mk), each variant with one -D below:
 *
 *   MOD_VERSION=N     the version in the greeting (1, 2)
 *   MOD_INIT_FAIL     init returns -1 with a reason
 *   MOD_INIT_SEGV     init dereferences NULL
 *   MOD_INIT_HANG     init never returns
 *   MOD_BAD_API       api_version is not this spindle's
 *   MOD_NO_SYMBOL     the entry symbol has another name
 *   MOD_LOAD_HANG     a constructor that never returns (dlopen hangs)
 *   MOD_LOAD_SEGV     a constructor that crashes (dlopen crashes)
 *   MOD_NO_SERVICE    provides no TCP service
 *
 * Every variant that serves crashes on a line "segv", for the test of a
 * module that crashes while serving.
 *
 * It uses only the public API: fiber I/O (sp_read, sp_write), streams, and
 * the worker's calls (spindle/worker.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spindle/http_handler.h"
#include "spindle/io.h"
#include "spindle/module.h"
#include "spindle/stream.h"
#include "spindle/worker.h"

#ifndef MOD_VERSION
#define MOD_VERSION 1
#endif

struct upper_conf {
    const char *greeting;
    size_t max_read;
};

struct upper_state {
    char line[256]; /* the greeting line */
    size_t len;
};

static void upper_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct upper_conf *c = conf;
    (void)ctx;
    c->greeting = "hello";
    c->max_read = 4096;
}

static const struct sp_conf_key upper_keys[] = {
    {"greeting", sp_conf_set_string, offsetof(struct upper_conf, greeting), 0, 0, NULL, 0},
    {"max_read", sp_conf_set_size, offsetof(struct upper_conf, max_read), 1, 4096, "1..4k", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int upper_init(const void *conf, void **state, char *err, size_t errlen)
{
    const struct upper_conf *c = conf;
#if defined(MOD_INIT_FAIL)
    (void)c;
    (void)state;
    snprintf(err, errlen, "refused to start (test)");
    return -1;
#elif defined(MOD_INIT_SEGV)
    (void)c;
    (void)state;
    (void)err;
    (void)errlen;
    volatile uintptr_t nowhere = 8; /* read at run time: the compiler cannot drop the store */
    *(volatile int *)nowhere = 1;
    return 0;
#elif defined(MOD_INIT_HANG)
    (void)c;
    (void)state;
    (void)err;
    (void)errlen;
    for (volatile int spin = 1; spin;)
        ;
    return 0;
#else
    struct upper_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->len = (size_t)snprintf(st->line, sizeof(st->line), "%s v%d\n", c->greeting, MOD_VERSION);
    if (st->len >= sizeof(st->line))
        st->len = sizeof(st->line) - 1;
    *state = st;
    return 0;
#endif
}

static void upper_fini(void *state)
{
    free(state);
}

/* One connection: the greeting, then each read back upper-cased, until the
 * peer closes, or goes quiet while the worker drains. */
static void upper_handle(struct service *svc, int fd)
{
    const struct upper_conf *c = svc->conf;
    const struct upper_state *st = svc->state;
    struct sp_stream s;
    char buf[4096];

    sp_stream_socket(&s, fd);
    if (sp_write(fd, st->line, st->len, 1000) == (ssize_t)st->len) {
        for (;;) {
            ssize_t n = sp_stream_read(&s, buf, c->max_read, 200);
            if (n == -ETIMEDOUT && !worker_draining(svc->worker))
                continue;
            if (n <= 0)
                break;
            if (n >= 4 && memcmp(buf, "segv", 4) == 0) {
                volatile uintptr_t nowhere = 8;
                *(volatile int *)nowhere = 1;
            }
            for (ssize_t i = 0; i < n; i++)
                buf[i] = (char)toupper((unsigned char)buf[i]);
            if (sp_stream_write(&s, buf, (size_t)n, 1000) != n)
                break;
            atomic_fetch_add(&worker_counters(svc->worker)->requests, 1);
        }
    }
    sp_stream_close(&s);
    worker_conn_closed(svc->worker);
}

__attribute__((unused)) static const struct sp_service_def upper_service = {
    .name = "echo_upper",
    .handle = upper_handle,
};

/* HTTP: the greeting line, so a client sees which version answered. */
static int upper_http_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    const struct upper_state *st = state;
    (void)req;
    if (sp_http_resp_header(resp, "Content-Type", "text/plain") < 0)
        return -1;
    return sp_http_resp_body(resp, st->line, st->len);
}

__attribute__((unused)) static const struct sp_http_handler_def upper_http = {
    .handle = upper_http_handle,
};

#if defined(MOD_LOAD_HANG)
__attribute__((constructor)) static void load_hang(void)
{
    for (volatile int spin = 1; spin;)
        ;
}
#elif defined(MOD_LOAD_SEGV)
__attribute__((constructor)) static void load_segv(void)
{
    volatile uintptr_t nowhere = 8;
    *(volatile int *)nowhere = 1;
}
#endif

#ifdef MOD_NO_SYMBOL
#define ENTRY not_the_entry_symbol
#else
#define ENTRY spindle_module
#endif

const struct sp_module ENTRY = {
#ifdef MOD_BAD_API
    .api_version = 42, /* any version but this spindle's */
#else
    .api_version = SP_API_VERSION,
#endif
    .name = "echo_upper",
    .conf_size = sizeof(struct upper_conf),
    .keys = upper_keys,
    .defaults = upper_defaults,
    .init = upper_init,
    .fini = upper_fini,
#ifndef MOD_NO_SERVICE
    .service = &upper_service,
    .http = &upper_http,
#endif
};
