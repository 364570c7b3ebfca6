/*
 * Fiber I/O: what a connection handler sees when the peer resets, goes away
 * or stops reading; large and scattered writes under a small send buffer;
 * sendfile; accept and connect; whether an idle connection's peer spoke.
 *
 * sp_write() and friends use write(2), so a peer that went away raises
 * SIGPIPE: like any server built on them, this program ignores it and gets
 * -EPIPE instead.
 */
#include "config.h" /* first: it selects the system extensions (accept4) */

#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "runtime_test.h"

/* ---- the peer goes away --------------------------------------------------- */

struct reset {
    int sv[2];
    ssize_t rc;
};

static void reset_reader(void *arg)
{
    struct reset *r = arg;
    char buf[16];
    r->rc = sp_read(r->sv[0], buf, sizeof(buf), 2000);
}

static void resetter(void *arg)
{
    struct reset *r = arg;
    sp_sleep(20); /* the reader is parked */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(r->sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    CHECK(sp_close(r->sv[1]) == 0); /* sends RST */
}

static void test_peer_reset(void **state)
{
    (void)state;
    struct reset r = {.rc = 1};
    tcp_pair(r.sv);
    run_fibers(1, reset_reader, resetter, &r);
    assert_int_equal(r.rc, -ECONNRESET);
    close(r.sv[0]);
}

struct gone {
    int sv[2];
    ssize_t first, rc;
};

static void write_to_gone_peer(void *arg)
{
    struct gone *g = arg;
    static char buf[4096];
    /* TCP learns of the close from the RST its first write provokes. */
    g->first = sp_write(g->sv[0], buf, sizeof(buf), 1000);
    for (int i = 0; i < 100; i++) {
        g->rc = sp_write(g->sv[0], buf, sizeof(buf), 1000);
        if (g->rc < 0)
            break;
        sp_sleep(1);
    }
}

static void test_write_to_closed_peer(void **state)
{
    (void)state;
    struct gone u = {.first = 1, .rc = 1};
    unix_pair(u.sv);
    close(u.sv[1]);
    run_fibers(1, write_to_gone_peer, NULL, &u);
    assert_int_equal(u.first, -EPIPE);
    assert_int_equal(u.rc, -EPIPE);
    close(u.sv[0]);

    struct gone t = {.first = 1, .rc = 1};
    tcp_pair(t.sv);
    close(t.sv[1]);
    run_fibers(1, write_to_gone_peer, NULL, &t);
    assert_true(t.first == 4096 || t.first == -EPIPE || t.first == -ECONNRESET);
    assert_true(t.rc == -EPIPE || t.rc == -ECONNRESET);
    close(t.sv[0]);
}

struct stalled {
    int sv[2];
    ssize_t rc;
    int64_t t0;
};

static void write_to_stalled_peer(void *arg)
{
    struct stalled *s = arg;
    size_t len = 16 << 20; /* far more than the socket buffers hold */
    char *buf = calloc(1, len);
    CHECK(buf != NULL);
    s->t0 = now_ms();
    s->rc = sp_write(s->sv[0], buf, len, 100);
    WITHIN(s->t0, 100);
    free(buf);
}

static void test_write_timeout(void **state)
{
    (void)state;
    struct stalled s = {.rc = 1};
    tcp_pair(s.sv);
    run_fibers(1, write_to_stalled_peer, NULL, &s);
    assert_int_equal(s.rc, -ETIMEDOUT);
    close_pair(s.sv);
}

/* A reader that keeps taking bytes, slowly: the write's timeout counts from
 * the last progress, so the whole transfer may take many timeouts long. */
#define TRICKLE_TOTAL (512 << 10)
#define TRICKLE_CHUNK 4096

struct trickle {
    int sv[2];
    ssize_t rc;
    size_t got;
    int64_t t0, took;
};

static void write_to_trickle_reader(void *arg)
{
    struct trickle *s = arg;
    char *buf = calloc(1, TRICKLE_TOTAL);
    CHECK(buf != NULL);
    s->t0 = now_ms();
    s->rc = sp_write(s->sv[0], buf, TRICKLE_TOTAL, 250);
    s->took = now_ms() - s->t0;
    free(buf);
}

static void trickle_reader(void *arg)
{
    struct trickle *s = arg;
    char buf[TRICKLE_CHUNK];
    while (s->got < TRICKLE_TOTAL) {
        sp_sleep(10);
        ssize_t n = sp_read(s->sv[1], buf, sizeof(buf), 2000);
        if (n <= 0)
            break;
        s->got += (size_t)n;
    }
}

static void test_write_timeout_counts_from_progress(void **state)
{
    (void)state;
    struct trickle s = {.rc = 1};
    int small = 4096;
    unix_pair(s.sv);
    CHECK(setsockopt(s.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
    run_fibers(1, write_to_trickle_reader, trickle_reader, &s);
    assert_int_equal(s.rc, TRICKLE_TOTAL);
    assert_int_equal(s.got, TRICKLE_TOTAL);
    /* At least 128 reads 10 ms apart: several times the 250 ms timeout, yet
     * the write succeeded. */
    assert_true(s.took > 750);
    close_pair(s.sv);
}

/* ---- many iovecs, small buffers ------------------------------------------ */

#define NIOV 3000 /* more than IOV_MAX */

struct scatter {
    int sv[2];
    struct iovec iov[NIOV];
    unsigned char *src, *dst;
    size_t total, got;
    ssize_t rc;
    int read_mid_write; /* the writer parked with bytes still to go */
};

static void scatter_writer(void *arg)
{
    struct scatter *s = arg;
    s->rc = sp_writev(s->sv[0], s->iov, NIOV, 5000);
    CHECK(sp_close(s->sv[0]) == 0);
}

static void slow_reader(void *arg)
{
    struct scatter *s = arg;
    for (;;) {
        ssize_t n = sp_read(s->sv[1], s->dst + s->got, 1000, 5000);
        CHECK(n >= 0);
        if (n <= 0)
            break;
        s->got += (size_t)n;
        CHECK(s->got <= s->total);
        if (s->rc == 0)
            s->read_mid_write = 1;
        if (s->got % 7 == 0)
            sp_sleep(0); /* let the writer find the buffer full */
    }
}

static void writev_case(int tcp)
{
    static struct scatter s;
    memset(&s, 0, sizeof(s));
    if (tcp)
        tcp_pair(s.sv);
    else
        unix_pair(s.sv);
    /* A small send buffer makes every writev partial.  (Shrinking the TCP
     * receive buffer too would only exercise the kernel's persist timer.) */
    int small = 4096;
    assert_int_equal(setsockopt(s.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);

    /* Chunks of 0..199 bytes, some empty, with a running byte pattern. */
    for (int i = 0; i < NIOV; i++)
        s.total += (size_t)((i * 37) % 200);
    s.src = malloc(s.total);
    s.dst = calloc(1, s.total + 1000);
    assert_non_null(s.src);
    assert_non_null(s.dst);
    size_t off = 0;
    for (int i = 0; i < NIOV; i++) {
        size_t len = (size_t)((i * 37) % 200);
        s.iov[i].iov_base = s.src + off;
        s.iov[i].iov_len = len;
        off += len;
    }
    for (size_t k = 0; k < s.total; k++)
        s.src[k] = (unsigned char)(k * 131 + k / 251);

    run_fibers(1, scatter_writer, slow_reader, &s);
    assert_int_equal(s.rc, s.total);
    assert_true(s.read_mid_write);
    assert_int_equal(s.got, s.total);
    assert_memory_equal(s.src, s.dst, s.total);
    free(s.src);
    free(s.dst);
    close(s.sv[1]);
}

static void test_writev_many_iovecs_partial_writes(void **state)
{
    (void)state;
    writev_case(0);
    writev_case(1);
}

static void test_write_edge_cases(void **state)
{
    (void)state;
    int sv[2];
    unix_pair(sv);
    struct iovec empty[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    /* Nothing to write needs no fiber and no system call. */
    assert_int_equal(sp_writev(sv[0], empty, 3, 10), 0);
    assert_int_equal(sp_writev(sv[0], NULL, 0, 10), 0);
    assert_int_equal(sp_write(sv[0], "", 0, 10), 0);
    assert_int_equal(sp_write(-1, "x", 1, 10), -EBADF);
    char c;
    assert_int_equal(sp_read(-1, &c, 1, 10), -EBADF);
    close_pair(sv);
}

/* ---- sendfile --------------------------------------------------------------- */

struct sendf {
    int sv[2];
    int file;
    size_t size;
    off_t off;
    ssize_t rc, rc_past_end;
    unsigned char *got;
    size_t ngot;
};

static void sendfile_writer(void *arg)
{
    struct sendf *s = arg;
    s->off = 1000; /* from an offset, to the end */
    s->rc = sp_sendfile(s->sv[0], s->file, &s->off, s->size - 1000, 5000);
    /* Asking for more than the file holds is an error, not a hang. */
    off_t end = (off_t)s->size - 10;
    s->rc_past_end = sp_sendfile(s->sv[0], s->file, &end, 100, 1000);
    CHECK(sp_close(s->sv[0]) == 0);
}

static void sendfile_reader(void *arg)
{
    struct sendf *s = arg;
    for (;;) {
        ssize_t n = sp_read(s->sv[1], s->got + s->ngot, 65536, 5000);
        CHECK(n >= 0);
        if (n <= 0)
            break;
        s->ngot += (size_t)n;
    }
}

static void test_sendfile_bigger_than_socket_buffer(void **state)
{
    (void)state;
    static struct sendf s;
    memset(&s, 0, sizeof(s));
    char path[] = "/tmp/spindle-test-io-XXXXXX";
    s.file = mkstemp(path);
    assert_true(s.file >= 0);
    unlink(path);
    s.size = 4 << 20;
    unsigned char *data = malloc(s.size);
    assert_non_null(data);
    for (size_t k = 0; k < s.size; k++)
        data[k] = (unsigned char)(k ^ (k >> 9));
    assert_int_equal(write(s.file, data, s.size), s.size);
    s.got = malloc(s.size + 65536);
    assert_non_null(s.got);

    tcp_pair(s.sv);
    run_fibers(1, sendfile_writer, sendfile_reader, &s);
    assert_int_equal(s.rc, s.size - 1000);
    assert_int_equal(s.off, s.size);
    assert_int_equal(s.rc_past_end, -EIO);
    /* The 10 bytes before -EIO went out too. */
    assert_int_equal(s.ngot, s.size - 1000 + 10);
    assert_memory_equal(s.got, data + 1000, s.size - 1000);
    assert_memory_equal(s.got + s.size - 1000, data + s.size - 10, 10);
    free(data);
    free(s.got);
    close(s.file);
    close(s.sv[1]);
}

/* ---- accept and connect ---------------------------------------------------- */

struct acc {
    int lfd;
    struct sockaddr_in addr;
    int timeout_rc, accepted, connect_rc, refused_rc;
    char peer[64];
    int64_t t0;
};

static void accept_timeout(void *arg)
{
    struct acc *a = arg;
    int64_t t0 = now_ms();
    a->timeout_rc = sp_accept(a->lfd, NULL, NULL, 50);
    WITHIN(t0, 50);
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    a->accepted = sp_accept(a->lfd, (struct sockaddr *)&peer, &len, 2000);
    if (a->accepted >= 0) {
        sp_net_format((struct sockaddr *)&peer, a->peer, sizeof(a->peer));
        int fl = fcntl(a->accepted, F_GETFL);
        int fdfl = fcntl(a->accepted, F_GETFD);
        CHECK(fl & O_NONBLOCK);
        CHECK(fdfl & FD_CLOEXEC);
        CHECK(sp_write(a->accepted, "hi", 2, 1000) == 2);
        sp_close(a->accepted);
    }
}

static void late_connect(void *arg)
{
    struct acc *a = arg;
    sp_sleep(80); /* after the first accept has timed out */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    a->connect_rc = sp_connect(fd, (struct sockaddr *)&a->addr, sizeof(a->addr), 2000);
    char buf[2];
    CHECK(sp_read(fd, buf, 2, 2000) == 2);
    sp_close(fd);
}

static void test_accept_and_connect(void **state)
{
    (void)state;
    struct acc a = {.timeout_rc = 1, .accepted = -1, .connect_rc = 1};
    a.lfd = loopback_listener(&a.addr);
    run_fibers(1, accept_timeout, late_connect, &a);
    close(a.lfd);
    assert_int_equal(a.timeout_rc, -ETIMEDOUT);
    assert_true(a.accepted >= 0);
    assert_int_equal(a.connect_rc, 0);
    assert_true(strncmp(a.peer, "127.0.0.1:", 10) == 0);
}

static void connect_refused(void *arg)
{
    struct acc *a = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    a->refused_rc = sp_connect(fd, (struct sockaddr *)&a->addr, sizeof(a->addr), 2000);
    sp_close(fd);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct acc a = {.refused_rc = 1};
    /* A port that was just free: bind, learn the number, close. */
    int lfd = loopback_listener(&a.addr);
    close(lfd);
    run_fibers(1, connect_refused, NULL, &a);
    assert_int_equal(a.refused_rc, -ECONNREFUSED);
}

struct pending {
    struct sockaddr_in addr;
    int lfd;
    int connect_rc, accept_rc, accept_again;
    int64_t t0;
};

static void connect_to_full_backlog(void *arg)
{
    struct pending *p = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    int64_t t0 = now_ms();
    p->connect_rc = sp_connect(fd, (struct sockaddr *)&p->addr, sizeof(p->addr), 100);
    WITHIN(t0, 100);
    sp_close(fd);
}

/* A listener whose accept queue is full drops new SYNs: sp_connect gives up at its timeout. */
static void test_connect_timeout(void **state)
{
    (void)state;
    struct pending p = {.connect_rc = 1};
    p.lfd = loopback_listener(&p.addr);
    assert_int_equal(listen(p.lfd, 0), 0); /* the smallest queue */
    int queued[4], n = 0;
    for (; n < 4; n++) {
        queued[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(queued[n] >= 0);
        int rc = connect(queued[n], (struct sockaddr *)&p.addr, sizeof(p.addr));
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    usleep(20000); /* let the handshakes that can complete, complete */
    run_fibers(1, connect_to_full_backlog, NULL, &p);
    assert_int_equal(p.connect_rc, -ETIMEDOUT);
    for (int i = 0; i < n; i++)
        close(queued[i]);
    close(p.lfd);
}

static void accept_out_of_fds(void *arg)
{
    struct pending *p = arg;
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int next = dup(0); /* the number the accepted socket would get */
    close(next);
    low = old;
    low.rlim_cur = (rlim_t)next;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    p->accept_rc = sp_accept(p->lfd, NULL, NULL, 1000);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    /* The connection stayed queued: once descriptors are back it is there. */
    p->accept_again = sp_accept(p->lfd, NULL, NULL, 1000);
    if (p->accept_again >= 0)
        sp_close(p->accept_again);
}

/* Out of descriptors, sp_accept reports it rather than parking on a listener that stays ready. */
static void test_accept_emfile(void **state)
{
    (void)state;
    if (RUNNING_ON_VALGRIND) {
        SKIP("valgrind keeps descriptors of its own");
    }
    struct pending p = {.accept_rc = 1, .accept_again = -1};
    p.lfd = loopback_listener(&p.addr);
    int cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cli >= 0);
    assert_int_equal(connect(cli, (struct sockaddr *)&p.addr, sizeof(p.addr)), 0);
    run_fibers(1, accept_out_of_fds, NULL, &p);
    assert_int_equal(p.accept_rc, -EMFILE);
    assert_true(p.accept_again >= 0);
    close(cli);
    close(p.lfd);
}

static void test_net_helpers(void **state)
{
    (void)state;
    char buf[64];
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(8080)};
    a6.sin6_addr = in6addr_loopback;
    assert_string_equal(sp_net_format((struct sockaddr *)&a6, buf, sizeof(buf)), "[::1]:8080");
    assert_int_equal(sp_net_addrlen((struct sockaddr *)&a6), sizeof(a6));
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(80)};
    a4.sin_addr.s_addr = htonl(0x7f000001);
    assert_string_equal(sp_net_format((struct sockaddr *)&a4, buf, sizeof(buf)), "127.0.0.1:80");
    assert_int_equal(sp_net_addrlen((struct sockaddr *)&a4), sizeof(a4));

    /* Two listeners on one port only with SO_REUSEPORT. */
    int l1 = loopback_listener(&a4);
    assert_int_equal(sp_net_listen((struct sockaddr *)&a4, sizeof(a4), 16, 0), -EADDRINUSE);
    close(l1);
    l1 = sp_net_listen((struct sockaddr *)&a4, sizeof(a4), 16, 1);
    assert_true(l1 >= 0);
    int l2 = sp_net_listen((struct sockaddr *)&a4, sizeof(a4), 16, 1);
    assert_true(l2 >= 0);
    assert_true(fcntl(l1, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(l1, F_GETFD) & FD_CLOEXEC);
    close(l1);
    close(l2);

    /* TCP_NODELAY set on a listener comes with every socket it accepts: the
     * worker sets it once per listener instead of once per connection. */
    l1 = loopback_listener(&a4);
    assert_int_equal(sp_net_set_nodelay(l1), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&a4, sizeof(a4)), 0);
    int s = accept4(l1, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    int nodelay = 0;
    socklen_t optlen = sizeof(nodelay);
    assert_int_equal(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, &optlen), 0);
    assert_int_equal(nodelay, 1);
    close(s);
    close(c);
    close(l1);

    /* IPv6 listeners take IPv6 only. */
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
    any6.sin6_addr = in6addr_loopback;
    int l6 = sp_net_listen((struct sockaddr *)&any6, sizeof(any6), 16, 0);
    if (l6 == -EAFNOSUPPORT || l6 == -EADDRNOTAVAIL)
        SKIP("no IPv6 loopback here");
    assert_true(l6 >= 0);
    int v6only = 0;
    socklen_t len = sizeof(v6only);
    assert_int_equal(getsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
    assert_int_equal(v6only, 1);
    close(l6);
}

/* ---- the fd is closed and its number reused during a call ------------------ */

/*
 * A reads old[0].  B wakes it, and before A runs again closes old[0] and
 * opens a socket pair that gets the same number.  A's call was made on the
 * old socket: it must end with -ECANCELED, not park on B's new socket and
 * take the byte B sends itself there.
 */
struct reuse {
    int old[2], fresh[2];
    int old_fd;
    ssize_t a_rc, b_rc;
    int64_t t0, a_at;
    char a_buf[4], b_buf[4];
};

static void reuse_reader(void *arg)
{
    struct reuse *r = arg;
    r->a_rc = sp_read(r->old[0], r->a_buf, sizeof(r->a_buf), 1000);
    r->a_at = now_ms();
}

static void reuse_closer(void *arg)
{
    struct reuse *r = arg;
    sp_sleep(10); /* A is parked */
    CHECK(write(r->old[1], "x", 1) == 1);
    sp_yield(); /* the loop sees the event and queues A behind us */
    char c;
    CHECK(read(r->old[0], &c, 1) == 1); /* A will find nothing */
    r->t0 = now_ms();
    CHECK(sp_close(r->old[0]) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->fresh) == 0);
    CHECK(r->fresh[0] == r->old_fd); /* the number is reused */
    sp_yield();                      /* A runs */
    CHECK(write(r->fresh[1], "n", 1) == 1);
    sp_sleep(20);
    r->b_rc = sp_read(r->fresh[0], r->b_buf, sizeof(r->b_buf), 100);
    sp_close(r->fresh[0]);
}

static void test_park_after_fd_reuse(void **state)
{
    (void)state;
    struct reuse r = {.a_rc = 1};
    unix_pair(r.old);
    r.old_fd = r.old[0];
    run_fibers(1, reuse_reader, reuse_closer, &r);
    assert_int_equal(r.fresh[0], r.old_fd);
    assert_int_equal(r.a_rc, -ECANCELED); /* not B's byte, nor a timeout */
    assert_true(r.a_at - r.t0 < slack_ms());
    assert_int_equal(r.b_rc, 1); /* B's own byte is B's */
    assert_int_equal(r.b_buf[0], 'n');
    close(r.old[1]);
    close(r.fresh[1]);
}

/* ---- an idle pooled connection ----------------------------------------- */

struct idle {
    int sv[2], after_read, cached, stray, eof, unregistered_eof;
};

static void idle_checker(void *arg)
{
    struct idle *d = arg;
    char buf[16];
    CHECK(write(d->sv[1], "abc", 3) == 3);
    sp_sleep(10); /* the answer arrives before we read: readiness cached */
    CHECK(sp_read(d->sv[0], buf, sizeof(buf), 1000) == 3);
    d->after_read = sp_idle_quiet(d->sv[0]); /* looks: nothing more */
    CHECK(write(d->sv[1], "x", 1) == 1);
    /* Not looked at again: the scheduler has not seen the byte yet. */
    d->cached = sp_idle_quiet(d->sv[0]);
    sp_sleep(10);
    d->stray = sp_idle_quiet(d->sv[0]); /* the event came: a stray byte */
    CHECK(sp_read(d->sv[0], buf, sizeof(buf), 1000) == 1);
    CHECK(shutdown(d->sv[1], SHUT_WR) == 0);
    sp_sleep(10);
    d->eof = sp_idle_quiet(d->sv[0]);
    sp_close(d->sv[0]);
    sp_close(d->sv[1]);

    /* Never registered, the peer already gone: the look sees it. */
    tcp_pair(d->sv);
    CHECK(close(d->sv[1]) == 0);
    sp_sleep(10);
    d->unregistered_eof = sp_idle_quiet(d->sv[0]);
    sp_close(d->sv[0]);
}

static void test_idle_quiet(void **state)
{
    (void)state;
    struct idle d = {.after_read = -1, .cached = -1, .stray = -1, .eof = -1};
    d.unregistered_eof = -1;
    tcp_pair(d.sv);
    run_fibers(1, idle_checker, NULL, &d);
    assert_int_equal(d.after_read, 1);
    assert_int_equal(d.cached, 1);
    assert_int_equal(d.stray, 0);
    assert_int_equal(d.eof, 0);
    assert_int_equal(d.unregistered_eof, 0);
}

/* ---- sp_try_read: a short read drains -------------------------------- */

struct drain {
    int sv[2];
    ssize_t first, unseen, seen, full, after_full, eof, eof_again;
};

static void drainer(void *arg)
{
    struct drain *d = arg;
    char buf[16];
    CHECK(write(d->sv[1], "abc", 3) == 3);
    CHECK(sp_wait(d->sv[0], SP_IO_READ, 1000) == 0);    /* registered, the event seen */
    d->first = sp_try_read(d->sv[0], buf, sizeof(buf)); /* short: drained */
    CHECK(write(d->sv[1], "d", 1) == 1);
    /* No event handled since: answered without a read. */
    d->unseen = sp_try_read(d->sv[0], buf, sizeof(buf));
    sp_sleep(10);
    d->seen = sp_try_read(d->sv[0], buf, sizeof(buf));
    /* A read that fills the buffer proves nothing: the next one reads. */
    CHECK(write(d->sv[1], "efgh", 4) == 4);
    sp_sleep(10);
    d->full = sp_try_read(d->sv[0], buf, 4);
    CHECK(write(d->sv[1], "i", 1) == 1);
    d->after_full = sp_try_read(d->sv[0], buf, sizeof(buf));
    CHECK(shutdown(d->sv[1], SHUT_WR) == 0);
    sp_sleep(10);
    d->eof = sp_try_read(d->sv[0], buf, sizeof(buf));
    d->eof_again = sp_try_read(d->sv[0], buf, sizeof(buf));
    sp_close(d->sv[0]);
    sp_close(d->sv[1]);
}

static void test_try_read_after_a_short_read(void **state)
{
    (void)state;
    struct drain d = {.first = -1};
    tcp_pair(d.sv);
    run_fibers(1, drainer, NULL, &d);
    assert_int_equal(d.first, 3);
    assert_int_equal(d.unseen, -EAGAIN);
    assert_int_equal(d.seen, 1);
    assert_int_equal(d.full, 4);
    assert_int_equal(d.after_full, 1);
    assert_int_equal(d.eof, 0);
    assert_int_equal(d.eof_again, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        RT_TEST(test_peer_reset),
        RT_TEST(test_write_to_closed_peer),
        RT_TEST(test_write_timeout),
        RT_TEST(test_write_timeout_counts_from_progress),
        RT_TEST(test_writev_many_iovecs_partial_writes),
        RT_TEST(test_write_edge_cases),
        RT_TEST(test_sendfile_bigger_than_socket_buffer),
        RT_TEST(test_accept_and_connect),
        RT_TEST(test_connect_refused),
        RT_TEST(test_connect_timeout),
        RT_TEST(test_accept_emfile),
        RT_TEST(test_net_helpers),
        RT_TEST(test_park_after_fd_reuse),
        RT_TEST(test_idle_quiet),
        RT_TEST(test_try_read_after_a_short_read),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
