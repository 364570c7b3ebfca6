/*
 * RESP2, the protocol Redis clients speak: a command parser and reply
 * builders.
 *
 * A command is a multibulk frame, an array of bulk strings
 *
 *     *2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n
 *
 * or an inline command, one line split at spaces and tabs (`PING\r\n`, as
 * telnet and redis-benchmark's PING_INLINE send it; a bare \n ends it too).
 * Unlike Redis, an inline line knows no quotes: `SET k "a b"` is four
 * arguments, the quotes among their bytes.  The line may hold at most
 * SP_RESP_INLINE_MAX bytes before its \n.
 *
 * Where Redis is lenient the parser is strict, so that a stream that lost
 * its framing is closed instead of read on at the wrong place: each header
 * line must end in \r\n (Redis skips any byte after the \r), and a bulk's
 * payload must be followed by \r\n (Redis skips any two bytes: here it is
 * "expected CRLF after bulk data").  A line that is not a bulk header is
 * refused at its first byte, without waiting for the rest of it.  An inline
 * command with more than max_args arguments, or with an argument longer than
 * max_arg_size, is a "too big inline request" (Redis limits only the line).
 *
 * The parser never allocates and never trusts a declared length: it reads
 * the bytes it has, records where each argument lies as offsets from the
 * command's first byte (the caller's buffer may move between calls), and
 * resumes where it stopped when more bytes arrive, so a large argument that
 * trickles in is scanned once.  The caller owns the buffer and the argument
 * array and grows both with what was actually received (a client that
 * announces 64 arguments of 512 MB and sends nothing costs nothing:
 * Redis's CVE-2021-32675).
 *
 * Replies are appended to a struct sp_resp_out, a growable byte buffer.  The
 * simple-string and error builders turn \r and \n into spaces, as Redis
 * does, so a reply that quotes a client's bytes cannot break the framing.
 */
#ifndef SPINDLE_RESP_H
#define SPINDLE_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_RESP_INLINE_MAX (64 * 1024) /* Redis's PROTO_INLINE_MAX_SIZE */

struct sp_resp_limits {
    size_t max_args;       /* arguments per command: 1..1048576 (Redis: 1024*1024) */
    uint64_t max_arg_size; /* bytes per argument (Redis's proto-max-bulk-len) */
};

/* Where one argument lies: bytes [off, off + len) of the command. */
struct sp_resp_arg {
    size_t off;
    size_t len;
};

enum sp_resp_status {
    SP_RESP_DONE = 0,  /* one whole command: nargs arguments, `used` bytes */
    SP_RESP_MORE = 1,  /* the command is not complete: call again with more bytes */
    SP_RESP_GROW = 2,  /* args is full: grow it (to at least nargs + 1), call again */
    SP_RESP_ERROR = -1 /* protocol error: error names it; answer and close */
};

/* The state of one command being parsed; zero it (sp_resp_reset) before the
 * first call for each command. */
struct sp_resp_parser {
    /* Results, valid after SP_RESP_DONE (nargs is also valid during MORE/GROW). */
    size_t nargs;      /* arguments recorded so far */
    size_t used;       /* bytes of the command, terminators included */
    const char *error; /* after SP_RESP_ERROR: "invalid multibulk length", ...
                          (Redis's wording, without "ERR Protocol error: ") */

    /* Private: where the parse stopped. */
    int state;
    bool multibulk;
    int64_t want_args; /* multibulk: the declared count */
    int64_t bulk_len;  /* the bulk being read: its declared length, -1 when none */
    size_t pos;        /* the next byte to look at, from the command's start */
    size_t mark;       /* multibulk: where the header line being read begins;
                          inline: where the line's arguments end */
};

void sp_resp_reset(struct sp_resp_parser *p);

/*
 * Parses the command that starts at buf[0], len bytes being there.  Records
 * argument i in args[i] (cap entries available).  Call again after MORE with
 * the same command start and more bytes (len grows; the bytes before stay the
 * same), after GROW with a larger args (the entries recorded are kept).
 *
 * An empty multibulk (`*0\r\n`, `*-1\r\n`) or an empty inline line is a
 * command of zero arguments: DONE with nargs == 0, which the caller skips, as
 * Redis does.
 *
 * lim may be NULL: Redis's defaults (1048576 arguments of 512 MB).  After
 * DONE or ERROR the parser keeps answering the same until sp_resp_reset; the
 * next command starts at buf[used].  error points to a static string.  The
 * work of all the calls for one command is O(its bytes): a bulk's payload is
 * never scanned, only counted.
 */
enum sp_resp_status sp_resp_parse(struct sp_resp_parser *p, const char *buf, size_t len,
                                  struct sp_resp_arg *args, size_t cap,
                                  const struct sp_resp_limits *lim);

/* ---- replies ------------------------------------------------------------ */

/* A growable output buffer.  On allocation failure `failed` is set, later
 * appends are dropped and the caller closes the connection. */
struct sp_resp_out {
    char *buf;
    size_t len, cap;
    bool failed;
    bool borrowed; /* buf is the caller's (sp_resp_out_init_buf), not ours to free */
};

/* init makes an empty buffer (no allocation until the first append); free
 * releases its memory and leaves it as init does.  free accepts NULL. */
void sp_resp_out_init(struct sp_resp_out *o);
void sp_resp_out_free(struct sp_resp_out *o);
/* Starts with the caller's buf[0..cap) (a stack buffer, say): no allocation
 * until a reply needs more, then the bytes move to the heap.  free releases
 * only what was allocated. */
void sp_resp_out_init_buf(struct sp_resp_out *o, char *buf, size_t cap);
/* Makes room for n more bytes; returns a pointer to them or NULL (failed).
 * It does not count them in len: the caller writes and then adds to o->len
 * what it wrote.  The pointer is valid until the next append. */
char *sp_resp_out_reserve(struct sp_resp_out *o, size_t n);

void sp_resp_simple(struct sp_resp_out *o, const char *s); /* +s\r\n */
void sp_resp_error(struct sp_resp_out *o, const char *s);  /* -s\r\n */
void sp_resp_errorf(struct sp_resp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));                           /* -...\r\n */
void sp_resp_int(struct sp_resp_out *o, int64_t v);                  /* :v\r\n */
void sp_resp_bulk(struct sp_resp_out *o, const void *p, size_t len); /* $len\r\n...\r\n */
void sp_resp_null(struct sp_resp_out *o);                            /* $-1\r\n */
void sp_resp_null_array(struct sp_resp_out *o);                      /* *-1\r\n */
void sp_resp_array(struct sp_resp_out *o, size_t n);                 /* *n\r\n, then n replies */

#endif
