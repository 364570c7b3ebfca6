/*
 * The echo service: writes back every byte it reads, in order, until the
 * peer closes.  Each pass reads as much as is there (up to the buffer) and
 * writes it back with one call, so pipelined messages cost one read and one
 * write per batch.  Between batches the connection waits through
 * sp_iom_watch() and holds no fiber; idle_timeout closes silent peers.  A
 * draining worker closes a connection once it has been quiet for a second.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "spindle/iomanager.h"
#include "spindle/service.h"
#include "spindle/stream.h"
#include "spindle/config.h"
#include "spindle/worker.h"
#include "echo_conf.h"

#define ECHO_BUF         16384 /* one batch, on stacks of ECHO_LARGE_STACK or more */
#define ECHO_BUF_SMALL   2048  /* on smaller ones (16k and up leave room for it) */
#define ECHO_LARGE_STACK (32 * 1024)

/* What every batch needs, looked up once at init. */
struct echo_state {
    struct sp_iom *iom;
    struct worker_counters *counters;
    bool large_stack; /* stack_size >= ECHO_LARGE_STACK */
};

static void echo_close(struct service *svc, struct sp_stream *s)
{
    sp_stream_close(s);
    worker_conn_closed(svc->worker);
}

static void echo_serve(struct service *svc, int fd);

static void echo_ready(int fd, int status, void *arg)
{
    struct service *svc = arg;
    if (status == -ECANCELED) {
        worker_conn_closed(svc->worker);
        return;
    }
    if (status < 0) { /* idle_timeout, or a draining worker's grace ran out */
        struct sp_stream s;
        sp_stream_socket(&s, fd);
        echo_close(svc, &s);
        return;
    }
    echo_serve(svc, fd);
}

/* Echoes until the socket runs dry, then parks the connection fiber-less. */
static void echo_loop(struct service *svc, int fd, char *buf, size_t size)
{
    const struct echo_state *st = svc->state;
    struct worker_counters *c = st->counters;
    const struct echo_conf *conf = svc->conf;
    int64_t idle = conf->idle_timeout_ms ? conf->idle_timeout_ms : -1;
    bool dry = false;
    struct sp_stream s;

    sp_stream_socket(&s, fd);

    for (;;) {
        /* A short read emptied the socket: watch at once (io.h allows it). */
        ssize_t n = dry ? -EAGAIN : sp_stream_try_read(&s, buf, size);
        if (n == -EAGAIN) {
            int64_t wait = idle;
            /* A draining worker gives a quiet connection a short grace only. */
            if (worker_draining(svc->worker) && (wait < 0 || wait > WORKER_DRAIN_IDLE_MS))
                wait = WORKER_DRAIN_IDLE_MS;
            if (sp_iom_watch(st->iom, s.fd, wait, echo_ready, svc) == 0)
                return;
            break;
        }
        dry = n > 0 && (size_t)n < size;
        if (n <= 0)
            break;
        atomic_fetch_add(&c->bytes_in, (unsigned long long)n);
        /* A peer that stops reading gets idle_timeout to drain its window. */
        if (sp_stream_write(&s, buf, (size_t)n, idle) < 0)
            break;
        atomic_fetch_add(&c->bytes_out, (unsigned long long)n);
        atomic_fetch_add(&c->requests, 1);
    }
    echo_close(svc, &s);
}

/* The two frames, apart so that a small stack never reserves the large one
 * (a frame larger than the stack would jump over its guard page). */
static __attribute__((noinline)) void echo_on_large_stack(struct service *svc, int fd)
{
    char buf[ECHO_BUF];
    echo_loop(svc, fd, buf, sizeof(buf));
}

static __attribute__((noinline)) void echo_on_small_stack(struct service *svc, int fd)
{
    char buf[ECHO_BUF_SMALL];
    echo_loop(svc, fd, buf, sizeof(buf));
}

/* Runs on a fiber, with a batch buffer that fits the configured stack. */
static void echo_serve(struct service *svc, int fd)
{
    if (((const struct echo_state *)svc->state)->large_stack)
        echo_on_large_stack(svc, fd);
    else
        echo_on_small_stack(svc, fd);
}

/* ---- the definition --------------------------------------------------------- */

static int echo_init(struct service *svc, char *err, size_t errlen)
{
    struct echo_state *st = malloc(sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->iom = worker_iom(svc->worker);
    st->counters = worker_counters(svc->worker);
    st->large_stack = worker_config(svc->worker)->stack_size >= ECHO_LARGE_STACK;
    svc->state = st;
    return 0;
}

static void echo_fini(struct service *svc)
{
    free(svc->state);
    svc->state = NULL;
}

const struct sp_service_def sp_service_echo = {
    ECHO_CONF_DEF,
    .init = echo_init,
    .handle = echo_serve,
    .fini = echo_fini,
};
