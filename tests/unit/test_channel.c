/* Control-channel codec: every message type round-trips, and every malformed
 * packet is refused without reading outside it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "spindle/channel.h"

/* Encodes m, checks the header bytes, decodes it back into *out. */
static size_t round_trip(const struct sp_msg *m, struct sp_msg *out, size_t payload)
{
    unsigned char buf[SP_MSG_MAX];
    ssize_t n = sp_msg_encode(m, buf, sizeof(buf));

    assert_int_equal(n, SP_MSG_HEADER + payload);
    assert_int_equal(buf[0] | buf[1] << 8, SP_MSG_MAGIC);
    assert_int_equal(buf[2] | buf[3] << 8, m->type);
    assert_int_equal(buf[4] | buf[5] << 8 | buf[6] << 16 | (uint32_t)buf[7] << 24, payload);
    memset(out, 0xa5, sizeof(*out));
    assert_int_equal(sp_msg_decode(buf, (size_t)n, out), 0);
    assert_int_equal(out->type, m->type);
    return (size_t)n;
}

static void test_empty_types(void **state)
{
    static const uint16_t types[] = {SP_MSG_DRAIN,      SP_MSG_STOP,      SP_MSG_REOPEN,
                                     SP_MSG_STATUS_REQ, SP_MSG_DRAINING,  SP_MSG_PING,
                                     SP_MSG_PONG,       SP_MSG_DRAIN_SOON};
    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct sp_msg m = {.type = types[i]}, out;
        round_trip(&m, &out, 0);
    }
}

static void test_ready(void **state)
{
    struct sp_msg m = {.type = SP_MSG_READY}, out;
    (void)state;
    m.ready.pid = 4242;
    m.ready.generation = 7;
    m.ready.index = 3;
    round_trip(&m, &out, 12);
    assert_int_equal(out.ready.pid, 4242);
    assert_int_equal(out.ready.generation, 7);
    assert_int_equal(out.ready.index, 3);
}

static void test_slot(void **state)
{
    static const uint16_t types[] = {SP_MSG_ADOPT, SP_MSG_RELEASE};
    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct sp_msg m = {.type = types[i]}, out;
        m.slot.key = 0x01020304;
        m.slot.service = 9;
        round_trip(&m, &out, 8);
        assert_int_equal(out.slot.key, 0x01020304);
        assert_int_equal(out.slot.service, 9);
    }
    assert_string_equal(sp_msg_type_name(SP_MSG_ADOPT), "ADOPT");
    assert_string_equal(sp_msg_type_name(SP_MSG_PONG), "PONG");
    assert_string_equal(sp_msg_type_name(SP_MSG_DRAIN_SOON), "DRAIN_SOON");
}

static void test_status(void **state)
{
    struct sp_msg m = {.type = SP_MSG_STATUS}, out;
    (void)state;
    m.status.pid = 0xfffffffe;
    m.status.generation = 2;
    m.status.index = 255;
    m.status.connections = 10000;
    m.status.requests = UINT64_C(0x0123456789abcdef);
    m.status.bytes_in = UINT64_MAX;
    m.status.bytes_out = 1;
    m.status.fibers_live = 12;
    m.status.fibers_pooled = 64;
    m.status.uptime_ms = UINT64_C(86400000);
    round_trip(&m, &out, 60);
    assert_memory_equal(&out.status, &m.status, sizeof(m.status));
}

static void test_exiting(void **state)
{
    struct sp_msg m = {.type = SP_MSG_EXITING}, out;
    (void)state;
    m.exiting.code = -ENOMEM;
    strcpy(m.exiting.reason, "accept: out of memory");
    round_trip(&m, &out, 6 + strlen(m.exiting.reason));
    assert_int_equal(out.exiting.code, -ENOMEM);
    assert_string_equal(out.exiting.reason, "accept: out of memory");

    /* Empty and longest reasons. */
    m.exiting.reason[0] = '\0';
    round_trip(&m, &out, 6);
    assert_string_equal(out.exiting.reason, "");
    memset(m.exiting.reason, 'x', SP_MSG_REASON_MAX);
    m.exiting.reason[SP_MSG_REASON_MAX] = '\0';
    round_trip(&m, &out, 6 + SP_MSG_REASON_MAX);
    assert_int_equal(strlen(out.exiting.reason), SP_MSG_REASON_MAX);
}

static void test_encode_refuses(void **state)
{
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg m = {.type = 99};
    (void)state;

    assert_int_equal(sp_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m.type = SP_MSG_EXITING;
    memset(m.exiting.reason, 'x', sizeof(m.exiting.reason)); /* no NUL: too long */
    assert_int_equal(sp_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
    m.type = SP_MSG_STATUS;
    assert_int_equal(sp_msg_encode(&m, buf, SP_MSG_HEADER + 59), -ENOBUFS);
    assert_int_equal(sp_msg_encode(&m, buf, SP_MSG_HEADER + 60), SP_MSG_HEADER + 60);
}

/* Every prefix of a valid packet is refused, read from an exact-size heap
 * copy so that a read past its end would show under ASan and valgrind. */
static void test_truncated(void **state)
{
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg m = {.type = SP_MSG_STATUS}, out;
    ssize_t n = sp_msg_encode(&m, buf, sizeof(buf));
    (void)state;

    for (ssize_t len = 0; len < n; len++) {
        unsigned char *copy = malloc(len ? (size_t)len : 1);
        memcpy(copy, buf, (size_t)len);
        assert_int_equal(sp_msg_decode(copy, (size_t)len, &out), -1);
        free(copy);
    }
    m.type = SP_MSG_EXITING;
    strcpy(m.exiting.reason, "bye");
    n = sp_msg_encode(&m, buf, sizeof(buf));
    for (ssize_t len = 0; len < n; len++)
        assert_int_equal(sp_msg_decode(buf, (size_t)len, &out), -1);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), 0);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_ticket_keys(void **state)
{
    struct sp_msg m = {.type = SP_MSG_TICKET_KEYS}, out;
    unsigned char buf[SP_MSG_MAX];
    (void)state;
    m.tickets.rotation_s = 43200;
    for (int i = 0; i < SP_MSG_TICKET_KEYS_MAX; i++) {
        struct sp_msg_ticket_key *k = &m.tickets.keys[i];
        k->period = UINT64_C(0x0102030405060708) + (uint64_t)i;
        memset(k->name, 0x10 + i, sizeof(k->name));
        memset(k->aes, 0x20 + i, sizeof(k->aes));
        memset(k->hmac, 0x30 + i, sizeof(k->hmac));
    }
    m.tickets.keys[2].period = 0; /* an empty place travels too */
    round_trip(&m, &out, 268);
    assert_memory_equal(&out.tickets, &m.tickets, sizeof(m.tickets));
    assert_string_equal(sp_msg_type_name(SP_MSG_TICKET_KEYS), "TICKET_KEYS");
    /* A rotation of 0 s is no rotation: refused. */
    m.tickets.rotation_s = 0;
    ssize_t n = sp_msg_encode(&m, buf, sizeof(buf));
    assert_int_equal(n, SP_MSG_HEADER + 268);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    /* Cut short, or one byte too long: refused. */
    m.tickets.rotation_s = 1;
    n = sp_msg_encode(&m, buf, sizeof(buf));
    put32(buf + 4, 267);
    assert_int_equal(sp_msg_decode(buf, (size_t)n - 1, &out), -1);
}

static void test_wrong_lengths(void **state)
{
    unsigned char buf[SP_MSG_MAX] = {0};
    struct sp_msg m = {.type = SP_MSG_READY}, out;
    ssize_t n = sp_msg_encode(&m, buf, sizeof(buf));
    (void)state;

    /* The length field must equal the bytes present ... */
    put32(buf + 4, 11);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    put32(buf + 4, 13);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    assert_int_equal(sp_msg_decode(buf, (size_t)n + 1, &out), -1);
    put32(buf + 4, UINT32_MAX);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    /* ... and the type's payload size, even when both agree. */
    put32(buf + 4, 16);
    assert_int_equal(sp_msg_decode(buf, SP_MSG_HEADER + 16, &out), -1);
    m.type = SP_MSG_DRAIN;
    n = sp_msg_encode(&m, buf, sizeof(buf));
    put32(buf + 4, 4);
    assert_int_equal(sp_msg_decode(buf, SP_MSG_HEADER + 4, &out), -1);
    /* Larger than any packet. */
    assert_int_equal(sp_msg_decode(buf, SP_MSG_MAX + 1, &out), -1);
}

static void test_bad_reason(void **state)
{
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg m = {.type = SP_MSG_EXITING}, out;
    ssize_t n;
    (void)state;

    strcpy(m.exiting.reason, "abc");
    n = sp_msg_encode(&m, buf, sizeof(buf));
    assert_int_equal(n, SP_MSG_HEADER + 9);
    /* Reason length disagreeing with the packet length. */
    buf[SP_MSG_HEADER + 4] = 4;
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    buf[SP_MSG_HEADER + 4] = 3;
    /* A NUL inside the reason. */
    buf[SP_MSG_HEADER + 7] = '\0';
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);

    /* A consistent packet whose reason is one byte over the limit. */
    memset(buf, 'y', sizeof(buf));
    buf[0] = SP_MSG_MAGIC & 0xff;
    buf[1] = SP_MSG_MAGIC >> 8;
    buf[2] = SP_MSG_EXITING;
    buf[3] = 0;
    put32(buf + 4, 6 + SP_MSG_REASON_MAX + 1);
    put32(buf + SP_MSG_HEADER, 0);
    buf[SP_MSG_HEADER + 4] = (SP_MSG_REASON_MAX + 1) & 0xff;
    buf[SP_MSG_HEADER + 5] = (SP_MSG_REASON_MAX + 1) >> 8;
    assert_int_equal(sp_msg_decode(buf, SP_MSG_HEADER + 6 + SP_MSG_REASON_MAX + 1, &out), -1);
    /* The same at exactly the limit is fine. */
    put32(buf + 4, 6 + SP_MSG_REASON_MAX);
    buf[SP_MSG_HEADER + 4] = SP_MSG_REASON_MAX;
    assert_int_equal(sp_msg_decode(buf, SP_MSG_HEADER + 6 + SP_MSG_REASON_MAX, &out), 0);
    assert_int_equal(strlen(out.exiting.reason), SP_MSG_REASON_MAX);
}

static void test_unknown_type_and_magic(void **state)
{
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg m = {.type = SP_MSG_DRAIN}, out;
    ssize_t n = sp_msg_encode(&m, buf, sizeof(buf));
    (void)state;

    for (unsigned t = 0; t < 64; t++) {
        buf[2] = (unsigned char)t;
        int known = t == SP_MSG_DRAIN || t == SP_MSG_STOP || t == SP_MSG_REOPEN ||
                    t == SP_MSG_STATUS_REQ || t == SP_MSG_DRAINING || t == SP_MSG_PING ||
                    t == SP_MSG_PONG || t == SP_MSG_DRAIN_SOON;
        assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), known ? 0 : -1);
    }
    buf[2] = SP_MSG_DRAIN;
    buf[3] = 1; /* type 0x0101 */
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    buf[3] = 0;
    buf[0] ^= 1;
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), -1);
    assert_string_equal(sp_msg_type_name(SP_MSG_STATUS), "STATUS");
    assert_string_equal(sp_msg_type_name(1234), "UNKNOWN");
}

/* send/recv over a real SOCK_SEQPACKET pair keep one message per packet. */
static void test_socketpair(void **state)
{
    int sv[2];
    struct sp_msg m = {.type = SP_MSG_READY}, out;
    unsigned char junk[SP_MSG_MAX + 100];
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    m.ready.pid = 1;
    m.ready.index = 2;
    assert_int_equal(sp_msg_send(sv[0], &m), 0);
    m.type = SP_MSG_EXITING;
    m.exiting.code = 3;
    strcpy(m.exiting.reason, "done");
    assert_int_equal(sp_msg_send(sv[0], &m), 0);
    memset(junk, 0, sizeof(junk));
    assert_int_equal(send(sv[0], junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    assert_int_equal(send(sv[0], junk, 3, 0), 3);
    m.type = SP_MSG_DRAINING;
    assert_int_equal(sp_msg_send(sv[0], &m), 0);

    assert_int_equal(sp_msg_recv(sv[1], &out), SP_MSG_HEADER + 12);
    assert_int_equal(out.type, SP_MSG_READY);
    assert_int_equal(out.ready.index, 2);
    assert_int_equal(sp_msg_recv(sv[1], &out), SP_MSG_HEADER + 10);
    assert_int_equal(out.type, SP_MSG_EXITING);
    assert_string_equal(out.exiting.reason, "done");
    assert_int_equal(sp_msg_recv(sv[1], &out), -EBADMSG); /* oversized, consumed */
    assert_int_equal(sp_msg_recv(sv[1], &out), -EBADMSG); /* short, consumed */
    assert_int_equal(sp_msg_recv(sv[1], &out), SP_MSG_HEADER);
    assert_int_equal(out.type, SP_MSG_DRAINING);

    close(sv[0]);
    assert_int_equal(sp_msg_recv(sv[1], &out), 0);
    assert_int_equal(sp_msg_send(sv[1], &m), -EPIPE);
    close(sv[1]);
}

/* REOPEN carries fds (SCM_RIGHTS): they arrive in order and refer to the
 * same files; more than the receiver takes are closed, not leaked. */
static void test_fds(void **state)
{
    int sv[2], p[2], q[2], got[4];
    struct sp_msg m = {.type = SP_MSG_REOPEN}, out;
    unsigned char buf[SP_MSG_MAX];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 8)];
    } ctl;
    char c;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(q), 0);
    int send_fds[3] = {p[1], q[1], p[1]};
    assert_int_equal(sp_msg_send_fds(sv[0], &m, send_fds, 2), 0);
    assert_int_equal(sp_msg_send_fds(sv[0], &m, send_fds, 3), 0);
    assert_int_equal(sp_msg_send_fds(sv[0], &m, send_fds, SP_MSG_MAX_FDS + 1), -EINVAL);

    for (int round = 0; round < 2; round++) {
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC);
        assert_int_equal(n, SP_MSG_HEADER);
        assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), 0);
        assert_int_equal(out.type, SP_MSG_REOPEN);
        unsigned k = sp_msg_take_fds(&msg, got, 2); /* the second round's third is closed */
        assert_int_equal(k, 2);
        assert_int_equal(write(got[0], "a", 1), 1);
        assert_int_equal(read(p[0], &c, 1), 1);
        assert_int_equal(c, 'a');
        assert_int_equal(write(got[1], "b", 1), 1);
        assert_int_equal(read(q[0], &c, 1), 1);
        assert_int_equal(c, 'b');
        close(got[0]);
        close(got[1]);
    }
    /* Every copy of p's write end is closed now but ours. */
    close(p[1]);
    assert_int_equal(read(p[0], &c, 1), 0);
    close(p[0]);
    close(q[0]);
    close(q[1]);
    close(sv[0]);
    close(sv[1]);
}

/* ADOPT carries its slot and one listener fd: the same socket arrives. */
static void test_adopt_carries_the_slot_fd(void **state)
{
    int sv[2], p[2], got[2];
    struct sp_msg m = {.type = SP_MSG_ADOPT}, out;
    unsigned char buf[SP_MSG_MAX];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 2)];
    } ctl;
    char c = 0;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    m.slot.key = 7;
    m.slot.service = 3;
    assert_int_equal(sp_msg_send_fds(sv[0], &m, &p[1], 1), 0);

    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC);
    assert_int_equal(n, SP_MSG_HEADER + 8);
    assert_int_equal(sp_msg_decode(buf, (size_t)n, &out), 0);
    assert_int_equal(out.type, SP_MSG_ADOPT);
    assert_int_equal(out.slot.key, 7);
    assert_int_equal(out.slot.service, 3);
    assert_int_equal(sp_msg_take_fds(&msg, got, 2), 1);
    assert_true(got[0] >= 0 && got[0] != p[1]);
    assert_int_equal(write(got[0], "x", 1), 1); /* the same pipe */
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    close(got[0]);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_types),
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_slot),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_ticket_keys),
        cmocka_unit_test(test_exiting),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_lengths),
        cmocka_unit_test(test_bad_reason),
        cmocka_unit_test(test_unknown_type_and_magic),
        cmocka_unit_test(test_socketpair),
        cmocka_unit_test(test_fds),
        cmocka_unit_test(test_adopt_carries_the_slot_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
