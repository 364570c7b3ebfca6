/*
 * The master process: it owns every listening socket, forks the workers,
 * talks to each over a SOCK_SEQPACKET channel, reaps and respawns them,
 * reloads the configuration as a transaction and answers the control socket.
 *
 * Everything runs on one single-thread IOManager: a fiber reads the
 * signalfd, one fiber per worker reads its channel, one accepts control
 * clients and one fiber serves each client.  Fibers only ever yield inside
 * the runtime's blocking calls, so the structures below need no lock: code
 * between two blocking calls runs alone.
 *
 * fork() is never called on a fiber stack: a fiber that needs a worker
 * queues the request (master_fork_worker), stops the scheduler and yields;
 * master_run() forks on the main stack between two scheduler runs, so the
 * child starts clean (no fiber running, no IOManager current) and runs
 * worker_main() on an ordinary stack.
 */
#ifndef SPINDLE_MASTER_H
#define SPINDLE_MASTER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "spindle/channel.h"
#include "spindle/config.h"
#include "spindle/waitq.h"

/* Bounds of the master's own waits. */
#define MASTER_READY_TIMEOUT_MS         5000  /* a new worker must say READY within this */
#define MASTER_STOP_GRACE_MS            1000  /* after STOP, before SIGKILL */
#define MASTER_DRAIN_GRACE_MS           1000  /* after shutdown_timeout, before SIGKILL */
#define MASTER_STATUS_TIMEOUT_MS        1000  /* for the workers' STATUS answers */
#define MASTER_RESPAWN_MIN_MS           100   /* first delay of a crashing index */
#define MASTER_RESPAWN_MAX_MS           10000 /* the delay doubles up to this */
#define MASTER_RESPAWN_STABLE_MS        60000 /* a worker alive this long resets its index's delay */
#define MASTER_RETRY_MAX_MS             1000 /* a respawn that failed to fork retries at most this late */
#define MASTER_REASON_MAX               256
#define MASTER_CHECK_TIMEOUT_MS         5000 /* the module checker must answer within this */
#define MASTER_HEARTBEAT_MS             1000 /* a PING to every ready worker this often */
#define MASTER_HEARTBEAT_LATE_MS        500  /* unanswered this long: its slots are adopted */
#define MASTER_HEARTBEAT_MISSES         3  /* heartbeats missed in a row before SIGKILL, stopped */
#define MASTER_HEARTBEAT_MISSES_RUNNING 10 /* the same for a worker that runs */

struct sp_iom;

enum master_worker_state {
    MASTER_WORKER_STARTING, /* forked, READY not seen yet */
    MASTER_WORKER_READY,
    MASTER_WORKER_DRAINING, /* DRAIN sent */
    MASTER_WORKER_STOPPING, /* STOP sent, or killed */
};

/* One configuration and the workers started with it. */
struct master_gen {
    unsigned id;
    struct sp_config *cfg;          /* owned */
    unsigned live;                  /* workers of this generation not yet gone */
    bool busy;                      /* a transaction is starting it: not to be freed */
    char failed[MASTER_REASON_MAX]; /* why a worker failed before READY; "" if none did */
    int *log_fds; /* per service: its log file opened by the master, or -errno (spawn.c) */
    struct master_gen *next;
};

struct master_worker {
    pid_t pid; /* 0 until forked */
    struct master_gen *gen;
    unsigned index;   /* within its generation */
    int metrics_proc; /* its record in the shared counters (worker/metrics.h); -1: none */
    int channel_fd;   /* the master's end; -1 once closed */
    int child_fd;     /* the worker's end, until the fork */
    enum master_worker_state state;
    uint64_t started_ns;
    uint64_t kill_at_ns; /* SIGKILL deadline while draining or stopping; 0: none */
    bool killed;
    bool reaped;       /* waitpid() returned its status */
    bool channel_done; /* its channel reached end of stream */
    int wstatus;       /* from waitpid() */
    char exit_reason[SP_MSG_REASON_MAX + 1];
    uint64_t ping_ns;            /* when the oldest unanswered PING went out; 0: none */
    unsigned missed;             /* heartbeats missed in a row */
    bool unresponsive;           /* a PING unanswered for MASTER_HEARTBEAT_LATE_MS */
    struct sp_msg_status status; /* the last STATUS answer */
    unsigned status_seq;         /* bumped by every STATUS answer */
    struct master_worker *next, *prev;

    /* fork requests */
    bool fork_done;
    int fork_err;
    struct master_worker *fork_next;
};

/* Respawn bookkeeping of one worker index of the current generation. */
struct master_index {
    uint64_t delay_ms;    /* the next respawn waits this long; 0: at once */
    unsigned respawn_gen; /* generation the pending respawn is for */
    uint64_t respawn_ms;  /* and its delay */
};

/* The slots of one worker index of the current generation, while another
 * worker accepts on them (heartbeat.c). */
struct master_adoption {
    struct master_worker *by; /* NULL: not adopted */
    int *keys;                /* the slots handed over (the master's fds) */
    unsigned nkeys;
};

/* One configured address and its reuseport sockets ("slots"). */
struct master_listener {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64];
    int fds[SP_CONFIG_MAX_SLOTS];
    unsigned nfds;
    bool fixed; /* one passed socket without SO_REUSEPORT: never more slots (inherit.c) */
    struct master_listener *next;
};

/* A listening socket found open at start (inherit.c). */
struct master_inherited {
    int fd; /* -1 once a listener took it */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool reuseport;
    const char *from; /* "systemd" or "the old master" */
    char name[64];    /* from LISTEN_FDNAMES; "" if none */
};

/* What a reload transaction opened, to undo it on failure. */
struct listeners_txn {
    struct {
        struct master_listener *l;
        unsigned old_nfds;
    } grown[SP_CONFIG_MAX_LISTENS];
    unsigned ngrown;
};

struct master {
    char conf_path[PATH_MAX]; /* absolute */
    bool daemon;
    int ready_fd; /* -d: tells the waiting parent how the start went; -1 otherwise */
    struct sp_iom *iom;
    struct master_gen *gens; /* newest first; the current one is cur */
    struct master_gen *cur;
    struct master_worker *workers; /* every worker not yet gone */
    struct master_listener *listeners;
    struct master_index index[SP_CONFIG_MAX_WORKERS];
    struct master_adoption adopted[SP_CONFIG_MAX_WORKERS];
    int sigfd;
    int ctl_fd;
    dev_t ctl_dev;
    ino_t ctl_ino;
    char pid_file[PATH_MAX];       /* as configured at start; reloads keep it */
    char control_socket[PATH_MAX]; /* likewise */
    bool pid_written;
    uint64_t started_ns;

    bool reloading;
    bool hup_pending;
    bool stopping;
    bool graceful;
    bool done;
    int exit_code;

    /* Broadcast on every change a master fiber may wait for (master_changed);
     * waiters loop on their own condition (master_wait). */
    struct sp_waitq changed;

    struct master_worker *fork_queue;
    struct master_check *check_queue; /* a module check waiting for its fork */

    bool reload_ran;
    bool reload_ok;
    uint64_t reload_ns;
    char reload_result[768];

    /* binary upgrade (upgrade.c): the old master's side */
    bool upgrading;      /* a new master was started (or is being) and has not exited */
    bool upgrade_queued; /* the main stack is to fork it */
    bool upgrade_forked;
    bool upgrade_reaped;
    pid_t upgrade_pid; /* the new master; -errno when fork() failed */
    int upgrade_wfd;   /* the write end of its report pipe, until the fork */
    int upgrade_status;
    /* the new master's side: started by an upgrade, it writes "ready" or
     * why it failed to ready_fd */
    bool upgraded;

    /* sockets found open at start, until the first listeners take them */
    struct master_inherited *inherited;
    unsigned ninherited;

    /* systemd's NOTIFY_SOCKET (notify.c); notify_fd is -1 without one */
    int notify_fd;
    struct sockaddr_un notify_addr;
    socklen_t notify_len;
    bool notify_warned;
};

/* ---- master.c ------------------------------------------------------- */

/* Starts the master on m->conf_path and runs it until it is told to stop.
 * Returns the process exit status. */
int master_run(struct master *m);

/*
 * Forks worker index of generation gen (on a fiber; yields while the main
 * stack forks).  Returns the new worker, linked into m->workers in state
 * STARTING, or NULL with the reason logged.
 */
struct master_worker *master_fork_worker(struct master *m, struct master_gen *gen, unsigned index);

/* Sends a message without payload.  Returns 0 or -errno. */
int master_send(struct master_worker *w, enum sp_msg_type type);

/* Sends DRAIN (graceful) or STOP and arms the SIGKILL deadline. */
void master_retire(struct master *m, struct master_worker *w, bool graceful);

/* The worker with this pid, or NULL. */
struct master_worker *master_find_pid(struct master *m, pid_t pid);

/* gen serves from now on; every worker index may respawn at once again. */
void master_make_current(struct master *m, struct master_gen *gen);

/* Reopens the master's log and sends REOPEN to every worker (SIGUSR1). */
void master_reopen(struct master *m);

/* Wakes every fiber in master_wait(): a worker's state, the worker table,
 * the current generation, reloading, stopping or a deadline changed. */
void master_changed(struct master *m);

/* Parks the calling fiber until master_changed() or until deadline_ns
 * (CLOCK_MONOTONIC; 0 = none).  Returns 0 when woken, -ETIMEDOUT once the
 * deadline has passed.  Callers re-check their condition either way. */
int master_wait(struct master *m, uint64_t deadline_ns);

/* Starts the graceful (SIGQUIT) or fast (SIGTERM) shutdown. */
void master_shutdown(struct master *m, bool graceful);

/* Describes a waitpid() status: "exit status 2", "signal 9 (Killed)". */

/* ---- spawn.c -------------------------------------------------------- */

/* Forks the workers queued by master_fork_worker(); runs on the main stack
 * while the scheduler is stopped.  The children never return from it. */
void master_serve_forks(struct master *m);

/*
 * Detaches from the terminal: fork, setsid, fork again.  The original
 * process waits on a pipe (m->ready_fd in the daemon) for the start-up
 * outcome and exits with it.  Returns in the daemon only.
 */
void master_daemonize(struct master *m);

/* Closes every descriptor except keep[0..n) (sorted in place; negative
 * entries ignored).  For a child about to run or execute something else. */
void master_close_fds_except(int *keep, unsigned n);

/* Closes gen's log files; it is being freed.  Accepts a gen without any. */
void master_logs_close(struct master_gen *gen);

/*
 * Reopens every generation's log files (a file that cannot be reopened is
 * logged and kept) and sends each worker REOPEN with the error log and the
 * files of its generation attached.  On a fiber.
 */
void master_logs_reopen(struct master *m);

/*
 * Logs, at start, what [master] user means here: a warning when the master
 * runs as root and no user is set (the workers keep root), or when a user
 * is set but the master is not root (it cannot switch; ignored).
 */
void master_check_user(const struct sp_config *cfg);

/*
 * Switches the calling process (a child) to cfg's [master] user: its
 * groups, its group, then the user, and checks that root cannot be
 * regained.  Nothing changes without user, or when not root.  Returns 0, or
 * -1 with the reason in err.
 */
int master_drop_privileges(const struct sp_config *cfg, char *err, size_t len);

/*
 * For -t: warns on stderr about each file or directory the workers will
 * need and cfg's user cannot read (an http root).  Checks as that user in
 * a child process; does nothing without user or when not root.  Returns the
 * number of warnings.
 */
int master_check_access(const struct sp_config *cfg);
/* ---- modcheck.c ----------------------------------------------------- */

/* A module check a fiber waits for (master_check_modules). */
struct master_check {
    const struct sp_config *cfg;
    pid_t pid;    /* the checker; -1 when fork() failed */
    int fd;       /* the read end of its verdict pipe, -errno when none */
    bool started; /* the main stack has forked it */
};

/*
 * Checks cfg's modules in a short-lived child, never in the master: it
 * opens each (as cfg's user), checks its symbol and api_version and runs its
 * key setters over its keys (modules_check), and writes its verdict to a
 * pipe.  A child that gives none within MASTER_CHECK_TIMEOUT_MS is killed.
 * master_check_modules() runs on a fiber of the master (the fork happens on
 * the main stack, see master_serve_forks); check_modules_now() in a
 * process without a scheduler (-t).  Each returns 0, or -1 with the reason
 * in err.
 */
int master_check_modules(struct master *m, const struct sp_config *cfg, char *err, size_t len);
int check_modules_now(const struct sp_config *cfg, char *err, size_t len);

/* Forks the checker of c; on the main stack (master_serve_forks). */
void master_check_fork(struct master_check *c);

/* ---- heartbeat.c ---------------------------------------------------- */

/* Sends the heartbeats, notices workers that stop answering (their slots
 * are adopted) and kills those that miss MASTER_HEARTBEAT_MISSES. */
void master_heartbeat_fiber(void *arg);

/* A PONG came from w. */
void master_heartbeat_pong(struct master *m, struct master_worker *w);

/*
 * Makes every slot of the current generation whose worker index has no
 * ready, answering worker adopted by one that has, and releases adopted
 * slots whose owner is back.  Call it whenever a worker changes state.
 */
void master_slots_balance(struct master *m);

/* Forgets the adoptions held by w (NULL: all) without telling anyone:
 * w is gone, or so is the master. */
void master_slots_forget(struct master *m, struct master_worker *w);

/* ---- tickets.c ------------------------------------------------------ */

/*
 * Makes the session ticket key sets of every rotation value a live
 * generation names, rotates them by the wall clock (the previous, current
 * and next periods' keys) and sends each changed set to every forked
 * worker.  On a fiber or on the main stack (it never waits).
 */
void master_tickets_refresh(struct master *m);

/* Queues every set on w's channel: for a worker about to be forked, whose
 * first messages they are. */
void master_tickets_send(struct master_worker *w);

/* Rotates the sets at each period boundary (master_tickets_refresh). */
void master_tickets_fiber(void *arg);

/* For a binary upgrade, in the child about to execute the new master: a
 * memfd holding every set (close-on-exec; the caller clears that), or
 * -errno when there is none. */
int master_tickets_export(void);

/* At start: takes the sets an upgrading master passed (SPINDLE_TICKET_KEYS
 * names the memfd; both are gone after). */
void master_tickets_import(void);

/* Wipes every key: the master exits, or a child no longer needs them. */
void master_tickets_clear(void);

/* ---- reload.c ------------------------------------------------------- */

/*
 * Starts every worker of gen and waits for each to say READY.  Returns 0,
 * or -1 with the reason in err after killing the workers it started.
 */
int master_start_generation(struct master *m, struct master_gen *gen, char *err, size_t errlen);

struct master_gen *master_gen_new(struct master *m, struct sp_config *cfg, unsigned id);

/* Frees every generation that is not current and has no worker left, then
 * closes the addresses no remaining generation uses. */
void master_gen_prune(struct master *m);

/*
 * Reloads the configuration as a transaction (see reload.c).  Waits for a
 * reload already under way.  Returns 0 on success, -1 on failure; msg gets
 * a one-line description either way.
 */
int master_reload(struct master *m, char *msg, size_t len);

/* ---- listeners.c ---------------------------------------------------- */

/*
 * Makes sure every address of cfg has at least cfg->slots sockets open,
 * recording what it opened in txn.  Returns 0, or -errno with the reason
 * in err after closing what it opened.
 */
int listeners_prepare(struct master *m, const struct sp_config *cfg, struct listeners_txn *txn,
                      char *err, size_t errlen);

/* Undoes listeners_prepare(): closes the sockets it opened. */
void listeners_rollback(struct master *m, struct listeners_txn *txn);

/* Closes and frees every listener no generation's configuration lists. */
void listeners_prune(struct master *m);

/* Closes every listener (the master is exiting). */
void listeners_close_all(struct master *m);

/*
 * Fills out[] with the sockets worker index of a generation of cfg->workers
 * serves under cfg: slot s of each address with s mod cfg->workers == index.
 * Returns the count, at most max.
 */
struct worker_listener;
unsigned listeners_for_worker(struct master *m, const struct sp_config *cfg, unsigned index,
                              struct worker_listener *out, unsigned max);

/* ---- control.c ------------------------------------------------------ */

/*
 * Opens the control socket at path after checking that no master answers
 * on it (a stale file is removed).  Returns the listening fd, -EADDRINUSE
 * when a master is running, or -errno.
 */
int control_listen(struct master *m, const char *path, char *err, size_t errlen);

/* Starts the acceptor fiber on m->ctl_fd.  Returns 0 or -errno. */
int control_start(struct master *m);

/* Closes the control socket and removes its file if it is still ours. */
void control_close(struct master *m);

/* Largest answer to "status", the longest a client reads. */
#define CONTROL_STATUS_BYTES 65536

/* Fills a unix socket address with path.  Returns 0, or -ENAMETOOLONG. */
struct sockaddr_un;
int control_fill_addr(struct sockaddr_un *sun, const char *path);

/* ---- client.c ------------------------------------------------------- */

/*
 * The -s client: sends cmd to the master named by the configuration at
 * conf_path and prints its answer.  Returns the process exit status.
 */
int client_run(const char *conf_path, const char *cmd);

/* ---- notify.c ------------------------------------------------------- */

/* Takes NOTIFY_SOCKET out of the environment (the workers must not inherit
 * it) and opens a socket to send to it.  Without the variable, or when it
 * is unusable (logged), the notify functions do nothing. */
void master_notify_init(struct master *m);

/* Sends one sd_notify datagram ("READY=1\nSTATUS=..."), formatted as by
 * printf.  Best effort: the first failure is logged, later ones are not. */
void master_notify(struct master *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects. */
void master_notify_reloading(struct master *m);

void master_notify_close(struct master *m);

/* ---- inherit.c ------------------------------------------------------ */

/*
 * Takes the listening sockets passed to this process: systemd's (LISTEN_PID
 * is ours, LISTEN_FDS from fd 3) and an upgrading master's
 * (SPINDLE_INHERIT=fd,...).  Keeps the listening TCP sockets in
 * m->inherited, closes anything else with a warning, and removes the
 * variables from the environment.
 */
void inherit_init(struct master *m);

/* For a master started by a binary upgrade: takes the pipe SPINDLE_UPGRADE_FD
 * names as m->ready_fd, on which it reports "ready" or why it failed. */
void inherit_report_fd(struct master *m);

/*
 * Moves the inherited sockets bound to addr into fds[0..max) and returns how
 * many.  *fixed is set when the one socket has no SO_REUSEPORT (no copies
 * can join it); *from says who passed them.
 */
unsigned inherit_take(struct master *m, const struct sockaddr *addr, int *fds, unsigned max,
                      bool *fixed, const char **from);

/* Closes, with a warning each, the inherited sockets no address took. */
void inherit_close_unused(struct master *m);

/* ---- upgrade.c ------------------------------------------------------ */

/* Remembers the binary to execute on SIGUSR2: argv[0], made absolute
 * against the working directory at start (a bare name is looked up in PATH). */
void upgrade_save_exe(const char *argv0);

/* SIGUSR2: starts a binary upgrade on a fiber (see upgrade.c), unless one
 * runs, the master is stopping or has not finished starting (logged). */
void master_upgrade(struct master *m);

/* Forks and executes the new master; on the main stack, when
 * m->upgrade_queued (master_serve_forks). */
void master_upgrade_fork(struct master *m);

/* Whether pid, just reaped with status, is the new master of an upgrade
 * (then the upgrade's fiber takes over). */
bool master_upgrade_reap(struct master *m, pid_t pid, int status);

/* ---- main.c --------------------------------------------------------- */

/* Sets what ps shows for this process ("spindle: worker process"), as
 * printf formats it: the command line (ps -o args) and the thread name
 * (ps -o comm, its first 15 bytes). */
void master_set_title(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- pidfile.c ------------------------------------------------------ */

/*
 * Opens (creates) the pid file at path and locks it for as long as this
 * process, or the daemon it becomes, runs.  Returns 0; -EEXIST when another
 * master holds it ("already running" in err); or -errno with the reason.
 */
int pidfile_lock(const char *path, char *err, size_t errlen);

/* The locked pid file's descriptor (-1 before pidfile_lock()): the daemon
 * keeps it open, or the lock goes with it. */
int pidfile_fd(void);

/* Creates sp_config_run_dir() (and its parents) when path lies directly in
 * it and it is missing.  Returns 0 or -errno. */
int pidfile_make_run_dir(const char *path);

/* Writes our pid into the locked pid file.  Returns 0 or -errno. */
int pidfile_write(const char *path);

/* Removes path if it is still the file we lock, and drops the lock.  Does
 * nothing without the lock. */
void pidfile_remove(const char *path);

#endif
