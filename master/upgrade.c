/*
 * Binary upgrade on SIGUSR2, as nginx does it ("Upgrading Executable on the
 * Fly"): the running (old) master renames its pid file to PIDFILE.oldbin and
 * its control socket to SOCKET.oldbin, forks, and the child executes the
 * binary now on disk with the listening sockets: SPINDLE_INHERIT names their
 * descriptors (nginx's NGINX variable), which the new master takes over by
 * address (inherit.c) instead of opening its own.  The new master locks and
 * writes a fresh pid file and binds a fresh control socket at the usual
 * paths, so `spindle -s` talks to it from then on, and starts its workers;
 * meanwhile the old workers go on serving from the same sockets.
 *
 * The new master reports its start over a pipe (SPINDLE_UPGRADE_FD): "ready"
 * once its workers are, or the reason it could not start.  The operator then
 * sends QUIT to the old master (the pid in PIDFILE.oldbin), whose workers
 * drain; its listener copies close, but the new master holds the same
 * sockets, so no queued connection is lost.  If the new master exits
 * instead, before or after it was ready, the old master (its parent) renames
 * the pid file and control socket back and serves on as before.
 *
 * The lock of the pid file belongs to the open file: the old master keeps
 * holding it on PIDFILE.oldbin, the new master locks the new PIDFILE.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/log.h"

#define OLDBIN ".oldbin"

static char upgrade_exe[PATH_MAX]; /* the binary to execute: argv[0], made absolute */

void upgrade_save_exe(const char *argv0)
{
    char cwd[PATH_MAX];
    /* A name without '/' is looked up in PATH when it is executed. */
    if (!strchr(argv0, '/') || argv0[0] == '/' || !getcwd(cwd, sizeof(cwd)) ||
        sp_config_join_path(upgrade_exe, sizeof(upgrade_exe), cwd, argv0) < 0)
        snprintf(upgrade_exe, sizeof(upgrade_exe), "%s", argv0);
}

/* Renames from to to, logging a failure.  Returns 0 or -errno. */
static int rename_logged(const char *from, const char *to)
{
    if (rename(from, to) == 0)
        return 0;
    int e = errno;
    sp_log_error("rename(%s, %s) failed: %s", from, to, strerror(e));
    return -e;
}

/* Moves the pid file and control socket to .oldbin (away) or back, and the
 * paths the master removes at exit with them. */
static int move_files(struct master *m, bool away)
{
    char pid[PATH_MAX], sock[PATH_MAX];
    size_t np = strlen(m->pid_file), ns = strlen(m->control_socket);

    if (away) {
        if (np + sizeof(OLDBIN) > sizeof(pid) || ns + sizeof(OLDBIN) > sizeof(sock))
            return -ENAMETOOLONG;
        snprintf(pid, sizeof(pid), "%s" OLDBIN, m->pid_file);
        snprintf(sock, sizeof(sock), "%s" OLDBIN, m->control_socket);
    } else {
        snprintf(pid, sizeof(pid), "%.*s", (int)(np - strlen(OLDBIN)), m->pid_file);
        snprintf(sock, sizeof(sock), "%.*s", (int)(ns - strlen(OLDBIN)), m->control_socket);
    }
    int rc = rename_logged(m->pid_file, pid);
    if (rc < 0)
        return rc;
    rc = rename_logged(m->control_socket, sock);
    if (rc < 0) {
        rename_logged(pid, m->pid_file);
        return rc;
    }
    memcpy(m->pid_file, pid, strlen(pid) + 1);
    memcpy(m->control_socket, sock, strlen(sock) + 1);
    return 0;
}

/* In the child of the fork, on the main stack: keeps the listeners and the
 * report pipe, names them in the environment and executes the binary.
 * Never returns. */
static void exec_new_master(struct master *m)
{
    unsigned max = 9, n = 0;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        max += l->nfds;
    int *keep = calloc(max, sizeof(*keep));
    char *list = calloc(max, 12);
    char fdtext[16];
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL); /* an ignored signal stays ignored across exec */
    if (!keep || !list) {
        dprintf(m->upgrade_wfd, "out of memory in the child");
        _exit(1);
    }
    keep[n++] = STDIN_FILENO;
    keep[n++] = STDOUT_FILENO;
    keep[n++] = STDERR_FILENO;
    keep[n++] = m->upgrade_wfd;
    int tickets = master_tickets_export();
    if (tickets >= 0)
        keep[n++] = tickets;
    size_t used = 0;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        for (unsigned i = 0; i < l->nfds; i++) {
            keep[n++] = l->fds[i];
            used += (size_t)sprintf(list + used, "%s%d", used ? "," : "", l->fds[i]);
        }
    /* Closes the master's epoll, signalfd, channels, log and pid file. */
    master_close_fds_except(keep, n);
    for (unsigned i = 0; i < n; i++)
        fcntl(keep[i], F_SETFD, 0);
    snprintf(fdtext, sizeof(fdtext), "%d", m->upgrade_wfd);
    setenv("SPINDLE_INHERIT", list, 1);
    setenv("SPINDLE_UPGRADE_FD", fdtext, 1);
    if (tickets >= 0) { /* the number only: the keys stay out of the environment */
        snprintf(fdtext, sizeof(fdtext), "%d", tickets);
        setenv("SPINDLE_TICKET_KEYS", fdtext, 1);
    }
    char *args[] = {upgrade_exe, "-c", m->conf_path, NULL};
    execvp(upgrade_exe, args);
    dprintf(m->upgrade_wfd, "cannot execute %s: %s", upgrade_exe, strerror(errno));
    _exit(127);
}

void master_upgrade_fork(struct master *m)
{
    pid_t pid = fork();
    if (pid == 0)
        exec_new_master(m);
    m->upgrade_pid = pid < 0 ? -errno : pid;
    m->upgrade_forked = true;
}

/* Waits for the new master's report, then for its exit; on failure or exit
 * takes the pid file and control socket back. */
static void upgrade_fiber(void *arg)
{
    struct master *m = arg;
    char msg[MASTER_REASON_MAX + 256];
    size_t used = 0;
    int p[2];

    if (move_files(m, true) < 0) {
        sp_log_error("binary upgrade not started: cannot rename the pid file and control "
                     "socket to " OLDBIN);
        goto done;
    }
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        sp_log_error("binary upgrade not started: pipe2() failed: %s", strerror(errno));
        move_files(m, false);
        goto done;
    }
    m->upgrade_wfd = p[1];
    m->upgrade_forked = false;
    m->upgrade_reaped = false;
    m->upgrade_queued = true;
    sp_iom_stop(m->iom);
    while (!m->upgrade_forked)
        sp_yield();
    m->upgrade_queued = false;
    close(p[1]);
    m->upgrade_wfd = -1;
    if (m->upgrade_pid < 0) {
        sp_log_error("binary upgrade not started: fork() failed: %s", strerror(-m->upgrade_pid));
        sp_close(p[0]);
        move_files(m, false);
        goto done;
    }
    sp_log_info("binary upgrade: started %s (pid %d) with the listening sockets; this "
                "master's pid file and control socket are now %s and %s",
                upgrade_exe, (int)m->upgrade_pid, m->pid_file, m->control_socket);

    for (;;) {
        ssize_t n = sp_read(p[0], msg + used, sizeof(msg) - 1 - used, -1);
        if (n <= 0 || (used += (size_t)n) == sizeof(msg) - 1)
            break;
    }
    sp_close(p[0]);
    msg[used] = '\0';
    bool ready = strcmp(msg, "ready") == 0;
    if (ready)
        sp_log_info("binary upgrade: the new master (pid %d) is ready; send QUIT to this "
                    "master (pid %d, %s) to finish, or QUIT to the new one to go back",
                    (int)m->upgrade_pid, (int)getpid(), m->pid_file);
    while (!m->upgrade_reaped)
        master_wait(m, 0);

    char st[96];
    int ws = m->upgrade_status;
    if (WIFEXITED(ws))
        snprintf(st, sizeof(st), "exit status %d", WEXITSTATUS(ws));
    else
        snprintf(st, sizeof(st), "signal %d (%s)", WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    if (m->stopping) {
        sp_log_info("the new master (pid %d) exited: %s", (int)m->upgrade_pid, st);
        goto done;
    }
    int rc = move_files(m, false);
    if (ready)
        sp_log_warn("the new master (pid %d) exited: %s; this master (pid %d) takes %s and %s "
                    "back%s",
                    (int)m->upgrade_pid, st, (int)getpid(), m->pid_file, m->control_socket,
                    rc < 0 ? " (failed, see above)" : "");
    else
        sp_log_error("binary upgrade failed: the new master (pid %d) exited before it was "
                     "ready: %s%s%s; this master (pid %d) serves on with %s and %s%s",
                     (int)m->upgrade_pid, st,
                     msg[0] ? ": " : " (no reason given: see its standard error)", msg,
                     (int)getpid(), m->pid_file, m->control_socket,
                     rc < 0 ? " (renaming back failed)" : "");
done:
    m->upgrade_pid = 0;
    m->upgrading = false;
    master_changed(m);
}

void master_upgrade(struct master *m)
{
    if (m->stopping) {
        sp_log_info("SIGUSR2 ignored: shutting down");
        return;
    }
    if (m->upgrading) {
        sp_log_warn("SIGUSR2 ignored: a binary upgrade is under way (new master pid %d)",
                    (int)m->upgrade_pid);
        return;
    }
    if (!m->cur) {
        sp_log_warn("SIGUSR2 ignored: still starting");
        return;
    }
    m->upgrading = true;
    if (sp_iom_spawn(m->iom, upgrade_fiber, m) != 0) {
        m->upgrading = false;
        sp_log_error("binary upgrade not started: out of memory");
    }
}

bool master_upgrade_reap(struct master *m, pid_t pid, int status)
{
    if (!m->upgrading || pid != m->upgrade_pid)
        return false;
    m->upgrade_status = status;
    m->upgrade_reaped = true;
    master_changed(m);
    return true;
}
