/*
 * The epoll poller backend: the only file that calls epoll_*.  The wake-up
 * channel is an eventfd registered level-triggered, so one write wakes every
 * thread in epoll_wait until it is read back.
 */
#include "poller.h"

#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(SP_POLL_IN == EPOLLIN && SP_POLL_OUT == EPOLLOUT && SP_POLL_ERR == EPOLLERR &&
                   SP_POLL_HUP == EPOLLHUP && SP_POLL_RDHUP == EPOLLRDHUP &&
                   SP_POLL_EDGE == EPOLLET && SP_POLL_ONESHOT == EPOLLONESHOT,
               "poller event bits are epoll's");

struct sp_poll_event {
    struct epoll_event ev;
};

static inline uint64_t sp__poll_event_data(const struct sp_poll_event *ev)
{
    return ev->ev.data.u64;
}

static inline uint32_t sp__poll_event_events(const struct sp_poll_event *ev)
{
    return ev->ev.events;
}

struct sp_poller {
    int epfd;
    int wakefd;
};

struct sp_poller *sp__poller_new(void)
{
    struct sp_poller *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    p->wakefd = -1;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        goto fail;
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = SP_POLL_WAKE};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0)
        goto fail;
    return p;
fail : {
    int err = errno;
    sp__poller_free(p);
    errno = err;
    return NULL;
}
}

void sp__poller_free(struct sp_poller *p)
{
    if (!p)
        return;
    if (p->epfd >= 0)
        sp__libc.close(p->epfd);
    if (p->wakefd >= 0)
        sp__libc.close(p->wakefd);
    free(p);
}

static int ctl(struct sp_poller *p, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(p->epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

int sp__poller_add(struct sp_poller *p, int fd, uint32_t events, uint64_t data)
{
    return ctl(p, EPOLL_CTL_ADD, fd, events, data);
}

int sp__poller_mod(struct sp_poller *p, int fd, uint32_t events, uint64_t data)
{
    return ctl(p, EPOLL_CTL_MOD, fd, events, data);
}

int sp__poller_del(struct sp_poller *p, int fd)
{
    return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

int sp__poller_add_poller(struct sp_poller *p, struct sp_poller *inner, uint64_t data)
{
    return ctl(p, EPOLL_CTL_ADD, inner->epfd, EPOLLIN, data);
}

int sp__poller_fd(const struct sp_poller *p)
{
    return p->epfd;
}

int sp__poller_wait(struct sp_poller *p, struct sp_poll_event *out, int max, int timeout_ms)
{
    /* The array is one of struct epoll_event: the wrapper adds nothing. */
    _Static_assert(sizeof(struct sp_poll_event) == sizeof(struct epoll_event), "no padding");
    struct epoll_event *ev = (struct epoll_event *)(void *)out;
    /* With several threads, not epoll_wait(): see sys_read() in io.c. */
    int n = sp__threaded
                ? (int)syscall(SYS_epoll_pwait, p->epfd, ev, max, timeout_ms, NULL, (size_t)8)
                : epoll_wait(p->epfd, ev, max, timeout_ms);
    return n < 0 ? -errno : n;
}

void sp__poller_wake(struct sp_poller *p)
{
    uint64_t one = 1;
    ssize_t n = sp__libc.write(p->wakefd, &one, sizeof(one));
    (void)n;
}

void sp__poller_clear_wake(struct sp_poller *p)
{
    uint64_t v;
    ssize_t n = sp__libc.read(p->wakefd, &v, sizeof(v));
    (void)n;
}
