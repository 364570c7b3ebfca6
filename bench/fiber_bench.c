/*
 * Fiber micro-benchmark: the cost of a spindle context switch beside glibc's
 * swapcontext() measured in the same run, the cost of taking a fiber from a
 * warm pool and running it to completion, the cost of one on a newly mapped
 * stack (mmap, guard page, munmap), and the cost of sp_iom_spawn().
 *
 * Usage: fiber_bench [iterations]   (default 2000000 round trips per run)
 * Each figure is the best of several runs, in nanoseconds.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#include "spindle/fiber.h"
#include "spindle/iomanager.h"

#define RUNS  7
#define BATCH 200 /* fibers per sp_iom_run(), below the pool's max_free: all warm */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double best(double a, double b)
{
    return a < b ? a : b;
}

/* ---- spindle: resume + yield ------------------------------------------------ */

static volatile int stop_pingpong;

static void pingpong_fn(void *arg)
{
    (void)arg;
    while (!stop_pingpong)
        sp_fiber_yield();
}

/* ns per switch (a round trip is two). */
static double spindle_switch(long iters)
{
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    struct sp_fiber *f = sp_fiber_new(pool, pingpong_fn, NULL);
    if (!f) {
        perror("sp_fiber_new");
        exit(1);
    }
    stop_pingpong = 0;
    sp_fiber_resume(f); /* warm */
    uint64_t t0 = now_ns();
    for (long i = 0; i < iters; i++)
        sp_fiber_resume(f);
    uint64_t t1 = now_ns();
    stop_pingpong = 1;
    sp_fiber_resume(f);
    sp_fiber_release(f);
    sp_fiber_pool_free(pool);
    return (double)(t1 - t0) / (2.0 * (double)iters);
}

/* ---- glibc: swapcontext ping-pong ----------------------------------------------- */

static ucontext_t main_uc, fiber_uc;

static void uc_fn(void)
{
    for (;;)
        swapcontext(&fiber_uc, &main_uc);
}

static double glibc_switch(long iters)
{
    static char stack[64 * 1024];
    getcontext(&fiber_uc);
    fiber_uc.uc_stack.ss_sp = stack;
    fiber_uc.uc_stack.ss_size = sizeof(stack);
    fiber_uc.uc_link = NULL;
    makecontext(&fiber_uc, uc_fn, 0);
    swapcontext(&main_uc, &fiber_uc); /* warm */
    uint64_t t0 = now_ns();
    for (long i = 0; i < iters; i++)
        swapcontext(&main_uc, &fiber_uc);
    uint64_t t1 = now_ns();
    return (double)(t1 - t0) / (2.0 * (double)iters);
}

/* ---- fiber from a warm pool: new + run to completion + release -------------- */

static void empty_fn(void *arg)
{
    (void)arg;
}

static double pool_cycle(long iters)
{
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    struct sp_fiber *f = sp_fiber_new(pool, empty_fn, NULL); /* maps the one stack */
    sp_fiber_resume(f);
    sp_fiber_release(f);
    uint64_t t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        f = sp_fiber_new(pool, empty_fn, NULL);
        sp_fiber_resume(f);
        sp_fiber_release(f);
    }
    uint64_t t1 = now_ns();
    struct sp_fiber_pool_stats st;
    sp_fiber_pool_stats(pool, &st);
    if (st.created != 1) {
        fprintf(stderr, "pool mapped %llu stacks, expected 1\n", st.created);
        exit(1);
    }
    sp_fiber_pool_free(pool);
    return (double)(t1 - t0) / (double)iters;
}

/* A fiber on a stack mapped for it (mmap and guard page), run, then unmapped. */
static double cold_cycle(long iters)
{
    struct sp_fiber_pool_config cfg = {.max_free = 1};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    struct sp_fiber *batch[BATCH];
    long batches = iters / BATCH > 0 ? iters / BATCH : 1;
    uint64_t t0 = now_ns();
    for (long b = 0; b < batches; b++) {
        for (int i = 0; i < BATCH; i++) {
            batch[i] = sp_fiber_new(pool, empty_fn, NULL);
            if (!batch[i]) {
                perror("sp_fiber_new");
                exit(1);
            }
            sp_fiber_resume(batch[i]);
        }
        for (int i = 0; i < BATCH; i++)
            sp_fiber_release(batch[i]); /* all but one are unmapped */
    }
    uint64_t t1 = now_ns();
    sp_fiber_pool_free(pool);
    return (double)(t1 - t0) / (double)(batches * BATCH);
}

/* ---- sp_iom_spawn ----------------------------------------------------------- */

struct spawn_cost {
    double spawn;    /* the sp_iom_spawn() call alone */
    double lifetime; /* spawn + first run to completion + retire, through sp_iom_run() */
};

static struct spawn_cost iom_spawn(long iters)
{
    struct sp_iom *iom = sp_iom_new(NULL);
    if (!iom) {
        perror("sp_iom_new");
        exit(1);
    }
    long batches = iters / BATCH > 0 ? iters / BATCH : 1;
    uint64_t spawn_ns = 0, total_ns = 0;
    for (long b = -1; b < batches; b++) { /* batch -1 warms the pool */
        uint64_t t0 = now_ns();
        for (int i = 0; i < BATCH; i++)
            if (sp_iom_spawn(iom, empty_fn, NULL) != 0) {
                fprintf(stderr, "sp_iom_spawn failed\n");
                exit(1);
            }
        uint64_t t1 = now_ns();
        sp_iom_run(iom);
        uint64_t t2 = now_ns();
        if (b >= 0) {
            spawn_ns += t1 - t0;
            total_ns += t2 - t0;
        }
    }
    sp_iom_free(iom);
    double n = (double)(batches * BATCH);
    return (struct spawn_cost){(double)spawn_ns / n, (double)total_ns / n};
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
        return 2;
    }
    double sp = 1e30, uc = 1e30, cycle = 1e30, cold = 1e30, spawn = 1e30, life = 1e30;
    /* Alternate the contenders so that drift in clock speed hits both alike. */
    for (int r = 0; r < RUNS; r++) {
        sp = best(sp, spindle_switch(iters));
        uc = best(uc, glibc_switch(iters));
        cycle = best(cycle, pool_cycle(iters / 4));
        cold = best(cold, cold_cycle(iters / 100));
        struct spawn_cost c = iom_spawn(iters / 20);
        spawn = best(spawn, c.spawn);
        life = best(life, c.lifetime);
    }
    printf("fiber switch (resume or yield)     %8.2f ns\n", sp);
    printf("glibc swapcontext switch           %8.2f ns\n", uc);
    printf("ratio spindle / swapcontext        %8.3f  (target <= 0.100)\n", sp / uc);
    printf("fiber from warm pool, run, release %8.2f ns\n", cycle);
    printf("fiber on a new stack, run, unmap   %8.2f ns\n", cold);
    printf("sp_iom_spawn call                  %8.2f ns\n", spawn);
    printf("sp_iom_spawn + run + retire        %8.2f ns\n", life);
    printf("(best of %d runs, %ld round trips per switch run)\n", RUNS, iters);
    return 0;
}
