/*
 * Streams: a connection's byte stream behind a table of operations, so that a
 * service is written once for every transport.  A plain socket's operations
 * are the fiber I/O calls of io.h; a TLS session or an upstream connection
 * supplies its own table and keeps its state next to the struct (embed
 * struct sp_stream first in a larger one).  An operation costs one indirect
 * call.
 *
 * The calls have the semantics (timeouts, -errno results, never EAGAIN
 * except from try_read) of their io.h counterparts.  fd stays the socket
 * underneath, for what works on the socket itself: sp_iom_watch() on an idle
 * connection, getpeername(), socket options.
 */
#ifndef SPINDLE_STREAM_H
#define SPINDLE_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct sp_stream;

struct sp_stream_ops {
    /* sp_read(): up to len bytes, 0 at end of stream. */
    ssize_t (*read)(struct sp_stream *s, void *buf, size_t len, int64_t timeout_ms);
    /* sp_try_read(): one attempt that never parks, -EAGAIN when nothing is
     * there; after -EAGAIN or a short read the fd may be watched at once. */
    ssize_t (*try_read)(struct sp_stream *s, void *buf, size_t len);
    /* sp_write(): all len bytes. */
    ssize_t (*write)(struct sp_stream *s, const void *buf, size_t len, int64_t timeout_ms);
    /* sp_writev(): every byte of iov[0..iovcnt), consuming the array. */
    ssize_t (*writev)(struct sp_stream *s, struct iovec *iov, int iovcnt, int64_t timeout_ms);
    /* sp_sendfile(): count bytes of in_fd from *offset (advanced).  A
     * transport that cannot hand file pages to the kernel copies them. */
    ssize_t (*sendfile)(struct sp_stream *s, int in_fd, off_t *offset, size_t count,
                        int64_t timeout_ms);
    /* shutdown(2) of one or both directions (SHUT_WR, ...).  Returns 0 or -errno. */
    int (*shutdown)(struct sp_stream *s, int how);
    /* sp_close(): ends the stream and closes fd.  Returns 0 or -errno. */
    int (*close)(struct sp_stream *s);
};

struct sp_stream {
    const struct sp_stream_ops *ops;
    int fd; /* the socket underneath */
};

/* The operations of a plain socket: the io.h calls on s->fd. */
extern const struct sp_stream_ops sp_socket_stream_ops;

/* Makes s the plain-socket stream of fd (no allocation, nothing to free). */
static inline void sp_stream_socket(struct sp_stream *s, int fd)
{
    s->ops = &sp_socket_stream_ops;
    s->fd = fd;
}

static inline ssize_t sp_stream_read(struct sp_stream *s, void *buf, size_t len, int64_t timeout_ms)
{
    return s->ops->read(s, buf, len, timeout_ms);
}

static inline ssize_t sp_stream_try_read(struct sp_stream *s, void *buf, size_t len)
{
    return s->ops->try_read(s, buf, len);
}

static inline ssize_t sp_stream_write(struct sp_stream *s, const void *buf, size_t len,
                                      int64_t timeout_ms)
{
    return s->ops->write(s, buf, len, timeout_ms);
}

static inline ssize_t sp_stream_writev(struct sp_stream *s, struct iovec *iov, int iovcnt,
                                       int64_t timeout_ms)
{
    return s->ops->writev(s, iov, iovcnt, timeout_ms);
}

static inline ssize_t sp_stream_sendfile(struct sp_stream *s, int in_fd, off_t *offset,
                                         size_t count, int64_t timeout_ms)
{
    return s->ops->sendfile(s, in_fd, offset, count, timeout_ms);
}

static inline int sp_stream_shutdown(struct sp_stream *s, int how)
{
    return s->ops->shutdown(s, how);
}

static inline int sp_stream_close(struct sp_stream *s)
{
    return s->ops->close(s);
}

/*
 * Ends a connection whose last answer is written while the peer may still be
 * sending: half-closes, then reads and drops what comes (into buf[0..cap))
 * until the peer closes or total_ms is over, each wait at most read_ms.  A
 * close with unread input would be a reset that may destroy the answer before
 * the peer reads it.  Does not close the stream.  On a fiber.
 */
void sp_stream_linger(struct sp_stream *s, void *buf, size_t cap, int64_t total_ms,
                      int64_t read_ms);

#endif
