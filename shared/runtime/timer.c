/*
 * Timers: a binary min-heap of pointers to nodes embedded in their owners.
 * Each node remembers its heap position, so cancel is O(log n) with no search.
 * The array grows by doubling and never shrinks: no allocation per timer once
 * the heap has reached its working size.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

void sp_timer_heap_init(struct sp_timer_heap *h)
{
    h->nodes = NULL;
    h->len = h->cap = 0;
    h->next_seq = 0;
}

void sp_timer_heap_close(struct sp_timer_heap *h)
{
    for (uint32_t i = 0; i < h->len; i++)
        h->nodes[i]->index = 0;
    free(h->nodes);
    sp_timer_heap_init(h);
}

void sp_timer_init(struct sp_timer *t, sp_timer_fn *cb)
{
    t->deadline = 0;
    t->seq = 0;
    t->cb = cb;
    t->index = 0;
}

static inline int before(const struct sp_timer *a, const struct sp_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static inline void place(struct sp_timer_heap *h, uint32_t i, struct sp_timer *t)
{
    h->nodes[i] = t;
    t->index = i + 1;
}

static void sift_up(struct sp_timer_heap *h, uint32_t i)
{
    struct sp_timer *t = h->nodes[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(t, h->nodes[parent]))
            break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct sp_timer_heap *h, uint32_t i)
{
    struct sp_timer *t = h->nodes[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && before(h->nodes[child + 1], h->nodes[child]))
            child++;
        if (!before(h->nodes[child], t))
            break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, t);
}

/* Removes the node at position i and restores the heap order around the hole. */
static void remove_at(struct sp_timer_heap *h, uint32_t i)
{
    struct sp_timer *t = h->nodes[i];
    struct sp_timer *last = h->nodes[--h->len];
    t->index = 0;
    if (i == h->len)
        return;
    place(h, i, last);
    if (i > 0 && before(last, h->nodes[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

int sp_timer_add(struct sp_timer_heap *h, struct sp_timer *t, uint64_t deadline)
{
    if (t->index)
        remove_at(h, t->index - 1);
    if (h->len == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        struct sp_timer **nodes = realloc(h->nodes, cap * sizeof(*nodes));
        if (!nodes)
            return -ENOMEM;
        h->nodes = nodes;
        h->cap = cap;
    }
    t->deadline = deadline;
    t->seq = h->next_seq++;
    h->nodes[h->len] = t;
    sift_up(h, h->len++);
    return 0;
}

void sp_timer_cancel(struct sp_timer_heap *h, struct sp_timer *t)
{
    if (t->index)
        remove_at(h, t->index - 1);
}

uint64_t sp_timer_next(const struct sp_timer_heap *h)
{
    return h->len ? h->nodes[0]->deadline : UINT64_MAX;
}

int sp_timer_timeout_ms(const struct sp_timer_heap *h, uint64_t now)
{
    if (!h->len)
        return -1;
    uint64_t d = h->nodes[0]->deadline;
    if (d <= now)
        return 0;
    uint64_t ms = (d - now + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

unsigned sp_timer_run(struct sp_timer_heap *h, uint64_t now)
{
    /* Timers armed by the callbacks themselves wait for the next run, so a
     * callback that re-arms for "now" cannot keep this loop going forever.
     * One of them may reach the head while older timers are still due: it is
     * moved to now + 1, behind them, instead of ending the run early. */
    uint64_t limit = h->next_seq;
    unsigned n = 0;
    while (h->len && h->nodes[0]->deadline <= now) {
        struct sp_timer *t = h->nodes[0];
        if (t->seq >= limit) {
            if (now == UINT64_MAX)
                break;
            t->deadline = now + 1;
            sift_down(h, 0);
            continue;
        }
        remove_at(h, 0);
        t->cb(t);
        n++;
    }
    return n;
}
