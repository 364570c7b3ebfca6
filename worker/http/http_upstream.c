/*
 * The upstream side of proxy lines (http_proxy.c): which server a request
 * goes to, their health, the connections kept open to them, and the
 * counters the status page shows.
 *
 * Connections: each scheduler thread keeps up to keepalive idle connections
 * per upstream (a socket belongs to the thread that first waits on it), the
 * newest reused first, and closes one found idle for keepalive_timeout, or
 * one with bytes or an end of stream pending when it is taken (the upstream
 * closed it).  A burst may leave up to keepalive more idle for keepalive_burst:
 * under a steady load with more requests in flight than keepalive, the next
 * burst reuses them instead of connecting again (nginx closes them at once
 * and reconnects a moment later; haproxy too purges its idle pools by age).  A reused connection
 * that the upstream closes before any byte of the answer (the upstream closed it just as it was
 * reused) is retried at once on another connection for an idempotent request.  A connection is
 * pooled again only after a complete answer whose framing allows it, with
 * nothing beyond the answer read.
 *
 * Balancing: smooth weighted round robin (nginx's), least_conn or a hash of
 * the client's address, over the servers not left out.  A server that has
 * failed max_fails times with no success between is left out for
 * fail_timeout (nginx's passive health).  Balancer and health are kept per
 * scheduler thread, as nginx keeps them per worker: no lock, no shared
 * memory.
 *
 * Active check (health_check): one fiber per upstream and worker GETs the
 * path from each server every interval on a new connection; its verdict is
 * read by every thread's balancer.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_proxy.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/net.h"
#include "spindle/timer.h"

/* ---- set-up --------------------------------------------------------------- */

struct http_proxy *http_proxy_new(const struct sp_upstream_conf *up, struct worker *w,
                                  unsigned threads, char *err, size_t errlen)
{
    struct http_proxy *px = calloc(1, sizeof(*px));
    if (!px)
        goto nomem;
    px->up = up;
    px->w = w;
    if (up->health_path) {
        px->sick = calloc(up->nservers, sizeof(*px->sick));
        px->checks_failed = calloc(up->nservers, sizeof(*px->checks_failed));
        if (!px->sick || !px->checks_failed)
            goto nomem;
    }
    px->threads = calloc(threads, sizeof(*px->threads));
    if (!px->threads)
        goto nomem;
    px->nthreads = threads;
    for (unsigned i = 0; i < threads; i++) {
        struct proxy_thread *th = &px->threads[i];
        th->peers = calloc(up->nservers, sizeof(*th->peers));
        th->idle = calloc(up->keepalive ? 2 * (size_t)up->keepalive : 1, sizeof(*th->idle));
        if (!th->peers || !th->idle)
            goto nomem;
    }
    return px;
nomem:
    http_proxy_free(px);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void http_proxy_free(struct http_proxy *px)
{
    if (!px)
        return;
    for (unsigned i = 0; px->threads && i < px->nthreads; i++) {
        struct proxy_thread *th = &px->threads[i];
        for (unsigned k = 0; k < th->nidle; k++)
            close(th->idle[k].fd);
        free(th->peers);
        free(th->idle);
    }
    free(px->threads);
    free((void *)px->sick);
    free((void *)px->checks_failed);
    free(px);
}

/* ---- the active check ----------------------------------------------------- */

/* One GET of health_path to server i on a new connection: true for a 2xx or
 * 3xx answer within connect_timeout and read_timeout. */
static bool health_probe(const struct http_proxy *px, unsigned i)
{
    const struct sp_upstream_conf *up = px->up;
    const struct sp_upstream_server *sv = &up->servers[i];
    struct sp_http_header hdrs[32];
    struct sp_http_response resp;
    char buf[2048];
    size_t len = 0;
    bool ok = false;

    int fd = socket(sv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int n = snprintf(buf, sizeof(buf),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: spindle-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     up->health_path, strncmp(sv->text, "unix:", 5) == 0 ? "localhost" : sv->text);
    if (n <= 0 || (size_t)n >= sizeof(buf) ||
        sp_connect(fd, (const struct sockaddr *)&sv->addr, sv->addrlen, up->connect_timeout_ms) <
            0 ||
        sp_write(fd, buf, (size_t)n, up->send_timeout_ms) < 0)
        goto out;
    for (;;) {
        ssize_t got = sp_read(fd, buf + len, sizeof(buf) - len, up->read_timeout_ms);
        if (got <= 0)
            goto out;
        len += (size_t)got;
        ssize_t h = sp_http_parse_response(buf, len, sizeof(buf), SP_HTTP_GET, &resp, hdrs, 32);
        if (h == SP_HTTP_INVALID)
            goto out;
        if (h > 0 && resp.status >= 200) {
            ok = resp.status < 400;
            goto out;
        }
        if (h > 0) { /* a 1xx: the final answer follows */
            memmove(buf, buf + h, len - (size_t)h);
            len -= (size_t)h;
        }
    }
out:
    sp_close(fd);
    return ok;
}

/* Checks every server each health_interval until the worker drains (the
 * scheduler then stops with this fiber asleep, which is fine: it holds
 * nothing). */
static void health_fiber(void *arg)
{
    struct http_proxy *px = arg;
    const struct sp_upstream_conf *up = px->up;

    while (!worker_draining(px->w)) {
        for (unsigned i = 0; i < up->nservers; i++) {
            bool ok = health_probe(px, i);
            if (!ok)
                COUNT(px->checks_failed[i]);
            atomic_store_explicit(&px->sick[i], !ok, memory_order_relaxed);
        }
        sp_sleep(up->health_interval_ms);
    }
}

int http_proxy_start(struct http_proxy *px)
{
    if (!px->up->health_path)
        return 0;
    return sp_iom_spawn(worker_iom(px->w), health_fiber, px);
}

/* ---- servers: balance and health ----------------------------------------- */

static bool peer_usable(const struct proxy_req *r, unsigned i, uint64_t tried, uint64_t now)
{
    return !((tried >> i) & 1) && r->th->peers[i].down_until <= now &&
           !(r->px->sick && atomic_load_explicit(&r->px->sick[i], memory_order_relaxed));
}

/* Smooth weighted round robin (nginx's) among the usable servers for which
 * among[] is true (NULL: all of them); -1 when none is. */
static int pick_rr(struct proxy_req *r, uint64_t tried, uint64_t now, const bool *among)
{
    const struct sp_upstream_conf *up = r->up;
    int64_t total = 0;
    int best = -1;

    for (unsigned i = 0; i < up->nservers; i++) {
        struct proxy_peer *p = &r->th->peers[i];
        if (!peer_usable(r, i, tried, now) || (among && !among[i]))
            continue;
        p->cw += up->servers[i].weight;
        total += up->servers[i].weight;
        if (best < 0 || p->cw > r->th->peers[best].cw)
            best = (int)i;
    }
    if (best >= 0)
        r->th->peers[best].cw -= total;
    return best;
}

/* The usable servers with the fewest requests in progress for their weight
 * (active / weight), ties broken by round robin, as nginx's least_conn. */
static int pick_least_conn(struct proxy_req *r, uint64_t tried, uint64_t now)
{
    const struct sp_upstream_conf *up = r->up;
    bool among[SP_UPSTREAM_MAX_SERVERS] = {false};
    int best = -1;

    for (unsigned i = 0; i < up->nservers; i++) {
        if (!peer_usable(r, i, tried, now))
            continue;
        /* a/wa < b/wb without division: a * wb < b * wa */
        if (best < 0 || (uint64_t)r->th->peers[i].active * up->servers[best].weight <
                            (uint64_t)r->th->peers[best].active * up->servers[i].weight)
            best = (int)i;
    }
    if (best < 0)
        return -1;
    for (unsigned i = 0; i < up->nservers; i++)
        among[i] = peer_usable(r, i, tried, now) &&
                   (uint64_t)r->th->peers[i].active * up->servers[best].weight ==
                       (uint64_t)r->th->peers[best].active * up->servers[i].weight;
    return pick_rr(r, tried, now, among);
}

/* The server the client's address hashes to, over the weights of all the
 * servers, so that a client keeps its server while the list does not
 * change; when that one is not usable, the hash is taken again (20 times at
 * most, then round robin), as nginx's hash $remote_addr. */
static int pick_hash(struct proxy_req *r, uint64_t tried, uint64_t now)
{
    const struct sp_upstream_conf *up = r->up;
    uint64_t total = 0, h;

    http_peer_name(r->c);
    h = http_hash(r->c->peer, strlen(r->c->peer));
    for (unsigned i = 0; i < up->nservers; i++)
        total += up->servers[i].weight;
    for (int round = 0; round < 20; round++) {
        uint64_t w = (h ^ (h >> 32)) % total;
        unsigned i = 0;
        while (w >= up->servers[i].weight)
            w -= up->servers[i++].weight;
        if (peer_usable(r, i, tried, now))
            return (int)i;
        h = http_hash((const char *)&h, sizeof(h));
    }
    return pick_rr(r, tried, now, NULL);
}

/* The next server for this request among those neither tried for it nor
 * marked down, by the upstream's balance; -1 when none is left. */
int http_upstream_pick(struct proxy_req *r, uint64_t tried, uint64_t now)
{
    switch (r->up->balance) {
    case SP_BALANCE_LEAST_CONN:
        return pick_least_conn(r, tried, now);
    case SP_BALANCE_HASH:
        return pick_hash(r, tried, now);
    default:
        return pick_rr(r, tried, now, NULL);
    }
}

/* A request in progress on server i (least_conn's count); one at a time. */
void http_upstream_hold(struct proxy_req *r, unsigned i)
{
    r->th->peers[i].active++;
    r->held = (int)i;
}

void http_upstream_release(struct proxy_req *r)
{
    if (r->held >= 0)
        r->th->peers[r->held].active--;
    r->held = -1;
}

/* Passive health, as nginx's: a server that has failed max_fails times
 * with no success in between is left out for fail_timeout, then given one
 * request, whose failure leaves it out again.  A lone server is never left
 * out: there would be nothing else to try. */
void http_upstream_failed(struct proxy_req *r, unsigned i)
{
    const struct sp_upstream_server *sv = &r->up->servers[i];
    struct proxy_peer *p = &r->th->peers[i];

    p->fails++;
    COUNT(p->failures);
    if (sv->max_fails && p->fails >= sv->max_fails && r->up->nservers > 1) {
        p->down_until = sp_now_ns() + ms_ns(sv->fail_timeout_ms);
        atomic_store_explicit(&p->down_at, p->down_until, memory_order_relaxed);
    }
}

void http_upstream_ok(struct proxy_req *r, unsigned i)
{
    r->th->peers[i].fails = 0;
}

/* ---- the pool ------------------------------------------------------------- */

static void pool_drop(struct proxy_thread *th, unsigned k)
{
    memmove(&th->idle[k], &th->idle[k + 1], (th->nidle - k - 1) * sizeof(th->idle[0]));
    th->nidle--;
    atomic_store_explicit(&th->pooled, th->nidle, memory_order_relaxed);
}

/* Closes the idle connections older than keepalive_timeout, and those
 * beyond keepalive older than keepalive_burst (the oldest come first). */
static void pool_expire(struct proxy_thread *th, const struct sp_upstream_conf *up, uint64_t now)
{
    uint64_t age = ms_ns(up->keepalive_timeout_ms);
    uint64_t burst = ms_ns(up->keepalive_burst_ms);
    unsigned k = 0;
    while (k < th->nidle && now - th->idle[k].since >= age)
        sp_close(th->idle[k++].fd);
    while (th->nidle - k > up->keepalive && now - th->idle[k].since >= burst)
        sp_close(th->idle[k++].fd);
    if (k > 0) {
        memmove(th->idle, th->idle + k, (th->nidle - k) * sizeof(th->idle[0]));
        th->nidle -= k;
        atomic_store_explicit(&th->pooled, th->nidle, memory_order_relaxed);
    }
}

/* An idle connection to server peer, newest first, or -1.  One that has
 * anything to read (an end of stream, stray bytes, an error) is closed:
 * the upstream is done with it.  Most often the scheduler knows without a
 * system call that nothing came (sp_idle_quiet), as nginx's keep-alive
 * pool learns it from a read event. */
int http_upstream_take(struct proxy_req *r, unsigned peer)
{
    struct proxy_thread *th = r->th;

    pool_expire(th, r->up, sp_now_ns());
    for (unsigned k = th->nidle; k-- > 0;) {
        if (th->idle[k].peer != peer)
            continue;
        int fd = th->idle[k].fd;
        pool_drop(th, k);
        if (sp_idle_quiet(fd) == 1)
            return fd;
        sp_close(fd);
    }
    return -1;
}

void http_upstream_put(struct proxy_req *r)
{
    struct proxy_thread *th = r->th;
    uint64_t now = sp_now_ns();

    pool_expire(th, r->up, now);
    if (r->up->keepalive == 0) {
        sp_close(r->fd);
    } else {
        unsigned cap = r->up->keepalive_burst_ms ? 2 * r->up->keepalive : r->up->keepalive;
        if (th->nidle == cap) {
            sp_close(th->idle[0].fd);
            pool_drop(th, 0);
        }
        th->idle[th->nidle++] = (struct proxy_idle){.fd = r->fd, .peer = r->peer, .since = now};
        atomic_store_explicit(&th->pooled, th->nidle, memory_order_relaxed);
    }
    r->fd = -1;
}

void http_upstream_close(struct proxy_req *r)
{
    if (r->fd >= 0)
        sp_close(r->fd);
    r->fd = -1;
}

/* A new connection to server peer.  Returns 0 or -errno. */
int http_upstream_connect(struct proxy_req *r, unsigned peer)
{
    const struct sp_upstream_server *sv = &r->up->servers[peer];
    int fd = socket(sv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sv->addr.ss_family != AF_UNIX)
        sp_net_set_nodelay(fd);
    int rc =
        sp_connect(fd, (const struct sockaddr *)&sv->addr, sv->addrlen, r->up->connect_timeout_ms);
    if (rc < 0) {
        sp_close(fd);
        return rc;
    }
    r->fd = fd;
    return 0;
}

/* ---- the status page ------------------------------------------------------ */

/* s as a JSON string's contents: '"' and '\\' escaped (a unix: path may
 * hold them; nothing else the loader accepts needs it). */
static size_t json_str(char *d, const char *s)
{
    size_t o = 0;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            d[o++] = '\\';
        d[o++] = *s;
    }
    return o;
}

size_t http_proxy_status_size(const struct http_proxy *px)
{
    return 256 + strlen(px->up->name) + px->up->nservers * (2 * 112 + 128);
}

size_t http_proxy_status(const struct http_proxy *px, char *d)
{
    const struct sp_upstream_conf *up = px->up;
    uint64_t req = 0, bad = 0, tmo = 0, idle = 0, now = sp_now_ns();
    size_t o = 0;

    for (unsigned i = 0; i < px->nthreads; i++) {
        req += READ(px->threads[i].requests);
        bad += READ(px->threads[i].bad_gateway);
        tmo += READ(px->threads[i].timeouts);
        idle += READ(px->threads[i].pooled);
    }
    o += (size_t)sprintf(d + o,
                         "\"%s\":{\"requests\":%" PRIu64 ",\"bad_gateway\":%" PRIu64
                         ",\"gateway_timeout\":%" PRIu64 ",\"idle\":%" PRIu64 ",\"servers\":[",
                         up->name, req, bad, tmo, idle);
    for (unsigned k = 0; k < up->nservers; k++) {
        uint64_t sreq = 0, fails = 0;
        unsigned down = 0;
        for (unsigned i = 0; i < px->nthreads; i++) {
            const struct proxy_peer *p = &px->threads[i].peers[k];
            sreq += READ(p->requests);
            fails += READ(p->failures);
            down += READ(p->down_at) > now;
        }
        o += (size_t)sprintf(d + o, "%s{\"server\":\"", k ? "," : "");
        o += json_str(d + o, up->servers[k].text);
        o += (size_t)sprintf(d + o,
                             "\",\"weight\":%u,\"requests\":%" PRIu64 ",\"fails\":%" PRIu64
                             ",\"down_threads\":%u",
                             up->servers[k].weight, sreq, fails, down);
        if (px->sick)
            o += (size_t)sprintf(d + o, ",\"checks_failed\":%" PRIu64 ",\"healthy\":%s",
                                 READ(px->checks_failed[k]), READ(px->sick[k]) ? "false" : "true");
        d[o++] = '}';
    }
    memcpy(d + o, "]}", 2);
    return o + 2;
}
