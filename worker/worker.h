/*
 * One worker process: its IOManager, the acceptors on the listener copies it
 * was given, the control channel to the master, and the services (http, echo)
 * that handle connections.
 *
 * A service sees a connection as a fiber that owns a non-blocking fd; it tells
 * the worker when the connection ends (worker_conn_closed) so that a draining
 * worker knows when it may exit.
 */
#ifndef SPINDLE_WORKER_H
#define SPINDLE_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spindle/config.h"
#include "spindle/iomanager.h"

struct worker;
struct service;

/* What the master hands a new worker. */
struct worker_listener {
    int fd;           /* non-blocking SO_REUSEPORT listener copy */
    unsigned service; /* index into cfg->services */
};

struct worker_args {
    const struct sp_config *cfg; /* borrowed for the worker's life */
    unsigned generation;
    unsigned index; /* worker number within its generation, 0..workers-1 */
    int channel_fd; /* SOCK_SEQPACKET to the master; -1 runs without a master */
    const struct worker_listener *listeners;
    unsigned nlisteners;
    /* Per service, its log file opened by the master (the worker may not be
     * allowed to open it), or -errno from that open; only entries of
     * services with a worker_log_path() are read. */
    const int *log_fds;
};

/*
 * The log file a service writes and the master opens for it (the access
 * log), or NULL.  On REOPEN the master passes the error log's fd, then one
 * fd per service that has such a path, in service order.
 */
static inline const char *worker_log_path(const struct sp_service_conf *s)
{
    return s->kind == SP_SERVICE_HTTP ? s->http.access_log : NULL;
}

/*
 * Runs a worker until it is told to stop, or has drained.  Returns the process
 * exit status (0 after a clean stop or drain).
 */
int worker_main(const struct worker_args *args);

/* ---- what services use ---------------------------------------------- */

struct worker_counters {
    atomic_ulong connections; /* open now */
    atomic_ullong accepted;
    atomic_ullong requests;
    atomic_ullong bytes_in;
    atomic_ullong bytes_out;
};

struct service_ops {
    const char *kind;
    /* After fork, before the worker reports ready.  Returns 0, or -1 with a
     * message in err (the worker then fails to start and says why). */
    int (*init)(struct service *svc, char *err, size_t errlen);
    /* Runs on a fresh fiber for each accepted connection; owns fd and must
     * sp_close() it and call worker_conn_closed() exactly once. */
    void (*handle)(struct service *svc, int fd);
    /* Drain started: close idle connections now; busy ones end after their
     * current request. */
    void (*drain)(struct service *svc);
    /* SIGUSR1 reached the master, which reopened the service's log file
     * (worker_log_path): write to fd from now on.  Takes ownership of fd. */
    void (*reopen)(struct service *svc, int fd);
    /* The worker is about to exit: flush what is buffered. */
    void (*fini)(struct service *svc);
};

struct service {
    const struct sp_service_conf *conf;
    const struct service_ops *ops;
    struct worker *worker;
    int log_fd;  /* its log file, opened by the master (see worker_args), or -errno */
    void *state; /* the service's own */
};

extern const struct service_ops http_service_ops;
extern const struct service_ops echo_service_ops;

struct sp_iom *worker_iom(struct worker *w);
struct worker_counters *worker_counters(struct worker *w);
const struct sp_config *worker_config(struct worker *w);
unsigned worker_generation(struct worker *w);
unsigned worker_index(struct worker *w);
uint64_t worker_started_ns(struct worker *w);

/* How long a draining worker still waits for the next request (or bytes) on
 * an idle connection.  Closing at once would race with a client that is
 * sending it; services cap their idle waits to this while draining. */
#define WORKER_DRAIN_IDLE_MS 1000

/* True once the worker drains: finish the request at hand with
 * "Connection: close" and accept nothing new. */
int worker_draining(struct worker *w);

/* A connection handed to service->handle() has ended. */
void worker_conn_closed(struct worker *w);

#endif
