/*
 * The status page: one JSON object describing this worker.
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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "http_tls.h"
#include "spindle/timer.h"

/* Written against spindle/http_handler.h, as a module's handler would be,
 * with the proxy's counters besides; state is the service. */
static int status_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    const struct http_svc *hs = state;
    struct worker *w = hs->svc->worker;
    struct worker_counters *wc = worker_counters(w);
    struct sp_iom_stats st;
    size_t cap = 1024 + 32;
    int rc = 0;

    (void)req;
    for (size_t i = 0; i < hs->nproxies; i++)
        cap += http_proxy_status_size(hs->proxies[i]) + 1;
    char *body = malloc(cap);
    if (!body)
        return 0; /* not answered: 500 */
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
    memcpy(body + len, "}\n", 2);
    len += 2;
    if (sp_http_resp_header(resp, "Content-Type", "application/json") != 0 ||
        sp_http_resp_header(resp, "Cache-Control", "no-store") != 0)
        goto out;
    rc = sp_http_resp_body(resp, body, len) == 0 ? 0 : -1;
out:
    free(body);
    return rc;
}

const struct sp_http_handler_def http_status_handler = {.handle = status_handle};
