/*
 * prefork: what the libevent baselines share, so that both run the way spindle and nginx
 * do and are tuned alike.
 *
 * The process model: the parent forks N workers and does nothing else. Each worker opens
 * its own SO_REUSEPORT listener on the same address, so the kernel spreads connections
 * over them, and reports itself ready through a pipe. The parent prints one line naming
 * the workers once all are ready, then waits for SIGTERM or SIGINT (or the death of a
 * worker) and stops them all. Workers die with the parent, whatever killed it.
 *
 * The event base: no locks (one thread per base), no environment overrides, and by
 * default epoll's changelist, which folds EV_WRITE add/delete pairs into one epoll_ctl
 * per loop pass.
 */
#ifndef BENCH_PREFORK_H
#define BENCH_PREFORK_H

#define PREFORK_MAX_WORKERS 256

struct event_base;
struct prefork;

/*
 * Runs in each worker process and returns when the worker is to exit. It must call
 * prefork_ready(ready_fd) once it accepts connections on listen_fd (an open,
 * listening, non-blocking socket that it takes ownership of).
 */
typedef void prefork_worker_fn(const struct prefork *pf, int listen_fd, int ready_fd);

struct prefork {
    const char *name; /* program name, the prefix of every message */
    const char *addr; /* IPv4 address to listen on */
    int port;
    int backlog;
    int workers;    /* 1 .. PREFORK_MAX_WORKERS */
    int nodelay;    /* set TCP_NODELAY on the listeners */
    int changelist; /* use epoll's changelist in the event base */
    prefork_worker_fn *worker;
};

/* The defaults: one worker on 127.0.0.1, backlog 4096, the changelist, no port yet. */
#define PREFORK_INIT(prog, fn)                                                                     \
    {                                                                                              \
        .name = (prog), .addr = "127.0.0.1", .port = -1, .backlog = 4096, .workers = 1,            \
        .changelist = 1, .worker = (fn)                                                            \
    }

/* The options prefork_option() takes, for getopt(). */
#define PREFORK_OPTIONS "a:p:w:b:C"

/*
 * Applies option opt (-a ADDR, -p PORT, -w WORKERS, -b BACKLOG, or -C: no changelist)
 * with its argument arg, which pf borrows. Returns 0, or -1 if opt is not one of them.
 */
int prefork_option(struct prefork *pf, int opt, const char *arg);

/* Returns 1 if pf has a port and a worker count within limits, 0 if not. */
int prefork_valid(const struct prefork *pf);

/*
 * Raises the descriptor limit to its hard limit, forks pf->workers workers and serves
 * until a signal stops it (see above). Borrows pf. Returns the exit status for main():
 * 0 after SIGTERM or SIGINT, 1 if a worker failed to start or died. Exits on a failed
 * system call.
 */
int prefork_run(const struct prefork *pf);

/* Returns a new event base for a worker, configured as above; exits if that fails. */
struct event_base *prefork_event_base(const struct prefork *pf);

/* Tells the parent that this worker accepts connections; closes ready_fd. */
void prefork_ready(int ready_fd);

#endif
