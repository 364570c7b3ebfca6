/*
 * Fibers: the context switch keeps each side's registers, floating-point
 * control state and stack; fibers nest; the pool reuses, caps and cools its
 * stacks; guard pages stop an overflow.
 */
#include "config.h" /* first: it selects the system extensions (accept4) */

#include <fenv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "runtime_test.h"

#include "spindle/fiber.h"

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- resume, yield, finish ---------------------------------------------- */

struct basic {
    struct sp_fiber *self;
    int steps;
};

static void basic_fn(void *arg)
{
    struct basic *b = arg;
    for (int i = 0; i < 3; i++) {
        CHECK(sp_fiber_current() == b->self);
        CHECK(sp_fiber_data(b->self) == &b->steps);
        b->steps++;
        sp_fiber_yield();
    }
    b->steps = 100;
}

static void test_resume_yield_finish(void **state)
{
    (void)state;
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct basic b = {0};
    b.self = sp_fiber_new(pool, basic_fn, &b);
    assert_non_null(b.self);
    sp_fiber_set_data(b.self, &b.steps);
    assert_null(sp_fiber_current());

    for (int i = 1; i <= 3; i++) {
        sp_fiber_resume(b.self);
        assert_int_equal(b.steps, i);
        assert_false(sp_fiber_finished(b.self));
        assert_null(sp_fiber_current());
    }
    sp_fiber_resume(b.self);
    assert_int_equal(b.steps, 100);
    assert_true(sp_fiber_finished(b.self));
    sp_fiber_release(b.self);
    sp_fiber_release(NULL);
    sp_fiber_pool_free(pool);
    sp_fiber_pool_free(NULL);
}

/* ---- callee-saved state across switches ---------------------------------- */

/*
 * Sixteen values that stay live across every switch: the compiler keeps some
 * in callee-saved registers and spills the rest, and both must come back.
 */
#define LIVE_ROUNDS 1000

static volatile uint64_t live_seed = 0x9e3779b97f4a7c15ull;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

/* Runs LIVE_ROUNDS switches through sw() while sixteen locals stay live. */
static uint64_t juggle(uint64_t salt, void (*sw)(void *), void *arg)
{
    uint64_t a = mix(live_seed ^ salt), b = mix(a), c = mix(b), d = mix(c);
    uint64_t e = mix(d), f = mix(e), g = mix(f), h = mix(g);
    uint64_t i = mix(h), j = mix(i), k = mix(j), l = mix(k);
    uint64_t m = mix(l), n = mix(m), o = mix(n), p = mix(o);
    uint64_t acc = 0;
    for (int r = 0; r < LIVE_ROUNDS; r++) {
        sw(arg);
        acc += a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i ^ j ^ k ^ l ^ m ^ n ^ o ^ p;
        a += 1, b += 2, c += 3, d += 4, e += 5, f += 6, g += 7, h += 8;
        i += 9, j += 10, k += 11, l += 12, m += 13, n += 14, o += 15, p += 16;
    }
    return acc;
}

static void no_switch(void *arg)
{
    (void)arg;
    __asm__ volatile("" ::: "memory");
}

static void yield_switch(void *arg)
{
    (void)arg;
    sp_fiber_yield();
}

static void resume_switch(void *arg)
{
    sp_fiber_resume(arg);
}

struct juggle {
    uint64_t got;
};

static void juggle_fn(void *arg)
{
    struct juggle *jg = arg;
    jg->got = juggle(2, yield_switch, NULL);
}

static void test_live_values_across_switches(void **state)
{
    (void)state;
    uint64_t want_main = juggle(1, no_switch, NULL);
    uint64_t want_fiber = juggle(2, no_switch, NULL);

    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct juggle jg = {0};
    struct sp_fiber *f = sp_fiber_new(pool, juggle_fn, &jg);
    assert_non_null(f);
    /* Both sides switch LIVE_ROUNDS times; the fiber then needs one more resume to finish. */
    uint64_t got_main = juggle(1, resume_switch, f);
    sp_fiber_resume(f);
    assert_true(sp_fiber_finished(f));
    assert_true(got_main == want_main);
    assert_true(jg.got == want_fiber);
    sp_fiber_release(f);
    sp_fiber_pool_free(pool);
}

#if defined(__x86_64__)
/*
 * Calls c->fn(c->arg) with rbx and r12-r15 set to c->base + 0..4 and stores
 * what those registers hold when the call returns.  No compiler-generated
 * code runs between the loads and the checks, so nothing hides a register
 * the switch forgot.
 */
struct regs_call {
    void (*fn)(void *); /* 0 */
    void *arg;          /* 8 */
    uint64_t base;      /* 16 */
    uint64_t out[5];    /* 24 */
    uint64_t saved_rsp; /* 64 */
};

static void call_with_regs(struct regs_call *c)
{
    _Static_assert(offsetof(struct regs_call, saved_rsp) == 64, "asm offsets");
    __asm__ volatile("movq %%rsp, 64(%%rdi)\n\t"
                     "subq $128, %%rsp\n\t" /* leave the red zone alone */
                     "andq $-16, %%rsp\n\t"
                     "pushq %%rdi\n\t"
                     "pushq %%rdi\n\t"
                     "movq 16(%%rdi), %%rbx\n\t"
                     "leaq 1(%%rbx), %%r12\n\t"
                     "leaq 2(%%rbx), %%r13\n\t"
                     "leaq 3(%%rbx), %%r14\n\t"
                     "leaq 4(%%rbx), %%r15\n\t"
                     "movq 0(%%rdi), %%rax\n\t"
                     "movq 8(%%rdi), %%rdi\n\t"
                     "call *%%rax\n\t"
                     "popq %%rdi\n\t"
                     "popq %%rdi\n\t"
                     "movq %%rbx, 24(%%rdi)\n\t"
                     "movq %%r12, 32(%%rdi)\n\t"
                     "movq %%r13, 40(%%rdi)\n\t"
                     "movq %%r14, 48(%%rdi)\n\t"
                     "movq %%r15, 56(%%rdi)\n\t"
                     "movq 64(%%rdi), %%rsp\n\t"
                     : "+D"(c)
                     :
                     : "rax", "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r12", "r13",
                       "r14", "r15", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
                       "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                       "xmm15");
}

static int regs_match(const struct regs_call *c)
{
    for (int i = 0; i < 5; i++)
        if (c->out[i] != c->base + (uint64_t)i)
            return 0;
    return 1;
}

static void regs_fn(void *arg)
{
    (void)arg;
    for (uint64_t r = 0; r < 4; r++) {
        struct regs_call c = {.fn = yield_switch, .base = 0xf1be000000000000ull + (r << 8)};
        call_with_regs(&c);
        CHECK(regs_match(&c));
    }
}

static void test_callee_saved_registers(void **state)
{
    (void)state;
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct sp_fiber *f = sp_fiber_new(pool, regs_fn, NULL);
    assert_non_null(f);
    for (uint64_t r = 0; r < 5; r++) {
        struct regs_call c = {.fn = resume_switch, .arg = f, .base = 0xca11e40000000000ull + r};
        call_with_regs(&c);
        assert_true(regs_match(&c));
    }
    assert_true(sp_fiber_finished(f));
    sp_fiber_release(f);
    sp_fiber_pool_free(pool);
}
#else
static void test_callee_saved_registers(void **state)
{
    (void)state;
    SKIP("no register test for this CPU");
}
#endif

/* ---- floating point ------------------------------------------------------ */

/* Results that depend on the rounding mode; volatile keeps them at run time. */
static double third(void)
{
    volatile double one = 1.0, three = 3.0;
    return one / three;
}

static long double third_x87(void)
{
    volatile long double one = 1.0L, three = 3.0L;
    return one / three;
}

struct fp {
    int start_mode, mode_after[3];
    double up, up_after;
    long double up_x87, up_x87_after;
    double harmonic;
};

static void fp_fn(void *arg)
{
    struct fp *p = arg;
    p->start_mode = fegetround();
    fesetround(FE_UPWARD);
    p->up = third();
    p->up_x87 = third_x87();
    volatile double sum = 0;
    for (int k = 1; k <= 300; k++) {
        sum += 1.0 / k;
        if (k % 100 == 0) {
            sp_fiber_yield();
            p->mode_after[k / 100 - 1] = fegetround();
        }
    }
    p->harmonic = sum;
    p->up_after = third();
    p->up_x87_after = third_x87();
}

static void test_floating_point_state(void **state)
{
    (void)state;
    fesetround(FE_TONEAREST);
    volatile double ref = 0;
    fesetround(FE_UPWARD);
    for (int k = 1; k <= 300; k++)
        ref += 1.0 / k;
    double up = third();
    long double up_x87 = third_x87();
    fesetround(FE_DOWNWARD);
    double down = third();
    long double down_x87 = third_x87();
    fesetround(FE_TONEAREST);
    /* valgrind keeps the modes but computes everything to nearest: then only
     * the modes themselves can be compared. */
    int honoured = up != down && up_x87 != down_x87;
    if (!honoured)
        print_message("rounding modes are not honoured here: checking the modes only\n");

    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct fp p = {0};
    /* A fiber starts in the default environment, whatever its creator and its
     * resumer have set. */
    fesetround(FE_TOWARDZERO);
    struct sp_fiber *f = sp_fiber_new(pool, fp_fn, &p);
    assert_non_null(f);
    fesetround(FE_DOWNWARD);
    sp_fiber_resume(f);
    assert_int_equal(p.start_mode, FE_TONEAREST);
    /* The fiber switched to upward rounding; the resumer keeps its own. */
    assert_int_equal(fegetround(), FE_DOWNWARD);
    if (honoured) {
        assert_true(third() == down);
        assert_true(third_x87() == down_x87);
    }
    for (int i = 0; i < 3; i++) {
        fesetround(i == 1 ? FE_TOWARDZERO : FE_DOWNWARD);
        sp_fiber_resume(f);
        assert_int_equal(fegetround(), i == 1 ? FE_TOWARDZERO : FE_DOWNWARD);
        assert_int_equal(p.mode_after[i], FE_UPWARD);
    }
    fesetround(FE_TONEAREST);
    assert_true(sp_fiber_finished(f));
    if (honoured) {
        assert_true(p.up == up && p.up_after == up);
        assert_true(p.up_x87 == up_x87 && p.up_x87_after == up_x87);
        assert_true(p.harmonic == ref);
    }
    sp_fiber_release(f);
    sp_fiber_pool_free(pool);
}

/* ---- deep stacks ----------------------------------------------------------- */

#define FRAME_BYTES 512
#define DEPTH       80 /* 40 KiB of frames on a 64 KiB stack */

/* Fills a frame per level down to DEPTH, optionally yields at the bottom, then
 * checks every frame on the way back up.  Returns the count of bytes that changed. */
static __attribute__((noinline)) int recurse(int depth, int yield_at_bottom)
{
    volatile unsigned char frame[FRAME_BYTES];
    for (int i = 0; i < FRAME_BYTES; i++)
        frame[i] = (unsigned char)(depth * 31 + i);
    int bad = 0;
    if (depth + 1 < DEPTH)
        bad = recurse(depth + 1, yield_at_bottom);
    else if (yield_at_bottom)
        sp_fiber_yield(); /* the whole chain must survive a switch */
    for (int i = 0; i < FRAME_BYTES; i++)
        if (frame[i] != (unsigned char)(depth * 31 + i))
            bad++;
    return bad;
}

struct deep {
    int bad;
};

static void deep_fn(void *arg)
{
    struct deep *d = arg;
    d->bad = recurse(0, 1);
}

static void test_deep_recursion(void **state)
{
    (void)state;
    struct sp_fiber_pool_config cfg = {.stack_size = 64 * 1024};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    /* Twice: the second run reuses the stack the first one dirtied. */
    for (int run = 0; run < 2; run++) {
        struct deep d = {.bad = -1};
        struct sp_fiber *f = sp_fiber_new(pool, deep_fn, &d);
        assert_non_null(f);
        sp_fiber_resume(f);
        assert_false(sp_fiber_finished(f));
        /* Main-stack work between the switches must not disturb the fiber's frames. */
        assert_int_equal(recurse(DEPTH - 4, 0), 0);
        sp_fiber_resume(f);
        assert_true(sp_fiber_finished(f));
        assert_int_equal(d.bad, 0);
        sp_fiber_release(f);
    }
    sp_fiber_pool_free(pool);
}

/* ---- many fibers ----------------------------------------------------------- */

#define NFIBERS 1000
#define NSTEPS  10

struct rr {
    int id;
    int *log;
    int *pos;
};

static void rr_fn(void *arg)
{
    struct rr *r = arg;
    for (int step = 0; step < NSTEPS; step++) {
        int local = r->id * 7 + step; /* must come back intact after the yield */
        r->log[(*r->pos)++] = r->id;
        sp_fiber_yield();
        CHECK(local == r->id * 7 + step);
    }
}

static void test_many_fibers_round_robin(void **state)
{
    (void)state;
    struct sp_fiber_pool_config cfg = {.stack_size = 16 * 1024, .max_free = 100};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    static struct sp_fiber *fibers[NFIBERS];
    static struct rr rr[NFIBERS];
    int *log = calloc(NFIBERS * NSTEPS, sizeof(*log));
    assert_non_null(log);
    int pos = 0;

    for (int i = 0; i < NFIBERS; i++) {
        rr[i] = (struct rr){.id = i, .log = log, .pos = &pos};
        fibers[i] = sp_fiber_new(pool, rr_fn, &rr[i]);
        assert_non_null(fibers[i]);
    }
    struct sp_fiber_pool_stats st;
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, NFIBERS);
    assert_int_equal(st.created, NFIBERS);

    for (int round = 0; round <= NSTEPS; round++)
        for (int i = 0; i < NFIBERS; i++)
            sp_fiber_resume(fibers[i]);
    assert_int_equal(pos, NFIBERS * NSTEPS);
    for (int k = 0; k < NFIBERS * NSTEPS; k++)
        if (log[k] != k % NFIBERS)
            fail_msg("log[%d] = %d, want %d", k, log[k], k % NFIBERS);
    for (int i = 0; i < NFIBERS; i++) {
        assert_true(sp_fiber_finished(fibers[i]));
        sp_fiber_release(fibers[i]);
    }
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.free, 100);
    assert_int_equal(st.mapped, 100);
    free(log);
    sp_fiber_pool_free(pool);
}

/* ---- nested resume -------------------------------------------------------- */

struct nest {
    struct sp_fiber *outer, *inner;
    char log[32];
    int n;
};

static void inner_fn(void *arg)
{
    struct nest *n = arg;
    CHECK(sp_fiber_current() == n->inner);
    n->log[n->n++] = 'b';
    sp_fiber_yield(); /* back to the outer fiber, not to main */
    CHECK(sp_fiber_current() == n->inner);
    n->log[n->n++] = 'd';
}

static void outer_fn(void *arg)
{
    struct nest *n = arg;
    n->log[n->n++] = 'a';
    sp_fiber_resume(n->inner);
    CHECK(sp_fiber_current() == n->outer);
    n->log[n->n++] = 'c';
    sp_fiber_yield(); /* to main */
    CHECK(sp_fiber_current() == n->outer);
    sp_fiber_resume(n->inner);
    CHECK(sp_fiber_finished(n->inner));
    CHECK(sp_fiber_current() == n->outer);
    n->log[n->n++] = 'e';
}

static void test_nested_resume(void **state)
{
    (void)state;
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct nest n = {0};
    n.outer = sp_fiber_new(pool, outer_fn, &n);
    n.inner = sp_fiber_new(pool, inner_fn, &n);
    assert_non_null(n.outer);
    assert_non_null(n.inner);

    sp_fiber_resume(n.outer);
    assert_null(sp_fiber_current());
    assert_string_equal(n.log, "abc");
    assert_false(sp_fiber_finished(n.outer));
    sp_fiber_resume(n.outer);
    assert_null(sp_fiber_current());
    assert_string_equal(n.log, "abcde");
    assert_true(sp_fiber_finished(n.outer));
    sp_fiber_release(n.inner);
    sp_fiber_release(n.outer);
    sp_fiber_pool_free(pool);
}

/* ---- the pool ------------------------------------------------------------- */

/* Dirties the 8 KiB of stack below its frame and reports the lowest address
 * it touched.  (Local arrays would not do: ASan may move them off the stack.) */
static void touch_fn(void *arg)
{
    volatile char *lo = (char *)__builtin_frame_address(0) - 8192;
    for (size_t i = 0; i < 8192; i += 64)
        lo[i] = 0x5a;
    if (arg)
        *(uintptr_t *)arg = (uintptr_t)lo;
}

static void run_to_end(struct sp_fiber *f)
{
    sp_fiber_resume(f);
    assert_true(sp_fiber_finished(f));
}

static void test_pool_reuse(void **state)
{
    (void)state;
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_non_null(pool);
    struct sp_fiber_pool_stats st;

    struct sp_fiber *first = sp_fiber_new(pool, touch_fn, NULL);
    assert_non_null(first);
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 1);
    assert_int_equal(st.free, 0);
    assert_int_equal(st.created, 1);
    run_to_end(first);
    sp_fiber_release(first);
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.free, 1);
    assert_int_equal(st.mapped, 1);

    for (int i = 0; i < 100; i++) {
        struct sp_fiber *f = sp_fiber_new(pool, touch_fn, NULL);
        assert_ptr_equal(f, first);
        run_to_end(f);
        sp_fiber_release(f);
    }
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.reused, 100);
    assert_int_equal(st.free, 1);

    /* An abandoned fiber's stack is reused too, and the next fiber starts afresh. */
    struct sp_fiber *f = sp_fiber_new(pool, yield_switch, NULL);
    sp_fiber_resume(f);
    assert_false(sp_fiber_finished(f));
    sp_fiber_release(f);
    struct sp_fiber *g = sp_fiber_new(pool, touch_fn, NULL);
    assert_ptr_equal(g, f);
    assert_false(sp_fiber_finished(g));
    run_to_end(g);
    sp_fiber_release(g);
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.created, 1);
    sp_fiber_pool_free(pool);
}

static __attribute__((noinline)) void descend_and_yield(int n)
{
    volatile char frame[100]; /* sanitizer builds fence it with poisoned red zones */
    frame[0] = (char)n;
    if (n)
        descend_and_yield(n - 1);
    else
        sp_fiber_yield();
    frame[1] = frame[0];
}

static void abandoned_fn(void *arg)
{
    (void)arg;
    descend_and_yield(40);
}

/* The stack of a fiber abandoned mid-call leaves nothing behind once unmapped:
 * memory mapped there later is plain memory (sanitizer builds once kept the
 * dead frames' poison and reported bogus stack overflows in it). */
static void test_abandoned_stack_leaves_nothing_behind(void **state)
{
    (void)state;
    struct sp_fiber_pool_config cfg = {.max_free = 1};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    struct sp_fiber *keep = sp_fiber_new(pool, touch_fn, NULL);
    struct sp_fiber *f = sp_fiber_new(pool, abandoned_fn, NULL);
    assert_non_null(keep);
    assert_non_null(f);
    size_t size = sp_fiber_pool_stack_size(pool);
    uintptr_t top = (uintptr_t)f & ~(uintptr_t)(page_size() - 1);
    sp_fiber_resume(f);
    assert_false(sp_fiber_finished(f));
    sp_fiber_release(keep);
    sp_fiber_release(f); /* beyond max_free: unmapped */

    char *p = mmap((void *)(top - size), size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == (char *)(top - size)) {
        volatile char *v = p;
        unsigned sum = 0;
        for (size_t i = 0; i < size; i++) {
            v[i] = 1;
            sum += (unsigned)v[i];
        }
        assert_int_equal(sum, size);
    }
    if (p != MAP_FAILED)
        munmap(p, size);
    sp_fiber_pool_free(pool);
}

/* 1: the page at addr is mapped; 0: it is not. */
static int page_mapped(uintptr_t addr)
{
    void *p = (void *)(addr & ~(uintptr_t)(page_size() - 1));
    unsigned char vec;
    if (mincore(p, 1, &vec) == 0)
        return 1;
    return errno == ENOMEM ? 0 : -1;
}

/* 1: the page at addr is resident; 0: it is not. */
static int page_resident(uintptr_t addr)
{
    void *p = (void *)(addr & ~(uintptr_t)(page_size() - 1));
    unsigned char vec = 0;
    if (mincore(p, 1, &vec) != 0)
        return -1;
    return vec & 1;
}

static void test_pool_cap_and_cooling(void **state)
{
    (void)state;
    struct sp_fiber_pool_config cfg = {.max_free = 4, .warm_free = 2};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    struct sp_fiber *f[10];
    uintptr_t buf[10];

    for (int i = 0; i < 10; i++) {
        f[i] = sp_fiber_new(pool, touch_fn, &buf[i]);
        assert_non_null(f[i]);
        run_to_end(f[i]);
        assert_int_equal(page_resident(buf[i]), 1);
    }
    struct sp_fiber_pool_stats st;
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 10);
    assert_int_equal(st.mapped, 10);

    for (int i = 0; i < 10; i++)
        sp_fiber_release(f[i]);
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.free, 4);
    assert_int_equal(st.mapped, 4);
    assert_int_equal(st.created, 10);
    /* The first two stay warm, the next two keep their mapping but not their pages, the
     * other six are gone. */
    for (int i = 0; i < 10; i++) {
        int want_mapped = i < 4;
        assert_int_equal(page_mapped(buf[i]), want_mapped);
        if (want_mapped)
            assert_int_equal(page_resident(buf[i]), i < 2);
    }

    /* A cooled stack works like any other when handed out again. */
    for (int i = 0; i < 4; i++) {
        f[i] = sp_fiber_new(pool, touch_fn, &buf[i]);
        run_to_end(f[i]);
    }
    for (int i = 0; i < 4; i++)
        sp_fiber_release(f[i]);
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.created, 10);
    assert_int_equal(st.free, 4);
    sp_fiber_pool_free(pool);
}

/* warm_free = 0 means max_free: nothing is cooled below the cap. */
static void test_pool_warm_default(void **state)
{
    (void)state;
    struct sp_fiber_pool_config cfg = {.max_free = 300};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    static struct sp_fiber *f[300];
    static uintptr_t buf[300];
    for (int i = 0; i < 300; i++) {
        f[i] = sp_fiber_new(pool, touch_fn, &buf[i]);
        assert_non_null(f[i]);
        run_to_end(f[i]);
    }
    for (int i = 0; i < 300; i++)
        sp_fiber_release(f[i]);
    for (int i = 0; i < 300; i++)
        if (page_resident(buf[i]) != 1)
            fail_msg("stack %d was cooled below max_free", i);
    sp_fiber_pool_free(pool);
}

static void test_stack_size_rounding(void **state)
{
    (void)state;
    size_t page = page_size();
    struct {
        size_t ask, want;
    } cases[] = {
        {0, 64 * 1024},
        {1, 4 * page},
        {20000, (20000 + page - 1) / page * page},
        {64 * 1024, 64 * 1024},
        {256 * 1024 + 1, 256 * 1024 + page},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sp_fiber_pool_config cfg = {.stack_size = cases[i].ask};
        struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
        assert_non_null(pool);
        assert_int_equal(sp_fiber_pool_stack_size(pool), cases[i].want);
        sp_fiber_pool_free(pool);
    }
    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    assert_int_equal(sp_fiber_pool_stack_size(pool), 64 * 1024);
    sp_fiber_pool_free(pool);
}

static void test_new_fails_with_enomem(void **state)
{
    (void)state;
    /* No address space holds a 1 PiB stack. */
    struct sp_fiber_pool_config cfg = {.stack_size = (size_t)1 << 50};
    struct sp_fiber_pool *pool = sp_fiber_pool_new(&cfg);
    assert_non_null(pool);
    errno = 0;
    assert_null(sp_fiber_new(pool, touch_fn, NULL));
    assert_int_equal(errno, ENOMEM);
    struct sp_fiber_pool_stats st;
    sp_fiber_pool_stats(pool, &st);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.mapped, 0);
    sp_fiber_pool_free(pool);
}

/* ---- guard page ---------------------------------------------------------- */

static uintptr_t guard_lo, guard_hi;

/* 42: a protection fault (a mapped page we may not touch) right below the stack. */
static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
    (void)sig, (void)ctx;
    uintptr_t a = (uintptr_t)si->si_addr;
    _exit(si->si_code == SEGV_ACCERR && a >= guard_lo && a < guard_hi ? 42 : 43);
}

/* Recurses, touching every frame from end to end, until a frame lies below floor. */
static __attribute__((noinline)) int overflow(uintptr_t floor)
{
    volatile char frame[1024];
    frame[sizeof(frame) - 1] = 1;
    frame[0] = 1;
    if ((uintptr_t)frame < floor)
        return frame[0];
    return overflow(floor) + frame[0] + frame[sizeof(frame) - 1];
}

static void overflow_fn(void *arg)
{
    size_t stack_size = *(size_t *)arg;
    uintptr_t top = (uintptr_t)__builtin_frame_address(0);
    /* The guard page is the page just below the usable stack, whose top lies
     * within a page or two above this frame. */
    guard_lo = top - stack_size - 3 * page_size();
    guard_hi = top - stack_size + page_size();
    overflow(0);
}

/* Forks a child that overflows a fiber stack from a default pool; returns its wait status. */
static int overflow_in_child(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static char altstack[64 * 1024];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGSEGV, &sa, NULL) != 0 ||
            sigaction(SIGBUS, &sa, NULL) != 0)
            _exit(44);
        struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
        size_t size = sp_fiber_pool_stack_size(pool);
        struct sp_fiber *f = sp_fiber_new(pool, overflow_fn, &size);
        sp_fiber_resume(f);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* Every stack has its guard page, whatever the build: the fault hits the page below it. */
static void test_guard_page(void **state)
{
    (void)state;
    if (RUNNING_ON_VALGRIND) {
        SKIP("valgrind reports the overflow itself");
    }
    int status = overflow_in_child();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
}

struct overrun {
    uintptr_t floor;
};

static void overrun_fn(void *arg)
{
    struct overrun *o = arg;
    overflow(o->floor);
}

/*
 * A fiber that runs off the bottom of its stack dies of SIGSEGV, even when the
 * memory below the stack is mapped and writable (here a mapping the child places
 * there itself, as another stack or a heap arena could be): it never silently
 * writes over a neighbour and carries on.
 */
static void test_overflow_dies_of_sigsegv(void **state)
{
    (void)state;
    if (RUNNING_ON_VALGRIND) {
        SKIP("valgrind reports the overflow itself");
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The default action, not a sanitizer's report-and-exit handler. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        size_t page = page_size();
        struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
        size_t size = sp_fiber_pool_stack_size(pool);
        struct overrun o;
        struct sp_fiber *f = sp_fiber_new(pool, overrun_fn, &o);
        if (!f)
            _exit(45);
        /* struct sp_fiber sits in the top page of the fiber's mapping, the usable
         * stack (at least size bytes) right below that page. */
        uintptr_t end = ((uintptr_t)f + page) & ~(uintptr_t)(page - 1);
        uintptr_t stack_lo = end - page - size;
        /* Two writable pages right below the stack, unless something (a guard
         * page) is there already. */
        mmap((void *)(stack_lo - 2 * page), 2 * page, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        o.floor = stack_lo - page;
        sp_fiber_resume(f);
        _exit(0); /* the overflow went unnoticed */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status))
        print_message("# child exited with %d\n", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        RT_TEST(test_resume_yield_finish),
        RT_TEST(test_live_values_across_switches),
        RT_TEST(test_callee_saved_registers),
        RT_TEST(test_floating_point_state),
        RT_TEST(test_deep_recursion),
        RT_TEST(test_many_fibers_round_robin),
        RT_TEST(test_nested_resume),
        RT_TEST(test_pool_reuse),
        RT_TEST(test_abandoned_stack_leaves_nothing_behind),
        RT_TEST(test_pool_cap_and_cooling),
        RT_TEST(test_pool_warm_default),
        RT_TEST(test_stack_size_rounding),
        RT_TEST(test_new_fails_with_enomem),
        RT_TEST(test_guard_page),
        RT_TEST(test_overflow_dies_of_sigsegv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
