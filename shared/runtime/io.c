/*
 * Fiber I/O.  Every call tries the system call first and parks only on
 * EAGAIN, so a ready fd costs exactly one system call.  A deadline is taken
 * when a call first has to wait, so a call that never waits reads no clock;
 * the writing calls take a fresh one after every write that moved bytes, so
 * their timeout bounds the time the peer takes nothing (nginx's send_timeout),
 * not the whole transfer.
 *
 * The raw system calls sit in small functions that call libc's own
 * functions (sp__libc: the fds here are non-blocking, so the hooks of hook.c
 * would only add a check) and turn errno into a return value on the spot, before anything else can
 * run on the thread and overwrite errno.  (A fiber stays on its thread, so errno's address would
 * also stay valid across a park.)
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spindle/io.h"

#define NOINLINE __attribute__((noinline))

/*
 * Once the process has several threads, the calls made for every request go
 * through syscall(): libc's read(), write() and writev() are thread
 * cancellation points, which then cost two calls around every system call
 * (spindle never cancels a thread).  With one thread the libc calls are the
 * cheaper ones.
 */
static NOINLINE ssize_t sys_read(int fd, void *buf, size_t len)
{
    ssize_t n = sp__threaded ? syscall(SYS_read, fd, buf, len) : sp__libc.read(fd, buf, len);
    return n < 0 ? -errno : n;
}

static NOINLINE ssize_t sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
    ssize_t n = sp__libc.recvmsg(fd, msg, flags);
    return n < 0 ? -errno : n;
}

static NOINLINE ssize_t sys_write(int fd, const void *buf, size_t len)
{
    ssize_t n = sp__threaded ? syscall(SYS_write, fd, buf, len) : sp__libc.write(fd, buf, len);
    return n < 0 ? -errno : n;
}

static NOINLINE ssize_t sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
    ssize_t n =
        sp__threaded ? syscall(SYS_writev, fd, iov, iovcnt) : sp__libc.writev(fd, iov, iovcnt);
    return n < 0 ? -errno : n;
}

static NOINLINE ssize_t sys_sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
    ssize_t n = sendfile(out_fd, in_fd, off, count);
    return n < 0 ? -errno : n;
}

static NOINLINE int sys_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int c = sp__libc.accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return c < 0 ? -errno : c;
}

static NOINLINE int sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return sp__libc.connect(fd, addr, len) == 0 ? 0 : -errno;
}

static NOINLINE int sys_so_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return -err;
}

/* Parks on fd for dir until *deadline, taking the deadline first if *armed is
 * clear.  Returns 0 or -errno. */
static int park(int fd, unsigned dir, int64_t timeout_ms, uint64_t *deadline, bool *armed,
                uint32_t gen)
{
    if (!*armed) {
        *deadline = sp__deadline(timeout_ms);
        *armed = true;
    }
    return sp__iom_park(fd, dir, *deadline, 1, gen);
}

ssize_t sp_read(int fd, void *buf, size_t len, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(fd);
    uint64_t deadline = 0;
    bool armed = false;
    for (;;) {
        ssize_t n = sys_read(fd, buf, len);
        if (n >= 0) {
            sp__iom_io_done();
            return n;
        }
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return n;
        int rc = park(fd, SP_IO_READ, timeout_ms, &deadline, &armed, gen);
        if (rc < 0)
            return rc;
    }
}

ssize_t sp_recvmsg(int fd, struct msghdr *msg, int flags, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(fd);
    uint64_t deadline = 0;
    bool armed = false;
    for (;;) {
        ssize_t n = sys_recvmsg(fd, msg, flags | MSG_DONTWAIT);
        if (n >= 0) {
            sp__iom_io_done();
            return n;
        }
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return n;
        int rc = park(fd, SP_IO_READ, timeout_ms, &deadline, &armed, gen);
        if (rc < 0)
            return rc;
    }
}

ssize_t sp_try_read(int fd, void *buf, size_t len)
{
    ssize_t n;
    /* Forget the cached readiness first: an event that arrives from here on
     * marks the fd ready again, so a caller that saw a short read may hand the
     * fd to sp_iom_watch() at once without losing a wake-up.  The same
     * promise lets the next call skip its read while no event came: a short
     * read drained the socket, and any byte since would have been an event
     * (nginx's ready flag, cleared on a short read). */
    if (sp__iom_read_begin(fd))
        return -EAGAIN;
    do
        n = sys_read(fd, buf, len);
    while (n == -EINTR);
    sp__iom_read_end(fd, n == -EAGAIN || (n > 0 && (size_t)n < len));
    return n;
}

ssize_t sp_write(int fd, const void *buf, size_t len, int64_t timeout_ms)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return sp_writev(fd, &iov, 1, timeout_ms);
}

ssize_t sp_writev(int fd, struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(fd);
    uint64_t deadline = 0;
    bool armed = false;
    size_t total = 0;

    while (iovcnt > 0 && iov->iov_len == 0)
        iov++, iovcnt--;
    while (iovcnt > 0) {
        ssize_t n = iovcnt == 1 ? sys_write(fd, iov->iov_base, iov->iov_len)
                                : sys_writev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n != -EAGAIN)
                return n;
            int rc = park(fd, SP_IO_WRITE, timeout_ms, &deadline, &armed, gen);
            if (rc < 0)
                return rc;
            continue;
        }
        armed = false; /* progress: the next wait gets a full timeout */
        total += (size_t)n;
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov->iov_len = 0;
            iov++, iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    sp__iom_io_done();
    return (ssize_t)total;
}

ssize_t sp_sendfile(int out_fd, int in_fd, off_t *offset, size_t count, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(out_fd);
    uint64_t deadline = 0;
    bool armed = false;
    size_t left = count;

    while (left > 0) {
        ssize_t n = sys_sendfile(out_fd, in_fd, offset, left);
        if (n > 0) {
            left -= (size_t)n;
            armed = false; /* progress: the next wait gets a full timeout */
            continue;
        }
        if (n == 0)
            return -EIO; /* the file shrank under us */
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return n;
        int rc = park(out_fd, SP_IO_WRITE, timeout_ms, &deadline, &armed, gen);
        if (rc < 0)
            return rc;
    }
    sp__iom_io_done();
    return (ssize_t)count;
}

int sp_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(fd);
    uint64_t deadline = 0;
    bool armed = false;
    for (;;) {
        int c = sys_accept(fd, addr, addrlen);
        if (c >= 0)
            return c;
        if (c == -EINTR || c == -ECONNABORTED)
            continue;
        if (c != -EAGAIN)
            return c;
        int rc = park(fd, SP_IO_READ, timeout_ms, &deadline, &armed, gen);
        if (rc < 0)
            return rc;
    }
}

int sp_try_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    (void)sp__iom_fd_gen(fd); /* the owner check */
    for (;;) {
        int c = sys_accept(fd, addr, addrlen);
        if (c != -EINTR && c != -ECONNABORTED)
            return c;
    }
}

int sp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t timeout_ms)
{
    uint32_t gen = sp__iom_fd_gen(fd);
    int rc = sys_connect(fd, addr, addrlen);
    if (rc == 0 || (rc != -EINPROGRESS && rc != -EINTR))
        return rc;
    rc = sp__iom_park(fd, SP_IO_WRITE, sp__deadline(timeout_ms), 1, gen);
    if (rc < 0)
        return rc;
    return sys_so_error(fd);
}

int sp_wait(int fd, enum sp_io_dir dir, int64_t timeout_ms)
{
    return sp__iom_park(fd, (unsigned)dir, sp__deadline(timeout_ms), 0, sp__iom_fd_gen(fd));
}

int sp_sleep(int64_t ms)
{
    int rc = sp__iom_park(-1, 0, sp__deadline(ms < 0 ? 0 : ms), 0, 0);
    return rc == -ETIMEDOUT ? 0 : rc;
}

int sp_close(int fd)
{
    return sp__iom_close(fd);
}
