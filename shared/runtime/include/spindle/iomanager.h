/*
 * IOManager: one poller (epoll), a timer heap, a fiber pool and the scheduler
 * loop that ties them together.
 *
 * Single-thread mode (threads = 1, the default): every fd is registered once,
 * edge-triggered, for EPOLLIN|EPOLLOUT|EPOLLRDHUP; readiness is cached and a
 * blocking call costs no epoll_ctl.  A hang-up (peer's FIN, reset, error) is
 * remembered until sp_close() in both modes: a watch or a read wait started
 * after it was reported completes at once.
 *
 * Multi-thread mode (threads > 1): that many scheduler threads, each a
 * complete single-thread scheduler with its own poller, fd table and fibers.
 * A fiber never changes threads: one spawned on a scheduler thread stays
 * there (a connection lives on the thread that accepted it), one spawned from
 * elsewhere goes to the threads in turn.  Listeners (sp_iom_listen) are the
 * fds any thread may be woken for; one thread at a time runs a listener's
 * accept batch.  Each fd belongs to one thread at a time and a second thread
 * touching it aborts the process: hand work to the owner instead
 * (sp_iom_spawn from outside, sp_close from any thread is forwarded).
 *
 * Blocking calls (io.h) park the calling fiber; the IOManager resumes it when
 * the fd is ready, its timer fires or the fd is closed under it.
 */
#ifndef SPINDLE_IOMANAGER_H
#define SPINDLE_IOMANAGER_H

#include <stdint.h>

#include "spindle/fiber.h"

struct sp_iom;

struct sp_iom_config {
    unsigned threads; /* scheduler threads; 0 or 1 = single-thread mode */
    unsigned budget;  /* successful I/O calls a fiber may make in a row before it yields to
                         the others; 0 = 16 */
    struct sp_fiber_pool_config pool;
};

struct sp_iom_stats {
    unsigned fibers_live;   /* fibers started and not yet finished */
    unsigned fibers_pooled; /* finished fibers kept for reuse */
    unsigned long long fibers_created;
    unsigned watches; /* fds waiting through sp_iom_watch, holding no fiber */
    unsigned timers;  /* armed timers */
};

/*
 * Called on a fresh fiber once a watched fd turns readable (status 0, also on
 * hang-up or error), its timeout expires (-ETIMEDOUT) or the fd is closed with
 * sp_close() (-ECANCELED; the fd number must then not be touched).  Called
 * exactly once per successful sp_iom_watch().
 */
typedef void sp_watch_fn(int fd, int status, void *arg);

/* Creates an IOManager; cfg may be NULL for defaults.  Returns NULL with errno set. */
struct sp_iom *sp_iom_new(const struct sp_iom_config *cfg);

/* Frees the IOManager, its pool and any fibers it still holds.  Must not be
 * running.  Fds stay open.  Accepts NULL. */
void sp_iom_free(struct sp_iom *iom);

/*
 * Starts fn(arg) on a fiber from the pool; it first runs at the next scheduler
 * pass, on this thread when called on one of the IOManager's threads, else
 * (multi-thread mode: from any thread) on the next thread in turn.  Returns 0
 * or -ENOMEM.
 */
int sp_iom_spawn(struct sp_iom *iom, sp_fiber_fn *fn, void *arg);

/*
 * Runs the scheduler on the calling thread, plus threads - 1 more.  Returns 0
 * when sp_iom_stop() is called or when nothing is left to do (no live fiber,
 * no watch, no timer); -errno if a thread or the poller's wait fails.
 */
int sp_iom_run(struct sp_iom *iom);

/* Makes sp_iom_run() return soon.  Safe from any thread (not from a signal handler). */
void sp_iom_stop(struct sp_iom *iom);

/* The IOManager whose scheduler runs on this thread, or NULL. */
struct sp_iom *sp_iom_current(void);

/*
 * The index of the scheduler thread this code runs on, 0 .. threads - 1
 * (threads as configured, 1 in single-thread mode); 0 off the scheduler
 * threads.  A fiber never changes threads, so state kept per index needs no
 * lock when only that thread's fibers touch it.
 */
unsigned sp_iom_thread_index(void);

/*
 * Waits for fd (non-blocking) to become readable without holding a fiber:
 * fn(fd, status, arg) runs on a fresh fiber when it does, or after timeout_ms
 * (-1 = never; an idle bound counted from the scheduler pass's clock reading,
 * spindle/clock.h), on the thread that calls this (the fd's thread).  One watch
 * per fd.  Returns 0, -EBUSY if the fd already has a watch or a waiting
 * fiber, -ENOMEM, or -errno from the poller (epoll_ctl).  The caller keeps
 * ownership of arg.
 */
int sp_iom_watch(struct sp_iom *iom, int fd, int64_t timeout_ms, sp_watch_fn *fn, void *arg);

/*
 * Hands a listening socket (non-blocking) to every thread of the IOManager.
 * When connections are queued, fn(fd, 0, arg) runs on a fresh fiber on one
 * thread, the one the kernel woke, and no other thread is woken for fd until
 * it returns (a one-shot registration, armed again after each call): fn
 * accepts until -EAGAIN with sp_try_accept() and starts each connection's
 * fiber with sp_iom_spawn(), on its own thread.  After sp_close(fd) - from any
 * thread, at once if no call runs, else when it returns - fn(fd, -ECANCELED,
 * arg) runs once.  Returns 0, -ENOSPC (64 listeners) or -errno.
 */
int sp_iom_listen(struct sp_iom *iom, int fd, sp_watch_fn *fn, void *arg);

/*
 * Brings every current watch's deadline forward to at most timeout_ms from
 * now (a draining server closing its idle connections).  Returns how many
 * watches were affected.
 */
unsigned sp_iom_expire_watches(struct sp_iom *iom, int64_t timeout_ms);

void sp_iom_stats(struct sp_iom *iom, struct sp_iom_stats *out);

#endif
