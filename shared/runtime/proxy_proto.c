/*
 * The PROXY protocol parser, versions 1 and 2 (spindle/proxy_proto.h).
 *
 * Strict where the specification is: a version 1 line is "PROXY", one
 * space between fields, CRLF at the end and nothing else; a version 2
 * header has version 2 and a known command.  A prefix that can still
 * become a valid header is "incomplete", and since a header ends where its
 * own bytes say (the first LF of a line, the length of a binary head), such
 * a prefix never holds a byte of the data after it.
 */
#include "spindle/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

/* Reads a decimal port of 1 to 5 digits ending at the end of [p, e). */
static bool port_of(const char *p, const char *e, uint16_t *port)
{
    unsigned v = 0;
    if (e - p < 1 || e - p > 5)
        return false;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* Sets ss to the address text [p, e) of family af (no port yet). */
static bool addr_of(int af, const char *p, const char *e, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    if (e - p < 1 || (size_t)(e - p) >= sizeof(text))
        return false;
    memcpy(text, p, (size_t)(e - p));
    text[e - p] = '\0';
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)af;
    if (af == AF_INET)
        return inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr) == 1;
    return inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* The fields of a whole "PROXY TCP4|TCP6 ..." line, without its CRLF. */
static int v1_fields(const char *p, const char *e, struct sp_proxy_info *info)
{
    const char *f[5];
    size_t nf = 0;

    /* Five fields after "PROXY ", one space apart. */
    for (const char *s = p; nf < 5; s++) {
        f[nf++] = s;
        s = memchr(s, ' ', (size_t)(e - s));
        if (s == NULL)
            break;
    }
    if (nf != 5 || memchr(f[4], ' ', (size_t)(e - f[4])) != NULL)
        return -1;
    int af = f[1] - f[0] == 5 && memcmp(f[0], "TCP4 ", 5) == 0   ? AF_INET
             : f[1] - f[0] == 5 && memcmp(f[0], "TCP6 ", 5) == 0 ? AF_INET6
                                                                 : AF_UNSPEC;
    uint16_t sport, dport;
    if (af == AF_UNSPEC || !addr_of(af, f[1], f[2] - 1, &info->src) ||
        !addr_of(af, f[2], f[3] - 1, &info->dst) || !port_of(f[3], f[4] - 1, &sport) ||
        !port_of(f[4], e, &dport))
        return -1;
    set_port(&info->src, sport);
    set_port(&info->dst, dport);
    info->has_addr = true;
    return 0;
}

static int parse_v1(const char *buf, size_t len, struct sp_proxy_info *info)
{
    size_t n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) != 0)
        return -1;
    const char *lf = memchr(buf, '\n', len < SP_PROXY_V1_MAX ? len : SP_PROXY_V1_MAX);
    if (lf == NULL)
        return len >= SP_PROXY_V1_MAX ? -1 : -2;
    const char *end = lf - 1; /* the CR */
    if (end < buf + 6 || *end != '\r' || memchr(buf, '\r', (size_t)(end - buf)) != NULL)
        return -1;
    struct sp_proxy_info tmp = {.version = 1};
    const char *p = buf + 6;
    if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
        /* The balancer does not know the client: whatever follows is ignored. */
    } else if (v1_fields(p, end, &tmp) != 0) {
        return -1;
    }
    *info = tmp;
    return (int)(lf + 1 - buf);
}

static int parse_v2(const unsigned char *b, size_t len, struct sp_proxy_info *info)
{
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(b, v2_sig, n) != 0)
        return -1;
    if (len > 12 && (b[12] >> 4 != 2 || (b[12] & 15) > 1))
        return -1; /* version 2; command LOCAL (0) or PROXY (1) */
    if (len < SP_PROXY_V2_HEAD)
        return -2;
    size_t total = SP_PROXY_V2_HEAD + ((size_t)b[14] << 8 | b[15]);
    if (total > SP_PROXY_MAX)
        return -1;
    if (len < total)
        return -2;

    struct sp_proxy_info tmp = {.version = 2};
    const unsigned char *a = b + SP_PROXY_V2_HEAD;
    size_t alen = total - SP_PROXY_V2_HEAD;
    bool proxy = (b[12] & 15) == 1;
    if (proxy && b[13] == 0x11) { /* TCP over IPv4 */
        if (alen < 12)
            return -1;
        struct sockaddr_in *s = (struct sockaddr_in *)&tmp.src, *d = (struct sockaddr_in *)&tmp.dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        tmp.has_addr = true;
    } else if (proxy && b[13] == 0x21) { /* TCP over IPv6 */
        if (alen < 36)
            return -1;
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&tmp.src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&tmp.dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        tmp.has_addr = true;
    }
    /* LOCAL, and PROXY with another family or transport (UNSPEC, UDP, unix
     * sockets): the specification says to use the connection's own
     * addresses.  The TLVs after the addresses are skipped. */
    *info = tmp;
    return (int)total;
}

int sp_proxy_parse(const char *buf, size_t len, struct sp_proxy_info *info)
{
    if (len == 0)
        return -2;
    if (buf[0] == 'P')
        return parse_v1(buf, len, info);
    if (buf[0] == '\r')
        return parse_v2((const unsigned char *)buf, len, info);
    return -1;
}
