/*
 * System call hooks (spindle/hook.h): plain blocking calls on fibers of a
 * real IOManager.  Most tests run two fibers on one thread: one blocks in a
 * plain libc call (read, poll, sleep ...) on a socket it never made
 * non-blocking, the other runs meanwhile and counts its turns or feeds the
 * first.  Turns counted while the first was inside its call are the proof
 * that the thread was not blocked; with the hooks off
 * (test_hooks_off_blocks_the_thread) there are none.
 *
 * The sockets are made blocking (no SOCK_NONBLOCK), as a client library
 * makes them.  SIGPIPE is ignored, as a server does.
 */
#include "config.h" /* first: it selects the system extensions (accept4) */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "runtime_test.h"
#include "spindle/hook.h"

struct pair {
    int sv[2];
    int ticks;      /* the other fiber's turns */
    int ticks_seen; /* ticks when the blocked call returned */
    ssize_t rc, rc2;
    int err, err2;
    char buf[64];
    int64_t took;
};

/* A blocking AF_UNIX stream pair, as a library would have it. */
static void blocking_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* The fd's real flags, past the hooked fcntl(). */
static int real_flags(int fd)
{
    return (int)syscall(SYS_fcntl, fd, F_GETFL);
}

/* Counts turns for about ms milliseconds, one every millisecond. */
static void ticker(struct pair *p, int ms)
{
    for (int i = 0; i < ms; i++) {
        p->ticks++;
        sp_sleep(1);
    }
}

static void tick_100(void *arg)
{
    ticker(arg, 100);
}

/* ---- read, and the thread goes on ----------------------------------------- */

static void plain_reader(void *arg)
{
    struct pair *p = arg;
    p->rc = read(p->sv[0], p->buf, sizeof(p->buf));
    p->ticks_seen = p->ticks;
    /* The program never asked for O_NONBLOCK; the socket has it underneath. */
    CHECK(!(fcntl(p->sv[0], F_GETFL) & O_NONBLOCK));
    CHECK(real_flags(p->sv[0]) & O_NONBLOCK);
    p->rc2 = read(p->sv[0], p->buf, sizeof(p->buf)); /* the writer closes: end of stream */
}

static void feeder(void *arg)
{
    struct pair *p = arg;
    for (int i = 0; i < 20; i++) {
        p->ticks++;
        sp_yield();
    }
    CHECK(write(p->sv[1], "hello", 5) == 5);
    sp_sleep(10);
    CHECK(close(p->sv[1]) == 0);
}

static void test_read_parks_the_fiber(void **state)
{
    (void)state;
    struct pair p = {.rc = -2, .rc2 = -2};
    blocking_pair(p.sv);
    run_fibers(1, plain_reader, feeder, &p);
    assert_int_equal(p.rc, 5);
    assert_memory_equal(p.buf, "hello", 5);
    assert_int_equal(p.ticks_seen, 20); /* the feeder ran while read() waited */
    assert_int_equal(p.rc2, 0);
    close(p.sv[0]);
}

/* ---- every receiving and sending call: data, end of stream ------------------ */

enum { OP_READ, OP_READV, OP_RECV, OP_RECVFROM, OP_RECVMSG, NOPS };

static ssize_t recv_op(int op, int fd, char *buf, size_t len)
{
    struct iovec iov[2] = {{buf, 2}, {buf + 2, len - 2}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    switch (op) {
    case OP_READ:
        return read(fd, buf, len);
    case OP_READV:
        return readv(fd, iov, 2);
    case OP_RECV:
        return recv(fd, buf, len, 0);
    case OP_RECVFROM: {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        return recvfrom(fd, buf, len, 0, (struct sockaddr *)&ss, &sl);
    }
    default:
        return recvmsg(fd, &m, 0);
    }
}

static ssize_t send_op(int op, int fd, const char *buf, size_t len)
{
    struct iovec iov[2] = {{(char *)buf, 1}, {(char *)buf + 1, len - 1}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    switch (op) {
    case OP_READ:
        return write(fd, buf, len);
    case OP_READV:
        return writev(fd, iov, 2);
    case OP_RECV:
        return send(fd, buf, len, 0);
    case OP_RECVFROM:
        return sendto(fd, buf, len, 0, NULL, 0);
    default:
        return sendmsg(fd, &m, 0);
    }
}

struct ops {
    int op;
    int sv[2];
    ssize_t got, eof, sent;
    char buf[16];
    int order; /* 1 once the sender ran, checked by the receiver before its data came */
    int parked;
};

static void op_receiver(void *arg)
{
    struct ops *o = arg;
    o->got = recv_op(o->op, o->sv[0], o->buf, sizeof(o->buf));
    o->parked = o->order; /* the sender ran while we waited */
    o->eof = recv_op(o->op, o->sv[0], o->buf + 8, 8);
}

static void op_sender(void *arg)
{
    struct ops *o = arg;
    o->order = 1;
    sp_sleep(5);
    o->sent = send_op(o->op, o->sv[1], "abcdef", 6);
    sp_sleep(5);
    close(o->sv[1]);
}

static void test_each_call_data_and_eof(void **state)
{
    (void)state;
    for (int op = 0; op < NOPS; op++) {
        struct ops o = {.op = op, .got = -2, .eof = -2, .sent = -2};
        blocking_pair(o.sv);
        run_fibers(1, op_receiver, op_sender, &o);
        print_message("op %d: got %zd, eof %zd, sent %zd\n", op, o.got, o.eof, o.sent);
        assert_int_equal(o.sent, 6);
        assert_int_equal(o.got, 6);
        assert_memory_equal(o.buf, "abcdef", 6);
        assert_int_equal(o.parked, 1);
        assert_int_equal(o.eof, 0);
        close(o.sv[0]);
    }
}

/* MSG_WAITALL waits for all the bytes, across several arrivals. */
static void waitall_receiver(void *arg)
{
    struct pair *p = arg;
    p->rc = recv(p->sv[0], p->buf, 6, MSG_WAITALL);
}

static void trickler(void *arg)
{
    struct pair *p = arg;
    for (int i = 0; i < 6; i++) {
        sp_sleep(2);
        CHECK(write(p->sv[1], &"xyzuvw"[i], 1) == 1);
    }
}

static void test_recv_waitall(void **state)
{
    (void)state;
    struct pair p = {.rc = -2};
    blocking_pair(p.sv);
    run_fibers(1, waitall_receiver, trickler, &p);
    assert_int_equal(p.rc, 6);
    assert_memory_equal(p.buf, "xyzuvw", 6);
    close_pair(p.sv);
}

/* A blocking write takes every byte, however many waits that needs. */
#define BIG (4 << 20)

static void big_writer(void *arg)
{
    struct pair *p = arg;
    char *buf = malloc(BIG);
    CHECK(buf != NULL);
    for (size_t i = 0; buf && i < BIG; i++)
        buf[i] = (char)(i * 7);
    p->rc = buf ? write(p->sv[1], buf, BIG) : -1;
    free(buf);
    close(p->sv[1]);
}

static void big_reader(void *arg)
{
    struct pair *p = arg;
    static char buf[65536];
    size_t total = 0;
    int bad = 0;
    for (;;) {
        ssize_t n = read(p->sv[0], buf, sizeof(buf));
        if (n <= 0) {
            p->rc2 = n;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            bad += buf[i] != (char)((total + (size_t)i) * 7);
        total += (size_t)n;
    }
    p->ticks = (int)(total == BIG) && !bad;
}

static void test_write_takes_every_byte(void **state)
{
    (void)state;
    struct pair p = {.rc = -2, .rc2 = -2};
    blocking_pair(p.sv);
    run_fibers(1, big_writer, big_reader, &p);
    assert_int_equal(p.rc, BIG);
    assert_int_equal(p.rc2, 0);
    assert_int_equal(p.ticks, 1);
    close(p.sv[0]);
}

/* ---- errors ------------------------------------------------------------------- */

static void error_calls(void *arg)
{
    struct pair *p = arg;
    p->rc = write(p->sv[0], "x", 1); /* the peer is gone */
    p->err = errno;
    p->rc2 = read(1 << 19, p->buf, 1); /* never opened */
    p->err2 = errno;
}

static void test_errors_as_libc_gives_them(void **state)
{
    (void)state;
    struct pair p = {.rc = -2, .rc2 = -2};
    blocking_pair(p.sv);
    close(p.sv[1]);
    run_fibers(1, error_calls, NULL, &p);
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.err, EPIPE);
    assert_int_equal(p.rc2, -1);
    assert_int_equal(p.err2, EBADF);
    close(p.sv[0]);
}

/* ---- timeouts: SO_RCVTIMEO, SO_SNDTIMEO ----------------------------------------- */

static void timed_reader(void *arg)
{
    struct pair *p = arg;
    struct timeval tv = {.tv_usec = 100000};
    CHECK(setsockopt(p->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    int64_t t0 = now_ms();
    p->rc = recv(p->sv[0], p->buf, sizeof(p->buf), 0);
    p->err = errno;
    p->took = now_ms() - t0;
    WITHIN(t0, 100);
    p->ticks_seen = p->ticks;
}

static void test_rcvtimeo(void **state)
{
    (void)state;
    struct pair p = {.rc = -2};
    blocking_pair(p.sv);
    run_fibers(1, timed_reader, tick_100, &p);
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.err, EAGAIN); /* what Linux gives a blocking recv that times out */
    assert_true(p.ticks_seen >= 5);  /* the thread ran the ticker meanwhile */
    close_pair(p.sv);
}

static void timed_writer(void *arg)
{
    struct pair *p = arg;
    struct timeval tv = {.tv_usec = 100000};
    CHECK(setsockopt(p->sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
    char *buf = calloc(1, BIG);
    CHECK(buf != NULL);
    int64_t t0 = now_ms();
    p->rc = write(p->sv[0], buf, BIG); /* nobody reads: a part goes, then the timeout */
    WITHIN(t0, 100);
    t0 = now_ms();
    p->rc2 = write(p->sv[0], buf, BIG); /* nothing goes at all */
    p->err2 = errno;
    WITHIN(t0, 100);
    free(buf);
    p->ticks_seen = p->ticks;
}

static void tick_250(void *arg)
{
    ticker(arg, 250);
}

static void test_sndtimeo(void **state)
{
    (void)state;
    struct pair p = {.rc = -2, .rc2 = -2};
    blocking_pair(p.sv);
    run_fibers(1, timed_writer, tick_250, &p);
    assert_true(p.rc > 0 && p.rc < BIG); /* the count taken, as Linux returns it */
    assert_int_equal(p.rc2, -1);
    assert_int_equal(p.err2, EAGAIN);
    assert_true(p.ticks_seen >= 5);
    close_pair(p.sv);
}

/* ---- socket, connect, accept ---------------------------------------------------- */

struct conn {
    struct sockaddr_in addr;
    int lfd;
    int connect_rc, connect_err, accept_fd, accept_err;
    ssize_t got;
    char buf[8];
    int ticks;
};

static void plain_server(void *arg)
{
    struct conn *c = arg;
    c->accept_fd = accept(c->lfd, NULL, NULL); /* parks until the client comes */
    c->accept_err = errno;
    if (c->accept_fd >= 0) {
        CHECK(!(fcntl(c->accept_fd, F_GETFL) & O_NONBLOCK));
        c->got = read(c->accept_fd, c->buf, sizeof(c->buf));
        close(c->accept_fd);
    }
}

static void plain_client(void *arg)
{
    struct conn *c = arg;
    sp_sleep(10); /* the server waits in accept() meanwhile */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    c->connect_rc = connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
    CHECK(write(fd, "ping", 4) == 4);
    close(fd);
}

static int plain_listener(struct sockaddr_in *addr)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t len = sizeof(*addr);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)addr, &len), 0);
    return lfd;
}

static void test_accept_and_connect(void **state)
{
    (void)state;
    struct conn c = {.connect_rc = -2, .accept_fd = -2, .got = -2};
    c.lfd = plain_listener(&c.addr);
    run_fibers(1, plain_server, plain_client, &c);
    assert_int_equal(c.connect_rc, 0);
    assert_true(c.accept_fd >= 0);
    assert_int_equal(c.got, 4);
    assert_memory_equal(c.buf, "ping", 4);
    close(c.lfd);
}

static void refused_client(void *arg)
{
    struct conn *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    c->connect_rc = connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
    c->connect_err = errno;
    close(fd);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct conn c = {.connect_rc = -2};
    close(plain_listener(&c.addr)); /* a port that was just free */
    run_fibers(1, refused_client, NULL, &c);
    assert_int_equal(c.connect_rc, -1);
    assert_int_equal(c.connect_err, ECONNREFUSED);
}

static void slow_connect(void *arg)
{
    struct conn *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_usec = 100000};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
    int64_t t0 = now_ms();
    c->connect_rc = connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
    c->connect_err = errno;
    WITHIN(t0, 100);
    close(fd);
}

static void count_turns(void *arg)
{
    struct conn *c = arg;
    for (int i = 0; i < 50; i++, c->ticks++)
        sp_sleep(1);
}

/* A listener whose queue is full drops the SYN: SO_SNDTIMEO ends the
 * blocking connect with EINPROGRESS, as Linux does. */
static void test_connect_timeout(void **state)
{
    (void)state;
    struct conn c = {.connect_rc = -2};
    c.lfd = plain_listener(&c.addr);
    assert_int_equal(listen(c.lfd, 0), 0);
    int queued[4];
    for (int i = 0; i < 4; i++) {
        queued[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int rc = connect(queued[i], (struct sockaddr *)&c.addr, sizeof(c.addr));
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    usleep(20000);
    run_fibers(1, slow_connect, count_turns, &c);
    assert_int_equal(c.connect_rc, -1);
    assert_int_equal(c.connect_err, EINPROGRESS);
    assert_true(c.ticks >= 5);
    for (int i = 0; i < 4; i++)
        close(queued[i]);
    close(c.lfd);
}

static void accept_timeout(void *arg)
{
    struct conn *c = arg;
    struct timeval tv = {.tv_usec = 100000};
    CHECK(setsockopt(c->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    int64_t t0 = now_ms();
    c->accept_fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
    c->accept_err = errno;
    WITHIN(t0, 100);
}

static void test_accept_timeout(void **state)
{
    (void)state;
    struct conn c = {.accept_fd = -2};
    c.lfd = plain_listener(&c.addr);
    run_fibers(1, accept_timeout, count_turns, &c);
    assert_int_equal(c.accept_fd, -1);
    assert_int_equal(c.accept_err, EAGAIN);
    assert_true(c.ticks >= 5);
    close(c.lfd);
}

/* ---- poll and select ---------------------------------------------------------- */

struct many {
    int a[2], b[2];
    int rc, rc2, rc3;
    short revents[2];
    int ticks;
    int64_t took;
    fd_set rd;
};

static void poll_two(void *arg)
{
    struct many *m = arg;
    struct pollfd p[2] = {{.fd = m->a[0], .events = POLLIN}, {.fd = m->b[0], .events = POLLIN}};
    m->rc = poll(p, 2, 2000);
    m->revents[0] = p[0].revents;
    m->revents[1] = p[1].revents;
    int64_t t0 = now_ms();
    p[1].events = 0;
    m->rc2 = poll(p, 2, 100); /* nothing comes: the timeout */
    m->took = now_ms() - t0;
    struct pollfd one = {.fd = m->a[0], .events = POLLIN};
    m->rc3 = poll(&one, 1, 2000); /* one fd, one direction: parks on it directly */
}

static void poke_b_then_a(void *arg)
{
    struct many *m = arg;
    sp_sleep(20);
    m->ticks = 1;
    CHECK(write(m->b[1], "b", 1) == 1);
    sp_sleep(150);
    CHECK(write(m->a[1], "a", 1) == 1);
}

static void test_poll_several_fds(void **state)
{
    (void)state;
    struct many m = {.rc = -2};
    blocking_pair(m.a);
    blocking_pair(m.b);
    run_fibers(1, poll_two, poke_b_then_a, &m);
    assert_int_equal(m.rc, 1);
    assert_int_equal(m.revents[0], 0);
    assert_int_equal(m.revents[1], POLLIN);
    assert_int_equal(m.rc2, 0);
    assert_true(m.took >= 100 && m.took < 100 + slack_ms());
    assert_int_equal(m.rc3, 1);
    close_pair(m.a);
    close_pair(m.b);
}

static void select_two(void *arg)
{
    struct many *m = arg;
    FD_ZERO(&m->rd);
    FD_SET(m->a[0], &m->rd);
    FD_SET(m->b[0], &m->rd);
    struct timeval tv = {.tv_sec = 2};
    m->rc = select((m->a[0] > m->b[0] ? m->a[0] : m->b[0]) + 1, &m->rd, NULL, NULL, &tv);
    fd_set none;
    FD_ZERO(&none);
    FD_SET(m->a[0], &none);
    tv = (struct timeval){.tv_usec = 100000};
    int64_t t0 = now_ms();
    m->rc2 = select(m->a[0] + 1, &none, NULL, NULL, &tv);
    m->took = now_ms() - t0;
    m->rc3 = FD_ISSET(m->a[0], &none) || tv.tv_sec || tv.tv_usec; /* cleared, no time left */
}

static void poke_b(void *arg)
{
    struct many *m = arg;
    sp_sleep(20);
    m->ticks = 1;
    CHECK(write(m->b[1], "b", 1) == 1);
}

static void test_select(void **state)
{
    (void)state;
    struct many m = {.rc = -2};
    blocking_pair(m.a);
    blocking_pair(m.b);
    run_fibers(1, select_two, poke_b, &m);
    assert_int_equal(m.rc, 1);
    assert_false(FD_ISSET(m.a[0], &m.rd));
    assert_true(FD_ISSET(m.b[0], &m.rd));
    assert_int_equal(m.rc2, 0);
    assert_true(m.took >= 100 && m.took < 100 + slack_ms());
    assert_int_equal(m.rc3, 0);
    close_pair(m.a);
    close_pair(m.b);
}

/* ---- sleep, usleep, nanosleep ---------------------------------------------------- */

static void sleeper_us(void *arg)
{
    (void)arg;
    CHECK(usleep(200000) == 0);
}

static void sleeper_ns(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_nsec = 200000000};
    CHECK(nanosleep(&ts, NULL) == 0);
    struct timespec bad = {.tv_nsec = 1000000000};
    CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);
}

static void sleeper_s(void *arg)
{
    (void)arg;
    CHECK(sleep(1) == 0);
}

/* Three sleeps on one thread at once take as long as the longest. */
static void test_sleeps_overlap(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, sleeper_us, NULL), 0);
    assert_int_equal(sp_iom_spawn(iom, sleeper_ns, NULL), 0);
    assert_int_equal(sp_iom_spawn(iom, sleeper_s, NULL), 0);
    int64_t t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    WITHIN(t0, 1000);
    sp_iom_free(iom);
}

/* ---- fd flags: fcntl, ioctl(FIONBIO), dup --------------------------------------- */

static void flags_fiber(void *arg)
{
    struct pair *p = arg;
    int fd = p->sv[0];
    CHECK(read(fd, p->buf, 1) == 1); /* parked once: O_NONBLOCK underneath */
    CHECK(real_flags(fd) & O_NONBLOCK);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));

    /* The program's own O_NONBLOCK: its calls pass straight through. */
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(read(fd, p->buf, 1) == -1 && errno == EAGAIN);
    /* Cleared again: blocking for the program, non-blocking underneath. */
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    CHECK(real_flags(fd) & O_NONBLOCK);

    int on = 1, off = 0;
    CHECK(ioctl(fd, FIONBIO, &on) == 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(recv(fd, p->buf, 1, 0) == -1 && errno == EAGAIN);
    CHECK(ioctl(fd, FIONBIO, &off) == 0);
    CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    CHECK(real_flags(fd) & O_NONBLOCK);

    /* A copy shares the flags, and so the record. */
    int d = dup(fd);
    CHECK(d >= 0);
    CHECK(!(fcntl(d, F_GETFL) & O_NONBLOCK));
    int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    CHECK(!(fcntl(d2, F_GETFL) & O_NONBLOCK));
    p->rc = read(d, p->buf, 1); /* parks: the feeder's second byte */
    close(d);
    close(d2);

    /* MSG_DONTWAIT asks for this one call not to wait. */
    CHECK(recv(fd, p->buf, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN);
}

static void two_bytes(void *arg)
{
    struct pair *p = arg;
    sp_sleep(10);
    CHECK(write(p->sv[1], "1", 1) == 1);
    sp_sleep(20);
    CHECK(write(p->sv[1], "2", 1) == 1);
}

static void test_fd_flags(void **state)
{
    (void)state;
    struct pair p = {.rc = -2};
    blocking_pair(p.sv);
    run_fibers(1, flags_fiber, two_bytes, &p);
    assert_int_equal(p.rc, 1);
    assert_int_equal(p.buf[0], '2');
    close_pair(p.sv);
}

/* ---- off fibers, and with the hooks off ----------------------------------------- */

static void make_nonblock_underneath(void *arg)
{
    struct pair *p = arg;
    CHECK(read(p->sv[0], p->buf, 1) == 1);
}

static void one_byte_later(void *arg)
{
    struct pair *p = arg;
    sp_sleep(5);
    CHECK(write(p->sv[1], "x", 1) == 1);
}

/* Off a fiber every call is libc's; a socket a fiber made non-blocking
 * underneath still blocks for the thread, and its timeout still holds. */
static void test_off_fiber_blocks_as_libc(void **state)
{
    (void)state;
    struct pair p = {.rc = -2};
    blocking_pair(p.sv);
    run_fibers(1, make_nonblock_underneath, one_byte_later, &p);
    assert_true(real_flags(p.sv[0]) & O_NONBLOCK);
    assert_false(fcntl(p.sv[0], F_GETFL) & O_NONBLOCK);
    struct timeval tv = {.tv_usec = 100000};
    assert_int_equal(setsockopt(p.sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    int64_t t0 = now_ms();
    assert_int_equal(read(p.sv[0], p.buf, 1), -1);
    assert_int_equal(errno, EAGAIN);
    int64_t took = now_ms() - t0;
    assert_true(took >= 100 && took < 100 + slack_ms());

    /* A socket no fiber touched stays as the program made it. */
    int q[2];
    blocking_pair(q);
    assert_int_equal(setsockopt(q[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(read(q[0], p.buf, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_false(real_flags(q[0]) & O_NONBLOCK);
    close_pair(q);
    close_pair(p.sv);
}

static void blocked_reader(void *arg)
{
    struct pair *p = arg;
    struct timeval tv = {.tv_usec = 100000};
    CHECK(setsockopt(p->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    p->rc = read(p->sv[0], p->buf, 1);
    p->err = errno;
    p->ticks_seen = p->ticks;
}

static void test_hooks_off_blocks_the_thread(void **state)
{
    (void)state;
    struct pair p = {.rc = -2};
    blocking_pair(p.sv);
    sp_hook_enable(false);
    run_fibers(1, blocked_reader, tick_100, &p);
    sp_hook_enable(true);
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.err, EAGAIN);   /* the kernel's own timeout */
    assert_int_equal(p.ticks_seen, 0); /* nobody else ran meanwhile */
    assert_false(real_flags(p.sv[0]) & O_NONBLOCK);
    close_pair(p.sv);
}

/* ---- close ------------------------------------------------------------------------ */

struct closing {
    int sv[2], fresh[2];
    ssize_t rc, rc2;
    int err;
};

static void close_reader(void *arg)
{
    struct closing *c = arg;
    char b;
    c->rc = read(c->sv[0], &b, 1);
    c->err = errno;
}

/* close() of an fd a fiber waits on wakes it with EBADF, and the number's
 * next socket is waited on afresh (the IOManager forgot the old one). */
static void close_under_reader(void *arg)
{
    struct closing *c = arg;
    sp_sleep(10);
    int old = c->sv[0];
    CHECK(close(old) == 0);
    sp_yield();
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fresh) == 0);
    CHECK(c->fresh[0] == old);
    char b;
    struct pollfd pf = {.fd = c->fresh[1], .events = POLLOUT};
    CHECK(poll(&pf, 1, 100) == 1);
    CHECK(write(c->fresh[1], "z", 1) == 1);
    c->rc2 = read(c->fresh[0], &b, 1);
}

static void nothing(void *arg)
{
    (void)arg;
}

static void test_close_under_a_waiting_fiber(void **state)
{
    (void)state;
    struct closing c = {.rc = -2, .rc2 = -2};
    blocking_pair(c.sv);
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, close_reader, &c), 0);
    assert_int_equal(sp_iom_spawn(iom, close_under_reader, &c), 0);
    assert_int_equal(sp_iom_spawn(iom, nothing, NULL), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_int_equal(c.rc, -1);
    assert_int_equal(c.err, EBADF);
    assert_int_equal(c.rc2, 1);
    close(c.sv[1]);
    close_pair(c.fresh);
}

/* dup2() over a socket a fiber parked on: the IOManager forgets the old
 * file, the copy gets the source's record, and waiting on it works. */
static void dup2_fiber(void *arg)
{
    struct closing *c = arg;
    char b;
    CHECK(read(c->sv[0], &b, 1) == 1); /* parked: registered with the IOManager */
    int target = c->sv[0];
    CHECK(dup2(c->fresh[0], target) == target);
    CHECK(!(fcntl(target, F_GETFL) & O_NONBLOCK));
    c->rc = read(target, &b, 1); /* parks on the new file */
    c->rc2 = b;
    CHECK(dup3(c->fresh[0], target, O_CLOEXEC) == target);
    CHECK(close(target) == 0);
}

static void dup2_feeder(void *arg)
{
    struct closing *c = arg;
    sp_sleep(5);
    CHECK(write(c->sv[1], "o", 1) == 1);
    sp_sleep(20);
    CHECK(write(c->fresh[1], "n", 1) == 1);
}

static void test_dup2_over_a_parked_fd(void **state)
{
    (void)state;
    struct closing c = {.rc = -2};
    blocking_pair(c.sv);
    blocking_pair(c.fresh);
    run_fibers(1, dup2_fiber, dup2_feeder, &c);
    assert_int_equal(c.rc, 1);
    assert_int_equal(c.rc2, 'n');
    close(c.sv[1]);
    close_pair(c.fresh);
}

/* ---- several scheduler threads -------------------------------------------------- */

#define NPAIRS 4

struct mt {
    int sv[NPAIRS][2];
    _Atomic int next_reader, next_writer, got;
};

static void mt_reader(void *arg)
{
    struct mt *m = arg;
    int i = atomic_fetch_add(&m->next_reader, 1);
    char b = 0;
    if (read(m->sv[i][0], &b, 1) == 1 && b == 'a' + i)
        atomic_fetch_add(&m->got, 1);
}

static void mt_writer(void *arg)
{
    struct mt *m = arg;
    int i = atomic_fetch_add(&m->next_writer, 1);
    usleep(20000);
    char b = (char)('a' + i);
    CHECK(write(m->sv[i][1], &b, 1) == 1);
}

static void test_two_scheduler_threads(void **state)
{
    (void)state;
    struct mt m = {.got = 0};
    for (int i = 0; i < NPAIRS; i++)
        blocking_pair(m.sv[i]);
    struct sp_iom *iom = new_iom(2);
    for (int i = 0; i < NPAIRS; i++) {
        assert_int_equal(sp_iom_spawn(iom, mt_reader, &m), 0);
        assert_int_equal(sp_iom_spawn(iom, mt_writer, &m), 0);
    }
    int64_t t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    int64_t took = now_ms() - t0;
    sp_iom_free(iom);
    assert_int_equal(atomic_load(&m.got), NPAIRS);
    assert_true(took < 20 + slack_ms()); /* the writers' sleeps overlapped */
    for (int i = 0; i < NPAIRS; i++)
        close_pair(m.sv[i]);
}

/* Reports getpid() and the kernel's answer from a child through a pipe. */
static int child_pids(void *arg)
{
    int fd = *(int *)arg;
    pid_t got[2] = {getpid(), (pid_t)syscall(SYS_getpid)};
    _exit(write(fd, got, sizeof(got)) == (ssize_t)sizeof(got) ? 0 : 1);
}

static void check_child(int (*make)(int fd))
{
    int p[2];
    pid_t got[2];
    assert_int_equal(pipe(p), 0);
    pid_t child = make(p[1]);
    assert_true(child > 0);
    assert_int_equal(read(p[0], got, sizeof(got)), (ssize_t)sizeof(got));
    assert_int_equal(got[1], child);
    assert_int_equal(got[0], child); /* its own pid, not the parent's answer kept */
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    close(p[0]);
    close(p[1]);
}

static int by_fork(int fd)
{
    pid_t pid = fork();
    if (pid == 0)
        child_pids(&fd);
    return pid;
}

/* A raw clone(), without CLONE_VM, skips every atfork handler: the kept
 * answer must be gone all the same. */
static int by_raw_clone(int fd)
{
    long pid = syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0)
        child_pids(&fd);
    return (int)pid;
}

/* getpid() (OpenSSL's fork check, three times per TLS handshake) asks the
 * kernel once per process, and a child of either kind gets its own. */
static void test_getpid_kept_and_right_after_fork(void **state)
{
    (void)state;
    pid_t self = (pid_t)syscall(SYS_getpid);
    assert_int_equal(getpid(), self);
    assert_int_equal(getpid(), self);
    check_child(by_fork);
    check_child(by_raw_clone);
    assert_int_equal(getpid(), self);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sp_hook_enable(true);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        RT_TEST(test_read_parks_the_fiber),
        RT_TEST(test_each_call_data_and_eof),
        RT_TEST(test_recv_waitall),
        RT_TEST(test_write_takes_every_byte),
        RT_TEST(test_errors_as_libc_gives_them),
        RT_TEST(test_rcvtimeo),
        RT_TEST(test_sndtimeo),
        RT_TEST(test_accept_and_connect),
        RT_TEST(test_connect_refused),
        RT_TEST(test_connect_timeout),
        RT_TEST(test_accept_timeout),
        RT_TEST(test_poll_several_fds),
        RT_TEST(test_select),
        RT_TEST(test_sleeps_overlap),
        RT_TEST(test_fd_flags),
        RT_TEST(test_off_fiber_blocks_as_libc),
        RT_TEST(test_hooks_off_blocks_the_thread),
        RT_TEST(test_close_under_a_waiting_fiber),
        RT_TEST(test_dup2_over_a_parked_fd),
        RT_TEST(test_two_scheduler_threads),
        RT_TEST(test_getpid_kept_and_right_after_fork),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
