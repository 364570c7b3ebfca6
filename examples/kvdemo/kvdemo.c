/*
 * kvdemo: commands for a [cmd NAME] service that call a real Redis through
 * hiredis's blocking API.  Under the worker's system call hooks each call
 * parks only its fiber: a thousand clients waiting in KV.BLPOP cost a
 * thousand fibers, not a thousand threads.
 *
 *     [module kvdemo]
 *     path = kvdemo.so
 *     redis = 127.0.0.1:6379      ; the Redis server (the default)
 *     timeout = 5s                ; connect and command timeout (the default)
 *
 *     [cmd main]
 *     listen = 127.0.0.1:6380
 *     commands = kvdemo
 *
 *     $ redis-cli -p 6380 kv.set greeting hello
 *     OK
 *     $ redis-cli -p 6380 kv.get greeting
 *     "hello"
 *
 * Commands: KV.GET key, KV.SET key value, KV.DEL key [key ...],
 * KV.BLPOP key timeout, KV.CALL command [arg ...] (any command, passed on),
 * and KV.UPPER text, which answers locally (no Redis): the text in upper
 * case.
 *
 * Connections to Redis are pooled per scheduler thread: a command takes an
 * idle one of its thread or opens one, and gives it back unless it failed.
 * Per thread, because a socket a fiber has waited on belongs to that
 * fiber's thread until it is closed (the runtime aborts when another thread
 * touches it); and so the pools need no lock (a fiber never leaves its
 * thread, and taking or giving back never parks).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <spindle/command.h>
#include <spindle/iomanager.h>
#include <spindle/module.h>

#define KV_POOL_IDLE 64 /* idle connections a scheduler thread keeps */
#define KV_THREADS   64 /* scheduler threads of a worker, at most ([master] threads) */

struct kv_conf {
    const char *redis; /* host:port */
    int64_t timeout_ms;
};

struct kv_pool {
    redisContext *idle[KV_POOL_IDLE];
    unsigned nidle;
};

struct kv_state {
    char host[256];
    int port;
    struct timeval timeout;
    struct kv_pool *pools[KV_THREADS]; /* each made by its thread, at its first command */
};

static const struct sp_conf_key kv_keys[] = {
    {"redis", sp_conf_set_string, offsetof(struct kv_conf, redis), 0, 0, NULL, 0},
    {"timeout", sp_conf_set_duration, offsetof(struct kv_conf, timeout_ms), 1, 3600 * 1000,
     "1ms..1h", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void kv_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct kv_conf *c = conf;
    c->redis = sp_conf_strdup(ctx, "127.0.0.1:6379", 14);
    c->timeout_ms = 5000;
}

static void kv_check(struct sp_conf_ctx *ctx, void *conf)
{
    const struct kv_conf *c = conf;
    const char *colon = strrchr(c->redis, ':');
    if (!colon || colon == c->redis || atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535)
        sp_conf_error(ctx, "redis: expected HOST:PORT, got '%s'", c->redis);
}

static int kv_init(const void *conf, void **state, char *err, size_t errlen)
{
    const struct kv_conf *c = conf;
    struct kv_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "kvdemo: out of memory");
        return -1;
    }
    const char *colon = strrchr(c->redis, ':');
    snprintf(st->host, sizeof(st->host), "%.*s", (int)(colon - c->redis), c->redis);
    st->port = atoi(colon + 1);
    st->timeout.tv_sec = c->timeout_ms / 1000;
    st->timeout.tv_usec = (c->timeout_ms % 1000) * 1000;
    *state = st;
    return 0;
}

static void kv_fini(void *state)
{
    struct kv_state *st = state;
    for (unsigned t = 0; t < KV_THREADS; t++) {
        struct kv_pool *p = st->pools[t];
        for (unsigned i = 0; p && i < p->nidle; i++)
            redisFree(p->idle[i]);
        free(p);
    }
    free(st);
}

/* This scheduler thread's pool, or NULL (out of memory). */
static struct kv_pool *pool_of(struct kv_state *st)
{
    unsigned t = sp_iom_thread_index() % KV_THREADS;
    if (!st->pools[t])
        st->pools[t] = calloc(1, sizeof(struct kv_pool));
    return st->pools[t];
}

/* An idle connection, or a new one (NULL with the reason answered). */
static redisContext *pool_get(struct kv_state *st, struct sp_cmd_ctx *ctx)
{
    struct kv_pool *p = pool_of(st);
    redisContext *rc;
    if (p && p->nidle)
        return p->idle[--p->nidle];
    rc = redisConnectWithTimeout(st->host, st->port, st->timeout);
    if (!rc || rc->err) {
        sp_reply_errorf(ctx, "ERR kvdemo: cannot reach Redis at %s:%d: %s", st->host, st->port,
                        rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, st->timeout); /* SO_RCVTIMEO / SO_SNDTIMEO */
    return rc;
}

static void pool_put(struct kv_state *st, redisContext *rc)
{
    struct kv_pool *p = pool_of(st);
    if (rc->err == 0 && p && p->nidle < KV_POOL_IDLE)
        p->idle[p->nidle++] = rc;
    else
        redisFree(rc);
}

/* Answers with Redis's reply as it is (arrays nested as they came).
 * hiredis reads a nil bulk ($-1) and a nil array (*-1) as the same NIL:
 * nil_array says which one the command answers (BLPOP's timeout: *-1). */
static void reply_forward(struct sp_cmd_ctx *ctx, const redisReply *r, bool nil_array)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        sp_reply_bulk(ctx, r->str, r->len);
        break;
    case REDIS_REPLY_STATUS:
        sp_reply_simple(ctx, r->str);
        break;
    case REDIS_REPLY_ERROR:
        sp_reply_error(ctx, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        sp_reply_int(ctx, r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        sp_reply_array(ctx, r->elements);
        for (size_t i = 0; i < r->elements; i++)
            reply_forward(ctx, r->element[i], false);
        break;
    default: /* REDIS_REPLY_NIL */
        if (nil_array)
            sp_reply_null_array(ctx);
        else
            sp_reply_null(ctx);
        break;
    }
}

/* Sends argv[from..argc) to Redis, the first of them replaced by name when
 * name is not NULL, and answers with what Redis answers. */
static int forward(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, int from,
                   const char *name, struct kv_state *st)
{
    bool nil_array = name && strcmp(name, "BLPOP") == 0;
    int n = argc - from;
    const char *stack_av[8];
    size_t stack_len[8];
    const char **av = n <= 8 ? stack_av : malloc((size_t)n * sizeof(*av));
    size_t *len = n <= 8 ? stack_len : malloc((size_t)n * sizeof(*len));
    if (!av || !len) {
        sp_reply_error(ctx, "ERR kvdemo: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        av[i] = argv[from + i].p;
        len[i] = argv[from + i].len;
    }
    if (name) {
        av[0] = name;
        len[0] = strlen(name);
    }
    redisContext *rc = pool_get(st, ctx);
    if (!rc)
        goto done;
    redisReply *r = redisCommandArgv(rc, n, av, len);
    if (r) {
        reply_forward(ctx, r, nil_array);
        freeReplyObject(r);
    } else {
        sp_reply_errorf(ctx, "ERR kvdemo: %s", rc->errstr[0] ? rc->errstr : "no reply");
    }
    pool_put(st, rc);
done:
    if (av != stack_av)
        free(av);
    if (len != stack_len)
        free(len);
    return 0;
}

static int kv_get(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    return forward(ctx, argc, argv, 0, "GET", st);
}

static int kv_set(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    return forward(ctx, argc, argv, 0, "SET", st);
}

static int kv_del(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    return forward(ctx, argc, argv, 0, "DEL", st);
}

static int kv_blpop(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    return forward(ctx, argc, argv, 0, "BLPOP", st);
}

static int kv_call(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    return forward(ctx, argc, argv, 1, NULL, st);
}

static int kv_upper(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *st)
{
    char stack[256] = "";
    size_t n = argv[1].len;
    char *b = n <= sizeof(stack) ? stack : malloc(n);
    (void)argc;
    (void)st;
    if (!b) {
        sp_reply_error(ctx, "ERR kvdemo: out of memory");
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        b[i] = (char)toupper((unsigned char)argv[1].p[i]);
    sp_reply_bulk(ctx, b, n);
    if (b != stack)
        free(b);
    return 0;
}

static const struct sp_cmd_def kv_commands[] = {
    {"kv.get", 2, kv_get},     {"kv.set", 3, kv_set},    {"kv.del", -2, kv_del},
    {"kv.blpop", 3, kv_blpop}, {"kv.call", -2, kv_call}, {"kv.upper", 2, kv_upper},
    {NULL, 0, NULL},
};

const struct sp_module spindle_module = {
    .api_version = SP_API_VERSION,
    .name = "kvdemo",
    .conf_size = sizeof(struct kv_conf),
    .keys = kv_keys,
    .defaults = kv_defaults,
    .check = kv_check,
    .init = kv_init,
    .fini = kv_fini,
    .commands = kv_commands,
};
