/*
 * The HTTP service, private to worker/http*.c.
 *
 * A connection has no state of its own while it is idle: the fd sits in an
 * sp_iom_watch() and the watch's argument is the service.  When bytes arrive
 * a fresh fiber runs http_conn (on its stack: the stream over the socket,
 * the input and output buffers, the parsed request) for as long as there is work, answers every
 * complete request in the input with one write, and hands the fd back to the watch.
 *
 * Module map:
 *   http/http_conf.c  [http NAME]: keys, defaults, checks (http/local.mk builds it all)
 *   http.c            the service's definition, the connection loop, routing
 *   http_body.c       the request body reader
 *   http_response.c   output buffer, Date cache, response heads, errors,
 *                     prebuilt "return" responses
 *   http_static.c     files under root: lookup, cache, conditionals, ranges
 *   http_mime.c       content type by file extension
 *   http_handler.c    the handler API (spindle/http_handler.h): requests and
 *                     responses of module handlers and built-in handler routes
 *   http_proxy.c      proxy lines: a request forwarded, its answer streamed back
 *   http_upstream.c   their [upstream]s: balance, health, keep-alive pools
 *   http_status.c     the JSON status page, a handler
 *   http_access_log.c the buffered access log
 *   http_log_format.c access_log_format: json and templates, compiled once
 *                     (http_log_format.h; libc only, linked by http_conf.c)
 *   http_tls.c        HTTPS: the TLS stream a connection runs over (http_tls.h)
 *   http_tls_conf.c   the tls_* keys, the contexts and ticket keys built from them
 */
#ifndef SPINDLE_WORKER_HTTP_H
#define SPINDLE_WORKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "spindle/http_date.h"
#include "spindle/http_handler.h"
#include "http_conf.h"
#include "spindle/http_parser.h"
#include "spindle/stream.h"
#include "../metrics.h"
#include "../worker.h"

#define HTTP_IN_SIZE   16384 /* input buffer on the fiber stack */
#define HTTP_OUT_SIZE  16384 /* output buffer on the fiber stack */
#define HTTP_OUT_IOV   32    /* pieces one flush writes with a single writev */
#define HTTP_MAX_HDRS  64    /* header lines in one request (more: 431) */
#define HTTP_BODY_ROOM 4096  /* free input space wanted when a body is read */
struct http_file;            /* a cached file, http_static.c */
struct http_static;          /* the file server of one service, http_static.c */
struct http_log;             /* the access log, http_access_log.c */

/* A fixed response built at init: the head without its blank line, with a
 * placeholder where each response gets the current Date. */
struct http_prebuilt {
    unsigned status;
    char *head; /* owned */
    size_t head_len;
    size_t date_off;
    const char *body; /* borrowed from the configuration */
    size_t body_len;
};

struct http_conn;
struct http_txn;

/* A handler (spindle/http_handler.h) and the state it is called with: a
 * module's, for "handle PREFIX = MODULE", or a built-in route's. */
struct http_proxy; /* the upstream of proxy lines, http_proxy.c */
struct sp_upstream_conf;

struct http_handler {
    struct http_proxy *proxy; /* a proxy line: def and state unused */
    const char *prefix;       /* handle lines: no trailing '/' except "/" itself;
                               * an exact route's: its path */
    size_t prefix_len;
    const struct sp_http_handler_def *def;
    void *state;
};

/* What an exact path answers: a function and its argument (a prebuilt
 * response, a handler), and the methods it takes. */
struct http_route {
    const char *path; /* NULL: empty slot */
    size_t path_len;
    int (*answer)(struct http_conn *c, struct http_txn *t, const void *arg);
    const void *arg;
    bool post; /* POST as well as GET and HEAD */
};

struct http_svc {
    struct service *svc;
    const struct sp_http_conf *conf;
    struct sp_http_limits limits;
    struct http_prebuilt *prebuilt;
    size_t nprebuilt;          /* built, of conf->nreturns */
    struct http_route *routes; /* open addressing, routes_mask + 1 slots */
    size_t routes_mask;
    struct http_handler *handlers; /* handle lines, longest prefix first */
    size_t nhandlers;
    struct http_proxy **proxies;               /* one per upstream the proxy lines name */
    const struct sp_upstream_conf **upstreams; /* proxies[i]'s */
    size_t nproxies;
    struct http_handler status;       /* the status page's route */
    struct http_handler metrics_page; /* the metrics page's route */
    struct http_static *st;           /* NULL: no root */
    struct http_log *log;             /* NULL: access_log off */
    bool log_full;                    /* its format is not combined: txns record more for it */
    bool bufs_on_stack;               /* the fiber stack is deep enough for both buffers */
    struct http_tls *tls;             /* NULL: no listen address flagged tls */
    bool tls_only;                    /* every listen address is flagged tls */
    struct metrics_svc *metrics;      /* this service's histogram in the shared counters, or NULL */
};

/*
 * Output of one batch: text copied into buf, plus pieces that live elsewhere
 * (a cached file, a configured body), written together by one writev.
 */
struct http_out {
    struct sp_stream *stream; /* the connection's */
    char *buf;
    size_t cap, len;
    size_t mark; /* buf[mark..len) is text not yet in iov[] */
    struct iovec iov[HTTP_OUT_IOV];
    int niov;
    struct http_file *refs[HTTP_OUT_IOV]; /* cached files iov[] points into */
    int nrefs;
    int64_t send_timeout_ms; /* a write the peer takes nothing of this long fails */
    uint64_t sent;           /* bytes written so far, for the counters */
    uint64_t queued;         /* bytes handed to the output since the connection began */
    uint64_t written;        /* of those, bytes the socket took (a prefix of the stream) */
    int error;               /* first write error (-errno); once set, nothing more is sent */
};

/* One request being answered. */
struct http_txn {
    const struct sp_http_request *req;
    const char *date; /* SP_HTTP_DATE_LEN bytes, this batch's Date */
    bool head;        /* HEAD: headers only */
    bool close;       /* the connection ends after this response */
    unsigned status;  /* what was answered, for the access log */
    uint64_t body_len;
    uint64_t body_at; /* out.queued where the body begins */
    const char *line; /* the request line as received, without its end, or NULL */
    size_t line_len;
    const char *path; /* the clean path, set for handler routes only */
    size_t path_len;
    /* For the access log in a format other than combined only, set with
     * line (txn_line): */
    uint64_t start_ns;         /* when the head was parsed, if the format needs it */
    uint64_t head_at;          /* out.queued where the answer begins */
    uint64_t request_length;   /* the head's bytes and the Content-Length */
    uint64_t upstream_ns;      /* a proxied request: the upstream's time, */
    const char *upstream_addr; /* and the last server tried (NULL: not proxied) */
};

/* An answered request waiting for its bytes to be written before it is
 * logged.  The slices point into the connection's input. */
struct http_log_entry {
    const char *line;
    size_t line_len;
    struct http_log_slice hdr[HTTP_LOGFMT_HDRS]; /* the format's headers */
    unsigned status;
    uint64_t body_at, body_len;
    uint64_t start_ns, head_at, request_length, upstream_ns;
    const char *upstream_addr;
};

#define HTTP_LOG_QUEUE 8 /* requests of one batch logged together */

enum http_body_state {
    HTTP_BODY_NONE = 0, /* no body, or it has been read to its end */
    HTTP_BODY_READING,  /* more of it is to be read from the stream */
    HTTP_BODY_DONE,     /* all of it is in the input; some may be undelivered */
    HTTP_BODY_FAILED,   /* error and status say what went wrong */
};

/* The body of the request being answered (http_body.c). */
struct http_body {
    enum http_body_state state;
    bool chunked;
    bool expect;       /* 100 Continue is to be sent before the first read */
    unsigned status;   /* after an error: the status to answer, 0 for none */
    int error;         /* after an error: what http_body_read returned */
    size_t at;         /* where the body began in the input (its head's end) */
    size_t pos, pend;  /* decoded bytes not yet delivered: in[pos..pos+pend) */
    uint64_t left;     /* Content-Length: bytes not yet read */
    uint64_t deadline; /* body_timeout, set at the first wait */
    uint64_t bytes_in; /* bytes read from the stream for this body */
    struct sp_http_chunked dec;
};

/* The active part of a connection, on its fiber's stack.  It is set up at
 * every wake-up: the members before out are cleared (conn_frame_run), out
 * and date are initialised by their own code, so the 768 bytes of out's
 * iov[] and refs[] are never cleared in vain. */
struct http_conn {
    struct http_svc *hs;
    struct sp_stream *stream; /* the connection (&sock, or a TLS stream); ->fd is the socket */
    struct sp_stream sock;    /* a plain connection's stream */
    char *in;
    size_t cap, len;            /* in[0..len) holds unparsed input */
    char *heap_in;              /* in when it had to grow past the stack buffer */
    struct sp_http_resume head; /* how far the partial head at in[0] was parsed */
    struct http_body body;      /* the current request's body */
    char peer[64];              /* "addr" for the access log, filled on first use */
    /* Answered requests waiting to be logged (HTTP_LOG_QUEUE entries,
     * beside the buffers). */
    struct http_log_entry *logq;
    unsigned nlogq;
    /* Not cleared: */
    struct http_out out;         /* http_out_init() */
    char date[SP_HTTP_DATE_LEN]; /* http_date_now() before each batch */
};

/* ---- helpers ------------------------------------------------------------ */

/* 64-bit FNV-1a of p[0..n); callers fold it to a table index. */
static inline uint64_t http_hash(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- http_body.c -------------------------------------------------------- */

/* Milliseconds until deadline (sp_now_ns() time), rounded up; 0 once past. */
int64_t http_ms_left(uint64_t deadline_ns);

/* Reads into the free space after c->in[0..len) until deadline (sp_now_ns()
 * time).  Returns what sp_stream_read() returns, or -ETIMEDOUT when the
 * deadline has passed already. */
ssize_t http_in_read(struct http_conn *c, uint64_t deadline);

/*
 * Starts reading the body of req, whose head ends at c->in[at]; the body's
 * first bytes may be in c->in[at..len).  Needs HTTP_BODY_ROOM free bytes
 * after at unless the whole body is there.  A Content-Length above
 * max_body_size fails at once (413).  The body is then read with the calls
 * below, in any mix; once one of them has returned 0, c->in[at..len) holds
 * what followed the body (the next pipelined request).  The first read that
 * has to wait sends "100 Continue" when the client asked for it, and
 * body_timeout bounds the wait for the whole body from then on.
 *
 * Errors are -errno, and c->body.status is the status to answer before
 * closing: -EMSGSIZE (413: beyond max_body_size), -EPROTO (400 bad chunked
 * framing, 431 trailer too large), -ETIMEDOUT (408), -ENOMEM (500); with
 * status 0 the connection is to be dropped: -ECONNABORTED (the client ended
 * the stream inside the body) or a read or write error.  An error sticks.
 */
void http_body_begin(struct http_conn *c, const struct sp_http_request *req, size_t at);

/* Reads up to len (> 0) decoded body bytes into buf.  Returns the count, 0
 * at the end of the body, or an error (see http_body_begin). */
ssize_t http_body_read(struct http_conn *c, void *buf, size_t len);

/* Reads the rest of the body into a buffer from malloc (NULL when empty;
 * the caller frees it), at most max_body_size bytes.  Returns 0, or an
 * error (see http_body_begin; nothing to free). */
int http_body_read_all(struct http_conn *c, char **ptr, size_t *len);

/* Reads the rest of the body and drops it.  Returns 0 or an error. */
int http_body_discard(struct http_conn *c);

/* ---- http_response.c ---------------------------------------------------- */

void http_out_init(struct http_out *o, struct sp_stream *stream, char *buf, size_t cap,
                   int64_t send_timeout_ms);

/* Returns a pointer to n free bytes at the end of the text (flushing first if
 * needed; n <= o->cap), or NULL once a write has failed.  Commit with
 * http_out_commit(). */
char *http_out_space(struct http_out *o, size_t n);
static inline void http_out_commit(struct http_out *o, size_t n)
{
    o->len += n;
    o->queued += n;
}

/* Appends a copy of p[0..n).  Returns 0 or o->error. */
int http_out_text(struct http_out *o, const void *p, size_t n);

/* Appends p[0..n) by reference: it must stay valid until the next flush.
 * ref, when not NULL, is a cached file whose reference the output takes
 * over (released after the flush).  Returns 0 or o->error. */
int http_out_ref(struct http_out *o, const void *p, size_t n, struct http_file *ref);

/* Writes everything pending with one writev.  Returns 0 or -errno (kept in
 * o->error). */
int http_out_flush(struct http_out *o);

/* Releases references without writing (the connection is being dropped). */
void http_out_discard(struct http_out *o);

/* Copies the current Date value (SP_HTTP_DATE_LEN bytes, no NUL) into dst.  The
 * string is cached per thread and rebuilt when the second changes. */
void http_date_now(char *dst);

/*
 * Appends a response head: status line, Server, Date, Content-Type (when
 * ctype is not NULL), Content-Length (unless status is 204 or 304; see
 * HTTP_LEN_CHUNKED for a body of unknown length),
 * Connection when t says so, extra (complete header lines, may be NULL) and
 * the blank line.  Sets t->status and t->body_len.  Returns 0 or o->error.
 */
int http_head(struct http_out *o, struct http_txn *t, unsigned status, const char *ctype,
              uint64_t content_length, const char *extra, size_t extra_len);

/* A short text/plain response for an error status, with extra header lines
 * (NULL for none).  Returns 0 or o->error. */
int http_error(struct http_out *o, struct http_txn *t, unsigned status, const char *extra);

/* Builds the prebuilt response of a return line.  Returns 0 or -ENOMEM. */
int http_prebuilt_init(struct http_prebuilt *pb, const struct sp_http_return *r);

/* Appends a prebuilt response (no body for HEAD).  Returns 0 or o->error. */
int http_prebuilt_send(struct http_out *o, struct http_txn *t, const struct http_prebuilt *pb);

/* A body of unknown length for http_head(): Transfer-Encoding: chunked to
 * an HTTP/1.1 client, nothing (the body ends with the connection) to 1.0. */
#define HTTP_LEN_CHUNKED UINT64_MAX

/* ---- http_handler.c ----------------------------------------------------- */

/* Runs handler h for the request t (its body begun, unread) at the clean
 * path t->path, and completes what it left undone: a 500 when it did not
 * respond, the end of a streamed body.  Returns 0, or -errno when the
 * connection must be dropped (a write error, the handler returned -1).  A
 * failed body read is left in c->body for the caller to answer. */
int http_handler_run(struct http_conn *c, struct http_txn *t, const struct http_handler *h);

/* ---- http_proxy.c ------------------------------------------------------- */

/* The state of one [upstream] for a service: balancer, passive health and
 * a keep-alive pool per scheduler thread (threads >= 1).  Borrows up, which
 * outlives it.  Returns NULL with a message in err. */
struct http_proxy *http_proxy_new(const struct sp_upstream_conf *up, struct worker *w,
                                  unsigned threads, char *err, size_t errlen);

/* Starts the upstream's active check (health_check), when it has one, on a
 * fiber of w's IOManager.  Returns 0 or -ENOMEM. */
int http_proxy_start(struct http_proxy *px);

/* Closes the pooled connections and frees px; the scheduler threads must
 * have stopped.  Accepts NULL. */
void http_proxy_free(struct http_proxy *px);

/* The most bytes http_proxy_status() writes. */
size_t http_proxy_status_size(const struct http_proxy *px);

/* Writes px's counters as one JSON member at d ("NAME":{...}): requests
 * proxied, answered 502 and 504, idle pooled connections, and per server
 * its requests, failures and the scheduler threads that leave it out now.
 * Summed over the threads, readable from any of them.  Returns the length. */
size_t http_proxy_status(const struct http_proxy *px, char *d);

/* Forwards the request t (its body begun, unread) to px's upstream and
 * streams the answer back, or answers 502/504 itself.  Returns 0, or -errno
 * when the client connection must be dropped (a write error, an answer cut
 * after its head went out).  A failed body read is left in c->body for the
 * caller to answer. */
int http_proxy_run(struct http_conn *c, struct http_txn *t, struct http_proxy *px);

/* ---- http_static.c -------------------------------------------------------- */

/* Opens root, with a small-file cache per scheduler thread (threads >= 1).
 * Returns NULL with a message in err. */
struct http_static *http_static_new(const struct sp_http_conf *conf, unsigned threads, char *err,
                                    size_t errlen);

/* Frees st, its caches and the files in them; the scheduler threads must
 * have stopped.  Accepts NULL. */
void http_static_free(struct http_static *st);

/* Answers a GET or HEAD for the clean path (starts with '/', normalised,
 * decoded).  May flush c->out and write the file itself (large files).
 * Returns 0, or -errno when the connection must be dropped. */
int http_static_serve(struct http_conn *c, struct http_txn *t, const char *path, size_t len);

/* Drops one reference to a cached file. */
void http_file_release(struct http_file *f);

/* ---- http_mime.c ---------------------------------------------------------- */

/* The Content-Type for a file name, by extension; application/octet-stream
 * when unknown. */
const char *http_mime_type(const char *name, size_t len);

/* Frees the table read from /etc/mime.types, at the exit of a worker that
 * will look up no more types. */
void http_mime_free(void);

/* ---- http_status.c -------------------------------------------------------- */

/* The JSON status page, a handler written against spindle/http_handler.h;
 * its state is the struct worker. */
extern const struct sp_http_handler_def http_status_handler;
extern const struct sp_http_handler_def http_metrics_handler;

/* worker/http/status.html, made a C string by the build (status_html.c). */
extern const char http_status_html[];
extern const size_t http_status_html_len;

/* ---- http_access_log.c ---------------------------------------------------- */

/* Starts the access log on fd, path opened for appending by the master
 * (fd < 0: -errno of that open, reported in err), with lines in fmt
 * (borrowed from the configuration).  Takes ownership of fd.
 * Returns NULL with a message in err. */
struct http_log *http_log_open(const char *path, const struct http_logfmt *fmt, int fd,
                               unsigned threads, char *err, size_t errlen);

/* Queues the access log line of the answered request t (nothing when the
 * service has no log or t was not answered).  Its slices must stay valid
 * until http_log_commit(); a full queue is committed first. */
void http_log_add(struct http_conn *c, const struct http_txn *t);

/* Writes out what c->out holds, then logs the queued requests with the body
 * bytes the socket actually took (a response cut by send_timeout or a reset
 * counts what went out, as nginx's $body_bytes_sent). */
void http_log_commit(struct http_conn *c);

/* Fills c->peer with the client's address ("-" when unknown), once per
 * wake-up of the connection. */
void http_peer_name(struct http_conn *c);

/* Writes what the calling scheduler thread has buffered (other threads'
 * lines follow within a second).  Accepts NULL. */
void http_log_flush(struct http_log *log);

/* Flushes the calling thread's lines, then writes to fd, the file reopened
 * by the master (log rotation), from now on: every thread.  Takes ownership
 * of fd. */
void http_log_reopen(struct http_log *log, int fd);

/* Flushes every thread's lines and closes; the scheduler threads must have
 * stopped.  Accepts NULL. */
void http_log_close(struct http_log *log);

#endif
