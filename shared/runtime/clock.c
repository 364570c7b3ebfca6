/* The clock (see clock.h). */
#include "spindle/clock.h"

#include <stdbool.h>

#define NS_PER_SEC 1000000000ull

/*
 * One cache per thread, so that reading it takes no lock and no atomic.  A
 * fiber may resume on another thread in multi-thread mode: the thread-local is
 * touched only inside these functions, which live in this file and so are
 * never inlined into a caller that parks with its address in a register.
 */
struct clock_cache {
    uint64_t mono;    /* the thread's last monotonic reading */
    bool ticking;     /* a scheduler runs on this thread: mono is of this pass */
    int64_t offset;   /* wall minus monotonic, ns */
    uint64_t sec_end; /* monotonic time at which sec ends; 0: not measured */
    time_t sec;       /* the wall-clock second of [sec_end - 1 s, sec_end) */
};

static __thread struct clock_cache cc;

uint64_t sp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
    cc.mono = now;
    return now;
}

void sp_clock_tick(void)
{
    cc.ticking = true;
    sp_now_ns();
}

void sp_clock_stop(void)
{
    cc.ticking = false;
}

/* Measures the offset again for a monotonic reading mono that is past the end
 * of the cached second: the wall clock is read right after it, a few ns
 * apart, far below any resolution a stamp shows.  Then sec is exactly the
 * second of mono + offset until sec_end. */
static void resync(uint64_t mono)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cc.offset = (int64_t)((uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec - mono);
    cc.sec = ts.tv_sec;
    cc.sec_end = mono + (NS_PER_SEC - (uint64_t)ts.tv_nsec);
}

uint64_t sp_wall_ns(void)
{
    uint64_t mono = sp_now_ns();
    if (mono >= cc.sec_end)
        resync(mono);
    return mono + (uint64_t)cc.offset;
}

uint64_t sp_clock_pass_ns(void)
{
    return cc.ticking ? cc.mono : sp_now_ns();
}

time_t sp_wall_sec(void)
{
    uint64_t mono = sp_clock_pass_ns();
    if (mono >= cc.sec_end) /* sec_end 0: never measured */
        resync(mono);
    return cc.sec;
}
