/*
 * The command service, [cmd NAME]: RESP2 frames, as Redis clients send them
 * (spindle/resp.h), answered by the built-in commands (cmd_builtin.c) and by
 * the commands of the modules the section names (spindle/command.h).
 *
 * A connection runs as the HTTP service's do: on a fiber only while it has
 * work.  Each pass reads once, answers every complete command in the input
 * (a pipeline) into one output buffer and writes it once.  When nothing
 * partial is left and a non-blocking read finds nothing, the fd waits in
 * sp_iom_watch() and the fiber ends: an idle client holds no fiber and no
 * buffer.  A handler may park (a module's blocking client library under the
 * system call hooks): the commands after it wait, in order.
 *
 * Memory follows the bytes that arrived, never a declared length: the input
 * starts in a buffer on the fiber's stack and moves to the heap, doubling,
 * only when a command that has not ended fills it, up to max_buffer; a
 * client past that is closed (Redis's client-query-buffer-limit).  The
 * argument array grows the same way, as arguments arrive (the parser says
 * when).  So a client that announces 64 arguments of 512 MB and sends a few
 * bytes costs a few bytes (Redis's CVE-2021-32675).
 *
 * Errors: an unknown command or a wrong argument count is answered with
 * Redis's wording and the connection goes on.  A protocol error is answered
 * "-ERR Protocol error: ..." after the answers to the commands before it,
 * and the connection closes, as Redis does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cmd.h"
#include "spindle/clock.h"
#include "spindle/config.h"
#include "spindle/iomanager.h"
#include "spindle/log.h"
#include "spindle/module.h"
#include "spindle/stream.h"

#define CMD_IN_STACK   16384 /* the input buffer on the fiber's stack */
#define CMD_OUT_STACK  16384 /* the output buffer on the fiber's stack */
#define CMD_ARGS_STACK 32    /* arguments before the array moves to the heap */
/* Past this much output a batch is written out before the next command. */
#define CMD_OUT_FLUSH (64 * 1024)
/* A client that takes none of our bytes for this long is dropped (nginx's
 * send_timeout). */
#define CMD_SEND_TIMEOUT_MS 60000
/* How long a connection closed after an error still reads (and drops) what
 * the client sends, so that the client sees the answer instead of a reset. */
#define CMD_LINGER_MS 1000

enum cmd_end {
    END_KEEP = 0, /* go on with the next batch */
    END_CLOSE,    /* answered (QUIT, a protocol error): close once written */
    END_DROP,     /* peer gone, write failed, limit reached: close now */
};

struct cmd_conn {
    struct cmd_svc *cs;
    struct sp_stream stream;
    char *in; /* in[0..len): unparsed input; a partial command starts at in[0] */
    size_t cap, len;
    char *heap_in; /* in, once it outgrew the stack buffer */
    struct sp_resp_parser parser;
    struct sp_resp_arg *args; /* args_cap entries, and argv as many */
    struct sp_cmd_arg *argv;
    size_t args_cap;
    void *heap_args; /* args and argv, once they outgrew the stack arrays */
    struct sp_resp_out out;
};

/* ---- the command table ------------------------------------------------------ */

/* Lower-cases name[0..n) into dst (NUL-terminated) and returns its 64-bit
 * FNV-1a hash, in one pass. */
static uint64_t name_fold(char *dst, const char *name, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        ch = ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch + 32) : ch;
        dst[i] = (char)ch;
        h = (h ^ ch) * 0x100000001b3ull;
    }
    dst[n] = '\0';
    return h;
}

const struct cmd_entry *cmd_find(const struct cmd_svc *cs, const char *name, size_t n)
{
    char lower[SP_CMD_NAME_MAX + 1];
    if (n == 0 || n > SP_CMD_NAME_MAX)
        return NULL;
    for (size_t i = name_fold(lower, name, n) & cs->mask;; i = (i + 1) & cs->mask) {
        const struct cmd_entry *e = &cs->table[i];
        if (e->name_len == 0)
            return NULL;
        if (e->name_len == n && memcmp(e->name, lower, n) == 0)
            return e;
    }
}

int cmd_add(struct cmd_svc *cs, const struct sp_cmd_def *def, void *state, const char *module)
{
    size_t n = strlen(def->name);
    if (n > SP_CMD_NAME_MAX)
        return -ENAMETOOLONG;
    if (n == 0 || def->arity == 0 || !def->fn)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)def->name[i] <= ' ' || (unsigned char)def->name[i] >= 0x7f)
            return -EINVAL;
    }
    if (cmd_find(cs, def->name, n))
        return -EEXIST;
    if (cs->count + 1 > (cs->mask + 1) / 2)
        return -ENOSPC;
    char lower[SP_CMD_NAME_MAX + 1];
    for (size_t i = name_fold(lower, def->name, n) & cs->mask;; i = (i + 1) & cs->mask) {
        struct cmd_entry *e = &cs->table[i];
        if (e->name_len == 0) {
            memcpy(e->name, lower, n + 1);
            e->name_len = n;
            e->arity = def->arity;
            e->fn = def->fn;
            e->state = state;
            e->module = module;
            cs->count++;
            return 0;
        }
    }
}

/* ---- replies (spindle/command.h) ---------------------------------------------- */

void sp_reply_simple(struct sp_cmd_ctx *ctx, const char *s)
{
    ctx->owed--;
    sp_resp_simple(ctx->out, s);
}

void sp_reply_error(struct sp_cmd_ctx *ctx, const char *s)
{
    ctx->owed--;
    sp_resp_error(ctx->out, s);
}

void sp_reply_errorf(struct sp_cmd_ctx *ctx, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sp_reply_error(ctx, buf);
}

void sp_reply_int(struct sp_cmd_ctx *ctx, int64_t v)
{
    ctx->owed--;
    sp_resp_int(ctx->out, v);
}

void sp_reply_bulk(struct sp_cmd_ctx *ctx, const void *p, size_t len)
{
    ctx->owed--;
    sp_resp_bulk(ctx->out, p, len);
}

void sp_reply_str(struct sp_cmd_ctx *ctx, const char *s)
{
    sp_reply_bulk(ctx, s, strlen(s));
}

void sp_reply_null(struct sp_cmd_ctx *ctx)
{
    ctx->owed--;
    sp_resp_null(ctx->out);
}

void sp_reply_null_array(struct sp_cmd_ctx *ctx)
{
    ctx->owed--;
    sp_resp_null_array(ctx->out);
}

void sp_reply_array(struct sp_cmd_ctx *ctx, size_t n)
{
    ctx->owed += (long)n - 1;
    sp_resp_array(ctx->out, n);
}

/* ---- one command ------------------------------------------------------------ */

/* Redis's answer to a name it does not know, quoting the name and the
 * first arguments (up to 128 bytes of them). */
static void unknown_command(struct cmd_conn *c, size_t argc)
{
    char args[160];
    size_t n = 0;
    for (size_t i = 1; i < argc && n < 128; i++) {
        int k = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(c->argv[i].len < 128 - n ? c->argv[i].len : 128 - n), c->argv[i].p);
        if (k < 0 || (size_t)k >= sizeof(args) - n)
            break;
        n += (size_t)k;
    }
    args[n] = '\0';
    sp_resp_errorf(&c->out, "ERR unknown command '%.*s', with args beginning with: %s",
                   (int)(c->argv[0].len < 128 ? c->argv[0].len : 128), c->argv[0].p, args);
}

/* Answers the command of argc arguments parsed at base.  Returns 0, or -1
 * when the connection closes after what is answered (QUIT, a handler that
 * asked, a handler that broke the framing). */
static int cmd_call(struct cmd_conn *c, const char *base, size_t argc)
{
    for (size_t i = 0; i < argc; i++) {
        c->argv[i].p = base + c->args[i].off;
        c->argv[i].len = c->args[i].len;
    }
    const struct cmd_entry *e = cmd_find(c->cs, c->argv[0].p, c->argv[0].len);
    if (!e) {
        unknown_command(c, argc);
        return 0;
    }
    if (e->arity > 0 ? argc != (size_t)e->arity : argc < (size_t)-e->arity) {
        sp_resp_errorf(&c->out, "ERR wrong number of arguments for '%s' command", e->name);
        return 0;
    }

    struct sp_cmd_ctx ctx = {.out = &c->out, .cs = c->cs, .owed = 1};
    size_t before = c->out.len;
    int rc = e->fn(&ctx, (int)argc, c->argv, e->state);
    if (__builtin_expect(ctx.owed != 0, 0)) {
        /* The client would read the next answers as this one's: take back
         * what it wrote, say so, and close. */
        sp_log_error("cmd %s: command '%s' of module %s answered %s", c->cs->svc->section->name,
                     e->name, e->module ? e->module : "(built in)",
                     ctx.owed > 0 ? "too few replies" : "more than one reply");
        c->out.len = before;
        sp_resp_errorf(&c->out, "ERR command '%s' failed to answer", e->name);
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

/* ---- buffers ------------------------------------------------------------------ */

/* The input is full with a command that has not ended: doubles it, up to
 * max_buffer.  Returns 0, or -1 (the connection is dropped). */
static int in_grow(struct cmd_conn *c)
{
    size_t limit = c->cs->conf->max_buffer;
    if (c->cap >= limit) {
        sp_log_warn("cmd %s: closing a client past max_buffer (%zu bytes of one command)",
                    c->cs->svc->section->name, limit);
        return -1;
    }
    size_t cap = c->cap * 2 < limit ? c->cap * 2 : limit;
    char *b = c->heap_in ? realloc(c->heap_in, cap) : malloc(cap);
    if (!b) {
        sp_log_error("cmd %s: no memory for %zu bytes of input; closing the client",
                     c->cs->svc->section->name, cap);
        return -1;
    }
    if (!c->heap_in)
        memcpy(b, c->in, c->len);
    c->heap_in = b;
    c->in = b;
    c->cap = cap;
    return 0;
}

/* The parser filled the argument array: doubles it (max_args bounds what
 * the parser asks for). */
static int args_grow(struct cmd_conn *c)
{
    size_t cap = c->args_cap * 2;
    void *block = malloc(cap * (sizeof(*c->args) + sizeof(*c->argv)));
    if (!block)
        return -1;
    struct sp_resp_arg *args = block;
    memcpy(args, c->args, c->parser.nargs * sizeof(*args));
    free(c->heap_args);
    c->heap_args = block;
    c->args = args;
    c->argv = (struct sp_cmd_arg *)(args + cap);
    c->args_cap = cap;
    return 0;
}

/* Writes what is answered.  Returns 0 or -errno. */
static int out_flush(struct cmd_conn *c)
{
    if (c->out.failed)
        return -ENOMEM;
    if (c->out.len == 0)
        return 0;
    ssize_t n = sp_stream_write(&c->stream, c->out.buf, c->out.len, CMD_SEND_TIMEOUT_MS);
    if (n < 0)
        return (int)n;
    atomic_fetch_add(&c->cs->wc->bytes_out, (unsigned long long)c->out.len);
    c->out.len = 0;
    return 0;
}

/* ---- one batch ------------------------------------------------------------------ */

/* Answers every complete command in in[0..len) and moves a partial one to
 * the front.  *served counts the commands. */
static enum cmd_end process(struct cmd_conn *c, unsigned *served)
{
    const struct sp_resp_limits *lim = &c->cs->limits;
    enum cmd_end end = END_KEEP;
    size_t off = 0;

    while (off < c->len) {
        enum sp_resp_status st =
            sp_resp_parse(&c->parser, c->in + off, c->len - off, c->args, c->args_cap, lim);
        if (st == SP_RESP_MORE)
            break;
        if (st == SP_RESP_GROW) {
            if (args_grow(c) != 0) {
                end = END_DROP;
                break;
            }
            continue;
        }
        if (st == SP_RESP_ERROR) {
            sp_resp_errorf(&c->out, "ERR Protocol error: %s", c->parser.error);
            (*served)++;
            end = END_CLOSE;
            break;
        }
        size_t argc = c->parser.nargs, used = c->parser.used;
        sp_resp_reset(&c->parser);
        if (argc > 0) {
            (*served)++;
            if (cmd_call(c, c->in + off, argc) != 0) {
                off += used;
                end = END_CLOSE;
                break;
            }
        }
        off += used;
        if (c->out.len >= CMD_OUT_FLUSH && out_flush(c) != 0) {
            end = END_DROP;
            break;
        }
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->len - off);
        c->len -= off;
    }
    return end;
}

/* ---- connection life -------------------------------------------------------------- */

static void conn_ready(int fd, int status, void *arg);

static void conn_closed(struct cmd_svc *cs, struct sp_stream *s)
{
    sp_stream_close(s);
    worker_conn_closed(cs->svc->worker);
}

static void conn_free_heap(struct cmd_conn *c)
{
    free(c->heap_in);
    c->heap_in = NULL;
    free(c->heap_args);
    c->heap_args = NULL;
    sp_resp_out_free(&c->out);
}

/* Nothing is buffered and the socket is empty: the fd waits in a watch (no
 * fiber, no buffer) for its next bytes or its idle timeout.  Returns false
 * when no watch could be set: the connection is dropped. */
static bool conn_park(struct cmd_conn *c)
{
    struct cmd_svc *cs = c->cs;
    int64_t idle = cs->conf->idle_timeout_ms ? cs->conf->idle_timeout_ms : -1;
    if (worker_draining(cs->svc->worker) && (idle < 0 || idle > WORKER_DRAIN_IDLE_MS))
        idle = WORKER_DRAIN_IDLE_MS;
    conn_free_heap(c);
    return sp_iom_watch(cs->iom, c->stream.fd, idle, conn_ready, cs) == 0;
}

static void conn_finish(struct cmd_conn *c, enum cmd_end end)
{
    if (end == END_CLOSE) {
        /* Bytes still coming after our last answer would make the close a
         * reset that may destroy the answer. */
        ssize_t more = c->len ? 1 : sp_stream_try_read(&c->stream, c->in, c->cap);
        if (more > 0)
            sp_stream_linger(&c->stream, c->in, c->cap, CMD_LINGER_MS, CMD_LINGER_MS);
    }
    conn_free_heap(c);
    conn_closed(c->cs, &c->stream);
}

/* A connection's active stretch: reads, answers every complete command,
 * writes, until the socket is empty with nothing left over (the fd is then
 * parked in a watch) or the connection ends. */
static void conn_run(struct cmd_conn *c)
{
    struct cmd_svc *cs = c->cs;
    int64_t idle = cs->conf->idle_timeout_ms ? cs->conf->idle_timeout_ms : -1;
    bool dry = false; /* the last sp_try_read was short: the socket is empty */
    enum cmd_end end;

    for (;;) {
        ssize_t n;
        if (c->len == 0) {
            /* After a short read the fd may be watched at once (io.h). */
            n = dry ? -EAGAIN : sp_stream_try_read(&c->stream, c->in, c->cap);
            dry = n > 0 && (size_t)n < c->cap;
            if (n == -EAGAIN) {
                if (conn_park(c))
                    return;
                end = END_DROP;
                break;
            }
        } else {
            /* The rest of a partial command: the same idle timeout bounds
             * each wait for it. */
            if (c->len == c->cap && in_grow(c) != 0) {
                end = END_DROP;
                break;
            }
            n = sp_stream_read(&c->stream, c->in + c->len, c->cap - c->len, idle);
            dry = false;
        }
        if (n <= 0) {
            end = END_DROP;
            break;
        }
        unsigned served = 0;
        c->len += (size_t)n;
        atomic_fetch_add(&cs->wc->bytes_in, (unsigned long long)n);
        end = process(c, &served);
        if (end != END_DROP && out_flush(c) != 0)
            end = END_DROP;
        if (served)
            atomic_fetch_add(&cs->wc->requests, served);
        if (end != END_KEEP)
            break;
    }
    conn_finish(c, end);
}

/* The buffers of an active connection, on its fiber's stack. */
struct conn_frame {
    char in[CMD_IN_STACK];
    char out[CMD_OUT_STACK];
    struct sp_resp_arg args[CMD_ARGS_STACK];
    struct sp_cmd_arg argv[CMD_ARGS_STACK];
    struct cmd_conn c;
};

static void conn_frame_run(struct conn_frame *f, struct cmd_svc *cs, int fd)
{
    struct cmd_conn *c = &f->c;
    memset(c, 0, sizeof(*c));
    c->cs = cs;
    c->in = f->in;
    c->cap = sizeof(f->in);
    c->args = f->args;
    c->argv = f->argv;
    c->args_cap = CMD_ARGS_STACK;
    sp_resp_out_init_buf(&c->out, f->out, sizeof(f->out));
    sp_stream_socket(&c->stream, fd);
    conn_run(c);
}

/* The frame on a deep enough stack; apart from conn_start() so that the heap
 * path does not reserve it (a frame larger than a small stack would jump
 * over its guard page). */
static __attribute__((noinline)) void conn_start_on_stack(struct cmd_svc *cs, int fd)
{
    struct conn_frame f;
    conn_frame_run(&f, cs, fd);
}

static __attribute__((noinline)) void conn_start_on_heap(struct cmd_svc *cs, int fd)
{
    struct conn_frame *f = malloc(sizeof(*f));
    if (!f) {
        struct sp_stream s;
        sp_log_error("cmd: no memory for connection buffers; closing fd %d", fd);
        sp_stream_socket(&s, fd);
        conn_closed(cs, &s);
        return;
    }
    conn_frame_run(f, cs, fd);
    free(f);
}

static void conn_start(struct cmd_svc *cs, int fd)
{
    if (cs->bufs_on_stack)
        conn_start_on_stack(cs, fd);
    else
        conn_start_on_heap(cs, fd);
}

/* The watch of an idle connection ended. */
static void conn_ready(int fd, int status, void *arg)
{
    struct cmd_svc *cs = arg;
    if (status == -ECANCELED) {
        worker_conn_closed(cs->svc->worker);
        return;
    }
    if (status < 0) { /* idle_timeout, or a draining worker's grace */
        struct sp_stream s;
        sp_stream_socket(&s, fd);
        conn_closed(cs, &s);
        return;
    }
    conn_start(cs, fd);
}

static void cmd_handle(struct service *svc, int fd)
{
    conn_start(svc->state, fd);
}

/* ---- the definition ---------------------------------------------------------------- */

static size_t defs_count(const struct sp_cmd_def *defs)
{
    size_t n = 0;
    while (defs[n].name)
        n++;
    return n;
}

static int add_all(struct cmd_svc *cs, const struct sp_cmd_def *defs, void *state,
                   const char *module, char *err, size_t errlen)
{
    for (const struct sp_cmd_def *d = defs; d->name; d++) {
        int rc = cmd_add(cs, d, state, module);
        if (rc == 0)
            continue;
        const struct cmd_entry *other = cmd_find(cs, d->name, strlen(d->name));
        if (rc == -EEXIST)
            snprintf(err, errlen, "module %s: command '%s' is %s already", module, d->name,
                     other && other->module ? other->module : "built in");
        else
            snprintf(err, errlen, "module %s: command '%.80s': %s", module, d->name,
                     rc == -ENAMETOOLONG ? "name too long (max 64 bytes)"
                                         : "needs a name of visible characters, a non-zero "
                                           "arity and a handler");
        return -1;
    }
    return 0;
}

static int cmd_init(struct service *svc, char *err, size_t errlen)
{
    const struct cmd_conf *conf = svc->conf;
    struct cmd_svc *cs = calloc(1, sizeof(*cs));
    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    svc->state = cs;
    cs->svc = svc;
    cs->conf = conf;
    cs->limits.max_args = conf->max_args;
    cs->limits.max_arg_size = conf->max_arg_size;
    cs->iom = worker_iom(svc->worker);
    cs->wc = worker_counters(svc->worker);
    cs->bufs_on_stack = worker_config(svc->worker)->stack_size >= 64 * 1024;

    size_t total = defs_count(cmd_builtins);
    struct sp_module_instance *mods[CMD_MAX_MODULES];
    for (unsigned i = 0; i < conf->nmodules; i++) {
        mods[i] = sp_module_find(conf->modules[i]);
        if (!mods[i]) { /* the loader checked the section exists */
            snprintf(err, errlen, "commands: module %s is not loaded", conf->modules[i]);
            return -1;
        }
        if (!mods[i]->def->commands) {
            snprintf(err, errlen, "commands: module %s provides no commands", conf->modules[i]);
            return -1;
        }
        total += defs_count(mods[i]->def->commands);
    }
    size_t slots = 16;
    while (slots < total * 2)
        slots *= 2;
    cs->table = calloc(slots, sizeof(*cs->table));
    if (!cs->table) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cs->mask = slots - 1;
    if (add_all(cs, cmd_builtins, cs, NULL, err, errlen) != 0)
        return -1;
    for (unsigned i = 0; i < conf->nmodules; i++) {
        if (add_all(cs, mods[i]->def->commands, mods[i]->state, mods[i]->name, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static void cmd_fini(struct service *svc)
{
    struct cmd_svc *cs = svc->state;
    if (cs)
        free(cs->table);
    free(cs);
    svc->state = NULL;
}

const struct sp_service_def sp_service_cmd = {
    CMD_CONF_DEF,
    .init = cmd_init,
    .handle = cmd_handle,
    .fini = cmd_fini,
};
