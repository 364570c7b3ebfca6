/*
 * Wait queues: fibers park on a queue until another fiber signals it or
 * their timeout passes (a condition variable for fibers).
 *
 * A queue remembers nothing: a signal with nobody waiting is lost, so a
 * waiter loops on its own predicate and waits again while it is false.
 * Waiters wake in the order they began to wait.
 *
 * Fibers are thread-affine, and so is a queue: every waiter and every
 * signaller must run on one scheduler thread (an IOManager with threads = 1,
 * or one thread of a larger one).  Signalling a waiter of another scheduler
 * thread aborts.  A queue needs no teardown once nobody waits on it.
 *
 * A waiter stays parked while its IOManager is stopped (sp_iom_stop) and
 * goes on waiting when it runs again, like any other fiber wait.
 */
#ifndef SPINDLE_WAITQ_H
#define SPINDLE_WAITQ_H

#include <stdint.h>

struct sp_fiber;

/* One waiting fiber; lives on that fiber's stack while it waits. */
struct sp_waitq_node {
    struct sp_waitq_node *prev, *next;
    struct sp_waitq *queue;
    struct sp_fiber *fiber;
};

struct sp_waitq {
    struct sp_waitq_node *head, *tail; /* oldest waiter first */
};

#define SP_WAITQ_INIT                                                                              \
    {                                                                                              \
        NULL, NULL                                                                                 \
    }

void sp_waitq_init(struct sp_waitq *q);

/* Parks the calling fiber on q until a signal reaches it or timeout_ms passes
 * (< 0: no timeout).  Returns 0 when signalled, -ETIMEDOUT, or -EPERM off a
 * fiber.  Exactly one of the two: a signal cancels the timer, and a timeout
 * takes the waiter off the queue before any later signal can pick it. */
int sp_waitq_wait(struct sp_waitq *q, int64_t timeout_ms);

/* Wakes the oldest waiter; returns 1 if there was one, else 0. */
int sp_waitq_signal(struct sp_waitq *q);

/* Wakes every waiter, oldest first; returns how many. */
unsigned sp_waitq_broadcast(struct sp_waitq *q);

#endif
