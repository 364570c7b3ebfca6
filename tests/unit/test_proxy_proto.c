/*
 * Tests of shared/runtime/proxy_proto.c: PROXY protocol headers, versions 1
 * and 2, whole, in prefixes and malformed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "spindle/proxy_proto.h"

static const char sig[] = "\r\n\r\n\0\r\nQUIT\n";

static void assert_v4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char text[INET_ADDRSTRLEN];
    assert_int_equal(s->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &s->sin_addr, text, sizeof(text)));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(s->sin6_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof(text)));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(s->sin6_port), port);
}

/* Every proper prefix of a valid header is incomplete. */
static void assert_prefixes_incomplete(const char *h, size_t n)
{
    struct sp_proxy_info info;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sp_proxy_parse(h, i, &info), -2);
}

static void test_v1_tcp4(void **state)
{
    (void)state;
    const char h[] = "PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hl = strlen("PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n");
    struct sp_proxy_info info;
    assert_int_equal(sp_proxy_parse(h, sizeof(h) - 1, &info), (int)hl);
    assert_int_equal(info.version, 1);
    assert_true(info.has_addr);
    assert_v4(&info.src, "203.0.113.7", 56324);
    assert_v4(&info.dst, "10.0.0.1", 443);
    assert_prefixes_incomplete(h, hl);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    (void)state;
    struct sp_proxy_info info;
    const char h6[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    assert_int_equal(sp_proxy_parse(h6, sizeof(h6) - 1, &info), (int)sizeof(h6) - 1);
    assert_v6(&info.src, "2001:db8::1", 65535);
    assert_v6(&info.dst, "::1", 0);

    const char u[] = "PROXY UNKNOWN\r\n";
    assert_int_equal(sp_proxy_parse(u, sizeof(u) - 1, &info), (int)sizeof(u) - 1);
    assert_false(info.has_addr);
    const char u2[] = "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\nX";
    assert_int_equal(sp_proxy_parse(u2, sizeof(u2) - 1, &info), (int)sizeof(u2) - 2);
    assert_false(info.has_addr);

    /* The longest line there is: 107 bytes. */
    const char big[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(sizeof(big) - 1, SP_PROXY_V1_MAX);
    assert_int_equal(sp_proxy_parse(big, sizeof(big) - 1, &info), SP_PROXY_V1_MAX);
    const char tcp6[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(sp_proxy_parse(tcp6, sizeof(tcp6) - 1, &info), (int)sizeof(tcp6) - 1);
    assert_true(info.has_addr);
}

static void test_v1_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",        /* LF without CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",     /* a sixth field */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",     /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",        /* a port missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",  /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", /* too many digits */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     /* not a number */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",    /* not an address */
        "PROXY TCP4 ::1 ::1 1 2\r\n",              /* IPv6 under TCP4 */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",      /* IPv4 under TCP6 */
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",      /* no such protocol */
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", /* a CR inside */
    };
    struct sp_proxy_info info;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = sp_proxy_parse(bad[i], strlen(bad[i]), &info);
        if (rc != -1)
            fail_msg("'%s' gave %d", bad[i], rc);
    }
    /* 107 bytes without a line end can no longer become a header. */
    char long_line[SP_PROXY_V1_MAX + 10];
    memset(long_line, '1', sizeof(long_line));
    memcpy(long_line, "PROXY UNKNOWN ", 14);
    assert_int_equal(sp_proxy_parse(long_line, SP_PROXY_V1_MAX - 1, &info), -2);
    assert_int_equal(sp_proxy_parse(long_line, SP_PROXY_V1_MAX, &info), -1);
    assert_int_equal(sp_proxy_parse(long_line, sizeof(long_line), &info), -1);
    /* Garbage is refused at its first byte, without waiting for more. */
    assert_int_equal(sp_proxy_parse("G", 1, &info), -1);
    assert_int_equal(sp_proxy_parse("PRX", 3, &info), -1);
}

/* A version 2 header: the 16-byte head, then body[0..blen). */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
                 const unsigned char *body, size_t blen)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (unsigned char)(blen >> 8);
    out[15] = (unsigned char)blen;
    memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2_tcp4_with_tlvs(void **state)
{
    (void)state;
    /* src 203.0.113.7:4660, dst 10.0.0.1:80, then a TLV (type 0x04, NOOP). */
    const unsigned char body[] = {203,  0, 113, 7,    10, 0, 0,   1,   0x12,
                                  0x34, 0, 80,  0x04, 0,  3, 'a', 'b', 'c'};
    unsigned char h[64];
    size_t n = v2(h, 0x21, 0x11, body, sizeof(body));
    memcpy(h + n, "GET", 3);
    struct sp_proxy_info info;
    assert_int_equal(sp_proxy_parse((char *)h, n + 3, &info), (int)n);
    assert_int_equal(info.version, 2);
    assert_true(info.has_addr);
    assert_v4(&info.src, "203.0.113.7", 0x1234);
    assert_v4(&info.dst, "10.0.0.1", 80);
    assert_prefixes_incomplete((char *)h, n);
}

static void test_v2_tcp6_local_unspec(void **state)
{
    (void)state;
    unsigned char body[36] = {0x20, 0x01, 0x0d, 0xb8};
    body[15] = 1;
    body[31] = 1;
    body[32] = 0x01;
    body[33] = 0xbb;
    unsigned char h[64];
    struct sp_proxy_info info;
    size_t n = v2(h, 0x21, 0x21, body, sizeof(body));
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), (int)n);
    assert_v6(&info.src, "2001:db8::1", 443);
    assert_v6(&info.dst, "::1", 0);

    /* LOCAL (a health check of the balancer's own): no address, even with one. */
    n = v2(h, 0x20, 0x11, body, 12);
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), (int)n);
    assert_false(info.has_addr);
    n = v2(h, 0x20, 0x00, body, 0);
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), 16);
    assert_false(info.has_addr);
    /* PROXY over UDP or a unix socket: the connection's own address. */
    n = v2(h, 0x21, 0x12, body, 12);
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), (int)n);
    assert_false(info.has_addr);
}

static void test_v2_malformed(void **state)
{
    (void)state;
    unsigned char body[36] = {0};
    unsigned char h[64];
    struct sp_proxy_info info;

    size_t n = v2(h, 0x21, 0x11, body, 12);
    h[3] = 'X'; /* a bad signature */
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    assert_int_equal(sp_proxy_parse((char *)h, 4, &info), -1);
    n = v2(h, 0x11, 0x11, body, 12); /* version 1 in a binary head */
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    assert_int_equal(sp_proxy_parse((char *)h, 13, &info), -1);
    n = v2(h, 0x22, 0x11, body, 12); /* command 2 */
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    n = v2(h, 0x21, 0x11, body, 11); /* too short for two IPv4 addresses */
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    n = v2(h, 0x21, 0x21, body, 35); /* too short for two IPv6 addresses */
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    /* A length beyond SP_PROXY_MAX is refused from the head alone. */
    n = v2(h, 0x21, 0x11, body, 12);
    h[14] = 0xff;
    h[15] = 0xff;
    assert_int_equal(sp_proxy_parse((char *)h, n, &info), -1);
    assert_int_equal(sp_proxy_parse("", 0, &info), -2);
    assert_int_equal(sp_proxy_parse("\r\n\r\n\0\r\nQUIT\n?", 13, &info), -1); /* v3 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v2_tcp4_with_tlvs),
        cmocka_unit_test(test_v2_tcp6_local_unspec),
        cmocka_unit_test(test_v2_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
