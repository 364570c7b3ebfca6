/* The worker's session ticket keys (worker/tickets.c): which key seals and
 * which open, by the wall clock's period, whatever order the master's sets
 * arrived in. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "worker.h"

#define ROT 1000000 /* seconds: no boundary falls inside a test */

static uint64_t period_now(unsigned rot)
{
    return (uint64_t)time(NULL) / rot;
}

/* A set of rot with keys for periods p[0..3) (0: none), key i's bytes all
 * tag + i. */
static void set(unsigned rot, const uint64_t p[3], int tag)
{
    struct sp_msg_tickets k;
    memset(&k, 0, sizeof(k));
    k.rotation_s = rot;
    for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
        k.keys[i].period = p[i];
        memset(k.keys[i].name, tag + i, sizeof(k.keys[i].name));
        memset(k.keys[i].aes, tag + i, sizeof(k.keys[i].aes));
        memset(k.keys[i].hmac, tag + i, sizeof(k.keys[i].hmac));
    }
    worker_tickets_set(&k);
}

static int find(unsigned rot, int byte, struct worker_ticket_key *k)
{
    unsigned char name[16];
    memset(name, byte, sizeof(name));
    return worker_ticket_key_find(rot, name, k);
}

static void test_seal_with_current_open_neighbours(void **state)
{
    struct worker_ticket_key k;
    uint64_t n = period_now(ROT);
    (void)state;
    worker_tickets_clear();
    assert_int_equal(worker_ticket_key_current(ROT, &k), -ENOENT);
    set(ROT, (uint64_t[]){n - 1, n, n + 1}, 0x10);
    assert_int_equal(worker_ticket_key_current(ROT, &k), 0);
    assert_int_equal(k.name[0], 0x11);
    assert_int_equal(k.aes[31], 0x11);
    assert_int_equal(find(ROT, 0x11, &k), 1);
    assert_int_equal(find(ROT, 0x10, &k), 2); /* the previous period: renew */
    assert_int_equal(k.hmac[0], 0x10);
    assert_int_equal(find(ROT, 0x12, &k), 2); /* a worker that switched a moment earlier */
    assert_int_equal(find(ROT, 0x13, &k), -ENOENT);
    /* Another rotation value is another set. */
    assert_int_equal(worker_ticket_key_current(ROT + 1, &k), -ENOENT);
    assert_int_equal(find(ROT + 1, 0x11, &k), -ENOENT);
}

static void test_old_keys_refused_by_the_clock(void **state)
{
    struct worker_ticket_key k;
    uint64_t n = period_now(ROT);
    (void)state;
    worker_tickets_clear();
    /* A rotation message that is late: the worker still holds a key two
     * periods old and none for now.  It seals nothing and opens only what
     * the clock allows. */
    set(ROT, (uint64_t[]){n - 2, n - 1, 0}, 0x20);
    assert_int_equal(worker_ticket_key_current(ROT, &k), -ENOENT);
    assert_int_equal(find(ROT, 0x20, &k), -ENOENT);
    assert_int_equal(find(ROT, 0x21, &k), 2);
    /* The next set replaces the whole of it. */
    set(ROT, (uint64_t[]){n, n + 1, 0}, 0x30);
    assert_int_equal(find(ROT, 0x21, &k), -ENOENT);
    assert_int_equal(worker_ticket_key_current(ROT, &k), 0);
    assert_int_equal(k.name[0], 0x30);
    worker_tickets_clear();
    assert_int_equal(find(ROT, 0x30, &k), -ENOENT);
}

static void test_eight_sets(void **state)
{
    struct worker_ticket_key k;
    (void)state;
    worker_tickets_clear();
    for (unsigned r = 1; r <= 9; r++)
        set(ROT * r, (uint64_t[]){period_now(ROT * r), 0, 0}, (int)r * 16);
    for (unsigned r = 1; r <= 8; r++)
        assert_int_equal(worker_ticket_key_current(ROT * r, &k), 0);
    assert_int_equal(worker_ticket_key_current(ROT * 9, &k), -ENOENT);
    /* A set whose keys all expired gives its place to a new value. */
    set(ROT * 3, (uint64_t[]){period_now(ROT * 3) - 2, 0, 0}, 0x70);
    set(ROT * 9, (uint64_t[]){period_now(ROT * 9), 0, 0}, 0x90);
    assert_int_equal(worker_ticket_key_current(ROT * 9, &k), 0);
    assert_int_equal(k.name[0], 0x90);
    assert_int_equal(worker_ticket_key_current(ROT * 1, &k), 0);
    worker_tickets_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_with_current_open_neighbours),
        cmocka_unit_test(test_old_keys_refused_by_the_clock),
        cmocka_unit_test(test_eight_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
