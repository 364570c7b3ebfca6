/*
 * libFuzzer target for sp_proxy_parse(), the PROXY protocol header parser.
 *
 * Besides memory safety (each call sees an exact-size copy of its bytes) it
 * checks the parser's contract: a header's length lies within the input and
 * within the limits; every proper prefix of a header is incomplete, and a
 * parse of the header alone agrees with the parse of the whole; an
 * incomplete input stays incomplete or becomes a header no shorter than it
 * (so its bytes all belong to the header, as the I/O that gathers one relies
 * on); an address is IPv4 or IPv6.
 */
#include "spindle/proxy_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static int parse_copy(const uint8_t *data, size_t n, struct sp_proxy_info *info)
{
    char *copy = malloc(n ? n : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, n);
    int rc = sp_proxy_parse(copy, n, info);
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_proxy_info info, again;
    int rc = parse_copy(data, size, &info);
    CHECK(rc == -1 || rc == -2 || rc > 0);
    if (rc == -2) {
        CHECK(size < SP_PROXY_MAX);
        return 0;
    }
    if (rc < 0)
        return 0;
    CHECK((size_t)rc <= size && rc <= SP_PROXY_MAX);
    CHECK(info.version == 1 || info.version == 2);
    CHECK(info.version == 2 || rc <= SP_PROXY_V1_MAX);
    if (info.has_addr) {
        CHECK(info.src.ss_family == AF_INET || info.src.ss_family == AF_INET6);
        CHECK(info.dst.ss_family == info.src.ss_family);
    }
    CHECK(parse_copy(data, (size_t)rc, &again) == rc);
    CHECK(again.has_addr == info.has_addr && again.version == info.version);
    CHECK(!info.has_addr || memcmp(&again.src, &info.src, sizeof(info.src)) == 0);
    for (size_t i = 0; i < (size_t)rc; i++)
        CHECK(parse_copy(data, i, &again) == -2);
    return 0;
}
