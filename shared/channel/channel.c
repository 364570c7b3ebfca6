/*
 * Control-channel codec.  Integers are written byte by byte, little-endian,
 * so the layout is what channel.h says on any host and no decoded field is
 * ever read through a misaligned pointer.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spindle/channel.h"

#define READY_SIZE   12
#define STATUS_SIZE  60
#define SLOT_SIZE    8
#define EXITING_BASE 6 /* code + reason_len, then the reason */
#define TICKET_KEY   88
#define TICKETS_SIZE (4 + SP_MSG_TICKET_KEYS_MAX * TICKET_KEY)

/* A cursor over a packet: writes past end are counted, not done. */
struct cursor {
    unsigned char *p;
    const unsigned char *rp;
    size_t off, len;
};

static void put(struct cursor *c, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++, c->off++) {
        if (c->off < c->len)
            c->p[c->off] = (unsigned char)(v >> (8 * i));
    }
}

/* Reads n bytes; the caller has checked that the packet holds them. */
static uint64_t get(struct cursor *c, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)c->rp[c->off++] << (8 * i);
    return v;
}

static void put_bytes(struct cursor *c, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(c, b[i], 1);
}

static void get_bytes(struct cursor *c, unsigned char *b, size_t n)
{
    memcpy(b, c->rp + c->off, n);
    c->off += n;
}

/* Payload size of each type with a fixed payload, -1 for EXITING (variable)
 * and -2 for unknown types. */
static long payload_size(unsigned type)
{
    switch (type) {
    case SP_MSG_DRAIN:
    case SP_MSG_STOP:
    case SP_MSG_REOPEN:
    case SP_MSG_STATUS_REQ:
    case SP_MSG_PING:
    case SP_MSG_DRAINING:
    case SP_MSG_PONG:
    case SP_MSG_DRAIN_SOON:
        return 0;
    case SP_MSG_ADOPT:
    case SP_MSG_RELEASE:
        return SLOT_SIZE;
    case SP_MSG_READY:
        return READY_SIZE;
    case SP_MSG_STATUS:
        return STATUS_SIZE;
    case SP_MSG_TICKET_KEYS:
        return TICKETS_SIZE;
    case SP_MSG_EXITING:
        return -1;
    }
    return -2;
}

ssize_t sp_msg_encode(const struct sp_msg *m, void *buf, size_t size)
{
    struct cursor c = {.p = buf, .len = size};
    long plen = payload_size(m->type);
    size_t reason_len = 0;

    if (plen == -2)
        return -EINVAL;
    if (m->type == SP_MSG_EXITING) {
        reason_len = strnlen(m->exiting.reason, sizeof(m->exiting.reason));
        if (reason_len > SP_MSG_REASON_MAX)
            return -EINVAL;
        plen = EXITING_BASE + (long)reason_len;
    }
    if (size < SP_MSG_HEADER + (size_t)plen)
        return -ENOBUFS;

    put(&c, SP_MSG_MAGIC, 2);
    put(&c, m->type, 2);
    put(&c, (uint64_t)plen, 4);
    switch (m->type) {
    case SP_MSG_READY:
        put(&c, m->ready.pid, 4);
        put(&c, m->ready.generation, 4);
        put(&c, m->ready.index, 4);
        break;
    case SP_MSG_STATUS: {
        const struct sp_msg_status *s = &m->status;
        put(&c, s->pid, 4);
        put(&c, s->generation, 4);
        put(&c, s->index, 4);
        put(&c, s->connections, 8);
        put(&c, s->requests, 8);
        put(&c, s->bytes_in, 8);
        put(&c, s->bytes_out, 8);
        put(&c, s->fibers_live, 4);
        put(&c, s->fibers_pooled, 4);
        put(&c, s->uptime_ms, 8);
        break;
    }
    case SP_MSG_ADOPT:
    case SP_MSG_RELEASE:
        put(&c, m->slot.key, 4);
        put(&c, m->slot.service, 4);
        break;
    case SP_MSG_TICKET_KEYS:
        put(&c, m->tickets.rotation_s, 4);
        for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
            const struct sp_msg_ticket_key *k = &m->tickets.keys[i];
            put(&c, k->period, 8);
            put_bytes(&c, k->name, sizeof(k->name));
            put_bytes(&c, k->aes, sizeof(k->aes));
            put_bytes(&c, k->hmac, sizeof(k->hmac));
        }
        break;
    case SP_MSG_EXITING:
        put(&c, (uint32_t)m->exiting.code, 4);
        put(&c, reason_len, 2);
        memcpy(c.p + c.off, m->exiting.reason, reason_len);
        c.off += reason_len;
        break;
    default:
        break;
    }
    return (ssize_t)c.off;
}

int sp_msg_decode(const void *buf, size_t len, struct sp_msg *m)
{
    struct cursor c = {.rp = buf, .len = len};
    unsigned magic, type;
    uint32_t plen;
    long want;

    if (len < SP_MSG_HEADER || len > SP_MSG_MAX)
        return -1;
    magic = (unsigned)get(&c, 2);
    type = (unsigned)get(&c, 2);
    plen = (uint32_t)get(&c, 4);
    want = payload_size(type);
    if (magic != SP_MSG_MAGIC || want == -2 || plen != len - SP_MSG_HEADER)
        return -1;
    if (want >= 0 && plen != (uint32_t)want)
        return -1;

    memset(m, 0, sizeof(*m));
    m->type = (uint16_t)type;
    switch (type) {
    case SP_MSG_READY:
        m->ready.pid = (uint32_t)get(&c, 4);
        m->ready.generation = (uint32_t)get(&c, 4);
        m->ready.index = (uint32_t)get(&c, 4);
        break;
    case SP_MSG_STATUS: {
        struct sp_msg_status *s = &m->status;
        s->pid = (uint32_t)get(&c, 4);
        s->generation = (uint32_t)get(&c, 4);
        s->index = (uint32_t)get(&c, 4);
        s->connections = get(&c, 8);
        s->requests = get(&c, 8);
        s->bytes_in = get(&c, 8);
        s->bytes_out = get(&c, 8);
        s->fibers_live = (uint32_t)get(&c, 4);
        s->fibers_pooled = (uint32_t)get(&c, 4);
        s->uptime_ms = get(&c, 8);
        break;
    }
    case SP_MSG_ADOPT:
    case SP_MSG_RELEASE:
        m->slot.key = (uint32_t)get(&c, 4);
        m->slot.service = (uint32_t)get(&c, 4);
        break;
    case SP_MSG_TICKET_KEYS:
        m->tickets.rotation_s = (uint32_t)get(&c, 4);
        for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
            struct sp_msg_ticket_key *k = &m->tickets.keys[i];
            k->period = get(&c, 8);
            get_bytes(&c, k->name, sizeof(k->name));
            get_bytes(&c, k->aes, sizeof(k->aes));
            get_bytes(&c, k->hmac, sizeof(k->hmac));
        }
        if (m->tickets.rotation_s == 0)
            return -1;
        break;
    case SP_MSG_EXITING: {
        size_t rlen;
        if (plen < EXITING_BASE)
            return -1;
        m->exiting.code = (int32_t)(uint32_t)get(&c, 4);
        rlen = (size_t)get(&c, 2);
        if (rlen > SP_MSG_REASON_MAX || plen != EXITING_BASE + rlen ||
            memchr(c.rp + c.off, '\0', rlen) != NULL)
            return -1;
        memcpy(m->exiting.reason, c.rp + c.off, rlen);
        m->exiting.reason[rlen] = '\0';
        break;
    }
    default:
        break;
    }
    return 0;
}

const char *sp_msg_type_name(unsigned type)
{
    switch (type) {
    case SP_MSG_DRAIN:
        return "DRAIN";
    case SP_MSG_STOP:
        return "STOP";
    case SP_MSG_REOPEN:
        return "REOPEN";
    case SP_MSG_STATUS_REQ:
        return "STATUS_REQ";
    case SP_MSG_PING:
        return "PING";
    case SP_MSG_ADOPT:
        return "ADOPT";
    case SP_MSG_RELEASE:
        return "RELEASE";
    case SP_MSG_PONG:
        return "PONG";
    case SP_MSG_READY:
        return "READY";
    case SP_MSG_STATUS:
        return "STATUS";
    case SP_MSG_DRAINING:
        return "DRAINING";
    case SP_MSG_EXITING:
        return "EXITING";
    case SP_MSG_TICKET_KEYS:
        return "TICKET_KEYS";
    case SP_MSG_DRAIN_SOON:
        return "DRAIN_SOON";
    }
    return "UNKNOWN";
}

int sp_msg_send(int fd, const struct sp_msg *m)
{
    return sp_msg_send_fds(fd, m, NULL, 0);
}

ssize_t sp_msg_recv(int fd, struct sp_msg *m)
{
    unsigned char buf[SP_MSG_MAX];

    for (;;) {
        /* MSG_TRUNC makes recv return the real packet length, so a packet
         * larger than buf is recognised instead of decoded cut short. */
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        bool bad = (size_t)n > sizeof(buf) || sp_msg_decode(buf, (size_t)n, m) < 0;
        explicit_bzero(buf, sizeof(buf));
        return bad ? -EBADMSG : n;
    }
}

int sp_msg_send_fds(int fd, const struct sp_msg *m, const int *fds, unsigned nfds)
{
    unsigned char buf[SP_MSG_MAX];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * SP_MSG_MAX_FDS)];
    } ctl;
    ssize_t n = sp_msg_encode(m, buf, sizeof(buf));

    if (n < 0)
        return (int)n;
    if (nfds > SP_MSG_MAX_FDS)
        return -EINVAL;
    struct iovec iov = {.iov_base = buf, .iov_len = (size_t)n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    int rc;
    for (;;) {
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        rc = w == n ? 0 : w >= 0 ? -EMSGSIZE : -errno;
        if (rc != -EINTR)
            break;
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

unsigned sp_msg_take_fds(struct msghdr *msg, int *fds, unsigned max)
{
    unsigned n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (n < max)
                fds[n++] = fd;
            else
                close(fd);
        }
    }
    return n;
}
