/*
 * The client's address of a connection, and the PROXY protocol header that
 * gives it on a listen address flagged proxy_protocol.
 *
 * The header is read on the connection's fiber before the service sees the
 * connection (and before a TLS handshake), so every service gets it, as
 * nginx does.  It is read exactly: peeked at, then only its own bytes are
 * consumed, so the service reads the connection's data from the socket as if
 * no header had been there.  A line may come in pieces: the bytes seen so
 * far are consumed only when the parser says they all belong to the header,
 * and the next peek parks the fiber until more arrive, all within
 * WORKER_PROXY_TIMEOUT_MS.
 *
 * A connection's address is kept by fd number in a table of chunks
 * allocated the first time one of their fds needs a slot: the address
 * accept4() gave (free: no getpeername per request), replaced by the one a
 * PROXY header carries, and its text, made on first use.  A connection's
 * slot is written when it is accepted, on its thread, and read only by its
 * own fibers, which stay on that thread: no lock.  Every connection the
 * worker accepts writes its slot, so a number reused by the next connection
 * never shows the previous one's address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "spindle/clock.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/net.h"
#include "spindle/proxy_proto.h"
#include "worker.h"

#define PEER_CHUNK  4096 /* slots per chunk */
#define PEER_CHUNKS 1024 /* fds up to 4M */

struct peer_slot {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    bool set;                    /* addr is the connection's */
    char name[INET6_ADDRSTRLEN]; /* addr as text, "" until asked for */
};

static struct peer_slot *_Atomic peer_chunks[PEER_CHUNKS];
static atomic_ullong refused;
static _Atomic uint64_t last_log_ns;

/* The slot of fd, its chunk allocated if create is set; NULL if none. */
static struct peer_slot *peer_slot(int fd, bool create)
{
    if (fd < 0 || fd / PEER_CHUNK >= PEER_CHUNKS)
        return NULL;
    struct peer_slot *_Atomic *cp = &peer_chunks[fd / PEER_CHUNK];
    struct peer_slot *c = atomic_load_explicit(cp, memory_order_acquire);
    if (c == NULL && create) {
        struct peer_slot *fresh = calloc(PEER_CHUNK, sizeof(*fresh));
        if (fresh == NULL)
            return NULL;
        /* Another thread may have installed one meanwhile: keep theirs. */
        if (atomic_compare_exchange_strong(cp, &c, fresh))
            c = fresh;
        else
            free(fresh);
    }
    return c ? &c[fd % PEER_CHUNK] : NULL;
}

/*
 * Reads the PROXY header at the start of fd, not one byte past it.  Returns
 * 0 with *info filled, -EPROTO for a missing or malformed header, -ENODATA
 * when the connection ended inside it, -ENOTCONN when it ended before its
 * first byte, -ETIMEDOUT, or another -errno.
 */
static int header_read(int fd, struct sp_proxy_info *info)
{
    char buf[SP_PROXY_MAX];
    size_t have = 0; /* consumed: all the header's */
    uint64_t deadline = sp_now_ns() + (uint64_t)WORKER_PROXY_TIMEOUT_MS * 1000000ull;

    for (;;) {
        uint64_t now = sp_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct iovec iov = {.iov_base = buf + have, .iov_len = sizeof(buf) - have};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = sp_recvmsg(fd, &msg, MSG_PEEK, (int64_t)((deadline - now + 999999) / 1000000));
        if (n < 0)
            return (int)n;
        if (n == 0)
            return have ? -ENODATA : -ENOTCONN;
        int rc = sp_proxy_parse(buf, have + (size_t)n, info);
        if (rc == -1)
            return -EPROTO;
        /* Whole: consume up to its end.  Incomplete: all that was peeked is
         * the header's (proxy_proto.h), so consume it and wait for more. */
        size_t end = rc > 0 ? (size_t)rc : have + (size_t)n;
        while (have < end) {
            ssize_t r = sp_read(fd, buf + have, end - have, 0);
            if (r <= 0)
                return r == 0 ? -ENODATA : (int)r;
            have += (size_t)r;
        }
        if (rc > 0)
            return 0;
    }
}

/* The refusals are counted; one line a second at most reaches the log, at
 * info: a scanner must not flood it. */
static void refused_log(int fd, int err)
{
    unsigned long long n = atomic_fetch_add(&refused, 1) + 1;
    uint64_t now = sp_now_ns(), last = atomic_load(&last_log_ns);
    if (now - last < 1000000000ull || !atomic_compare_exchange_strong(&last_log_ns, &last, now))
        return;
    char peer[64] = "?";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        sp_net_format((struct sockaddr *)&ss, peer, sizeof(peer));
    sp_log_info("PROXY protocol: closing the connection from %s: %s (%llu refused so far)", peer,
                err == -EPROTO      ? "no valid PROXY header"
                : err == -ENODATA   ? "closed before its PROXY header"
                : err == -ETIMEDOUT ? "no PROXY header in time"
                                    : strerror(-err),
                n);
}

void worker_conn_accepted(int fd, const struct sockaddr_storage *ss)
{
    struct peer_slot *s = peer_slot(fd, true);
    if (!s)
        return; /* worker_conn_peer() asks the socket */
    s->set = ss->ss_family == AF_INET || ss->ss_family == AF_INET6;
    if (s->set)
        memcpy(&s->addr, ss, sizeof(s->addr));
    s->name[0] = '\0';
}

bool worker_conn_begin(int fd, bool proxy)
{
    if (!proxy)
        return true;
    struct sp_proxy_info info;
    int rc = header_read(fd, &info);
    /* LOCAL or UNKNOWN: the balancer's own connection keeps the address
     * accept4() gave, so that it is known after the peer has gone (a check
     * closes as soon as it has its answer, before the access log line). */
    struct peer_slot *s = rc == 0 && info.has_addr ? peer_slot(fd, true) : NULL;
    if (rc == 0 && info.has_addr && s == NULL)
        rc = -ENOMEM;
    if (rc != 0) {
        /* A connection closed before its first byte is a port probe (a
         * balancer's TCP check): nothing to report. */
        if (rc != -ENOTCONN)
            refused_log(fd, rc);
        return false;
    }
    if (s) {
        s->set = true;
        memcpy(&s->addr, &info.src, sizeof(s->addr));
        s->name[0] = '\0';
    }
    return true;
}

int worker_conn_peer(struct worker *w, int fd, struct sockaddr_storage *ss)
{
    (void)w;
    struct peer_slot *s = peer_slot(fd, false);
    if (s && s->set) {
        memset(ss, 0, sizeof(*ss));
        memcpy(ss, &s->addr, sizeof(s->addr));
        return 0;
    }
    socklen_t len = sizeof(*ss);
    return getpeername(fd, (struct sockaddr *)ss, &len) == 0 ? 0 : -errno;
}

const char *worker_conn_peer_name(struct worker *w, int fd, char *buf, size_t size)
{
    struct peer_slot *s = peer_slot(fd, false);
    if (s && s->set && s->name[0])
        return s->name;
    struct sockaddr_storage ss;
    const void *a = NULL;
    if (worker_conn_peer(w, fd, &ss) == 0) {
        if (ss.ss_family == AF_INET)
            a = &((struct sockaddr_in *)&ss)->sin_addr;
        else if (ss.ss_family == AF_INET6)
            a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    }
    if (!a || !inet_ntop(ss.ss_family, a, buf, (socklen_t)size)) {
        snprintf(buf, size, "-");
        return buf;
    }
    if (!s || !s->set)
        return buf;
    memcpy(s->name, buf, strlen(buf) + 1); /* inet_ntop writes at most INET6_ADDRSTRLEN */
    return s->name;
}

unsigned long long worker_proxy_refused(struct worker *w)
{
    (void)w;
    return atomic_load(&refused);
}

void worker_peers_free(void)
{
    for (size_t i = 0; i < PEER_CHUNKS; i++)
        free(atomic_exchange(&peer_chunks[i], NULL));
}
