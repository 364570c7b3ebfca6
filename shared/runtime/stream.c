/*
 * The plain-socket stream: each operation is the io.h call on the fd.
 */
#include <errno.h>
#include <sys/socket.h>

#include "spindle/clock.h"
#include "spindle/io.h"
#include "spindle/stream.h"

static ssize_t sock_read(struct sp_stream *s, void *buf, size_t len, int64_t timeout_ms)
{
    return sp_read(s->fd, buf, len, timeout_ms);
}

static ssize_t sock_try_read(struct sp_stream *s, void *buf, size_t len)
{
    return sp_try_read(s->fd, buf, len);
}

static ssize_t sock_write(struct sp_stream *s, const void *buf, size_t len, int64_t timeout_ms)
{
    return sp_write(s->fd, buf, len, timeout_ms);
}

static ssize_t sock_writev(struct sp_stream *s, struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    return sp_writev(s->fd, iov, iovcnt, timeout_ms);
}

static ssize_t sock_sendfile(struct sp_stream *s, int in_fd, off_t *offset, size_t count,
                             int64_t timeout_ms)
{
    return sp_sendfile(s->fd, in_fd, offset, count, timeout_ms);
}

static int sock_shutdown(struct sp_stream *s, int how)
{
    return shutdown(s->fd, how) == 0 ? 0 : -errno;
}

static int sock_close(struct sp_stream *s)
{
    int fd = s->fd;
    s->fd = -1;
    return sp_close(fd);
}

const struct sp_stream_ops sp_socket_stream_ops = {
    .read = sock_read,
    .try_read = sock_try_read,
    .write = sock_write,
    .writev = sock_writev,
    .sendfile = sock_sendfile,
    .shutdown = sock_shutdown,
    .close = sock_close,
};

void sp_stream_linger(struct sp_stream *s, void *buf, size_t cap, int64_t total_ms, int64_t read_ms)
{
    uint64_t deadline = sp_now_ns() + (uint64_t)total_ms * 1000000u;
    sp_stream_shutdown(s, SHUT_WR);
    for (;;) {
        uint64_t now = sp_now_ns();
        if (now >= deadline)
            return;
        int64_t left = (int64_t)((deadline - now + 999999u) / 1000000u);
        if (sp_stream_read(s, buf, cap, left < read_ms ? left : read_ms) <= 0)
            return;
    }
}
