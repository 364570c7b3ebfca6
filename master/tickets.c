/*
 * TLS session ticket keys: the master makes them, keeps them and sends them
 * to every worker (SP_MSG_TICKET_KEYS), so that a ticket sealed by any
 * worker opens on any other, of any generation (docs/tls.md).
 *
 * One set of keys per period length (tls_session_ticket_rotation) that a
 * live generation's configuration names: sections with the same length
 * share it.  A set holds the keys of the previous, current and next
 * periods (period = seconds since the epoch / length).  Each key is made
 * when the period before it begins and sent to every worker then, a whole
 * period before any worker seals with it; the workers pick the key that
 * seals by the wall clock (worker/tickets.c), so every worker switches at
 * the same moment, whenever the message reached it.  A worker gets every
 * set before it is forked: the messages wait at the head of its channel.
 *
 * A binary upgrade hands the sets to the new master in a memfd, named by
 * SPINDLE_TICKET_KEYS, so sessions resume across it too.  Keys are wiped
 * when dropped.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "master.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/waitq.h"

#define TICKET_SETS  8 /* distinct rotation values (the workers hold as many) */
#define TICKET_PKT   (SP_MSG_HEADER + 4 + SP_MSG_TICKET_KEYS_MAX * 88)
#define TICKET_ENV   "SPINDLE_TICKET_KEYS"
#define TICKET_SLACK 10 /* ms after a period boundary before the fiber rotates */

static struct sp_msg_tickets sets[TICKET_SETS];
static bool full_warned;
/* The rotation fiber sleeps here until the next period boundary of any set;
 * a set that a reload adds wakes it. */
static struct sp_waitq rotation_wake = SP_WAITQ_INIT;

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Fills k with fresh random bytes for period.  Returns 0 or -errno. */
static int make_key(struct sp_msg_ticket_key *k, uint64_t period)
{
    unsigned char *parts[3] = {k->name, k->aes, k->hmac};
    size_t lens[3] = {sizeof(k->name), sizeof(k->aes), sizeof(k->hmac)};
    for (int i = 0; i < 3; i++) {
        /* Up to 256 bytes come whole once the pool is ready; EINTR only
         * before that. */
        ssize_t n;
        while ((n = getrandom(parts[i], lens[i], 0)) < 0 && errno == EINTR)
            ;
        if (n != (ssize_t)lens[i]) {
            int e = n < 0 ? errno : EIO;
            explicit_bzero(k, sizeof(*k));
            return -e;
        }
    }
    k->period = period;
    return 0;
}

/* True when some live generation's configuration seals tickets with
 * periods of rotation_s. */
static bool wanted(const struct master *m, unsigned rotation_s)
{
    for (const struct master_gen *g = m->gens; g; g = g->next)
        for (unsigned i = 0; i < g->cfg->nservices; i++) {
            const struct sp_service_conf *s = &g->cfg->services[i];
            if (s->def->ticket_rotation && s->def->ticket_rotation(s->conf) == rotation_s)
                return true;
        }
    return false;
}

static struct sp_msg_tickets *find_set(unsigned rotation_s)
{
    for (int i = 0; i < TICKET_SETS; i++)
        if (sets[i].rotation_s == rotation_s)
            return &sets[i];
    return NULL;
}

/* Brings set s to the previous, current and next periods' keys: drops the
 * older ones, makes the missing ones.  Returns true when it changed. */
static bool rotate(struct sp_msg_tickets *s, uint64_t now)
{
    uint64_t n = now / s->rotation_s;
    bool changed = false;

    for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
        uint64_t p = s->keys[i].period;
        if (p != 0 && (p + 1 < n || p > n + 1)) {
            explicit_bzero(&s->keys[i], sizeof(s->keys[i]));
            changed = true;
        }
    }
    for (uint64_t want = n; want <= n + 1; want++) {
        int have = -1, free_at = -1;
        for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
            if (s->keys[i].period == want)
                have = i;
            else if (s->keys[i].period == 0 && free_at < 0)
                free_at = i;
        }
        if (have >= 0 || free_at < 0)
            continue;
        int rc = make_key(&s->keys[free_at], want);
        if (rc < 0) {
            sp_log_error("getrandom() for a session ticket key failed: %s; no new key",
                         strerror(-rc));
            continue;
        }
        changed = true;
    }
    return changed;
}

static void send_set(struct master_worker *w, const struct sp_msg_tickets *s)
{
    struct sp_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = SP_MSG_TICKET_KEYS;
    msg.tickets = *s;
    int rc = w->channel_fd >= 0 ? sp_msg_send(w->channel_fd, &msg) : -EPIPE;
    explicit_bzero(&msg, sizeof(msg));
    if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
        sp_log_warn("send(TICKET_KEYS) to worker %u (pid %d) failed: %s", w->index, (int)w->pid,
                    strerror(-rc));
}

void master_tickets_refresh(struct master *m)
{
    uint64_t now = now_s();

    /* Sets no live configuration names any more: the workers that used them
     * are gone. */
    for (int i = 0; i < TICKET_SETS; i++)
        if (sets[i].rotation_s && !wanted(m, sets[i].rotation_s))
            explicit_bzero(&sets[i], sizeof(sets[i]));
    for (const struct master_gen *g = m->gens; g; g = g->next)
        for (unsigned i = 0; i < g->cfg->nservices; i++) {
            const struct sp_service_conf *sc = &g->cfg->services[i];
            unsigned r = sc->def->ticket_rotation ? sc->def->ticket_rotation(sc->conf) : 0;
            if (r == 0 || find_set(r))
                continue;
            struct sp_msg_tickets *s = find_set(0);
            if (!s) {
                if (!full_warned)
                    sp_log_error("more than %d tls_session_ticket_rotation values: sections "
                                 "with period %us issue no session tickets",
                                 TICKET_SETS, r);
                full_warned = true;
                continue;
            }
            s->rotation_s = r;
            sp_waitq_signal(&rotation_wake);
        }
    for (int i = 0; i < TICKET_SETS; i++) {
        if (sets[i].rotation_s == 0 || !rotate(&sets[i], now))
            continue;
        for (struct master_worker *w = m->workers; w; w = w->next)
            if (!w->reaped && !w->channel_done && w->pid > 0)
                send_set(w, &sets[i]);
    }
}

void master_tickets_send(struct master_worker *w)
{
    for (int i = 0; i < TICKET_SETS; i++)
        if (sets[i].rotation_s)
            send_set(w, &sets[i]);
}

void master_tickets_fiber(void *arg)
{
    struct master *m = arg;

    while (!m->done) {
        master_tickets_refresh(m);
        /* Wake just after the next boundary of any set (with none, when
         * a reload adds one). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ms_now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        int64_t wait = -1;
        for (int i = 0; i < TICKET_SETS; i++) {
            uint64_t len = (uint64_t)sets[i].rotation_s * 1000;
            if (len == 0)
                continue;
            int64_t left = (int64_t)(len - ms_now % len) + TICKET_SLACK;
            if (wait < 0 || left < wait)
                wait = left;
        }
        sp_waitq_wait(&rotation_wake, wait);
    }
}

/* ---- binary upgrade ----------------------------------------------------- */

int master_tickets_export(void)
{
    unsigned char buf[TICKET_SETS * TICKET_PKT];
    size_t used = 0;
    struct sp_msg msg;

    for (int i = 0; i < TICKET_SETS; i++) {
        if (!sets[i].rotation_s)
            continue;
        memset(&msg, 0, sizeof(msg));
        msg.type = SP_MSG_TICKET_KEYS;
        msg.tickets = sets[i];
        ssize_t n = sp_msg_encode(&msg, buf + used, sizeof(buf) - used);
        if (n == TICKET_PKT)
            used += (size_t)n;
    }
    explicit_bzero(&msg, sizeof(msg));
    int fd = used ? memfd_create("spindle-ticket-keys", MFD_CLOEXEC) : -ENOENT;
    if (fd >= 0 && write(fd, buf, used) != (ssize_t)used) {
        close(fd);
        fd = -EIO;
    }
    explicit_bzero(buf, sizeof(buf));
    return fd;
}

void master_tickets_import(void)
{
    const char *env = getenv(TICKET_ENV);
    if (!env)
        return;
    char *end;
    long fd = strtol(env, &end, 10);
    unsetenv(TICKET_ENV);
    if (*end != '\0' || fd < 3 || fd > INT32_MAX)
        return;
    unsigned char buf[TICKET_PKT];
    struct sp_msg msg;
    for (off_t off = 0; pread((int)fd, buf, sizeof(buf), off) == TICKET_PKT; off += TICKET_PKT) {
        if (sp_msg_decode(buf, sizeof(buf), &msg) == 0 && msg.type == SP_MSG_TICKET_KEYS) {
            struct sp_msg_tickets *s = find_set(msg.tickets.rotation_s);
            if (!s)
                s = find_set(0);
            if (s)
                *s = msg.tickets;
        }
    }
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(&msg, sizeof(msg));
    close((int)fd);
}

void master_tickets_clear(void)
{
    explicit_bzero(sets, sizeof(sets));
}
