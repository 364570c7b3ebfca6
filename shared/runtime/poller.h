/*
 * The poller backend: the few operations the scheduler needs from the
 * kernel's readiness interface.  Private to shared/.
 *
 * The IOManager (iomanager.c) decides what to wait for and when; the backend
 * only carries it out.  One backend file implements these functions and
 * iomanager.c includes exactly one (poller_epoll.c today), the way redis's
 * ae.c includes ae_epoll.c: the calls are direct and inline, so the seam
 * costs nothing per event.  No other file includes a backend's system header.
 *
 * Event bits have poll(2)'s values, which epoll and io_uring's poll requests
 * share, so a backend passes them through unchanged.
 */
#ifndef SPINDLE_POLLER_H
#define SPINDLE_POLLER_H

#include <stdint.h>

#define SP_POLL_IN    0x001u  /* readable */
#define SP_POLL_OUT   0x004u  /* writable */
#define SP_POLL_ERR   0x008u  /* an error is pending (reported whether asked or not) */
#define SP_POLL_HUP   0x010u  /* both directions hung up (reported whether asked or not) */
#define SP_POLL_RDHUP 0x2000u /* the peer shut down its writing side */

/* Arming modes, or'ed into the events of sp__poller_add/mod. */
#define SP_POLL_EDGE    (1u << 31) /* report each change once; stays armed */
#define SP_POLL_ONESHOT (1u << 30) /* report once, then disarmed until the next mod */

/* The data of the wake-up event: never a registration's (see iomanager.c). */
#define SP_POLL_WAKE UINT64_MAX

struct sp_poller;

/*
 * One event as the kernel reports it: the backend defines the layout (the
 * epoll backend's is struct epoll_event, so a wait copies nothing), and the
 * scheduler reads it only through these two.
 */
struct sp_poll_event;

/* The data given to sp__poller_add/mod, or SP_POLL_WAKE. */
static inline uint64_t sp__poll_event_data(const struct sp_poll_event *ev);

/* What happened: SP_POLL_* bits. */
static inline uint32_t sp__poll_event_events(const struct sp_poll_event *ev);

/* Opens a poller with its wake-up channel.  Returns NULL with errno set. */
struct sp_poller *sp__poller_new(void);

/* Closes it.  Registered fds stay open.  Accepts NULL. */
void sp__poller_free(struct sp_poller *p);

/* Registers fd (not registered yet) for events, carrying data.  Returns 0 or -errno. */
int sp__poller_add(struct sp_poller *p, int fd, uint32_t events, uint64_t data);

/* Changes a registered fd's events and data (re-arms a one-shot).  Returns 0 or -errno. */
int sp__poller_mod(struct sp_poller *p, int fd, uint32_t events, uint64_t data);

/* Unregisters fd.  Returns 0 or -errno. */
int sp__poller_del(struct sp_poller *p, int fd);

/*
 * Makes p report an event carrying data whenever inner has events to report
 * (level-triggered): how a thread's poller includes a poller shared by
 * several threads.  Returns 0 or -errno.
 */
int sp__poller_add_poller(struct sp_poller *p, struct sp_poller *inner, uint64_t data);

/* The poller's own fd: readable while it has events to report, so that a
 * fiber can wait on a whole set of fds at once (poll(2) of hook.c, through
 * sp__iom_park_poll). */
int sp__poller_fd(const struct sp_poller *p);

/*
 * Waits up to timeout_ms (-1 = forever, 0 = not at all) for events and stores
 * at most max of them in out.  Returns how many, or -errno (-EINTR included).
 * Safe from several threads at once.
 */
int sp__poller_wait(struct sp_poller *p, struct sp_poll_event *out, int max, int timeout_ms);

/*
 * Makes every sp__poller_wait() return an SP_POLL_WAKE event, now and until
 * sp__poller_clear_wake(), so that one call wakes every thread waiting.  Safe
 * from any thread.
 */
void sp__poller_wake(struct sp_poller *p);

/* Takes back the pending wake-up. */
void sp__poller_clear_wake(struct sp_poller *p);

#endif
