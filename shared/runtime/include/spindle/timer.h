/*
 * Timers: a binary min-heap of nodes embedded in their owners.
 *
 * Insert and cancel are O(log n); the earliest deadline is O(1), which the
 * IOManager turns into its epoll_wait timeout.  Deadlines are CLOCK_MONOTONIC
 * nanoseconds.  Nodes with equal deadlines fire in the order they were added.
 */
#ifndef SPINDLE_TIMER_H
#define SPINDLE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "spindle/clock.h" /* sp_now_ns(), the time deadlines are in */

struct sp_timer;
typedef void sp_timer_fn(struct sp_timer *t);

/* Embed in the owner; recover it with container_of in the callback. */
struct sp_timer {
    uint64_t deadline; /* CLOCK_MONOTONIC, ns */
    uint64_t seq;      /* insertion order, breaks ties between equal deadlines */
    sp_timer_fn *cb;
    uint32_t index; /* position in the heap + 1; 0 = not armed */
};

struct sp_timer_heap {
    struct sp_timer **nodes;
    uint32_t len, cap;
    uint64_t next_seq;
};

void sp_timer_heap_init(struct sp_timer_heap *h);
/* Frees the heap's array; armed nodes are forgotten, not called. */
void sp_timer_heap_close(struct sp_timer_heap *h);

/* A node must be initialised once before first use (not armed). */
void sp_timer_init(struct sp_timer *t, sp_timer_fn *cb);

static inline bool sp_timer_armed(const struct sp_timer *t)
{
    return t->index != 0;
}

/*
 * Arms t to fire at deadline (ns); an armed node is moved.  Returns 0, or
 * -ENOMEM when the heap cannot grow.  The heap borrows t until it fires or is
 * cancelled: t must stay valid and in place until then.
 */
int sp_timer_add(struct sp_timer_heap *h, struct sp_timer *t, uint64_t deadline);

/* Disarms t; does nothing if it is not armed. */
void sp_timer_cancel(struct sp_timer_heap *h, struct sp_timer *t);

/* Deadline of the earliest timer, or UINT64_MAX when none is armed. */
uint64_t sp_timer_next(const struct sp_timer_heap *h);

/*
 * Milliseconds from now until the earliest deadline, rounded up, for use as an
 * epoll_wait timeout: -1 when no timer is armed, 0 when one is due.
 */
int sp_timer_timeout_ms(const struct sp_timer_heap *h, uint64_t now);

/*
 * Disarms and calls, in deadline order, every timer due at or before now.
 * A callback may add or cancel timers (itself included); a timer a callback
 * arms for a time already past fires in the next run (its deadline becomes
 * now + 1).  Returns the count.
 */
unsigned sp_timer_run(struct sp_timer_heap *h, uint64_t now);

#endif
