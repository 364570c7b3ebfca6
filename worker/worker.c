/*
 * The worker process: acceptors, control channel, drain and exit.
 *
 * Every listener copy is handed to the IOManager (sp_iom_listen): when
 * connections are queued, one scheduler thread runs an accept batch that
 * accepts until EAGAIN and starts one fiber per connection on that thread,
 * where the connection then stays.  The channel fiber reads the master's
 * messages.  A drain closes our listener copies (the master keeps its own, so
 * no queued connection is lost), asks each service to close its idle
 * connections, and ends the process when the last connection is gone or
 * shutdown_timeout has passed.
 *
 * The master may lend us the slots of a worker that is gone or does not
 * answer (ADOPT, with the socket attached): each gets an acceptor like our
 * own until RELEASE or the drain closes our copy.
 */
#include "config.h"

#include "worker.h"
#include "metrics.h"

#include <errno.h>
#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#else
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spindle/channel.h"
#include "spindle/hook.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/module.h"
#include "spindle/net.h"
#include "spindle/timer.h"

#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000

struct acceptor {
    struct worker *w;
    atomic_int fd; /* -1 once a drain has closed it */
    struct service *svc;
    bool proxy; /* its listen address is flagged proxy_protocol */
    /* Touched by one batch at a time (the listener's one-shot guard). */
    int backoff;
    uint64_t last_warn;
};

/* A slot of another worker, accepted on until the master asks for it back.
 * On w->adopted while its fd is open; the batch call that reports the fd
 * closed frees it. */
struct adopted {
    struct acceptor a; /* the accept batch's argument */
    uint32_t key;
    bool linked;
    struct adopted *next;
};

struct worker {
    const struct sp_config *cfg;
    struct sp_iom *iom;
    unsigned generation, index;
    int channel_fd;
    uint64_t started_ns;
    /* The record the master shares (metrics.h), else own_counters. */
    struct worker_counters *counters;
    struct worker_counters own_counters;
    int metrics_proc;
    atomic_int draining;
    atomic_int drain_soon; /* DRAIN_SOON came: health checks fail from now on */
    atomic_int exiting;
    struct service *services;
    unsigned nservices;
    struct acceptor *acceptors;
    unsigned nacceptors;
    atomic_uint accepting;      /* listeners whose -ECANCELED batch call has not run */
    int sigfd;                  /* QUIT, TERM, INT; -1 if signalfd() failed */
    pthread_mutex_t adopt_lock; /* guards adopted: batches may run on other threads */
    struct adopted *adopted;
    char exit_reason[SP_MSG_REASON_MAX + 1];
};

struct sp_iom *worker_iom(struct worker *w)
{
    return w->iom;
}

struct worker_counters *worker_counters(struct worker *w)
{
    return w->counters;
}

int worker_metrics_proc(struct worker *w)
{
    return w->metrics_proc;
}

const struct sp_config *worker_config(struct worker *w)
{
    return w->cfg;
}

unsigned worker_generation(struct worker *w)
{
    return w->generation;
}

unsigned worker_index(struct worker *w)
{
    return w->index;
}

uint64_t worker_started_ns(struct worker *w)
{
    return w->started_ns;
}

int worker_draining(struct worker *w)
{
    return atomic_load(&w->draining);
}

int worker_drain_soon(struct worker *w)
{
    return atomic_load(&w->drain_soon);
}

static void maybe_finish(struct worker *w)
{
    /* An accept batch that is still running may hold a connection it has
     * accepted and not yet counted (threads > 1): its listener ends last. */
    if (atomic_load(&w->draining) && atomic_load(&w->counters->connections) == 0 &&
        atomic_load(&w->accepting) == 0 && !atomic_exchange(&w->exiting, 1)) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "drained");
        sp_iom_stop(w->iom);
    }
}

void worker_conn_closed(struct worker *w)
{
    atomic_fetch_sub(&w->counters->connections, 1);
    maybe_finish(w);
}

/* ---- memory -------------------------------------------------------------- */

/*
 * Memory a burst of connections freed goes back to the kernel once per
 * MEMORY_RELEASE_MS, in one call, and not while requests are served: the
 * program's malloc_conf (master/main.c) turns off jemalloc's own purging,
 * which returns pages a little at a time as they age, with an madvise() and
 * page faults to get them back as the next connections come, a few percent
 * of a worker's CPU per TLS handshake.  The C library's malloc, where spindle
 * is built without jemalloc, is trimmed on the same schedule.
 */
#define MEMORY_RELEASE_MS 10000
#define STR_(x)           #x
#define STR(x)            STR_(x)

static void memory_fiber(void *arg)
{
    (void)arg;
    for (;;) {
        sp_sleep(MEMORY_RELEASE_MS);
#ifdef HAVE_JEMALLOC
        mallctl("arena." STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
#else
        malloc_trim(0);
#endif
    }
}

/* ---- acceptors --------------------------------------------------------- */

/* One worker per process: connection fibers find it here. */
static struct worker *the_worker;

/* A new connection travels packed in the fiber's argument: service index
 * from bit 33, whether its listener is flagged proxy_protocol in bit 32 and
 * fd in the low half: no allocation per accept. */
static void connection_fiber(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    struct service *svc = &the_worker->services[v >> 33];
    int fd = (int)(uint32_t)v;
    if (!worker_conn_begin(fd, (v >> 32) & 1)) {
        sp_close(fd);
        worker_conn_closed(the_worker);
        return;
    }
    svc->def->handle(svc, fd);
}

/* Whether the listener lfd is on a listen address flagged proxy_protocol. */
static bool listener_proxy(struct worker *w, int lfd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(lfd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    const struct sp_listen_conf *l = sp_config_find_conflict(w->cfg, (struct sockaddr *)&ss);
    return l != NULL && l->proxy_protocol;
}

/* One accept batch, on the thread the listener woke; the listener is not
 * armed again until it returns. */
static void accept_batch(int lfd, int status, void *arg)
{
    struct acceptor *a = arg;
    struct worker *w = a->w;
    uintptr_t svc_bits = (uintptr_t)(a->svc - w->services) << 33 | (uintptr_t)a->proxy << 32;

    if (status < 0) { /* our copy of the listener was closed: draining */
        atomic_fetch_sub(&w->accepting, 1);
        maybe_finish(w);
        return;
    }
    while (!atomic_load(&w->draining) && atomic_load(&a->fd) >= 0) { /* closed: ends at once */
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = sp_try_accept(lfd, (struct sockaddr *)&peer, &peer_len);
        if (fd >= 0) {
            a->backoff = ACCEPT_BACKOFF_MIN_MS;
            worker_conn_accepted(fd, &peer);
            atomic_fetch_add(&w->counters->connections, 1);
            atomic_fetch_add(&w->counters->accepted, 1);
            if (sp_iom_spawn(w->iom, connection_fiber, (void *)(svc_bits | (uint32_t)fd)) != 0) {
                sp_close(fd);
                worker_conn_closed(w);
            }
            continue;
        }
        if (fd == -EAGAIN)
            return;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Out of descriptors or memory: the connection stays queued in the
             * kernel.  Back off instead of spinning on a listener that stays ready. */
            uint64_t now = sp_now_ns();
            if (now - a->last_warn > 1000000000ull) {
                sp_log_warn("accept4(%d) failed: %s; retrying in %d ms", lfd, strerror(-fd),
                            a->backoff);
                a->last_warn = now;
            }
            sp_sleep(a->backoff);
            a->backoff =
                a->backoff * 2 > ACCEPT_BACKOFF_MAX_MS ? ACCEPT_BACKOFF_MAX_MS : a->backoff * 2;
            continue;
        }
        sp_log_error("accept4(%d) failed: %s", lfd, strerror(-fd));
        sp_sleep(ACCEPT_BACKOFF_MIN_MS);
    }
}

/* ---- adopted slots ----------------------------------------------------------- */

/* Unlinks a from w->adopted and closes its fd, which ends its listener
 * (adopted_batch then frees a).  The caller holds adopt_lock. */
static void adopted_unlink(struct worker *w, struct adopted *a)
{
    for (struct adopted **p = &w->adopted; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    a->linked = false;
    int fd = atomic_exchange(&a->a.fd, -1);
    if (fd >= 0)
        sp_close(fd);
}

static void adopted_batch(int lfd, int status, void *arg)
{
    struct adopted *a = arg;

    if (status >= 0) {
        accept_batch(lfd, status, &a->a);
        return;
    }
    /* Closed by RELEASE or a drain, which unlinked it: nothing refers to it. */
    free(a);
}

/* The master hands us fd, a slot of a worker that is gone or does not
 * answer: accept on it too until it asks for it back.  Takes fd. */
static void adopt_slot(struct worker *w, const struct sp_msg_slot *slot, int fd)
{
    struct adopted *a = NULL;

    if (fd < 0) {
        sp_log_error("ADOPT of slot %u came without a descriptor", (unsigned)slot->key);
        return;
    }
    if (slot->service >= w->nservices || atomic_load(&w->draining))
        goto drop;
    pthread_mutex_lock(&w->adopt_lock);
    for (struct adopted *o = w->adopted; o; o = o->next)
        if (o->key == slot->key)
            a = o;
    pthread_mutex_unlock(&w->adopt_lock);
    if (a) /* already ours */
        goto drop;
    a = calloc(1, sizeof(*a));
    if (!a) {
        sp_log_error("cannot adopt slot %u: out of memory", (unsigned)slot->key);
        goto drop;
    }
    sp_net_set_nonblock(fd, 1);
    a->a.w = w;
    atomic_init(&a->a.fd, fd);
    a->a.svc = &w->services[slot->service];
    a->a.proxy = listener_proxy(w, fd);
    sp_net_set_nodelay(fd); /* see worker_start_acceptors */
    a->a.backoff = ACCEPT_BACKOFF_MIN_MS;
    a->key = slot->key;
    pthread_mutex_lock(&w->adopt_lock);
    int rc = sp_iom_listen(w->iom, fd, adopted_batch, a);
    if (rc == 0) {
        a->linked = true;
        a->next = w->adopted;
        w->adopted = a;
    }
    pthread_mutex_unlock(&w->adopt_lock);
    if (rc != 0) {
        sp_log_error("cannot adopt slot %u: %s", (unsigned)slot->key, strerror(-rc));
        free(a);
        goto drop;
    }
    return;

drop:
    close(fd);
}

static void release_slot(struct worker *w, uint32_t key)
{
    pthread_mutex_lock(&w->adopt_lock);
    for (struct adopted *a = w->adopted; a; a = a->next) {
        if (a->key == key) {
            adopted_unlink(w, a);
            break;
        }
    }
    pthread_mutex_unlock(&w->adopt_lock);
}

static void adopted_close_all(struct worker *w)
{
    pthread_mutex_lock(&w->adopt_lock);
    while (w->adopted)
        adopted_unlink(w, w->adopted);
    pthread_mutex_unlock(&w->adopt_lock);
}

/* ---- drain, stop, channel ------------------------------------------------ */

static void drain_deadline_fiber(void *arg)
{
    struct worker *w = arg;
    sp_sleep(w->cfg->shutdown_timeout_ms);
    if (!atomic_exchange(&w->exiting, 1)) {
        unsigned long n = (unsigned long)atomic_load(&w->counters->connections);
        snprintf(w->exit_reason, sizeof(w->exit_reason),
                 "shutdown_timeout with %lu connection%s open", n, n == 1 ? "" : "s");
        sp_log_warn("drain deadline reached with %lu connection%s open; exiting", n,
                    n == 1 ? "" : "s");
        sp_iom_stop(w->iom);
    }
}

static void worker_drain(struct worker *w, const char *why)
{
    if (atomic_exchange(&w->draining, 1))
        return;
    unsigned long nconn = (unsigned long)atomic_load(&w->counters->connections);
    sp_log_info("draining (%s), %lu connection%s open", why, nconn, nconn == 1 ? "" : "s");
    /* Closing our copies ends each listener with a -ECANCELED batch call
     * (once a running batch has returned).  The master still holds every
     * listener, so nothing queued in the kernel is lost. */
    for (unsigned i = 0; i < w->nacceptors; i++) {
        int fd = atomic_exchange(&w->acceptors[i].fd, -1);
        if (fd >= 0)
            sp_close(fd);
    }
    adopted_close_all(w);
    sp_iom_expire_watches(w->iom, WORKER_DRAIN_IDLE_MS);
    for (unsigned i = 0; i < w->nservices; i++)
        if (w->services[i].def->drain)
            w->services[i].def->drain(&w->services[i]);
    sp_iom_spawn(w->iom, drain_deadline_fiber, w);
    maybe_finish(w);
}

static void worker_stop(struct worker *w, const char *why)
{
    if (!atomic_exchange(&w->exiting, 1)) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "%s", why);
        sp_iom_stop(w->iom);
    }
}

/*
 * REOPEN: the master has reopened the log files (the worker may not be
 * allowed to) and sent them along, the error log first, then one per service
 * with a log file, in service order.  A file the master could not reopen
 * comes as the old one again; fds missing at the end leave those services
 * on their old file.  Takes ownership of fds[0..nfds).
 */
static void worker_reopen(struct worker *w, int *fds, unsigned nfds)
{
    unsigned k = 0;
    if (k < nfds) {
        int rc = sp_log_adopt(fds[k++]);
        if (rc < 0)
            sp_log_error("switching to the reopened error log failed: %s", strerror(-rc));
    }
    for (unsigned i = 0; i < w->nservices && k < nfds; i++) {
        struct service *svc = &w->services[i];
        if (!worker_log_path(w->cfg, i))
            continue;
        if (svc->def->reopen)
            svc->def->reopen(svc, fds[k]);
        else
            close(fds[k]);
        k++;
    }
    while (k < nfds)
        close(fds[k++]);
}

/*
 * Reads one control message into *m, and the fds a REOPEN or an ADOPT
 * carries into fds (*nfds of them, owned by the caller; fds on any other
 * message are closed).  Returns the packet length, 0 at end of stream, -EBADMSG for a
 * packet that is no valid message, or -errno.
 */
static ssize_t channel_recv(struct worker *w, struct sp_msg *m, int *fds, unsigned *nfds)
{
    unsigned char buf[SP_MSG_MAX];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * SP_MSG_MAX_FDS)];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};

    *nfds = 0;
    ssize_t n = sp_recvmsg(w->channel_fd, &msg, MSG_CMSG_CLOEXEC, -1);
    if (n < 0)
        return n;
    *nfds = sp_msg_take_fds(&msg, fds, SP_MSG_MAX_FDS);
    if (msg.msg_flags & MSG_CTRUNC)
        sp_log_warn("control message carried more fds than expected; some were dropped");
    bool bad = n > 0 && sp_msg_decode(buf, (size_t)n, m) != 0;
    explicit_bzero(buf, sizeof(buf)); /* it may have held ticket keys */
    if (n == 0 || bad || (m->type != SP_MSG_REOPEN && m->type != SP_MSG_ADOPT))
        while (*nfds > 0)
            close(fds[--*nfds]);
    return bad ? -EBADMSG : n;
}

static int send_msg(struct worker *w, const struct sp_msg *m)
{
    unsigned char buf[SP_MSG_MAX];
    if (w->channel_fd < 0)
        return 0;
    ssize_t len = sp_msg_encode(m, buf, sizeof(buf));
    if (len < 0)
        return (int)len;
    ssize_t n = sp_write(w->channel_fd, buf, (size_t)len, 1000);
    return n < 0 ? (int)n : 0;
}

/* Tells the master why we exit.  Written directly: the scheduler has stopped. */
static void send_exiting(struct worker *w, int code, const char *reason)
{
    struct sp_msg m;
    if (w->channel_fd < 0)
        return;
    memset(&m, 0, sizeof(m));
    m.type = SP_MSG_EXITING;
    m.exiting.code = code;
    size_t n = strnlen(reason, SP_MSG_REASON_MAX);
    memcpy(m.exiting.reason, reason, n);
    m.exiting.reason[n] = '\0';
    (void)sp_msg_send(w->channel_fd, &m); /* the master may be gone: nobody is left to tell */
}

static void fill_status(struct worker *w, struct sp_msg *m)
{
    struct sp_iom_stats st;
    sp_iom_stats(w->iom, &st);
    memset(m, 0, sizeof(*m));
    m->type = SP_MSG_STATUS;
    m->status.pid = (uint32_t)getpid();
    m->status.generation = w->generation;
    m->status.index = w->index;
    m->status.connections = atomic_load(&w->counters->connections);
    m->status.requests = atomic_load(&w->counters->requests);
    m->status.bytes_in = atomic_load(&w->counters->bytes_in);
    m->status.bytes_out = atomic_load(&w->counters->bytes_out);
    m->status.fibers_live = st.fibers_live;
    m->status.fibers_pooled = st.fibers_pooled;
    m->status.uptime_ms = (sp_now_ns() - w->started_ns) / 1000000;
}

static void channel_fiber(void *arg)
{
    struct worker *w = arg;
    struct sp_msg m;
    int fds[SP_MSG_MAX_FDS];
    unsigned nfds;

    for (;;) {
        ssize_t n = channel_recv(w, &m, fds, &nfds);
        if (n == -ECANCELED)
            return;
        if (n == -EBADMSG) {
            sp_log_error("bad control message ignored");
            continue;
        }
        if (n <= 0) {
            /* The master is gone (PR_SET_PDEATHSIG normally ends us first).
             * A new master cannot be started while we live, and our listener
             * copies would take a share of its connections: stop now. */
            sp_log_warn("control channel closed (%s); stopping",
                        n == 0 ? "master exited" : strerror((int)-n));
            worker_stop(w, "master gone");
            return;
        }
        if (m.type == SP_MSG_ADOPT) {
            if (nfds == 1)
                adopt_slot(w, &m.slot, fds[0]);
            else {
                sp_log_error("ADOPT of slot %u came with %u descriptors", (unsigned)m.slot.key,
                             nfds);
                while (nfds > 0)
                    close(fds[--nfds]);
            }
            continue;
        }
        switch (m.type) {
        case SP_MSG_DRAIN:
            worker_drain(w, "master asked");
            break;
        case SP_MSG_STOP:
            worker_stop(w, "stopped");
            return;
        case SP_MSG_REOPEN:
            worker_reopen(w, fds, nfds);
            break;
        case SP_MSG_STATUS_REQ:
            fill_status(w, &m);
            send_msg(w, &m);
            break;
        case SP_MSG_PING:
            memset(&m, 0, sizeof(m));
            m.type = SP_MSG_PONG;
            send_msg(w, &m);
            break;
        case SP_MSG_RELEASE:
            release_slot(w, m.slot.key);
            break;
        case SP_MSG_TICKET_KEYS:
            worker_tickets_set(&m.tickets);
            explicit_bzero(&m, sizeof(m));
            break;
        case SP_MSG_DRAIN_SOON:
            if (!atomic_exchange(&w->drain_soon, 1))
                sp_log_info("draining soon: health checks fail from now on");
            break;
        default:
            sp_log_error("unexpected control message type %u ignored", (unsigned)m.type);
            break;
        }
    }
}

/* ---- signals ------------------------------------------------------------- */

/*
 * Signals are meant for the master, but `killall` and `systemctl kill` send
 * them to every process.  HUP, USR1 and USR2 are ignored (the master's
 * reload and reopen reach us over the channel); QUIT drains and TERM and INT
 * stop, as the master would have asked.  Blocked before the scheduler's
 * threads exist, so that each of them inherits the mask and only the
 * signalfd sees them.
 */
static int setup_signals(struct worker *w)
{
    sigset_t set;

    w->sigfd = -1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    w->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w->sigfd < 0) {
        int err = errno;
        sigprocmask(SIG_UNBLOCK, &set, NULL); /* default actions rather than none */
        return -err;
    }
    return 0;
}

static void signal_fiber(void *arg)
{
    struct worker *w = arg;
    struct signalfd_siginfo si;

    for (;;) {
        ssize_t n = sp_read(w->sigfd, &si, sizeof(si), -1);
        if (n == -ECANCELED)
            return;
        if (n != (ssize_t)sizeof(si)) {
            sp_log_error("read(%d) from the signalfd failed: %s", w->sigfd,
                         n < 0 ? strerror((int)-n) : "short read");
            return;
        }
        if (si.ssi_signo == SIGQUIT) {
            worker_drain(w, "SIGQUIT");
        } else {
            sp_log_info("%s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            worker_stop(w, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
    }
}

/* ---- main ---------------------------------------------------------------- */

/* Every service frees what it holds, then the worker what it allocated, so
 * that a leak checker sees what a service forgot as lost.  Runs once the
 * scheduler has stopped (or never ran): no fiber touches any of it again. */
static void worker_free(struct worker *w)
{
    for (unsigned i = 0; w->services != NULL && i < w->nservices; i++) {
        struct service *svc = &w->services[i];
        if (svc->def != NULL && svc->def->fini)
            svc->def->fini(svc);
    }
    free(w->services);
    w->services = NULL;
    w->nservices = 0;
    modules_unload(); /* after the services: a module's service may use its state */
    worker_tickets_clear();
    free(w->acceptors);
    w->acceptors = NULL;
    w->nacceptors = 0;
    worker_peers_free();
}

/*
 * The master queued the session ticket keys on the channel before it forked
 * us, ahead of any other message: take them before anything serves, so
 * that the first connection gets a ticket every other worker can open.
 * Reads only SP_MSG_TICKET_KEYS packets at the head of the queue (MSG_PEEK
 * shows the type); whatever follows is the channel fiber's.
 */
static void take_queued_tickets(struct worker *w)
{
    unsigned char head[SP_MSG_HEADER];
    struct sp_msg m;

    for (;;) {
        ssize_t n = recv(w->channel_fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
        if (n != (ssize_t)sizeof(head) || (head[2] | head[3] << 8) != SP_MSG_TICKET_KEYS)
            return;
        ssize_t rc = sp_msg_recv(w->channel_fd, &m);
        if (rc == -EBADMSG) {
            sp_log_error("bad control message ignored");
            continue;
        }
        if (rc <= 0)
            return;
        worker_tickets_set(&m.tickets);
        explicit_bzero(&m, sizeof(m));
    }
}

/* Stage 1: the worker's own state, its signals and its scheduler.  Returns
 * 0, or -1 with the reason in w->exit_reason. */
static int worker_setup(struct worker *w, const struct worker_args *args)
{
    const struct sp_config *cfg = args->cfg;

    int rc = setup_signals(w);
    if (rc < 0)
        sp_log_warn("signalfd() failed: %s; QUIT, TERM and INT keep their default actions",
                    strerror(-rc));
    pthread_mutex_init(&w->adopt_lock, NULL);
    w->cfg = cfg;
    w->generation = args->generation;
    w->index = args->index;
    w->metrics_proc = args->metrics_proc;
    w->counters = metrics_proc_counters(args->metrics_proc);
    if (!w->counters)
        w->counters = &w->own_counters;
    w->channel_fd = args->channel_fd;
    if (w->channel_fd >= 0) {
        sp_net_set_nonblock(w->channel_fd, 1);
        take_queued_tickets(w);
    }
    w->started_ns = sp_now_ns();
    the_worker = w;

    /* Before any fiber runs: a module's blocking client library then parks
     * its fiber instead of the thread (spindle/hook.h). */
    sp_hook_enable(cfg->hooks);

    struct sp_iom_config icfg = {
        .threads = cfg->threads,
        .pool = {.stack_size = cfg->stack_size},
    };
    w->iom = sp_iom_new(&icfg);
    if (!w->iom) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "cannot create the IOManager: %s",
                 strerror(errno));
        return -1;
    }
    w->services = calloc(cfg->nservices, sizeof(*w->services));
    w->acceptors = calloc(args->nlisteners ? args->nlisteners : 1, sizeof(*w->acceptors));
    if (!w->services || !w->acceptors) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "out of memory");
        return -1;
    }
    return 0;
}

/* Service i as the callbacks see it.  A [service NAME] section runs the
 * service of the module it names, with the module's configuration and state. */
static void service_bind(struct worker *w, const struct worker_args *args, unsigned i)
{
    const struct sp_config *cfg = w->cfg;
    struct service *svc = &w->services[i];
    const struct sp_module_service_conf *sc = sp_config_module_service(cfg, i);

    svc->section = &cfg->services[i];
    svc->def = svc->section->def;
    svc->conf = svc->section->conf;
    svc->worker = w;
    svc->log_fd = args->log_fds ? args->log_fds[i] : -EBADF;
    if (sc) { /* modules_load() checked that it provides one */
        struct sp_module_instance *mi = sp_module_find(cfg->modules[sc->index].name);
        svc->def = mi->def->service;
        svc->conf = mi->conf;
        svc->state = mi->state;
    }
}

/* Stage 2: the modules, then every service's init.  Returns 0, or -1 with
 * the reason in w->exit_reason. */
static int worker_start_services(struct worker *w, const struct worker_args *args)
{
    char err[160];

    if (modules_load(w->cfg, w->channel_fd, w->exit_reason, sizeof(w->exit_reason)) != 0)
        return -1;
    for (unsigned i = 0; i < w->cfg->nservices; i++) {
        struct service *svc = &w->services[i];
        service_bind(w, args, i);
        w->nservices = i + 1; /* those inited so far, and this one, get fini */
        if (svc->def->init && svc->def->init(svc, err, sizeof(err)) != 0) {
            snprintf(w->exit_reason, sizeof(w->exit_reason), "[%s %s]: %s", svc->section->def->name,
                     svc->section->name, err);
            return -1;
        }
    }
    return 0;
}

/* Stage 3: an acceptor on each listener copy, the channel and signal
 * fibers.  Returns 0, or -1 with the reason in w->exit_reason. */
static int worker_start_acceptors(struct worker *w, const struct worker_args *args)
{
    for (unsigned i = 0; i < args->nlisteners; i++) {
        struct acceptor *a = &w->acceptors[w->nacceptors++];
        a->w = w;
        atomic_init(&a->fd, args->listeners[i].fd);
        a->svc = &w->services[args->listeners[i].service];
        a->proxy = listener_proxy(w, args->listeners[i].fd);
        /* Linux copies TCP_NODELAY from a listener to the sockets it
         * accepts: set once here, not once per connection.  (A Unix socket
         * refuses it, and so would its connections.) */
        sp_net_set_nodelay(args->listeners[i].fd);
        a->backoff = ACCEPT_BACKOFF_MIN_MS;
        atomic_fetch_add(&w->accepting, 1); /* before it can end */
        int rc = sp_iom_listen(w->iom, args->listeners[i].fd, accept_batch, a);
        if (rc != 0) {
            atomic_fetch_sub(&w->accepting, 1);
            snprintf(w->exit_reason, sizeof(w->exit_reason), "cannot watch listener %d: %s",
                     args->listeners[i].fd, strerror(-rc));
            return -1;
        }
    }
    if ((w->channel_fd >= 0 && sp_iom_spawn(w->iom, channel_fiber, w) != 0) ||
        (w->sigfd >= 0 && sp_iom_spawn(w->iom, signal_fiber, w) != 0) ||
        sp_iom_spawn(w->iom, memory_fiber, NULL) != 0) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "out of memory");
        return -1;
    }
    return 0;
}

/* Stage 4: tell the master we serve.  Returns 0, or -1 with the reason in
 * w->exit_reason. */
static int worker_report_ready(struct worker *w)
{
    struct sp_msg m;

    /* Die with the master, even stopped or wedged (see channel_fiber).  Set
     * here, after any change of credentials, which clears it; a master that
     * died before this shows as end of stream on the channel. */
    if (w->channel_fd >= 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        sp_log_warn("prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));

    memset(&m, 0, sizeof(m));
    m.type = SP_MSG_READY;
    m.ready.pid = (uint32_t)getpid();
    m.ready.generation = w->generation;
    m.ready.index = w->index;
    if (w->channel_fd >= 0 && send_msg(w, &m) != 0) {
        snprintf(w->exit_reason, sizeof(w->exit_reason), "cannot reach the master");
        return -1;
    }
    return 0;
}

int worker_main(const struct worker_args *args)
{
    static struct worker worker;
    struct worker *w = &worker;

    if (worker_setup(w, args) != 0 || worker_start_services(w, args) != 0 ||
        worker_start_acceptors(w, args) != 0 || worker_report_ready(w) != 0) {
        sp_log_error("worker failed to start: %s", w->exit_reason);
        worker_free(w);
        send_exiting(w, 2, w->exit_reason);
        return 2;
    }

    int rc = sp_iom_run(w->iom);
    if (rc < 0)
        sp_log_error("scheduler failed: %s", strerror(-rc));
    worker_free(w);
    send_exiting(w, rc < 0 ? 1 : 0, w->exit_reason[0] ? w->exit_reason : "stopped");
    return rc < 0 ? 1 : 0;
}
