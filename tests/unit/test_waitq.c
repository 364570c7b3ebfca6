/*
 * Wait queues: signal wakes one, broadcast wakes all in order, timeouts, no
 * memory of a signal nobody waited for, and exactly one result when a
 * signal and the timeout meet.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime_test.h"
#include "spindle/waitq.h"

struct wq {
    struct sp_waitq q;
    int64_t timeout_ms;
    int order[8];
    int rc[8];
    int runs[8];
    int n;     /* woken so far */
    int index; /* next waiter's index */
    int signalled;
    int64_t t0, took;
};

static struct wq *wq_new(int64_t timeout_ms)
{
    struct wq *w = calloc(1, sizeof(*w));
    sp_waitq_init(&w->q);
    w->timeout_ms = timeout_ms;
    return w;
}

static void waiter(void *arg)
{
    struct wq *w = arg;
    int me = w->index++;
    int64_t t0 = now_ms();
    int rc = sp_waitq_wait(&w->q, w->timeout_ms);
    w->took = now_ms() - t0;
    w->runs[me]++;
    w->rc[me] = rc;
    w->order[w->n++] = me;
}

static void spin_ms(int64_t ms)
{
    int64_t t0 = now_ms();
    while (now_ms() - t0 < ms)
        ;
}

static void signal_one_then_rest(void *arg)
{
    struct wq *w = arg;
    CHECK(w->q.head != NULL);
    CHECK(sp_waitq_signal(&w->q) == 1);
    CHECK(sp_sleep(30) == 0);
    CHECK(w->n == 1); /* one woke; the others still wait */
    CHECK(w->order[0] == 0);
    CHECK(sp_waitq_broadcast(&w->q) == 2);
}

static void test_signal_wakes_one(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    struct wq *w = wq_new(-1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sp_iom_spawn(iom, waiter, w), 0);
    assert_int_equal(sp_iom_spawn(iom, signal_one_then_rest, w), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(w->n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w->rc[i], 0);
        assert_int_equal(w->runs[i], 1);
    }
    assert_null(w->q.head);
    free(w);
    sp_iom_free(iom);
}

static void broadcast_all(void *arg)
{
    struct wq *w = arg;
    CHECK(sp_waitq_broadcast(&w->q) == 4);
    CHECK(w->q.head == NULL && w->q.tail == NULL);
    CHECK(sp_waitq_broadcast(&w->q) == 0);
}

static void test_broadcast_wakes_all_in_order(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    struct wq *w = wq_new(10000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sp_iom_spawn(iom, waiter, w), 0);
    assert_int_equal(sp_iom_spawn(iom, broadcast_all, w), 0);
    int64_t t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    assert_true(now_ms() - t0 < slack_ms()); /* the timers were cancelled, not waited out */
    assert_int_equal(w->n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(w->order[i], i);
        assert_int_equal(w->rc[i], 0);
    }
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    assert_int_equal(st.timers, 0);
    free(w);
    sp_iom_free(iom);
}

static void test_timeout(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    struct wq *w = wq_new(50);
    assert_int_equal(sp_iom_spawn(iom, waiter, w), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(w->rc[0], -ETIMEDOUT);
    assert_true(w->took >= 50 && w->took < 50 + slack_ms());
    assert_null(w->q.head);
    assert_null(w->q.tail);
    free(w);
    sp_iom_free(iom);
}

static void signal_nobody_then_wait(void *arg)
{
    struct wq *w = arg;
    CHECK(sp_waitq_signal(&w->q) == 0);
    CHECK(sp_waitq_broadcast(&w->q) == 0);
    CHECK(sp_waitq_wait(&w->q, 30) == -ETIMEDOUT); /* the signal was not kept */
    CHECK(w->q.head == NULL);
    w->signalled = 1;
}

static void test_signal_before_wait_is_lost(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    struct wq *w = wq_new(-1);
    assert_int_equal(sp_iom_spawn(iom, signal_nobody_then_wait, w), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(w->signalled, 1);
    free(w);
    sp_iom_free(iom);
}

/* The waiter's deadline passes while this fiber holds the thread; the timer
 * fires before this fiber runs again, and its signal finds nobody. */
static void signal_after_deadline(void *arg)
{
    struct wq *w = arg;
    spin_ms(20);
    sp_yield();
    w->signalled = sp_waitq_signal(&w->q);
}

/* Signalled, then the deadline passes before the waiter runs: the timer was
 * cancelled and the waiter runs once, signalled. */
static void signal_before_deadline(void *arg)
{
    struct wq *w = arg;
    w->signalled = sp_waitq_signal(&w->q);
    spin_ms(20);
    sp_yield();
    spin_ms(5);
}

static void test_signal_and_timeout_race(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    struct wq *w = wq_new(2);
    assert_int_equal(sp_iom_spawn(iom, waiter, w), 0);
    assert_int_equal(sp_iom_spawn(iom, signal_after_deadline, w), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(w->signalled, 0);
    assert_int_equal(w->rc[0], -ETIMEDOUT);
    assert_int_equal(w->runs[0], 1);
    assert_int_equal(w->n, 1);
    free(w);

    w = wq_new(2);
    assert_int_equal(sp_iom_spawn(iom, waiter, w), 0);
    assert_int_equal(sp_iom_spawn(iom, signal_before_deadline, w), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(w->signalled, 1);
    assert_int_equal(w->rc[0], 0);
    assert_int_equal(w->runs[0], 1);
    assert_int_equal(w->n, 1);
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    assert_int_equal(st.timers, 0);
    assert_int_equal(st.fibers_live, 0);
    free(w);
    sp_iom_free(iom);
}

static void test_off_a_fiber(void **state)
{
    (void)state;
    struct sp_waitq q = SP_WAITQ_INIT;
    assert_int_equal(sp_waitq_wait(&q, 10), -EPERM);
    assert_int_equal(sp_waitq_signal(&q), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        RT_TEST(test_signal_wakes_one),
        RT_TEST(test_broadcast_wakes_all_in_order),
        RT_TEST(test_timeout),
        RT_TEST(test_signal_before_wait_is_lost),
        RT_TEST(test_signal_and_timeout_race),
        RT_TEST(test_off_a_fiber),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
