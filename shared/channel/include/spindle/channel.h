/*
 * Control channel: the messages between the master and each worker.
 *
 * They travel over a SOCK_SEQPACKET socketpair, one message per packet, so
 * the kernel keeps their boundaries and a packet is either whole or absent.
 * A packet is an 8-byte header, then the payload:
 *
 *   u16 magic (SP_MSG_MAGIC)   u16 type   u32 payload length   payload...
 *
 * every integer little-endian.  Each type has one exact payload layout (see
 * the structs below; integers in the order of their fields, without padding).
 * The codec is pure: sp_msg_encode() and sp_msg_decode() touch no fd and
 * allocate nothing, and the decoder reads nothing outside the bytes it is
 * given, whatever they are.
 * sp_msg_send() and sp_msg_recv() are thin wrappers over send()/recv();
 * sp_msg_send_fds() and sp_msg_take_fds() pass fds along (SCM_RIGHTS).
 * The packet buffers these use are wiped before they return: a packet may
 * hold session ticket keys.
 */
#ifndef SPINDLE_CHANNEL_H
#define SPINDLE_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SP_MSG_MAGIC      0x5331 /* "S1": spindle, protocol version 1 */
#define SP_MSG_HEADER     8      /* bytes */
#define SP_MSG_MAX        512    /* bytes in the largest packet, header included */
#define SP_MSG_REASON_MAX 200    /* bytes of text in SP_MSG_EXITING */
#define SP_MSG_MAX_FDS    253    /* fds one message carries (the kernel's SCM_MAX_FD) */

enum sp_msg_type {
    /* master -> worker, no payload */
    SP_MSG_DRAIN = 1,      /* stop accepting, finish in-flight work, then exit */
    SP_MSG_STOP = 2,       /* exit now */
    SP_MSG_REOPEN = 3,     /* log files reopened: the new fds ride along (SCM_RIGHTS) */
    SP_MSG_STATUS_REQ = 4, /* answer with SP_MSG_STATUS */
    SP_MSG_PING = 5,       /* heartbeat: answer with SP_MSG_PONG */

    /* master -> worker, struct sp_msg_slot */
    SP_MSG_ADOPT = 8,   /* accept on the slot passed with this packet too (SCM_RIGHTS) */
    SP_MSG_RELEASE = 9, /* stop accepting on an adopted slot and close it */

    /* worker -> master */
    SP_MSG_READY = 16,    /* struct sp_msg_ready: listening and serving */
    SP_MSG_STATUS = 17,   /* struct sp_msg_status */
    SP_MSG_DRAINING = 18, /* no payload: accepting no more connections */
    SP_MSG_EXITING = 19,  /* struct sp_msg_exiting: about to exit */
    SP_MSG_PONG = 20,     /* no payload: the answer to SP_MSG_PING */

    /* master -> worker, no payload: a graceful stop ([master] drain_delay)
     * begins; health checks fail from now on while everything is served,
     * until SP_MSG_DRAIN follows. */
    SP_MSG_DRAIN_SOON = 21,
    /* master -> worker, struct sp_msg_tickets: the session ticket keys
     * of one tls_session_ticket_rotation value (docs/tls.md) */
    SP_MSG_TICKET_KEYS = 32,
};

/* Payload of SP_MSG_READY: 12 bytes. */
struct sp_msg_ready {
    uint32_t pid;
    uint32_t generation; /* the configuration generation the worker runs */
    uint32_t index;      /* the worker's index in its generation */
};

/* Payload of SP_MSG_STATUS: 60 bytes. */
struct sp_msg_status {
    uint32_t pid;
    uint32_t generation;
    uint32_t index;       /* the worker's index in its generation */
    uint64_t connections; /* open now */
    uint64_t requests;    /* served since start */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint32_t fibers_live;
    uint32_t fibers_pooled;
    uint64_t uptime_ms;
};

/*
 * Payload of SP_MSG_ADOPT and SP_MSG_RELEASE: 8 bytes.  A live worker adopts
 * the slots of a worker that is gone or does not answer, until that worker
 * is back; key names the slot in both messages.
 */
struct sp_msg_slot {
    uint32_t key;     /* the master's descriptor number of the slot */
    uint32_t service; /* index into the generation's services */
};

/* Payload of SP_MSG_EXITING: i32 code, u16 reason length, then the reason's
 * bytes (no NUL among them, none after them): 6 + strlen(reason) bytes. */
struct sp_msg_exiting {
    int32_t code;                       /* 0 for a normal exit, else a failure code */
    char reason[SP_MSG_REASON_MAX + 1]; /* NUL-terminated, may be "" */
};

/*
 * One session ticket key: it seals the tickets of one period of its rotation
 * value (period = seconds since the epoch / rotation).  OpenSSL's ticket
 * format names the key in each ticket, then AES-256-CBC and HMAC-SHA256.
 */
struct sp_msg_ticket_key {
    uint64_t period; /* 0: no key in this place */
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

#define SP_MSG_TICKET_KEYS_MAX 3 /* the previous period's, the current, the next */

/* Payload of SP_MSG_TICKET_KEYS: 4 + 3 * 88 = 268 bytes.  It replaces every
 * key the worker holds for rotation_s. */
struct sp_msg_tickets {
    uint32_t rotation_s; /* the period's length, seconds (> 0) */
    struct sp_msg_ticket_key keys[SP_MSG_TICKET_KEYS_MAX];
};

struct sp_msg {
    uint16_t type; /* enum sp_msg_type */
    union {
        struct sp_msg_ready ready;     /* SP_MSG_READY */
        struct sp_msg_status status;   /* SP_MSG_STATUS */
        struct sp_msg_exiting exiting; /* SP_MSG_EXITING */
        struct sp_msg_slot slot;       /* SP_MSG_ADOPT, SP_MSG_RELEASE */
        struct sp_msg_tickets tickets; /* SP_MSG_TICKET_KEYS */
    };
};

/*
 * Writes m as one packet into buf.  Returns the packet's length (at most
 * SP_MSG_MAX), -EINVAL for an unknown type or a reason that is not
 * NUL-terminated within SP_MSG_REASON_MAX + 1 bytes, -ENOBUFS when size is
 * too small.  Borrows m.
 */
ssize_t sp_msg_encode(const struct sp_msg *m, void *buf, size_t size);

/*
 * Decodes the packet of len bytes at buf into *m.  Returns 0, or -1 when the
 * packet is not exactly one valid message: a short header, a wrong magic, an
 * unknown type, a length field other than the type's payload size or than
 * the bytes present, a reason too long or holding a NUL.  Reads only
 * buf[0..len); *m is unspecified after a failure.
 */
int sp_msg_decode(const void *buf, size_t len, struct sp_msg *m);

/* "DRAIN", "STATUS", ... or "UNKNOWN", for logs. */
const char *sp_msg_type_name(unsigned type);

/*
 * Sends m on fd (MSG_NOSIGNAL: a closed peer is -EPIPE, not SIGPIPE).
 * Returns 0 or -errno; -EAGAIN when fd is non-blocking and the queue is full.
 */
int sp_msg_send(int fd, const struct sp_msg *m);

/*
 * Receives one packet from fd and decodes it into *m.  Returns the packet
 * length (> 0), 0 when the peer has closed the channel (an empty packet reads
 * the same; no spindle process sends one), -EBADMSG for a packet that is not
 * a valid message, or -errno (-EAGAIN when fd is non-blocking and nothing is
 * queued).  An invalid packet is consumed: the next call reads the next one.
 */
ssize_t sp_msg_recv(int fd, struct sp_msg *m);

/*
 * Sends m on fd as sp_msg_send() does, with fds[0..nfds) attached
 * (SCM_RIGHTS; at most SP_MSG_MAX_FDS).  The fds stay the caller's: the
 * receiver gets copies.  Returns 0 or -errno.
 */
int sp_msg_send_fds(int fd, const struct sp_msg *m, const int *fds, unsigned nfds);

/*
 * Moves the fds a received message carried (SCM_RIGHTS in msg's control
 * data) into fds[0..max), in the order sent, and closes any beyond max.
 * Returns their count; the caller owns them.
 */
struct msghdr;
unsigned sp_msg_take_fds(struct msghdr *msg, int *fds, unsigned max);

#endif
