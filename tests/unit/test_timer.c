/*
 * Timer heap: deadline order, ties in insertion order, cancel and re-arm from
 * anywhere (callbacks included), a large random workload, and the epoll
 * timeout derived from the earliest deadline.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "spindle/timer.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* A timer that logs its id when it fires. */
struct tt {
    struct sp_timer t;
    int id;
    struct log *log;
};

struct log {
    int ids[256];
    int n;
};

static void log_fired(struct sp_timer *t)
{
    struct tt *x = container_of(t, struct tt, t);
    x->log->ids[x->log->n++] = x->id;
}

static void init_all(struct tt *x, int n, struct log *log)
{
    for (int i = 0; i < n; i++) {
        sp_timer_init(&x[i].t, log_fired);
        x[i].id = i;
        x[i].log = log;
    }
}

static void expect_log(const struct log *log, const int *want, int n)
{
    assert_int_equal(log->n, n);
    for (int i = 0; i < n; i++)
        if (log->ids[i] != want[i])
            fail_msg("fired[%d] = %d, want %d", i, log->ids[i], want[i]);
}

/* The heap property and the back-pointers, checked directly. */
static void check_heap(const struct sp_timer_heap *h)
{
    for (uint32_t i = 0; i < h->len; i++) {
        const struct sp_timer *t = h->nodes[i];
        assert_int_equal(t->index, i + 1);
        if (i == 0)
            continue;
        const struct sp_timer *p = h->nodes[(i - 1) / 2];
        assert_true(p->deadline < t->deadline || (p->deadline == t->deadline && p->seq < t->seq));
    }
}

static void test_empty_heap(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    sp_timer_heap_init(&h);
    assert_true(sp_timer_next(&h) == UINT64_MAX);
    assert_int_equal(sp_timer_timeout_ms(&h, 0), -1);
    assert_int_equal(sp_timer_timeout_ms(&h, UINT64_MAX), -1);
    assert_int_equal(sp_timer_run(&h, UINT64_MAX), 0);
    sp_timer_heap_close(&h);
}

static void test_now_is_monotonic(void **state)
{
    (void)state;
    uint64_t a = sp_now_ns();
    uint64_t b = sp_now_ns();
    assert_true(a > 0);
    assert_true(b >= a);
}

static void test_random_deadlines_fire_in_order(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[200];
    sp_timer_heap_init(&h);
    init_all(x, 200, &log);
    srand(1);
    for (int i = 0; i < 200; i++)
        assert_int_equal(sp_timer_add(&h, &x[i].t, 1000 + (uint64_t)(rand() % 50)), 0);
    check_heap(&h);
    assert_int_equal(h.len, 200);

    /* Run in steps: each run fires exactly the timers due by then. */
    unsigned total = 0;
    for (uint64_t now = 999; now < 1050; now += 7) {
        int before = log.n;
        total += sp_timer_run(&h, now);
        for (int k = before; k < log.n; k++)
            assert_true(x[log.ids[k]].t.deadline <= now);
        if (h.len)
            assert_true(sp_timer_next(&h) > now);
    }
    total += sp_timer_run(&h, 1050);
    assert_int_equal(total, 200);
    assert_int_equal(log.n, 200);
    assert_int_equal(h.len, 0);
    for (int k = 1; k < 200; k++) {
        const struct tt *a = &x[log.ids[k - 1]], *b = &x[log.ids[k]];
        assert_true(a->t.deadline <= b->t.deadline);
        if (a->t.deadline == b->t.deadline)
            assert_true(a->id < b->id); /* added in id order */
    }
    for (int i = 0; i < 200; i++)
        assert_false(sp_timer_armed(&x[i].t));
    sp_timer_heap_close(&h);
}

static void test_equal_deadlines_fire_in_insertion_order(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[100];
    sp_timer_heap_init(&h);
    init_all(x, 100, &log);
    /* Add in a scrambled order; that order is the firing order. */
    int order[100];
    for (int i = 0; i < 100; i++)
        order[i] = (i * 37) % 100;
    for (int i = 0; i < 100; i++)
        assert_int_equal(sp_timer_add(&h, &x[order[i]].t, 500), 0);
    assert_int_equal(sp_timer_run(&h, 499), 0);
    assert_int_equal(sp_timer_run(&h, 500), 100);
    expect_log(&log, order, 100);
    sp_timer_heap_close(&h);
}

static void test_cancel(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[10];
    sp_timer_heap_init(&h);
    init_all(x, 10, &log);
    for (int i = 0; i < 10; i++)
        sp_timer_add(&h, &x[i].t, 100 + (uint64_t)i);

    sp_timer_cancel(&h, &x[0].t); /* the head */
    assert_false(sp_timer_armed(&x[0].t));
    assert_true(sp_timer_next(&h) == 101);
    sp_timer_cancel(&h, &x[5].t); /* the middle */
    /* The last one in the array: find it rather than assume. */
    struct sp_timer *last = h.nodes[h.len - 1];
    int last_id = container_of(last, struct tt, t)->id;
    sp_timer_cancel(&h, last);
    assert_false(sp_timer_armed(last));
    sp_timer_cancel(&h, &x[5].t); /* no longer armed: nothing happens */
    struct tt idle;
    sp_timer_init(&idle.t, log_fired);
    sp_timer_cancel(&h, &idle.t); /* never armed */
    assert_int_equal(h.len, 7);
    check_heap(&h);

    assert_int_equal(sp_timer_run(&h, 1000), 7);
    int want[7], n = 0;
    for (int i = 1; i < 10; i++)
        if (i != 5 && i != last_id)
            want[n++] = i;
    expect_log(&log, want, 7);

    /* Cancel everything, then nothing fires. */
    log.n = 0;
    for (int i = 0; i < 10; i++)
        sp_timer_add(&h, &x[i].t, 10);
    for (int i = 9; i >= 0; i--)
        sp_timer_cancel(&h, &x[i].t);
    assert_int_equal(h.len, 0);
    assert_int_equal(sp_timer_run(&h, UINT64_MAX), 0);
    assert_int_equal(log.n, 0);
    sp_timer_heap_close(&h);
}

static void test_readd_moves(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[4];
    sp_timer_heap_init(&h);
    init_all(x, 4, &log);
    for (int i = 0; i < 4; i++)
        sp_timer_add(&h, &x[i].t, 100 + 10 * (uint64_t)i); /* 100 110 120 130 */

    sp_timer_add(&h, &x[0].t, 125); /* later */
    sp_timer_add(&h, &x[3].t, 50);  /* earlier */
    sp_timer_add(&h, &x[2].t, 110); /* tie with x1, which was there first */
    assert_int_equal(h.len, 4);
    check_heap(&h);
    assert_true(x[0].t.deadline == 125);
    assert_int_equal(sp_timer_run(&h, 200), 4);
    int want[] = {3, 1, 2, 0};
    expect_log(&log, want, 4);
    sp_timer_heap_close(&h);
}

/* ---- callbacks that change the heap -------------------------------------- */

struct cb_ctx {
    struct sp_timer_heap *h;
    struct tt *x;
    struct log *log;
    uint64_t now;
};

static struct cb_ctx *cbc;

/* x0: cancels x2 (due too) and x5 (not due). */
static void cancel_others(struct sp_timer *t)
{
    log_fired(t);
    sp_timer_cancel(cbc->h, &cbc->x[2].t);
    sp_timer_cancel(cbc->h, &cbc->x[5].t);
}

/* x1: adds x6, already overdue and earlier than every other timer: it must
 * wait for the next run without holding up the timers still due in this one. */
static void add_due(struct sp_timer *t)
{
    log_fired(t);
    sp_timer_add(cbc->h, &cbc->x[6].t, 1);
}

/* x3: re-arms itself for now, every time it fires. */
static void rearm_self(struct sp_timer *t)
{
    log_fired(t);
    sp_timer_add(cbc->h, t, cbc->now);
}

/* x4: moves x7 (not due) to now, which must also wait. */
static void pull_in(struct sp_timer *t)
{
    log_fired(t);
    sp_timer_add(cbc->h, &cbc->x[7].t, 1);
}

static void test_callbacks_change_the_heap(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[8];
    struct cb_ctx ctx = {.h = &h, .x = x, .log = &log, .now = 1000};
    cbc = &ctx;
    sp_timer_heap_init(&h);
    init_all(x, 8, &log);
    x[0].t.cb = cancel_others;
    x[1].t.cb = add_due;
    x[3].t.cb = rearm_self;
    x[4].t.cb = pull_in;

    sp_timer_add(&h, &x[0].t, 900);
    sp_timer_add(&h, &x[1].t, 910);
    sp_timer_add(&h, &x[2].t, 920);
    sp_timer_add(&h, &x[3].t, 930);
    sp_timer_add(&h, &x[4].t, 940);
    sp_timer_add(&h, &x[5].t, 2000);
    sp_timer_add(&h, &x[7].t, 3000);

    /* Every timer due before the run fires in this run, in order, even
     * though the callbacks put new due timers at the head. */
    assert_int_equal(sp_timer_run(&h, 1000), 4);
    int want1[] = {0, 1, 3, 4};
    expect_log(&log, want1, 4);
    assert_false(sp_timer_armed(&x[2].t));
    assert_false(sp_timer_armed(&x[5].t));
    assert_true(sp_timer_armed(&x[3].t));
    assert_true(sp_timer_armed(&x[6].t));
    assert_true(sp_timer_armed(&x[7].t));
    check_heap(&h);
    /* What they added is due at the next run, so the poll before it is short. */
    assert_true(sp_timer_next(&h) <= 1001);

    /* The next run fires what the callbacks armed, in the order they armed it. */
    log.n = 0;
    ctx.now = 1001;
    assert_int_equal(sp_timer_run(&h, 1001), 3);
    int want2[] = {6, 3, 7};
    expect_log(&log, want2, 3);
    /* x3 keeps re-arming itself: once per run, never in a loop. */
    for (uint64_t now = 1002; now < 1005; now++) {
        log.n = 0;
        ctx.now = now;
        assert_int_equal(sp_timer_run(&h, now), 1);
        assert_int_equal(log.ids[0], 3);
    }
    sp_timer_cancel(&h, &x[3].t);
    assert_int_equal(h.len, 0);
    sp_timer_heap_close(&h);
}

/* ---- a large random workload -------------------------------------------- */

#define BIG 100000

static uint64_t last_deadline, last_seq;
static unsigned big_fired;
static int big_order_ok = 1;

static void big_fired_cb(struct sp_timer *t)
{
    if (t->deadline < last_deadline || (t->deadline == last_deadline && t->seq < last_seq))
        big_order_ok = 0;
    last_deadline = t->deadline;
    last_seq = t->seq;
    big_fired++;
}

static void test_random_insert_cancel_100k(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct sp_timer *t = calloc(BIG, sizeof(*t));
    assert_non_null(t);
    sp_timer_heap_init(&h);
    for (int i = 0; i < BIG; i++)
        sp_timer_init(&t[i], big_fired_cb);

    srand(42);
    unsigned armed = 0;
    for (int op = 0; op < 4 * BIG; op++) {
        struct sp_timer *x = &t[rand() % BIG];
        if (rand() % 3 == 0) {
            if (sp_timer_armed(x))
                armed--;
            sp_timer_cancel(&h, x);
        } else {
            if (!sp_timer_armed(x))
                armed++;
            assert_int_equal(sp_timer_add(&h, x, 1 + (uint64_t)(rand() % 5000)), 0);
        }
    }
    assert_int_equal(h.len, armed);
    check_heap(&h);

    unsigned should_fire = 0;
    for (int i = 0; i < BIG; i++)
        should_fire += sp_timer_armed(&t[i]);
    last_deadline = last_seq = 0;
    big_fired = 0;
    big_order_ok = 1;
    /* Drain in slices so that the heap is reordered many times on the way. */
    for (uint64_t now = 0; now <= 5000; now += 50)
        sp_timer_run(&h, now);
    assert_int_equal(big_fired, should_fire);
    assert_true(big_order_ok);
    assert_int_equal(h.len, 0);
    for (int i = 0; i < BIG; i++)
        assert_false(sp_timer_armed(&t[i]));
    sp_timer_heap_close(&h);
    free(t);
}

static void test_timeout_ms(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct tt x;
    struct log log = {0};
    sp_timer_heap_init(&h);
    init_all(&x, 1, &log);
    const uint64_t ms = 1000000, now = 5000 * ms;

    sp_timer_add(&h, &x.t, now);
    assert_int_equal(sp_timer_timeout_ms(&h, now), 0);     /* due exactly now */
    assert_int_equal(sp_timer_timeout_ms(&h, now + 1), 0); /* overdue */
    sp_timer_add(&h, &x.t, now + 1);
    assert_int_equal(sp_timer_timeout_ms(&h, now), 1); /* 1 ns rounds up */
    sp_timer_add(&h, &x.t, now + ms);
    assert_int_equal(sp_timer_timeout_ms(&h, now), 1);
    sp_timer_add(&h, &x.t, now + ms + 1);
    assert_int_equal(sp_timer_timeout_ms(&h, now), 2);
    sp_timer_add(&h, &x.t, now + 1500 * ms - 1);
    assert_int_equal(sp_timer_timeout_ms(&h, now), 1500);
    sp_timer_add(&h, &x.t, UINT64_MAX - 1); /* centuries away: clamped, not negative */
    assert_int_equal(sp_timer_timeout_ms(&h, now), INT_MAX);
    assert_true(sp_timer_next(&h) == UINT64_MAX - 1);
    sp_timer_cancel(&h, &x.t);
    assert_int_equal(sp_timer_timeout_ms(&h, now), -1);
    sp_timer_heap_close(&h);
}

static void test_close_disarms(void **state)
{
    (void)state;
    struct sp_timer_heap h;
    struct log log = {0};
    struct tt x[3];
    sp_timer_heap_init(&h);
    init_all(x, 3, &log);
    for (int i = 0; i < 3; i++)
        sp_timer_add(&h, &x[i].t, 10);
    sp_timer_heap_close(&h);
    for (int i = 0; i < 3; i++)
        assert_false(sp_timer_armed(&x[i].t));
    assert_int_equal(log.n, 0);
    /* The heap is usable again after close. */
    sp_timer_add(&h, &x[0].t, 10);
    assert_int_equal(sp_timer_run(&h, 10), 1);
    sp_timer_heap_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_heap),
        cmocka_unit_test(test_now_is_monotonic),
        cmocka_unit_test(test_random_deadlines_fire_in_order),
        cmocka_unit_test(test_equal_deadlines_fire_in_insertion_order),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_readd_moves),
        cmocka_unit_test(test_callbacks_change_the_heap),
        cmocka_unit_test(test_random_insert_cancel_100k),
        cmocka_unit_test(test_timeout_ms),
        cmocka_unit_test(test_close_disarms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
