/*
 * Process plumbing: the child side of a worker fork (fd hygiene, dropping
 * privileges), the log files the master opens for its workers, the fork
 * queue served on the main stack, and detaching from the terminal (-d).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "master.h"
#include "spindle/log.h"
#include "../worker/worker.h"

static int cmp_fd(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Closes every fd from lo up. */
static void close_from(int lo)
{
#ifdef HAVE_CLOSEFROM
    closefrom(lo);
#else
    /* List /proc/self/fd a batch at a time (closing while reading the
     * directory could skip entries), until a listing finds nothing left. */
    for (;;) {
        int fds[1024];
        unsigned nfds = 0;
        bool more = false;
        DIR *d = opendir("/proc/self/fd");
        if (!d)
            break;
        int dfd = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            int fd = atoi(e->d_name);
            if (fd < lo || fd == dfd)
                continue;
            if (nfds == sizeof(fds) / sizeof(fds[0])) {
                more = true;
                break;
            }
            fds[nfds++] = fd;
        }
        closedir(d);
        for (unsigned i = 0; i < nfds; i++)
            close(fds[i]);
        if (!more)
            return;
    }
    /* No /proc: try every number the limit allows. */
    struct rlimit rl;
    int max =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1048576 ? (int)rl.rlim_cur : 1048576;
    for (int fd = lo; fd < max; fd++)
        close(fd);
#endif
}

/* Closes every fd except those in keep[0..n) (which it sorts; negative entries
 * are ignored): the child must not hold the master's epoll, signalfd, control
 * socket, other workers' channels or slots it does not serve (a held slot
 * would keep a queue alive that no one accepts from).  The gaps below the
 * highest kept fd are closed one by one (the master opened those fds itself,
 * so they are few); everything above it with closefrom(). */
void master_close_fds_except(int *keep, unsigned n)
{
    int lo = 0;

    qsort(keep, n, sizeof(*keep), cmp_fd);
    for (unsigned i = 0; i < n; i++) {
        for (int fd = lo; fd < keep[i]; fd++)
            close(fd);
        if (keep[i] >= lo)
            lo = keep[i] + 1;
    }
    close_from(lo);
}

/*
 * cpu_affinity = auto: worker i runs on the i-th CPU (modulo their number) of
 * the set the master may use, as nginx's worker_cpu_affinity auto does.  A
 * failure only costs the pinning, so it is logged and the worker goes on.
 */
static void pin_to_cpu(unsigned index)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        sp_log_warn("sched_getaffinity() failed: %s; not pinned", strerror(errno));
        return;
    }
    int count = CPU_COUNT(&allowed);
    if (count <= 0)
        return;
    int want = (int)(index % (unsigned)count);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || want-- > 0)
            continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof(one), &one) != 0)
            sp_log_warn("sched_setaffinity(cpu %d) failed: %s; not pinned", cpu, strerror(errno));
        return;
    }
}

/* ---- privileges -------------------------------------------------------- */

/*
 * Switches the calling process to cfg's [master] user: its groups, then its
 * group, then the user, in that order (once the uid is gone, setgroups and
 * setgid are refused), and checks that root cannot be regained.  Nothing
 * changes without user, or in a master that is not root (which
 * master_check_user() reports).  Returns 0, or -1 with the reason in err.
 */
int master_drop_privileges(const struct sp_config *cfg, char *err, size_t len)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;

    if (!cfg->user || geteuid() != 0)
        return 0;
    if (setgroups(cfg->ngroups, cfg->groups) != 0) {
        snprintf(err, len, "setgroups(%u groups of %s) failed: %s", cfg->ngroups, cfg->user,
                 strerror(errno));
        return -1;
    }
    if (setgid(cfg->gid) != 0) {
        snprintf(err, len, "setgid(%u) failed: %s", (unsigned)cfg->gid, strerror(errno));
        return -1;
    }
    if (setuid(cfg->uid) != 0) {
        snprintf(err, len, "setuid(%u) for user %s failed: %s", (unsigned)cfg->uid, cfg->user,
                 strerror(errno));
        return -1;
    }
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != cfg->uid ||
        eu != cfg->uid || su != cfg->uid || rg != cfg->gid || eg != cfg->gid || sg != cfg->gid) {
        snprintf(err, len, "user %s: the ids did not change as asked", cfg->user);
        return -1;
    }
    if (cfg->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, len, "user %s: root could be regained after setuid(%u)", cfg->user,
                 (unsigned)cfg->uid);
        return -1;
    }
    return 0;
}

void master_check_user(const struct sp_config *cfg)
{
    uid_t uid = geteuid();
    if (uid == 0 && !cfg->user)
        sp_log_warn("running as root without [master] user: the workers run as root too; set "
                    "user to an unprivileged account");
    else if (uid != 0 && cfg->user && cfg->uid != uid)
        sp_log_warn("user %s ignored: the master does not run as root, so its workers keep uid %u",
                    cfg->user, (unsigned)uid);
}

/* The -t check, in the child that runs as the user: one warning per path a
 * service's workers read (SP_PATH_READ, e.g. an http root) that it cannot
 * read, list and search.  Returns the count. */
static int warn_unreadable(const struct sp_config *cfg)
{
    int n = 0;
    for (unsigned i = 0; i < cfg->nservices; i++) {
        const struct sp_service_conf *s = &cfg->services[i];
        struct sp_service_path paths[SP_SERVICE_MAX_PATHS];
        unsigned np = s->def->paths ? s->def->paths(s->conf, paths, SP_SERVICE_MAX_PATHS) : 0;
        for (unsigned k = 0; k < np; k++) {
            if (!(paths[k].flags & SP_PATH_READ) || access(paths[k].path, R_OK | X_OK) == 0)
                continue;
            char where[PATH_MAX + SP_CONFIG_ERR_SIZE];
            int e = errno;
            fprintf(stderr, "%s: warning: [%s %s] %s %s: user %s cannot read it: %s\n",
                    sp_config_where(cfg, s->line, where, sizeof(where)), s->def->name, s->name,
                    paths[k].key, paths[k].path, cfg->user, strerror(e));
            n++;
        }
    }
    return n;
}

int master_check_access(const struct sp_config *cfg)
{
    int st;
    if (!cfg->user || geteuid() != 0)
        return 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "spindle: warning: cannot check files as user %s: fork() failed: %s\n",
                cfg->user, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        char err[256];
        if (master_drop_privileges(cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "spindle: warning: cannot check files as user %s: %s\n", cfg->user,
                    err);
            _exit(1);
        }
        int n = warn_unreadable(cfg);
        fflush(stderr);
        _exit(n > 100 ? 100 : n);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* ---- log files ------------------------------------------------------- */

/* Opens, as the master, the log files of gen's services that are not open
 * yet (first fork, or an earlier open failed): the workers may run as a
 * user that cannot open them.  A failed open is kept as -errno for the
 * worker to report.  Returns 0 or -ENOMEM. */
static int logs_open(struct master_gen *gen)
{
    const struct sp_config *cfg = gen->cfg;
    if (!gen->log_fds) {
        gen->log_fds = malloc((cfg->nservices ? cfg->nservices : 1) * sizeof(int));
        if (!gen->log_fds)
            return -ENOMEM;
        for (unsigned i = 0; i < cfg->nservices; i++)
            gen->log_fds[i] = -ENOENT;
    }
    for (unsigned i = 0; i < cfg->nservices; i++) {
        const char *path = worker_log_path(cfg, i);
        if (path && gen->log_fds[i] < 0)
            gen->log_fds[i] = sp_log_open_file(path);
    }
    return 0;
}

void master_logs_close(struct master_gen *gen)
{
    if (!gen->log_fds)
        return;
    for (unsigned i = 0; i < gen->cfg->nservices; i++)
        if (gen->log_fds[i] >= 0)
            close(gen->log_fds[i]);
    free(gen->log_fds);
    gen->log_fds = NULL;
}

/* Sends w REOPEN with the error log and its generation's log files, in the
 * order worker_reopen() expects; a file never opened ends the list. */
static void send_reopen(struct master_worker *w)
{
    const struct sp_config *cfg = w->gen->cfg;
    int fds[SP_MSG_MAX_FDS];
    unsigned n = 0;
    struct sp_msg msg;

    fds[n++] = sp_log_fd();
    for (unsigned i = 0; i < cfg->nservices; i++) {
        if (!worker_log_path(cfg, i))
            continue;
        if (n == SP_MSG_MAX_FDS || w->gen->log_fds[i] < 0)
            break;
        fds[n++] = w->gen->log_fds[i];
    }
    memset(&msg, 0, sizeof(msg));
    msg.type = SP_MSG_REOPEN;
    int rc = sp_msg_send_fds(w->channel_fd, &msg, fds, n);
    if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
        sp_log_warn("send(REOPEN) to worker %u (pid %d) failed: %s", w->index, (int)w->pid,
                    strerror(-rc));
}

void master_logs_reopen(struct master *m)
{
    for (struct master_gen *g = m->gens; g; g = g->next) {
        if (!g->log_fds)
            continue;
        for (unsigned i = 0; i < g->cfg->nservices; i++) {
            const char *path = worker_log_path(g->cfg, i);
            if (!path)
                continue;
            int fd = sp_log_open_file(path);
            if (fd < 0) {
                sp_log_error("reopening access log %s failed: %s; the old file stays in use", path,
                             strerror(-fd));
                continue;
            }
            if (g->log_fds[i] >= 0)
                close(g->log_fds[i]);
            g->log_fds[i] = fd;
        }
    }
    for (struct master_worker *w = m->workers; w; w = w->next)
        if (!w->reaped && w->channel_fd >= 0 && w->gen->log_fds)
            send_reopen(w);
}

/* ---- forking --------------------------------------------------------- */

/* Tells the master why the child cannot start, then exits. */
static void child_fail(struct master_worker *w, const char *why)
{
    struct sp_msg msg;
    sp_log_error("worker failed to start: %s", why);
    memset(&msg, 0, sizeof(msg));
    msg.type = SP_MSG_EXITING;
    msg.exiting.code = 2;
    snprintf(msg.exiting.reason, sizeof(msg.exiting.reason), "%s", why);
    (void)sp_msg_send(w->child_fd, &msg);
    _exit(2);
}

/* The child side of a fork: runs on the main stack, never returns. */
static void child_main(struct master *m, struct master_worker *w)
{
    const struct sp_config *cfg = w->gen->cfg;
    sigset_t none;
    char who[32];

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    master_tickets_clear(); /* the worker's copies came over its channel */

    unsigned max = 0;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        max += l->nfds;
    struct worker_listener *ls = calloc(max ? max : 1, sizeof(*ls));
    int *keep = calloc(max + 5 + cfg->nservices, sizeof(*keep));
    if (!ls || !keep) {
        sp_log_error("worker %u: out of memory before start", w->index);
        _exit(2);
    }
    unsigned n = listeners_for_worker(m, cfg, w->index, ls, max);
    unsigned nkeep = 0;
    keep[nkeep++] = STDIN_FILENO;
    keep[nkeep++] = STDOUT_FILENO;
    keep[nkeep++] = STDERR_FILENO;
    keep[nkeep++] = sp_log_fd();
    keep[nkeep++] = w->child_fd;
    for (unsigned i = 0; i < n; i++)
        keep[nkeep++] = ls[i].fd;
    for (unsigned i = 0; i < cfg->nservices; i++)
        if (w->gen->log_fds[i] >= 0)
            keep[nkeep++] = w->gen->log_fds[i];
    master_close_fds_except(keep, nkeep);
    free(keep);

    snprintf(who, sizeof(who), "worker %u", w->index);
    sp_log_set_who(who);
    /* Before anything of the worker runs: services, and whatever they load. */
    char why[SP_MSG_REASON_MAX + 1];
    if (master_drop_privileges(cfg, why, sizeof(why)) != 0)
        child_fail(w, why);
    master_set_title("spindle: worker process");
    if (cfg->cpu_affinity)
        pin_to_cpu(w->index);
    struct worker_args args = {
        .cfg = cfg,
        .generation = w->gen->id,
        .index = w->index,
        .metrics_proc = w->metrics_proc,
        .channel_fd = w->child_fd,
        .listeners = ls,
        .nlisteners = n,
        .log_fds = w->gen->log_fds,
    };
    _exit(worker_main(&args));
}

/* Serves the fork requests queued by fibers; runs on the main stack while
 * the scheduler is stopped. */
void master_serve_forks(struct master *m)
{
    struct master_worker *q = NULL;

    if (m->check_queue) {
        master_check_fork(m->check_queue);
        m->check_queue = NULL;
    }
    if (m->upgrade_queued && !m->upgrade_forked)
        master_upgrade_fork(m);
    while (m->fork_queue) { /* reverse: fork in the order asked */
        struct master_worker *w = m->fork_queue;
        m->fork_queue = w->fork_next;
        w->fork_next = q;
        q = w;
    }
    for (struct master_worker *w = q; w; w = w->fork_next) {
        int rc = logs_open(w->gen);
        /* The ticket keys go first on the channel, before the child exists:
         * it takes them before it serves (worker.c). */
        master_tickets_refresh(m);
        master_tickets_send(w);
        pid_t pid = rc == 0 ? fork() : -1;
        if (pid == 0)
            child_main(m, w);
        if (pid < 0)
            w->fork_err = rc < 0 ? rc : -errno;
        else
            w->pid = pid;
        close(w->child_fd);
        w->child_fd = -1;
        w->fork_done = true;
    }
}

/*
 * Closes, in the daemon, every descriptor it did not open itself: the
 * caller's stdin, stdout and stderr become /dev/null, and whatever else it
 * leaked into us (a pipe end, a terminal) is closed, so that a caller waiting
 * for end of file on a pipe (`spindle -d 2>&1 | cat`, ssh) returns once the
 * start-up has been reported.  The error log, when it is standard error,
 * writes to /dev/null from here on.
 */
static void detach_fds(struct master *m, int ready_fd)
{
    unsigned max = 8;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        max += l->nfds;
    int *keep = calloc(max, sizeof(*keep));
    if (keep) {
        unsigned n = 0;
        keep[n++] = STDIN_FILENO;
        keep[n++] = STDOUT_FILENO;
        keep[n++] = STDERR_FILENO;
        keep[n++] = ready_fd;
        keep[n++] = m->ctl_fd;
        keep[n++] = m->notify_fd;
        keep[n++] = sp_log_fd();
        keep[n++] = pidfile_fd();
        for (struct master_listener *l = m->listeners; l; l = l->next)
            for (unsigned i = 0; i < l->nfds; i++)
                keep[n++] = l->fds[i];
        master_close_fds_except(keep, n);
        free(keep);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
}

/* Detaches from the terminal: fork, setsid, fork again.  The original
 * process waits on a pipe for the daemon's start-up outcome and exits with
 * it.  Returns in the daemon only. */
void master_daemonize(struct master *m)
{
    int p[2];
    if (sp_log_fd() == STDERR_FILENO)
        fprintf(stderr, "spindle: error_log is stderr: the daemon's messages are discarded; "
                        "set error_log to a file to keep them\n");
    if (pipe2(p, O_CLOEXEC) != 0) {
        fprintf(stderr, "spindle: pipe() failed: %s\n", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "spindle: fork() failed: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        char buf[1024];
        size_t len = 0;
        ssize_t n;
        close(p[1]);
        while (len < sizeof(buf) - 1 && (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            len += (size_t)n;
        }
        buf[len] = '\0';
        waitpid(pid, NULL, 0);
        if (len > 0) {
            fprintf(stderr, "spindle: %s\n", buf);
            _exit(1);
        }
        _exit(0);
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    detach_fds(m, p[1]);
    m->ready_fd = p[1];
}
