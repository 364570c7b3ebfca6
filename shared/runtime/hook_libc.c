/*
 * libc's own versions of the calls that hook.c defines: sp__libc
 * (internal.h), filled with dlsym(RTLD_NEXT) before main(), for the hooks'
 * own system calls and for the runtime's I/O, which never passes through
 * the hooks.  Also the glibc fortify entry points of the hooked calls.
 */
#undef _FORTIFY_SOURCE /* its inline read(), recv(), poll() would clash with ours */

#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- libc's own calls ------------------------------------------------------
 *
 * Until the constructor runs (and where dlsym cannot find a call, as in a
 * static link), the table holds these: the same system calls through
 * syscall(), so nothing ever calls a NULL pointer or one of our hooks.
 */

static ssize_t fb_read(int fd, void *b, size_t n)
{
    return syscall(SYS_read, fd, b, n);
}
static ssize_t fb_readv(int fd, const struct iovec *v, int n)
{
    return syscall(SYS_readv, fd, v, n);
}
static ssize_t fb_write(int fd, const void *b, size_t n)
{
    return syscall(SYS_write, fd, b, n);
}
static ssize_t fb_writev(int fd, const struct iovec *v, int n)
{
    return syscall(SYS_writev, fd, v, n);
}
static ssize_t fb_recv(int fd, void *b, size_t n, int fl)
{
    return syscall(SYS_recvfrom, fd, b, n, fl, NULL, NULL);
}
static ssize_t fb_recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *a, socklen_t *l)
{
    return syscall(SYS_recvfrom, fd, b, n, fl, a, l);
}
static ssize_t fb_recvmsg(int fd, struct msghdr *m, int fl)
{
    return syscall(SYS_recvmsg, fd, m, fl);
}
static ssize_t fb_send(int fd, const void *b, size_t n, int fl)
{
    return syscall(SYS_sendto, fd, b, n, fl, NULL, 0);
}
static ssize_t fb_sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a,
                         socklen_t l)
{
    return syscall(SYS_sendto, fd, b, n, fl, a, l);
}
static ssize_t fb_sendmsg(int fd, const struct msghdr *m, int fl)
{
    return syscall(SYS_sendmsg, fd, m, fl);
}
static int fb_accept4(int fd, struct sockaddr *a, socklen_t *l, int fl)
{
    return (int)syscall(SYS_accept4, fd, a, l, fl);
}
static int fb_connect(int fd, const struct sockaddr *a, socklen_t l)
{
    return (int)syscall(SYS_connect, fd, a, l);
}
static int fb_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}
static int fb_poll(struct pollfd *p, unsigned long n, int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    return (int)syscall(SYS_ppoll, p, n, ms < 0 ? NULL : &ts, NULL, (size_t)8);
}
static int fb_select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    struct timespec ts, *t = NULL;
    if (tv) {
        ts = (struct timespec){.tv_sec = tv->tv_sec, .tv_nsec = tv->tv_usec * 1000};
        t = &ts;
    }
    return (int)syscall(SYS_pselect6, n, r, w, e, t, NULL);
}
static int fb_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}
static int fb_ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return (int)syscall(SYS_ioctl, fd, req, arg);
}
static int fb_setsockopt(int fd, int lv, int nm, const void *v, socklen_t l)
{
    return (int)syscall(SYS_setsockopt, fd, lv, nm, v, l);
}
static int fb_socket(int d, int t, int p)
{
    return (int)syscall(SYS_socket, d, t, p);
}
static int fb_dup(int fd)
{
    return (int)syscall(SYS_dup, fd);
}
static int fb_dup3(int fd, int fd2, int fl)
{
    return (int)syscall(SYS_dup3, fd, fd2, fl);
}
static int fb_dup2(int fd, int fd2)
{
    if (fd == fd2) /* dup3 refuses this one; dup2 checks fd and returns it */
        return syscall(SYS_fcntl, fd, F_GETFD) < 0 ? -1 : fd2;
    return fb_dup3(fd, fd2, 0);
}
static int fb_nanosleep(const struct timespec *req, struct timespec *rem)
{
    return (int)syscall(SYS_nanosleep, req, rem);
}
static unsigned fb_sleep(unsigned s)
{
    struct timespec ts = {.tv_sec = s}, rem;
    return fb_nanosleep(&ts, &rem) == 0 ? 0 : (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
}
static int fb_usleep(useconds_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    return fb_nanosleep(&ts, NULL);
}

struct sp__libc sp__libc = {
    .read = fb_read,
    .readv = fb_readv,
    .write = fb_write,
    .writev = fb_writev,
    .recv = fb_recv,
    .recvfrom = fb_recvfrom,
    .recvmsg = fb_recvmsg,
    .send = fb_send,
    .sendto = fb_sendto,
    .sendmsg = fb_sendmsg,
    .accept4 = fb_accept4,
    .connect = fb_connect,
    .close = fb_close,
    .poll = fb_poll,
    .select = fb_select,
    .fcntl = fb_fcntl,
    .ioctl = fb_ioctl,
    .setsockopt = fb_setsockopt,
    .socket = fb_socket,
    .dup = fb_dup,
    .dup2 = fb_dup2,
    .dup3 = fb_dup3,
    .nanosleep = fb_nanosleep,
    .sleep = fb_sleep,
    .usleep = fb_usleep,
};

#define RESOLVE(name)                                                                              \
    do {                                                                                           \
        void *p = dlsym(RTLD_NEXT, #name);                                                         \
        if (p)                                                                                     \
            *(void **)&sp__libc.name = p;                                                          \
    } while (0)

/* Runs before main() and before any other constructor of the program's
 * (priority 101, the first one not reserved). */
__attribute__((constructor(101))) static void resolve_libc(void)
{
    RESOLVE(read);
    RESOLVE(readv);
    RESOLVE(write);
    RESOLVE(writev);
    RESOLVE(recv);
    RESOLVE(recvfrom);
    RESOLVE(recvmsg);
    RESOLVE(send);
    RESOLVE(sendto);
    RESOLVE(sendmsg);
    RESOLVE(accept4);
    RESOLVE(connect);
    RESOLVE(close);
    RESOLVE(poll);
    RESOLVE(select);
    RESOLVE(fcntl);
    RESOLVE(ioctl);
    RESOLVE(setsockopt);
    RESOLVE(socket);
    RESOLVE(dup);
    RESOLVE(dup2);
    RESOLVE(dup3);
    RESOLVE(nanosleep);
    RESOLVE(sleep);
    RESOLVE(usleep);
}

/* Past the glibc fortify checks (_FORTIFY_SOURCE builds of a library call
 * these instead of read, recv, recvfrom and poll). */
extern void __chk_fail(void) __attribute__((noreturn));
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, __SOCKADDR_ARG addr,
                       socklen_t *addrlen);
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);

ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        __chk_fail();
    return read(fd, buf, len);
}

ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        __chk_fail();
    return recv(fd, buf, len, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, __SOCKADDR_ARG addr,
                       socklen_t *addrlen)
{
    if (len > buflen)
        __chk_fail();
    return recvfrom(fd, buf, len, flags, addr, addrlen);
}

int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds)
        __chk_fail();
    return poll(fds, nfds, timeout);
}
