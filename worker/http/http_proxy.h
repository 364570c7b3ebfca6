/*
 * The reverse proxy's private half, shared by http_proxy.c (a request
 * forwarded and its answer streamed back) and http_upstream.c (balance,
 * health, the keep-alive pools, the counters).  http.h has what the rest of
 * the service calls.
 */
#ifndef SPINDLE_WORKER_HTTP_PROXY_H
#define SPINDLE_WORKER_HTTP_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "spindle/config.h"
#include "spindle/http_response.h"

#define PROXY_BUF       16384 /* the answer's buffer, and the limit of its head */
#define PROXY_BODY_BUF  16384 /* the request body's buffer */
#define PROXY_CONN_HDRS 16    /* header names a Connection line may list */
#define PROXY_CHUNK_MAX 20    /* "%zx\r\n" of a chunk's size */

/* Counters are written by their thread only and read by the status page
 * from any thread: relaxed atomics, one plain add each on x86-64. */
#define COUNT(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define READ(x)  atomic_load_explicit(&(x), memory_order_relaxed)

struct proxy_peer {
    int64_t cw;                /* smooth weighted round robin's current weight */
    unsigned active;           /* requests in progress on it (least_conn) */
    unsigned fails;            /* since the last success */
    uint64_t down_until;       /* left out until then */
    _Atomic uint64_t requests; /* sent to it (retries included) */
    _Atomic uint64_t failures; /* counted against it (passive health) */
    _Atomic uint64_t down_at;  /* down_until, for the status page */
};

struct proxy_idle {
    int fd;
    unsigned peer;
    uint64_t since; /* sp_now_ns() when it was pooled */
};

/* One scheduler thread's share: only its own fibers touch it. */
struct proxy_thread {
    _Atomic uint64_t requests;    /* proxied */
    _Atomic uint64_t bad_gateway; /* answered 502 */
    _Atomic uint64_t timeouts;    /* answered 504 */
    _Atomic unsigned pooled;      /* nidle, for the status page */
    struct proxy_peer *peers;
    struct proxy_idle *idle; /* oldest first, 2 * keepalive entries */
    unsigned nidle;
};

struct http_proxy {
    const struct sp_upstream_conf *up;
    struct proxy_thread *threads;
    unsigned nthreads;
    struct worker *w;
    /* The active check's verdict per server, written by its fiber, read by
     * every thread's balancer. */
    _Atomic bool *sick;
    _Atomic uint64_t *checks_failed;
};

/* One request on its way through the proxy. */
struct proxy_req {
    struct http_conn *c;
    struct http_txn *t;
    const struct sp_upstream_conf *up;
    struct http_proxy *px;
    struct proxy_thread *th;
    int fd; /* the upstream connection, -1 when none */
    unsigned peer;
    int held;          /* the server peer_hold() counts this request on, or -1 */
    bool reused;       /* fd came from the pool */
    bool body_started; /* some of the client's body was read: no retry */
    bool idempotent;
    const char *upgrade; /* the client's Upgrade value, when it asks to switch */
    size_t upgrade_len;
    const char *conn_names[PROXY_CONN_HDRS]; /* the client's Connection tokens */
    size_t conn_lens[PROXY_CONN_HDRS];
    unsigned nconn;
    size_t rlen; /* buf[0..rlen) holds what was read of the answer */
    struct sp_http_response resp;
    struct sp_http_header hdrs[HTTP_MAX_HDRS];
    char buf[PROXY_BUF];
    char body[PROXY_CHUNK_MAX + PROXY_BODY_BUF + 2];
};

static inline uint64_t ms_ns(int64_t ms)
{
    return (uint64_t)ms * 1000000ull;
}

/* ---- http_upstream.c ----------------------------------------------------- */

/* The next server for r among those neither in tried (bits by index) nor
 * left out by health, by the upstream's balance; -1 when none is left. */
int http_upstream_pick(struct proxy_req *r, uint64_t tried, uint64_t now);

/* Counts r as in progress on server i (least_conn), instead of the server
 * it was counted on before; release ends that. */
void http_upstream_hold(struct proxy_req *r, unsigned i);
void http_upstream_release(struct proxy_req *r);

/* Passive health: a failure, a success of server i. */
void http_upstream_failed(struct proxy_req *r, unsigned i);
void http_upstream_ok(struct proxy_req *r, unsigned i);

/* An idle pooled connection to server peer, or -1. */
int http_upstream_take(struct proxy_req *r, unsigned peer);

/* Pools r->fd (a complete answer read, nothing more) or closes it when the
 * pool is full; r->fd is -1 after.  close: closes r->fd if open. */
void http_upstream_put(struct proxy_req *r);
void http_upstream_close(struct proxy_req *r);

/* A new connection to server peer in r->fd.  Returns 0 or -errno. */
int http_upstream_connect(struct proxy_req *r, unsigned peer);

#endif
