/*
 * Heartbeats and slot adoption: no slot of the current generation is left
 * without a live acceptor for long.
 *
 * Every second the master sends PING to each ready worker, which answers
 * PONG.  A worker that leaves a PING unanswered for MASTER_HEARTBEAT_LATE_MS
 * (stopped, wedged) counts as not answering.  One that misses
 * MASTER_HEARTBEAT_MISSES heartbeats in a row while stopped, or
 * MASTER_HEARTBEAT_MISSES_RUNNING while running (wedged in a loop; a worker
 * merely starved by a burst or a loaded machine answers well before), is
 * killed and, being of the current generation, respawned.
 *
 * Worker i serves the slots s with s mod N == i.  While index i has no ready,
 * answering worker (not answering, dead, or respawning after a back-off), a
 * live worker of the same generation adopts its slots: the master passes its
 * own copies over the channel (ADOPT, SCM_RIGHTS) and the adopter accepts on
 * them too.  When index i is served again the master sends RELEASE and the
 * adopter closes its copies.  The master keeps its own throughout, so no
 * queued connection is lost either way.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/timer.h"
#include "../worker/worker.h"

#define MS (UINT64_C(1000000))

/* Ready, of the current generation and answering: may serve and adopt. */
static bool serving(const struct master *m, const struct master_worker *w)
{
    return w->gen == m->cur && w->state == MASTER_WORKER_READY && !w->reaped && !w->channel_done &&
           !w->killed && !w->unresponsive && w->channel_fd >= 0;
}

static void forget(struct master_adoption *a)
{
    free(a->keys);
    a->keys = NULL;
    a->nkeys = 0;
    a->by = NULL;
}

static void release(struct master *m, unsigned index)
{
    struct master_adoption *a = &m->adopted[index];
    struct master_worker *by = a->by;
    struct sp_msg msg;

    memset(&msg, 0, sizeof(msg));
    msg.type = SP_MSG_RELEASE;
    for (unsigned k = 0; k < a->nkeys && by->channel_fd >= 0; k++) {
        msg.slot.key = (uint32_t)a->keys[k];
        int rc = sp_msg_send(by->channel_fd, &msg);
        if (rc < 0) {
            /* Left accepting on a slot that has its owner back costs nothing
             * but balance; the worker exits with it eventually. */
            sp_log_warn("send(RELEASE) to worker %u (pid %d) failed: %s", by->index, (int)by->pid,
                        strerror(-rc));
            break;
        }
    }
    sp_log_info("worker %u (pid %d) returns the slots of worker %u", by->index, (int)by->pid,
                index);
    forget(a);
}

static void adopt(struct master *m, unsigned index, struct master_worker *by)
{
    struct master_adoption *a = &m->adopted[index];
    unsigned max = 0;
    struct sp_msg msg;

    for (struct master_listener *l = m->listeners; l; l = l->next)
        max += l->nfds;
    struct worker_listener *ls = calloc(max ? max : 1, sizeof(*ls));
    a->keys = calloc(max ? max : 1, sizeof(*a->keys));
    if (!ls || !a->keys) {
        sp_log_error("cannot hand the slots of worker %u over: out of memory", index);
        free(ls);
        free(a->keys);
        a->keys = NULL;
        return;
    }
    unsigned n = listeners_for_worker(m, m->cur->cfg, index, ls, max);

    a->by = by;
    a->nkeys = 0;
    memset(&msg, 0, sizeof(msg));
    msg.type = SP_MSG_ADOPT;
    for (unsigned k = 0; k < n; k++) {
        msg.slot.key = (uint32_t)ls[k].fd;
        msg.slot.service = ls[k].service;
        int rc = sp_msg_send_fds(by->channel_fd, &msg, &ls[k].fd, 1);
        if (rc < 0) {
            sp_log_error("send(ADOPT) to worker %u (pid %d) failed: %s", by->index, (int)by->pid,
                         strerror(-rc));
            break;
        }
        a->keys[a->nkeys++] = ls[k].fd;
    }
    free(ls);
    sp_log_warn("worker %u (pid %d) accepts on the %u slots of worker %u until it is back",
                by->index, (int)by->pid, a->nkeys, index);
}

void master_slots_balance(struct master *m)
{
    struct master_worker *owner[SP_CONFIG_MAX_WORKERS] = {NULL};
    unsigned n = m->cur ? m->cur->cfg->workers : 0;

    /* A shutdown drains or stops every worker, adopted slots with the rest. */
    if (m->stopping)
        return;
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (serving(m, w) && w->index < n && !owner[w->index])
            owner[w->index] = w;
    for (unsigned i = 0; i < SP_CONFIG_MAX_WORKERS; i++) {
        struct master_adoption *a = &m->adopted[i];
        struct master_worker *want = NULL;
        if (i < n && !owner[i]) {
            if (a->by && serving(m, a->by))
                want = a->by;
            for (unsigned k = 1; !want && k < n; k++)
                want = owner[(i + k) % n];
        }
        if (a->by && a->by != want)
            release(m, i);
        if (want && !a->by)
            adopt(m, i, want);
    }
}

void master_slots_forget(struct master *m, struct master_worker *w)
{
    for (unsigned i = 0; i < SP_CONFIG_MAX_WORKERS; i++)
        if (m->adopted[i].by == w || (!w && m->adopted[i].by))
            forget(&m->adopted[i]);
}

void master_heartbeat_pong(struct master *m, struct master_worker *w)
{
    w->ping_ns = 0;
    w->missed = 0;
    if (w->unresponsive) {
        w->unresponsive = false;
        sp_log_warn("worker %u (pid %d) answers again", w->index, (int)w->pid);
        master_slots_balance(m);
    }
}

/* True when pid is stopped (SIGSTOP, a debugger): it cannot be making any
 * progress, however loaded the machine. */
static bool is_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

static void beat(struct master *m, struct master_worker *w, uint64_t now, bool on_time)
{
    if (!on_time) { /* the master did not run: no answer could be read */
        w->ping_ns = 0;
        w->missed = 0;
    }
    if (w->ping_ns && ++w->missed >= MASTER_HEARTBEAT_MISSES) {
        /* A running worker that does not answer may only be starved (a
         * burst of connections, an overloaded machine): it gets longer. */
        bool stopped = is_stopped(w->pid);
        if (stopped || w->missed >= MASTER_HEARTBEAT_MISSES_RUNNING) {
            sp_log_error("worker %u (pid %d, generation %u) missed %u heartbeats%s; killing it",
                         w->index, (int)w->pid, w->gen->id, w->missed, stopped ? " (stopped)" : "");
            snprintf(w->exit_reason, sizeof(w->exit_reason), "missed %u heartbeats", w->missed);
            kill(w->pid, SIGKILL);
            w->killed = true;
            master_slots_balance(m);
            return;
        }
        if (w->missed == MASTER_HEARTBEAT_MISSES)
            sp_log_warn("worker %u (pid %d, generation %u) missed %u heartbeats but is running; "
                        "killing it at %u",
                        w->index, (int)w->pid, w->gen->id, w->missed,
                        MASTER_HEARTBEAT_MISSES_RUNNING);
    }
    if (!w->ping_ns)
        w->ping_ns = now;
    int rc = master_send(w, SP_MSG_PING);
    if (rc < 0 && rc != -EAGAIN && rc != -EPIPE && rc != -ECONNRESET)
        sp_log_warn("send(PING) to worker %u (pid %d) failed: %s", w->index, (int)w->pid,
                    strerror(-rc));
}

void master_heartbeat_fiber(void *arg)
{
    struct master *m = arg;
    uint64_t last_beat = sp_now_ns();

    while (!m->done) {
        sp_sleep(MASTER_HEARTBEAT_LATE_MS / 5);
        uint64_t now = sp_now_ns();
        bool due = now - last_beat >= MASTER_HEARTBEAT_MS * MS;
        /* A beat long overdue means the master itself did not run (stopped,
         * starved): nobody gets blamed for the answers it did not read. */
        bool on_time = now - last_beat < 2 * MASTER_HEARTBEAT_MS * MS;
        if (due)
            last_beat = now;

        for (struct master_worker *w = m->workers; w; w = w->next) {
            if (w->state != MASTER_WORKER_READY || w->reaped || w->channel_done || w->killed ||
                w->pid <= 0)
                continue;
            if (w->ping_ns && !w->unresponsive && on_time &&
                now - w->ping_ns >= MASTER_HEARTBEAT_LATE_MS * MS) {
                w->unresponsive = true;
                sp_log_warn("worker %u (pid %d, generation %u) does not answer its heartbeat",
                            w->index, (int)w->pid, w->gen->id);
                master_slots_balance(m);
            }
            if (due)
                beat(m, w, now, on_time);
        }
    }
}
