/*
 * The session ticket keys the master sends (SP_MSG_TICKET_KEYS), one set
 * per tls_session_ticket_rotation value, for the services' ticket
 * callbacks (docs/tls.md).
 *
 * The master makes every key, so that every worker of every generation
 * seals and opens tickets with the same ones, and sends each key a whole
 * period before it is used: which key seals is chosen here by the wall
 * clock, not by when a message arrived, so a worker that gets a rotation a
 * little later than another still knows every key the other seals with.
 * A key is accepted in its period and the next (then the ticket is
 * renewed), and a key of the next period is accepted too, for a worker
 * whose clock read crossed the boundary a moment before ours.
 *
 * The channel fiber writes the table while connection fibers on any
 * scheduler thread read it: a mutex guards it, held for a copy only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "worker.h"

#define TICKET_SETS 8 /* rotation values one worker holds keys for */

static struct sp_msg_tickets sets[TICKET_SETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t period_now(unsigned rotation_s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec / rotation_s;
}

/* True when no key of s opens a ticket any more: the master stopped
 * rotating it (no configuration names its value now), so its place may
 * hold another value's. */
static bool expired(const struct sp_msg_tickets *s)
{
    uint64_t now = period_now(s->rotation_s);
    for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++)
        if (s->keys[i].period != 0 && s->keys[i].period + 1 >= now)
            return false;
    return true;
}

void worker_tickets_set(const struct sp_msg_tickets *k)
{
    struct sp_msg_tickets *into = NULL;

    pthread_mutex_lock(&lock);
    for (int i = 0; i < TICKET_SETS && !into; i++)
        if (sets[i].rotation_s == k->rotation_s)
            into = &sets[i];
    for (int i = 0; i < TICKET_SETS && !into; i++)
        if (sets[i].rotation_s == 0 || expired(&sets[i]))
            into = &sets[i];
    if (into) {
        explicit_bzero(into, sizeof(*into));
        *into = *k;
    }
    pthread_mutex_unlock(&lock);
}

void worker_tickets_clear(void)
{
    pthread_mutex_lock(&lock);
    explicit_bzero(sets, sizeof(sets));
    pthread_mutex_unlock(&lock);
}

static void copy_key(struct worker_ticket_key *k, const struct sp_msg_ticket_key *from)
{
    memcpy(k->name, from->name, sizeof(k->name));
    memcpy(k->aes, from->aes, sizeof(k->aes));
    memcpy(k->hmac, from->hmac, sizeof(k->hmac));
}

/* With name NULL, the key of the current period; else the key so named, of
 * the previous, current or next period.  Returns 1 for the current one, 2
 * for another, -ENOENT. */
static int find(unsigned rotation_s, const unsigned char *name, struct worker_ticket_key *k)
{
    int rc = -ENOENT;

    if (rotation_s == 0)
        return -ENOENT;
    uint64_t now = period_now(rotation_s);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < TICKET_SETS && rc < 0; i++) {
        if (sets[i].rotation_s != rotation_s)
            continue;
        for (int j = 0; j < SP_MSG_TICKET_KEYS_MAX && rc < 0; j++) {
            const struct sp_msg_ticket_key *key = &sets[i].keys[j];
            if (key->period == 0 || key->period + 1 < now || key->period > now + 1)
                continue;
            if (name ? memcmp(name, key->name, sizeof(key->name)) != 0 : key->period != now)
                continue;
            copy_key(k, key);
            rc = key->period == now ? 1 : 2;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int worker_ticket_key_current(unsigned rotation_s, struct worker_ticket_key *k)
{
    return find(rotation_s, NULL, k) == 1 ? 0 : -ENOENT;
}

int worker_ticket_key_find(unsigned rotation_s, const unsigned char name[16],
                           struct worker_ticket_key *k)
{
    return find(rotation_s, name, k);
}
