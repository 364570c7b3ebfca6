/*
 * prefork: fork the workers, give each its own SO_REUSEPORT listener and event base,
 * report readiness, stop them all on a signal or when one dies. See prefork.h.
 */
#include "config.h"

#include "prefork.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

/* The program name for messages; set by prefork_run() before the workers fork. */
static const char *prog = "prefork";

static void die(const char *what)
{
    fprintf(stderr, "%s[%d]: %s: %s\n", prog, (int)getpid(), what, strerror(errno));
    exit(1);
}

int prefork_option(struct prefork *pf, int opt, const char *arg)
{
    switch (opt) {
    case 'a':
        pf->addr = arg;
        return 0;
    case 'p':
        pf->port = atoi(arg);
        return 0;
    case 'w':
        pf->workers = atoi(arg);
        return 0;
    case 'b':
        pf->backlog = atoi(arg);
        return 0;
    case 'C':
        pf->changelist = 0;
        return 0;
    default:
        return -1;
    }
}

int prefork_valid(const struct prefork *pf)
{
    return pf->port >= 0 && pf->port <= 65535 && pf->workers >= 1 &&
           pf->workers <= PREFORK_MAX_WORKERS;
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int open_listener(const struct prefork *pf)
{
    struct sockaddr_in sin;
    int one = 1;
    int fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)pf->port);
    if (inet_pton(AF_INET, pf->addr, &sin.sin_addr) != 1) {
        fprintf(stderr, "%s: bad address %s\n", prog, pf->addr);
        exit(2);
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        die("setsockopt(SO_REUSEPORT)");
    if (pf->nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        die("bind");
    if (listen(fd, pf->backlog) < 0)
        die("listen");
    return fd;
}

struct event_base *prefork_event_base(const struct prefork *pf)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;
    int flags = EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_IGNORE_ENV;

    if (pf->changelist)
        flags |= EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST;
    if (cfg == NULL || event_config_set_flag(cfg, flags) < 0)
        die("event_config");
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base == NULL)
        die("event_base_new_with_config");
    return base;
}

void prefork_ready(int ready_fd)
{
    if (write(ready_fd, "r", 1) != 1)
        die("write(ready)");
    close(ready_fd);
}

static void stop_workers(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            waitpid(pids[i], NULL, 0);
}

int prefork_run(const struct prefork *pf)
{
    pid_t pids[PREFORK_MAX_WORKERS];
    int workers = pf->workers;
    sigset_t mask, old;
    int ready[2];
    int ret = 0;

    assert(prefork_valid(pf));
    prog = pf->name;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &old);
    if (pipe2(ready, O_CLOEXEC) < 0)
        die("pipe2");

    for (int i = 0; i < workers; i++) {
        pid_t parent = getpid();
        pid_t pid = fork();

        if (pid < 0)
            die("fork");
        if (pid == 0) {
            /* Workers die with the parent, whatever killed it. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            sigprocmask(SIG_SETMASK, &old, NULL);
            close(ready[0]);
            pf->worker(pf, open_listener(pf), ready[1]);
            _exit(0);
        }
        pids[i] = pid;
    }
    close(ready[1]);
    for (int i = 0; i < workers; i++) {
        char c;

        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "%s: a worker failed to start\n", prog);
            stop_workers(pids, workers);
            return 1;
        }
    }
    close(ready[0]);
    printf("%s: listening on %s:%d, master %d, workers", prog, pf->addr, pf->port, (int)getpid());
    for (int i = 0; i < workers; i++)
        printf(" %d", (int)pids[i]);
    printf("\n");
    fflush(stdout);

    for (;;) {
        int sig;
        pid_t dead;

        if (sigwait(&mask, &sig) != 0)
            continue;
        if (sig != SIGCHLD)
            break;
        dead = waitpid(-1, NULL, WNOHANG);
        if (dead > 0) {
            fprintf(stderr, "%s: worker %d exited, stopping\n", prog, (int)dead);
            for (int i = 0; i < workers; i++)
                if (pids[i] == dead)
                    pids[i] = -1;
            ret = 1;
            break;
        }
    }
    stop_workers(pids, workers);
    return ret;
}
