/*
 * Fibers and the fiber pool.
 *
 * Each fiber lives in one mmap'd region: a PROT_NONE guard page at the
 * bottom, the stack above it, and struct sp_fiber at the very top, so a fiber
 * costs one mapping and no malloc.  The guard turns a stack overflow into
 * SIGSEGV instead of a silent write over whatever lies below; it is set once,
 * when the region is mapped, and a reused stack keeps it, so it costs nothing
 * per fiber or per switch.  It does split the region into two VMAs (the
 * kernel's vm.max_map_count bounds how many stacks can exist at once).  Only
 * touched stack pages cost RSS (MAP_NORESERVE).  Finished fibers go back to a LIFO free list with
 * their stacks; beyond warm_free the stack pages are returned to the kernel with MADV_DONTNEED,
 * beyond max_free the whole region is unmapped.
 *
 * The switch itself is sp__fiber_switch (fiber_<arch>.S): callee-saved
 * registers only, no signal mask, so no system call.  The ucontext fallback
 * (--with-fiber=ucontext or an unknown CPU) uses swapcontext.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef SP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#define DEFAULT_STACK_SIZE (64 * 1024)
#define DEFAULT_MAX_FREE   256

struct sp_fiber_pool {
    size_t stack_size; /* usable bytes, page multiple */
    size_t page;
    unsigned max_free, warm_free;
    struct sp_fiber *free_list;
    unsigned nfree, live;
    unsigned long long created, reused;
};

#ifndef SP_FIBER_UCONTEXT
void sp__fiber_switch(void **save_sp, void *load_sp);
void sp__fiber_trampoline(void);
#endif

/*
 * The fiber running on this thread.  Only sp_fiber_resume() writes it, and it
 * always returns on the thread that called it; a fiber itself may resume on
 * another thread (multi-thread IOManager), which is why nothing below reads
 * this after a switch except through a fresh access.
 */
static __thread struct sp_fiber *tls_current;

static void fiber_main(struct sp_fiber *f) __attribute__((noreturn));
#ifdef SP_FIBER_UCONTEXT
static void fiber_main_uc(unsigned hi, unsigned lo);
#endif

/* ---- sanitizer and valgrind hooks ------------------------------------ */

#ifdef SP_ASAN
static inline void asan_start(void **fake_save, const void *bottom, size_t size)
{
    __sanitizer_start_switch_fiber(fake_save, bottom, size);
}

static inline void asan_finish(void *fake, const void **bottom_old, size_t *size_old)
{
    __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
}
#endif

/* ---- the switch --------------------------------------------------------- */

/* Lays out a fresh initial frame so that the next switch into f starts fiber_main(f). */
static void fiber_prepare(struct sp_fiber *f)
{
#ifdef SP_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->stack_size);
    f->fake_stack = NULL;
#endif
    f->finished = 0;
#ifdef SP_FIBER_UCONTEXT
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))fiber_main_uc, 2, (unsigned)(p >> 32), (unsigned)p);
#if defined(__x86_64__)
    /* getcontext() copied the creator's floating-point control state; start
     * from the default one instead, as the assembly switch does. */
    f->uc.uc_mcontext.fpregs->cwd = 0x037F;
    f->uc.uc_mcontext.fpregs->swd = 0;
    f->uc.uc_mcontext.fpregs->mxcsr = 0x1F80;
#endif
#else
    uintptr_t top = ((uintptr_t)f->stack_lo + f->stack_size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
#if defined(__x86_64__)
    /* Popped by sp__fiber_switch: control words, r15, r14, r13, r12, rbx, rbp, return address.
     * A fiber starts with the default floating-point control state, whoever created it. */
    *--sp = 0; /* alignment padding: the trampoline realigns anyway */
    *--sp = (uint64_t)(uintptr_t)sp__fiber_trampoline;
    *--sp = 0;                               /* rbp */
    *--sp = 0;                               /* rbx */
    *--sp = (uint64_t)(uintptr_t)f;          /* r12: the fiber */
    *--sp = (uint64_t)(uintptr_t)fiber_main; /* r13: entry */
    *--sp = 0;                               /* r14 */
    *--sp = 0;                               /* r15 */
    *--sp = 0x1F80ull | (0x037Full << 32);   /* MXCSR default, x87 control word default */
#elif defined(__aarch64__)
    sp -= 22; /* 176-byte frame, see fiber_aarch64.S */
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)f;                     /* x19 */
    sp[1] = (uint64_t)(uintptr_t)fiber_main;            /* x20 */
    sp[11] = (uint64_t)(uintptr_t)sp__fiber_trampoline; /* x30 */
    /* FPCR: the default state (round to nearest, no traps), as on x86-64. */
    sp[20] = 0;
#else
#error "no assembly context switch for this CPU; configure --with-fiber=ucontext"
#endif
    f->sp = sp;
#endif
}

#ifdef SP_FIBER_UCONTEXT
static void fiber_main_uc(unsigned hi, unsigned lo)
{
    fiber_main((struct sp_fiber *)(((uintptr_t)hi << 32) | lo));
}
#define SWITCH_TO_FIBER(f)   swapcontext(&(f)->resumer_uc, &(f)->uc)
#define SWITCH_TO_RESUMER(f) swapcontext(&(f)->uc, &(f)->resumer_uc)
#else
#define SWITCH_TO_FIBER(f)   sp__fiber_switch(&(f)->resumer_sp, (f)->sp)
#define SWITCH_TO_RESUMER(f) sp__fiber_switch(&(f)->sp, (f)->resumer_sp)
#endif

static void fiber_main(struct sp_fiber *f)
{
#ifdef SP_ASAN
    asan_finish(NULL, &f->resumer_stack, &f->resumer_stack_size);
#endif
    f->fn(f->arg);
    f->finished = 1;
    /* This run of the stack is over for good: no fake stack to keep. */
#ifdef SP_ASAN
    asan_start(NULL, f->resumer_stack, f->resumer_stack_size);
#endif
    SWITCH_TO_RESUMER(f);
    abort(); /* a finished fiber is never resumed */
}

void sp_fiber_resume(struct sp_fiber *f)
{
    struct sp_fiber *prev = tls_current;
#ifdef SP_ASAN
    void *fake = NULL;
#endif

    tls_current = f;
#ifdef SP_ASAN
    asan_start(&fake, f->stack_lo, f->stack_size);
#endif
    SWITCH_TO_FIBER(f);
#ifdef SP_ASAN
    asan_finish(fake, NULL, NULL);
#endif
    /* Back on the thread that called us (see tls_current). */
    tls_current = prev;
}

void sp_fiber_yield(void)
{
    struct sp_fiber *f = tls_current;

#ifdef SP_ASAN
    asan_start(&f->fake_stack, f->resumer_stack, f->resumer_stack_size);
#endif
    SWITCH_TO_RESUMER(f);
#ifdef SP_ASAN
    /* We may be resumed from another thread: learn its stack afresh. */
    asan_finish(f->fake_stack, &f->resumer_stack, &f->resumer_stack_size);
#endif
}

struct sp_fiber *sp_fiber_current(void)
{
    return tls_current;
}

bool sp_fiber_finished(const struct sp_fiber *f)
{
    return f->finished;
}

void sp_fiber_set_data(struct sp_fiber *f, void *data)
{
    f->data = data;
}

void *sp_fiber_data(const struct sp_fiber *f)
{
    return f->data;
}

/* ---- the pool ------------------------------------------------------------ */

struct sp_fiber_pool *sp_fiber_pool_new(const struct sp_fiber_pool_config *cfg)
{
    struct sp_fiber_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = cfg && cfg->stack_size ? cfg->stack_size : DEFAULT_STACK_SIZE;
    if (size < 4 * pool->page)
        size = 4 * pool->page;
    pool->stack_size = (size + pool->page - 1) & ~(pool->page - 1);
    pool->max_free = cfg && cfg->max_free ? cfg->max_free : DEFAULT_MAX_FREE;
    pool->warm_free = cfg && cfg->warm_free ? cfg->warm_free : pool->max_free;
    if (pool->warm_free > pool->max_free)
        pool->warm_free = pool->max_free;
    return pool;
}

static void fiber_unmap(struct sp_fiber *f)
{
#ifdef SP_ASAN
    /* A fiber released mid-call leaves its frames' red zones poisoned, and the
     * shadow outlives the mapping: whatever is mapped here next would trip on it. */
    ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->stack_size);
#endif
#ifdef HAVE_VALGRIND_VALGRIND_H
    VALGRIND_STACK_DEREGISTER(f->valgrind_id);
#endif
    munmap(f->map, f->map_len);
}

void sp_fiber_pool_free(struct sp_fiber_pool *pool)
{
    if (!pool)
        return;
    while (pool->free_list) {
        struct sp_fiber *f = pool->free_list;
        pool->free_list = f->next_free;
        fiber_unmap(f);
    }
    free(pool);
}

void sp_fiber_pool_stats(const struct sp_fiber_pool *pool, struct sp_fiber_pool_stats *out)
{
    out->live = pool->live;
    out->free = pool->nfree;
    out->mapped = pool->live + pool->nfree;
    out->created = pool->created;
    out->reused = pool->reused;
}

size_t sp_fiber_pool_stack_size(const struct sp_fiber_pool *pool)
{
    return pool->stack_size;
}

/* Maps guard page + stack + a header page area holding struct sp_fiber. */
static struct sp_fiber *fiber_map(struct sp_fiber_pool *pool)
{
    size_t header = (sizeof(struct sp_fiber) + 63) & ~(size_t)63;
    size_t guard = pool->page;
    size_t len = guard + pool->stack_size + ((header + pool->page - 1) & ~(pool->page - 1));
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, guard, PROT_NONE) != 0) {
        int err = errno;
        munmap(map, len);
        errno = err;
        return NULL;
    }
    /* The header sits at the very top; the stack grows down from just below it. */
    struct sp_fiber *f = (struct sp_fiber *)(map + len - header);
    memset(f, 0, sizeof(*f));
    f->map = map;
    f->map_len = len;
    f->stack_lo = map + guard;
    f->stack_size = (size_t)((char *)f - f->stack_lo);
    f->pool = pool;
#ifdef HAVE_VALGRIND_VALGRIND_H
    f->valgrind_id = VALGRIND_STACK_REGISTER(f->stack_lo, f->stack_lo + f->stack_size);
#endif
    pool->created++;
    return f;
}

struct sp_fiber *sp_fiber_new(struct sp_fiber_pool *pool, sp_fiber_fn *fn, void *arg)
{
    struct sp_fiber *f = pool->free_list;

    if (f) {
        pool->free_list = f->next_free;
        pool->nfree--;
        pool->reused++;
    } else {
        f = fiber_map(pool);
        if (!f) {
            errno = ENOMEM;
            return NULL;
        }
    }
    f->next_free = NULL;
    f->fn = fn;
    f->arg = arg;
    f->data = NULL;
    fiber_prepare(f);
    pool->live++;
    return f;
}

void sp_fiber_release(struct sp_fiber *f)
{
    if (!f)
        return;
    struct sp_fiber_pool *pool = f->pool;
    pool->live--;
    if (pool->nfree >= pool->max_free) {
        fiber_unmap(f);
        return;
    }
    if (pool->nfree >= pool->warm_free) {
        /* Keep the mapping, give the touched pages back; the top page holds f itself. */
        size_t cold = ((uintptr_t)f - (uintptr_t)f->stack_lo) & ~(pool->page - 1);
        madvise(f->stack_lo, cold, MADV_DONTNEED);
    }
    f->next_free = pool->free_list;
    pool->free_list = f;
    pool->nfree++;
}
