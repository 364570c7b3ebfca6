/*
 * Tests of shared/http/http_date.c, http_range.c and http_write.c: dates,
 * Range and validators, and the pieces of a response head.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "spindle/http_date.h"
#include "spindle/http_range.h"
#include "spindle/http_write.h"

static void test_date_known(void **state)
{
    (void)state;
    char d[SP_HTTP_DATE_LEN];
    time_t t;

    sp_http_date_format(784111777, d); /* RFC 9110's example */
    assert_memory_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT", SP_HTTP_DATE_LEN);
    sp_http_date_format(0, d);
    assert_memory_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT", SP_HTTP_DATE_LEN);
    sp_http_date_format(951782400, d); /* a leap day */
    assert_memory_equal(d, "Tue, 29 Feb 2000 00:00:00 GMT", SP_HTTP_DATE_LEN);
    assert_int_equal(sp_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", SP_HTTP_DATE_LEN, &t), 0);
    assert_int_equal(t, 784111777);
    /* The weekday is not checked, as nginx does not. */
    assert_int_equal(sp_http_date_parse("Mon, 06 Nov 1994 08:49:37 GMT", SP_HTTP_DATE_LEN, &t), 0);
    assert_int_equal(t, 784111777);
}

static void test_date_round_trip(void **state)
{
    (void)state;
    char d[SP_HTTP_DATE_LEN];
    /* Every day from 1970 to 2100 at an odd second, and the year 9999. */
    for (time_t t = 7; t < 4102444800; t += 86400 + 3601) {
        time_t back = -1;
        sp_http_date_format(t, d);
        assert_int_equal(sp_http_date_parse(d, SP_HTTP_DATE_LEN, &back), 0);
        assert_int_equal(back, t);
    }
    time_t last = 253402300799, back;
    sp_http_date_format(last, d);
    assert_memory_equal(d, "Fri, 31 Dec 9999 23:59:59 GMT", SP_HTTP_DATE_LEN);
    assert_int_equal(sp_http_date_parse(d, SP_HTTP_DATE_LEN, &back), 0);
    assert_int_equal(back, last);
}

static void test_date_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",       /* asctime */
        "Sun, 06 Nov 1994 08:49:37 UTC",  "Sun, 06 Xyz 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",  "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",  "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",  "Sun, 06 Nov 19x4 08:49:37 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",  "Sun, 06 Nov 1994 08:49:37 GMT ",
    };
    time_t t = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sp_http_date_parse(bad[i], strlen(bad[i]), &t) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(t, 42);
    }
    assert_int_equal(sp_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t), -1);
}

struct range_case {
    const char *v;
    uint64_t size;
    enum sp_http_range r;
    uint64_t start, count;
};

static void test_range(void **state)
{
    (void)state;
    static const struct range_case cases[] = {
        {"bytes=0-0", 10, SP_HTTP_RANGE_ONE, 0, 1},
        {"bytes=0-9", 10, SP_HTTP_RANGE_ONE, 0, 10},
        {"bytes=2-5", 10, SP_HTTP_RANGE_ONE, 2, 4},
        {"bytes=2-", 10, SP_HTTP_RANGE_ONE, 2, 8},
        {"bytes=2-100", 10, SP_HTTP_RANGE_ONE, 2, 8},
        {"bytes=9-", 10, SP_HTTP_RANGE_ONE, 9, 1},
        {"bytes=-3", 10, SP_HTTP_RANGE_ONE, 7, 3},
        {"bytes=-30", 10, SP_HTTP_RANGE_ONE, 0, 10},
        {"BYTES= 1-1", 10, SP_HTTP_RANGE_ONE, 1, 1},
        {"bytes=0-18446744073709551609", 10, SP_HTTP_RANGE_ONE, 0, 10},
        /* The digit reader stops a little short of UINT64_MAX: ignored. */
        {"bytes=0-18446744073709551615", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=10-", 10, SP_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=10-20", 10, SP_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-0", 10, SP_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-5", 0, SP_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-", 0, SP_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=5-2", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=0-1,3-4", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"items=0-1", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=-", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=a-b", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=1-2 ", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=1", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes=18446744073709551616-", 10, SP_HTTP_RANGE_NONE, 0, 0},
        {"bytes", 10, SP_HTTP_RANGE_NONE, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct range_case *c = &cases[i];
        uint64_t start = 77, count = 77;
        enum sp_http_range r = sp_http_range_parse(c->v, strlen(c->v), c->size, &start, &count);
        if (r != c->r)
            fail_msg("%s: %d, not %d", c->v, r, c->r);
        if (r == SP_HTTP_RANGE_ONE && (start != c->start || count != c->count))
            fail_msg("%s: %llu+%llu", c->v, (unsigned long long)start, (unsigned long long)count);
    }
}

static void test_validators(void **state)
{
    (void)state;
    static const char etag[] = "\"5f-1a\"", lastmod[] = "Sun, 06 Nov 1994 08:49:37 GMT";
    size_t el = sizeof(etag) - 1;

#define LISTED(v) sp_http_etag_listed(v, strlen(v), etag, el)
    assert_true(LISTED("\"5f-1a\""));
    assert_true(LISTED("W/\"5f-1a\""));
    assert_true(LISTED("\"x\", \"5f-1a\" "));
    assert_true(LISTED("*"));
    assert_true(LISTED(" , *"));
    assert_false(LISTED("\"5f-1b\""));
    assert_false(LISTED("5f-1a"));
    assert_false(LISTED(""));
    assert_false(LISTED("**"));
#define IFR(v, lm) sp_http_if_range_match(v, strlen(v), etag, el, lm)
    assert_true(IFR("\"5f-1a\"", lastmod));
    assert_true(IFR(lastmod, lastmod));
    assert_false(IFR("W/\"5f-1a\"", lastmod)); /* strong comparison only */
    assert_false(IFR("Mon, 07 Nov 1994 08:49:37 GMT", lastmod));
    assert_false(IFR(lastmod, NULL));
    assert_false(IFR("", lastmod));
}

static void test_write(void **state)
{
    (void)state;
    char d[128];
    size_t n;

    assert_string_equal(sp_http_reason(404), "Not Found");
    assert_string_equal(sp_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sp_http_reason(299), "OK");
    assert_string_equal(sp_http_reason(399), "Redirection");
    assert_string_equal(sp_http_reason(499), "Client Error");
    assert_string_equal(sp_http_reason(599), "Server Error");
    for (unsigned s = 100; s < 1000; s++)
        assert_true(strlen(sp_http_reason(s)) <= SP_HTTP_REASON_MAX);

    n = sp_http_put_status_line(d, 200);
    assert_int_equal(n, 17);
    assert_memory_equal(d, "HTTP/1.1 200 OK\r\n", n);
    n = sp_http_put_status_line(d, 431);
    assert_int_equal(n, SP_HTTP_STATUS_LINE_MAX);
    n = sp_http_put_status(d, 413, 7);
    assert_int_equal(n, 11);
    assert_memory_equal(d, "413 Content", n);

    n = sp_http_put_u64(d, 0);
    assert_memory_equal(d, "0", n);
    n = sp_http_put_u64(d, UINT64_MAX);
    assert_int_equal(n, SP_HTTP_U64_MAX_DIGITS);
    assert_memory_equal(d, "18446744073709551615", n);
    n = sp_http_put_content_length(d, UINT64_MAX);
    assert_int_equal(n, SP_HTTP_CONTENT_LENGTH_MAX);
    assert_memory_equal(d, "Content-Length: 18446744073709551615\r\n", n);
    n = sp_http_put_header(d, "Vary", 4, "", 0);
    assert_memory_equal(d, "Vary: \r\n", n);

    n = sp_http_put_connection(d, true, 1);
    assert_memory_equal(d, "Connection: close\r\n", n);
    n = sp_http_put_connection(d, true, 0);
    assert_memory_equal(d, "Connection: close\r\n", n);
    n = sp_http_put_connection(d, false, 0);
    assert_int_equal(n, SP_HTTP_CONNECTION_MAX);
    assert_memory_equal(d, "Connection: keep-alive\r\n", n);
    assert_int_equal(sp_http_put_connection(d, false, 1), 0);

    assert_false(sp_http_status_has_body(100));
    assert_false(sp_http_status_has_body(204));
    assert_false(sp_http_status_has_body(304));
    assert_true(sp_http_status_has_body(200));
    assert_true(sp_http_status_has_body(404));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date_known),   cmocka_unit_test(test_date_round_trip),
        cmocka_unit_test(test_date_refused), cmocka_unit_test(test_range),
        cmocka_unit_test(test_validators),   cmocka_unit_test(test_write),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
