/*
 * Tests of shared/runtime/clock.c: the monotonic clock, the wall clock
 * derived from it and the per-thread cached second.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "spindle/clock.h"

static void test_monotonic_never_goes_back(void **state)
{
    (void)state;
    uint64_t last = sp_now_ns();
    assert_true(last > 0);
    for (int i = 0; i < 200000; i++) {
        uint64_t now = sp_now_ns();
        assert_true(now >= last);
        last = now;
    }
}

/* Wall time agrees with the system's (time(NULL)) within a second, read
 * through every entry point, on a thread without a scheduler pass. */
static void test_wall_agrees_with_time(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++) {
        time_t before = time(NULL);
        uint64_t wall = sp_wall_ns();
        time_t sec = sp_wall_sec();
        time_t after = time(NULL);
        assert_true((time_t)(wall / 1000000000ull) >= before - 1);
        assert_true((time_t)(wall / 1000000000ull) <= after + 1);
        assert_true(sec >= before - 1 && sec <= after + 1);
        /* The second and the nanoseconds come from one source. */
        assert_true(sec - (time_t)(wall / 1000000000ull) <= 1);
        assert_true(sec >= (time_t)(wall / 1000000000ull));
        usleep(1000);
    }
}

/* In a scheduler pass the second comes from the pass's latest reading,
 * without reading the clock; a new pass, or a new reading, moves it on. */
static void test_cached_second_advances(void **state)
{
    (void)state;
    sp_clock_tick();
    time_t first = sp_wall_sec();
    usleep(1100000); /* no clock reading meanwhile */
    assert_int_equal(sp_wall_sec(), first);
    sp_clock_tick();
    time_t second = sp_wall_sec();
    assert_true(second >= first + 1 && second <= first + 2);
    assert_true(second >= time(NULL) - 1);

    usleep(1100000);
    assert_int_equal(sp_wall_sec(), second);
    uint64_t mono = sp_now_ns(); /* a reading in the same pass serves too */
    time_t third = sp_wall_sec();
    assert_true(third >= second + 1);
    assert_int_equal(sp_clock_pass_ns(), mono);

    /* Without a scheduler every call reads the clock. */
    sp_clock_stop();
    usleep(1100000);
    assert_true(sp_wall_sec() >= third + 1);
    assert_true(sp_clock_pass_ns() > mono + 1000000000ull);
}

static void *fresh_thread(void *arg)
{
    /* A thread that never ran a scheduler pass reads the clock. */
    *(time_t *)arg = sp_wall_sec();
    return NULL;
}

static void test_new_thread_reads_fresh(void **state)
{
    (void)state;
    pthread_t th;
    time_t got = 0, before = time(NULL);
    assert_int_equal(pthread_create(&th, NULL, fresh_thread, &got), 0);
    pthread_join(th, NULL);
    assert_true(got >= before - 1 && got <= time(NULL) + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic_never_goes_back),
        cmocka_unit_test(test_wall_agrees_with_time),
        cmocka_unit_test(test_cached_second_advances),
        cmocka_unit_test(test_new_thread_reads_fresh),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
