/*
 * Fibers: stackful coroutines with a hand-written context switch.
 *
 * A fiber is resumed by a scheduler (a thread's own stack) and runs until it
 * yields or its function returns; control then goes back to whoever resumed it.
 * Fibers come from a pool that keeps finished fibers, stacks included, so that
 * starting one costs no system call.  This module is mechanism only: the
 * IOManager (iomanager.h) decides when a fiber runs.
 */
#ifndef SPINDLE_FIBER_H
#define SPINDLE_FIBER_H

#include <stdbool.h>
#include <stddef.h>

typedef void sp_fiber_fn(void *arg);

struct sp_fiber;
struct sp_fiber_pool;

struct sp_fiber_pool_config {
    size_t stack_size;  /* usable bytes per stack, rounded up to pages, at least 4 pages;
                           0 = 64 KiB */
    unsigned max_free;  /* finished fibers kept for reuse; beyond this they are unmapped
                           (0 = 256) */
    unsigned warm_free; /* free fibers whose stack pages stay resident; the rest get
                           MADV_DONTNEED when returned (0 = max_free) */
};

struct sp_fiber_pool_stats {
    unsigned live;              /* fibers handed out and not yet released */
    unsigned free;              /* fibers waiting in the pool */
    unsigned mapped;            /* stacks currently mapped (live + free) */
    unsigned long long created; /* stacks ever mapped */
    unsigned long long reused;  /* fibers handed out from the free list */
};

/*
 * Creates a pool.  cfg may be NULL for defaults.  Returns NULL with errno set
 * on failure.  The pool is not thread-safe; callers that share one serialize.
 */
struct sp_fiber_pool *sp_fiber_pool_new(const struct sp_fiber_pool_config *cfg);

/* Unmaps every free fiber and the pool itself.  Live fibers must have been
 * released first.  Accepts NULL. */
void sp_fiber_pool_free(struct sp_fiber_pool *pool);

void sp_fiber_pool_stats(const struct sp_fiber_pool *pool, struct sp_fiber_pool_stats *out);

/*
 * Takes a fiber from the pool (or maps a new stack) that will run fn(arg) when
 * first resumed, in the default floating-point environment.  Returns NULL
 * with errno = ENOMEM when no stack can be mapped.  The fiber belongs to the
 * caller until sp_fiber_release().
 */
struct sp_fiber *sp_fiber_new(struct sp_fiber_pool *pool, sp_fiber_fn *fn, void *arg);

/* Gives a fiber back to its pool.  It must not be running; a fiber that has
 * not finished is simply abandoned (its stack is reused).  Accepts NULL. */
void sp_fiber_release(struct sp_fiber *f);

/*
 * Switches from the calling context into f and returns when f yields or its
 * function returns.  f must not be running and must not be finished.  The
 * caller may be a thread's own stack or another fiber.
 */
void sp_fiber_resume(struct sp_fiber *f);

/* Switches from the running fiber back to the context that resumed it.
 * Must be called on a fiber. */
void sp_fiber_yield(void);

/* The fiber running on this thread, or NULL on a thread's own stack. */
struct sp_fiber *sp_fiber_current(void);

/* True once the fiber's function has returned. */
bool sp_fiber_finished(const struct sp_fiber *f);

/* An opaque per-fiber pointer for the scheduler that owns the fiber. */
void sp_fiber_set_data(struct sp_fiber *f, void *data);
void *sp_fiber_data(const struct sp_fiber *f);

/* Usable stack size of fibers from this pool, in bytes. */
size_t sp_fiber_pool_stack_size(const struct sp_fiber_pool *pool);

#endif
