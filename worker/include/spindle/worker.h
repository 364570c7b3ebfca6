/*
 * What a worker gives the services it runs, built-in or loaded from a module
 * (spindle/module.h): the struct service a definition's callbacks get, and
 * the calls a service makes.  The built-in services use these calls and no
 * others of the worker's, so a module's service can do whatever they do.
 *
 * A service sees a connection as a fiber that owns a non-blocking fd; it
 * tells the worker when the connection ends (worker_conn_closed) so that a
 * draining worker knows when it may exit.  For the connection's I/O it uses
 * the runtime's fiber I/O and streams (spindle/io.h, spindle/stream.h) and
 * sp_iom_watch() (spindle/iomanager.h) to park an idle connection without a
 * fiber.
 */
#ifndef SPINDLE_WORKER_PUBLIC_H
#define SPINDLE_WORKER_PUBLIC_H

#include <stdatomic.h>
#include <stdint.h>

#include "spindle/service.h"

struct worker;
struct sp_iom;
struct sp_config;
struct sockaddr_storage;

/* The worker's counters, shown by `spindle -s status`: a service adds what
 * it reads, writes and answers. */
struct worker_counters {
    atomic_ulong connections; /* open now */
    atomic_ullong accepted;
    atomic_ullong requests;
    atomic_ullong bytes_in;
    atomic_ullong bytes_out;
};

/* A service in this worker: its definition's callbacks get it.  For a
 * [service NAME] section, def is the module's service definition, conf the
 * [module MODULE] section's struct, and state starts as what the module's
 * init() built (the service's init may replace it). */
struct service {
    const struct sp_service_def *def;
    const struct sp_service_conf *section; /* its [TYPE NAME] */
    const void *conf;                      /* the service's own struct */
    struct worker *worker;
    int log_fd;  /* its log file, opened by the master, or -errno */
    void *state; /* the service's own */
};

/* The worker's scheduler (for sp_iom_watch), counters and configuration;
 * each lives as long as the worker. */
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

/* The client's address of the connection on fd: the address its PROXY
 * protocol header carried when it came through a listen address flagged
 * proxy_protocol, else the socket's peer (getpeername).  Returns 0, or
 * -errno from getpeername.  Valid until the connection ends. */
int worker_conn_peer(struct worker *w, int fd, struct sockaddr_storage *ss);

/* The same address as text ("192.0.2.7", "2001:db8::1"), or "-" when none is
 * known: the slot's copy, made on the connection's first call, or buf
 * (size bytes, INET6_ADDRSTRLEN is enough).  Valid until the connection
 * ends. */
const char *worker_conn_peer_name(struct worker *w, int fd, char *buf, size_t size);

/* The connections closed for a missing, malformed or late PROXY header. */
unsigned long long worker_proxy_refused(struct worker *w);

/* True once the master has said that a graceful stop with [master]
 * drain_delay has begun, until the worker exits: a health check should fail
 * while everything else is served.  A drain for a reload, or a stop without
 * drain_delay, never sets it. */
int worker_drain_soon(struct worker *w);

/* A connection handed to service->handle() has ended: call exactly once per
 * connection, after sp_close() of its fd. */
void worker_conn_closed(struct worker *w);

/*
 * Session ticket keys (docs/tls.md): the master makes them, one set per
 * rotation period length, and sends them to every worker, so that a ticket
 * one worker seals opens on every other, of any generation.  A TLS service
 * seals new tickets with worker_ticket_key_current() and opens them with
 * worker_ticket_key_find(), from OpenSSL's ticket key callback.  Both are
 * safe on any scheduler thread.
 */
struct worker_ticket_key {
    unsigned char name[16]; /* in the ticket, in clear */
    unsigned char aes[32];  /* AES-256-CBC */
    unsigned char hmac[32]; /* HMAC-SHA256 */
};

/* Copies into *k the key that seals tickets now for periods of rotation_s
 * seconds.  Returns 0, or -ENOENT when the master sent none for the
 * current period: then issue no ticket (another worker could not open
 * it).  The caller wipes *k after use. */
int worker_ticket_key_current(unsigned rotation_s, struct worker_ticket_key *k);

/* Copies into *k the key named name if it is of the current period
 * (returns 1), or of the previous or next one (returns 2: open the ticket,
 * then replace it); -ENOENT for any other name. */
int worker_ticket_key_find(unsigned rotation_s, const unsigned char name[16],
                           struct worker_ticket_key *k);

#endif
