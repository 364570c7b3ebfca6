/*
 * The shared counters (metrics.h): the region, its records, a consistent
 * snapshot of it, and the metrics page in Prometheus's text format.
 *
 * Writers: each worker adds to its own process record (relaxed atomics:
 * nothing orders one counter against another); the master alone takes and
 * folds records, enters names and records reloads, on its one thread.
 * Readers: any worker answering the metrics or status page.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "spindle/log.h"

#define RELAXED memory_order_relaxed

#define MS 1000000ull
const uint64_t metrics_bounds_ns[METRICS_BUCKETS] = {
    1 * MS,   5 * MS,   10 * MS,   25 * MS,   50 * MS,   100 * MS,
    250 * MS, 500 * MS, 1000 * MS, 2500 * MS, 5000 * MS, 10000 * MS,
};

/* The bounds as the page writes them (le="..."), in seconds. */
static const char *const bound_text[METRICS_BUCKETS] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

struct metrics_shm *metrics_region;

/* ---- the master's side ---------------------------------------------------- */

int metrics_map(void)
{
    if (metrics_region)
        return 0;
    /* Anonymous shared pages are zero and cost memory only once touched:
     * a worker touches its own record and the names it counts. */
    void *p = mmap(NULL, sizeof(struct metrics_shm), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    metrics_region = p;
    metrics_region->master_pid = getpid();
    metrics_region->master_started = time(NULL);
    return 0;
}

static int name_find(const char *name)
{
    unsigned n = atomic_load_explicit(&metrics_region->nnames, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(metrics_region->names[i], name) == 0)
            return (int)i;
    return -1;
}

void metrics_add_names(const struct sp_config *cfg)
{
    struct metrics_shm *r = metrics_region;
    if (!r)
        return;
    for (unsigned i = 0; i < cfg->nservices; i++) {
        const struct sp_service_conf *s = &cfg->services[i];
        if (strcmp(s->def->name, "http") != 0 || name_find(s->name) >= 0)
            continue;
        unsigned n = atomic_load_explicit(&r->nnames, RELAXED);
        if (n == METRICS_SERVICES || strlen(s->name) >= METRICS_NAME_MAX) {
            sp_log_warn("metrics: no latency histogram for [http %s]: %s", s->name,
                        n == METRICS_SERVICES ? "the table of service names is full"
                                              : "the name is too long");
            continue;
        }
        snprintf(r->names[n], METRICS_NAME_MAX, "%s", s->name);
        /* The name is complete before a reader can see it counted. */
        atomic_store_explicit(&r->nnames, n + 1, memory_order_release);
    }
}

static void svc_zero(struct metrics_svc *s)
{
    for (unsigned b = 0; b <= METRICS_BUCKETS; b++)
        atomic_store_explicit(&s->bucket[b], 0, RELAXED);
    atomic_store_explicit(&s->sum_ns, 0, RELAXED);
    atomic_store_explicit(&s->status_4xx, 0, RELAXED);
    atomic_store_explicit(&s->status_5xx, 0, RELAXED);
}

int metrics_proc_take(unsigned generation, unsigned index)
{
    struct metrics_shm *r = metrics_region;
    if (!r || index >= SP_CONFIG_MAX_WORKERS)
        return -1;
    for (int p = 0; p < METRICS_PROCS; p++) {
        struct metrics_proc *rec = &r->procs[p];
        if (atomic_load_explicit(&rec->used, RELAXED))
            continue;
        struct worker_counters *c = &rec->n.c;
        atomic_store_explicit(&c->connections, 0, RELAXED);
        atomic_store_explicit(&c->accepted, 0, RELAXED);
        atomic_store_explicit(&c->requests, 0, RELAXED);
        atomic_store_explicit(&c->bytes_in, 0, RELAXED);
        atomic_store_explicit(&c->bytes_out, 0, RELAXED);
        for (unsigned s = 0; s < METRICS_SERVICES; s++)
            svc_zero(&rec->n.svc[s]);
        atomic_store_explicit(&rec->pid, 0, RELAXED);
        rec->generation = generation;
        rec->index = index;
        rec->started = time(NULL);
        atomic_store_explicit(&r->slots[index].seen, 1, RELAXED);
        /* Zeroed before a reader counts it. */
        atomic_store_explicit(&rec->used, 1, memory_order_release);
        return p;
    }
    sp_log_warn("metrics: all %d process records in use; worker %u (generation %u) is not counted",
                METRICS_PROCS, index, generation);
    return -1;
}

void metrics_proc_pid(int p, pid_t pid)
{
    if (metrics_region && p >= 0 && p < METRICS_PROCS)
        atomic_store_explicit(&metrics_region->procs[p].pid, pid, RELAXED);
}

static void add(atomic_ullong *to, atomic_ullong *from)
{
    atomic_fetch_add_explicit(to, atomic_load_explicit(from, RELAXED), RELAXED);
}

void metrics_proc_fold(int p)
{
    struct metrics_shm *r = metrics_region;
    if (!r || p < 0 || p >= METRICS_PROCS)
        return;
    struct metrics_proc *rec = &r->procs[p];
    struct metrics_counts *past = &r->slots[rec->index].past;

    atomic_fetch_add_explicit(&r->seq, 1, memory_order_acq_rel);
    add(&past->c.accepted, &rec->n.c.accepted);
    add(&past->c.requests, &rec->n.c.requests);
    add(&past->c.bytes_in, &rec->n.c.bytes_in);
    add(&past->c.bytes_out, &rec->n.c.bytes_out);
    unsigned nn = atomic_load_explicit(&r->nnames, RELAXED);
    for (unsigned s = 0; s < nn; s++) {
        for (unsigned b = 0; b <= METRICS_BUCKETS; b++)
            add(&past->svc[s].bucket[b], &rec->n.svc[s].bucket[b]);
        add(&past->svc[s].sum_ns, &rec->n.svc[s].sum_ns);
        add(&past->svc[s].status_4xx, &rec->n.svc[s].status_4xx);
        add(&past->svc[s].status_5xx, &rec->n.svc[s].status_5xx);
    }
    atomic_store_explicit(&rec->used, 0, RELAXED);
    atomic_fetch_add_explicit(&r->seq, 1, memory_order_release);
}

void metrics_set_generation(unsigned gen)
{
    if (metrics_region)
        atomic_store_explicit(&metrics_region->generation, gen, RELAXED);
}

void metrics_respawned(unsigned index)
{
    if (metrics_region && index < SP_CONFIG_MAX_WORKERS)
        atomic_fetch_add_explicit(&metrics_region->slots[index].respawns, 1, RELAXED);
}

void metrics_reload_done(unsigned generation, bool ok, const char *reason)
{
    struct metrics_shm *r = metrics_region;
    if (!r)
        return;
    unsigned n = atomic_load_explicit(&r->nreloads, RELAXED);
    struct metrics_reload *e = &r->reloads[n % METRICS_RELOADS];
    /* Under the sequence count: a reader never copies a half-written entry. */
    atomic_fetch_add_explicit(&r->seq, 1, memory_order_acq_rel);
    e->time = time(NULL);
    e->generation = generation;
    e->ok = ok;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    atomic_store_explicit(&r->nreloads, n + 1, RELAXED);
    atomic_fetch_add_explicit(ok ? &r->reloads_ok : &r->reloads_failed, 1, RELAXED);
    atomic_fetch_add_explicit(&r->seq, 1, memory_order_release);
}

/* ---- the workers' side ------------------------------------------------------ */

struct worker_counters *metrics_proc_counters(int p)
{
    if (!metrics_region || p < 0 || p >= METRICS_PROCS)
        return NULL;
    return &metrics_region->procs[p].n.c;
}

struct metrics_svc *metrics_proc_svc(int p, const char *name)
{
    if (!metrics_region || p < 0 || p >= METRICS_PROCS)
        return NULL;
    int i = name_find(name);
    return i < 0 ? NULL : &metrics_region->procs[p].n.svc[i];
}

static uint64_t get(atomic_ullong *a)
{
    return atomic_load_explicit(a, RELAXED);
}

/* Adds counts c (live: with its connections) to view worker w. */
static void view_add(struct metrics_view_worker *w, struct metrics_counts *c, unsigned nnames,
                     bool live)
{
    if (live)
        w->connections += atomic_load_explicit(&c->c.connections, RELAXED);
    w->accepted += get(&c->c.accepted);
    w->requests += get(&c->c.requests);
    w->bytes_in += get(&c->c.bytes_in);
    w->bytes_out += get(&c->c.bytes_out);
    for (unsigned s = 0; s < nnames; s++) {
        struct metrics_view_svc *v = &w->svc[s];
        for (unsigned b = 0; b <= METRICS_BUCKETS; b++) {
            uint64_t k = get(&c->svc[s].bucket[b]);
            v->bucket[b] += k;
            v->count += k;
        }
        v->sum_ns += get(&c->svc[s].sum_ns);
        v->status_4xx += get(&c->svc[s].status_4xx);
        v->status_5xx += get(&c->svc[s].status_5xx);
    }
}

static void view_sum(struct metrics_view_worker *to, const struct metrics_view_worker *w,
                     unsigned nnames)
{
    to->respawns += w->respawns;
    to->connections += w->connections;
    to->accepted += w->accepted;
    to->requests += w->requests;
    to->bytes_in += w->bytes_in;
    to->bytes_out += w->bytes_out;
    for (unsigned s = 0; s < nnames; s++) {
        for (unsigned b = 0; b <= METRICS_BUCKETS; b++)
            to->svc[s].bucket[b] += w->svc[s].bucket[b];
        to->svc[s].sum_ns += w->svc[s].sum_ns;
        to->svc[s].count += w->svc[s].count;
        to->svc[s].status_4xx += w->svc[s].status_4xx;
        to->svc[s].status_5xx += w->svc[s].status_5xx;
    }
}

/* One pass over the region; the caller checks the sequence count. */
static void view_fill(struct metrics_view *v, struct metrics_shm *r)
{
    memset(v, 0, sizeof(*v));
    v->nnames = atomic_load_explicit(&r->nnames, memory_order_acquire);
    v->generation = atomic_load_explicit(&r->generation, RELAXED);
    v->reloads_ok = get(&r->reloads_ok);
    v->reloads_failed = get(&r->reloads_failed);
    for (unsigned i = 0; i < SP_CONFIG_MAX_WORKERS; i++) {
        struct metrics_slot *sl = &r->slots[i];
        if (!atomic_load_explicit(&sl->seen, RELAXED))
            continue;
        v->workers[i].seen = true;
        v->workers[i].respawns = get(&sl->respawns);
        view_add(&v->workers[i], &sl->past, v->nnames, false);
        v->nworkers = i + 1;
    }
    for (unsigned p = 0; p < METRICS_PROCS; p++) {
        struct metrics_proc *rec = &r->procs[p];
        if (!atomic_load_explicit(&rec->used, memory_order_acquire))
            continue;
        struct metrics_view_worker *w = &v->workers[rec->index];
        view_add(w, &rec->n, v->nnames, true);
        pid_t pid = atomic_load_explicit(&rec->pid, RELAXED);
        if (pid > 0 && rec->generation >= w->generation) {
            w->pid = pid;
            w->generation = rec->generation;
            w->started = rec->started;
        }
    }
    unsigned nr = atomic_load_explicit(&r->nreloads, RELAXED);
    v->nreloads = nr < METRICS_RELOADS ? nr : METRICS_RELOADS;
    for (unsigned k = 0; k < v->nreloads; k++)
        v->reloads[k] = r->reloads[(nr - v->nreloads + k) % METRICS_RELOADS];
    for (unsigned i = 0; i < v->nworkers; i++)
        view_sum(&v->total, &v->workers[i], v->nnames);
    v->total.pid = r->master_pid;
    v->total.generation = v->generation;
    v->total.started = r->master_started;
}

int metrics_read(struct metrics_view *v)
{
    struct metrics_shm *r = metrics_region;
    if (!r)
        return -ENODEV;
    /* The master folds seldom and quickly; a few tries always suffice, and
     * a reader that still loses shows one pass rather than wait. */
    for (int tries = 0; tries < 100; tries++) {
        unsigned s0 = atomic_load_explicit(&r->seq, memory_order_acquire);
        if (s0 & 1) {
            sched_yield();
            continue;
        }
        view_fill(v, r);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->seq, RELAXED) == s0)
            return 0;
    }
    view_fill(v, r);
    return 0;
}

/* ---- the page ------------------------------------------------------------ */

struct out {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        if (o->failed)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter or gauge per worker index, read at offset off of a view worker. */
static void per_worker(struct out *o, const struct metrics_view *v, const char *name,
                       const char *type, const char *help, size_t off)
{
    family(o, name, type, help);
    for (unsigned i = 0; i < v->nworkers; i++) {
        if (!v->workers[i].seen)
            continue;
        uint64_t x;
        memcpy(&x, (const char *)&v->workers[i] + off, sizeof(x));
        put(o, "%s{worker=\"%u\"} %" PRIu64 "\n", name, i, x);
    }
}

#define W(field) offsetof(struct metrics_view_worker, field)

/* Service names are section names (letters, digits, '_', '-', '.'): label
 * values that need no escaping. */
static void histograms(struct out *o, const struct metrics_view *v)
{
    const char *h = "spindle_request_duration_seconds";
    family(o, h, "histogram", "HTTP requests by the time they took to answer.");
    for (unsigned s = 0; s < v->nnames; s++) {
        if (v->total.svc[s].count == 0) /* a name without requests yet */
            continue;
        const char *name = metrics_region->names[s];
        for (unsigned i = 0; i < v->nworkers; i++) {
            const struct metrics_view_svc *x = &v->workers[i].svc[s];
            if (!v->workers[i].seen)
                continue;
            uint64_t cum = 0;
            for (unsigned b = 0; b < METRICS_BUCKETS; b++) {
                cum += x->bucket[b];
                put(o, "%s_bucket{service=\"%s\",worker=\"%u\",le=\"%s\"} %" PRIu64 "\n", h, name,
                    i, bound_text[b], cum);
            }
            put(o, "%s_bucket{service=\"%s\",worker=\"%u\",le=\"+Inf\"} %" PRIu64 "\n", h, name, i,
                x->count);
            put(o, "%s_sum{service=\"%s\",worker=\"%u\"} %" PRIu64 ".%09" PRIu64 "\n", h, name, i,
                x->sum_ns / 1000000000, x->sum_ns % 1000000000);
            put(o, "%s_count{service=\"%s\",worker=\"%u\"} %" PRIu64 "\n", h, name, i, x->count);
        }
    }
    family(o, "spindle_http_errors_total", "counter", "HTTP answers with a 4xx or 5xx status.");
    for (unsigned s = 0; s < v->nnames; s++) {
        if (v->total.svc[s].count == 0)
            continue;
        for (unsigned i = 0; i < v->nworkers; i++) {
            const struct metrics_view_svc *x = &v->workers[i].svc[s];
            if (!v->workers[i].seen)
                continue;
            put(o,
                "spindle_http_errors_total{service=\"%s\",worker=\"%u\",class=\"4xx\"} %" PRIu64
                "\n"
                "spindle_http_errors_total{service=\"%s\",worker=\"%u\",class=\"5xx\"} %" PRIu64
                "\n",
                metrics_region->names[s], i, x->status_4xx, metrics_region->names[s], i,
                x->status_5xx);
        }
    }
}

char *metrics_format(const struct metrics_view *v, size_t *len)
{
    struct out o = {.cap = 16384};
    o.p = malloc(o.cap);
    if (!o.p)
        return NULL;
    family(&o, "spindle_up", "gauge", "1 while spindle answers.");
    put(&o, "spindle_up 1\n");
    family(&o, "spindle_start_time_seconds", "gauge", "When the master started, in unix seconds.");
    put(&o, "spindle_start_time_seconds %" PRId64 "\n", v->total.started);
    family(&o, "spindle_generation", "gauge", "The configuration generation the master runs.");
    put(&o, "spindle_generation %u\n", v->generation);
    family(&o, "spindle_reloads_total", "counter", "Reloads, by outcome.");
    put(&o, "spindle_reloads_total{result=\"ok\"} %" PRIu64 "\n", v->reloads_ok);
    put(&o, "spindle_reloads_total{result=\"failed\"} %" PRIu64 "\n", v->reloads_failed);
    /* A family's lines stay together (the text format's rule). */
    family(&o, "spindle_worker_generation", "gauge",
           "The generation of the worker's newest process.");
    for (unsigned i = 0; i < v->nworkers; i++)
        if (v->workers[i].seen && v->workers[i].pid > 0)
            put(&o, "spindle_worker_generation{worker=\"%u\"} %u\n", i, v->workers[i].generation);
    family(&o, "spindle_worker_start_time_seconds", "gauge",
           "When the worker's newest process started, in unix seconds.");
    for (unsigned i = 0; i < v->nworkers; i++)
        if (v->workers[i].seen && v->workers[i].pid > 0)
            put(&o, "spindle_worker_start_time_seconds{worker=\"%u\"} %" PRId64 "\n", i,
                v->workers[i].started);
    per_worker(&o, v, "spindle_worker_respawns_total", "counter",
               "Times the worker died and was started again.", W(respawns));
    per_worker(&o, v, "spindle_connections", "gauge", "Connections open now.", W(connections));
    per_worker(&o, v, "spindle_connections_accepted_total", "counter", "Connections accepted.",
               W(accepted));
    per_worker(&o, v, "spindle_requests_total", "counter", "Requests answered (every service).",
               W(requests));
    per_worker(&o, v, "spindle_bytes_received_total", "counter", "Bytes read from clients.",
               W(bytes_in));
    per_worker(&o, v, "spindle_bytes_sent_total", "counter", "Bytes written to clients.",
               W(bytes_out));
    histograms(&o, v);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}

/* s as a JSON string's contents: quotes, backslashes and control bytes escaped. */
static void put_json_string(struct out *o, const char *s)
{
    put(o, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(o, "\\%c", ch);
        else if (ch < 0x20)
            put(o, "\\u%04x", ch);
        else
            put(o, "%c", ch);
    }
    put(o, "\"");
}

static void json_counts(struct out *o, const struct metrics_view_worker *w)
{
    put(o,
        "\"respawns\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"accepted\":%" PRIu64
        ",\"requests\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64,
        w->respawns, w->connections, w->accepted, w->requests, w->bytes_in, w->bytes_out);
}

char *metrics_json(const struct metrics_view *v, size_t *len)
{
    struct out o = {.cap = 4096};
    o.p = malloc(o.cap);
    if (!o.p)
        return NULL;
    put(&o,
        "\"totals\":{\"generation\":%u,\"reloads_ok\":%" PRIu64 ",\"reloads_failed\":%" PRIu64 ",",
        v->generation, v->reloads_ok, v->reloads_failed);
    json_counts(&o, &v->total);
    put(&o, "},\"workers\":[");
    bool first = true;
    for (unsigned i = 0; i < v->nworkers; i++) {
        const struct metrics_view_worker *w = &v->workers[i];
        if (!w->seen)
            continue;
        put(&o, "%s{\"index\":%u,\"pid\":%ld,\"generation\":%u,\"started\":%" PRId64 ",",
            first ? "" : ",", i, (long)w->pid, w->generation, w->started);
        json_counts(&o, w);
        put(&o, "}");
        first = false;
    }
    put(&o, "],\"reloads\":[");
    for (unsigned k = 0; k < v->nreloads; k++) {
        const struct metrics_reload *e = &v->reloads[k];
        put(&o, "%s{\"time\":%" PRId64 ",\"generation\":%u,\"ok\":%s,\"reason\":", k ? "," : "",
            e->time, e->generation, e->ok ? "true" : "false");
        put_json_string(&o, e->reason);
        put(&o, "}");
    }
    put(&o, "]");
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}
