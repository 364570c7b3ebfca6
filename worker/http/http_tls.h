/*
 * HTTPS for the HTTP service (http_tls.c): the TLS contexts of a section and
 * the TLS stream a connection on a listen address flagged tls runs over.
 */
#ifndef SPINDLE_WORKER_HTTP_TLS_H
#define SPINDLE_WORKER_HTTP_TLS_H

#include <stdatomic.h>
#include <stdbool.h>

#include "spindle/stream.h"

struct http_svc;
struct http_tls;
struct sp_http_conf;

/* Worker-wide counters, for the status page: handshakes completed, failed
 * (garbage, plaintext, timeouts, resets), renegotiations refused, and the
 * completed handshakes whose records the kernel encrypts (kTLS). */
extern atomic_ullong http_tls_handshakes, http_tls_failures, http_tls_renegotiations,
    http_tls_ktls_handshakes;

/* The TLS contexts of conf (from the PEM bytes the loader read).  Returns
 * them, owned by the caller (http_tls_free), or NULL with a message in err. */
struct http_tls *http_tls_new(const struct sp_http_conf *conf, char *err, size_t errlen);
void http_tls_free(struct http_tls *tl);

/*
 * Runs the server side of a handshake on fd, on the calling fiber, within
 * the section's tls_handshake_timeout.  Returns the connection's stream
 * (heap, owned by the caller: sp_stream_close ends it and frees it), or
 * NULL after closing fd (the failure is counted).  hs is borrowed for the
 * stream's life.
 */
struct sp_stream *http_tls_accept(struct http_svc *hs, struct http_tls *tl, int fd);

/* Frees a TLS stream whose fd was closed by someone else (no I/O). */
void http_tls_drop(struct sp_stream *s);

/* The service a TLS stream belongs to. */
struct http_svc *http_tls_svc(struct sp_stream *s);

/* True when s is a TLS stream whose records the kernel encrypts. */
bool http_tls_ktls(struct sp_stream *s);

#endif
