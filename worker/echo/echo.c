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
    struct worker_counters *c = worker_counters(svc->worker);
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
            if (sp_iom_watch(worker_iom(svc->worker), s.fd, wait, echo_ready, svc) == 0)
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
    if (worker_config(svc->worker)->stack_size >= ECHO_LARGE_STACK)
        echo_on_large_stack(svc, fd);
    else
        echo_on_small_stack(svc, fd);
}

/* ---- the definition --------------------------------------------------------- */

/* The echo service holds no state beyond its connections' stacks: nothing to
 * build at init or free at exit. */
const struct sp_service_def sp_service_echo = {
    ECHO_CONF_DEF,
    .handle = echo_serve,
};
