/*
 * upper: a module that provides a whole TCP service.  Every line a client
 * sends comes back upper-cased; a line longer than max_line is answered
 * "ERR line too long" and dropped.
 *
 *     [module upper]
 *     path = upper.so
 *     max_line = 1k               ; default 1k, 16..64k
 *     idle_timeout = 30s          ; default 60s; 0 = never
 *
 *     [service up]
 *     listen = 127.0.0.1:7070
 *     module = upper
 *
 *     $ printf 'hello\nworld\n' | nc -q1 127.0.0.1 7070
 *     HELLO
 *     WORLD
 *
 * What it shows:
 *
 *   - the configuration of a module: a key table and its defaults;
 *   - a service's callbacks (struct sp_service_def): init and fini build and
 *     free the state the worker keeps for it, handle serves a connection;
 *   - an idle connection that holds no fiber: read until the socket is dry,
 *     then hand the fd to sp_iom_watch(), whose callback runs on a fresh
 *     fiber once the client sends more.  Ten thousand quiet clients cost ten
 *     thousand small heap buffers, not ten thousand fiber stacks;
 *   - what a worker needs from every service: worker_conn_closed() exactly
 *     once per connection, and quiet connections closed soon once
 *     worker_draining() says the worker is on its way out.
 *
 * Built out of tree against an installed spindle (see the Makefile beside
 * this file).
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spindle/io.h>
#include <spindle/iomanager.h>
#include <spindle/module.h>
#include <spindle/stream.h>
#include <spindle/worker.h>

/* ---- configuration --------------------------------------------------------- */

/* The [module upper] section, filled by the loader: zeroed, then
 * upper_defaults(), then a setter per key present (a module may add a check
 * callback for what only the whole section shows).  It
 * lives as long as the worker; the service reads it as svc->conf. */
struct upper_conf {
    size_t max_line;         /* bytes, the newline included */
    int64_t idle_timeout_ms; /* 0 = never */
};

static const struct sp_conf_key upper_keys[] = {
    /* name, setter, field, min, max, range (for messages), flags */
    {"max_line", sp_conf_set_size, offsetof(struct upper_conf, max_line), 16, 65536, "16..64k", 0},
    {"idle_timeout", sp_conf_set_duration, offsetof(struct upper_conf, idle_timeout_ms), 0,
     86400000, "0..24h", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void upper_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct upper_conf *c = conf;
    (void)ctx;
    c->max_line = 1024;
    c->idle_timeout_ms = 60000;
}

/* ---- the service ------------------------------------------------------------ */

/* Built by upper_init in each worker and shared by every connection (and
 * every scheduler thread: nothing here changes after init). */
struct upper_state {
    struct sp_iom *iom;               /* the worker's scheduler, for sp_iom_watch */
    struct worker_counters *counters; /* what `spindle -s status` shows */
    const struct upper_conf *conf;    /* svc->conf, outlives the state */
};

/* One connection.  It is on the heap, not on a fiber's stack, because while
 * the connection is idle no fiber exists to hold it: the watch's argument is
 * all that remains of the connection between two batches of lines. */
struct upper_conn {
    struct service *svc;
    struct sp_stream s; /* the socket, through the runtime's fiber I/O */
    size_t len;         /* bytes of an unfinished line at the start of line[] */
    bool skipping;      /* dropping the rest of a line longer than max_line */
    char line[];        /* max_line bytes */
};

static void upper_serve(struct upper_conn *c);

/* The end of a connection, however it ends: close the fd, free what it held,
 * and tell the worker once (a draining worker counts connections down to 0
 * before it exits). */
static void upper_close(struct upper_conn *c)
{
    struct worker *w = c->svc->worker;
    sp_stream_close(&c->s);
    free(c);
    worker_conn_closed(w);
}

/* The watch's callback, on a fresh fiber of the thread that set the watch:
 * a connection never changes threads.  Called exactly once per watch. */
static void upper_ready(int fd, int status, void *arg)
{
    struct upper_conn *c = arg;
    (void)fd;
    if (status == -ECANCELED) {
        /* The fd was closed under the watch (sp_close): it is gone, and its
         * number may already be someone else's.  Only the bookkeeping is
         * left. */
        struct worker *w = c->svc->worker;
        free(c);
        worker_conn_closed(w);
        return;
    }
    if (status < 0) { /* -ETIMEDOUT: idle_timeout, or a draining worker's grace */
        upper_close(c);
        return;
    }
    upper_serve(c); /* readable, or hung up: the read says which */
}

/* How long a quiet connection may wait for its next line. */
static int64_t upper_idle_wait(const struct upper_conn *c)
{
    const struct upper_state *st = c->svc->state;
    int64_t wait = st->conf->idle_timeout_ms ? st->conf->idle_timeout_ms : -1; /* -1: never */

    /* A draining worker waits for all its connections before it exits: give
     * a quiet one a short grace (the client may be sending its next line
     * right now), never the whole idle_timeout.  The worker also brings the
     * deadlines of the watches already set forward when the drain starts. */
    if (worker_draining(c->svc->worker) && (wait < 0 || wait > WORKER_DRAIN_IDLE_MS))
        wait = WORKER_DRAIN_IDLE_MS;
    return wait;
}

/* A client that stops reading gets idle_timeout to make room for an answer
 * (10s when idle connections may stay forever: a write must not). */
static int64_t upper_write_timeout(const struct upper_conn *c)
{
    const struct upper_state *st = c->svc->state;
    return st->conf->idle_timeout_ms ? st->conf->idle_timeout_ms : 10000;
}

/* Handles n new bytes read to the end of the line buffer: writes back every
 * complete line upper-cased, keeps an unfinished one for the next read.
 * Returns 0, or -1 when the connection must end (a write failed). */
static int upper_answer(struct upper_conn *c, size_t n)
{
    const struct upper_state *st = c->svc->state;
    char *p = c->line + c->len;

    atomic_fetch_add(&st->counters->bytes_in, n);
    if (c->skipping) { /* the rest of a line too long, answered already */
        char *nl = memchr(p, '\n', n);
        if (!nl)
            return 0;
        size_t skip = (size_t)(nl - p) + 1;
        memmove(p, nl + 1, n - skip);
        n -= skip;
        c->skipping = false;
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (char)toupper((unsigned char)p[i]);
    c->len += n;

    /* Everything up to the last newline is complete lines: one write. */
    size_t done = c->len;
    while (done > 0 && c->line[done - 1] != '\n')
        done--;
    if (done == 0) {
        if (c->len < st->conf->max_line)
            return 0; /* the rest of the line is still to come */
        /* Full without a newline.  Answer, and drop the line up to its end
         * rather than close: closing with unread bytes would reset the
         * connection, and the client could lose the answer. */
        static const char too_long[] = "ERR line too long\n";
        c->len = 0;
        c->skipping = true;
        return sp_stream_write(&c->s, too_long, sizeof(too_long) - 1, upper_write_timeout(c)) < 0
                   ? -1
                   : 0;
    }
    if (sp_stream_write(&c->s, c->line, done, upper_write_timeout(c)) < 0)
        return -1;
    atomic_fetch_add(&st->counters->bytes_out, done);
    for (const char *q = c->line; q < c->line + done; q++)
        if (*q == '\n')
            atomic_fetch_add(&st->counters->requests, 1);
    /* The unfinished line moves to the front (it is shorter than max_line,
     * so the next read has room). */
    memmove(c->line, c->line + done, c->len - done);
    c->len -= done;
    return 0;
}

/* Serves what the client has sent, then parks the connection without a
 * fiber.  Runs on a fiber (handle's or a watch callback's); returns when the
 * connection is parked or closed. */
static void upper_serve(struct upper_conn *c)
{
    const struct upper_state *st = c->svc->state;

    for (;;) {
        /* One attempt that never parks the fiber: -EAGAIN when the socket is
         * dry.  Reading straight into the line buffer needs no copy and no
         * large buffer on the fiber's stack. */
        ssize_t n = sp_stream_try_read(&c->s, c->line + c->len, st->conf->max_line - c->len);
        if (n == -EAGAIN) {
            /* Idle: the fiber ends here, the watch keeps c.  On success the
             * watch owns the connection until upper_ready runs; on failure
             * (out of memory, say) the connection is still ours to close. */
            if (sp_iom_watch(st->iom, c->s.fd, upper_idle_wait(c), upper_ready, c) == 0)
                return;
            break;
        }
        if (n <= 0) /* 0: the client closed; < 0: an error (reset...) */
            break;
        if (upper_answer(c, (size_t)n) != 0)
            break;
    }
    upper_close(c);
}

/* A new connection, on a fresh fiber; fd is non-blocking and ours.  From here
 * on every path ends in upper_close() (or, for a watch cancelled under us, in
 * the same bookkeeping): one worker_conn_closed() per connection. */
static void upper_handle(struct service *svc, int fd)
{
    const struct upper_state *st = svc->state;
    struct upper_conn *c = malloc(sizeof(*c) + st->conf->max_line);

    if (!c) {
        sp_close(fd);
        worker_conn_closed(svc->worker);
        return;
    }
    c->svc = svc;
    c->len = 0;
    c->skipping = false;
    sp_stream_socket(&c->s, fd);
    upper_serve(c);
}

/* In each worker, before it reports ready.  svc->state starts as what the
 * module's own init built (this module has none, so NULL); the service
 * replaces it with what its connections share. */
static int upper_init(struct service *svc, char *err, size_t errlen)
{
    struct upper_state *st = malloc(sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->iom = worker_iom(svc->worker);
    st->counters = worker_counters(svc->worker);
    st->conf = svc->conf;
    svc->state = st;
    return 0;
}

/* The worker is about to exit and its scheduler has stopped: no connection
 * runs any more, free the state. */
static void upper_fini(struct service *svc)
{
    free(svc->state);
    svc->state = NULL;
}

/* No drain callback: when the worker drains, it brings every watch's
 * deadline forward to WORKER_DRAIN_IDLE_MS, so the idle connections (all
 * parked in sp_iom_watch) close by themselves, and a busy one is capped by
 * upper_idle_wait() the next time it goes quiet.  A service that parks
 * connections some other way would close or wake them in .drain. */
static const struct sp_service_def upper_service = {
    .name = "upper", /* for messages; the section is [service NAME] */
    .init = upper_init,
    .handle = upper_handle,
    .fini = upper_fini,
};

/* The one symbol the worker looks for (SP_MODULE_SYMBOL). */
const struct sp_module spindle_module = {
    .api_version = SP_API_VERSION,
    .name = "upper",
    .conf_size = sizeof(struct upper_conf),
    .keys = upper_keys,
    .defaults = upper_defaults,
    .service = &upper_service,
};
