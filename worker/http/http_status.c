/*
 * The status page: one JSON object describing this worker.
 *
 *   {"pid":..., "master_pid":..., "generation":..., "index":...,
 *    "connections":..., "accepted":..., "requests":..., "bytes_in":...,
 *    "bytes_out":..., "fibers_live":..., "fibers_pooled":...,
 *    "idle_connections":..., "uptime":..., "draining":false,
 *    "tls":{"handshakes":..., "handshake_failures":..., "renegotiations_refused":...,
 *           "ktls_handshakes":...}}
 *
 * uptime is in seconds (with milliseconds); idle_connections are those
 * waiting through a watch, holding no fiber.  Each request is answered by
 * whichever worker accepted the connection.  The tls counters are the
 * worker's, for every [http] section together.
 */
#include <stdio.h>
#include <unistd.h>

#include "http.h"
#include "http_tls.h"
#include "spindle/timer.h"

/* Written against spindle/http_handler.h alone, as a module's handler would
 * be; state is the worker. */
static int status_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    struct worker *w = state;
    struct worker_counters *wc = worker_counters(w);
    struct sp_iom_stats st;
    char body[1024];

    (void)req;
    sp_iom_stats(worker_iom(w), &st);
    uint64_t up_ms = (sp_now_ns() - worker_started_ns(w)) / 1000000ull;
    int n = snprintf(body, sizeof(body),
                     "{\"pid\":%ld,\"master_pid\":%ld,\"generation\":%u,\"index\":%u,"
                     "\"connections\":%lu,\"accepted\":%llu,\"requests\":%llu,\"bytes_in\":%llu,"
                     "\"bytes_out\":%llu,\"fibers_live\":%u,\"fibers_pooled\":%u,"
                     "\"idle_connections\":%u,\"uptime\":%llu.%03llu,\"draining\":%s,"
                     "\"tls\":{\"handshakes\":%llu,\"handshake_failures\":%llu,"
                     "\"renegotiations_refused\":%llu,\"ktls_handshakes\":%llu}}\n",
                     (long)getpid(), (long)getppid(), worker_generation(w), worker_index(w),
                     (unsigned long)atomic_load(&wc->connections),
                     (unsigned long long)atomic_load(&wc->accepted),
                     (unsigned long long)atomic_load(&wc->requests),
                     (unsigned long long)atomic_load(&wc->bytes_in),
                     (unsigned long long)atomic_load(&wc->bytes_out), st.fibers_live,
                     st.fibers_pooled, st.watches, (unsigned long long)(up_ms / 1000),
                     (unsigned long long)(up_ms % 1000), worker_draining(w) ? "true" : "false",
                     (unsigned long long)atomic_load(&http_tls_handshakes),
                     (unsigned long long)atomic_load(&http_tls_failures),
                     (unsigned long long)atomic_load(&http_tls_renegotiations),
                     (unsigned long long)atomic_load(&http_tls_ktls_handshakes));
    if (n < 0 || (size_t)n >= sizeof(body))
        return 0; /* not answered: 500 */
    if (sp_http_resp_header(resp, "Content-Type", "application/json") != 0 ||
        sp_http_resp_header(resp, "Cache-Control", "no-store") != 0)
        return 0;
    return sp_http_resp_body(resp, body, (size_t)n) == 0 ? 0 : -1;
}

const struct sp_http_handler_def http_status_handler = {.handle = status_handle};
