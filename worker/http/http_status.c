/*
 * The status page: one JSON object describing this worker, with the
 * counters of every worker from the memory the master shares (metrics.h);
 * the live HTML page (status.html) to a client that prefers text/html;
 * and the metrics page in Prometheus's text format.
 *
 *   {"pid":..., "master_pid":..., "generation":..., "index":...,
 *    "connections":..., "accepted":..., "requests":..., "bytes_in":...,
 *    "bytes_out":..., "fibers_live":..., "fibers_pooled":...,
 *    "idle_connections":..., "uptime":..., "draining":false, "proxy_protocol_refused":...,
 *    "tls":{"handshakes":..., "handshake_failures":..., "renegotiations_refused":...,
 *           "ktls_handshakes":...},
 *    "upstreams":{"app":{"requests":..., "bad_gateway":..., "gateway_timeout":...,
 *                        "idle":..., "servers":[{"server":"127.0.0.1:9001", "weight":2,
 *                        "requests":..., "fails":..., "down_threads":0}, ...]}}}
 *
 * uptime is in seconds (with milliseconds); idle_connections are those
 * waiting through a watch, holding no fiber.  The tls counters are the
 * worker's, for every [http] section together.  upstreams, for a service with
 * proxy lines: each upstream they name (http_proxy.c).  Each request is
 * answered by whichever worker accepted the connection.
 *
 * Then, from the shared counters (metrics_json, absent without them):
 *    "totals":{"generation":..., "reloads_ok":..., "reloads_failed":...,
 *              "respawns":..., "connections":..., "accepted":..., "requests":...,
 *              "bytes_in":..., "bytes_out":...},
 *    "workers":[{"index":0, "pid":..., "generation":..., "started":...,
 *                "respawns":..., "connections":..., ...}, ...],
 *    "reloads":[{"time":..., "generation":..., "ok":true, "reason":"..."}, ...]
 * Each worker index counts every process that ran with it (metrics.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "http_tls.h"
#include "spindle/timer.h"

/* The quality a client's Accept gives media type type ("text/html"): 0..1000,
 * -1 when the header does not name it. */
static int accept_q(const char *a, size_t n, const char *type)
{
    size_t tl = strlen(type);
    for (size_t i = 0; i < n;) {
        while (i < n && (a[i] == ' ' || a[i] == ','))
            i++;
        size_t start = i;
        while (i < n && a[i] != ',' && a[i] != ';' && a[i] != ' ')
            i++;
        bool match = i - start == tl && strncasecmp(a + start, type, tl) == 0;
        int q = 1000;
        /* Parameters up to the next element: only q matters. */
        while (i < n && a[i] != ',') {
            if ((a[i] == 'q' || a[i] == 'Q') && i + 1 < n && a[i + 1] == '=' &&
                (a[i - 1] == ';' || a[i - 1] == ' ')) {
                i += 2;
                q = 0;
                int scale = 1000;
                if (i < n && a[i] == '1')
                    q = 1000;
                for (i++; i < n && (a[i] == '.' || (a[i] >= '0' && a[i] <= '9')); i++)
                    if (a[i] != '.' && (scale /= 10) > 0)
                        q += (a[i] - '0') * scale;
                continue;
            }
            i++;
        }
        if (match)
            return q;
    }
    return -1;
}

/* A browser: text/html named, and preferred to application/json. */
static bool wants_html(struct sp_http_req *req)
{
    size_t n;
    const char *a = sp_http_req_header(req, "Accept", &n);
    if (!a)
        return false;
    int html = accept_q(a, n, "text/html");
    return html > 0 && html > accept_q(a, n, "application/json");
}

static int html_handle(struct sp_http_resp *resp)
{
    if (sp_http_resp_header(resp, "Content-Type", "text/html; charset=utf-8") != 0 ||
        sp_http_resp_header(resp, "Cache-Control", "no-store") != 0 ||
        sp_http_resp_header(resp, "Vary", "Accept") != 0)
        return -1;
    return sp_http_resp_body(resp, http_status_html, http_status_html_len) == 0 ? 0 : -1;
}

/* Written against spindle/http_handler.h, as a module's handler would be,
 * with the proxy's counters besides; state is the service. */
static int status_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    const struct http_svc *hs = state;
    struct worker *w = hs->svc->worker;
    struct worker_counters *wc = worker_counters(w);
    struct sp_iom_stats st;
    size_t cap = 1024 + 32, shared_len = 0;
    char *shared = NULL;
    int rc = 0;

    if (wants_html(req))
        return html_handle(resp);
    struct metrics_view *v = malloc(sizeof(*v));
    if (v && metrics_read(v) == 0)
        shared = metrics_json(v, &shared_len);
    free(v);
    cap += shared_len + 1;
    for (size_t i = 0; i < hs->nproxies; i++)
        cap += http_proxy_status_size(hs->proxies[i]) + 1;
    char *body = malloc(cap);
    if (!body) {
        free(shared);
        return 0; /* not answered: 500 */
    }
    sp_iom_stats(worker_iom(w), &st);
    uint64_t up_ms = (sp_now_ns() - worker_started_ns(w)) / 1000000ull;
    int n = snprintf(body, 1024,
                     "{\"pid\":%ld,\"master_pid\":%ld,\"generation\":%u,\"index\":%u,"
                     "\"connections\":%lu,\"accepted\":%llu,\"requests\":%llu,\"bytes_in\":%llu,"
                     "\"bytes_out\":%llu,\"fibers_live\":%u,\"fibers_pooled\":%u,"
                     "\"idle_connections\":%u,\"uptime\":%llu.%03llu,\"draining\":%s,"
                     "\"proxy_protocol_refused\":%llu,"
                     "\"tls\":{\"handshakes\":%llu,\"handshake_failures\":%llu,"
                     "\"renegotiations_refused\":%llu,\"ktls_handshakes\":%llu}",
                     (long)getpid(), (long)getppid(), worker_generation(w), worker_index(w),
                     (unsigned long)atomic_load(&wc->connections),
                     (unsigned long long)atomic_load(&wc->accepted),
                     (unsigned long long)atomic_load(&wc->requests),
                     (unsigned long long)atomic_load(&wc->bytes_in),
                     (unsigned long long)atomic_load(&wc->bytes_out), st.fibers_live,
                     st.fibers_pooled, st.watches, (unsigned long long)(up_ms / 1000),
                     (unsigned long long)(up_ms % 1000), worker_draining(w) ? "true" : "false",
                     worker_proxy_refused(w), (unsigned long long)atomic_load(&http_tls_handshakes),
                     (unsigned long long)atomic_load(&http_tls_failures),
                     (unsigned long long)atomic_load(&http_tls_renegotiations),
                     (unsigned long long)atomic_load(&http_tls_ktls_handshakes));
    if (n < 0 || n >= 1024)
        goto out; /* not answered: 500 */
    size_t len = (size_t)n;
    if (hs->nproxies) {
        memcpy(body + len, ",\"upstreams\":{", 14);
        len += 14;
        for (size_t i = 0; i < hs->nproxies; i++) {
            if (i)
                body[len++] = ',';
            len += http_proxy_status(hs->proxies[i], body + len);
        }
        body[len++] = '}';
    }
    if (shared) {
        body[len++] = ',';
        memcpy(body + len, shared, shared_len);
        len += shared_len;
    }
    memcpy(body + len, "}\n", 2);
    len += 2;
    if (sp_http_resp_header(resp, "Content-Type", "application/json") != 0 ||
        sp_http_resp_header(resp, "Cache-Control", "no-store") != 0 ||
        sp_http_resp_header(resp, "Vary", "Accept") != 0)
        goto out;
    rc = sp_http_resp_body(resp, body, len) == 0 ? 0 : -1;
out:
    free(shared);
    free(body);
    return rc;
}

const struct sp_http_handler_def http_status_handler = {.handle = status_handle};

/* The metrics page: every worker's counters, whichever answers. */
static int metrics_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    size_t len = 0;
    char *body = NULL;
    int rc = -1;

    (void)req;
    (void)state;
    struct metrics_view *v = malloc(sizeof(*v));
    if (!v)
        return 0; /* not answered: 500 */
    if (metrics_read(v) != 0) {
        free(v);
        return sp_http_resp_status(resp, 503) == 0 &&
                       sp_http_resp_body(resp, "no shared counters\n", 19) == 0
                   ? 0
                   : -1;
    }
    body = metrics_format(v, &len);
    free(v);
    if (!body)
        return 0;
    if (sp_http_resp_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8") ==
            0 &&
        sp_http_resp_header(resp, "Cache-Control", "no-store") == 0)
        rc = sp_http_resp_body(resp, body, len) == 0 ? 0 : -1;
    free(body);
    return rc;
}

const struct sp_http_handler_def http_metrics_handler = {.handle = metrics_handle};
