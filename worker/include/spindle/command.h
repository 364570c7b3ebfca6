/*
 * Commands: what a module adds to a command service ([cmd NAME]), the
 * framed request/reply protocol Redis clients speak (RESP2).
 *
 *     [module kvdemo]
 *     path = modules/kvdemo.so
 *
 *     [cmd main]
 *     listen = 127.0.0.1:6380
 *     commands = kvdemo          ; modules whose commands this service offers
 *
 * A module lists its commands in struct sp_module's `commands`: a name
 * (matched in any case, as Redis does), an arity and a handler.  The
 * service parses each frame, checks the arity (answering Redis's "wrong
 * number of arguments" itself), and calls the handler on the connection's
 * fiber with the arguments as slices of the input.  The handler answers with
 * exactly one reply (an array counts as one, with its elements) through the
 * sp_reply_* builders; it may park (spindle/io.h, or a blocking client
 * library under the worker's system call hooks), and the connection's
 * pipelined commands wait for it in order.
 *
 * The built-in commands (PING, ECHO, TIME, INFO, COMMAND, CONFIG, QUIT) are
 * written against this header alone.
 */
#ifndef SPINDLE_COMMAND_H
#define SPINDLE_COMMAND_H

#include <stddef.h>
#include <stdint.h>

struct sp_cmd_ctx; /* one command being answered: opaque */

/* An argument: len bytes at p (not NUL-terminated; binary safe).  Valid
 * until the handler returns. */
struct sp_cmd_arg {
    const char *p;
    size_t len;
};

/*
 * Answers one command: argv[0] is the command's name as sent, argc >= 1.
 * state is the module instance's (what its init built).  Returns 0, or -1
 * to close the connection once what is answered so far is written.
 */
typedef int sp_cmd_fn(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state);

struct sp_cmd_def {
    const char *name; /* "kv.get"; at most SP_CMD_NAME_MAX bytes */
    /* Redis's convention, the name counted: N > 0 exactly N arguments,
     * -N at least N. */
    int arity;
    sp_cmd_fn *fn;
};

#define SP_CMD_NAME_MAX 64

/* ---- replies -------------------------------------------------------------- */

/* "+s": a status line (\r and \n become spaces). */
void sp_reply_simple(struct sp_cmd_ctx *ctx, const char *s);
/* "-s": an error; by convention s starts with a code: "ERR no such key". */
void sp_reply_error(struct sp_cmd_ctx *ctx, const char *s);
__attribute__((format(printf, 2, 3))) void sp_reply_errorf(struct sp_cmd_ctx *ctx, const char *fmt,
                                                           ...);
void sp_reply_int(struct sp_cmd_ctx *ctx, int64_t v);
void sp_reply_bulk(struct sp_cmd_ctx *ctx, const void *p, size_t len);
void sp_reply_str(struct sp_cmd_ctx *ctx, const char *s); /* a bulk of strlen(s) */
void sp_reply_null(struct sp_cmd_ctx *ctx);               /* nil bulk: $-1 */
void sp_reply_null_array(struct sp_cmd_ctx *ctx);         /* nil array: *-1 */
/* An array of n elements: the next n replies (which may be arrays). */
void sp_reply_array(struct sp_cmd_ctx *ctx, size_t n);

#endif
