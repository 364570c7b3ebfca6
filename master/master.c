/*
 * The master's life: start-up, the worker table, signals, reaping, respawn
 * with back-off, drain deadlines and shutdown.  See master.h for the model.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/log.h"
#include "spindle/timer.h"
#include "../worker/metrics.h"
#include "../worker/worker.h"

#define MS (UINT64_C(1000000))

/* Fibers get only a pointer-sized argument; the one master is here. */
static struct master *the_master;

static const int master_signals[] = {SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD};

struct master_worker *master_find_pid(struct master *m, pid_t pid)
{
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (w->pid == pid)
            return w;
    return NULL;
}

void master_changed(struct master *m)
{
    sp_waitq_broadcast(&m->changed);
}

int master_wait(struct master *m, uint64_t deadline_ns)
{
    if (!deadline_ns)
        return sp_waitq_wait(&m->changed, -1);
    uint64_t now = sp_now_ns();
    if (now >= deadline_ns)
        return -ETIMEDOUT;
    /* Rounded up: a wake-up before the deadline would only wait again. */
    return sp_waitq_wait(&m->changed, (int64_t)((deadline_ns - now + MS - 1) / MS));
}

void master_make_current(struct master *m, struct master_gen *gen)
{
    m->cur = gen;
    metrics_set_generation(gen->id);
    for (unsigned i = 0; i < SP_CONFIG_MAX_WORKERS; i++)
        m->index[i].delay_ms = 0;
    master_slots_balance(m);
    master_changed(m);
}

/* SIGKILL to every worker not yet reaped: the last resort. */
static void kill_all_workers(struct master *m)
{
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (w->pid > 0 && !w->reaped)
            kill(w->pid, SIGKILL);
}

static const char *master_wstatus(int wstatus, char *buf, size_t len)
{
    if (WIFEXITED(wstatus))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus))
        snprintf(buf, len, "signal %d (%s)%s", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)),
                 WCOREDUMP(wstatus) ? ", core dumped" : "");
    else
        snprintf(buf, len, "wait status 0x%x", (unsigned)wstatus);
    return buf;
}

/* ---- the worker table ------------------------------------------------- */

static void link_worker(struct master *m, struct master_worker *w)
{
    w->prev = NULL;
    w->next = m->workers;
    if (m->workers)
        m->workers->prev = w;
    m->workers = w;
}

static void unlink_worker(struct master *m, struct master_worker *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        m->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    master_changed(m); /* the waiters run after the caller has finished */
}

int master_send(struct master_worker *w, enum sp_msg_type type)
{
    struct sp_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = (uint16_t)type;
    if (w->channel_fd < 0)
        return -EPIPE;
    return sp_msg_send(w->channel_fd, &msg);
}

void master_retire(struct master *m, struct master_worker *w, bool graceful)
{
    uint64_t now = sp_now_ns();
    if (w->reaped || w->pid <= 0)
        return;
    if (graceful) {
        if (w->state >= MASTER_WORKER_DRAINING)
            return;
        w->state = MASTER_WORKER_DRAINING;
        w->kill_at_ns =
            now + (uint64_t)w->gen->cfg->shutdown_timeout_ms * MS + MASTER_DRAIN_GRACE_MS * MS;
    } else {
        if (w->state == MASTER_WORKER_STOPPING)
            return;
        w->state = MASTER_WORKER_STOPPING;
        uint64_t at = now + MASTER_STOP_GRACE_MS * MS;
        if (!w->kill_at_ns || at < w->kill_at_ns)
            w->kill_at_ns = at;
    }
    master_changed(m); /* a new deadline for deadline_fiber */
    int rc = master_send(w, graceful ? SP_MSG_DRAIN : SP_MSG_STOP);
    if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
        sp_log_warn("send(%s) to worker %u (pid %d) failed: %s; it will be killed at the deadline",
                    graceful ? "DRAIN" : "STOP", w->index, (int)w->pid, strerror(-rc));
}

static void channel_fiber(void *arg);

struct master_worker *master_fork_worker(struct master *m, struct master_gen *gen, unsigned index)
{
    int sv[2];
    struct master_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        sp_log_error("cannot start worker %u: out of memory", index);
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        sp_log_error("socketpair(AF_UNIX, SOCK_SEQPACKET) for worker %u failed: %s", index,
                     strerror(errno));
        free(w);
        return NULL;
    }
    w->gen = gen;
    w->index = index;
    w->metrics_proc = metrics_proc_take(gen->id, index);
    w->channel_fd = sv[0];
    w->child_fd = sv[1];
    w->state = MASTER_WORKER_STARTING;
    gen->live++;
    link_worker(m, w);

    w->fork_next = m->fork_queue;
    m->fork_queue = w;
    sp_iom_stop(m->iom);
    while (!w->fork_done)
        sp_yield();

    if (w->fork_err) {
        sp_log_error("fork() for worker %u failed: %s", index, strerror(-w->fork_err));
        unlink_worker(m, w);
        gen->live--;
        sp_close(w->channel_fd);
        metrics_proc_fold(w->metrics_proc);
        free(w);
        return NULL;
    }
    metrics_proc_pid(w->metrics_proc, w->pid);
    w->started_ns = sp_now_ns();
    if (sp_iom_spawn(m->iom, channel_fiber, w) != 0) {
        /* Without a reader the worker could not be told anything: end it. */
        sp_log_error("worker %u (pid %d): out of memory for its channel; killing it", index,
                     (int)w->pid);
        kill(w->pid, SIGKILL);
        w->killed = true;
        w->state = MASTER_WORKER_STOPPING;
        sp_close(w->channel_fd);
        w->channel_fd = -1;
        w->channel_done = true;
        return NULL;
    }
    sp_log_info("started worker %u (pid %d, generation %u)", index, (int)w->pid, gen->id);
    if (m->stopping) /* the shutdown began while we were forking: it missed this one */
        master_retire(m, w, m->graceful);
    return w;
}

/* ---- worker exit and respawn ------------------------------------------- */

static bool index_alive(struct master *m, struct master_gen *gen, unsigned index)
{
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (w->gen == gen && w->index == index && !w->reaped && w->state <= MASTER_WORKER_READY)
            return true;
    return false;
}

static void respawn_fiber(void *arg)
{
    struct master *m = the_master;
    unsigned index = (unsigned)(uintptr_t)arg;
    struct master_index *ix = &m->index[index];
    unsigned gen_id = ix->respawn_gen;

    if (ix->respawn_ms)
        sp_sleep((int64_t)ix->respawn_ms);
    /* A fork can fail for want of descriptors or memory (socketpair, fork):
     * try again, backing off, for as long as the index needs a worker. */
    for (int64_t retry_ms = 0;;) {
        if (m->stopping || !m->cur || m->cur->id != gen_id || index >= m->cur->cfg->workers ||
            index_alive(m, m->cur, index))
            return;
        if (master_fork_worker(m, m->cur, index))
            return;
        retry_ms = retry_ms == 0
                       ? MASTER_RESPAWN_MIN_MS
                       : (retry_ms * 2 > MASTER_RETRY_MAX_MS ? MASTER_RETRY_MAX_MS : retry_ms * 2);
        sp_log_error("worker %u (generation %u) not respawned; retrying in %lld ms", index, gen_id,
                     (long long)retry_ms);
        sp_sleep(retry_ms);
    }
}

/* The worker has been reaped and its channel has ended: log how it went,
 * respawn it if it should be running, and forget it. */
static void worker_gone(struct master *m, struct master_worker *w)
{
    struct master_gen *gen = w->gen;
    char st[96], reason[SP_MSG_REASON_MAX + 16] = "";
    uint64_t now = sp_now_ns();

    unlink_worker(m, w);
    gen->live--;
    master_wstatus(w->wstatus, st, sizeof(st));
    if (w->exit_reason[0])
        snprintf(reason, sizeof(reason), " (%s)", w->exit_reason);

    bool expected = w->state >= MASTER_WORKER_DRAINING || m->stopping || gen != m->cur;
    /* A generation still being started must have every worker alive when
     * it takes over; READY alone is not enough. */
    if (gen->busy && w->state <= MASTER_WORKER_READY && !gen->failed[0])
        snprintf(gen->failed, sizeof(gen->failed), "worker %u (pid %d) exited %s: %s%s", w->index,
                 (int)w->pid,
                 w->state == MASTER_WORKER_STARTING ? "before it was ready" : "while starting", st,
                 reason);
    if (expected) {
        bool clean = WIFEXITED(w->wstatus) && WEXITSTATUS(w->wstatus) == 0;
        sp_log(clean || w->killed ? SP_LOG_INFO : SP_LOG_WARN,
               "worker %u (pid %d, generation %u) exited: %s%s", w->index, (int)w->pid, gen->id, st,
               reason);
    } else {
        struct master_index *ix = &m->index[w->index];
        if (now - w->started_ns >= MASTER_RESPAWN_STABLE_MS * MS)
            ix->delay_ms = 0;
        uint64_t delay = ix->delay_ms;
        ix->delay_ms =
            delay == 0 ? MASTER_RESPAWN_MIN_MS
                       : (delay * 2 > MASTER_RESPAWN_MAX_MS ? MASTER_RESPAWN_MAX_MS : delay * 2);
        ix->respawn_gen = gen->id;
        ix->respawn_ms = delay;
        metrics_respawned(w->index);
        sp_log_error("worker %u (pid %d, generation %u) died: %s%s; respawning in %llu ms",
                     w->index, (int)w->pid, gen->id, st, reason, (unsigned long long)delay);
        if (sp_iom_spawn(m->iom, respawn_fiber, (void *)(uintptr_t)w->index) != 0)
            sp_log_error("cannot respawn worker %u: out of memory", w->index);
    }
    master_slots_forget(m, w);
    /* Reaped: the record is final and its counts join the index's. */
    metrics_proc_fold(w->metrics_proc);
    free(w);
    master_gen_prune(m);
    master_slots_balance(m);
}

static void handle_msg(struct master_worker *w, const struct sp_msg *msg)
{
    switch (msg->type) {
    case SP_MSG_READY:
        if (w->state == MASTER_WORKER_STARTING) {
            w->state = MASTER_WORKER_READY;
            master_slots_balance(the_master);
            master_changed(the_master);
        }
        break;
    case SP_MSG_PONG:
        master_heartbeat_pong(the_master, w);
        break;
    case SP_MSG_STATUS:
        w->status = msg->status;
        w->status_seq++;
        master_changed(the_master);
        break;
    case SP_MSG_DRAINING:
        break;
    case SP_MSG_EXITING:
        snprintf(w->exit_reason, sizeof(w->exit_reason), "%s", msg->exiting.reason);
        if (msg->exiting.code != 0 && w->state == MASTER_WORKER_STARTING && w->gen->busy &&
            !w->gen->failed[0])
            snprintf(w->gen->failed, sizeof(w->gen->failed),
                     "worker %u (pid %d) failed to start: %s", w->index, (int)w->pid,
                     msg->exiting.reason);
        master_changed(the_master);
        break;
    default:
        sp_log_warn("worker %u (pid %d) sent an unexpected %s message", w->index, (int)w->pid,
                    sp_msg_type_name(msg->type));
        break;
    }
}

/* Reads one worker's channel until the worker closes it (it exited). */
static void channel_fiber(void *arg)
{
    struct master *m = the_master;
    struct master_worker *w = arg;
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg msg;

    for (;;) {
        ssize_t n = sp_read(w->channel_fd, buf, sizeof(buf), -1);
        if (n == 0)
            break;
        if (n < 0) {
            if (n != -ECONNRESET && n != -ECANCELED)
                sp_log_error("read(%d) from worker %u (pid %d) failed: %s", w->channel_fd, w->index,
                             (int)w->pid, strerror((int)-n));
            break;
        }
        if (sp_msg_decode(buf, (size_t)n, &msg) != 0) {
            sp_log_error("worker %u (pid %d) sent a malformed message (%zd bytes)", w->index,
                         (int)w->pid, n);
            continue;
        }
        handle_msg(w, &msg);
    }
    sp_close(w->channel_fd);
    w->channel_fd = -1;
    w->channel_done = true;
    if (w->reaped)
        worker_gone(m, w);
    else
        master_slots_balance(m);
}

static void reap(struct master *m)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            if (pid < 0 && errno == EINTR)
                continue;
            return;
        }
        struct master_worker *w = master_find_pid(m, pid);
        if (!w) {
            master_upgrade_reap(m, pid, st);
            continue;
        }
        w->reaped = true;
        w->wstatus = st;
        master_changed(m);
        if (w->channel_done)
            worker_gone(m, w);
        else
            master_slots_balance(m);
    }
}

/* ---- signals, deadlines, shutdown ------------------------------------ */

static void reload_fiber(void *arg)
{
    struct master *m = arg;
    char msg[512];
    while (m->reloading && !m->stopping)
        master_wait(m, 0);
    m->hup_pending = false;
    master_reload(m, msg, sizeof(msg));
}

void master_reopen(struct master *m)
{
    int rc = sp_log_reopen();
    if (rc < 0)
        sp_log_error("reopening the error log failed: %s", strerror(-rc));
    else
        sp_log_info("error log reopened");
    master_logs_reopen(m);
}

static void signal_fiber(void *arg)
{
    struct master *m = arg;
    struct signalfd_siginfo si;

    for (;;) {
        ssize_t n = sp_read(m->sigfd, &si, sizeof(si), -1);
        if (n == -ECANCELED)
            return;
        if (n != (ssize_t)sizeof(si)) {
            sp_log_error("read(%d) from the signalfd failed: %s", m->sigfd,
                         n < 0 ? strerror((int)-n) : "short read");
            sp_sleep(100);
            continue;
        }
        switch (si.ssi_signo) {
        case SIGCHLD:
            reap(m);
            break;
        case SIGHUP:
            if (m->stopping) {
                sp_log_info("SIGHUP ignored: shutting down");
            } else if (!m->hup_pending) {
                m->hup_pending = true;
                sp_log_info("SIGHUP: reloading %s", m->conf_path);
                if (sp_iom_spawn(m->iom, reload_fiber, m) != 0) {
                    m->hup_pending = false;
                    sp_log_error("cannot reload: out of memory");
                }
            }
            break;
        case SIGQUIT:
            sp_log_info("SIGQUIT: graceful shutdown");
            master_shutdown(m, true);
            break;
        case SIGTERM:
        case SIGINT:
            sp_log_info("%s: fast shutdown", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            master_shutdown(m, false);
            break;
        case SIGUSR1:
            master_reopen(m);
            break;
        case SIGUSR2:
            master_upgrade(m);
            break;
        default:
            break;
        }
    }
}

/* SIGKILLs the workers whose drain or stop deadline has passed. */
static void deadline_fiber(void *arg)
{
    struct master *m = arg;
    while (!m->done) {
        uint64_t now = sp_now_ns();
        uint64_t next = 0;
        for (struct master_worker *w = m->workers; w; w = w->next) {
            if (!w->kill_at_ns || w->reaped || w->killed || w->pid <= 0)
                continue;
            if (now >= w->kill_at_ns) {
                sp_log_warn("worker %u (pid %d, generation %u) still running at its %s deadline; "
                            "killing it",
                            w->index, (int)w->pid, w->gen->id,
                            w->state == MASTER_WORKER_DRAINING ? "drain" : "stop");
                kill(w->pid, SIGKILL);
                w->killed = true;
            } else if (!next || w->kill_at_ns < next) {
                next = w->kill_at_ns;
            }
        }
        /* Until the earliest deadline; master_retire() wakes it for a new one. */
        master_wait(m, next);
    }
}

/*
 * The first stage of a graceful stop with [master] drain_delay: the workers
 * fail their health checks (DRAIN_SOON) while serving everything and
 * accepting as before, so that a balancer stops sending before anything is
 * refused.  Cut short by a fast stop.  Skipped while a binary upgrade's new
 * master serves on the same sockets: its workers' checks must stay good.
 */
static void shutdown_delay(struct master *m)
{
    int64_t delay = m->cur ? m->cur->cfg->drain_delay_ms : 0;
    if (delay <= 0 || m->upgrading)
        return;
    sp_log_info("draining in %lld ms: health checks fail until then", (long long)delay);
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (!w->reaped && w->pid > 0 && w->state <= MASTER_WORKER_READY)
            master_send(w, SP_MSG_DRAIN_SOON);
    uint64_t until = sp_now_ns() + (uint64_t)delay * MS;
    while (m->graceful && sp_now_ns() < until)
        master_wait(m, until);
}

static void shutdown_fiber(void *arg)
{
    struct master *m = arg;
    while (m->reloading)
        master_wait(m, 0);
    if (m->graceful)
        shutdown_delay(m);
    for (struct master_worker *w = m->workers; w; w = w->next)
        master_retire(m, w, m->graceful);
    /* Nobody will accept on the listeners again.  Closed now, they make the
     * workers' copies the last handles: connections attempted from here on
     * are refused at once instead of waiting in a queue that is reset when
     * the master exits. */
    listeners_close_all(m);
    while (m->workers)
        master_wait(m, 0);
    sp_log_info("all workers gone; exiting");
    m->done = true;
    master_changed(m);
    sp_iom_stop(m->iom);
}

void master_shutdown(struct master *m, bool graceful)
{
    if (m->stopping) {
        if (!graceful && m->graceful) {
            m->graceful = false;
            for (struct master_worker *w = m->workers; w; w = w->next)
                master_retire(m, w, false);
        }
        return;
    }
    m->stopping = true;
    m->graceful = graceful;
    master_changed(m);
    master_notify(m, "STOPPING=1");
    if (sp_iom_spawn(m->iom, shutdown_fiber, m) != 0) {
        sp_log_error("cannot shut down in order: out of memory; killing the workers");
        kill_all_workers(m);
        m->done = true;
        sp_iom_stop(m->iom);
    }
}

/* ---- start-up ----------------------------------------------------------- */

/* Says "start-up failed" where the operator will see it: the log, and
 * standard error (or the waiting parent with -d) when the log is a file. */
static void report_fatal(struct master *m, const char *msg)
{
    sp_log_error("%s", msg);
    if (m->ready_fd >= 0) {
        ssize_t n = write(m->ready_fd, msg, strlen(msg));
        (void)n;
        close(m->ready_fd);
        m->ready_fd = -1;
    } else if (sp_log_fd() != STDERR_FILENO) {
        fprintf(stderr, "spindle: %s\n", msg);
    }
}

static void startup_fiber(void *arg)
{
    struct master *m = arg;
    struct master_gen *gen = m->gens;
    char err[MASTER_REASON_MAX + 64];

    gen->busy = true;
    int rc = master_start_generation(m, gen, err, sizeof(err));
    gen->busy = false;
    if (rc != 0 && m->stopping) {
        /* Told to stop while starting: that is no failure. */
        master_gen_prune(m);
        return;
    }
    if (rc != 0) {
        char msg[sizeof(err) + 32];
        snprintf(msg, sizeof(msg), "start-up failed: %s", err);
        report_fatal(m, msg);
        m->exit_code = 1;
        master_shutdown(m, false);
        master_gen_prune(m);
        return;
    }
    master_make_current(m, gen);
    sp_log_info("spindle %s running: %u worker%s, generation %u", PACKAGE_VERSION,
                gen->cfg->workers, gen->cfg->workers == 1 ? "" : "s", gen->id);
    if (m->ready_fd >= 0) {
        /* -d: end of stream without a message is success; the old master
         * of an upgrade waits for a word. */
        if (m->upgraded) {
            ssize_t n = write(m->ready_fd, "ready", 5);
            (void)n;
        }
        close(m->ready_fd);
        m->ready_fd = -1;
    }
    master_notify(m, "READY=1\nSTATUS=%u worker%s ready\nMAINPID=%d", gen->cfg->workers,
                  gen->cfg->workers == 1 ? "" : "s", (int)getpid());
}

static int setup_signals(struct master *m)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
        sigaddset(&set, master_signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return m->sigfd < 0 ? -errno : 0;
}

/* Loads the configuration and opens the error log.  Until the log is open
 * the failures go to standard error.  Returns the configuration, or NULL. */
static struct sp_config *load_config(struct master *m)
{
    char err[PATH_MAX + SP_CONFIG_ERR_SIZE];

    struct sp_config *cfg = sp_config_load(m->conf_path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "spindle: %s\n", err);
        return NULL;
    }
    /* A reload keeps these two: they name the running master. */
    snprintf(m->pid_file, sizeof(m->pid_file), "%s", cfg->pid_file);
    snprintf(m->control_socket, sizeof(m->control_socket), "%s", cfg->control_socket);
    int rc = sp_log_open(cfg->error_log, "master");
    if (rc < 0) {
        fprintf(stderr, "spindle: cannot open error_log %s: %s\n", cfg->error_log, strerror(-rc));
        sp_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/*
 * Makes cfg the first generation (which takes ownership of it) and takes
 * what only one master may hold: the pid file's lock, the control socket
 * and the listening sockets.  Returns 0, or -1 after reporting why.
 */
static int claim_resources(struct master *m, struct sp_config *cfg)
{
    char err[PATH_MAX + SP_CONFIG_ERR_SIZE];

    /* Every failure below is a failed start: exit status 1. */
    m->exit_code = 1;
    struct master_gen *gen = master_gen_new(m, cfg, 1);
    struct listeners_txn *txn = calloc(1, sizeof(*txn));
    if (!gen || !txn) {
        report_fatal(m, "out of memory");
        sp_config_free(gen ? NULL : cfg);
        free(txn);
        return -1;
    }
    /* Nothing to roll back at start: release_all() closes what was opened. */
    int rc = 0;
    if (pidfile_lock(m->pid_file, err, sizeof(err)) < 0 ||
        control_listen(m, m->control_socket, err, sizeof(err)) < 0 ||
        listeners_prepare(m, cfg, txn, err, sizeof(err)) < 0) {
        report_fatal(m, err);
        rc = -1;
    }
    inherit_close_unused(m);
    free(txn);
    return rc;
}

/* Detaches when told to, then writes the pid file, now that the pid is the
 * final one, and routes the signals to the signalfd.  Returns 0, or -1
 * after reporting why. */
static int become_master(struct master *m)
{
    char err[PATH_MAX + 64];

    if (m->daemon)
        master_daemonize(m);
    int rc = pidfile_write(m->pid_file);
    if (rc < 0) {
        snprintf(err, sizeof(err), "cannot write pid_file %s: %s", m->pid_file, strerror(-rc));
        report_fatal(m, err);
        return -1;
    }
    m->pid_written = true;
    rc = setup_signals(m);
    if (rc < 0) {
        snprintf(err, sizeof(err), "signalfd() failed: %s", strerror(-rc));
        report_fatal(m, err);
        return -1;
    }
    return 0;
}

/* Creates the scheduler and the master's fibers; startup_fiber starts the
 * first generation once it runs.  Returns 0, or -1 after reporting why. */
static int start_scheduler(struct master *m)
{
    struct sp_iom_config icfg = {.threads = 1, .pool = {.stack_size = 128 * 1024}};
    /* Mapped once, before the first worker, for the master's whole life. */
    int rc = metrics_map();
    if (rc < 0) {
        char err[128];
        snprintf(err, sizeof(err), "cannot map the shared counters: %s", strerror(-rc));
        report_fatal(m, err);
        return -1;
    }
    m->iom = sp_iom_new(&icfg);
    if (!m->iom || sp_iom_spawn(m->iom, signal_fiber, m) != 0 ||
        sp_iom_spawn(m->iom, deadline_fiber, m) != 0 ||
        sp_iom_spawn(m->iom, master_heartbeat_fiber, m) != 0 ||
        sp_iom_spawn(m->iom, master_tickets_fiber, m) != 0 || control_start(m) != 0 ||
        sp_iom_spawn(m->iom, startup_fiber, m) != 0) {
        report_fatal(m, "cannot start the scheduler: out of memory");
        return -1;
    }
    m->exit_code = 0;
    return 0;
}

/* Runs the fibers until the master is done, forking the queued workers on
 * this stack between two runs (see master.h). */
static void run_scheduler(struct master *m)
{
    while (!m->done) {
        int rc = sp_iom_run(m->iom);
        if (rc < 0) {
            sp_log_error("scheduler failed: %s; killing the workers", strerror(-rc));
            kill_all_workers(m);
            m->exit_code = 1;
            return;
        }
        master_serve_forks(m);
    }
}

/* Releases whatever start-up took, however far it got. */
static void release_all(struct master *m)
{
    master_slots_forget(m, NULL);
    control_close(m);
    pidfile_remove(m->pid_file);
    listeners_close_all(m);
    /* Workers still in the table hold pointers into the iom and the
     * generations; only an exit after a scheduler failure leaves any. */
    if (!m->workers) {
        while (m->gens) {
            struct master_gen *g = m->gens;
            m->gens = g->next;
            master_logs_close(g);
            sp_config_free(g->cfg);
            free(g);
        }
        sp_iom_free(m->iom);
    }
    if (m->sigfd >= 0)
        close(m->sigfd);
    if (m->ready_fd >= 0)
        close(m->ready_fd);
    master_notify_close(m);
    master_tickets_clear();
}

int master_run(struct master *m)
{
    the_master = m;
    m->sigfd = -1;
    m->ctl_fd = -1;
    m->ready_fd = -1;
    m->started_ns = sp_now_ns();
    m->notify_fd = -1;
    m->upgrade_wfd = -1;

    inherit_report_fd(m);
    master_tickets_import();
    struct sp_config *cfg = load_config(m);
    if (!cfg) {
        if (m->ready_fd >= 0) /* an upgrade's old master waits for a word */
            report_fatal(m, "cannot load the configuration (see standard error)");
        return 1;
    }
    master_check_user(cfg);
    master_notify_init(m);
    inherit_init(m);
    if (claim_resources(m, cfg) == 0 && become_master(m) == 0 && start_scheduler(m) == 0)
        run_scheduler(m);
    release_all(m);
    return m->exit_code;
}
