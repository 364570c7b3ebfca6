/*
 * The module checker: a short-lived child that opens every module of a
 * configuration and says whether each would load, so that `spindle -t`
 * and a reload refuse a module that cannot be opened, is built for another
 * API version, lacks its entry symbol or rejects its keys, before any
 * worker starts.  The master itself never opens a module: code that crashes
 * or hangs while it loads takes only the checker down, which the master
 * notices as a missing verdict or kills at MASTER_CHECK_TIMEOUT_MS.
 *
 * The verdict is one write on a pipe: "ok", or the message of the first
 * fault.  Whoever reaps the child does not matter (the master's SIGCHLD
 * handler reaps it like any other child): end of file on the pipe without a
 * verdict means the child died.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../worker/worker.h"
#include "master.h"
#include "spindle/clock.h"
#include "spindle/io.h"

#define MS (UINT64_C(1000000))

/* The child: never returns. */
static void checker_main(const struct sp_config *cfg, int fd)
{
    char err[SP_CONFIG_ERR_SIZE + 2 * PATH_MAX];

    /* The checker runs module code (its constructors, its setters): as the
     * workers would, not as the master.  A master that dies takes it along
     * (set after the switch of user, which clears it). */
    if (master_drop_privileges(cfg, err, sizeof(err)) == 0 &&
        (prctl(PR_SET_PDEATHSIG, SIGKILL), modules_check(cfg, err, sizeof(err)) == 0))
        snprintf(err, sizeof(err), "ok");
    ssize_t n = write(fd, err, strlen(err));
    _exit(n < 0 ? 3 : 0);
}

/* Forks the checker; returns its pid with the pipe's read end in *fd, or
 * -errno. */
static pid_t checker_fork(const struct sp_config *cfg, int *fd)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        checker_main(cfg, p[1]);
    }
    int err = errno;
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -err;
    }
    *fd = p[0];
    return pid;
}

/* What buf (n bytes read before end of file, or before the deadline when
 * timed_out) says. */
static int verdict(char *buf, size_t n, bool timed_out, char *err, size_t len)
{
    buf[n] = '\0';
    if (timed_out) {
        snprintf(err, len, "module check: no verdict within %d ms (a module hangs while loading?)",
                 MASTER_CHECK_TIMEOUT_MS);
        return -1;
    }
    if (n == 0) {
        snprintf(err, len,
                 "module check: the checker died without a verdict "
                 "(a module crashed while loading?)");
        return -1;
    }
    if (strcmp(buf, "ok") == 0)
        return 0;
    snprintf(err, len, "%s", buf);
    return -1;
}

void master_check_fork(struct master_check *c)
{
    c->pid = checker_fork(c->cfg, &c->fd);
    if (c->pid < 0) {
        c->fd = c->pid;
        c->pid = -1;
    }
    c->started = true;
}

int master_check_modules(struct master *m, const struct sp_config *cfg, char *err, size_t len)
{
    struct master_check c = {.cfg = cfg, .pid = -1, .fd = -1};
    char buf[SP_CONFIG_ERR_SIZE + 2 * PATH_MAX];
    size_t n = 0;

    if (cfg->nmodules == 0)
        return 0;
    m->check_queue = &c;
    sp_iom_stop(m->iom);
    while (!c.started)
        sp_yield();
    if (c.pid < 0) {
        snprintf(err, len, "module check: fork() failed: %s", strerror(-c.fd));
        return -1;
    }
    uint64_t deadline = sp_now_ns() + MASTER_CHECK_TIMEOUT_MS * MS;
    bool timed_out = false;
    for (;;) {
        uint64_t now = sp_now_ns();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        ssize_t r =
            sp_read(c.fd, buf + n, sizeof(buf) - 1 - n, (int64_t)((deadline - now + MS - 1) / MS));
        if (r == -ETIMEDOUT)
            timed_out = true;
        if (r <= 0 || (n += (size_t)r) == sizeof(buf) - 1)
            break;
    }
    if (timed_out) /* still running: it holds the pipe */
        kill(c.pid, SIGKILL);
    sp_close(c.fd);
    return verdict(buf, n, timed_out, err, len);
}

int check_modules_now(const struct sp_config *cfg, char *err, size_t len)
{
    char buf[SP_CONFIG_ERR_SIZE + 2 * PATH_MAX];
    size_t n = 0;
    int fd, st;

    if (cfg->nmodules == 0)
        return 0;
    pid_t pid = checker_fork(cfg, &fd);
    if (pid < 0) {
        snprintf(err, len, "module check: fork() failed: %s", strerror((int)-pid));
        return -1;
    }
    uint64_t deadline = sp_now_ns() + MASTER_CHECK_TIMEOUT_MS * MS;
    bool timed_out = false;
    for (;;) {
        uint64_t now = sp_now_ns();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (now >= deadline || poll(&p, 1, (int)((deadline - now + MS - 1) / MS)) == 0) {
            timed_out = true;
            break;
        }
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0 || (n += (size_t)r) == sizeof(buf) - 1)
            break;
    }
    if (timed_out)
        kill(pid, SIGKILL);
    close(fd);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return verdict(buf, n, timed_out, err, len);
}
