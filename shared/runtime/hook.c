/*
 * System call hooks (spindle/hook.h), in the manner of libco's
 * co_hook_sys_call.cpp and sylar's hook.cc: this file defines read(),
 * write(), connect(), poll(), sleep() ... in the program, and each finds
 * libc's own with dlsym(RTLD_NEXT) before main() (sp__libc, hook_libc.c).
 *
 * Who pays what.  A call goes straight to libc after one load when the
 * hooks were never enabled in the process (the master); otherwise after a
 * look at the thread's fiber and, for an fd, at its record.  The runtime's
 * own fiber I/O never comes here (io.c calls sp__libc), so the built-in
 * services pay nothing.
 *
 * The record of an fd.  Made when a hooked socket() or accept() creates the
 * fd, or the first time a fiber calls a hook on an fd nobody told us about
 * (fstat, F_GETFL and the two timeouts: once per fd), and cleared by close()
 * and by the runtime's sp_close(), whoever calls them; dup(), dup2(), dup3()
 * and F_DUPFD copy it, since the copies share the file's flags.  It says
 * whether the fd is a socket, whether the program made it non-blocking
 * (FD_USER_NB), whether a fiber had it made non-blocking underneath
 * (FD_SYS_NB), whether a fiber has parked on it (so the IOManager has it
 * registered and close() must go through sp_close), and SO_RCVTIMEO and
 * SO_SNDTIMEO.  Records sit in chunks allocated once and published with a
 * compare-and-swap, and each is changed with atomic operations: a worker
 * may run several scheduler threads, although one fd is used by one thread
 * at a time (the IOManager's owner check sees to that for fibers).
 *
 * Only sockets are made to block on a fiber: a pipe, a terminal or a file
 * goes to libc as it is (poll() on any fd parks, though).  A socket a fiber
 * made non-blocking underneath stays so after the fiber is done; a later
 * call on it from a thread of the program's own still blocks, in poll(), as
 * libc's call would have.  O_NONBLOCK belongs to the open file
 * description, so a socket inherited from another process changes for that
 * process too: the runtime's error log, which may be such a socket (stderr
 * under systemd), is written past the hooks for that reason.
 */
#undef _FORTIFY_SOURCE /* its inline read(), recv(), poll() would clash with ours */

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "spindle/clock.h"
#include "spindle/hook.h"
#include "spindle/io.h"

/* glibc declares the socket calls' address arguments as transparent unions
 * under _GNU_SOURCE; the definitions must use the same types. */
#define SA(a) ((a).__sockaddr__)

/* ---- switches -------------------------------------------------------------- */

static int hook_on;   /* sp_hook_enable() */
static int hook_used; /* ever enabled: records may exist */

void sp_hook_enable(bool on)
{
    __atomic_store_n(&hook_on, on, __ATOMIC_RELAXED);
    if (on)
        __atomic_store_n(&hook_used, 1, __ATOMIC_RELAXED);
}

bool sp_hook_enabled(void)
{
    return __atomic_load_n(&hook_on, __ATOMIC_RELAXED);
}

static inline bool used(void)
{
    return __atomic_load_n(&hook_used, __ATOMIC_RELAXED);
}

/* The hooks act here: enabled, and the thread runs a fiber of an IOManager. */
static bool on_fiber(void)
{
    if (!__atomic_load_n(&hook_on, __ATOMIC_RELAXED))
        return false;
    struct sp_fiber *f = sp_fiber_current();
    return f && f->iom;
}

/* ---- records --------------------------------------------------------------- */

enum {
    FD_KNOWN = 1,   /* the record describes the fd that is open now */
    FD_SOCKET = 2,  /* it is a socket */
    FD_USER_NB = 4, /* the program made it non-blocking (or created it so) */
    FD_SYS_NB = 8,  /* a hook made it non-blocking underneath */
    FD_PARKED = 16, /* a fiber parked on it: the IOManager may have it registered */
};

struct hook_fd {
    unsigned char state; /* FD_* bits, changed atomically */
    int64_t rcv_ns;      /* SO_RCVTIMEO, 0 = none */
    int64_t snd_ns;      /* SO_SNDTIMEO, 0 = none */
};

#define CHUNK_BITS 12
#define CHUNK      (1u << CHUNK_BITS)
#define CHUNKS     256u /* fds up to 1M have records; beyond, every call is libc's */

static struct hook_fd *chunks[CHUNKS];

/* The record slot of fd; its chunk is made when create is set.  NULL when
 * fd is out of range or memory ran out (then the call is libc's). */
static struct hook_fd *slot(int fd, bool create)
{
    if (fd < 0 || (unsigned)fd >= CHUNK * CHUNKS)
        return NULL;
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    struct hook_fd *chunk = __atomic_load_n(&chunks[c], __ATOMIC_ACQUIRE);
    if (!chunk) {
        if (!create)
            return NULL;
        struct hook_fd *fresh = calloc(CHUNK, sizeof(*fresh));
        if (!fresh)
            return NULL;
        if (__atomic_compare_exchange_n(&chunks[c], &chunk, fresh, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            chunk = fresh;
        else
            free(fresh); /* another thread was first */
    }
    return &chunk[(unsigned)fd & (CHUNK - 1)];
}

static inline unsigned state_of(const struct hook_fd *h)
{
    return h ? __atomic_load_n(&h->state, __ATOMIC_ACQUIRE) : 0;
}

static void set_bits(struct hook_fd *h, unsigned bits, bool on)
{
    if (on)
        __atomic_fetch_or(&h->state, (unsigned char)bits, __ATOMIC_ACQ_REL);
    else
        __atomic_fetch_and(&h->state, (unsigned char)~bits, __ATOMIC_ACQ_REL);
}

static void publish(struct hook_fd *h, unsigned state, int64_t rcv_ns, int64_t snd_ns)
{
    __atomic_store_n(&h->rcv_ns, rcv_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&h->snd_ns, snd_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&h->state, (unsigned char)state, __ATOMIC_RELEASE);
}

static int64_t timeval_ns(const struct timeval *tv)
{
    if (tv->tv_sec < 0 || tv->tv_usec < 0)
        return 0;
    return (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
}

static int64_t sockopt_ns(int fd, int name)
{
    struct timeval tv;
    socklen_t len = sizeof(tv);
    if (getsockopt(fd, SOL_SOCKET, name, &tv, &len) != 0)
        return 0;
    return timeval_ns(&tv);
}

/* Fills h for an fd nobody told us about.  Returns 0, or -1 if fd is not open. */
static int learn(int fd, struct hook_fd *h)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if (!S_ISSOCK(st.st_mode)) {
        publish(h, FD_KNOWN, 0, 0);
        return 0;
    }
    int fl = sp__libc.fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    publish(h, FD_KNOWN | FD_SOCKET | (fl & O_NONBLOCK ? FD_USER_NB : 0),
            sockopt_ns(fd, SO_RCVTIMEO), sockopt_ns(fd, SO_SNDTIMEO));
    return 0;
}

void sp__hook_forget(int fd)
{
    struct hook_fd *h = used() ? slot(fd, false) : NULL;
    if (h)
        __atomic_store_n(&h->state, 0, __ATOMIC_RELEASE);
}

/* A new socket (socket(), accept()): its record, without asking the kernel. */
static void record_socket(int fd, bool user_nb, bool sys_nb)
{
    struct hook_fd *h = fd >= 0 ? slot(fd, true) : NULL;
    if (h)
        publish(h, FD_KNOWN | FD_SOCKET | (user_nb ? FD_USER_NB : 0) | (sys_nb ? FD_SYS_NB : 0), 0,
                0);
}

/* fd2 is a copy of fd (dup): it shares fd's flags, so it gets fd's record. */
static void copy_record(int fd, int fd2)
{
    struct hook_fd *from = slot(fd, false), *to = fd2 >= 0 ? slot(fd2, true) : NULL;
    if (!to)
        return;
    unsigned st = state_of(from);
    if (!(st & FD_KNOWN)) {
        __atomic_store_n(&to->state, 0, __ATOMIC_RELEASE); /* learnt when needed */
        return;
    }
    publish(to, st & ~FD_PARKED, __atomic_load_n(&from->rcv_ns, __ATOMIC_RELAXED),
            __atomic_load_n(&from->snd_ns, __ATOMIC_RELAXED));
}

/*
 * The record of fd when a call on it has to block on top of a non-blocking
 * socket; NULL when the call is libc's: off the hooks' reach, not a socket,
 * made non-blocking by the program, or (off a fiber) never touched by one.
 * *fiber says whether to park the fiber or block the thread.
 */
static struct hook_fd *blocking_fd(int fd, bool *fiber)
{
    if (!used())
        return NULL;
    bool on = on_fiber();
    struct hook_fd *h = slot(fd, on);
    unsigned st = state_of(h);
    if (!(st & FD_KNOWN)) {
        if (!on || !h || learn(fd, h) < 0)
            return NULL;
        st = state_of(h);
    }
    if ((st & (FD_SOCKET | FD_USER_NB)) != FD_SOCKET)
        return NULL;
    if (!(st & FD_SYS_NB)) {
        if (!on)
            return NULL;
        int fl = sp__libc.fcntl(fd, F_GETFL);
        if (fl < 0 || sp__libc.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return NULL;
        set_bits(h, FD_SYS_NB, true);
    }
    *fiber = on;
    return h;
}

/* ---- waiting --------------------------------------------------------------- */

struct wait {
    struct hook_fd *h;
    int fd;
    unsigned dir; /* SP_IO_READ or SP_IO_WRITE */
    bool fiber;
    bool armed;
    bool gen_taken;
    uint32_t gen; /* the fd's generation at the first wait (io.c takes it at the start) */
    uint64_t deadline;
};

static void wait_init(struct wait *w, struct hook_fd *h, int fd, unsigned dir, bool fiber)
{
    *w = (struct wait){.h = h, .fd = fd, .dir = dir, .fiber = fiber};
}

/*
 * Waits until the fd is ready for w->dir, or the socket's timeout for that
 * direction, counted from the call's first wait, has passed: a blocking
 * socket call's SO_RCVTIMEO/SO_SNDTIMEO bounds the whole call, as Linux's
 * does.  Returns 0, -ETIMEDOUT, -ECANCELED (closed meanwhile) or -errno.
 */
static int wait_ready(struct wait *w)
{
    if (!w->armed) {
        int64_t t =
            __atomic_load_n(w->dir == SP_IO_READ ? &w->h->rcv_ns : &w->h->snd_ns, __ATOMIC_RELAXED);
        w->deadline = t > 0 ? sp_now_ns() + (uint64_t)t : 0;
        w->armed = true;
    }
    if (w->fiber) {
        /* Only now, once the call must wait: taking the generation makes the
         * fd this scheduler thread's (the IOManager's owner map), and only an
         * fd marked FD_PARKED is closed through sp_close, which gives it
         * back.  Nothing else runs on the thread since the call's EAGAIN. */
        if (!(state_of(w->h) & FD_PARKED))
            set_bits(w->h, FD_PARKED, true);
        if (!w->gen_taken) {
            w->gen = sp__iom_fd_gen(w->fd);
            w->gen_taken = true;
        }
        return sp__iom_park(w->fd, w->dir, w->deadline, 1, w->gen);
    }
    /* Off a fiber, on a socket a fiber made non-blocking: block the thread,
     * as libc's call would have. */
    struct pollfd p = {.fd = w->fd, .events = w->dir == SP_IO_READ ? POLLIN : POLLOUT};
    for (;;) {
        int ms = -1;
        if (w->deadline) {
            uint64_t now = sp_now_ns();
            if (now >= w->deadline)
                return -ETIMEDOUT;
            uint64_t left = (w->deadline - now + 999999) / 1000000;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        int n = sp__libc.poll(&p, 1, ms);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* A failed wait as a blocking call reports it: a timeout is EAGAIN for
 * reads, writes and accept (EINPROGRESS for connect), a close under the
 * call EBADF. */
static long fail(int rc, int timeout_errno)
{
    errno = rc == -ETIMEDOUT ? timeout_errno : rc == -ECANCELED ? EBADF : -rc;
    return -1;
}

/* ---- reading and writing ----------------------------------------------------- */

#define WIN 16 /* iovecs copied at a time when a call goes on after a partial transfer */

static size_t iov_total(const struct iovec *iov, size_t cnt)
{
    size_t n = 0;
    for (size_t i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* The part of iov[0..cnt) after its first skip bytes, at most WIN entries
 * of it, in win.  Returns the entry count. */
static size_t iov_rest(const struct iovec *iov, size_t cnt, size_t skip, struct iovec *win)
{
    size_t i = 0, k = 0;
    while (i < cnt && skip >= iov[i].iov_len)
        skip -= iov[i++].iov_len;
    for (; i < cnt && k < WIN; i++, skip = 0)
        win[k++] = (struct iovec){(char *)iov[i].iov_base + skip, iov[i].iov_len - skip};
    return k;
}

/*
 * A receiving call (read, readv, recv, recvfrom, recvmsg) on a socket the
 * program believes blocking: like libc's, it returns once some bytes came
 * (all of them with MSG_WAITALL, unless the stream ends or the timeout
 * passes), 0 at end of stream, or -1 with errno.  Borrows msg and updates
 * its name length, control length and flags as recvmsg does.
 */
static ssize_t recv_blocking(struct hook_fd *h, int fd, bool fiber, struct msghdr *msg, int flags)
{
    struct wait w;
    wait_init(&w, h, fd, SP_IO_READ, fiber);
    size_t want = flags & MSG_WAITALL ? iov_total(msg->msg_iov, msg->msg_iovlen) : 0;
    size_t done = 0;
    struct msghdr m = *msg;
    struct iovec win[WIN];
    for (;;) {
        ssize_t n = sp__libc.recvmsg(fd, &m, flags);
        if (n > 0 && done + (size_t)n < want) {
            done += (size_t)n;
            m.msg_iov = win;
            m.msg_iovlen = iov_rest(msg->msg_iov, msg->msg_iovlen, done, win);
            continue;
        }
        if (n >= 0) {
            msg->msg_namelen = m.msg_namelen;
            msg->msg_controllen = m.msg_controllen;
            msg->msg_flags = m.msg_flags;
            return (ssize_t)done + n;
        }
        if (errno != EAGAIN)
            return done ? (ssize_t)done : -1;
        int rc = wait_ready(&w);
        if (rc < 0)
            return done ? (ssize_t)done : fail(rc, EAGAIN);
    }
}

/*
 * A sending call (write, writev, send, sendto, sendmsg) on a socket the
 * program believes blocking: like libc's, it returns once every byte is
 * taken, or with the count taken so far when an error or the timeout ends
 * it (-1 with errno if none was).  Ancillary data goes with the first bytes.
 */
static ssize_t send_blocking(struct hook_fd *h, int fd, bool fiber, const struct msghdr *msg,
                             int flags)
{
    struct wait w;
    wait_init(&w, h, fd, SP_IO_WRITE, fiber);
    size_t want = iov_total(msg->msg_iov, msg->msg_iovlen), done = 0;
    struct msghdr m = *msg;
    struct iovec win[WIN];
    for (;;) {
        ssize_t n = sp__libc.sendmsg(fd, &m, flags);
        if (n >= 0) {
            done += (size_t)n;
            if (done >= want || n == 0)
                return (ssize_t)done;
            m.msg_control = NULL;
            m.msg_controllen = 0;
            m.msg_iov = win;
            m.msg_iovlen = iov_rest(msg->msg_iov, msg->msg_iovlen, done, win);
            continue;
        }
        if (errno != EAGAIN)
            return done ? (ssize_t)done : -1;
        int rc = wait_ready(&w);
        if (rc < 0)
            return done ? (ssize_t)done : fail(rc, EAGAIN);
    }
}

ssize_t read(int fd, void *buf, size_t len)
{
    bool fiber;
    struct hook_fd *h = blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.read(fd, buf, len);
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return recv_blocking(h, fd, fiber, &m, 0);
}

ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    bool fiber;
    struct hook_fd *h = iovcnt >= 0 ? blocking_fd(fd, &fiber) : NULL;
    if (!h)
        return sp__libc.readv(fd, iov, iovcnt);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return recv_blocking(h, fd, fiber, &m, 0);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.recv(fd, buf, len, flags);
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return recv_blocking(h, fd, fiber, &m, flags);
}

ssize_t recvfrom(int fd, void *restrict buf, size_t len, int flags, __SOCKADDR_ARG addr,
                 socklen_t *restrict addrlen)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.recvfrom(fd, buf, len, flags, SA(addr), addrlen);
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_name = SA(addr),
                       .msg_namelen = SA(addr) && addrlen ? *addrlen : 0,
                       .msg_iov = &iov,
                       .msg_iovlen = 1};
    ssize_t n = recv_blocking(h, fd, fiber, &m, flags);
    if (n >= 0 && SA(addr) && addrlen)
        *addrlen = m.msg_namelen;
    return n;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.recvmsg(fd, msg, flags);
    return recv_blocking(h, fd, fiber, msg, flags);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    bool fiber;
    struct hook_fd *h = blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.write(fd, buf, len);
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return send_blocking(h, fd, fiber, &m, 0);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    bool fiber;
    struct hook_fd *h = iovcnt >= 0 ? blocking_fd(fd, &fiber) : NULL;
    if (!h)
        return sp__libc.writev(fd, iov, iovcnt);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return send_blocking(h, fd, fiber, &m, 0);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.send(fd, buf, len, flags);
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return send_blocking(h, fd, fiber, &m, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, __CONST_SOCKADDR_ARG addr,
               socklen_t addrlen)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.sendto(fd, buf, len, flags, SA(addr), addrlen);
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_name = (void *)SA(addr),
                       .msg_namelen = SA(addr) ? addrlen : 0,
                       .msg_iov = &iov,
                       .msg_iovlen = 1};
    return send_blocking(h, fd, fiber, &m, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    bool fiber;
    struct hook_fd *h = flags & MSG_DONTWAIT ? NULL : blocking_fd(fd, &fiber);
    if (!h)
        return sp__libc.sendmsg(fd, msg, flags);
    return send_blocking(h, fd, fiber, msg, flags);
}

/* ---- sockets: creation, connect, accept, options --------------------------- */

int socket(int domain, int type, int protocol)
{
    if (!used())
        return sp__libc.socket(domain, type, protocol);
    /* Made non-blocking at once on a fiber: the call costs nothing more. */
    bool on = on_fiber(), user_nb = type & SOCK_NONBLOCK;
    int fd = sp__libc.socket(domain, on ? type | SOCK_NONBLOCK : type, protocol);
    record_socket(fd, user_nb, on && !user_nb);
    return fd;
}

/* Linux ends a blocking connect() that SO_SNDTIMEO cuts short with
 * EINPROGRESS (the connection goes on), and reports the outcome otherwise
 * through SO_ERROR. */
int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    bool fiber;
    struct hook_fd *h = blocking_fd(fd, &fiber);
    int rc = sp__libc.connect(fd, SA(addr), len);
    if (!h || rc == 0 || errno != EINPROGRESS)
        return rc;
    struct wait w;
    wait_init(&w, h, fd, SP_IO_WRITE, fiber);
    rc = wait_ready(&w);
    if (rc < 0)
        return (int)fail(rc, EINPROGRESS);
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
        return -1;
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags)
{
    bool fiber;
    struct hook_fd *h = blocking_fd(fd, &fiber);
    bool user_nb = flags & SOCK_NONBLOCK;
    if (!h) {
        int c = sp__libc.accept4(fd, SA(addr), len, flags);
        if (c >= 0 && used())
            record_socket(c, user_nb, false);
        return c;
    }
    struct wait w;
    wait_init(&w, h, fd, SP_IO_READ, fiber);
    for (;;) {
        int c = sp__libc.accept4(fd, SA(addr), len, fiber ? flags | SOCK_NONBLOCK : flags);
        if (c >= 0) {
            record_socket(c, user_nb, fiber && !user_nb);
            return c;
        }
        if (errno != EAGAIN)
            return -1;
        int rc = wait_ready(&w);
        if (rc < 0)
            return (int)fail(rc, EAGAIN);
    }
}

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
    return accept4(fd, addr, len, 0);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int rc = sp__libc.setsockopt(fd, level, name, val, len);
    if (rc != 0 || !used() || level != SOL_SOCKET || (name != SO_RCVTIMEO && name != SO_SNDTIMEO) ||
        len < (socklen_t)sizeof(struct timeval))
        return rc;
    /* The kernel keeps the timeout too (learn() reads it from there), but
     * its own wait never happens on a socket that is non-blocking. */
    struct hook_fd *h = slot(fd, false);
    if (state_of(h) & FD_KNOWN)
        __atomic_store_n(name == SO_RCVTIMEO ? &h->rcv_ns : &h->snd_ns, timeval_ns(val),
                         __ATOMIC_RELAXED);
    return rc;
}

/* ---- flags ---------------------------------------------------------------- */

/* F_GETFL shows O_NONBLOCK as the program set it; F_SETFL records what the
 * program wants and keeps the socket non-blocking underneath if a hook made
 * it so. */
static int fcntl_hooked(int fd, int cmd, void *arg)
{
    if (!used())
        return sp__libc.fcntl(fd, cmd, arg);
    struct hook_fd *h = slot(fd, false);
    unsigned st = state_of(h);
    switch (cmd) {
    case F_GETFL: {
        int fl = sp__libc.fcntl(fd, F_GETFL);
        if (fl >= 0 && (st & FD_SYS_NB) && !(st & FD_USER_NB))
            fl &= ~O_NONBLOCK;
        return fl;
    }
    case F_SETFL: {
        int fl = (int)(intptr_t)arg;
        if (!(st & FD_KNOWN))
            return sp__libc.fcntl(fd, F_SETFL, fl);
        int rc = sp__libc.fcntl(fd, F_SETFL, st & FD_SYS_NB ? fl | O_NONBLOCK : fl);
        if (rc == 0)
            set_bits(h, FD_USER_NB, fl & O_NONBLOCK);
        return rc;
    }
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        int fd2 = sp__libc.fcntl(fd, cmd, arg);
        if (fd2 >= 0)
            copy_record(fd, fd2);
        return fd2;
    }
    default:
        return sp__libc.fcntl(fd, cmd, arg);
    }
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* what glibc's own fcntl reads, whatever cmd takes */
    va_end(ap);
    return fcntl_hooked(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_hooked(fd, cmd, arg);
}

/* FIONBIO is F_SETFL's O_NONBLOCK by another name. */
int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req != FIONBIO || !arg || !used())
        return sp__libc.ioctl(fd, req, arg);
    struct hook_fd *h = slot(fd, false);
    unsigned st = state_of(h);
    if (!(st & FD_KNOWN))
        return sp__libc.ioctl(fd, req, arg);
    bool nb = *(const int *)arg != 0;
    if (!nb && (st & FD_SYS_NB)) {
        set_bits(h, FD_USER_NB, false); /* stays non-blocking underneath */
        return 0;
    }
    int rc = sp__libc.ioctl(fd, req, arg);
    if (rc == 0)
        set_bits(h, FD_USER_NB, nb);
    return rc;
}

/* ---- close and dup ----------------------------------------------------------- */

/* A socket a fiber parked on may be registered with the IOManager, which
 * must forget it before the number is reused: sp_close() does both. */
int close(int fd)
{
    struct hook_fd *h = used() ? slot(fd, false) : NULL;
    if (h && (__atomic_exchange_n(&h->state, 0, __ATOMIC_ACQ_REL) & FD_PARKED)) {
        int rc = sp__iom_close(fd);
        if (rc < 0) {
            errno = -rc;
            return -1;
        }
        return 0;
    }
    return sp__libc.close(fd);
}

/* dup2/dup3 close fd2 first if it is open: the same care as close(). */
static void before_replace(int fd, int fd2)
{
    struct hook_fd *h = fd != fd2 && used() ? slot(fd2, false) : NULL;
    if (h && (__atomic_exchange_n(&h->state, 0, __ATOMIC_ACQ_REL) & FD_PARKED))
        sp__iom_close(fd2);
}

int dup(int fd)
{
    int fd2 = sp__libc.dup(fd);
    if (fd2 >= 0 && used())
        copy_record(fd, fd2);
    return fd2;
}

int dup2(int fd, int fd2)
{
    before_replace(fd, fd2);
    int rc = sp__libc.dup2(fd, fd2);
    if (rc >= 0 && fd != fd2 && used())
        copy_record(fd, fd2);
    return rc;
}

int dup3(int fd, int fd2, int flags)
{
    before_replace(fd, fd2);
    int rc = sp__libc.dup3(fd, fd2, flags);
    if (rc >= 0 && used())
        copy_record(fd, fd2);
    return rc;
}

/* ---- poll, select, sleep ------------------------------------------------------ */

/* The one direction that events asks for, or 0 if it is not a single one. */
static unsigned poll_dir(short events)
{
    short ev = events & ~(POLLRDHUP | POLLERR | POLLHUP);
    if (ev && !(ev & ~(POLLIN | POLLRDNORM)))
        return SP_IO_READ;
    if (ev && !(ev & ~(POLLOUT | POLLWRNORM)))
        return SP_IO_WRITE;
    return 0;
}

/* Parks until one of fds may be ready or deadline (0 = none) passes.
 * Returns 0, -ETIMEDOUT or -errno. */
static int park_poll(struct pollfd *fds, nfds_t n, uint64_t deadline)
{
    if (n == 0)
        return sp__iom_park(-1, 0, deadline, 0, 0);
    unsigned dir = n == 1 ? poll_dir(fds[0].events) : 0;
    struct hook_fd *h = dir ? slot(fds[0].fd, true) : NULL;
    if (h && ((state_of(h) & FD_KNOWN) || learn(fds[0].fd, h) == 0)) {
        /* One fd, one direction: park on it directly, as a read would. */
        set_bits(h, FD_PARKED, true);
        return sp__iom_park(fds[0].fd, dir, deadline, 1, sp__iom_fd_gen(fds[0].fd));
    }
    return sp__iom_park_poll(fds, n, deadline);
}

/* Tries without waiting first; parks only when nothing is ready, then asks
 * poll() again for the revents. */
int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (timeout == 0 || !used() || !on_fiber())
        return sp__libc.poll(fds, nfds, timeout);
    int r = sp__libc.poll(fds, nfds, 0);
    if (r != 0)
        return r;
    uint64_t deadline = timeout < 0 ? 0 : sp_now_ns() + (uint64_t)timeout * 1000000;
    for (;;) {
        int rc = park_poll(fds, nfds, deadline);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc < 0 && rc != -ECANCELED) {
            errno = -rc;
            return -1;
        }
        r = sp__libc.poll(fds, nfds, 0); /* a closed fd shows as POLLNVAL */
        if (r != 0)
            return r;
        if (deadline && sp_now_ns() >= deadline)
            return 0;
    }
}

#define SELECT_IN  (POLLIN | POLLHUP | POLLERR) /* what select() counts as readable: the */
#define SELECT_OUT (POLLOUT | POLLERR)          /* kernel's POLLIN_SET and POLLOUT_SET */

/* select() through the hooked poll(): the same sets, the same count, and
 * the time left written back to tv as Linux does. */
int select(int nfds, fd_set *restrict rd, fd_set *restrict wr, fd_set *restrict ex,
           struct timeval *restrict tv)
{
    if ((tv && tv->tv_sec == 0 && tv->tv_usec == 0) || nfds < 0 || nfds > FD_SETSIZE || !used() ||
        !on_fiber())
        return sp__libc.select(nfds, rd, wr, ex, tv);
    if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)) {
        errno = EINVAL;
        return -1;
    }
    struct pollfd small[16], *p = small;
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++)
        n += (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) || (ex && FD_ISSET(fd, ex));
    if (n > 16 && !(p = malloc(n * sizeof(*p)))) {
        errno = ENOMEM;
        return -1;
    }
    n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev =
            (short)((rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                    (ex && FD_ISSET(fd, ex) ? POLLPRI : 0));
        if (ev)
            p[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int ms = -1;
    uint64_t start = sp_now_ns(), limit = 0;
    if (tv) {
        limit = (uint64_t)tv->tv_sec * 1000000000 + (uint64_t)tv->tv_usec * 1000;
        uint64_t m = (limit + 999999) / 1000000;
        ms = m > INT_MAX ? INT_MAX : (int)m;
    }
    int r = poll(p, n, ms);
    for (nfds_t i = 0; r > 0 && i < n; i++)
        if (p[i].revents & POLLNVAL) {
            errno = EBADF;
            r = -1;
        }
    if (r >= 0) {
        int count = 0;
        for (nfds_t i = 0; i < n; i++) {
            int fd = p[i].fd;
            short re = p[i].revents;
            if (rd && FD_ISSET(fd, rd) && !(re & SELECT_IN))
                FD_CLR(fd, rd);
            if (wr && FD_ISSET(fd, wr) && !(re & SELECT_OUT))
                FD_CLR(fd, wr);
            if (ex && FD_ISSET(fd, ex) && !(re & POLLPRI))
                FD_CLR(fd, ex);
            count += (rd && FD_ISSET(fd, rd)) + (wr && FD_ISSET(fd, wr)) + (ex && FD_ISSET(fd, ex));
        }
        r = count;
        if (tv) {
            uint64_t spent = sp_now_ns() - start, left = spent < limit ? limit - spent : 0;
            tv->tv_sec = (time_t)(left / 1000000000);
            tv->tv_usec = (suseconds_t)(left % 1000000000 / 1000);
        }
    }
    if (p != small)
        free(p);
    return r;
}

/* Parks the fiber for ns nanoseconds. */
static void park_ns(uint64_t ns)
{
    if (ns)
        sp__iom_park(-1, 0, sp_now_ns() + ns, 0, 0);
}

unsigned sleep(unsigned seconds)
{
    if (!used() || !on_fiber())
        return sp__libc.sleep(seconds);
    park_ns((uint64_t)seconds * 1000000000);
    return 0;
}

int usleep(useconds_t us)
{
    if (!used() || !on_fiber())
        return sp__libc.usleep(us);
    park_ns((uint64_t)us * 1000);
    return 0;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!used() || !on_fiber())
        return sp__libc.nanosleep(req, rem);
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= 1000000000) {
        errno = EINVAL;
        return -1;
    }
    park_ns((uint64_t)req->tv_sec * 1000000000 + (uint64_t)req->tv_nsec);
    return 0;
}

/* ---- getpid -------------------------------------------------------------- */

/*
 * getpid() with one system call per process instead of one per call.  glibc
 * stopped caching the pid in 2.25, and OpenSSL asks for it on every use of
 * its random generator, to notice a fork: three times per TLS handshake.
 * The answer is kept in a page the kernel hands every child of a fork, or of
 * a clone() without CLONE_VM, zeroed (MADV_WIPEONFORK, Linux 4.14), so a
 * child asks again however it was made.  Where no such page can be had,
 * every call asks the kernel, as glibc's does.
 */
static _Atomic(_Atomic(pid_t) *) pid_page; /* the page, once mapped */
static atomic_bool pid_page_none;

static _Atomic(pid_t) *pid_page_get(void)
{
    _Atomic(pid_t) *p = atomic_load_explicit(&pid_page, memory_order_acquire);
    if (p || atomic_load_explicit(&pid_page_none, memory_order_relaxed))
        return p;
    size_t len = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        atomic_store(&pid_page_none, true);
        return NULL;
    }
    if (madvise(m, len, MADV_WIPEONFORK) != 0) {
        munmap(m, len);
        atomic_store(&pid_page_none, true);
        return NULL;
    }
    _Atomic(pid_t) *none = NULL;
    if (!atomic_compare_exchange_strong(&pid_page, &none, (_Atomic(pid_t) *)m)) {
        munmap(m, len); /* another thread's came first */
        return none;
    }
    return (_Atomic(pid_t) *)m;
}

pid_t getpid(void)
{
    _Atomic(pid_t) *p = pid_page_get();
    pid_t pid = p ? atomic_load_explicit(p, memory_order_relaxed) : 0;
    if (pid == 0) {
        pid = (pid_t)syscall(SYS_getpid);
        if (p)
            atomic_store_explicit(p, pid, memory_order_relaxed);
    }
    return pid;
}
