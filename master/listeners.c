/*
 * Listening sockets ("slots").
 *
 * Every configured address gets K SO_REUSEPORT sockets, K = the largest
 * slot count any configuration asked for so far.  The master keeps each one
 * open for as long as the address is configured: the kernel resets every
 * connection queued on a reuseport socket when the last handle to it is
 * closed, and the master's handle is the one that outlives every worker.  A
 * reload that lowers the slot count keeps the extra sockets (workers serve
 * them all: slot s belongs to worker s mod N), so nothing is closed while
 * the address stays.  An address dropped from the configuration is closed
 * once no generation that lists it has a worker left.
 *
 * SO_REUSEPORT would also let the sockets join a group another process (of
 * the same uid) already listens with, which would then take part of the
 * traffic unseen.  So before it opens a new address the master binds it once
 * without the option: that fails while anyone listens there.  A process of
 * the same uid can still join the group afterwards; nothing prevents that.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"
#include "spindle/log.h"
#include "spindle/net.h"
#include "../worker/worker.h"

#define LISTEN_BACKLOG 4096

static uint16_t port_of(const struct sockaddr *a)
{
    return a->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
                                    : ((const struct sockaddr_in *)a)->sin_port;
}

/* Whether addr is free to open: nobody else listens on it.  A listener of
 * our own on the same family and port (the wildcard beside a specific
 * address, across a reload) would make the check fail, so it is skipped
 * then.  Returns 0 or -errno with the reason in err. */
static int check_free(struct master *m, const struct sp_listen_conf *lc, char *err, size_t errlen)
{
    const struct sockaddr *addr = (const struct sockaddr *)&lc->addr;
    for (struct master_listener *l = m->listeners; l; l = l->next)
        if (l->addr.ss_family == addr->sa_family &&
            port_of((const struct sockaddr *)&l->addr) == port_of(addr))
            return 0;
    int rc = sp_net_probe_free(addr, lc->addrlen);
    if (rc == -EADDRINUSE)
        snprintf(err, errlen, "cannot listen on %s: address already in use by another process",
                 lc->text);
    else if (rc < 0)
        snprintf(err, errlen, "cannot listen on %s: %s", lc->text, strerror(-rc));
    return rc;
}

static struct master_listener *listeners_find(struct master *m, const struct sockaddr *addr)
{
    for (struct master_listener *l = m->listeners; l; l = l->next)
        if (sp_net_addr_equal((const struct sockaddr *)&l->addr, addr))
            return l;
    return NULL;
}

/* Opens sockets until l has want of them.  Returns 0 or -errno (the ones
 * opened so far stay in l). */
static int grow(struct master_listener *l, unsigned want, char *err, size_t errlen)
{
    while (l->nfds < want && !l->fixed) {
        int fd = sp_net_listen((const struct sockaddr *)&l->addr, l->addrlen, LISTEN_BACKLOG, 1);
        if (fd < 0) {
            snprintf(err, errlen, "cannot listen on %s (slot %u): %s", l->text, l->nfds,
                     strerror(-fd));
            return fd;
        }
        l->fds[l->nfds++] = fd;
    }
    return 0;
}

static void shrink(struct master_listener *l, unsigned nfds)
{
    while (l->nfds > nfds)
        close(l->fds[--l->nfds]);
}

int listeners_prepare(struct master *m, const struct sp_config *cfg, struct listeners_txn *txn,
                      char *err, size_t errlen)
{
    int rc = 0;

    memset(txn, 0, sizeof(*txn));
    for (unsigned i = 0; i < cfg->nlistens; i++) {
        const struct sp_listen_conf *lc = &cfg->listens[i];
        struct master_listener *l = listeners_find(m, (const struct sockaddr *)&lc->addr);
        if (!l) {
            int fds[SP_CONFIG_MAX_SLOTS];
            bool fixed = false;
            const char *from = NULL;
            unsigned taken = inherit_take(m, (const struct sockaddr *)&lc->addr, fds,
                                          SP_CONFIG_MAX_SLOTS, &fixed, &from);
            /* A passed socket listens there already: the check would fail. */
            rc = taken ? 0 : check_free(m, lc, err, errlen);
            if (rc < 0)
                goto fail;
            l = calloc(1, sizeof(*l));
            if (!l) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
                goto fail;
            }
            l->addr = lc->addr;
            l->addrlen = lc->addrlen;
            snprintf(l->text, sizeof(l->text), "%s", lc->text);
            l->next = m->listeners;
            m->listeners = l;
            txn->grown[txn->ngrown].l = l;
            txn->grown[txn->ngrown++].old_nfds = 0;
            memcpy(l->fds, fds, taken * sizeof(fds[0]));
            l->nfds = taken;
            l->fixed = fixed;
            rc = grow(l, cfg->slots, err, errlen);
            if (rc < 0)
                goto fail;
            if (fixed)
                sp_log_info("listening on %s (1 slot: the socket from %s, without SO_REUSEPORT; "
                            "every worker accepts on it)",
                            l->text, from);
            else if (taken)
                sp_log_info("listening on %s (%u slots, %u of them from %s)", l->text, l->nfds,
                            taken, from);
            else
                sp_log_info("listening on %s (%u slots)", l->text, l->nfds);
        } else if (l->nfds < cfg->slots && !l->fixed) {
            txn->grown[txn->ngrown].l = l;
            txn->grown[txn->ngrown++].old_nfds = l->nfds;
            unsigned old = l->nfds;
            rc = grow(l, cfg->slots, err, errlen);
            if (rc < 0)
                goto fail;
            sp_log_info("%s: slots %u -> %u", l->text, old, l->nfds);
        }
    }
    return 0;

fail:
    listeners_rollback(m, txn);
    return rc;
}

static void unlink_free(struct master *m, struct master_listener *l)
{
    for (struct master_listener **p = &m->listeners; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    shrink(l, 0);
    free(l);
}

void listeners_rollback(struct master *m, struct listeners_txn *txn)
{
    /* Sockets added to a reuseport group take their share of new connections
     * at once; nobody would accept them on a socket no worker serves.  So
     * everything this transaction opened is closed again, extra slots of
     * addresses that stay included. */
    for (unsigned i = txn->ngrown; i-- > 0;) {
        struct master_listener *l = txn->grown[i].l;
        if (txn->grown[i].old_nfds == 0)
            unlink_free(m, l);
        else
            shrink(l, txn->grown[i].old_nfds);
    }
    txn->ngrown = 0;
}

void listeners_prune(struct master *m)
{
    struct master_listener *l = m->listeners;
    while (l) {
        struct master_listener *next = l->next;
        int used = 0;
        for (struct master_gen *g = m->gens; g && !used; g = g->next)
            used = sp_config_find_listen(g->cfg, (const struct sockaddr *)&l->addr) != NULL;
        if (!used) {
            sp_log_info("closing %s (%u slots): no longer configured", l->text, l->nfds);
            unlink_free(m, l);
        }
        l = next;
    }
}

void listeners_close_all(struct master *m)
{
    while (m->listeners)
        unlink_free(m, m->listeners);
}

unsigned listeners_for_worker(struct master *m, const struct sp_config *cfg, unsigned index,
                              struct worker_listener *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cfg->nlistens; i++) {
        const struct sp_listen_conf *lc = &cfg->listens[i];
        struct master_listener *l = listeners_find(m, (const struct sockaddr *)&lc->addr);
        if (!l)
            continue;
        if (l->nfds < cfg->workers && l->nfds > 0 && n < max) {
            /* Fewer sockets than workers (a passed socket that cannot be
             * copied): the workers share them. */
            out[n].fd = l->fds[index % l->nfds];
            out[n].service = lc->service;
            n++;
            continue;
        }
        for (unsigned s = index; s < l->nfds && n < max; s += cfg->workers) {
            out[n].fd = l->fds[s];
            out[n].service = lc->service;
            n++;
        }
    }
    return n;
}
