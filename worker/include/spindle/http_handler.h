/*
 * HTTP handlers: code of a module (spindle/module.h) that answers the requests
 * of a path prefix of an [http NAME] service:
 *
 *     [http web]
 *     handle /hello = hello       ; /hello and /hello/..., not /helloworld
 *
 * The handler gets the request and the response as opaque handles and uses
 * them only through the functions below, so that spindle can change how it
 * keeps them without breaking compiled modules (see docs/modules.md).
 *
 * Threading: the handler runs on the connection's fiber, on the scheduler
 * thread that accepted the connection; the fiber never changes threads, so
 * thread-local storage stays valid across a park.  It may park (sp_sleep,
 * sp_read, sp_connect...): the fiber waits while the thread runs other
 * connections.  With threads > 1 in [master], several threads run handlers at
 * once, all with the same state: the module synchronises its own shared
 * mutable state (and holds no lock across a park).
 *
 * Ownership: every pointer a function below returns (path, headers, body...)
 * points into spindle's memory and stays valid until the handler returns; the
 * handles themselves too.  Everything passed in is borrowed: spindle copies
 * what it keeps past the call (a file descriptor stays the caller's).
 *
 * What spindle does for every handler route as for its built-in routes:
 * keep-alive and pipelining, every limit and timeout of the service, the
 * error statuses (400, 408, 413...), the access log, HEAD (the handler
 * answers as for GET; no body byte is sent), and the headers Content-Length
 * (or Transfer-Encoding), Date, Server and Connection.  A handler that
 * returns 0 without responding gets a 500 answered for it; one that returns
 * -1 has the connection closed (after what it sent already).
 */
#ifndef SPINDLE_HTTP_HANDLER_H
#define SPINDLE_HTTP_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "spindle/http_parser.h" /* enum sp_http_method */

struct sp_http_req;  /* the request being answered */
struct sp_http_resp; /* its response */

struct sp_http_handler_def {
    /* Answers one request.  state is the module instance's (its init()'s
     * *state).  Returns 0, or -1 to close the connection. */
    int (*handle)(struct sp_http_req *req, struct sp_http_resp *resp, void *state);
};

/* ---- the request -------------------------------------------------------- */

/* The method: SP_HTTP_GET, SP_HTTP_HEAD, SP_HTTP_POST... (never
 * SP_HTTP_OTHER: an unknown method is answered 501 before routing). */
enum sp_http_method sp_http_req_method(const struct sp_http_req *req);

/* The method's name as sent ("GET"), not NUL-terminated; *len its length. */
const char *sp_http_req_method_name(const struct sp_http_req *req, size_t *len);

/* The path: percent-decoded and normalised ("/a/../b//c" is "/b/c"), always
 * starting with '/', without the query.  Not NUL-terminated. */
const char *sp_http_req_path(const struct sp_http_req *req, size_t *len);

/* The request target as sent ("/a%20b?x=1"). */
const char *sp_http_req_target(const struct sp_http_req *req, size_t *len);

/* The query after '?', still percent-encoded; NULL (len 0) without a '?'. */
const char *sp_http_req_query(const struct sp_http_req *req, size_t *len);

/* The value of the first header named name (any case), without surrounding
 * blanks, or NULL when there is none. */
const char *sp_http_req_header(const struct sp_http_req *req, const char *name, size_t *len);

/* The i-th header line as received (0 first).  Returns 0, or -ENOENT when i
 * is past the last. */
int sp_http_req_header_at(const struct sp_http_req *req, size_t i, const char **name,
                          size_t *name_len, const char **value, size_t *value_len);

/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
int sp_http_req_version(const struct sp_http_req *req);

/* Whether the client asked to keep the connection (HTTP/1.1 without
 * "Connection: close", HTTP/1.0 with "keep-alive").  spindle may close it
 * anyway (keepalive_timeout = 0, a draining worker). */
bool sp_http_req_keep_alive(const struct sp_http_req *req);

/* The peer's address, or NULL when the socket has none (a socketpair). */
const struct sockaddr_storage *sp_http_req_peer(struct sp_http_req *req);

/* The peer's address as text ("192.0.2.1", "2001:db8::1"), NUL-terminated;
 * "-" when unknown. */
const char *sp_http_req_peer_name(struct sp_http_req *req);

/* Whether the request has a body (Content-Length > 0 or chunked). */
bool sp_http_req_has_body(const struct sp_http_req *req);

/*
 * Reads the whole body, at most max_body_size bytes.  *body (NULL when
 * empty) is spindle's, valid until the handler returns.  Returns 0, or
 * -errno: -EMSGSIZE (too large), -EPROTO (bad chunked framing), -ETIMEDOUT
 * (body_timeout), -ENOMEM, -ECONNABORTED or another read error.  After an
 * error the handler should return without responding: spindle answers the
 * status the error calls for (413, 400, 408) as for built-in routes, or
 * drops the connection; the connection ends after this request in any case.
 * Calls after the body has been read return the same body again.
 */
int sp_http_req_body(struct sp_http_req *req, const char **body, size_t *len);

/* Reads up to len (> 0) further bytes of the body into buf, the pieces as
 * they arrive (a chunked body decoded).  Returns the count, 0 at the end, or
 * -errno as sp_http_req_body.  Don't mix with sp_http_req_body. */
ssize_t sp_http_req_read(struct sp_http_req *req, void *buf, size_t len);

/* ---- the response --------------------------------------------------------- */

/* Sets the status, 200..599 (default 200).  Returns 0, -EINVAL for another
 * value, -EALREADY once the body has begun. */
int sp_http_resp_status(struct sp_http_resp *resp, unsigned status);

/*
 * Adds a header line "name: value" (copied), Content-Type included (none is
 * sent unless added).  Content-Length, Transfer-Encoding, Date, Server and
 * Connection are spindle's.  Returns 0; -EINVAL for a name that is not a
 * token, a value with CR, LF or NUL in it, or one of spindle's names;
 * -ENOSPC when the response's headers exceed 4 KiB; -EALREADY once the body
 * has begun.
 */
int sp_http_resp_header(struct sp_http_resp *resp, const char *name, const char *value);

/* Sends the response with body[0..len) (copied).  Returns 0, -EALREADY when
 * a body was sent already, -EINVAL for a body with a status that has none
 * (204, 304), or a write error (-errno: the handler should return). */
int sp_http_resp_body(struct sp_http_resp *resp, const void *body, size_t len);

/* Sends the response with len bytes of fd from offset, with sendfile (a
 * regular file; the fd's own offset is not used or moved).  fd stays the
 * caller's.  Returns as sp_http_resp_body; a file that ends before len
 * bytes fails the connection (-EIO): the head promised them. */
int sp_http_resp_fd(struct sp_http_resp *resp, int fd, off_t offset, uint64_t len);

/* Sends the whole regular file at path (opened, sent, closed).  Returns as
 * sp_http_resp_body, -ENOENT, -EACCES... when it cannot be opened, -EISDIR
 * or -EINVAL for something other than a regular file; then nothing was
 * sent and the handler may still respond. */
int sp_http_resp_file(struct sp_http_resp *resp, const char *path);

/* Streams a body of unknown length: each call sends data[0..len) as one
 * chunk (HTTP/1.1, Transfer-Encoding: chunked; to an HTTP/1.0 client the
 * body ends with the connection).  The head goes with the first call.
 * len 0 does nothing.  Returns 0 or -errno as sp_http_resp_body. */
int sp_http_resp_write(struct sp_http_resp *resp, const void *data, size_t len);

/* Ends a streamed body (spindle does so when the handler returns without).
 * Returns 0 or a write error. */
int sp_http_resp_end(struct sp_http_resp *resp);

/*
 * A whole response made once (at init, say) and sent as often as needed, the
 * way spindle's own `return` routes are: its head is written when it is made
 * but for the Date and Connection lines, so sending it costs a copy.
 * sp_http_ready_new copies content_type and body[0..len); status is 200..599.
 * Returns NULL for an invalid status or content type (a CR, LF or other
 * control byte) or without memory.  Free it with sp_http_ready_free once no
 * request can send it any more (in the module's fini).
 */
struct sp_http_ready;
struct sp_http_ready *sp_http_ready_new(unsigned status, const char *content_type, const void *body,
                                        size_t len);
void sp_http_ready_free(struct sp_http_ready *ready);

/* Sends ready as the response (HEAD: its head only).  Headers added with
 * sp_http_resp_header go with it (then the head is written as for
 * sp_http_resp_body).  Returns as sp_http_resp_body. */
int sp_http_resp_ready(struct sp_http_resp *resp, const struct sp_http_ready *ready);

/* Writes out what is buffered now.  Responses are otherwise written when
 * the buffer fills and when the requests read together are all answered:
 * flush before parking for long in the middle of a stream. */
int sp_http_resp_flush(struct sp_http_resp *resp);

#endif
