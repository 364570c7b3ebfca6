/*
 * libFuzzer target for sp_resp_parse() and the reply builders.
 *
 * The input is a stream of commands, parsed one after the other as a server
 * would, once with Redis's limits and once with small ones.  Besides memory
 * safety (ASan, UBSan; each call sees an exact-size copy of the bytes it is
 * given) it checks the parser's contract: arguments lie inside the command,
 * within the limits, framed as the protocol says; a parse fed in random
 * pieces, with the argument array grown by random steps, agrees with the
 * parse of the whole, error wording included; a command's prefixes are
 * incomplete; an error is one of the known ones; and the arguments written
 * back with the builders as an array of bulks parse to the same bytes.
 */
#include "spindle/resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

struct parse {
    enum sp_resp_status st;
    size_t nargs, used;
    const char *error;
    struct sp_resp_arg *args;
};

/* Deterministic "random" pieces, so that a replay repeats the run. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *const known_errors[] = {
    "invalid multibulk length",   "invalid bulk length",       "too big inline request",
    "too big mbulk count string", "too big bulk count string", "expected CRLF after bulk data",
};

static void check_error(const char *e)
{
    for (size_t i = 0; i < sizeof(known_errors) / sizeof(known_errors[0]); i++)
        if (strcmp(e, known_errors[i]) == 0)
            return;
    CHECK(strncmp(e, "expected '$', got '", 19) == 0 && e[19] != '$');
    CHECK(e[19] == '\0' || (e[20] == '\'' && e[21] == '\0'));
}

/*
 * Parses the command at buf[0..len) with pieces and argument room chosen by
 * rng (whole and with all the room it needs when rng is NULL).  In pieces,
 * each call gets a fresh exact-size copy of the bytes so far, so a read past
 * them or a pointer kept across calls is caught.
 */
static struct parse parse(const char *buf, size_t len, const struct sp_resp_limits *lim,
                          uint64_t *rng)
{
    struct sp_resp_parser p;
    struct parse r = {0};
    size_t cap = 0, have = len, calls = 0;

    if (rng != NULL)
        have = rng_next(rng) % (len + 1);
    sp_resp_reset(&p);
    for (;;) {
        if (rng != NULL) {
            char *copy = malloc(have ? have : 1);
            CHECK(copy != NULL);
            memcpy(copy, buf, have);
            r.st = sp_resp_parse(&p, copy, have, r.args, cap, lim);
            free(copy);
        } else {
            r.st = sp_resp_parse(&p, buf, have, r.args, cap, lim);
        }
        CHECK(++calls < 4 * len + 1000);
        CHECK(p.nargs <= cap && p.nargs <= lim->max_args);
        if (r.st == SP_RESP_GROW) {
            CHECK(p.nargs == cap);
            cap += rng != NULL ? 1 + rng_next(rng) % 4 : 1 + cap;
            r.args = realloc(r.args, cap * sizeof(*r.args));
            CHECK(r.args != NULL);
            continue;
        }
        CHECK(r.st == SP_RESP_DONE || r.st == SP_RESP_MORE || r.st == SP_RESP_ERROR);
        if (r.st != SP_RESP_MORE || have == len)
            break;
        /* Mostly small pieces, sometimes the rest at once. */
        size_t step = rng_next(rng) % 8 == 0 ? len : 1 + rng_next(rng) % (len / 16 + 2);
        have = len - have < step ? len : have + step;
    }
    r.nargs = p.nargs;
    r.used = p.used;
    r.error = r.st == SP_RESP_ERROR ? p.error : NULL;
    return r;
}

static void check_done(const char *buf, size_t len, const struct parse *r,
                       const struct sp_resp_limits *lim)
{
    size_t prev_end = 0;

    CHECK(r->used > 0 && r->used <= len);
    CHECK(r->nargs <= lim->max_args);
    for (size_t i = 0; i < r->nargs; i++) {
        size_t off = r->args[i].off, n = r->args[i].len;
        CHECK(off <= r->used && n <= r->used - off);
        CHECK(off >= prev_end);
        CHECK(n <= lim->max_arg_size);
        prev_end = off + n;
        if (buf[0] == '*') {
            CHECK(off >= 1 && buf[off - 1] == '\n');
            CHECK(off + n + 2 <= r->used && memcmp(buf + off + n, "\r\n", 2) == 0);
        } else {
            CHECK(n > 0);
            CHECK(!memchr(buf + off, ' ', n) && !memchr(buf + off, '\t', n) &&
                  !memchr(buf + off, '\n', n));
        }
    }
    if (buf[0] == '*')
        CHECK(r->used >= 4 && memcmp(buf + r->used - 2, "\r\n", 2) == 0);
    else
        CHECK(buf[r->used - 1] == '\n' && r->used <= SP_RESP_INLINE_MAX + 1);
}

static void same(const struct parse *a, const struct parse *b)
{
    CHECK(a->st == b->st);
    if (a->st == SP_RESP_MORE)
        return; /* the arguments recorded so far depend on the room given */
    CHECK(a->nargs == b->nargs);
    if (a->st == SP_RESP_ERROR) {
        CHECK(strcmp(a->error, b->error) == 0);
        return;
    }
    CHECK(a->used == b->used);
    for (size_t i = 0; i < a->nargs; i++)
        CHECK(a->args[i].off == b->args[i].off && a->args[i].len == b->args[i].len);
}

/* The arguments, written back as an array of bulks, parse to the same bytes;
 * an argument as a simple string or error stays one line. */
static void check_round_trip(const char *buf, const struct parse *r)
{
    struct sp_resp_out o;
    struct sp_resp_limits lim = {r->nargs ? r->nargs : 1, UINT64_MAX};
    struct parse back;

    sp_resp_out_init(&o);
    sp_resp_array(&o, r->nargs);
    for (size_t i = 0; i < r->nargs; i++)
        sp_resp_bulk(&o, buf + r->args[i].off, r->args[i].len);
    CHECK(!o.failed);
    back = parse(o.buf, o.len, &lim, NULL);
    if (r->nargs == 0) {
        CHECK(back.st == SP_RESP_DONE && back.nargs == 0 && back.used == 4);
    } else {
        CHECK(back.st == SP_RESP_DONE && back.nargs == r->nargs && back.used == o.len);
        for (size_t i = 0; i < r->nargs; i++)
            CHECK(back.args[i].len == r->args[i].len &&
                  memcmp(o.buf + back.args[i].off, buf + r->args[i].off, r->args[i].len) == 0);
    }
    free(back.args);

    if (r->nargs > 0 && r->args[0].len < 256) {
        char s[256];
        size_t n;
        memcpy(s, buf + r->args[0].off, r->args[0].len);
        s[r->args[0].len] = '\0';
        n = strlen(s);
        o.len = 0;
        sp_resp_simple(&o, s);
        sp_resp_errorf(&o, "ERR %s", s);
        /* "+s\r\n-ERR s\r\n", with no other line end. */
        CHECK(!o.failed && o.len == 2 * n + 10);
        CHECK(o.buf[0] == '+' && memcmp(o.buf + n + 1, "\r\n-ERR ", 7) == 0);
        CHECK(memcmp(o.buf + o.len - 2, "\r\n", 2) == 0);
        CHECK(!memchr(o.buf, '\r', n + 1) && !memchr(o.buf, '\n', n + 1));
        CHECK(!memchr(o.buf + n + 3, '\r', n + 5) && !memchr(o.buf + n + 3, '\n', n + 5));
    }
    sp_resp_out_free(&o);
}

/* Parses the stream buf[0..size) command after command with lim. */
static void run(const char *buf, size_t size, const struct sp_resp_limits *lim, uint64_t seed)
{
    size_t off = 0;

    while (off < size) {
        const char *cmd = buf + off;
        size_t len = size - off;
        struct parse whole = parse(cmd, len, lim, NULL), split;

        /* A whole command's result depends on its bytes alone: the pieces
         * stop a little after it, which keeps a long stream linear. */
        if (whole.st == SP_RESP_DONE && len > whole.used + 16)
            len = whole.used + 16;
        split = parse(cmd, len, lim, &seed);
        same(&whole, &split);
        free(split.args);
        if (whole.st == SP_RESP_ERROR)
            check_error(whole.error);
        if (whole.st != SP_RESP_DONE) {
            free(whole.args);
            return;
        }
        check_done(cmd, len, &whole, lim);
        /* The command alone is the same command; without its last byte it is
         * not whole yet. */
        struct parse alone = parse(cmd, whole.used, lim, &seed);
        same(&whole, &alone);
        free(alone.args);
        alone = parse(cmd, whole.used - 1, lim, NULL);
        CHECK(alone.st == SP_RESP_MORE);
        free(alone.args);
        check_round_trip(cmd, &whole);
        off += whole.used;
        free(whole.args);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct sp_resp_limits redis = {1024 * 1024, 512 * 1024 * 1024};
    struct sp_resp_limits small = {1, 0};
    uint64_t seed = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ull;
    seed |= 1;
    /* Small limits from the input's length, so both sides of each are met. */
    small.max_args = 1 + size % 5;
    small.max_arg_size = size % 13;
    run((const char *)data, size, &redis, seed);
    run((const char *)data, size, &small, seed);
    return 0;
}
