/*
 * HTTP/1.1 response head parsing, for the client side of a connection (a
 * proxy reading what an upstream server answers): the status line, the
 * header lines and how the body is framed (RFC 9112 6.3).
 *
 * Like the request parser (http_parser.h), it is pure and zero-copy, restarts
 * from the first byte on every call and returns a head length, SP_HTTP_INCOMPLETE
 * or SP_HTTP_INVALID with an sp_http_error.  A proxy answers its own client
 * 502 (Bad Gateway) for any SP_HTTP_INVALID here, and closes the upstream
 * connection.  A chunked body is read with sp_http_chunked_decode().
 */
#ifndef SPINDLE_HTTP_RESPONSE_H
#define SPINDLE_HTTP_RESPONSE_H

#include "spindle/http_parser.h"

/* How the body of a response ends (RFC 9112 6.3). */
enum sp_http_framing {
    SP_HTTP_BODY_NONE,    /* no body: the response ends with its head */
    SP_HTTP_BODY_LENGTH,  /* content_length bytes (maybe 0) */
    SP_HTTP_BODY_CHUNKED, /* chunked coding, the last transfer coding */
    SP_HTTP_BODY_CLOSE,   /* everything until the server closes the connection */
    SP_HTTP_BODY_TUNNEL,  /* 101, or 2xx to CONNECT: the bytes after the head are no
                             longer HTTP/1.1 */
};

/* Bit of sp_http_response.flags besides the SP_HTTP_F_* of the request: the
 * framing cannot be trusted to leave the connection reusable. */
#define SP_HTTP_F_FRAMING_SUSPECT (1u << 16)

/* The parsed head.  The slices point into the buffer given to
 * sp_http_parse_response(). */
struct sp_http_response {
    int minor_version;  /* 0 or 1 ("HTTP/1.2" and up are read as 1) */
    unsigned status;    /* 100..999 */
    const char *reason; /* may be empty */
    size_t reason_len;

    struct sp_http_header *headers; /* the caller's array */
    size_t num_headers;
    size_t head_len; /* bytes consumed, the same as the return value */

    /* SP_HTTP_F_CL_PRESENT, TE_PRESENT, TE_CHUNKED, TE_UNKNOWN (a coding other
     * than chunked, as "gzip, chunked"), CONN_CLOSE, CONN_KEEP_ALIVE,
     * CONN_UPGRADE, FRAMING_SUSPECT. */
    unsigned flags;
    uint64_t content_length; /* with SP_HTTP_F_CL_PRESENT, else 0 */
    enum sp_http_framing framing;

    enum sp_http_error error; /* SP_HTTP_OK unless SP_HTTP_INVALID was returned */
};

/*
 * Parses the response head at the start of buf[0..len), the answer to a
 * request with method (its framing depends on it: HEAD and CONNECT).
 *
 * Returns the head length (> 0) when the head is complete and valid;
 * SP_HTTP_INCOMPLETE when every byte so far can start a valid head;
 * SP_HTTP_INVALID with resp->error set otherwise (a prefix of a valid head is
 * never invalid, and an invalid input stays invalid however it goes on).
 * max_head: 0 for SP_HTTP_MAX_HEAD_DEFAULT; a head that does not end within
 * it fails with EHEAD_TOO_LARGE as soon as max_head bytes are there.
 *
 * Syntax: "HTTP/1." DIGIT SP 3DIGIT [SP reason] and a line end (a missing
 * reason is accepted, as most clients do); empty lines before the status line
 * are skipped.  Header lines as in the request parser; obs-fold is refused
 * (RFC 9112 5.2 lets a proxy answer 502).  Errors: EVERSION (not "HTTP/"
 * DIGIT "." DIGIT), EVERSION_UNSUPP (major version not 1), ESTATUS (status
 * code not 3 digits from 100, or bad byte in the reason), ELINE,
 * EHEADER_NAME, EHEADER_VALUE, EOBS_FOLD, ETOO_MANY_HEADERS, EHEAD_TOO_LARGE,
 * and for a head whose body the length frames: ECONTENT_LENGTH (not 1*DIGIT),
 * ECL_CONFLICT (two values), ETRANSFER_CODING (chunked twice, or an empty
 * Transfer-Encoding).
 *
 * Framing, in the order of RFC 9112 6.3: a 1xx but 101, 204, 304 or an answer
 * to HEAD has no body, whatever its headers say (a 1xx is interim: the final
 * response follows it, parse again at head_len); 101 and a 2xx to CONNECT
 * make a tunnel.  Else Transfer-Encoding wins over Content-Length (the pair
 * sets FRAMING_SUSPECT): chunked last gives CHUNKED, any other coding last
 * CLOSE; in an HTTP/1.0 response Transfer-Encoding gives CLOSE and
 * FRAMING_SUSPECT (RFC 9112 6.1).  Else a valid Content-Length gives LENGTH;
 * none, CLOSE.
 */
ssize_t sp_http_parse_response(const char *buf, size_t len, size_t max_head,
                               enum sp_http_method method, struct sp_http_response *resp,
                               struct sp_http_header *headers, size_t max_headers);

/* Whether the connection may carry another request after this response's
 * body: not after "Connection: close", a body read until close, a tunnel or a
 * suspect framing; HTTP/1.0 only with "Connection: keep-alive". */
bool sp_http_response_keep_alive(const struct sp_http_response *resp);

#endif
