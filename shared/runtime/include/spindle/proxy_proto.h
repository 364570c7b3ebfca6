/*
 * The PROXY protocol (haproxy's proxy-protocol.txt, versions 1 and 2): the
 * header a load balancer writes at the start of a connection to say whose
 * connection it relays.  A pure parser: no fd, no allocation; the I/O that
 * gathers the header without reading past it is the caller's.
 *
 * Version 1 is one text line, "PROXY TCP4 SRC DST SPORT DPORT\r\n" (or TCP6,
 * or "PROXY UNKNOWN ...\r\n"), at most 107 bytes.  Version 2 is a 16-byte
 * binary head (a 12-byte signature, version and command, family and
 * transport, the length of the rest) followed by the addresses and
 * optional TLVs, which are skipped.
 */
#ifndef SPINDLE_PROXY_PROTO_H
#define SPINDLE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The longest version 1 header, CRLF included. */
#define SP_PROXY_V1_MAX 107
/* The fixed part of a version 2 header. */
#define SP_PROXY_V2_HEAD 16
/* The longest header sp_proxy_parse() accepts: a version 2 header whose
 * TLVs take more than this is refused as invalid. */
#define SP_PROXY_MAX (SP_PROXY_V2_HEAD + 1024)

/* What a header says. */
struct sp_proxy_info {
    int version; /* 1 or 2 */
    /* True when the header carries the client's address in src (v1 TCP4 or
     * TCP6, v2 PROXY over TCP/IPv4 or TCP/IPv6).  False for v1 UNKNOWN, v2
     * LOCAL (the balancer's own connection, a health check) and v2 families
     * other than TCP over IP: the connection's own peer is the client then. */
    bool has_addr;
    struct sockaddr_storage src; /* sockaddr_in or sockaddr_in6, port included */
    struct sockaddr_storage dst;
};

/*
 * Parses the header at the start of buf[0..len).  Returns the header's
 * length in bytes (the connection's own data begins there), -2 when buf is
 * a proper prefix of a header that may still be valid (read more), or -1
 * when it is not a PROXY header or a malformed one.  When -2 is returned,
 * every byte of buf belongs to the header, so a caller may consume them
 * before reading more.  info is filled only on success.  Borrows both.
 */
int sp_proxy_parse(const char *buf, size_t len, struct sp_proxy_info *info);

#endif
