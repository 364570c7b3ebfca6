/*
 * Private to shared/: the layout of a fiber and the hooks between the fiber
 * module, the IOManager and fiber I/O.  Never included outside shared/.
 */
#ifndef SPINDLE_INTERNAL_H
#define SPINDLE_INTERNAL_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "spindle/fiber.h"
#include "spindle/iomanager.h"
#include "spindle/timer.h"
#include "spindle/waitq.h"

#ifdef SP_FIBER_UCONTEXT
#include <ucontext.h>
#endif

#define sp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#if defined(__SANITIZE_ADDRESS__)
#define SP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_ASAN 1
#endif
#endif

struct sp_fiber {
    /* Context switch.  sp is the saved stack pointer while switched out;
     * resumer_sp the one of whoever resumed us. */
    void *sp;
    void *resumer_sp;
#ifdef SP_FIBER_UCONTEXT
    ucontext_t uc, resumer_uc;
#endif
#ifdef SP_ASAN
    void *fake_stack;
    const void *resumer_stack;
    size_t resumer_stack_size;
#endif
    unsigned valgrind_id;

    sp_fiber_fn *fn;
    void *arg;
    void *data;
    struct sp_fiber_pool *pool;
    char *stack_lo; /* usable stack: [stack_lo, stack_lo + stack_size) */
    size_t stack_size;
    void *map;
    size_t map_len;
    struct sp_fiber *next_free;
    unsigned char finished;

    /* Scheduler fields, owned by the IOManager (iomanager.c). */
    unsigned char parking;    /* switched out to wait: the scheduler commits the wait;
                                 otherwise it switched out to yield */
    unsigned char wait_dir;   /* SP_IO_READ or SP_IO_WRITE; 0 = timer only */
    unsigned char wait_retry; /* parked right after EAGAIN: the cached readiness is stale */
    int wait_fd;
    uint32_t wait_gen; /* wait_fd's generation when the call began (see sp__iom_fd_gen) */
    int wait_result;
    uint64_t wait_deadline;      /* 0 = none */
    struct sp_waitq_node *waitq; /* queued on a wait queue (waitq.h); NULL otherwise */
    unsigned budget;
    struct sp_timer timer;
    struct sp_fiber *run_next;
    struct sp_fiber *live_prev, *live_next;
    struct sp_iom *iom;
};

/*
 * io.c -> iomanager.c: the generation of fd in the running fiber's
 * IOManager (0 off a fiber).  With several scheduler threads it also checks
 * that no other thread has fd (and aborts if one has).  A call takes it
 * before its first system call and hands it to every park, so that a wait
 * never lands on another file that got the number after an sp_close() in
 * between (by another fiber while this one was queued to run).
 */
uint32_t sp__iom_fd_gen(int fd);

/* io.c -> iomanager.c: park the running fiber on fd (dir) and/or until
 * deadline (ns, 0 = none).  retry means the caller just saw EAGAIN; gen is
 * what sp__iom_fd_gen(fd) returned when the call began.  Returns the wake-up
 * result: 0, -ETIMEDOUT, -ECANCELED (also when fd was closed since the call
 * began), or -EPERM off a fiber. */
int sp__iom_park(int fd, unsigned dir, uint64_t deadline, int retry, uint32_t gen);

/* Counts one successful I/O call against the fiber's budget; yields when spent. */
void sp__iom_io_done(void);

/* sp_try_read()'s two halves around its read: begin answers true when fd is
 * known to hold nothing (drained by the last sp_try_read, no read event
 * since), else forgets fd's cached read readiness; end records whether the
 * read came back short (drained). */
bool sp__iom_read_begin(int fd);
void sp__iom_read_end(int fd, bool drained);

/* Set once the process has started scheduler threads (and stays set: so
 * does libc's own notion).  See sys_read() in io.c. */
extern int sp__threaded;

/* Tests only: arm listeners without the one-shot guard (sp_iom_listen), so
 * that two threads can be woken for one listener at once. */
extern int sp__iom_unguarded_listeners;

/* Closes fd through the IOManager of this thread (see sp_close). */
int sp__iom_close(int fd);

/*
 * libc's own versions of the calls that hook.c defines (spindle/hook.h),
 * found with dlsym(RTLD_NEXT) before main().  The runtime's own fiber I/O
 * (io.c) and the IOManager's closes call these, so that they never pass
 * through the hooks: their fds are non-blocking already, and the built-in
 * services must not pay for a check they never need.
 */
struct msghdr;
struct iovec;
struct sockaddr;
struct pollfd;
struct sp__libc {
    ssize_t (*read)(int fd, void *buf, size_t len);
    ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*write)(int fd, const void *buf, size_t len);
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*recvfrom)(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                        socklen_t *addrlen);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                      socklen_t addrlen);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
    int (*close)(int fd);
    int (*poll)(struct pollfd *fds, unsigned long nfds, int timeout);
    int (*select)(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv);
    int (*fcntl)(int fd, int cmd, ...);
    int (*ioctl)(int fd, unsigned long req, ...);
    int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
    int (*socket)(int domain, int type, int protocol);
    int (*dup)(int fd);
    int (*dup2)(int fd, int fd2);
    int (*dup3)(int fd, int fd2, int flags);
    int (*nanosleep)(const struct timespec *req, struct timespec *rem);
    unsigned (*sleep)(unsigned seconds);
    int (*usleep)(useconds_t us);
};
extern struct sp__libc sp__libc;

/* iomanager.c -> hook.c: fd is being closed by the runtime (sp_close):
 * drop hook.c's record of it. */
void sp__hook_forget(int fd);

/* hook.c -> iomanager.c: park the running fiber until one of fds[0..n) has
 * one of the events it asks for (poll(2)'s bits), or until deadline (ns, 0 =
 * none), through a temporary poller.  Returns 0, -ETIMEDOUT or -errno. */
int sp__iom_park_poll(const struct pollfd *fds, unsigned long n, uint64_t deadline);

/* Converts a relative timeout in ms (-1 = none) to an absolute deadline (0 =
 * none), counted from a fresh clock reading: a timeout never ends before the
 * time asked for, however long the scheduler pass has run (the pass's cached
 * reading, clock.h, could be older by that much). */
static inline uint64_t sp__deadline(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return 0;
    return sp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/* The same, counted from this scheduler pass's clock reading (no clock read):
 * for the idle bounds of fiber-less watches, which are set at the end of
 * every exchange and may end early by the time the pass has run so far, as
 * nginx's timers count from ngx_current_msec. */
static inline uint64_t sp__deadline_pass(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return 0;
    return sp_clock_pass_ns() + (uint64_t)timeout_ms * 1000000ull;
}

#endif
