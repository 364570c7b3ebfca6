/*
 * Counters in memory the master shares with its workers, as nginx's
 * stub_status keeps them: one MAP_SHARED | MAP_ANONYMOUS region the master
 * maps before it forks any worker and keeps for its whole life, so the
 * counts outlive a worker's respawn and a reload, and any worker can report
 * every worker's (the metrics page, the status page's totals).
 *
 * Two kinds of record:
 *   - a process record per live worker process (procs[]): its pid,
 *     generation, index and start time, and its counts.  The master takes a
 *     free one before it forks the worker and folds it into the slot of its
 *     index once the process is reaped; the worker adds to it directly (its
 *     struct worker_counters is the record's), with relaxed atomics.
 *   - a slot per worker index (slots[]): the counts of the index's processes
 *     that have exited ("past"), and how often the index was respawned.
 * A worker index's counts are its slot's past plus the records of its live
 * processes (an old generation's draining worker and the new one may both
 * run).  Neither ever goes down, so neither does a sum of them: the
 * _total counters of the metrics page stay monotonic across respawns and
 * reloads.  The master folds a record under a sequence count (odd while it
 * folds); a reader that saw it change reads again, so a fold never shows
 * twice or not at all.  The gauge of open connections is the live records'
 * alone: a process's connections end with it.
 *
 * HTTP services keep a latency histogram and error counts per service,
 * keyed by the section's name in a table of METRICS_SERVICES names that the
 * master fills as configurations load (and never empties: a name keeps its
 * entry across reloads).  A service whose name finds the table full is
 * counted in the worker's totals but has no histogram (logged once).
 *
 * A binary upgrade (USR2) starts a new master with a new region: its
 * counters start again from zero, as a restarted server's would.
 */
#ifndef SPINDLE_WORKER_METRICS_H
#define SPINDLE_WORKER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spindle/config.h"
#include "spindle/worker.h"

#define METRICS_SERVICES   64  /* service names with a histogram */
#define METRICS_NAME_MAX   65  /* a section name (at most 64 bytes) and its NUL */
#define METRICS_PROCS      512 /* live worker processes, every generation together */
#define METRICS_RELOADS    10  /* reload outcomes kept */
#define METRICS_REASON_MAX 200
#define METRICS_BUCKETS    12 /* finite upper bounds, below */

/* The buckets' upper bounds in nanoseconds: 1ms .. 10s, then +Inf. */
extern const uint64_t metrics_bounds_ns[METRICS_BUCKETS];

/* One HTTP service's requests in one record.  bucket[i] counts the requests
 * that took at most metrics_bounds_ns[i] and more than the bound before
 * (bucket[METRICS_BUCKETS]: more than the last); the page makes them
 * cumulative, and their sum is the count. */
struct metrics_svc {
    atomic_ullong bucket[METRICS_BUCKETS + 1];
    atomic_ullong sum_ns; /* wraps after 584 years of request time */
    atomic_ullong status_4xx, status_5xx;
};

struct metrics_counts {
    struct worker_counters c; /* connections: live records only */
    struct metrics_svc svc[METRICS_SERVICES];
};

struct metrics_proc {
    atomic_int used; /* set by the master before the fork, cleared by its fold */
    atomic_int pid;  /* set by the master after the fork */
    unsigned generation, index;
    int64_t started; /* unix seconds */
    struct metrics_counts n;
};

struct metrics_slot {
    atomic_ullong respawns; /* the index's worker died and was started again */
    atomic_int seen;        /* a worker ever ran with this index */
    struct metrics_counts past;
};

struct metrics_reload {
    int64_t time; /* unix seconds; 0: none */
    unsigned generation;
    bool ok;
    char reason[METRICS_REASON_MAX];
};

struct metrics_shm {
    atomic_uint seq; /* odd while the master folds a record */
    pid_t master_pid;
    int64_t master_started; /* unix seconds */
    atomic_uint generation; /* the master's current generation */
    atomic_ullong reloads_ok, reloads_failed;
    atomic_uint nnames;
    char names[METRICS_SERVICES][METRICS_NAME_MAX];
    atomic_uint nreloads; /* reloads recorded: the newest is reloads[(n - 1) % METRICS_RELOADS] */
    struct metrics_reload reloads[METRICS_RELOADS];
    struct metrics_slot slots[SP_CONFIG_MAX_WORKERS];
    struct metrics_proc procs[METRICS_PROCS];
};

/* The region, or NULL in a process started without a master (tests). */
extern struct metrics_shm *metrics_region;

/* ---- the master's side ---------------------------------------------------- */

/* Maps the region (once, before the first fork).  Returns 0 or -errno. */
int metrics_map(void);

/* Enters the [http] section names of cfg into the name table (before its
 * workers are forked).  Logs a name that does not fit. */
void metrics_add_names(const struct sp_config *cfg);

/* Takes a free process record for worker index of generation gen.  Returns
 * its number, or -1 when none is free (the worker then counts in memory of
 * its own and its counts are lost when it exits). */
int metrics_proc_take(unsigned generation, unsigned index);

/* The worker of process record p (-1: none) has pid. */
void metrics_proc_pid(int p, pid_t pid);

/* Folds process record p of an exited worker into its index's slot and
 * frees it.  Accepts -1. */
void metrics_proc_fold(int p);

/* gen is the master's current generation from now on. */
void metrics_set_generation(unsigned gen);

/* A worker of index was found dead and will be started again. */
void metrics_respawned(unsigned index);

/* Records a reload's outcome: the generation now current, ok, and why. */
void metrics_reload_done(unsigned generation, bool ok, const char *reason);

/* ---- the workers' side ------------------------------------------------------ */

/* The counters of process record p, or NULL when there is no such record. */
struct worker_counters *metrics_proc_counters(int p);

/* The histogram record of the HTTP service named name in process record p,
 * or NULL (no record, or the name has no entry). */
struct metrics_svc *metrics_proc_svc(int p, const char *name);

/* Counts n requests of one batch that took ns nanoseconds: a few
 * instructions and two relaxed atomic adds, on the request path. */
static inline void metrics_observe(struct metrics_svc *s, uint64_t ns, unsigned n)
{
    unsigned i = 0;
    while (i < METRICS_BUCKETS && ns > metrics_bounds_ns[i])
        i++;
    atomic_fetch_add_explicit(&s->bucket[i], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_ns, ns * n, memory_order_relaxed);
}

/* A snapshot of the region, consistent with respect to the master's folds:
 * per worker index (past + live records) and in total. */
struct metrics_view_svc {
    uint64_t bucket[METRICS_BUCKETS + 1]; /* not cumulative */
    uint64_t sum_ns, count, status_4xx, status_5xx;
};
struct metrics_view_worker {
    bool seen;
    pid_t pid; /* the newest live process of the index, 0: none */
    unsigned generation;
    int64_t started;
    uint64_t respawns;
    uint64_t connections, accepted, requests, bytes_in, bytes_out;
    struct metrics_view_svc svc[METRICS_SERVICES];
};
struct metrics_view {
    unsigned nworkers; /* indices seen: workers[0 .. nworkers) */
    unsigned nnames;
    unsigned generation;
    uint64_t reloads_ok, reloads_failed;
    unsigned nreloads; /* reloads[0 .. nreloads), oldest first */
    struct metrics_reload reloads[METRICS_RELOADS];
    struct metrics_view_worker total; /* pid, generation, started: the master's */
    struct metrics_view_worker workers[SP_CONFIG_MAX_WORKERS];
};

/* Fills v (large: allocate it) from the region.  Returns 0, or -ENODEV when
 * there is no region. */
int metrics_read(struct metrics_view *v);

/* The metrics page: the Prometheus text format (version 0.0.4) of v into a
 * malloc'ed buffer, *len its length.  Returns NULL on ENOMEM. */
char *metrics_format(const struct metrics_view *v, size_t *len);

/* The status page's members for v, "totals":{...},"workers":[...],
 * "reloads":[...] (docs/operations.md), into a malloc'ed buffer, *len its
 * length.  Returns NULL on ENOMEM. */
char *metrics_json(const struct metrics_view *v, size_t *len);

#endif
