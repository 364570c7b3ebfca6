/*
 * The IOManager: the fd table, its two arming policies, timers, fiber pool,
 * run queue and scheduler.  The kernel's readiness interface sits behind the
 * poller backend (poller.h, poller_epoll.c); this file decides what to wait
 * for and when.
 *
 * Per-fd state lives in a flat table indexed by fd (chunks that never move,
 * because timer nodes are embedded in them).  Each entry has a generation
 * number that is bumped on every sp_close(); the generation travels in the
 * poller event's data next to the fd, so an event queued for an fd that has
 * been closed (and perhaps reused) since is recognised and dropped.
 *
 * Two arming policies: single-thread mode registers every fd once,
 * edge-triggered, for everything, and caches readiness; multi-thread mode arms
 * a one-shot registration for what the waiters want and re-arms it after each
 * event.
 *
 * A hang-up (SP_POLL_RDHUP, SP_POLL_HUP, SP_POLL_ERR) is remembered in the entry until
 * sp_close(): edge-triggered mode reports it once, and a connection that read
 * the last bytes before the FIN without reaching the end of stream (a short
 * read) must still learn of it.  A watch or a wait on such an fd completes at
 * once; the read that follows returns 0 or the error and never EAGAIN.
 *
 * A fiber never arms its own wake-up: it records what it waits for and
 * switches to the scheduler, which commits the wait (registers the fd, arms
 * the timer) once the fiber's stack is no longer in use.  In multi-thread mode
 * that ordering is what keeps another thread from resuming a fiber that has
 * not finished switching out.  All shared state is then guarded by one mutex,
 * which is never held while a fiber runs or while a thread sleeps in the
 * poller.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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
    unsigned char registered;   /* added to the poller */
    unsigned char ready;        /* cached readiness (single-thread mode): SP_IO_READ|SP_IO_WRITE */
    unsigned char armed;        /* multi-thread mode: events armed by the last one-shot arming */
    unsigned char hup;          /* the peer hung up or the fd failed: the directions (SP_IO_*)
                                   that will never block again; kept until sp_close() */
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

struct sp_iom {
    struct sp_poller *poller;
    int mt;
    unsigned nthreads;
    unsigned budget;
    pthread_mutex_t lock;
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
    struct sp_iom *next_all;
    struct fdctx *chunks[FD_CHUNKS];
};

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
 * Fibers may migrate between threads, and a compiler may keep the address of
 * a thread-local variable in a register across a call: read it through a
 * function it cannot see through.
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

static inline void lock(struct sp_iom *iom)
{
    if (iom->mt)
        pthread_mutex_lock(&iom->lock);
}

static inline void unlock(struct sp_iom *iom)
{
    if (iom->mt)
        pthread_mutex_unlock(&iom->lock);
}

static void watch_timer_fired(struct sp_timer *t);

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
uint32_t sp__iom_fd_gen(int fd)
{
    struct sp_fiber *f = sp_fiber_current();
    if (!f || !f->iom || fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS)
        return 0;
    struct fdctx *chunk =
        __atomic_load_n(&f->iom->chunks[(unsigned)fd >> FD_CHUNK_BITS], __ATOMIC_ACQUIRE);
    return chunk ? __atomic_load_n(&chunk[(unsigned)fd & (FD_CHUNK - 1)].gen, __ATOMIC_RELAXED) : 0;
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

/* Takes a fiber from the pool and counts it live.  Lock held. */
static struct sp_fiber *fiber_start(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
{
    struct sp_fiber *f = sp_fiber_new(iom->pool, fn, arg);
    if (!f)
        return NULL;
    f->iom = iom;
    f->wait_fd = -1;
    sp_timer_init(&f->timer, fiber_timer_fired);
    f->live_prev = NULL;
    f->live_next = iom->live;
    if (iom->live)
        iom->live->live_prev = f;
    iom->live = f;
    iom->nlive++;
    return f;
}

/* Takes a fiber from the pool and queues it.  Lock held. */
static struct sp_fiber *spawn_locked(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
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

int sp_iom_spawn(struct sp_iom *iom, sp_fiber_fn *fn, void *arg)
{
    lock(iom);
    struct sp_fiber *f = spawn_locked(iom, fn, arg);
    unlock(iom);
    return f ? 0 : -ENOMEM;
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

static uint32_t wanted_events(struct fdctx *ctx)
{
    uint32_t ev = 0;
    if (ctx->waiter[0] || (ctx->watch_fn && !ctx->due))
        ev |= SP_POLL_IN | SP_POLL_RDHUP;
    if (ctx->waiter[1])
        ev |= SP_POLL_OUT;
    return ev;
}

/*
 * Single-thread mode: register once, edge-triggered, for everything.
 * Multi-thread mode: (re-)arm a one-shot, level-triggered registration for
 * what the waiters want; the kernel checks readiness at arm time, so data that
 * arrived before the fiber parked is not missed.
 */
static int arm(struct sp_iom *iom, int fd, struct fdctx *ctx)
{
    uint64_t data = (uint32_t)fd | ((uint64_t)ctx->gen << 32);
    int rc;
    if (!iom->mt) {
        if (ctx->registered)
            return 0;
        rc = sp__poller_add(iom->poller, fd,
                            SP_POLL_IN | SP_POLL_OUT | SP_POLL_RDHUP | SP_POLL_EDGE, data);
        if (rc < 0)
            return rc;
        ctx->registered = 1;
        return 0;
    }
    uint32_t want = wanted_events(ctx);
    if (!want || (ctx->armed & want) == want)
        return 0;
    rc = ctx->registered ? sp__poller_mod(iom->poller, fd, want | SP_POLL_ONESHOT, data)
                         : sp__poller_add(iom->poller, fd, want | SP_POLL_ONESHOT, data);
    if (rc < 0)
        return rc;
    ctx->registered = 1;
    ctx->armed = (unsigned char)want;
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

static void fiber_timer_fired(struct sp_timer *t)
{
    struct sp_fiber *f = sp_container_of(t, struct sp_fiber, timer);
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
    lock(iom);
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
        sp_timer_add(&iom->timers, &ctx->watch_timer, sp__deadline(timeout_ms)) != 0) {
        rc = -ENOMEM;
        goto undo;
    }
    if ((ctx->hup & SP_IO_READ) || (!iom->mt && (ctx->ready & SP_IO_READ))) {
        /* Bytes or a hang-up arrived while nobody was waiting: edge-triggered
         * mode will not tell again. */
        ctx->ready &= ~SP_IO_READ;
        watch_fire(iom, ctx, 0);
        goto out;
    }
    rc = arm(iom, fd, ctx);
    if (rc == 0)
        goto out;
undo:
    sp_timer_cancel(&iom->timers, &ctx->watch_timer);
    ctx->watch_fn = NULL;
    ctx->watch_arg = NULL;
    iom->nwatches--;
out:
    unlock(iom);
    return rc;
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
     * system call would reach whatever file has the number now. */
    if (f->wait_result == 0 && fd >= 0 && sp__iom_fd_gen(fd) != gen)
        return -ECANCELED;
    return f->wait_result;
}

/* Commits the wait a fiber asked for; runs on the scheduler with the lock held. */
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
            /* Closed since the call began (another thread, or another fiber
             * while this one was queued): the number may be another file's. */
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
        if (!iom->mt) {
            if (f->wait_retry)
                ctx->ready &= ~d;
            else if (ctx->ready & d) {
                ctx->ready &= ~d;
                f->wait_fd = -1;
                runq_push(iom, f);
                return;
            }
        }
        ctx->waiter[d - 1] = f;
        int rc = arm(iom, fd, ctx);
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

void sp__iom_clear_ready(int fd, unsigned dir)
{
    struct sp_iom *iom = current_iom();
    /* Multi-thread mode keeps no readiness cache (one-shot arming checks the fd). */
    if (!iom || iom->mt)
        return;
    struct fdctx *ctx = fdctx_get(iom, fd, 0);
    if (ctx)
        ctx->ready &= (unsigned char)~dir;
}

unsigned sp_iom_expire_watches(struct sp_iom *iom, int64_t timeout_ms)
{
    uint64_t deadline = sp__deadline(timeout_ms < 0 ? 0 : timeout_ms);
    unsigned n = 0;
    lock(iom);
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
    unlock(iom);
    return n;
}

static void wake_all_threads(struct sp_iom *iom);

/* Wakes whoever waits on fd, ends its watch and forgets its state.  Lock held.
 * Returns whether a fiber was queued. */
static int forget_fd(struct sp_iom *iom, int fd)
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
    /* The listening sockets are shared with other processes: closing our
     * fd alone would leave the registration alive. */
    if (ctx->registered)
        sp__poller_del(iom->poller, fd);
    ctx->registered = 0;
    ctx->ready = 0;
    ctx->armed = 0;
    ctx->hup = 0;
    __atomic_store_n(&ctx->gen, ctx->gen + 1, __ATOMIC_RELAXED);
    return queued;
}

int sp__iom_close(int fd)
{
    struct sp_iom *iom = current_iom();
    int rc;
    if (iom) {
        lock(iom);
        forget_fd(iom, fd);
        rc = close(fd) == 0 ? 0 : -errno;
        unlock(iom);
        return rc;
    }
    pthread_mutex_lock(&all_lock);
    for (iom = all_ioms; iom; iom = iom->next_all) {
        /* A single-thread IOManager running on another thread is that thread's
         * to touch; the fd cannot be ours to close then. */
        int running = atomic_load(&iom->running);
        if (running && !iom->mt)
            continue;
        lock(iom);
        if (forget_fd(iom, fd) && running)
            wake_all_threads(iom);
        unlock(iom);
    }
    rc = close(fd) == 0 ? 0 : -errno;
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

    uint32_t e = sp__poll_event_events(ev);
    int readable = (e & (SP_POLL_IN | SP_POLL_RDHUP | SP_POLL_HUP | SP_POLL_ERR)) != 0;
    int writable = (e & (SP_POLL_OUT | SP_POLL_HUP | SP_POLL_ERR)) != 0;
    if (iom->mt)
        ctx->armed = 0;
    if (e & (SP_POLL_RDHUP | SP_POLL_HUP | SP_POLL_ERR))
        ctx->hup |= SP_IO_READ;
    if (e & (SP_POLL_HUP | SP_POLL_ERR))
        ctx->hup |= SP_IO_WRITE;
    if (readable) {
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
    /* One-shot: whoever still waits needs the fd armed again (arm() does
     * nothing when nobody does). */
    if (iom->mt)
        arm(iom, fd, ctx);
}

/* What a fiber that just switched out asked for.  Lock held. */
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

static void wake_all_threads(struct sp_iom *iom)
{
    sp__poller_wake(iom->poller);
}

/* Runs f until it switches out, then does what it asked for.  Lock held on
 * entry and exit, released while f runs. */
static void run_fiber(struct sp_iom *iom, struct sp_fiber *f)
{
    unlock(iom);
    f->parking = 0;
    f->budget = iom->budget;
    sp_fiber_resume(f);
    lock(iom);
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
    lock(iom);
    for (;;) {
        /* Run what is runnable now, no more fibers than are queued: those that
         * yield wait for the next pass.  (Stopping at the fiber that was last
         * would not do with several threads: another one may take it, and
         * this thread then runs fibers that yield again and again instead of
         * polling.) */
        unsigned quota = iom->runq_len;
        struct sp_fiber *f;
        while (quota-- > 0 && (f = runq_pop(iom)) != NULL)
            run_fiber(iom, f);
        run_due(iom);

        if (atomic_load(&iom->stopping))
            break;
        if (!iom->nlive && !iom->nwatches && !iom->ndue && !iom->timers.len) {
            atomic_store(&iom->stopping, 1);
            wake_all_threads(iom);
            break;
        }

        int timeout = iom->runq_head || (iom->ndue && !iom->due_stalled) ? 0
                      : iom->timers.len ? sp_timer_timeout_ms(&iom->timers, sp_now_ns())
                                        : -1;
        if (iom->due_stalled && (timeout < 0 || timeout > 10))
            timeout = 10;
        unlock(iom);
        int n = sp__poller_wait(iom->poller, events, MAX_EVENTS, timeout);
        lock(iom);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            rc = n;
            iom->error = rc;
            atomic_store(&iom->stopping, 1);
            wake_all_threads(iom);
            break;
        }
        for (int i = 0; i < n; i++) {
            if (sp__poll_event_data(&events[i]) == SP_POLL_WAKE) {
                if (!atomic_load(&iom->stopping))
                    sp__poller_clear_wake(iom->poller);
                continue;
            }
            handle_event(iom, &events[i]);
        }
        if (iom->timers.len)
            sp_timer_run(&iom->timers, sp_now_ns());
    }
    unlock(iom);
    tls_iom = NULL;
    return rc;
}

static void *thread_main(void *arg)
{
    loop(arg);
    return NULL;
}

int sp_iom_run(struct sp_iom *iom)
{
    pthread_t threads[64];
    unsigned started = 0;
    int rc = 0;

    atomic_store(&iom->stopping, 0);
    atomic_store(&iom->running, 1);
    for (unsigned i = 1; i < iom->nthreads && i < 64; i++) {
        int err = pthread_create(&threads[started], NULL, thread_main, iom);
        if (err) {
            rc = -err;
            atomic_store(&iom->stopping, 1);
            wake_all_threads(iom);
            break;
        }
        started++;
    }
    int lrc = rc ? 0 : loop(iom);
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    /* Leave the wake-up fd quiet for the next run. */
    sp__poller_clear_wake(iom->poller);
    if (!rc)
        rc = lrc ? lrc : iom->error;
    iom->error = 0;
    atomic_store(&iom->running, 0);
    return rc;
}

void sp_iom_stop(struct sp_iom *iom)
{
    atomic_store(&iom->stopping, 1);
    wake_all_threads(iom);
}

/* ---- creation and teardown ------------------------------------------- */

struct sp_iom *sp_iom_new(const struct sp_iom_config *cfg)
{
    struct sp_iom *iom = calloc(1, sizeof(*iom));
    if (!iom)
        return NULL;
    iom->nthreads = cfg && cfg->threads > 1 ? cfg->threads : 1;
    if (iom->nthreads > 64)
        iom->nthreads = 64;
    iom->mt = iom->nthreads > 1;
    iom->budget = cfg && cfg->budget ? cfg->budget : DEFAULT_BUDGET;
    pthread_mutex_init(&iom->lock, NULL);
    sp_timer_heap_init(&iom->timers);

    iom->pool = sp_fiber_pool_new(cfg ? &cfg->pool : NULL);
    if (!iom->pool)
        goto fail;
    iom->poller = sp__poller_new();
    if (!iom->poller)
        goto fail;
    pthread_mutex_lock(&all_lock);
    iom->next_all = all_ioms;
    all_ioms = iom;
    pthread_mutex_unlock(&all_lock);
    return iom;

fail : {
    int err = errno;
    sp_iom_free(iom);
    errno = err;
    return NULL;
}
}

void sp_iom_free(struct sp_iom *iom)
{
    if (!iom)
        return;
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
    if (iom->pool)
        sp_fiber_pool_free(iom->pool);
    for (unsigned i = 0; i < FD_CHUNKS; i++)
        free(iom->chunks[i]);
    sp_timer_heap_close(&iom->timers);
    sp__poller_free(iom->poller);
    pthread_mutex_destroy(&iom->lock);
    free(iom);
}

void sp_iom_stats(struct sp_iom *iom, struct sp_iom_stats *out)
{
    struct sp_fiber_pool_stats ps;
    lock(iom);
    sp_fiber_pool_stats(iom->pool, &ps);
    out->fibers_live = iom->nlive;
    out->fibers_pooled = ps.free;
    out->fibers_created = ps.created;
    out->watches = iom->nwatches + iom->ndue;
    out->timers = iom->timers.len;
    unlock(iom);
}
