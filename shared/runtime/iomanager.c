/*
 * The IOManager: per scheduler thread an fd table, timers, fiber pool, run
 * queue and scheduler loop; per IOManager the listeners its threads share.
 * The kernel's readiness interface sits behind the poller backend (poller.h,
 * poller_epoll.c); this file decides what to wait for and when.
 *
 * Fibers are thread-affine: with threads > 1 each thread is a complete
 * single-thread scheduler with its own poller, and a fiber never leaves the
 * thread it started on (per-thread library state - errno, an SSL error queue
 * - stays valid across a park).  A connection belongs to the thread that
 * accepted it.  Only the listeners can wake any thread: they sit in one
 * poller shared by the threads and nested in each thread's, armed one-shot,
 * so one thread at a time runs a listener's accept batch, and it is armed
 * again when the batch ends.  An owner map checks, on every fd operation,
 * that no second thread touches an fd (see owner_check).  Work for another
 * thread (a spawn from outside, a close of its fd, expiring its watches)
 * goes through that thread's inbox.
 *
 * Per-fd state lives in a flat table indexed by fd (chunks that never move,
 * because timer nodes are embedded in them).  Each entry has a generation
 * number that is bumped on every sp_close(); the generation travels in the
 * poller event's data next to the fd, so an event queued for an fd that has
 * been closed (and perhaps reused) since is recognised and dropped.
 *
 * Two arming policies: a thread's own fds are registered edge-triggered,
 * once for reading and once more for writing the first time a writer waits,
 * with readiness cached; listeners are armed one-shot and re-armed after each
 * accept batch.
 *
 * A hang-up (SP_POLL_RDHUP, SP_POLL_HUP, SP_POLL_ERR) is remembered in the entry until
 * sp_close(): edge-triggered mode reports it once, and a connection that read
 * the last bytes before the FIN without reaching the end of stream (a short
 * read) must still learn of it.  A watch or a wait on such an fd completes at
 * once; the read that follows returns 0 or the error and never EAGAIN.
 *
 * A fiber never arms its own wake-up: it records what it waits for and
 * switches to the scheduler, which commits the wait (registers the fd, arms
 * the timer) once the fiber's stack is no longer in use.  The lock of the
 * threads' shared state is taken only for work that crosses threads, never
 * while a fiber runs or a thread sleeps in the poller.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "poller.h"
#include "spindle/io.h"

/* The backend is compiled into this file, as redis's ae.c includes
 * ae_epoll.c: its small functions then inline into the loop. */
#include "poller_epoll.c"

#define FD_CHUNK_BITS  12
#define FD_CHUNK       (1u << FD_CHUNK_BITS)
#define FD_CHUNKS      1024 /* fds up to 4 Mi */
#define MAX_EVENTS     256
#define DEFAULT_BUDGET 16

struct fdctx {
    int fd;
    uint32_t gen;
    unsigned char registered;   /* added to the poller: SP_IO_READ, | SP_IO_WRITE once a
                                   writer waited (see arm()) */
    unsigned char ready;        /* cached readiness (single-thread mode): SP_IO_READ|SP_IO_WRITE */
    unsigned char hup;          /* the peer hung up or the fd failed: the directions (SP_IO_*)
                                   that will never block again; kept until sp_close() */
    unsigned char drained;      /* sp_try_read() came back short, and no read event since:
                                   with ready clear, nothing to read (see read_begin) */
    struct sp_fiber *waiter[2]; /* parked reader, writer */
    sp_watch_fn *watch_fn;
    void *watch_arg;
    struct sp_timer watch_timer;
    /* A fired watch waits in the due list, with its status, until the
     * scheduler gives it a fiber: see run_due(). */
    unsigned char due;
    int due_status;
    struct fdctx *due_next; /* NULL at the end */
};

struct group;

/* One scheduler thread's state, touched only by that thread (but for the
 * fields marked "group lock"). */
struct sp_iom {
    struct sp_poller *poller;
    struct group *g;
    unsigned index;         /* in g->members */
    unsigned char owner_id; /* index + 1 in g's owner map; 0 = one thread, no checks */
    unsigned budget;
    struct sp_fiber_pool *pool;
    struct sp_timer_heap timers;
    struct sp_fiber *runq_head, *runq_tail;
    unsigned runq_len;
    struct sp_fiber *live; /* every fiber started and not finished */
    unsigned nlive, nwatches;
    struct fdctx *due_head, *due_tail; /* NULL when empty */
    unsigned ndue;
    int due_stalled; /* the last pass found no stack for a due callback */
    atomic_int stopping;
    atomic_int running; /* inside sp_iom_run() */
    int error;
    int idle;                           /* group lock: found nothing to do */
    struct request *inbox, *inbox_tail; /* group lock: work from other threads */
    atomic_int inbox_pending;
    struct sp_iom *next_all;
    struct fdctx *chunks[FD_CHUNKS];
};

/* Work another thread hands to a scheduler thread (see post()). */
enum { REQ_SPAWN, REQ_CLOSE, REQ_EXPIRE };
struct request {
    struct request *next;
    int kind;
    sp_fiber_fn *fn;
    void *arg;
    int fd;
    int64_t ms;
};

#define MAX_LISTENERS 64
#define LISTEN_DATA   (UINT64_MAX - 1) /* the listener poller, nested in a thread's */

/* A listening socket that every thread of the group may be woken for. */
struct listener {
    int fd;        /* -1 once closed */
    int in_use;    /* until the -ECANCELED call has run */
    int closing;   /* sp_close() called: no more batches */
    unsigned busy; /* batches running (one at most while the one-shot guard is on) */
    int cancel_fd;
    sp_watch_fn *fn;
    void *arg;
};

/*
 * The threads of one IOManager.  Each has its own poller, fd table, timers,
 * fiber pool and run queue, and a fiber never leaves the thread it started
 * on.  What they share: the listener poller (one-shot registrations, nested in
 * every thread's poller), the owner map and the inboxes, under one lock that
 * is taken only for work that crosses threads.
 */
struct group {
    unsigned n;
    struct sp_iom **members; /* members[0] is the handle sp_iom_new() returned */
    pthread_mutex_t lock;
    struct sp_poller *lpoller;
    struct listener listeners[MAX_LISTENERS];
    unsigned nlisteners; /* slots in use */
    atomic_uint next_spawn;
    /* n > 1: which thread has each fd, 0 = none; chunks made on first use (the
     * pointers are atomic: a thread may publish one while another reads). */
    _Atomic(_Atomic(unsigned char) *) owner[FD_CHUNKS];
};

/* Tests only: listeners armed level-triggered, without the one-shot guard. */
int sp__iom_unguarded_listeners;

int sp__threaded;

/*
 * Every IOManager of the process.  An fd number is process-wide, so sp_close()
 * called outside any scheduler (before or between runs) must still make each
 * of them forget the fd: a stale "registered" would keep the next socket that
 * gets the number out of the poller.
 */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sp_iom *all_ioms;

static __thread struct sp_iom *tls_iom;

/*
 * The scheduler thread this code runs on.  (Read through a function the
 * compiler cannot see through, which costs nothing measurable and keeps the
 * read right should fibers ever move between threads again.)
 */
static __attribute__((noinline)) struct sp_iom *current_iom(void)
{
    struct sp_iom *iom = tls_iom;
    __asm__ volatile("" ::: "memory");
    return iom;
}

struct sp_iom *sp_iom_current(void)
{
    return current_iom();
}

unsigned sp_iom_thread_index(void)
{
    struct sp_iom *iom = current_iom();
    return iom ? iom->index : 0;
}

static void watch_timer_fired(struct sp_timer *t);

/* ---- fd ownership ---------------------------------------------------------
 *
 * With several threads, each fd belongs to one of them: the first that
 * operates on it, until sp_close().  A listener belongs to the thread running
 * its accept batch, for the batch.  Every fd operation checks: a second
 * thread touching an fd is a bug that would corrupt the fd's state, and it
 * aborts at once with both threads named.
 */

static __attribute__((noinline)) _Atomic(unsigned char) *owner_chunk_new(struct group *g,
                                                                         unsigned c)
{
    _Atomic(unsigned char) *chunk = NULL, *fresh = calloc(FD_CHUNK, 1);
    if (!fresh)
        return NULL;
    if (atomic_compare_exchange_strong(&g->owner[c], &chunk, fresh))
        return fresh;
    free(fresh); /* another thread was first */
    return chunk;
}

static inline _Atomic(unsigned char) *owner_slot(struct group *g, int fd)
{
    if (fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS)
        return NULL;
    unsigned c = (unsigned)fd >> FD_CHUNK_BITS;
    _Atomic(unsigned char) *chunk = atomic_load_explicit(&g->owner[c], memory_order_acquire);
    if (__builtin_expect(!chunk, 0) && !(chunk = owner_chunk_new(g, c)))
        return NULL;
    return &chunk[(unsigned)fd & (FD_CHUNK - 1)];
}

static __attribute__((noinline, noreturn)) void owner_violation(int fd, unsigned me, unsigned other)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg),
                     "spindle: fd %d used by scheduler thread %u while thread %u has it\n", fd, me,
                     other);
    ssize_t w = write(2, msg, n > 0 ? (size_t)n : 0);
    (void)w;
    abort();
}

/* Takes fd for this thread, or aborts if another one has it. */
static inline void owner_check(struct sp_iom *iom, int fd)
{
    if (!iom->owner_id)
        return;
    _Atomic(unsigned char) *slot = owner_slot(iom->g, fd);
    if (!slot)
        return;
    unsigned char o = atomic_load_explicit(slot, memory_order_relaxed);
    if (o == iom->owner_id)
        return;
    if (o == 0 && atomic_compare_exchange_strong(slot, &o, iom->owner_id))
        return;
    owner_violation(fd, iom->owner_id, o);
}

static unsigned owner_of(struct group *g, int fd)
{
    _Atomic(unsigned char) *slot = g->n > 1 ? owner_slot(g, fd) : NULL;
    return slot ? atomic_load(slot) : 0;
}

static void owner_release(struct sp_iom *iom, int fd)
{
    _Atomic(unsigned char) *slot = iom->owner_id ? owner_slot(iom->g, fd) : NULL;
    if (slot)
        atomic_store(slot, 0);
}

/* ---- work for another thread ---------------------------------------------- */

/* Queues r on thread m and wakes it. */
static void post(struct sp_iom *m, struct request *r)
{
    struct group *g = m->g;
    r->next = NULL;
    pthread_mutex_lock(&g->lock);
    if (m->inbox_tail)
        m->inbox_tail->next = r;
    else
        m->inbox = r;
    m->inbox_tail = r;
    m->idle = 0;
    atomic_store(&m->inbox_pending, 1);
    pthread_mutex_unlock(&g->lock);
    sp__poller_wake(m->poller);
}

static int post_new(struct sp_iom *m, int kind, sp_fiber_fn *fn, void *arg, int fd, int64_t ms)
{
    struct request *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (struct request){.kind = kind, .fn = fn, .arg = arg, .fd = fd, .ms = ms};
    post(m, r);
    return 0;
}

/* Returns the entry for fd, creating its chunk when create is set; NULL if out of range or memory.
 */
static struct fdctx *fdctx_get(struct sp_iom *iom, int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS)
        return NULL;
    struct fdctx *chunk = iom->chunks[(unsigned)fd >> FD_CHUNK_BITS];
    if (!chunk) {
        if (!create)
            return NULL;
        chunk = calloc(FD_CHUNK, sizeof(*chunk));
        if (!chunk)
            return NULL;
        for (unsigned i = 0; i < FD_CHUNK; i++) {
            chunk[i].fd = (int)(((unsigned)fd & ~(FD_CHUNK - 1)) + i);
            sp_timer_init(&chunk[i].watch_timer, watch_timer_fired);
        }
        /* Published for sp__iom_fd_gen(), which reads without the lock. */
        __atomic_store_n(&iom->chunks[(unsigned)fd >> FD_CHUNK_BITS], chunk, __ATOMIC_RELEASE);
    }
    return &chunk[(unsigned)fd & (FD_CHUNK - 1)];
}

/* An entry not created yet has generation 0, as it will have once created. */
static uint32_t fd_gen(struct sp_iom *iom, int fd)
{
    struct fdctx *chunk =
        __atomic_load_n(&iom->chunks[(unsigned)fd >> FD_CHUNK_BITS], __ATOMIC_ACQUIRE);
    return chunk ? __atomic_load_n(&chunk[(unsigned)fd & (FD_CHUNK - 1)].gen, __ATOMIC_RELAXED) : 0;
}

uint32_t sp__iom_fd_gen(int fd)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom || fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS)
        return 0;
    owner_check(f->iom, fd);
    return fd_gen(f->iom, fd);
}

/* ---- run queue and fiber life ---------------------------------------- */

static void runq_push(struct sp_iom *iom, struct sp_fiber *f)
{
    f->run_next = NULL;
    if (iom->runq_tail)
        iom->runq_tail->run_next = f;
    else
        iom->runq_head = f;
    iom->runq_tail = f;
    iom->runq_len++;
}

static struct sp_fiber *runq_pop(struct sp_iom *iom)
{
    struct sp_fiber *f = iom->runq_head;
    if (f) {
        iom->runq_head = f->run_next;
        if (!iom->runq_head)
            iom->runq_tail = NULL;
        iom->runq_len--;
    }
    return f;
}

static void fiber_timer_fired(struct sp_timer *t);

/* Takes a fiber from the pool and counts it live. */
static struct sp_fiber *fiber_start(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
{
    struct sp_fiber *f = sp_fiber_new(iom->pool, fn, arg);
    if (!f)
        return NULL;
    f->iom = iom;
    f->wait_fd = -1;
    f->waitq = NULL;
    sp_timer_init(&f->timer, fiber_timer_fired);
    f->live_prev = NULL;
    f->live_next = iom->live;
    if (iom->live)
        iom->live->live_prev = f;
    iom->live = f;
    iom->nlive++;
    return f;
}

/* Takes a fiber from the pool and queues it. */
static struct sp_fiber *spawn_local(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
{
    struct sp_fiber *f = fiber_start(iom, fn, arg);
    if (f)
        runq_push(iom, f);
    return f;
}

static void fiber_retire(struct sp_iom *iom, struct sp_fiber *f)
{
    if (f->live_prev)
        f->live_prev->live_next = f->live_next;
    else
        iom->live = f->live_next;
    if (f->live_next)
        f->live_next->live_prev = f->live_prev;
    iom->nlive--;
    sp_timer_cancel(&iom->timers, &f->timer);
    sp_fiber_release(f);
}

/*
 * A fiber spawned on one of the IOManager's threads stays on that thread (a
 * connection lives where it was accepted); one spawned from elsewhere goes to
 * the threads in turn.
 */
int sp_iom_spawn(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
{
    struct sp_iom *cur = current_iom();
    if (cur && cur->g == iom->g)
        return spawn_local(cur, fn, arg) ? 0 : -ENOMEM;
    struct group *g = iom->g;
    struct sp_iom *m = g->n == 1 ? iom : g->members[atomic_fetch_add(&g->next_spawn, 1) % g->n];
    if (g->n > 1 && atomic_load(&m->running))
        return post_new(m, REQ_SPAWN, fn, arg, -1, 0);
    return spawn_local(m, fn, arg) ? 0 : -ENOMEM;
}

/* A due watch callback and its arguments, handed to the fiber that runs it. */
struct watch_call {
    sp_watch_fn *fn;
    void *arg;
    int fd, status;
};

static void watch_entry(void *arg)
{
    /* Copied first: the scheduler's frame that holds it moves on once the
     * callback parks. */
    struct watch_call call = *(struct watch_call *)arg;
    call.fn(call.fd, call.status, call.arg);
}

/* ---- poller registration ---------------------------------------------- */

/*
 * An fd of a scheduler thread is registered edge-triggered: for reading when
 * anything first waits on it, for writing too once a writer waits (dir).
 * Most sockets never wait to write, and one registered for writing from the
 * start reports at once that it can, a wake-up for nothing per connection.
 * Readiness is cached, so a blocking call costs no system call beyond its
 * own, and a registration changes at most once.  (Listeners, the fds every
 * thread may be woken for, are armed one-shot in the group's listener
 * poller instead: see sp_iom_listen.)
 */
static int arm(struct sp_iom *iom, int fd, struct fdctx *ctx, unsigned dir)
{
    unsigned want = ctx->registered | SP_IO_READ | dir;
    if (want == ctx->registered)
        return 0;
    uint32_t ev =
        SP_POLL_IN | SP_POLL_RDHUP | SP_POLL_EDGE | (want & SP_IO_WRITE ? SP_POLL_OUT : 0);
    uint64_t data = (uint32_t)fd | ((uint64_t)ctx->gen << 32);
    int rc = ctx->registered ? sp__poller_mod(iom->poller, fd, ev, data)
                             : sp__poller_add(iom->poller, fd, ev, data);
    if (rc < 0)
        return rc;
    ctx->registered = (unsigned char)want;
    return 0;
}

/* ---- wake-ups ------------------------------------------------------------ */

static void wake(struct sp_iom *iom, struct sp_fiber *f, int result)
{
    if (f->wait_fd >= 0) {
        struct fdctx *ctx = fdctx_get(iom, f->wait_fd, 0);
        if (ctx && ctx->waiter[f->wait_dir - 1] == f)
            ctx->waiter[f->wait_dir - 1] = NULL;
        f->wait_fd = -1;
    }
    sp_timer_cancel(&iom->timers, &f->timer);
    f->wait_result = result;
    runq_push(iom, f);
}

static void waitq_unlink(struct sp_waitq_node *n)
{
    struct sp_waitq *q = n->queue;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    n->fiber->waitq = NULL;
}

static void fiber_timer_fired(struct sp_timer *t)
{
    struct sp_fiber *f = sp_container_of(t, struct sp_fiber, timer);
    if (f->waitq) {
        /* Off the queue now, so that no signal picks a fiber already woken. */
        waitq_unlink(f->waitq);
        wake(f->iom, f, -ETIMEDOUT);
        return;
    }
    wake(f->iom, f, f->wait_fd >= 0 ? -ETIMEDOUT : 0);
}

/*
 * Ends a watch: its callback is due with status.  It gets a fiber only when
 * the scheduler is about to run it (run_due), so that callbacks which finish
 * without parking - an HTTP request answered at once - all run on one warm
 * stack instead of each holding its own until the batch is over.
 */
static void watch_fire(struct sp_iom *iom, struct fdctx *ctx, int status)
{
    if (ctx->due) {
        /* Already due: only a close changes what it will report, since the
         * fd number must then be left alone. */
        if (status == -ECANCELED)
            ctx->due_status = status;
        return;
    }
    sp_timer_cancel(&iom->timers, &ctx->watch_timer);
    iom->nwatches--;
    ctx->due = 1;
    ctx->due_status = status;
    ctx->due_next = NULL;
    if (iom->due_tail)
        iom->due_tail->due_next = ctx;
    else
        iom->due_head = ctx;
    iom->due_tail = ctx;
    iom->ndue++;
}

static void watch_timer_fired(struct sp_timer *t)
{
    struct fdctx *ctx = sp_container_of(t, struct fdctx, watch_timer);
    if (ctx->watch_fn) /* a due watch keeps its status */
        watch_fire(current_iom(), ctx, -ETIMEDOUT);
}

int sp_iom_watch(struct sp_iom *iom, int fd, int64_t timeout_ms, sp_watch_fn *fn, void *arg)
{
    int rc = 0;
    struct sp_iom *cur = current_iom();
    if (cur && cur != iom && cur->g == iom->g)
        iom = cur; /* the fd stays on the thread that handles it */
    owner_check(iom, fd);
    struct fdctx *ctx = fdctx_get(iom, fd, 1);
    if (!ctx) {
        rc = fd < 0 ? -EBADF : -ENOMEM;
        goto out;
    }
    if (ctx->watch_fn || ctx->waiter[0]) {
        rc = -EBUSY;
        goto out;
    }
    ctx->watch_fn = fn;
    ctx->watch_arg = arg;
    iom->nwatches++;
    if (timeout_ms >= 0 &&
        sp_timer_add(&iom->timers, &ctx->watch_timer, sp__deadline_pass(timeout_ms)) != 0) {
        rc = -ENOMEM;
        goto undo;
    }
    if ((ctx->hup & SP_IO_READ) || (ctx->ready & SP_IO_READ)) {
        /* Bytes or a hang-up arrived while nobody was waiting: edge-triggered
         * mode will not tell again. */
        ctx->ready &= ~SP_IO_READ;
        watch_fire(iom, ctx, 0);
        goto out;
    }
    rc = arm(iom, fd, ctx, SP_IO_READ);
    if (rc == 0)
        goto out;
undo:
    sp_timer_cancel(&iom->timers, &ctx->watch_timer);
    ctx->watch_fn = NULL;
    ctx->watch_arg = NULL;
    iom->nwatches--;
out:
    return rc;
}

/* ---- wait queues (waitq.h) --------------------------------------------- */

/*
 * A waiter is a timer-only park (wait_fd -1) whose node sits on the queue.
 * Whichever comes first - a signal or the timer - unlinks the node and wakes
 * the fiber, and wake() cancels the timer: the other can no longer reach it.
 */

void sp_waitq_init(struct sp_waitq *q)
{
    q->head = q->tail = NULL;
}

int sp_waitq_wait(struct sp_waitq *q, int64_t timeout_ms)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom)
        return -EPERM;
    struct sp_waitq_node n = {q->tail, NULL, q, f};
    if (q->tail)
        q->tail->next = &n;
    else
        q->head = &n;
    q->tail = &n;
    f->waitq = &n;
    int rc = sp__iom_park(-1, 0, sp__deadline(timeout_ms), 0, 0);
    if (f->waitq) /* woken some other way (no memory for the timer) */
        waitq_unlink(&n);
    return rc;
}

static __attribute__((noinline, noreturn)) void waitq_violation(void)
{
    fprintf(stderr, "spindle: a wait queue was signalled from another scheduler thread than "
                    "its waiter's\n");
    abort();
}

int sp_waitq_signal(struct sp_waitq *q)
{
    struct sp_waitq_node *n = q->head;
    if (!n)
        return 0;
    struct sp_fiber *f = n->fiber;
    struct sp_iom *iom = f->iom;
    /* Off a scheduler thread is fine only while nothing else can run one. */
    if (tls_iom != iom && (tls_iom || iom->g->n > 1))
        waitq_violation();
    waitq_unlink(n);
    wake(iom, f, 0);
    return 1;
}

unsigned sp_waitq_broadcast(struct sp_waitq *q)
{
    unsigned n = 0;
    while (sp_waitq_signal(q))
        n++;
    return n;
}

/* ---- parking (called by fiber I/O) ------------------------------------ */

int sp__iom_park(int fd, unsigned dir, uint64_t deadline, int retry, uint32_t gen)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom)
        return -EPERM;
    f->wait_fd = fd;
    f->wait_gen = gen;
    f->wait_dir = (unsigned char)dir;
    f->wait_deadline = deadline;
    f->wait_retry = (unsigned char)retry;
    f->wait_result = 0;
    f->parking = 1;
    sp_fiber_yield();
    /* Woken, then the fd was closed before we ran again: the caller's next
     * system call would reach whatever file has the number now.  (Read
     * without the owner check, which would take the closed number.) */
    if (f->wait_result == 0 && fd >= 0 && (unsigned)fd < FD_CHUNK * FD_CHUNKS &&
        fd_gen(f->iom, fd) != gen)
        return -ECANCELED;
    return f->wait_result;
}

/* Commits the wait a fiber asked for; runs on the scheduler. */
static void commit_park(struct sp_iom *iom, struct sp_fiber *f)
{
    int fd = f->wait_fd;
    if (fd >= 0) {
        unsigned d = f->wait_dir;
        struct fdctx *ctx = fdctx_get(iom, fd, 1);
        if (!ctx) {
            f->wait_fd = -1;
            f->wait_result = -ENOMEM;
            runq_push(iom, f);
            return;
        }
        if (ctx->gen != f->wait_gen) {
            /* Closed since the call began (by another fiber while this one
             * was queued, or for another thread): the number may be another
             * file's. */
            f->wait_fd = -1;
            f->wait_result = -ECANCELED;
            runq_push(iom, f);
            return;
        }
        if (ctx->waiter[d - 1] || (d == SP_IO_READ && ctx->watch_fn)) {
            f->wait_fd = -1;
            f->wait_result = -EBUSY;
            runq_push(iom, f);
            return;
        }
        if (ctx->hup & d) { /* never blocks again: the call sees EOF or the error */
            f->wait_fd = -1;
            runq_push(iom, f);
            return;
        }
        if (f->wait_retry)
            ctx->ready &= ~d;
        else if (ctx->ready & d) {
            ctx->ready &= ~d;
            f->wait_fd = -1;
            runq_push(iom, f);
            return;
        }
        ctx->waiter[d - 1] = f;
        int rc = arm(iom, fd, ctx, d);
        if (rc < 0) {
            ctx->waiter[d - 1] = NULL;
            f->wait_fd = -1;
            f->wait_result = rc;
            runq_push(iom, f);
            return;
        }
    }
    if (f->wait_deadline && sp_timer_add(&iom->timers, &f->timer, f->wait_deadline) != 0) {
        wake(iom, f, -ENOMEM);
        return;
    }
}

void sp__iom_io_done(void)
{
    struct sp_fiber *f = sp_fiber_current();
    if (f && f->iom && --f->budget == 0)
        sp_yield();
}

void sp_yield(void)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom)
        return;
    sp_fiber_yield(); /* not parking: the scheduler queues it again */
}

bool sp__iom_read_begin(int fd)
{
    struct sp_iom *iom = current_iom();
    struct fdctx *ctx = iom ? fdctx_get(iom, fd, 0) : NULL;
    if (!ctx)
        return false;
    /* Drained by the last sp_try_read() and no event since: the poller
     * would have told of any byte or hang-up that came. */
    if (ctx->drained && (ctx->registered & SP_IO_READ) && !(ctx->ready & SP_IO_READ) &&
        !(ctx->hup & SP_IO_READ))
        return true;
    ctx->ready &= (unsigned char)~SP_IO_READ;
    return false;
}

void sp__iom_read_end(int fd, bool drained)
{
    struct sp_iom *iom = current_iom();
    struct fdctx *ctx = iom ? fdctx_get(iom, fd, 0) : NULL;
    if (ctx)
        ctx->drained = drained;
}

int sp_idle_quiet(int fd)
{
    struct sp_iom *iom = current_iom();
    struct fdctx *ctx = iom ? fdctx_get(iom, fd, 1) : NULL;
    if (ctx) {
        owner_check(iom, fd);
        if (ctx->hup & SP_IO_READ)
            return 0;
        /* Registered and nothing seen since readiness was last cleared: the
         * poller would have told us of any byte or FIN that came since. */
        if (ctx->registered && !(ctx->ready & SP_IO_READ))
            return 1;
        /* Forget first: what arrives after the look marks it again. */
        ctx->ready &= (unsigned char)~SP_IO_READ;
    }
    char b;
    ssize_t n;
    do
        n = sp__libc.recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n >= 0 || errno != EAGAIN)
        return 0;
    /* Registering reports what arrived between the look and now. */
    if (ctx && arm(iom, fd, ctx, SP_IO_READ) < 0)
        return -errno;
    return 1;
}

static unsigned expire_local(struct sp_iom *iom, int64_t timeout_ms)
{
    uint64_t deadline = sp__deadline(timeout_ms < 0 ? 0 : timeout_ms);
    unsigned n = 0;
    for (unsigned c = 0; c < FD_CHUNKS; c++) {
        struct fdctx *chunk = iom->chunks[c];
        for (unsigned i = 0; chunk && i < FD_CHUNK; i++) {
            struct fdctx *ctx = &chunk[i];
            if (!ctx->watch_fn)
                continue;
            if (ctx->due)
                continue;
            if (!sp_timer_armed(&ctx->watch_timer) || ctx->watch_timer.deadline > deadline)
                sp_timer_add(&iom->timers, &ctx->watch_timer, deadline);
            n++;
        }
    }
    return n;
}

/* Brings the watches of every thread forward; those of other running threads
 * are their own to change, and are not counted. */
unsigned sp_iom_expire_watches(struct sp_iom *iom, int64_t timeout_ms)
{
    struct group *g = iom->g;
    struct sp_iom *cur = current_iom();
    unsigned n = 0;
    for (unsigned i = 0; i < g->n; i++) {
        struct sp_iom *m = g->members[i];
        if (m == cur || !atomic_load(&m->running))
            n += expire_local(m, timeout_ms);
        else
            post_new(m, REQ_EXPIRE, NULL, NULL, -1, timeout_ms);
    }
    return n;
}

static void wake_all_threads(struct sp_iom *iom);

/* Wakes whoever waits on fd, ends its watch and forgets its state.
 * closing: the caller closes fd next.  Returns whether a fiber was queued. */
static int forget_fd(struct sp_iom *iom, int fd, bool closing)
{
    /* Created if need be: a call that began on fd took generation 0 and must
     * see it change. */
    struct fdctx *ctx = fdctx_get(iom, fd, 1);
    if (!ctx)
        return 0;
    int queued = ctx->waiter[0] || ctx->waiter[1] || ctx->watch_fn;
    for (unsigned d = 0; d < 2; d++)
        if (ctx->waiter[d])
            wake(iom, ctx->waiter[d], -ECANCELED);
    if (ctx->watch_fn)
        watch_fire(iom, ctx, -ECANCELED);
    /* Closing the fd ends its registration when it was the file's last
     * descriptor, as it nearly always is, and saves a system call per
     * connection (nginx relies on the same).  When a copy lives on (a dup,
     * a child's), the registration does too, edge-triggered, and whatever
     * it still reports carries the old generation and is dropped by
     * handle_event.  (The listening sockets, which other processes share,
     * never come here: listener_close.) */
    if (ctx->registered && !closing)
        sp__poller_del(iom->poller, fd);
    ctx->registered = 0;
    ctx->ready = 0;
    ctx->hup = 0;
    ctx->drained = 0;
    __atomic_store_n(&ctx->gen, ctx->gen + 1, __ATOMIC_RELAXED);
    return queued;
}

/* The runtime's own close: libc's (the close() of hook.c would come back
 * here for a socket a hooked call parked on), after dropping hook.c's record
 * of the fd, which the number's next file must not inherit. */
static int close_fd(int fd)
{
    sp__hook_forget(fd);
    return sp__libc.close(fd);
}

int sp__iom_park_poll(const struct pollfd *fds, unsigned long n, uint64_t deadline)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom)
        return -EPERM;
    /* A poller of its own, level-triggered, whose fd turns readable when one
     * of fds is ready; the fiber parks on that fd like on any other. */
    struct sp_poller *p = sp__poller_new();
    if (!p)
        return -errno;
    int rc = 0;
    for (unsigned long i = 0; i < n && rc == 0; i++) {
        if (fds[i].fd < 0)
            continue;
        uint32_t ev =
            (uint32_t)fds[i].events & (SP_POLL_IN | SP_POLL_OUT | SP_POLL_RDHUP | POLLPRI);
        rc = sp__poller_add(p, fds[i].fd, ev, i);
        if (rc == -EEXIST) /* an fd listed twice: its first entry wakes us */
            rc = 0;
    }
    if (rc == 0) {
        int pfd = sp__poller_fd(p);
        rc = sp__iom_park(pfd, SP_IO_READ, deadline, 1, sp__iom_fd_gen(pfd));
        forget_fd(f->iom, pfd, true); /* sp__poller_free closes it */
        owner_release(f->iom, pfd);
    }
    sp__poller_free(p);
    return rc;
}

/* ---- listeners ---------------------------------------------------------- */

static void listener_cancel_entry(void *arg)
{
    struct listener *l = arg;
    struct group *g = current_iom()->g;
    l->fn(l->cancel_fd, -ECANCELED, l->arg);
    pthread_mutex_lock(&g->lock);
    l->in_use = 0;
    g->nlisteners--;
    pthread_mutex_unlock(&g->lock);
}

/* Closes a listener no batch runs on, and has its -ECANCELED call run. */
static void listener_finish(struct group *g, struct listener *l, struct sp_iom *cur)
{
    l->cancel_fd = l->fd;
    __atomic_store_n(&l->fd, -1, __ATOMIC_RELEASE);
    close_fd(l->cancel_fd);
    if (cur && cur->g == g)
        spawn_local(cur, listener_cancel_entry, l);
    else
        sp_iom_spawn(g->members[0], listener_cancel_entry, l);
}

/* sp_close() of a listener: 0, or 1 when fd is none of g's listeners. */
static int listener_close(struct group *g, int fd, struct sp_iom *cur)
{
    for (unsigned i = 0; i < MAX_LISTENERS; i++) {
        struct listener *l = &g->listeners[i];
        if (__atomic_load_n(&l->fd, __ATOMIC_ACQUIRE) != fd)
            continue;
        pthread_mutex_lock(&g->lock);
        if (l->fd != fd || l->closing) {
            pthread_mutex_unlock(&g->lock);
            continue;
        }
        l->closing = 1;
        sp__poller_del(g->lpoller, fd);
        int busy = l->busy != 0;
        pthread_mutex_unlock(&g->lock);
        /* A batch still running closes it when it ends: the fd is never
         * closed under a thread that uses it. */
        if (!busy)
            listener_finish(g, l, cur);
        return 0;
    }
    return 1;
}

static uint32_t listen_events(void)
{
    return SP_POLL_IN | (sp__iom_unguarded_listeners ? 0 : SP_POLL_ONESHOT);
}

/* One accept batch on the thread the kernel woke; the listener is armed
 * again (or closed) when it ends. */
static void listen_entry(void *arg)
{
    struct listener *l = arg;
    struct sp_iom *iom = current_iom();
    struct group *g = iom->g;
    int fd = l->fd;
    l->fn(fd, 0, l->arg);
    pthread_mutex_lock(&g->lock);
    owner_release(iom, fd);
    l->busy--;
    int finish = l->closing && !l->busy;
    if (!l->closing)
        sp__poller_mod(g->lpoller, fd, listen_events(), (uint64_t)(l - g->listeners));
    pthread_mutex_unlock(&g->lock);
    if (finish)
        listener_finish(g, l, iom);
}

int sp_iom_listen(struct sp_iom *iom, int fd, sp_watch_fn *fn, void *arg)
{
    struct group *g = iom->g;
    int rc = -ENOSPC;
    pthread_mutex_lock(&g->lock);
    for (unsigned i = 0; i < MAX_LISTENERS; i++) {
        struct listener *l = &g->listeners[i];
        if (l->in_use)
            continue;
        rc = sp__poller_add(g->lpoller, fd, listen_events(), i);
        if (rc < 0)
            break;
        *l = (struct listener){.in_use = 1, .fn = fn, .arg = arg};
        __atomic_store_n(&l->fd, fd, __ATOMIC_RELEASE);
        g->nlisteners++;
        break;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* The listener poller said something: start a batch for each listener it
 * hands this thread. */
static void poll_listeners(struct sp_iom *iom)
{
    struct group *g = iom->g;
    struct sp_poll_event ev[MAX_LISTENERS];
    int n = sp__poller_wait(g->lpoller, ev, MAX_LISTENERS, 0);
    for (int i = 0; i < n; i++) {
        struct listener *l = &g->listeners[sp__poll_event_data(&ev[i]) % MAX_LISTENERS];
        pthread_mutex_lock(&g->lock);
        if (!l->in_use || l->closing || l->fd < 0) {
            pthread_mutex_unlock(&g->lock);
            continue;
        }
        owner_check(iom, l->fd); /* the one-shot guard hands it to one thread */
        l->busy++;
        pthread_mutex_unlock(&g->lock);
        struct sp_fiber *f = fiber_start(iom, listen_entry, l);
        if (f) {
            runq_push(iom, f);
            continue;
        }
        /* No stack: give the listener back; it fires again shortly. */
        pthread_mutex_lock(&g->lock);
        owner_release(iom, l->fd);
        l->busy--;
        if (!l->closing)
            sp__poller_mod(g->lpoller, l->fd, listen_events(), (uint64_t)(l - g->listeners));
        pthread_mutex_unlock(&g->lock);
        iom->due_stalled = 1;
    }
}

/* ---- close ---------------------------------------------------------------- */

/* sp_close() on a fiber or scheduler of iom. */
static int close_local(struct sp_iom *iom, int fd)
{
    struct group *g = iom->g;
    if (g->nlisteners && listener_close(g, fd, iom) == 0)
        return 0;
    _Atomic(unsigned char) *slot = iom->owner_id ? owner_slot(g, fd) : NULL;
    unsigned char o = 0;
    /* Taken for this thread if nobody has it; another thread's fd is closed
     * by that thread. */
    if (slot && !atomic_compare_exchange_strong(slot, &o, iom->owner_id) && o != iom->owner_id)
        return post_new(g->members[o - 1], REQ_CLOSE, NULL, NULL, fd, 0);
    forget_fd(iom, fd, true);
    owner_release(iom, fd);
    return close_fd(fd) == 0 ? 0 : -errno;
}

int sp__iom_close(int fd)
{
    struct sp_iom *iom = current_iom();
    int rc;
    if (iom)
        return close_local(iom, fd);
    pthread_mutex_lock(&all_lock);
    for (iom = all_ioms; iom; iom = iom->next_all) {
        struct group *g = iom->g;
        if (iom->index == 0 && g->nlisteners && listener_close(g, fd, NULL) == 0) {
            pthread_mutex_unlock(&all_lock);
            return 0;
        }
        /* A running scheduler thread is the only one to touch its fds: one
         * that has fd closes it; for the others the fd cannot be theirs. */
        if (atomic_load(&iom->running)) {
            if (iom->owner_id && owner_of(g, fd) == iom->owner_id) {
                rc = post_new(iom, REQ_CLOSE, NULL, NULL, fd, 0);
                pthread_mutex_unlock(&all_lock);
                return rc;
            }
            continue;
        }
        forget_fd(iom, fd, false);
        owner_release(iom, fd);
    }
    rc = close_fd(fd) == 0 ? 0 : -errno;
    pthread_mutex_unlock(&all_lock);
    return rc;
}

/* ---- the scheduler loop --------------------------------------------- */

static void handle_event(struct sp_iom *iom, const struct sp_poll_event *ev)
{
    uint64_t data = sp__poll_event_data(ev);
    int fd = (int)(uint32_t)data;
    uint32_t gen = (uint32_t)(data >> 32);
    struct fdctx *ctx = fdctx_get(iom, fd, 0);

    /* Stale event: the fd was closed after this event was queued, and the
     * number may already belong to a new connection.  Drop it. */
    if (!ctx || ctx->gen != gen || !ctx->registered)
        return;
    owner_check(iom, fd);

    uint32_t e = sp__poll_event_events(ev);
    int readable = (e & (SP_POLL_IN | SP_POLL_RDHUP | SP_POLL_HUP | SP_POLL_ERR)) != 0;
    int writable = (e & (SP_POLL_OUT | SP_POLL_HUP | SP_POLL_ERR)) != 0;
    if (e & (SP_POLL_RDHUP | SP_POLL_HUP | SP_POLL_ERR))
        ctx->hup |= SP_IO_READ;
    if (e & (SP_POLL_HUP | SP_POLL_ERR))
        ctx->hup |= SP_IO_WRITE;
    if (readable) {
        ctx->drained = 0;
        if (ctx->waiter[0])
            wake(iom, ctx->waiter[0], 0);
        else if (ctx->watch_fn)
            watch_fire(iom, ctx, 0);
        else
            ctx->ready |= SP_IO_READ;
    }
    if (writable) {
        if (ctx->waiter[1])
            wake(iom, ctx->waiter[1], 0);
        else
            ctx->ready |= SP_IO_WRITE;
    }
}

/* What a fiber that just switched out asked for. */
static void after_switch(struct sp_iom *iom, struct sp_fiber *f)
{
    if (sp_fiber_finished(f)) {
        fiber_retire(iom, f);
        return;
    }
    if (f->parking)
        commit_park(iom, f);
    else /* sp_yield(), or a bare sp_fiber_yield() from user code */
        runq_push(iom, f);
}

/* Stops every thread of iom's group. */
static void wake_all_threads(struct sp_iom *iom)
{
    struct group *g = iom->g;
    for (unsigned i = 0; i < g->n; i++) {
        atomic_store(&g->members[i]->stopping, 1);
        sp__poller_wake(g->members[i]->poller);
    }
}

/* Takes the work other threads queued for this one. */
static void take_inbox(struct sp_iom *iom)
{
    struct group *g = iom->g;
    pthread_mutex_lock(&g->lock);
    struct request *r = iom->inbox;
    iom->inbox = iom->inbox_tail = NULL;
    atomic_store(&iom->inbox_pending, 0);
    pthread_mutex_unlock(&g->lock);
    while (r) {
        struct request *next = r->next;
        switch (r->kind) {
        case REQ_SPAWN:
            if (!spawn_local(iom, r->fn, r->arg)) {
                /* No stack now: keep it for the next pass. */
                r->next = next;
                pthread_mutex_lock(&g->lock);
                struct request *last = r;
                while (last->next)
                    last = last->next;
                last->next = iom->inbox;
                if (!iom->inbox)
                    iom->inbox_tail = last;
                iom->inbox = r;
                atomic_store(&iom->inbox_pending, 1);
                pthread_mutex_unlock(&g->lock);
                iom->due_stalled = 1;
                return;
            }
            break;
        case REQ_CLOSE:
            forget_fd(iom, r->fd, true);
            owner_release(iom, r->fd);
            close_fd(r->fd);
            break;
        case REQ_EXPIRE:
            expire_local(iom, r->ms);
            break;
        }
        free(r);
        r = next;
    }
}

/*
 * This thread has nothing to do.  Returns whether the whole group is done:
 * no thread has work, none can get any from another (no listener, nothing
 * queued), so every thread stops.
 */
static int group_done(struct sp_iom *iom)
{
    struct group *g = iom->g;
    if (g->n == 1 && !g->nlisteners) {
        wake_all_threads(iom);
        return 1;
    }
    int done = 0;
    pthread_mutex_lock(&g->lock);
    iom->idle = 1;
    if (!g->nlisteners && !atomic_load(&iom->inbox_pending)) {
        done = 1;
        for (unsigned i = 0; i < g->n; i++)
            done &= g->members[i]->idle;
    }
    pthread_mutex_unlock(&g->lock);
    if (done)
        wake_all_threads(iom);
    return done;
}

/* Runs f until it switches out, then does what it asked for. */
static void run_fiber(struct sp_iom *iom, struct sp_fiber *f)
{
    f->parking = 0;
    f->budget = iom->budget;
    sp_fiber_resume(f);
    after_switch(iom, f);
}

/* Gives each due watch callback (no more than are due now) a fiber and runs
 * it at once; a callback that finishes hands its stack to the next one. */
static void run_due(struct sp_iom *iom)
{
    unsigned quota = iom->ndue;
    iom->due_stalled = 0;
    while (quota-- > 0 && iom->due_head) {
        struct fdctx *ctx = iom->due_head;
        struct watch_call call = {ctx->watch_fn, ctx->watch_arg, ctx->fd, ctx->due_status};
        struct sp_fiber *f = fiber_start(iom, watch_entry, &call);
        if (!f) {
            iom->due_stalled = 1; /* no stack now: try again shortly, nothing is lost */
            return;
        }
        iom->due_head = ctx->due_next;
        if (!iom->due_head)
            iom->due_tail = NULL;
        iom->ndue--;
        ctx->watch_fn = NULL;
        ctx->watch_arg = NULL;
        ctx->due = 0;
        run_fiber(iom, f);
    }
}

static int loop(struct sp_iom *iom)
{
    struct sp_poll_event events[MAX_EVENTS];
    int rc = 0;

    tls_iom = iom;
    sp_clock_tick();
    for (;;) {
        /* Run what is runnable now, no more fibers than are queued: those that
         * yield wait for the next pass, after a poll. */
        if (atomic_load_explicit(&iom->inbox_pending, memory_order_relaxed))
            take_inbox(iom);
        unsigned quota = iom->runq_len;
        struct sp_fiber *f;
        while (quota-- > 0 && (f = runq_pop(iom)) != NULL)
            run_fiber(iom, f);
        run_due(iom);

        if (atomic_load(&iom->stopping))
            break;
        if (!iom->nlive && !iom->nwatches && !iom->ndue && !iom->timers.len &&
            !atomic_load_explicit(&iom->inbox_pending, memory_order_relaxed) && group_done(iom))
            break;

        int timeout = iom->runq_head || (iom->ndue && !iom->due_stalled) ? 0
                      : iom->timers.len ? sp_timer_timeout_ms(&iom->timers, sp_clock_pass_ns())
                                        : -1;
        if (iom->due_stalled && (timeout < 0 || timeout > 10))
            timeout = 10;
        int n = sp__poller_wait(iom->poller, events, MAX_EVENTS, timeout);
        /* One clock reading per wake-up for what the pass stamps (clock.h). */
        sp_clock_tick();
        if (n < 0) {
            if (n == -EINTR)
                continue;
            rc = n;
            iom->error = rc;
            wake_all_threads(iom);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t data = sp__poll_event_data(&events[i]);
            if (data == SP_POLL_WAKE) {
                if (!atomic_load(&iom->stopping))
                    sp__poller_clear_wake(iom->poller);
                continue;
            }
            if (data == LISTEN_DATA) {
                poll_listeners(iom);
                continue;
            }
            handle_event(iom, &events[i]);
        }
        if (iom->timers.len)
            sp_timer_run(&iom->timers, sp_now_ns());
    }
    tls_iom = NULL;
    sp_clock_stop();
    return rc;
}

static void *thread_main(void *arg)
{
    loop(arg);
    return NULL;
}

int sp_iom_run(struct sp_iom *iom)
{
    struct group *g = iom->g;
    pthread_t threads[64];
    unsigned started = 0;
    int rc = 0;

    for (unsigned i = 0; i < g->n; i++) {
        struct sp_iom *m = g->members[i];
        atomic_store(&m->stopping, 0);
        atomic_store(&m->running, 1);
        m->idle = 0;
    }
    if (g->n > 1)
        sp__threaded = 1; /* before any thread starts: read without a lock */
    for (unsigned i = 1; i < g->n; i++) {
        int err = pthread_create(&threads[started], NULL, thread_main, g->members[i]);
        if (err) {
            rc = -err;
            wake_all_threads(iom);
            break;
        }
        started++;
    }
    int lrc = rc ? 0 : loop(g->members[0]);
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    for (unsigned i = 0; i < g->n; i++) {
        struct sp_iom *m = g->members[i];
        /* Leave the wake-up quiet for the next run. */
        sp__poller_clear_wake(m->poller);
        if (!rc)
            rc = m->error;
        m->error = 0;
        atomic_store(&m->running, 0);
    }
    return lrc ? lrc : rc;
}

void sp_iom_stop(struct sp_iom *iom)
{
    wake_all_threads(iom);
}

/* ---- creation and teardown ------------------------------------------- */

static void member_free(struct sp_iom *iom)
{
    pthread_mutex_lock(&all_lock);
    for (struct sp_iom **p = &all_ioms; *p; p = &(*p)->next_all)
        if (*p == iom) {
            *p = iom->next_all;
            break;
        }
    pthread_mutex_unlock(&all_lock);
    while (iom->live) {
        struct sp_fiber *f = iom->live;
        fiber_retire(iom, f);
    }
    while (iom->inbox) {
        struct request *r = iom->inbox;
        iom->inbox = r->next;
        free(r);
    }
    if (iom->pool)
        sp_fiber_pool_free(iom->pool);
    for (unsigned i = 0; i < FD_CHUNKS; i++)
        free(iom->chunks[i]);
    sp_timer_heap_close(&iom->timers);
    sp__poller_free(iom->poller);
    free(iom);
}

static struct sp_iom *member_new(struct group *g, unsigned index, const struct sp_iom_config *cfg)
{
    struct sp_iom *iom = calloc(1, sizeof(*iom));
    if (!iom)
        return NULL;
    iom->g = g;
    iom->index = index;
    iom->owner_id = g->n > 1 ? (unsigned char)(index + 1) : 0;
    iom->budget = cfg && cfg->budget ? cfg->budget : DEFAULT_BUDGET;
    sp_timer_heap_init(&iom->timers);
    iom->pool = sp_fiber_pool_new(cfg ? &cfg->pool : NULL);
    iom->poller = iom->pool ? sp__poller_new() : NULL;
    if (!iom->poller || sp__poller_add_poller(iom->poller, g->lpoller, LISTEN_DATA) != 0) {
        int err = errno;
        member_free(iom);
        errno = err;
        return NULL;
    }
    pthread_mutex_lock(&all_lock);
    iom->next_all = all_ioms;
    all_ioms = iom;
    pthread_mutex_unlock(&all_lock);
    return iom;
}

static void group_free(struct group *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (g->members[i])
            member_free(g->members[i]);
    free(g->members);
    sp__poller_free(g->lpoller);
    for (unsigned i = 0; i < FD_CHUNKS; i++)
        free((void *)g->owner[i]);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

struct sp_iom *sp_iom_new(const struct sp_iom_config *cfg)
{
    struct group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->n = cfg && cfg->threads > 1 ? cfg->threads : 1;
    if (g->n > 64)
        g->n = 64;
    pthread_mutex_init(&g->lock, NULL);
    for (unsigned i = 0; i < MAX_LISTENERS; i++)
        g->listeners[i].fd = -1;
    g->members = calloc(g->n, sizeof(*g->members));
    g->lpoller = g->members ? sp__poller_new() : NULL;
    if (!g->lpoller)
        goto fail;
    for (unsigned i = 0; i < g->n; i++)
        if (!(g->members[i] = member_new(g, i, cfg)))
            goto fail;
    return g->members[0];

fail : {
    int err = errno;
    group_free(g);
    errno = err;
    return NULL;
}
}

void sp_iom_free(struct sp_iom *iom)
{
    if (iom)
        group_free(iom->g);
}

void sp_iom_stats(struct sp_iom *iom, struct sp_iom_stats *out)
{
    struct group *g = iom->g;
    memset(out, 0, sizeof(*out));
    /* Other running threads' counters are read as they are: a snapshot. */
    for (unsigned i = 0; i < g->n; i++) {
        struct sp_iom *m = g->members[i];
        struct sp_fiber_pool_stats ps;
        sp_fiber_pool_stats(m->pool, &ps);
        out->fibers_live += __atomic_load_n(&m->nlive, __ATOMIC_RELAXED);
        out->fibers_pooled += ps.free;
        out->fibers_created += ps.created;
        out->watches += __atomic_load_n(&m->nwatches, __ATOMIC_RELAXED) +
                        __atomic_load_n(&m->ndue, __ATOMIC_RELAXED);
        out->timers += __atomic_load_n(&m->timers.len, __ATOMIC_RELAXED);
    }
}
