/*
 * [http NAME]: the HTTP service's configuration, filled by the loader through
 * the key table in http_conf.c.  The keys are documented in
 * spindle.conf.example.
 */
#ifndef SPINDLE_WORKER_HTTP_CONF_H
#define SPINDLE_WORKER_HTTP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_log_format.h"
#include "spindle/service.h"

#define SP_CONFIG_MAX_RETURNS 1024 /* per [http] section */

/* "return PATH = STATUS CONTENT-TYPE BODY": a fixed response for one exact path. */
struct sp_http_return {
    const char *path;         /* starts with '/' */
    unsigned status;          /* 200..599 */
    const char *content_type; /* e.g. "text/plain" */
    const char *body;         /* the rest of the line, may be "" (NUL-terminated too) */
    size_t body_len;
    unsigned line;
};

#define SP_CONFIG_MAX_HANDLES 256 /* per [http] section */

/* "handle PREFIX = MODULE": the requests under PREFIX go to MODULE's handler. */
struct sp_http_handle {
    const char *prefix; /* starts with '/', no trailing '/' except "/" itself */
    const char *module; /* the NAME of a [module NAME] section */
    unsigned line;
};

/* "proxy PREFIX = UPSTREAM": the requests under PREFIX are forwarded to the
 * servers of [upstream UPSTREAM] (worker/http/http_proxy.c).  Its prefixes
 * and the handle lines' are unique together. */
struct sp_http_proxy {
    const char *prefix;   /* as a handle line's */
    const char *upstream; /* the NAME of an [upstream NAME] section */
    unsigned line;
};

#define SP_HTTP_TLS_MAX_PAIRS 16 /* tls_certificate lines per [http] section */

/* One tls_certificate file or tls_certificate_key file, read by the loader
 * (in the master, before the workers drop privileges): the workers build
 * their TLS contexts from pem, in memory they inherit. */
struct sp_http_tls_file {
    const char *path; /* absolute */
    unsigned line;
    char *pem; /* the file's bytes, owned (free_conf) */
    size_t len;
};

#define SP_HTTP_TLS_V12 0x1u
#define SP_HTTP_TLS_V13 0x2u

/* tls_ktls: whether a connection goes through OpenSSL's own socket BIO,
 * which hands the records to the kernel where it can (kernel TLS). */
enum sp_http_ktls { SP_HTTP_KTLS_OFF, SP_HTTP_KTLS_AUTO, SP_HTTP_KTLS_ON };

struct sp_http_conf {
    const char *root;         /* absolute, no trailing '/'; NULL: serve no files */
    const char *index;        /* file name served for a directory, default "index.html" */
    const char *status_path;  /* JSON status page; NULL: disabled */
    const char *metrics_path; /* Prometheus metrics page; NULL: disabled */
    const char *health_path;  /* 200 "ok", 503 once a graceful stop begins; NULL: disabled */
    struct sp_http_return *returns;
    unsigned nreturns;
    struct sp_http_handle *handles;
    unsigned nhandles;
    struct sp_http_proxy *proxies;
    unsigned nproxies;
    int64_t keepalive_timeout_ms; /* 0: close after each response */
    int64_t header_timeout_ms;    /* > 0 */
    int64_t body_timeout_ms;      /* > 0 */
    int64_t send_timeout_ms;      /* > 0: a peer that takes no bytes this long is dropped */
    size_t max_header_size;       /* request line + headers, bytes */
    size_t max_body_size;         /* 0: no request body accepted */
    const char *access_log;       /* absolute path; NULL: off */
    const struct http_logfmt *access_log_format; /* owned (http_logfmt_free) */
    /* TLS, for the listen addresses flagged tls (http_tls_conf.c): the
     * i-th certificate goes with the i-th key. */
    struct sp_http_tls_file tls_certs[SP_HTTP_TLS_MAX_PAIRS];
    struct sp_http_tls_file tls_keys[SP_HTTP_TLS_MAX_PAIRS];
    unsigned ntls_certs, ntls_keys;
    unsigned tls_protocols;           /* SP_HTTP_TLS_V12 | SP_HTTP_TLS_V13 */
    const char *tls_ciphers;          /* TLS 1.2 cipher list, OpenSSL syntax */
    int64_t tls_handshake_timeout_ms; /* > 0 */
    bool tls_session_tickets;
    unsigned char tls_ktls;         /* enum sp_http_ktls */
    int64_t tls_ticket_rotation_ms; /* each ticket key's period, whole seconds */
    bool tls;                       /* a listen address is flagged tls */
};

/* The configuration half of the service's definition: the fields of struct
 * sp_service_def the loader uses.  http.c completes it with the worker's
 * callbacks (sp_service_http); sp_service_http_conf is the half alone, for
 * a program that loads configurations and runs no worker (the config
 * fuzzer), which then need not link the runtime. */
#define HTTP_CONF_DEF                                                                              \
    .name = "http", .tls = true, .conf_size = sizeof(struct sp_http_conf), .keys = http_conf_keys, \
    .defaults = http_conf_defaults, .check = http_conf_check, .resolve = http_conf_resolve,        \
    .free_conf = http_conf_free, .paths = http_conf_paths,                                         \
    .ticket_rotation = http_conf_ticket_rotation

extern const struct sp_conf_key http_conf_keys[];
void http_conf_defaults(struct sp_conf_ctx *ctx, void *conf);
void http_conf_check(struct sp_conf_ctx *ctx, void *conf);
void http_conf_resolve(struct sp_conf_ctx *ctx, void *conf);
void http_conf_free(void *conf);
unsigned http_conf_paths(const void *conf, struct sp_service_path *out, unsigned max);
unsigned http_conf_ticket_rotation(const void *conf);
extern const struct sp_service_def sp_service_http_conf;

/* http_tls_conf.c: the tls_* keys' setters, defaults and checks. */
void http_tls_conf_set_file(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                            const char *value);
void http_tls_conf_set_protocols(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                                 const char *value);
void http_tls_conf_set_onoff(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                             const char *value);
void http_tls_conf_set_ktls(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                            const char *value);
void http_tls_conf_defaults(struct sp_conf_ctx *ctx, struct sp_http_conf *h);
void http_tls_conf_check(struct sp_conf_ctx *ctx, struct sp_http_conf *h);
void http_tls_conf_free(struct sp_http_conf *h);

/*
 * Builds the SSL_CTXs of a section (an SSL_CTX *, as void * so that this
 * header needs no OpenSSL): ctxs[0] is the default, each further one holds
 * the certificates of other server names (SNI).  Certificates of one subject
 * with different key types (ECDSA and RSA) share a context.  Returns the
 * count (>= 1) or -1 with a message in err; *line is then the configuration
 * line to blame.  Checks that each key matches its certificate and, when
 * check_time, that no certificate has expired.  The caller frees each
 * context with SSL_CTX_free.
 */
int http_tls_ctxs_new(const struct sp_http_conf *h, void **ctxs, bool check_time, char *err,
                      size_t errlen, unsigned *line);

/*
 * Parses the value of a return line, "PATH = STATUS CONTENT-TYPE [BODY]" (the
 * text after "return "), in place: NULs are written into s and r's strings
 * point into it; r->line is left alone.  The body is the rest of the text
 * after the content type and its spaces, taken literally.  Returns 0, or
 * -EINVAL with *why set to a static description of the fault.
 */
int sp_parse_return(char *s, struct sp_http_return *r, const char **why);

#endif
