/*
 * Tests of shared/resp/: the RESP2 command parser (multibulk, inline,
 * resuming, growing the argument array, errors, limits) and the reply
 * builders' exact bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spindle/resp.h"

/* A parse of one command and what it recorded, arguments as strings. */
struct result {
    enum sp_resp_status st;
    size_t nargs, used, grows;
    const char *error;
    struct sp_resp_arg *args;
};

static void result_free(struct result *r)
{
    free(r->args);
    r->args = NULL;
}

/*
 * Parses the command at in[0..n), handing the parser the first `first` bytes,
 * then `step` more each time it answers MORE, each call (up to 4 KB) from a
 * fresh copy of the bytes (so that the parser can keep nothing but offsets,
 * and a read past them is caught under ASan or valgrind).  The argument array
 * starts empty and grows by one on each GROW.
 */
static struct result parse_feed(const char *in, size_t n, size_t first, size_t step,
                                const struct sp_resp_limits *lim)
{
    struct sp_resp_parser p;
    struct result r = {0};
    size_t cap = 0, have = first < n ? first : n;

    sp_resp_reset(&p);
    for (;;) {
        /* Long inputs fed byte by byte are not copied each time: that
         * would be quadratic, in the test rather than in the parser. */
        char *copy = have <= 4096 ? malloc(have ? have : 1) : NULL;
        if (copy != NULL)
            memcpy(copy, in, have);
        r.st = sp_resp_parse(&p, copy != NULL ? copy : in, have, r.args, cap, lim);
        free(copy);
        assert_true(p.nargs <= cap);
        if (r.st == SP_RESP_GROW) {
            assert_int_equal(p.nargs, cap);
            r.args = realloc(r.args, ++cap * sizeof(*r.args));
            assert_non_null(r.args);
            r.grows++;
            continue;
        }
        if (r.st != SP_RESP_MORE || have == n)
            break;
        have = n - have < step ? n : have + step;
    }
    r.nargs = p.nargs;
    r.used = p.used;
    r.error = r.st == SP_RESP_ERROR ? p.error : NULL;
    return r;
}

static struct result parse_split(const char *in, size_t n, size_t step,
                                 const struct sp_resp_limits *lim)
{
    return parse_feed(in, n, step, step, lim);
}

static struct result parse_whole(const char *in, size_t n, const struct sp_resp_limits *lim)
{
    return parse_split(in, n, n, lim);
}

/* Checks a DONE result: `used` bytes, and the arguments given as a
 * NULL-terminated list of strings (lens for those holding NULs). */
static void expect_args(const char *in, const struct result *r, size_t used,
                        const char *const *want)
{
    size_t i;

    assert_int_equal(r->st, SP_RESP_DONE);
    assert_int_equal(r->used, used);
    for (i = 0; want[i] != NULL; i++) {
        assert_true(i < r->nargs);
        assert_int_equal(r->args[i].len, strlen(want[i]));
        assert_memory_equal(in + r->args[i].off, want[i], r->args[i].len);
    }
    assert_int_equal(r->nargs, i);
}

#define S(lit) (lit), (sizeof(lit) - 1)

static void test_multibulk(void **state)
{
    (void)state;
    static const char cmd[] = "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    struct result r = parse_whole(S(cmd), NULL);
    expect_args(cmd, &r, sizeof(cmd) - 1, (const char *[]){"ECHO", "hello", NULL});
    assert_int_equal(r.args[0].off, 8);
    assert_int_equal(r.args[1].off, 18);
    result_free(&r);

    /* Payloads are bytes: CRLF, NUL and '$' inside, and an empty one. */
    static const char bin[] = "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$6\r\na\r\n\0$b\r\n";
    r = parse_whole(S(bin), NULL);
    assert_int_equal(r.st, SP_RESP_DONE);
    assert_int_equal(r.nargs, 3);
    assert_int_equal(r.used, sizeof(bin) - 1);
    assert_int_equal(r.args[1].len, 0);
    assert_int_equal(r.args[2].len, 6);
    assert_memory_equal(bin + r.args[2].off, "a\r\n\0$b", 6);
    result_free(&r);

    /* Bytes after the command are the next command's, not this one's. */
    static const char two[] = "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
    r = parse_whole(S(two), NULL);
    expect_args(two, &r, 14, (const char *[]){"PING", NULL});
    result_free(&r);
}

static void test_inline(void **state)
{
    (void)state;
    struct result r = parse_whole(S("PING\r\n"), NULL);
    expect_args("PING\r\n", &r, 6, (const char *[]){"PING", NULL});
    result_free(&r);

    static const char spaced[] = "  SET\tk  \t v \nGET";
    r = parse_whole(S(spaced), NULL);
    expect_args(spaced, &r, 14, (const char *[]){"SET", "k", "v", NULL});
    result_free(&r);

    /* No quote handling: the quotes are the arguments' bytes. */
    static const char quoted[] = "SET k \"a b\"\r\n";
    r = parse_whole(S(quoted), NULL);
    expect_args(quoted, &r, sizeof(quoted) - 1, (const char *[]){"SET", "k", "\"a", "b\"", NULL});
    result_free(&r);

    /* Only the \r before the \n is the line end's; another is a byte. */
    static const char cr[] = "a\rb c\r\r\n";
    r = parse_whole(S(cr), NULL);
    expect_args(cr, &r, sizeof(cr) - 1, (const char *[]){"a\rb", "c\r", NULL});
    result_free(&r);

    /* Without its \n the line is not over. */
    r = parse_whole(S("PING\r"), NULL);
    assert_int_equal(r.st, SP_RESP_MORE);
    result_free(&r);
}

static void test_empty_commands(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t used;
    } cases[] = {
        {"*0\r\n", 4}, {"*-1\r\n", 5}, {"*-10\r\n$1\r\n", 6},
        {"\r\n", 2},   {"\n*1", 1},    {" \t \r\n", 5},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sp_resp_parser p;
        sp_resp_reset(&p);
        /* No room for arguments is needed. */
        assert_int_equal(sp_resp_parse(&p, cases[i].in, strlen(cases[i].in), NULL, 0, NULL),
                         SP_RESP_DONE);
        assert_int_equal(p.nargs, 0);
        assert_int_equal(p.used, cases[i].used);
    }
}

/* Commands back to back in one buffer, each parsed from where the last
 * ended. */
static void test_pipelined(void **state)
{
    (void)state;
    static const char in[] = "*1\r\n$4\r\nPING\r\nPING\r\n*0\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                             "\r\nECHO x\n*1\r\n$4\r\nQU";
    static const size_t want_nargs[] = {1, 1, 0, 2, 0, 2};
    struct sp_resp_arg args[4];
    struct sp_resp_parser p;
    size_t off = 0, i = 0;

    for (;;) {
        sp_resp_reset(&p);
        enum sp_resp_status st = sp_resp_parse(&p, in + off, sizeof(in) - 1 - off, args, 4, NULL);
        if (st == SP_RESP_MORE)
            break;
        assert_int_equal(st, SP_RESP_DONE);
        assert_true(i < 6);
        assert_int_equal(p.nargs, want_nargs[i]);
        if (i == 3)
            assert_memory_equal(in + off + args[1].off, "k", 1);
        off += p.used;
        i++;
    }
    assert_int_equal(i, 6);
    assert_memory_equal(in + off, "*1\r\n$4\r\nQU", 10);
}

static void same_result(const struct result *a, const struct result *b)
{
    assert_int_equal(a->st, b->st);
    assert_int_equal(a->nargs, b->nargs);
    if (a->st == SP_RESP_DONE)
        assert_int_equal(a->used, b->used);
    if (a->st == SP_RESP_ERROR)
        assert_string_equal(a->error, b->error);
    for (size_t i = 0; i < a->nargs; i++) {
        assert_int_equal(a->args[i].off, b->args[i].off);
        assert_int_equal(a->args[i].len, b->args[i].len);
    }
}

/* Every way of cutting a command in two, and byte by byte, gives what the
 * whole gives: arguments, errors and all. */
static void test_every_split(void **state)
{
    (void)state;
    static const char *const cmds[] = {
        "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123\r\n6789\r\n",
        "*2\r\n$0\r\n\r\n$1\r\nx\r\n",
        "SET  key\tvalue \r\n",
        "\n",
        "*0\r\n",
        "*2\r\n$3\r\nGET\r\nfoo\r\n",
        "*1\r\n$3\r\nabcde\r\n",
        "*x\r\n",
        "*1\r\n$-2\r\n",
        "*1\r\n$3\r\nabc\r\n*1\r\n$1\r\nz\r\n",
    };
    for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
        size_t n = strlen(cmds[c]);
        struct result whole = parse_whole(cmds[c], n, NULL);
        assert_true(whole.st == SP_RESP_DONE || whole.st == SP_RESP_ERROR);
        for (size_t step = 1; step <= n; step++) {
            struct result r = parse_split(cmds[c], n, step, NULL);
            same_result(&whole, &r);
            result_free(&r);
        }
        /* A cut at k, then the rest. */
        for (size_t k = 0; k <= n; k++) {
            struct result r = parse_feed(cmds[c], n, k, n, NULL);
            same_result(&whole, &r);
            result_free(&r);
        }
        result_free(&whole);
    }
}

/* The parser asks for room for an argument when that argument has arrived,
 * and keeps what it recorded. */
static void test_grow(void **state)
{
    (void)state;
    static const char in[] = "*3\r\n$3\r\nfoo\r\n$3\r\nbar\r\n$3\r\nbaz\r\n";
    struct sp_resp_arg args[3];
    struct sp_resp_parser p;

    sp_resp_reset(&p);
    /* The count and the first header alone ask for nothing. */
    assert_int_equal(sp_resp_parse(&p, in, 11, args, 0, NULL), SP_RESP_MORE);
    assert_int_equal(p.nargs, 0);
    assert_int_equal(sp_resp_parse(&p, in, 13, args, 0, NULL), SP_RESP_GROW);
    assert_int_equal(p.nargs, 0);
    /* The same answer until room is given. */
    assert_int_equal(sp_resp_parse(&p, in, 13, args, 0, NULL), SP_RESP_GROW);
    assert_int_equal(sp_resp_parse(&p, in, 20, args, 1, NULL), SP_RESP_MORE);
    assert_int_equal(p.nargs, 1);
    assert_int_equal(sp_resp_parse(&p, in, sizeof(in) - 1, args, 1, NULL), SP_RESP_GROW);
    assert_int_equal(p.nargs, 1);
    assert_int_equal(sp_resp_parse(&p, in, sizeof(in) - 1, args, 2, NULL), SP_RESP_GROW);
    assert_int_equal(p.nargs, 2);
    assert_int_equal(sp_resp_parse(&p, in, sizeof(in) - 1, args, 3, NULL), SP_RESP_DONE);
    assert_int_equal(p.nargs, 3);
    assert_int_equal(p.used, sizeof(in) - 1);
    assert_memory_equal(in + args[0].off, "foo", 3);
    assert_memory_equal(in + args[1].off, "bar", 3);
    assert_memory_equal(in + args[2].off, "baz", 3);

    /* Growing by one at a time, inline and multibulk. */
    struct result r = parse_whole(S("a bb ccc dddd\r\n"), NULL);
    expect_args("a bb ccc dddd\r\n", &r, 15, (const char *[]){"a", "bb", "ccc", "dddd", NULL});
    assert_int_equal(r.grows, 4);
    result_free(&r);
    r = parse_whole(S(in), NULL);
    assert_int_equal(r.grows, 3);
    result_free(&r);
}

static void expect_error(const char *in, size_t n, const struct sp_resp_limits *lim,
                         const char *why)
{
    struct result r = parse_whole(in, n, lim);
    assert_int_equal(r.st, SP_RESP_ERROR);
    assert_string_equal(r.error, why);
    result_free(&r);
    /* Byte by byte, the same error. */
    r = parse_split(in, n, 1, lim);
    assert_int_equal(r.st, SP_RESP_ERROR);
    assert_string_equal(r.error, why);
    result_free(&r);
}

/* Each protocol error, in Redis's words (without "ERR Protocol error: "). */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"*abc\r\n", "invalid multibulk length"},
        {"*\r\n", "invalid multibulk length"},
        {"*2000000\r\n", "invalid multibulk length"},
        {"*3000000000\r\n", "invalid multibulk length"},
        {"*99999999999999999999\r\n", "invalid multibulk length"},
        {"*03\r\n", "invalid multibulk length"},
        {"*-0\r\n", "invalid multibulk length"},
        {"*1\n$1\r\n", "invalid multibulk length"},
        {"*1\rX$1\r\n", "invalid multibulk length"},
        {"*1\r\n$-5\r\n", "invalid bulk length"},
        {"*1\r\n$-1\r\n", "invalid bulk length"},
        {"*1\r\n$\r\n", "invalid bulk length"},
        {"*1\r\n$abc\r\n", "invalid bulk length"},
        {"*1\r\n$3 \r\n", "invalid bulk length"},
        {"*1\r\n$536870913\r\n", "invalid bulk length"},
        {"*1\r\n$3\rXabc\r\n", "invalid bulk length"},
        {"*1\r\nfoo\r\n", "expected '$', got 'f'"},
        {"*1\r\n\r\n", "expected '$', got '\r'"},
        {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "expected '$', got 'f'"},
        {"*1\r\n\xff", "expected '$', got '\xff'"},
        {"*1\r\n$3\r\nabcd\r\n", "expected CRLF after bulk data"},
        {"*1\r\n$3\r\nabc\rX", "expected CRLF after bulk data"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].in, strlen(cases[i].in), NULL, cases[i].why);

    /* A NUL in a header's place is named too (the string ends at it, as
     * Redis's %c does). */
    struct result r = parse_whole(S("*1\r\n\0"), NULL);
    assert_int_equal(r.st, SP_RESP_ERROR);
    assert_memory_equal(r.error, "expected '$', got '\0'", 22);
    result_free(&r);

    /* Lines without their end beyond 64 KB. */
    size_t n = SP_RESP_INLINE_MAX + 16;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '1', n);
    big[0] = '*';
    expect_error(big, n, NULL, "too big mbulk count string");
    memcpy(big, "*1\r\n$", 5);
    expect_error(big, n, NULL, "too big bulk count string");
    memset(big, 'a', n);
    expect_error(big, n, NULL, "too big inline request");
    free(big);

    /* An error stays: more bytes do not repair it. */
    struct sp_resp_parser p;
    struct sp_resp_arg args[2];
    sp_resp_reset(&p);
    assert_int_equal(sp_resp_parse(&p, S("*1\r\nx"), args, 2, NULL), SP_RESP_ERROR);
    assert_int_equal(sp_resp_parse(&p, S("*1\r\nx\r\n*1\r\n$1\r\na\r\n"), args, 2, NULL),
                     SP_RESP_ERROR);
    assert_string_equal(p.error, "expected '$', got 'x'");
}

/* Parses in whole with `lim` and returns the status. */
static enum sp_resp_status parse_lim(const char *in, size_t n, size_t max_args,
                                     uint64_t max_arg_size)
{
    struct sp_resp_limits lim = {max_args, max_arg_size};
    struct result r = parse_whole(in, n, &lim);
    result_free(&r);
    return r.st;
}

static void test_limits(void **state)
{
    (void)state;
    /* max_args: a count up to it, an inline line with up to that many. */
    assert_int_equal(parse_lim(S("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), 2, 10), SP_RESP_DONE);
    struct sp_resp_limits lim = {2, 10};
    expect_error(S("*3\r\n"), &lim, "invalid multibulk length");
    assert_int_equal(parse_lim(S("a b\r\n"), 2, 10), SP_RESP_DONE);
    assert_int_equal(parse_lim(S(" a  b \r\n"), 2, 10), SP_RESP_DONE);
    expect_error(S("a b c\r\n"), &lim, "too big inline request");
    assert_int_equal(parse_lim(S("abcdefghij\r\n"), 2, 10), SP_RESP_DONE);
    expect_error(S("abcdefghijk\r\n"), &lim, "too big inline request");
    lim.max_args = 1024 * 1024;
    assert_int_equal(parse_lim(S("*1048576\r\n"), 1024 * 1024, 10), SP_RESP_MORE);
    expect_error(S("*1048577\r\n"), &lim, "invalid multibulk length");

    /* max_arg_size. */
    assert_int_equal(parse_lim(S("*1\r\n$3\r\nabc\r\n"), 1, 3), SP_RESP_DONE);
    lim.max_arg_size = 3;
    expect_error(S("*1\r\n$4\r\n"), &lim, "invalid bulk length");
    /* A length the size of Redis's default limit, and INT64_MAX with no limit. */
    assert_int_equal(parse_lim(S("*1\r\n$536870912\r\n"), 1, 512 * 1024 * 1024), SP_RESP_MORE);
    assert_int_equal(parse_lim(S("*1\r\n$9223372036854775807\r\nab"), 1, UINT64_MAX), SP_RESP_MORE);
    lim.max_arg_size = UINT64_MAX;
    expect_error(S("*1\r\n$9223372036854775808\r\n"), &lim, "invalid bulk length");

    /* The lines' limits are on the line, not on what one read brought:
     * SP_RESP_INLINE_MAX bytes before the line end pass, one more does not. */
    size_t n = SP_RESP_INLINE_MAX + 2;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    big[SP_RESP_INLINE_MAX] = '\n';
    assert_int_equal(parse_lim(big, n - 1, 1, SP_RESP_INLINE_MAX), SP_RESP_DONE);
    memcpy(big + SP_RESP_INLINE_MAX - 1, "\r\n", 2); /* the \r counts */
    assert_int_equal(parse_lim(big, n - 1, 1, SP_RESP_INLINE_MAX), SP_RESP_DONE);
    memset(big, 'a', n);
    big[SP_RESP_INLINE_MAX + 1] = '\n';
    expect_error(big, n, NULL, "too big inline request");
    memset(big, 'x', n);
    big[0] = '*';
    memcpy(big + SP_RESP_INLINE_MAX, "\r\n", 2);
    expect_error(big, n, NULL, "invalid multibulk length"); /* long, but whole */
    memset(big, 'x', n);
    big[0] = '*';
    memcpy(big + SP_RESP_INLINE_MAX + 1, "\r\n", 1);
    expect_error(big, n, NULL, "too big mbulk count string");
    free(big);
}

/* Redis's CVE-2021-32675: 64 arguments of 512 MB declared, a few bytes sent.
 * The parser asks for no argument room and reads only what came. */
static void test_declared_is_not_allocated(void **state)
{
    (void)state;
    static const char in[] = "*64\r\n$536870912\r\nabcdefgh";
    struct sp_resp_limits lim = {64, 512 * 1024 * 1024};
    struct sp_resp_parser p;

    sp_resp_reset(&p);
    for (size_t n = 0; n <= sizeof(in) - 1; n++) {
        assert_int_equal(sp_resp_parse(&p, in, n, NULL, 0, &lim), SP_RESP_MORE);
        assert_int_equal(p.nargs, 0);
    }

    /* A bulk trickling in is counted, not scanned: 8 MB in 64-byte reads
     * would be 5 * 10^11 byte looks if each call rescanned it. */
    size_t len = 8u << 20, hdr = 14, total = hdr + len + 2;
    char *buf = malloc(total);
    struct sp_resp_arg arg;
    assert_non_null(buf);
    memcpy(buf, "*1\r\n$8388608\r\n", hdr);
    memset(buf + hdr, '\r', len);
    memcpy(buf + hdr + len, "\r\n", 2);
    sp_resp_reset(&p);
    size_t n = 0;
    enum sp_resp_status st;
    do {
        n = n + 64 < total ? n + 64 : total;
        st = sp_resp_parse(&p, buf, n, &arg, 1, &lim);
    } while (st == SP_RESP_MORE);
    assert_int_equal(st, SP_RESP_DONE);
    assert_int_equal(n, total);
    assert_int_equal(arg.off, hdr);
    assert_int_equal(arg.len, len);
    free(buf);
}

/* ---- replies ------------------------------------------------------------ */

static void expect_out(struct sp_resp_out *o, const char *want, size_t n)
{
    assert_false(o->failed);
    assert_int_equal(o->len, n);
    assert_memory_equal(o->buf, want, n);
    o->len = 0;
}

#define EXPECT_OUT(o, lit) expect_out((o), (lit), sizeof(lit) - 1)

static void test_replies(void **state)
{
    (void)state;
    struct sp_resp_out o;

    sp_resp_out_init(&o);
    sp_resp_simple(&o, "OK");
    EXPECT_OUT(&o, "+OK\r\n");
    sp_resp_simple(&o, "");
    EXPECT_OUT(&o, "+\r\n");
    sp_resp_error(&o, "ERR unknown command 'x'");
    EXPECT_OUT(&o, "-ERR unknown command 'x'\r\n");
    sp_resp_int(&o, 0);
    sp_resp_int(&o, 7);
    sp_resp_int(&o, 10);
    sp_resp_int(&o, -1);
    sp_resp_int(&o, 1234567890123);
    EXPECT_OUT(&o, ":0\r\n:7\r\n:10\r\n:-1\r\n:1234567890123\r\n");
    sp_resp_int(&o, INT64_MIN);
    sp_resp_int(&o, INT64_MAX);
    EXPECT_OUT(&o, ":-9223372036854775808\r\n:9223372036854775807\r\n");
    sp_resp_bulk(&o, "hello", 5);
    sp_resp_bulk(&o, "", 0);
    sp_resp_bulk(&o, NULL, 0);
    sp_resp_bulk(&o, "a\r\n\0b", 5);
    EXPECT_OUT(&o, "$5\r\nhello\r\n$0\r\n\r\n$0\r\n\r\n$5\r\na\r\n\0b\r\n");
    sp_resp_null(&o);
    sp_resp_null_array(&o);
    sp_resp_array(&o, 0);
    EXPECT_OUT(&o, "$-1\r\n*-1\r\n*0\r\n");

    /* Nested: [1, [bulk, null], []], as Redis writes it. */
    sp_resp_array(&o, 3);
    sp_resp_int(&o, 1);
    sp_resp_array(&o, 2);
    sp_resp_bulk(&o, "x", 1);
    sp_resp_null(&o);
    sp_resp_array(&o, 0);
    EXPECT_OUT(&o, "*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n*0\r\n");

    /* Every power of ten and its neighbours, against printf. */
    int64_t v = 1;
    for (int k = 0; k < 19; k++, v = k < 19 ? v * 10 : v) {
        const int64_t near[] = {v - 1, v, v + 1, -v, -v + 1};
        for (size_t i = 0; i < 5; i++) {
            char want[32];
            int w = snprintf(want, sizeof(want), ":%lld\r\n", (long long)near[i]);
            sp_resp_int(&o, near[i]);
            expect_out(&o, want, (size_t)w);
            w = snprintf(want, sizeof(want), "*%lld\r\n", (long long)(near[i] < 0 ? 0 : near[i]));
            sp_resp_array(&o, (size_t)(near[i] < 0 ? 0 : near[i]));
            expect_out(&o, want, (size_t)w);
        }
    }
    sp_resp_out_free(&o);
    assert_null(o.buf);
    sp_resp_out_free(NULL);
}

/* A reply quoting a client's bytes cannot break the framing. */
static void test_replies_sanitised(void **state)
{
    (void)state;
    struct sp_resp_out o;

    sp_resp_out_init(&o);
    sp_resp_simple(&o, "a\r\nb\nc\rd");
    EXPECT_OUT(&o, "+a  b c d\r\n");
    sp_resp_error(&o, "ERR\r\n+OK");
    EXPECT_OUT(&o, "-ERR  +OK\r\n");
    sp_resp_errorf(&o, "ERR Protocol error: %s", "expected '$', got '\r'");
    EXPECT_OUT(&o, "-ERR Protocol error: expected '$', got ' '\r\n");
    sp_resp_errorf(&o, "ERR %d %s", -5, "x\ny");
    EXPECT_OUT(&o, "-ERR -5 x y\r\n");
    sp_resp_out_free(&o);
}

/* Long replies: the buffer grows (by doubling) and keeps what it held. */
/* A caller's buffer (on a fiber's stack): used until full, then the bytes
 * move to the heap; free releases only the heap copy (ASan and valgrind
 * would see a free of the stack buffer). */
static void test_replies_borrowed(void **state)
{
    (void)state;
    struct sp_resp_out o;
    char stack[16];

    sp_resp_out_init_buf(&o, stack, sizeof(stack));
    sp_resp_simple(&o, "PONG");
    assert_ptr_equal(o.buf, stack);
    assert_memory_equal(stack, "+PONG\r\n", 7);
    sp_resp_bulk(&o, "0123456789", 10); /* past the 16 bytes: the whole moves */
    assert_ptr_not_equal(o.buf, stack);
    EXPECT_OUT(&o, "+PONG\r\n$10\r\n0123456789\r\n");
    sp_resp_out_free(&o);
    assert_null(o.buf);

    sp_resp_out_init_buf(&o, stack, sizeof(stack));
    sp_resp_int(&o, 42);
    sp_resp_out_free(&o); /* never grew: nothing to free */
    assert_null(o.buf);
}

static void test_replies_grow(void **state)
{
    (void)state;
    struct sp_resp_out o;
    size_t n = 100000;
    char *s = malloc(n + 1), *want = malloc(n + 16);

    assert_non_null(s);
    assert_non_null(want);
    memset(s, 'z', n);
    s[n] = '\0';
    sp_resp_out_init(&o);
    sp_resp_simple(&o, "OK");
    sp_resp_errorf(&o, "E %s", s);
    assert_false(o.failed);
    assert_int_equal(o.len, 5 + 1 + 2 + n + 2);
    assert_memory_equal(o.buf, "+OK\r\n-E zz", 10);
    assert_memory_equal(o.buf + o.len - 3, "z\r\n", 3);
    o.len = 0;
    sp_resp_bulk(&o, s, n);
    memcpy(want, "$100000\r\n", 9);
    memcpy(want + 9, s, n);
    memcpy(want + 9 + n, "\r\n", 2);
    expect_out(&o, want, n + 11);
    assert_true(o.cap >= n + 11 && o.cap < 4 * (n + 11));

    /* reserve: room that the caller fills and counts. */
    char *p = sp_resp_out_reserve(&o, 3);
    assert_non_null(p);
    memcpy(p, "+x\r", 3);
    o.len += 3;
    p = sp_resp_out_reserve(&o, 1);
    *p = '\n';
    o.len++;
    EXPECT_OUT(&o, "+x\r\n");

    /* Too large a request fails the buffer; later appends are dropped. */
    assert_null(sp_resp_out_reserve(&o, SIZE_MAX - 8));
    assert_true(o.failed);
    sp_resp_simple(&o, "OK");
    sp_resp_int(&o, 1);
    sp_resp_bulk(&o, "x", 1);
    assert_int_equal(o.len, 0);
    assert_null(sp_resp_out_reserve(&o, 1));
    sp_resp_out_free(&o);
    assert_false(o.failed);
    sp_resp_out_init(&o);
    sp_resp_bulk(&o, s, SIZE_MAX - 4);
    assert_true(o.failed);
    sp_resp_out_free(&o);
    free(s);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_empty_commands),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_declared_is_not_allocated),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_replies_sanitised),
        cmocka_unit_test(test_replies_grow),
        cmocka_unit_test(test_replies_borrowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
