/*
 * Process plumbing: the child side of a worker fork, the fork queue served
 * on the main stack, and detaching from the terminal (-d).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

static bool is_kept(const int *keep, unsigned n, int fd)
{
    for (unsigned k = 0; k < n; k++)
        if (keep[k] == fd)
            return true;
    return false;
}

/* Closes every fd except those in keep[0..n): the child must not hold the
 * master's epoll, signalfd, control socket, other workers' channels or
 * slots it does not serve (a held slot would keep a queue alive that no one
 * accepts from). */
static void close_other_fds(const int *keep, unsigned n)
{
    int fds[4096];
    unsigned nfds = 0;
    DIR *d = opendir("/proc/self/fd");

    if (d) {
        int dfd = dirfd(d);
        struct dirent *e;
        bool more = false;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            int fd = atoi(e->d_name);
            if (fd == dfd)
                continue;
            if (nfds == sizeof(fds) / sizeof(fds[0])) {
                more = true;
                break;
            }
            fds[nfds++] = fd;
        }
        closedir(d);
        if (!more) {
            for (unsigned i = 0; i < nfds; i++)
                if (!is_kept(keep, n, fds[i]))
                    close(fds[i]);
            return;
        }
    }
    /* No /proc, or too many fds to list: try every number. */
    struct rlimit rl;
    int max =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1048576 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < max; fd++)
        if (!is_kept(keep, n, fd))
            close(fd);
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

    unsigned max = 0;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        max += l->nfds;
    struct worker_listener *ls = calloc(max ? max : 1, sizeof(*ls));
    int *keep = calloc(max + 5, sizeof(*keep));
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
    close_other_fds(keep, nkeep);

    snprintf(who, sizeof(who), "worker %u", w->index);
    sp_log_set_who(who);
    master_set_title("spindle: worker process");
    if (cfg->cpu_affinity)
        pin_to_cpu(w->index);
    struct worker_args args = {
        .cfg = cfg,
        .generation = w->gen->id,
        .index = w->index,
        .channel_fd = w->child_fd,
        .listeners = ls,
        .nlisteners = n,
    };
    _exit(worker_main(&args));
}

/* Serves the fork requests queued by fibers; runs on the main stack while
 * the scheduler is stopped. */
void master_serve_forks(struct master *m)
{
    struct master_worker *q = NULL;
    while (m->fork_queue) { /* reverse: fork in the order asked */
        struct master_worker *w = m->fork_queue;
        m->fork_queue = w->fork_next;
        w->fork_next = q;
        q = w;
    }
    for (struct master_worker *w = q; w; w = w->fork_next) {
        pid_t pid = fork();
        if (pid == 0)
            child_main(m, w);
        if (pid < 0)
            w->fork_err = -errno;
        else
            w->pid = pid;
        close(w->child_fd);
        w->child_fd = -1;
        w->fork_done = true;
    }
}

/* Detaches from the terminal: fork, setsid, fork again.  The original
 * process waits on a pipe for the daemon's start-up outcome and exits with
 * it.  Returns in the daemon only. */
void master_daemonize(struct master *m)
{
    int p[2];
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
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (sp_log_fd() != STDERR_FILENO)
            dup2(null, STDERR_FILENO);
        close(null);
    }
    m->ready_fd = p[1];
}
