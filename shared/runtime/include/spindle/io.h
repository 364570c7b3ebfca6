/*
 * Fiber I/O: the calls a connection handler is written with.
 *
 * Each call must run on a fiber of an IOManager and takes a non-blocking fd.
 * It tries the system call first and parks the fiber only on EAGAIN; the
 * caller never sees EAGAIN.  timeout_ms (-1 = no limit) bounds the waiting:
 * for sp_read, sp_accept, sp_connect and sp_wait the whole call; for the
 * writing calls (sp_write, sp_writev, sp_sendfile) each stretch of time in
 * which the peer takes no bytes, so a slow reader that keeps reading is never
 * cut off and one that stops is dropped timeout_ms later (nginx's
 * send_timeout).  Errors come back as -errno: -ETIMEDOUT when the timeout
 * expires, -ECANCELED when the fd is closed with sp_close() while the fiber
 * waits on it, or at any time after the call began (another thread or fiber
 * closed it): the call never goes on with a file that got the number since.
 */
#ifndef SPINDLE_IO_H
#define SPINDLE_IO_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

enum sp_io_dir { SP_IO_READ = 1, SP_IO_WRITE = 2 };

/* Reads at most len bytes.  Returns the count (0 at end of stream) or -errno. */
ssize_t sp_read(int fd, void *buf, size_t len, int64_t timeout_ms);

/* recvmsg(2) on a socket (ancillary data, such as passed fds, included).
 * Returns the count (0 at end of stream) or -errno.  Borrows msg. */
struct msghdr;
ssize_t sp_recvmsg(int fd, struct msghdr *msg, int flags, int64_t timeout_ms);

/*
 * One read attempt that never parks: returns the count, 0 at end of stream,
 * -EAGAIN when nothing is there (the one call that shows EAGAIN), or -errno.
 * Made for handing an idle connection to sp_iom_watch(): after -EAGAIN, or
 * after a short read (fewer bytes than len), the caller may watch the fd at
 * once; bytes that arrive in between still wake the watch.  Callable off a
 * fiber.  For stream sockets and pipes, where a short read means nothing was
 * left: until a read event comes, the next call answers -EAGAIN without a
 * system call.
 */
ssize_t sp_try_read(int fd, void *buf, size_t len);

/* Writes all len bytes.  Returns len or -errno (then an unknown prefix was written). */
ssize_t sp_write(int fd, const void *buf, size_t len, int64_t timeout_ms);

/* Writes every byte of iov[0..iovcnt).  The array is consumed (modified) on the
 * way.  Returns the total or -errno. */
ssize_t sp_writev(int fd, struct iovec *iov, int iovcnt, int64_t timeout_ms);

/* Sends count bytes of in_fd from *offset (advanced) to out_fd.  Returns count,
 * or -errno (-ESPIPE style errors of sendfile pass through). */
ssize_t sp_sendfile(int out_fd, int in_fd, off_t *offset, size_t count, int64_t timeout_ms);

/* Accepts a connection; the new fd is non-blocking and close-on-exec.
 * addr/addrlen may be NULL.  Returns the fd or -errno (-EMFILE, ...). */
int sp_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t timeout_ms);

/* Accepts a connection without waiting: -EAGAIN when none is queued.  What an
 * sp_iom_listen() callback calls until -EAGAIN. */
int sp_try_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);

/* Connects a non-blocking socket.  Returns 0 or -errno. */
int sp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t timeout_ms);

/*
 * For a connection kept idle (a pool of upstream connections): 1 when the
 * peer has sent nothing and not hung up, 0 when bytes, an end of stream or an
 * error wait (the connection is of no use idle), or -errno.  The first call
 * for an fd looks with one recv(MSG_PEEK) and registers the fd with the
 * poller; later ones answer from the scheduler's cached readiness without a
 * system call, unless readiness was seen while nobody waited (then they look
 * again).  What arrives after the answer is the caller's race to handle, as
 * with any look.
 */
int sp_idle_quiet(int fd);

/* Parks the fiber until fd is readable or writable (dir).  Returns 0 or -errno.
 * In single-thread mode readiness seen while nobody waited is cached, so it may
 * return 0 at once: callers retry their I/O and wait again on EAGAIN. */
int sp_wait(int fd, enum sp_io_dir dir, int64_t timeout_ms);

/* Parks the fiber for ms milliseconds.  Returns 0. */
int sp_sleep(int64_t ms);

/* Lets every other runnable fiber run once, then continues. */
void sp_yield(void);

/*
 * Closes fd after waking every fiber parked on it (-ECANCELED) and cancelling
 * its watch, and forgets its cached state, so that a stale event for the old
 * fd is never delivered to whoever gets the number next.  Use it instead of
 * close() for every fd the fiber I/O calls have seen.  Callable off a fiber.
 * Returns 0 or -errno from close().
 */
int sp_close(int fd);

#endif
