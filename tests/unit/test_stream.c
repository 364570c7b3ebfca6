/*
 * Streams: the plain-socket stream does what the io.h calls do on its fd, and
 * a service written against struct sp_stream runs unchanged over another
 * transport (here a wrapping stream that counts and transforms bytes, as a
 * TLS stream would encrypt them).
 */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime_test.h"
#include "spindle/stream.h"

/* ---- the plain socket ------------------------------------------------------- */

struct plain {
    int sv[2];
    int file;
    struct sp_stream a, b;
    ssize_t w, wv, sf, shut, eof, closed;
    char got[64];
    size_t ngot;
};

static void plain_writer(void *arg)
{
    struct plain *p = arg;
    char one[] = "one ", two[] = "two ", three[] = "three ";
    struct iovec iov[2] = {{two, 4}, {three, 6}};
    off_t off = 0;
    p->w = sp_stream_write(&p->a, one, 4, 1000);
    p->wv = sp_stream_writev(&p->a, iov, 2, 1000);
    p->sf = sp_stream_sendfile(&p->a, p->file, &off, 4, 1000);
    p->shut = sp_stream_shutdown(&p->a, SHUT_WR);
}

static void plain_reader(void *arg)
{
    struct plain *p = arg;
    ssize_t n;
    while ((n = sp_stream_read(&p->b, p->got + p->ngot, sizeof(p->got) - p->ngot, 2000)) > 0)
        p->ngot += (size_t)n;
    p->eof = n;
    /* After the end of stream a non-parking read sees it too. */
    CHECK(sp_stream_try_read(&p->b, p->got, 1) == 0);
    p->closed = sp_stream_close(&p->b);
}

static void test_socket_stream(void **state)
{
    (void)state;
    struct plain p = {.w = 1};
    char path[] = "/tmp/spindle-stream-XXXXXX";
    p.file = mkstemp(path);
    assert_true(p.file >= 0);
    unlink(path);
    assert_int_equal(write(p.file, "file", 4), 4);
    unix_pair(p.sv);
    sp_stream_socket(&p.a, p.sv[0]);
    sp_stream_socket(&p.b, p.sv[1]);
    assert_int_equal(p.a.fd, p.sv[0]);
    run_fibers(1, plain_writer, plain_reader, &p);
    assert_int_equal(p.w, 4);
    assert_int_equal(p.wv, 10);
    assert_int_equal(p.sf, 4);
    assert_int_equal(p.shut, 0);
    assert_int_equal(p.eof, 0);
    assert_int_equal(p.ngot, 18);
    assert_memory_equal(p.got, "one two three file", 18);
    assert_int_equal(p.closed, 0);
    assert_int_equal(p.b.fd, -1);
    /* The stream closed its fd: the number is free (or reused), not ours. */
    assert_true(fcntl(p.sv[1], F_GETFD) < 0);
    close(p.sv[0]);
    close(p.file);
}

struct nothing {
    int sv[2];
    struct sp_stream s;
    ssize_t try_rc, read_rc, shut_rc;
};

static void nothing_reader(void *arg)
{
    struct nothing *n = arg;
    char c;
    n->try_rc = sp_stream_try_read(&n->s, &c, 1);
    n->read_rc = sp_stream_read(&n->s, &c, 1, 20);
    sp_stream_close(&n->s);
    n->shut_rc = sp_stream_shutdown(&n->s, SHUT_WR);
}

static void test_socket_stream_errors(void **state)
{
    (void)state;
    struct nothing n = {.try_rc = 1};
    unix_pair(n.sv);
    sp_stream_socket(&n.s, n.sv[0]);
    run_fibers(1, nothing_reader, NULL, &n);
    assert_int_equal(n.try_rc, -EAGAIN);
    assert_int_equal(n.read_rc, -ETIMEDOUT);
    assert_int_equal(n.shut_rc, -EBADF);
    close(n.sv[1]);
}

/* ---- another transport --------------------------------------------------------- */

/* Flips the case of the letters it reads and counts bytes: a stand-in for a
 * transport that transforms what passes (TLS). */
struct flip_stream {
    struct sp_stream base; /* first: the ops get this pointer */
    size_t in, out;
};

static void flip(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')
            p[i] ^= 0x20;
}

static ssize_t flip_read(struct sp_stream *s, void *buf, size_t len, int64_t timeout_ms)
{
    struct flip_stream *f = (struct flip_stream *)s;
    ssize_t n = sp_read(s->fd, buf, len, timeout_ms);
    if (n > 0) {
        flip(buf, (size_t)n);
        f->in += (size_t)n;
    }
    return n;
}

static ssize_t flip_try_read(struct sp_stream *s, void *buf, size_t len)
{
    struct flip_stream *f = (struct flip_stream *)s;
    ssize_t n = sp_try_read(s->fd, buf, len);
    if (n > 0) {
        flip(buf, (size_t)n);
        f->in += (size_t)n;
    }
    return n;
}

static ssize_t flip_write(struct sp_stream *s, const void *buf, size_t len, int64_t timeout_ms)
{
    struct flip_stream *f = (struct flip_stream *)s;
    ssize_t n = sp_write(s->fd, buf, len, timeout_ms);
    if (n > 0)
        f->out += (size_t)n;
    return n;
}

static ssize_t flip_writev(struct sp_stream *s, struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    ssize_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        ssize_t n = flip_write(s, iov[i].iov_base, iov[i].iov_len, timeout_ms);
        if (n < 0)
            return n;
        total += n;
    }
    return total;
}

static ssize_t flip_sendfile(struct sp_stream *s, int in_fd, off_t *offset, size_t count,
                             int64_t timeout_ms)
{
    (void)s, (void)in_fd, (void)offset, (void)count, (void)timeout_ms;
    return -EOPNOTSUPP;
}

static int flip_shutdown(struct sp_stream *s, int how)
{
    return sp_socket_stream_ops.shutdown(s, how);
}

static int flip_close(struct sp_stream *s)
{
    return sp_socket_stream_ops.close(s);
}

static const struct sp_stream_ops flip_ops = {
    .read = flip_read,
    .try_read = flip_try_read,
    .write = flip_write,
    .writev = flip_writev,
    .sendfile = flip_sendfile,
    .shutdown = flip_shutdown,
    .close = flip_close,
};

/* A tiny service written only against struct sp_stream: echoes what it
 * reads until the end of stream, then closes. */
static void echo_over(struct sp_stream *s)
{
    char buf[64];
    ssize_t n;
    while ((n = sp_stream_read(s, buf, sizeof(buf), 2000)) > 0)
        if (sp_stream_write(s, buf, (size_t)n, 2000) != n)
            break;
    sp_stream_close(s);
}

struct flip_case {
    int sv[2];
    struct flip_stream f;
    char got[64];
    ssize_t ngot;
};

static void flip_server(void *arg)
{
    struct flip_case *fc = arg;
    echo_over(&fc->f.base);
}

static void flip_client(void *arg)
{
    struct flip_case *fc = arg;
    CHECK(sp_write(fc->sv[1], "Hello", 5, 1000) == 5);
    fc->ngot = read_full(fc->sv[1], fc->got, 5, 2000);
    shutdown(fc->sv[1], SHUT_WR);
    char c;
    CHECK(sp_read(fc->sv[1], &c, 1, 2000) == 0); /* the service closed */
}

static void test_other_transport(void **state)
{
    (void)state;
    struct flip_case fc = {.ngot = -1};
    unix_pair(fc.sv);
    fc.f.base = (struct sp_stream){.ops = &flip_ops, .fd = fc.sv[0]};
    run_fibers(1, flip_server, flip_client, &fc);
    /* The service's reads went through the flipping stream. */
    assert_int_equal(fc.ngot, 5);
    assert_memory_equal(fc.got, "hELLO", 5);
    assert_int_equal(fc.f.in, 5);
    assert_int_equal(fc.f.out, 5);
    assert_int_equal(fc.f.base.fd, -1);
    close(fc.sv[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        RT_TEST(test_socket_stream),
        RT_TEST(test_socket_stream_errors),
        RT_TEST(test_other_transport),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
