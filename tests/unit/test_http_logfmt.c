/*
 * Tests of worker/http/http_log_format.c: compiling access_log_format
 * values (templates, "json", the errors) and writing lines from them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_log_format.h"

static const char LINE[] = "GET /a/b?x=1&y=2 HTTP/1.1";

/* A record with every value set; the header slots follow f's names. */
static struct http_log_rec rec(const struct http_logfmt *f)
{
    struct http_log_rec r = {
        .remote_addr = "192.0.2.7",
        .line = {LINE, sizeof(LINE) - 1},
        .status = 200,
        .body_bytes_sent = 13,
        .bytes_sent = 170,
        .request_length = 80,
        .request_ns = 1234567890,
        .time_local = "23/Nov/2026:03:45:38 +0000",
        .time_iso8601 = "2026-11-23T03:45:38+00:00",
        .msec = 1795405538042,
        .pid = 4242,
    };
    for (unsigned i = 0; i < f->nhdrs; i++) {
        if (strcasecmp(f->hdrs[i], "user-agent") == 0)
            r.hdr[i] = (struct http_log_slice){"curl/8.5.0", 10};
        else if (strcasecmp(f->hdrs[i], "host") == 0)
            r.hdr[i] = (struct http_log_slice){"example.com:8080", 16};
        else if (strcasecmp(f->hdrs[i], "x-request-id") == 0)
            r.hdr[i] = (struct http_log_slice){"r-1", 3};
    }
    return r;
}

/* Compiles spec (which must compile) and writes r's line into buf, without
 * its '\n'. */
static const char *line_of(const char *spec, const struct http_log_rec *given, char *buf,
                           size_t cap)
{
    char err[160] = "";
    const struct http_logfmt *f = http_logfmt_compile(spec, err, sizeof(err));
    if (!f)
        fail_msg("%s: %s", spec, err);
    struct http_log_rec r = given ? *given : rec(f);
    size_t n = http_logfmt_write(f, &r, buf, cap);
    assert_true(n >= 1 && n <= cap);
    assert_int_equal(buf[n - 1], '\n');
    buf[n - 1] = '\0';
    http_logfmt_free(f);
    return buf;
}

static void test_template_variables(void **state)
{
    (void)state;
    char b[1024];

    assert_string_equal(line_of("$remote_addr - $remote_user [$time_local] \"$request\" $status "
                                "$body_bytes_sent \"$http_referer\" \"$http_user_agent\"",
                                NULL, b, sizeof(b)),
                        "192.0.2.7 - - [23/Nov/2026:03:45:38 +0000] \"GET /a/b?x=1&y=2 HTTP/1.1\" "
                        "200 13 \"-\" \"curl/8.5.0\"");
    assert_string_equal(
        line_of("$request_method|$request_uri|$uri|$args|$query_string|$server_protocol", NULL, b,
                sizeof(b)),
        "GET|/a/b?x=1&y=2|/a/b|x=1&y=2|x=1&y=2|HTTP/1.1");
    assert_string_equal(
        line_of("$request_time $msec $bytes_sent $request_length $pid $scheme", NULL, b, sizeof(b)),
        "1.234 1795405538.042 170 80 4242 http");
    assert_string_equal(line_of("$time_iso8601 $host $http_x_request_id $HTTP_X_Request_ID "
                                "$http_x_missing?",
                                NULL, b, sizeof(b)),
                        "2026-11-23T03:45:38+00:00 example.com r-1 r-1 -?");
    /* Braces let a name stand before letters; text without variables. */
    assert_string_equal(line_of("${status}xx ${http_user_agent}!", NULL, b, sizeof(b)),
                        "200xx curl/8.5.0!");
    assert_string_equal(line_of("plain text", NULL, b, sizeof(b)), "plain text");
}

static void test_upstream(void **state)
{
    (void)state;
    char b[256];
    const char *spec = "$upstream_addr $upstream_response_time";
    char err[160];
    const struct http_logfmt *f = http_logfmt_compile(spec, err, sizeof(err));
    assert_non_null(f);
    struct http_log_rec r = rec(f);

    assert_string_equal(line_of(spec, &r, b, sizeof(b)), "- -");
    r.upstream_addr = "127.0.0.1:9000";
    r.upstream_ns = 25 * 1000000ull;
    assert_string_equal(line_of(spec, &r, b, sizeof(b)), "127.0.0.1:9000 0.025");
    http_logfmt_free(f);
}

/* As nginx: an absent value is "-" (null in JSON), an empty one empty. */
static void test_empty_values(void **state)
{
    (void)state;
    char b[HTTP_LOGFMT_LINE_MAX], err[160];
    const char *spec = "\"$http_user_agent\" \"$http_referer\" \"$args\"";
    const struct http_logfmt *f = http_logfmt_compile(spec, err, sizeof(err));
    assert_non_null(f);
    struct http_log_rec r = rec(f);
    r.hdr[0] = (struct http_log_slice){"", 0}; /* User-Agent: (empty) */
    r.line = (struct http_log_slice){"GET /a? HTTP/1.1", 16};
    assert_string_equal(line_of(spec, &r, b, sizeof(b)), "\"\" \"-\" \"\"");
    r.line = (struct http_log_slice){"GET /a HTTP/1.1", 15};
    assert_string_equal(line_of(spec, &r, b, sizeof(b)), "\"\" \"-\" \"-\"");
    http_logfmt_free(f);

    f = http_logfmt_compile("json", err, sizeof(err));
    assert_non_null(f);
    r = rec(f);
    for (unsigned i = 0; i < f->nhdrs; i++)
        if (strcmp(f->hdrs[i], "user-agent") == 0)
            r.hdr[i] = (struct http_log_slice){"", 0};
    line_of("json", &r, b, sizeof(b));
    assert_non_null(strstr(b, "\"referer\":null,\"user_agent\":\"\","));
    http_logfmt_free(f);
}

/* One header slot per distinct name, whatever its case or spelling. */
static void test_header_slots(void **state)
{
    (void)state;
    char err[160];
    const struct http_logfmt *f = http_logfmt_compile(
        "$http_user_agent $HTTP_USER_AGENT ${http_User_Agent} $host $http_host", err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(f->nhdrs, 2);
    assert_string_equal(f->hdrs[0], "user-agent");
    assert_int_equal(f->hdr_lens[0], 10);
    assert_string_equal(f->hdrs[1], "host");
    http_logfmt_free(f);

    f = http_logfmt_compile("$http_a $http_b $http_c $http_d $http_e $http_f $http_g", err,
                            sizeof(err));
    assert_null(f);
    assert_non_null(strstr(err, "$http_g"));
}

static void test_escaping(void **state)
{
    (void)state;
    char b[1024], err[160];
    const char *spec = "\"$http_user_agent\" $request";
    const struct http_logfmt *f = http_logfmt_compile(spec, err, sizeof(err));
    assert_non_null(f);
    struct http_log_rec r = rec(f);
    static const char agent[] = "a\"b\\c\x01\n\x7f\xc3\xa9\xff";
    static const char line[] = "GET /\"x\" HTTP/1.1\r";
    r.hdr[0] = (struct http_log_slice){agent, sizeof(agent) - 1};
    r.line = (struct http_log_slice){line, sizeof(line) - 1};
    assert_string_equal(line_of(spec, &r, b, sizeof(b)),
                        "\"a\\x22b\\x5Cc\\x01\\x0A\\x7F\\xC3\\xA9\\xFF\" "
                        "GET /\\x22x\\x22 HTTP/1.1\\x0D");
    http_logfmt_free(f);

    /* JSON: quotes, backslashes and control bytes escaped, valid UTF-8
     * kept, an invalid byte as \u00XX. */
    f = http_logfmt_compile("json", err, sizeof(err));
    assert_non_null(f);
    r = rec(f);
    for (unsigned i = 0; i < f->nhdrs; i++)
        if (strcmp(f->hdrs[i], "user-agent") == 0)
            r.hdr[i] = (struct http_log_slice){agent, sizeof(agent) - 1};
    line_of("json", &r, b, sizeof(b));
    assert_non_null(
        strstr(b, "\"user_agent\":\"a\\\"b\\\\c\\u0001\\u000a\\u007f\xc3\xa9\\u00ff\""));
    http_logfmt_free(f);
}

static void test_json(void **state)
{
    (void)state;
    char b[HTTP_LOGFMT_LINE_MAX];
    char err[160];
    const struct http_logfmt *f = http_logfmt_compile("json", err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(f->kind, HTTP_LOGFMT_JSON);
    struct http_log_rec r = rec(f);

    line_of("json", &r, b, sizeof(b));
    assert_non_null(
        strstr(b, "{\"time\":\"2026-11-23T03:45:38+00:00\",\"remote_addr\":\"192.0.2.7\""));
    assert_non_null(strstr(b, ",\"status\":200,\"body_bytes_sent\":13,"));
    assert_non_null(strstr(b, ",\"request_time\":1.234,\"upstream_response_time\":null,"));
    assert_non_null(strstr(b, ",\"referer\":null,\"user_agent\":\"curl/8.5.0\","));
    assert_non_null(strstr(b, "\"host\":\"example.com\""));
    assert_int_equal(b[strlen(b) - 1], '}');

    /* Values at their longest, every one escaped six-fold: still one
     * complete object within HTTP_LOGFMT_LINE_MAX. */
    static char big[9000];
    memset(big, 0x01, sizeof(big));
    r.line = (struct http_log_slice){big, sizeof(big)};
    for (unsigned i = 0; i < f->nhdrs; i++)
        r.hdr[i] = (struct http_log_slice){big, sizeof(big)};
    r.remote_addr = "2001:db8::1";
    size_t n = http_logfmt_write(f, &r, b, sizeof(b));
    assert_true(n < sizeof(b));
    assert_memory_equal(b + n - 2, "}\n", 2);
    http_logfmt_free(f);
}

/* A template line that does not fit is cut, still ending with '\n'. */
static void test_cut(void **state)
{
    (void)state;
    char b[16];
    assert_string_equal(line_of("$request_uri and more", NULL, b, sizeof(b)), "/a/b?x=1&y=2 an");
}

static void expect_error(const char *spec, const char *want)
{
    char err[160] = "";
    const struct http_logfmt *f = http_logfmt_compile(spec, err, sizeof(err));
    if (f)
        fail_msg("'%s' compiled", spec);
    if (!strstr(err, want))
        fail_msg("'%s': '%s' lacks '%s'", spec, err, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("$remote_addr $bogus x", "unknown variable $bogus");
    expect_error("${nope}", "unknown variable $nope");
    expect_error("a $ b", "'$' without a variable name");
    expect_error("a ${status", "missing '}'");
    expect_error("${sta-tus}", "invalid variable name");
    expect_error("${}", "'$' without a variable name");
    expect_error("$http_", "unknown variable $http_");
    expect_error("$http_a_very_long_header_name_beyond_31_bytes", "too long");
}

static void test_combined(void **state)
{
    (void)state;
    char err[160];
    const struct http_logfmt *f = http_logfmt_compile("combined", err, sizeof(err));
    assert_ptr_equal(f, &http_logfmt_combined);
    assert_int_equal(f->kind, HTTP_LOGFMT_COMBINED);
    assert_int_equal(f->nhdrs, 2);
    assert_string_equal(f->hdrs[0], "Referer");
    assert_string_equal(f->hdrs[1], "User-Agent");
    http_logfmt_free(f); /* a no-op on the static one */
    http_logfmt_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_variables),
        cmocka_unit_test(test_upstream),
        cmocka_unit_test(test_empty_values),
        cmocka_unit_test(test_header_slots),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_combined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
