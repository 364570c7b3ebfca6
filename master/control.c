/*
 * The control socket: a unix stream socket on which `spindle -s CMD`
 * (master/client.c) talks to the running master.  This is the master's side.
 *
 * The client sends one line, the command ("reload", "stop", "quit",
 * "reopen" or "status"), optionally followed by a space and the absolute
 * path of the configuration file it was given: the master then refuses the
 * command unless that is the file it runs (two configurations may name the
 * same control socket).  The master answers with "ok" or "error" on the
 * first line, then text, and closes the connection.  "reload" answers only
 * once the transaction is over, so the client learns whether it worked.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "master.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/log.h"
#include "spindle/timer.h"

#define MS            (UINT64_C(1000000))
#define CONTROL_IO_MS 5000

static struct master *ctl_master;

int control_fill_addr(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

int control_listen(struct master *m, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd;

    if (control_fill_addr(&sun, path) < 0) {
        snprintf(err, errlen, "control_socket %s: path too long", path);
        return -ENAMETOOLONG;
    }
    int rc = pidfile_make_run_dir(path);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s for control_socket %s: %s", sp_config_run_dir(),
                 path, strerror(-rc));
        return rc;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto sys_fail;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
        close(fd);
        snprintf(err, errlen, "already running: a master answers on control socket %s", path);
        return -EADDRINUSE;
    }
    if (errno == ECONNREFUSED) {
        /* Connecting to a file that is not a socket is refused too: only
         * a socket nobody listens on is left by a master that died. */
        if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "control_socket %s exists and is not a socket: not removing it",
                     path);
            close(fd);
            return -EEXIST;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove stale control socket %s: %s", path,
                     strerror(errno));
            close(fd);
            return -EEXIST;
        }
    }
    close(fd);

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto sys_fail;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(path, 0600) != 0 ||
        listen(fd, 64) != 0 || stat(path, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        goto sys_fail;
    }
    m->ctl_fd = fd;
    m->ctl_dev = st.st_dev;
    m->ctl_ino = st.st_ino;
    return fd;

sys_fail:
    snprintf(err, errlen, "cannot open control socket %s: %s", path, strerror(errno));
    return -errno;
}

void control_close(struct master *m)
{
    struct stat st;
    if (m->ctl_fd < 0)
        return;
    if (m->iom)
        sp_close(m->ctl_fd);
    else
        close(m->ctl_fd);
    m->ctl_fd = -1;
    /* Another master may have replaced the file: remove only ours. */
    if (stat(m->control_socket, &st) == 0 && st.st_dev == m->ctl_dev && st.st_ino == m->ctl_ino)
        unlink(m->control_socket);
}

static size_t append(char *buf, size_t len, size_t used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t append(char *buf, size_t len, size_t used, const char *fmt, ...)
{
    va_list ap;
    if (used >= len)
        return used;
    va_start(ap, fmt);
    int n = vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return used;
    return used + (size_t)n >= len ? len - 1 : used + (size_t)n;
}

static const char *state_name(enum master_worker_state s)
{
    switch (s) {
    case MASTER_WORKER_STARTING:
        return "starting";
    case MASTER_WORKER_READY:
        return "ready";
    case MASTER_WORKER_DRAINING:
        return "draining";
    case MASTER_WORKER_STOPPING:
        return "stopping";
    }
    return "?";
}

/* The workers asked for a STATUS answer, by pid since they may go away
 * meanwhile, each with its answer count at the time. */
struct status_poll {
    struct {
        pid_t pid;
        unsigned seq;
    } asked[SP_CONFIG_MAX_WORKERS * 4];
    unsigned nasked;
};

static void ask_workers(struct master *m, struct status_poll *p)
{
    p->nasked = 0;
    for (struct master_worker *w = m->workers; w; w = w->next) {
        if (w->reaped || w->pid <= 0 || p->nasked == sizeof(p->asked) / sizeof(p->asked[0]))
            continue;
        if (master_send(w, SP_MSG_STATUS_REQ) == 0) {
            p->asked[p->nasked].pid = w->pid;
            p->asked[p->nasked++].seq = w->status_seq;
        }
    }
}

/* Whether w has answered since ask_workers(). */
static bool answered(const struct status_poll *p, const struct master_worker *w)
{
    for (unsigned i = 0; i < p->nasked; i++)
        if (p->asked[i].pid == w->pid && p->asked[i].seq != w->status_seq)
            return true;
    return false;
}

/* Waits until every asked worker has answered or is gone, for at most
 * MASTER_STATUS_TIMEOUT_MS: a worker that does not answer is shown so. */
static void await_answers(struct master *m, const struct status_poll *p)
{
    uint64_t deadline = sp_now_ns() + MASTER_STATUS_TIMEOUT_MS * MS;
    while (sp_now_ns() < deadline) {
        unsigned waiting = 0;
        for (unsigned i = 0; i < p->nasked; i++) {
            struct master_worker *w = master_find_pid(m, p->asked[i].pid);
            if (w && !w->reaped && w->status_seq == p->asked[i].seq)
                waiting++;
        }
        if (!waiting)
            break;
        master_wait(m, deadline); /* a STATUS answer or a worker gone */
    }
}

/* The "master ..." line and one "listen ..." line per address. */
static size_t format_master(struct master *m, char *buf, size_t len, size_t used, uint64_t now)
{
    unsigned nworkers = 0;
    for (struct master_worker *w = m->workers; w; w = w->next)
        nworkers++;
    used = append(buf, len, used,
                  "master pid=%d generation=%u uptime=%.1fs workers=%u configured_workers=%u "
                  "config=%s%s\n",
                  (int)getpid(), m->cur ? m->cur->id : 0, (double)(now - m->started_ns) / 1e9,
                  nworkers, m->cur ? m->cur->cfg->workers : 0, m->conf_path,
                  m->stopping ? " stopping" : (m->reloading ? " reloading" : ""));
    for (struct master_listener *l = m->listeners; l; l = l->next)
        used = append(buf, len, used, "listen %s slots=%u\n", l->text, l->nfds);
    return used;
}

/* One "worker ..." line per forked worker, with its counters if it answered. */
static size_t format_workers(struct master *m, const struct status_poll *p, char *buf, size_t len,
                             size_t used)
{
    for (struct master_worker *w = m->workers; w; w = w->next) {
        if (w->pid <= 0)
            continue;
        used = append(buf, len, used, "worker pid=%d generation=%u index=%u state=%s", (int)w->pid,
                      w->gen->id, w->index, state_name(w->state));
        if (answered(p, w))
            used = append(
                buf, len, used,
                " connections=%llu requests=%llu bytes_in=%llu bytes_out=%llu "
                "uptime=%.1fs\n",
                (unsigned long long)w->status.connections, (unsigned long long)w->status.requests,
                (unsigned long long)w->status.bytes_in, (unsigned long long)w->status.bytes_out,
                (double)w->status.uptime_ms / 1e3);
        else
            used = append(buf, len, used, " connections=? requests=? (no answer)\n");
    }
    return used;
}

static size_t format_last_reload(struct master *m, char *buf, size_t len, size_t used, uint64_t now)
{
    if (!m->reload_ran)
        return append(buf, len, used, "last_reload: none\n");
    return append(buf, len, used, "last_reload: %s %.1fs ago: %s\n", m->reload_ok ? "ok" : "failed",
                  (double)(now - m->reload_ns) / 1e9, m->reload_result);
}

/* The answer to "status" (docs/operations.md): asks every live worker for
 * its counters, waits a bounded time for the answers, then describes the
 * master, its listeners, each worker and the last reload. */
static void control_status(struct master *m, char *buf, size_t len)
{
    struct status_poll asked;

    ask_workers(m, &asked);
    await_answers(m, &asked);
    uint64_t now = sp_now_ns();
    size_t used = format_master(m, buf, len, 0, now);
    used = format_workers(m, &asked, buf, len, used);
    format_last_reload(m, buf, len, used, now);
}

static void reply(int fd, bool ok, const char *text)
{
    char head[8];
    int n = snprintf(head, sizeof(head), "%s\n", ok ? "ok" : "error");
    struct iovec iov[3] = {
        {.iov_base = head, .iov_len = (size_t)n},
        {.iov_base = (void *)text, .iov_len = strlen(text)},
        {.iov_base = "\n", .iov_len = text[0] && text[strlen(text) - 1] != '\n' ? 1 : 0},
    };
    sp_writev(fd, iov, 3, CONTROL_IO_MS);
}

/* Whether path names the file the master was started with (the same name,
 * or the same file through another name). */
static bool is_our_config(struct master *m, const char *path)
{
    struct stat a, b;
    if (strcmp(path, m->conf_path) == 0)
        return true;
    return stat(path, &a) == 0 && stat(m->conf_path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static void client_fiber(void *arg)
{
    struct master *m = ctl_master;
    int fd = (int)(intptr_t)arg;
    char line[PATH_MAX + 32];
    size_t len = 0;

    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        ssize_t n = sp_read(fd, line + len, sizeof(line) - 1 - len, CONTROL_IO_MS);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    char *conf = strchr(line, ' ');
    if (conf)
        *conf++ = '\0';

    if (conf && !is_our_config(m, conf)) {
        char msg[2 * PATH_MAX + 96];
        snprintf(msg, sizeof(msg),
                 "%s is not the running master's configuration (it runs %s); nothing done", conf,
                 m->conf_path);
        reply(fd, false, msg);
    } else if (strcmp(line, "reload") == 0) {
        char msg[1024];
        sp_log_info("control: reload requested");
        int rc = master_reload(m, msg, sizeof(msg));
        reply(fd, rc == 0, msg);
    } else if (strcmp(line, "stop") == 0 || strcmp(line, "quit") == 0) {
        bool graceful = line[0] == 'q';
        char msg[64];
        snprintf(msg, sizeof(msg), "%s (master pid %d)",
                 graceful ? "shutting down gracefully" : "stopping", (int)getpid());
        reply(fd, true, msg);
        sp_log_info("control: %s requested", line);
        master_shutdown(m, graceful);
    } else if (strcmp(line, "reopen") == 0) {
        sp_log_info("control: reopen requested");
        master_reopen(m);
        reply(fd, true, "logs reopened");
    } else if (strcmp(line, "status") == 0) {
        char *buf = malloc(CONTROL_STATUS_BYTES);
        if (buf) {
            control_status(m, buf, CONTROL_STATUS_BYTES);
            reply(fd, true, buf);
            free(buf);
        } else {
            reply(fd, false, "out of memory");
        }
    } else {
        char msg[192];
        snprintf(msg, sizeof(msg), "unknown command '%.100s'", line);
        reply(fd, false, msg);
    }
    sp_close(fd);
}

static void acceptor_fiber(void *arg)
{
    struct master *m = arg;
    int64_t backoff_ms = 0;
    unsigned quiet = 0; /* failures not logged since the last line */

    for (;;) {
        int fd = sp_accept(m->ctl_fd, NULL, NULL, -1);
        if (fd == -ECANCELED || fd == -EBADF)
            return;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Out of descriptors or memory: the client waits in the backlog.
             * Back off to a second and log once per stretch of failures, not
             * at every retry. */
            if (backoff_ms == 0)
                sp_log_error("accept4(%d) on the control socket failed: %s; retrying", m->ctl_fd,
                             strerror(-fd));
            else
                quiet++;
            backoff_ms = backoff_ms == 0 ? 100 : (backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2);
            sp_sleep(backoff_ms);
            continue;
        }
        if (backoff_ms && fd >= 0) {
            sp_log_info("control socket accepting again (%u more failures)", quiet);
            backoff_ms = 0;
            quiet = 0;
        }
        if (fd < 0) {
            sp_log_error("accept4(%d) on the control socket failed: %s", m->ctl_fd, strerror(-fd));
            sp_sleep(100);
            continue;
        }
        if (sp_iom_spawn(m->iom, client_fiber, (void *)(intptr_t)fd) != 0)
            sp_close(fd);
    }
}

int control_start(struct master *m)
{
    ctl_master = m;
    if (m->ctl_fd < 0)
        return 0;
    return sp_iom_spawn(m->iom, acceptor_fiber, m);
}
