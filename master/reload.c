/*
 * Generations and the reload transaction.
 *
 * A reload either moves every worker to the new configuration or changes
 * nothing that serves traffic:
 *
 *   1. load and check the new file (no side effects), and its modules in a
 *      checker child (modcheck.c);
 *   2. open the sockets of new addresses and extra slots;
 *   3. fork the new generation and wait until each of its workers says READY;
 *   4. only then tell the old generation to drain.
 *
 * A failure in 1-3 kills the new workers, closes what step 2 opened and
 * leaves the old generation serving; the caller gets the reason.  The old
 * workers never see anything of a failed reload.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"
#include "../worker/metrics.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/timer.h"

#define MS (UINT64_C(1000000))

struct master_gen *master_gen_new(struct master *m, struct sp_config *cfg, unsigned id)
{
    struct master_gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->id = id;
    g->cfg = cfg;
    g->next = m->gens;
    m->gens = g;
    return g;
}

void master_gen_prune(struct master *m)
{
    for (struct master_gen **p = &m->gens; *p;) {
        struct master_gen *g = *p;
        if (g != m->cur && !g->busy && g->live == 0) {
            *p = g->next;
            master_logs_close(g);
            sp_config_free(g->cfg);
            free(g);
        } else {
            p = &g->next;
        }
    }
    listeners_prune(m);
}

int master_start_generation(struct master *m, struct master_gen *gen, char *err, size_t errlen)
{
    unsigned n = gen->cfg->workers;
    uint64_t deadline;

    gen->failed[0] = '\0';
    metrics_add_names(gen->cfg);
    for (unsigned i = 0; i < n; i++) {
        if (m->stopping) {
            snprintf(err, errlen, "shutting down");
            goto fail;
        }
        if (!master_fork_worker(m, gen, i)) {
            snprintf(err, errlen, "cannot start worker %u (see the error log)", i);
            goto fail;
        }
    }
    deadline = sp_now_ns() + MASTER_READY_TIMEOUT_MS * MS;
    for (;;) {
        if (gen->failed[0]) {
            snprintf(err, errlen, "%s", gen->failed);
            goto fail;
        }
        if (m->stopping) {
            snprintf(err, errlen, "shutting down");
            goto fail;
        }
        unsigned ready = 0;
        struct master_worker *late = NULL;
        for (struct master_worker *w = m->workers; w; w = w->next) {
            if (w->gen != gen)
                continue;
            if (w->state == MASTER_WORKER_READY)
                ready++;
            else
                late = w;
        }
        if (ready == n)
            return 0;
        if (sp_now_ns() >= deadline) {
            if (late)
                snprintf(err, errlen, "worker %u (pid %d) not ready after %d ms", late->index,
                         (int)late->pid, MASTER_READY_TIMEOUT_MS);
            else
                snprintf(err, errlen, "workers not ready after %d ms", MASTER_READY_TIMEOUT_MS);
            goto fail;
        }
        master_wait(m, deadline); /* READY, an exit, or shutting down */
    }

fail:
    for (struct master_worker *w = m->workers; w; w = w->next) {
        if (w->gen != gen || w->reaped || w->pid <= 0)
            continue;
        w->state = MASTER_WORKER_STOPPING;
        w->killed = true;
        kill(w->pid, SIGKILL);
    }
    return -1;
}

/* Keys that only take effect at start: a reload keeps the running value. */
static void warn_fixed(const char *key, const char *running, const char *wanted)
{
    if (strcmp(running, wanted ? wanted : "") != 0)
        sp_log_warn("reload: %s changed to %s; a reload keeps %s (restart to apply)", key,
                    wanted ? wanted : "(default)", running);
}

static int same_path(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Step 1: loads and checks the file.  Returns the new configuration, or
 * NULL with the reason in msg. */
static struct sp_config *load_new_config(struct master *m, char *msg, size_t len)
{
    char err[SP_CONFIG_ERR_SIZE];

    struct sp_config *cfg = sp_config_load(m->conf_path, err, sizeof(err));
    if (!cfg) {
        snprintf(msg, len, "configuration rejected: %s", err);
        return NULL;
    }
    warn_fixed("pid_file", m->pid_file, cfg->pid_file);
    warn_fixed("control_socket", m->control_socket, cfg->control_socket);
    return cfg;
}

/* Opens cfg's error log if it names another one; the old one is reopened
 * if the reload fails.  Returns 1 when it switched, 0 when the log stays,
 * or -1 with the reason in msg. */
static int switch_error_log(const struct sp_config *old, const struct sp_config *cfg, char *msg,
                            size_t len)
{
    if (same_path(old->error_log, cfg->error_log))
        return 0;
    int rc = sp_log_open(cfg->error_log, NULL);
    if (rc < 0) {
        snprintf(msg, len, "cannot open error_log %s: %s", cfg->error_log, strerror(-rc));
        return -1;
    }
    sp_log_info("reload: error log is now %s", cfg->error_log ? cfg->error_log : "standard error");
    return 1;
}

/* Step 4: gen serves from now on; the workers of older generations drain.
 * Describes the outcome in msg. */
static void commit(struct master *m, struct master_gen *gen, uint64_t t0, char *msg, size_t len)
{
    unsigned drained = 0, n = gen->cfg->workers;

    master_make_current(m, gen);
    uint64_t now = sp_now_ns();
    for (struct master_worker *w = m->workers; w; w = w->next) {
        if (w->gen != gen && w->state <= MASTER_WORKER_READY && !w->reaped) {
            master_retire(m, w, true);
            drained++;
        }
    }
    snprintf(msg, len,
             "reloaded: generation %u, %u worker%s ready in %llu ms, %u old worker%s draining",
             gen->id, n, n == 1 ? "" : "s", (unsigned long long)((now - t0) / MS), drained,
             drained == 1 ? "" : "s");
}

/*
 * Runs steps 1-4 (see the top of this file).  A failure anywhere takes the
 * one undo path, which releases what the steps before it took, in reverse:
 * the sockets opened, the error log switched to, the new configuration (or
 * the generation that owns it by then, and its workers, which were killed).
 */
static int transaction(struct master *m, char *msg, size_t len)
{
    char err[SP_CONFIG_ERR_SIZE + MASTER_REASON_MAX];
    struct master_gen *old = m->cur, *gen = NULL;
    struct listeners_txn *txn = NULL;
    int log_switched = 0, rc;
    uint64_t t0 = sp_now_ns();

    struct sp_config *cfg = load_new_config(m, msg, len);
    if (!cfg)
        return -1;
    if (master_check_modules(m, cfg, err, sizeof(err)) != 0) {
        snprintf(msg, len, "configuration rejected: %s", err);
        goto undo;
    }
    log_switched = switch_error_log(old->cfg, cfg, msg, len);
    if (log_switched < 0)
        goto undo;

    /* Step 2. */
    txn = calloc(1, sizeof(*txn));
    if (!txn) {
        snprintf(msg, len, "out of memory");
        goto undo;
    }
    if (listeners_prepare(m, cfg, txn, err, sizeof(err)) < 0) {
        snprintf(msg, len, "%s", err);
        goto undo;
    }

    /* Step 3. */
    gen = master_gen_new(m, cfg, old->id + 1);
    if (!gen) {
        snprintf(msg, len, "out of memory");
        goto undo;
    }
    cfg = NULL; /* gen owns it */
    gen->busy = true;
    sp_log_info("reload: starting generation %u (%u worker%s)", gen->id, gen->cfg->workers,
                gen->cfg->workers == 1 ? "" : "s");
    rc = master_start_generation(m, gen, err, sizeof(err));
    gen->busy = false;
    if (rc != 0) {
        snprintf(msg, len, "new workers failed: %s", err);
        goto undo;
    }

    commit(m, gen, t0, msg, len);
    free(txn);
    master_gen_prune(m);
    return 0;

undo:
    /* listeners_prepare() undoes its own failure and leaves txn empty, so
     * this closes only what a complete step 2 opened. */
    if (txn)
        listeners_rollback(m, txn);
    free(txn);
    if (log_switched > 0)
        sp_log_open(old->cfg->error_log, NULL);
    sp_config_free(cfg);
    /* gen goes now if none of its workers was forked, else with the last
     * one reaped (worker_gone). */
    if (gen)
        master_gen_prune(m);
    return -1;
}

int master_reload(struct master *m, char *msg, size_t len)
{
    while ((m->reloading || !m->cur) && !m->stopping)
        master_wait(m, 0);
    if (m->stopping) {
        snprintf(msg, len, "not reloaded: shutting down");
        return -1;
    }
    m->reloading = true;
    master_notify_reloading(m);
    int rc = transaction(m, msg, len);
    m->reloading = false;
    master_changed(m);
    if (rc == 0) {
        sp_log_info("reload: %s", msg);
        master_notify(m, "READY=1\nSTATUS=reloaded: generation %u", m->cur->id);
    } else {
        sp_log_error("reload failed: %s; still running generation %u", msg, m->cur->id);
        master_notify(m, "READY=1\nSTATUS=reload failed: %s", msg);
        size_t used = strlen(msg);
        snprintf(msg + used, len - used, "; still running generation %u", m->cur->id);
    }
    m->reload_ran = true;
    m->reload_ok = rc == 0;
    m->reload_ns = sp_now_ns();
    snprintf(m->reload_result, sizeof(m->reload_result), "%s", msg);
    metrics_reload_done(m->cur->id, rc == 0, msg);
    return rc;
}
