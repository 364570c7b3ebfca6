/*
 * Writing response heads into a caller's buffer: reason phrases, the status
 * line, header lines and the Connection line.  Nothing is allocated and no
 * bound is checked: each function says the most it writes, and the caller
 * makes room for that first.  Every function returns the bytes written.
 */
#ifndef SPINDLE_HTTP_WRITE_H
#define SPINDLE_HTTP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest reason phrase sp_http_reason() returns ("Request Header Fields
 * Too Large"), and the longest status line ("HTTP/1.1 NNN " reason CRLF). */
#define SP_HTTP_REASON_MAX      31
#define SP_HTTP_STATUS_LINE_MAX (13 + SP_HTTP_REASON_MAX + 2)
/* The digits of the largest uint64_t. */
#define SP_HTTP_U64_MAX_DIGITS 20

/* The reason phrase of status ("Not Found"); for a code it does not know, one
 * for its class ("OK", "Redirection", "Client Error", "Server Error"). */
const char *sp_http_reason(unsigned status);

/* "NNN Reason" at d (status 100..999), the reason cut to at most max bytes;
 * at most 4 + SP_HTTP_REASON_MAX bytes. */
size_t sp_http_put_status(char *d, unsigned status, size_t max);

/* "HTTP/1.1 NNN Reason\r\n" at d; at most SP_HTTP_STATUS_LINE_MAX bytes. */
size_t sp_http_put_status_line(char *d, unsigned status);

/* The decimal digits of v at d; at most SP_HTTP_U64_MAX_DIGITS bytes. */
size_t sp_http_put_u64(char *d, uint64_t v);

/* "Name: value\r\n" at d; name_len + value_len + 4 bytes. */
size_t sp_http_put_header(char *d, const char *name, size_t name_len, const char *value,
                          size_t value_len);

/* "Content-Length: N\r\n" at d; at most SP_HTTP_CONTENT_LENGTH_MAX bytes. */
#define SP_HTTP_CONTENT_LENGTH_MAX (16 + SP_HTTP_U64_MAX_DIGITS + 2)
size_t sp_http_put_content_length(char *d, uint64_t n);

/* Whether a response with this status has a body, and so a Content-Length:
 * 1xx, 204 and 304 never do (RFC 9110 8.6, 15.3.5, 15.4.5). */
static inline bool sp_http_status_has_body(unsigned status)
{
    return status != 204 && status != 304 && status >= 200;
}

/* The Connection line a response needs at d: "close" when the connection ends
 * after it, "keep-alive" when it stays open for an HTTP/1.0 client (which
 * would close otherwise), else nothing (HTTP/1.1 keeps it by default).  At
 * most SP_HTTP_CONNECTION_MAX bytes.  Inline: it is on every response's path. */
#define SP_HTTP_CONNECTION_MAX (sizeof("Connection: keep-alive\r\n") - 1)
static inline size_t sp_http_put_connection(char *d, bool close, int minor_version)
{
    static const char conn_close[] = "Connection: close\r\n";
    static const char conn_keep_alive[] = "Connection: keep-alive\r\n";

    if (close) {
        memcpy(d, conn_close, sizeof(conn_close) - 1);
        return sizeof(conn_close) - 1;
    }
    if (minor_version == 0) {
        memcpy(d, conn_keep_alive, sizeof(conn_keep_alive) - 1);
        return sizeof(conn_keep_alive) - 1;
    }
    return 0;
}

#endif
