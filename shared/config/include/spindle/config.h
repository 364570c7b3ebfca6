/*
 * Configuration: spindle's INI file, loaded into one read-only struct sp_config.
 *
 * Loading has no side effects: it reads the file and resolves names, but opens
 * no socket and creates no file, so the master can check a new configuration
 * completely before it acts on any of it (reload as a transaction).  Every
 * error is reported as one line "FILE:LINE: message" (or "FILE: message" when
 * no line is to blame), followed for a line of an included file by
 * " (included from FILE:LINE)" for each include that led to it, and nothing
 * is half loaded.  "include = GLOB" reads other files in place of its line
 * (docs/config.md); the loader reads them, and nothing else.
 *
 * The format and every key are documented in spindle.conf.example.  Relative
 * paths (root, pid_file, control_socket, error_log, access_log) are resolved
 * against the directory of the configuration file (of the file a symbolic
 * link leads to) and stored absolute.
 */
#ifndef SPINDLE_CONFIG_H
#define SPINDLE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "spindle/service.h"

#define SP_CONFIG_MAX_WORKERS                 256
#define SP_CONFIG_MAX_THREADS                 64
#define SP_CONFIG_MAX_SLOTS                   256
#define SP_CONFIG_MAX_SERVICES                256
#define SP_CONFIG_MAX_LISTENS                 1024 /* in the whole file */
#define SP_CONFIG_MAX_LINE                    4096 /* bytes in one line, without its newline */
#define SP_CONFIG_MAX_FILE                    (1024 * 1024)
#define SP_CONFIG_ERR_SIZE                    512 /* enough for any message the loader writes */
#define SP_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS (10 * 1000)
#define SP_CONFIG_MAX_GROUPS                  256 /* supplementary groups of [master] user */
#define SP_CONFIG_MAX_MODULES                 64
#define SP_CONFIG_MAX_UPSTREAMS               64
#define SP_UPSTREAM_MAX_SERVERS               64 /* server lines in one [upstream] */

/* One [TYPE NAME] section. */
struct sp_service_conf {
    const struct sp_service_def *def; /* TYPE's, registered (spindle/service.h) */
    const char *name;                 /* "main" in [http main]; unique per TYPE */
    unsigned line;                    /* of the section header */
    void *conf;                       /* def->conf_size bytes: the service's own struct */
};

/* One listen address.  No two in a configuration are equal, and none is
 * shadowed by a wildcard address of the same family and port. */
struct sp_listen_conf {
    struct sockaddr_storage addr; /* AF_INET or AF_INET6, numeric */
    socklen_t addrlen;
    unsigned service; /* index into sp_config.services */
    unsigned line;
    bool tls; /* "listen = ADDR tls": the service speaks TLS on it */
    /* "listen = ADDR proxy_protocol": each connection starts with a PROXY
     * protocol header (v1 or v2), read by the worker before the service. */
    bool proxy_protocol;
    char text[64]; /* normalised for logs: "127.0.0.1:8080", "[::1]:8080", "*:80" */
};

/* A "key = value" line the loader keeps as text: a [module NAME] key, which
 * only the module's own key table can read (sp_config_apply_module). */
struct sp_conf_entry {
    const char *key;
    const char *value; /* may be "" (the key table reports it missing) */
    unsigned line;
};

/*
 * One [module NAME] section.  The master never opens a module, so it cannot
 * check the keys other than path: they are kept as text and checked by the
 * module's own key table in a checker child and in each worker.
 */
struct sp_module_conf {
    const char *name; /* "hello" in [module hello]; unique */
    unsigned line;    /* of the section header */
    const char *path; /* the shared object, absolute */
    unsigned path_line;
    struct sp_conf_entry *keys; /* in file order */
    unsigned nkeys;
};

/*
 * The struct of a [service NAME] section: a TCP service that a module
 * provides (its struct sp_module's service).  The section takes listen and
 * module = MODULE only; the service reads its settings from the [module
 * MODULE] section.  Its definition, sp_module_service_def, is the loader's
 * own and has no worker callbacks: the worker runs the module's.
 */
struct sp_module_service_conf {
    const char *module;   /* MODULE */
    unsigned module_line; /* of the module key */
    unsigned index;       /* into sp_config.modules */
};
extern const struct sp_service_def sp_module_service_def;

/* The [service NAME] part of service i of cfg, or NULL when it is a built-in
 * service's section. */
const struct sp_module_service_conf *sp_config_module_service(const struct sp_config *cfg,
                                                              unsigned i);

/* One server line of an [upstream NAME] section. */
struct sp_upstream_server {
    struct sockaddr_storage addr; /* AF_INET or AF_INET6 (numeric), or AF_UNIX */
    socklen_t addrlen;
    char text[112];          /* "127.0.0.1:9001", "[::1]:9001", "unix:/run/app.sock" */
    unsigned weight;         /* 1..1000, default 1 */
    unsigned max_fails;      /* 0..1000, default 1; 0: never marked down */
    int64_t fail_timeout_ms; /* default 10 s */
    unsigned line;
};

/* How a request picks its server among those not marked down. */
enum sp_upstream_balance {
    SP_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin (nginx's) */
    SP_BALANCE_LEAST_CONN,      /* fewest requests in progress for the weight */
    SP_BALANCE_HASH,            /* the client's address, over the weights */
};

/*
 * One [upstream NAME] section: the servers a "proxy PREFIX = NAME" line of
 * an [http] section forwards to, and how.
 */
struct sp_upstream_conf {
    const char *name; /* unique */
    unsigned line;    /* of the section header */
    struct sp_upstream_server *servers;
    unsigned nservers; /* >= 1 */
    enum sp_upstream_balance balance;
    unsigned keepalive;           /* idle connections kept per scheduler thread, 0..4096 */
    int64_t keepalive_timeout_ms; /* an idle pooled connection is closed after this */
    int64_t keepalive_burst_ms;   /* idle connections beyond keepalive are kept this long */
    int64_t connect_timeout_ms;
    int64_t read_timeout_ms;    /* between two reads of the upstream's answer */
    int64_t send_timeout_ms;    /* a write the upstream takes nothing of this long fails */
    const char *health_path;    /* health_check's path; NULL: no active check */
    int64_t health_interval_ms; /* between two checks of a server */
};

struct sp_config {
    const char *path; /* the file name as given, used in messages */
    const char *dir;  /* absolute directory relative paths were resolved against */

    /* [master] */
    unsigned workers;            /* 1..256; "auto" resolved to online CPUs */
    unsigned threads;            /* scheduler threads per worker, 1..64 */
    unsigned slots;              /* reuseport copies per address, workers..256 */
    bool cpu_affinity;           /* pin worker i to the i-th CPU the master may use */
    bool hooks;                  /* workers turn the system call hooks on (spindle/hook.h) */
    size_t stack_size;           /* fiber stack, bytes, a multiple of 4096 */
    int64_t shutdown_timeout_ms; /* drain deadline before the master forces it */
    int64_t drain_delay_ms;      /* graceful stop: health checks fail this long first */
    const char *pid_file;        /* absolute */
    const char *control_socket;  /* absolute, fits in sockaddr_un.sun_path */
    const char *error_log;       /* absolute path; NULL: stderr */

    /* [master] user and group: the identity the workers switch to, resolved
     * when the file is loaded.  user NULL: they keep the master's. */
    const char *user;
    const char *group; /* NULL: user's primary group */
    uid_t uid;         /* of user */
    gid_t gid;         /* of group, else user's primary group */
    unsigned ngroups;  /* groups[0..ngroups): user's groups, gid among them */
    gid_t groups[SP_CONFIG_MAX_GROUPS];

    struct sp_service_conf *services; /* in file order */
    unsigned nservices;               /* >= 1 */
    struct sp_listen_conf *listens;   /* in file order */
    unsigned nlistens;                /* >= 1, every service has at least one */
    struct sp_module_conf *modules;   /* in file order */
    unsigned nmodules;
    struct sp_upstream_conf *upstreams; /* in file order */
    unsigned nupstreams;

    struct sp__config_mem *mem;  /* private: owns every string above */
    struct sp__config_src *srcs; /* private: the files read, for sp_config_where() */
    unsigned nsrcs;
};

/*
 * Reads and checks the configuration file at path.  Returns a new config, or
 * NULL with a one-line message in err (always NUL-terminated when errlen > 0;
 * SP_CONFIG_ERR_SIZE bytes hold any message): "FILE:LINE: message" for an
 * error in the text, "FILE: cannot open: <strerror>" when it cannot be read.
 * The caller owns the result and releases it with sp_config_free().
 */
struct sp_config *sp_config_load(const char *path, char *err, size_t errlen);

/*
 * As sp_config_load() but parses text (NUL-terminated).  name stands for the
 * file: it prefixes messages and its directory anchors relative paths (the
 * current directory when name has none; NULL means "<string>").
 */
struct sp_config *sp_config_from_string(const char *text, const char *name, char *err,
                                        size_t errlen);

/* As sp_config_from_string() for len bytes of text, which may hold NUL bytes
 * (refused as an error).  Borrows text. */
struct sp_config *sp_config_from_buffer(const char *text, size_t len, const char *name, char *err,
                                        size_t errlen);

/*
 * Runs a module's key table over the keys recorded for mod (a module of cfg)
 * the way the loader runs a service's over its section: conf (zeroed by the
 * caller, the size the table expects) gets defaults(), then each key's
 * setter, then check() (any of keys, defaults, check may be NULL); unknown,
 * duplicate and empty keys are refused.  Messages are the loader's,
 * "FILE:LINE: message".  The strings the setters copy (sp_conf_strdup, paths)
 * live in *arena, a configuration that holds nothing else, set even on
 * failure; the caller releases it with sp_config_free() once conf is no
 * longer used.  Returns 0, or -EINVAL with the message in err.
 */
int sp_config_apply_module(const struct sp_config *cfg, const struct sp_module_conf *mod,
                           const struct sp_conf_key *keys,
                           void (*defaults)(struct sp_conf_ctx *ctx, void *conf),
                           void (*check)(struct sp_conf_ctx *ctx, void *conf), void *conf,
                           struct sp_config **arena, char *err, size_t errlen);

/*
 * Where line (a line number the loader recorded in cfg: a section's, a
 * listen's, a module key's) is: "FILE:LINE", and for a line of an included
 * file " (included from FILE:LINE)" for each include that led to it.  Writes
 * into buf (always NUL-terminated when len > 0) and returns it.  Borrows cfg.
 */
const char *sp_config_where(const struct sp_config *cfg, unsigned line, char *buf, size_t len);

/* The [upstream NAME] section of cfg, or NULL.  Lives as long as cfg. */
const struct sp_upstream_conf *sp_config_find_upstream(const struct sp_config *cfg,
                                                       const char *name);

/* Releases cfg and everything it points to.  Accepts NULL. */
void sp_config_free(struct sp_config *cfg);

/*
 * Returns the listen entry of cfg equal to addr (same family, address and
 * port), or NULL.  Borrows both; the result lives as
 * long as cfg.
 */
const struct sp_listen_conf *sp_config_find_listen(const struct sp_config *cfg,
                                                   const struct sockaddr *addr);

/*
 * Returns the listen entry of cfg that would take connections meant for addr:
 * one equal to it, or, on the same family and port, the wildcard address when
 * addr is specific or a specific address when addr is the wildcard.  NULL if
 * none.  The loader refuses a configuration in which any entry has such a
 * conflict with another.
 */
const struct sp_listen_conf *sp_config_find_conflict(const struct sp_config *cfg,
                                                     const struct sockaddr *addr);

/*
 * Value parsers, shared by the loader and its tests.  Each takes the whole
 * string (no surrounding spaces) and returns 0, -EINVAL for a malformed value
 * or -ERANGE for one that overflows.
 *
 * sp_parse_size: bytes; a decimal number with an optional suffix k, m or g
 *   (either case, powers of 1024): "512", "8k", "1m".
 * sp_parse_duration: milliseconds; one or more decimal numbers each with a
 *   unit ms, s, m or h ("500ms", "75s", "1m30s"); a bare number is seconds.
 * sp_parse_listen: "A.B.C.D:PORT", "localhost:PORT" (127.0.0.1), "*:PORT"
 *   (every IPv4 address), "[IPV6]:PORT" ("[::]" for every IPv6 address);
 *   PORT is 1..65535.  Host names other than localhost are not resolved.
 *   Fills *ss (zeroed first) and *len.  Returns -ERANGE for a port out of
 *   1..65535 and -EADDRNOTAVAIL for a host that is not an IP address (a host
 *   name), -EINVAL for anything else malformed.
 */
int sp_parse_size(const char *s, size_t *out);
int sp_parse_duration(const char *s, int64_t *ms);
int sp_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/*
 * The default path of a run-time file of the configuration at conf_path:
 * RUNDIR/spindle/NAME.SUFFIX (RUNDIR from configure's --runstatedir), NAME
 * being the name of the file conf_path leads to (symbolic links followed)
 * without a ".conf" ending, so that configurations in one directory do not
 * share it.  Returns 0, or -ENAMETOOLONG when it does not fit in size bytes.
 */
int sp_config_run_path(char *out, size_t size, const char *conf_path, const char *suffix);

/* RUNDIR/spindle, the directory of those defaults; the master creates it. */
const char *sp_config_run_dir(void);

/*
 * Checks what loading leaves to the file system, so that a configuration
 * that passes cannot fail to start on it: the directories of pid_file,
 * control_socket and error_log exist, and so does each SP_PATH_DIR path of a
 * service and the directory of each of its other paths (sp_config_run_dir() need not: the master
 * creates it).  Borrows cfg. Returns 0, or -errno with "FILE: [SECTION] KEY PATH: reason" in err.
 */
int sp_config_check_files(const struct sp_config *cfg, char *err, size_t errlen);

/*
 * Checks one path the way sp_config_check_files() does: a directory
 * (want_dir) or a file whose directory exists.  section and key name it in
 * the message.  Returns 0, or -errno with the message in err.
 */
int sp_config_check_path(const struct sp_config *cfg, const char *section, const char *key,
                         const char *path, bool want_dir, char *err, size_t errlen);

/*
 * Joins base (absolute) and path and removes ".", ".." and repeated or
 * trailing slashes, without looking at the file system: the result need not
 * exist.  An absolute path ignores base.  Returns 0, or -ENAMETOOLONG when
 * the result does not fit in size bytes.
 */
int sp_config_join_path(char *out, size_t size, const char *base, const char *path);

#endif
