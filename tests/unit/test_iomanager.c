/*
 * IOManager in single-thread mode: readiness, timeouts, sleeps, close and fd
 * reuse, watches, stop, the fairness budget.  Multi-thread mode is in
 * test_iomanager_mt.c.
 */
#include "config.h" /* first: it selects the system extensions (accept4) */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "runtime_test.h"

/* ---- run, readiness ----------------------------------------------------- */

static void sleeper(void *arg)
{
    CHECK(sp_sleep(*(int *)arg) == 0);
}

static void test_run_returns_when_nothing_is_left(void **state)
{
    (void)state;
    struct sp_iom *iom = new_iom(1);
    int64_t t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0); /* nothing at all */
    assert_true(now_ms() - t0 < slack_ms());
    assert_null(sp_iom_current());

    int ms = 30;
    assert_int_equal(sp_iom_spawn(iom, sleeper, &ms), 0);
    t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    int64_t took = now_ms() - t0;
    assert_true(took >= ms && took < ms + slack_ms());
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    assert_int_equal(st.fibers_live, 0);
    assert_int_equal(st.fibers_pooled, 1);
    assert_int_equal(st.timers, 0);
    sp_iom_free(iom);
    sp_iom_free(NULL);
}

struct rw {
    int fd[2];
    char order[8];
    atomic_int n;
    int64_t t0, read_at;
    ssize_t got;
    char buf[16];
};

static void note(struct rw *rw, char c)
{
    rw->order[atomic_fetch_add(&rw->n, 1)] = c;
}

static void parked_reader(void *arg)
{
    struct rw *rw = arg;
    note(rw, 'r');
    rw->got = sp_read(rw->fd[0], rw->buf, sizeof(rw->buf), -1);
    rw->read_at = now_ms();
    note(rw, 'R');
}

static void late_writer(void *arg)
{
    struct rw *rw = arg;
    sp_sleep(30);
    note(rw, 'W');
    CHECK(sp_write(rw->fd[1], "hello", 5, -1) == 5);
}

static void test_reader_parks_until_data(void **state)
{
    (void)state;
    struct rw rw = {0};
    unix_pair(rw.fd);
    struct sp_iom *iom = new_iom(1);
    rw.t0 = now_ms();
    assert_int_equal(sp_iom_spawn(iom, parked_reader, &rw), 0);
    assert_int_equal(sp_iom_spawn(iom, late_writer, &rw), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_string_equal(rw.order, "rWR");
    assert_int_equal(rw.got, 5);
    assert_memory_equal(rw.buf, "hello", 5);
    assert_true(rw.read_at - rw.t0 >= 30);
    close(rw.fd[0]);
    close(rw.fd[1]);
}

struct tcp {
    int lfd;
    struct sockaddr_in addr;
    char server_got[8], client_got[8];
    int accepted;
};

static void tcp_server(void *arg)
{
    struct tcp *t = arg;
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    int c = sp_accept(t->lfd, (struct sockaddr *)&peer, &len, 2000);
    CHECK(c >= 0);
    if (c < 0)
        return;
    t->accepted = 1;
    CHECK(peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(read_full(c, t->server_got, 4, 2000) == 4);
    CHECK(sp_write(c, "pong", 4, 2000) == 4);
    sp_close(c);
}

static void tcp_client(void *arg)
{
    struct tcp *t = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(sp_connect(fd, (struct sockaddr *)&t->addr, sizeof(t->addr), 2000) == 0);
    sp_sleep(20); /* the server is parked in sp_read by now */
    CHECK(sp_write(fd, "ping", 4, 2000) == 4);
    CHECK(read_full(fd, t->client_got, 4, 2000) == 4);
    char more;
    CHECK(sp_read(fd, &more, 1, 2000) == 0); /* the server closed */
    sp_close(fd);
}

static void test_tcp_loopback(void **state)
{
    (void)state;
    struct tcp t = {0};
    t.lfd = loopback_listener(&t.addr);
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, tcp_server, &t), 0);
    assert_int_equal(sp_iom_spawn(iom, tcp_client, &t), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    close(t.lfd);
    assert_true(t.accepted);
    assert_memory_equal(t.server_got, "ping", 4);
    assert_memory_equal(t.client_got, "pong", 4);
}

/* ---- timeouts and sleeps --------------------------------------------------- */

static void timeouts_fn(void *arg)
{
    int *sv = arg;
    char c;
    int64_t t0 = now_ms();
    CHECK(sp_read(sv[0], &c, 1, 50) == -ETIMEDOUT);
    WITHIN(t0, 50);
    t0 = now_ms();
    CHECK(sp_wait(sv[0], SP_IO_READ, 30) == -ETIMEDOUT);
    WITHIN(t0, 30);
    t0 = now_ms();
    CHECK(sp_read(sv[0], &c, 1, 0) == -ETIMEDOUT);
    WITHIN(t0, 0);
    fill(sv[0]);
    /* "Writable", if it was cached before fill() wrote around the IOManager,
     * may end one wait at once, like any edge-triggered wake-up; not two. */
    t0 = now_ms();
    int rc = sp_wait(sv[0], SP_IO_WRITE, 30);
    if (rc == 0) {
        t0 = now_ms();
        rc = sp_wait(sv[0], SP_IO_WRITE, 30);
    }
    CHECK(rc == -ETIMEDOUT);
    WITHIN(t0, 30);

    /* Data before the deadline: the read returns it and its timer is gone. */
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(sp_read(sv[0], &c, 1, 1000) == 1);
    struct sp_iom_stats st;
    sp_iom_stats(sp_iom_current(), &st);
    CHECK(st.timers == 0);
}

static void test_timeouts(void **state)
{
    (void)state;
    int sv[2];
    unix_pair(sv);
    run_fibers(1, timeouts_fn, NULL, sv);
    close(sv[0]);
    close(sv[1]);
}

struct sleep_order {
    int ms[5];
    int woke[5];
    int n;
    int64_t t0;
};

struct sleep_arg {
    struct sleep_order *so;
    int id;
};

static void ordered_sleeper(void *arg)
{
    struct sleep_arg *a = arg;
    CHECK(sp_sleep(a->so->ms[a->id]) == 0);
    WITHIN(a->so->t0, a->so->ms[a->id]);
    a->so->woke[a->so->n++] = a->id;
}

static void test_sleep_order(void **state)
{
    (void)state;
    struct sleep_order so = {.ms = {40, 10, 30, 0, 20}};
    struct sleep_arg args[5];
    struct sp_iom *iom = new_iom(1);
    for (int i = 0; i < 5; i++) {
        args[i] = (struct sleep_arg){&so, i};
        assert_int_equal(sp_iom_spawn(iom, ordered_sleeper, &args[i]), 0);
    }
    so.t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    int want[] = {3, 1, 4, 2, 0};
    assert_int_equal(so.n, 5);
    assert_memory_equal(so.woke, want, sizeof(want));
}

/* ---- close and fd reuse ---------------------------------------------------- */

struct closing {
    int fd;
    ssize_t read_rc, write_rc;
    int64_t t0, read_at, write_at;
};

static void closing_reader(void *arg)
{
    struct closing *c = arg;
    char b;
    c->read_rc = sp_read(c->fd, &b, 1, 5000);
    c->read_at = now_ms();
}

static void closing_writer(void *arg)
{
    struct closing *c = arg;
    static char big[1 << 20];
    c->write_rc = sp_write(c->fd, big, sizeof(big), 5000);
    c->write_at = now_ms();
}

static void closer(void *arg)
{
    struct closing *c = arg;
    sp_sleep(30);
    CHECK(sp_close(c->fd) == 0);
}

static void test_close_wakes_reader_and_writer(void **state)
{
    (void)state;
    int sv[2];
    unix_pair(sv);
    fill(sv[0]);
    struct closing c = {.fd = sv[0], .read_rc = 1, .write_rc = 1};
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, closing_reader, &c), 0);
    assert_int_equal(sp_iom_spawn(iom, closing_writer, &c), 0);
    assert_int_equal(sp_iom_spawn(iom, closer, &c), 0);
    c.t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    close(sv[1]);
    assert_int_equal(c.read_rc, -ECANCELED);
    assert_int_equal(c.write_rc, -ECANCELED);
    /* Woken by the close, not by their 5 s timeouts. */
    assert_true(c.read_at - c.t0 >= 30 && c.read_at - c.t0 < 30 + slack_ms());
    assert_true(c.write_at - c.t0 >= 30 && c.write_at - c.t0 < 30 + slack_ms());
}

struct reuse {
    int old_fd, new_fd[2];
    int wait_rc;
    ssize_t read_rc;
    int64_t t0, read_at;
    char buf[4];
};

static void reuse_writer(void *arg)
{
    struct reuse *r = arg;
    sp_sleep(60);
    CHECK(sp_write(r->new_fd[1], "new", 3, 1000) == 3);
}

/* On the new socket that got the old one's number: a wait that sees nothing
 * for 40 ms, then the writer's bytes 60 ms later (checked by run_reuse). */
static void reuse_read_new(struct reuse *r)
{
    int64_t t0 = now_ms();
    r->wait_rc = sp_wait(r->new_fd[0], SP_IO_READ, 40);
    WITHIN(t0, 40);
    CHECK(sp_iom_spawn(sp_iom_current(), reuse_writer, r) == 0);
    r->t0 = now_ms();
    r->read_rc = sp_read(r->new_fd[0], r->buf, sizeof(r->buf), 2000);
    r->read_at = now_ms();
}

static void reuse_fn(void *arg)
{
    struct reuse *r = arg;
    int a[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) == 0);
    char c;
    /* The IOManager knows a[0] (it parked a reader on it)... */
    CHECK(sp_read(a[0], &c, 1, 10) == -ETIMEDOUT);
    /* ...and sees it turn readable while nobody waits. */
    CHECK(write(a[1], "old", 3) == 3);
    sp_sleep(10);
    r->old_fd = a[0];
    CHECK(sp_close(a[0]) == 0);
    CHECK(sp_close(a[1]) == 0);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->new_fd) == 0);
    CHECK(r->new_fd[0] == r->old_fd); /* the number came back */
    /* Nothing was ever written to the new socket: the old readiness must not show. */
    reuse_read_new(r);
}

static void run_reuse(sp_fiber_fn *fn)
{
    struct reuse r = {.wait_rc = 1};
    run_fibers(1, fn, NULL, &r);
    assert_int_equal(r.wait_rc, -ETIMEDOUT);
    assert_int_equal(r.read_rc, 3);
    assert_memory_equal(r.buf, "new", 3);
    assert_true(r.read_at - r.t0 >= 60);
    close(r.new_fd[0]);
    close(r.new_fd[1]);
}

static void test_fd_reuse_after_close(void **state)
{
    (void)state;
    run_reuse(reuse_fn);
}

/* sp_close() leaves the poller registration to the close, which ends it
 * unless another descriptor keeps the file open.  Here one does (a dup): what
 * the old file reports afterwards must reach nobody, not even the new socket
 * that got its number. */
static void dup_fn(void *arg)
{
    struct reuse *r = arg;
    int a[2];
    char c;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) == 0);
    CHECK(sp_read(a[0], &c, 1, 10) == -ETIMEDOUT); /* registered */
    int copy = dup(a[0]);
    CHECK(copy >= 0);
    r->old_fd = a[0];
    CHECK(sp_close(a[0]) == 0);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->new_fd) == 0);
    CHECK(r->new_fd[0] == r->old_fd);
    CHECK(sp_read(r->new_fd[0], &c, 1, 10) == -ETIMEDOUT); /* registered in turn */
    CHECK(write(a[1], "old", 3) == 3);                     /* the old file turns readable */
    reuse_read_new(r);
    CHECK(read(copy, &c, 1) == 1 && c == 'o'); /* the old bytes stayed with the old file */
    close(copy);
    close(a[1]);
}

static void test_close_with_a_dup_alive(void **state)
{
    (void)state;
    run_reuse(dup_fn);
}

struct between {
    int fd[2], parked[2];
    ssize_t rc, parked_rc;
    int64_t t0, read_at;
    char buf[4];
};

static void between_probe(void *arg)
{
    struct between *b = arg;
    char c;
    CHECK(sp_read(b->fd[0], &c, 1, 10) == -ETIMEDOUT); /* the IOManager now knows fd[0] */
}

static void between_parked(void *arg)
{
    struct between *b = arg;
    char c;
    b->parked_rc = sp_read(b->parked[0], &c, 1, -1);
}

static void between_stop(void *arg)
{
    (void)arg;
    sp_sleep(10);
    sp_iom_stop(sp_iom_current());
}

static void between_reader(void *arg)
{
    struct between *b = arg;
    b->t0 = now_ms();
    b->rc = sp_read(b->fd[0], b->buf, sizeof(b->buf), 2000);
    b->read_at = now_ms();
}

static void between_writer(void *arg)
{
    struct between *b = arg;
    sp_sleep(20);
    CHECK(write(b->fd[1], "abc", 3) == 3);
}

/* sp_close() between two runs, on the thread that runs the loop, must do what
 * it does on a fiber: wake the fibers parked on the fd and forget it, so that
 * the next socket with that number is a new one. */
static void test_close_between_runs(void **state)
{
    (void)state;
    struct between b = {.rc = 1, .parked_rc = 1};
    unix_pair(b.fd);
    unix_pair(b.parked);
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, between_probe, &b), 0);
    assert_int_equal(sp_iom_spawn(iom, between_parked, &b), 0);
    assert_int_equal(sp_iom_spawn(iom, between_stop, &b), 0);
    assert_int_equal(sp_iom_run(iom), 0); /* stopped with a fiber parked */
    assert_int_equal(b.parked_rc, 1);
    assert_int_equal(sp_close(b.parked[0]), 0);
    int old = b.fd[0];
    assert_int_equal(sp_close(b.fd[0]), 0);
    assert_int_equal(sp_close(b.fd[1]), 0);
    unix_pair(b.fd);
    assert_int_equal(b.fd[0], old);
    assert_int_equal(sp_iom_spawn(iom, between_reader, &b), 0);
    assert_int_equal(sp_iom_spawn(iom, between_writer, &b), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_int_equal(b.parked_rc, -ECANCELED);
    assert_int_equal(b.rc, 3);
    assert_true(b.read_at - b.t0 < 20 + slack_ms());
    close(b.fd[0]);
    close(b.fd[1]);
    close(b.parked[1]);
}

/* ---- watches --------------------------------------------------------------- */

struct watched {
    int fd[2];
    atomic_int calls;
    int status, cb_fd, on_fiber;
    int64_t t0, fired_at;
    ssize_t got;
    char buf[8];
};

static void watch_cb(int fd, int status, void *arg)
{
    struct watched *w = arg;
    atomic_fetch_add(&w->calls, 1);
    w->status = status;
    w->cb_fd = fd;
    w->on_fiber = sp_fiber_current() != NULL;
    w->fired_at = now_ms();
    if (status == 0)
        w->got = sp_read(fd, w->buf, sizeof(w->buf), 100);
}

static void write_later(void *arg)
{
    struct watched *w = arg;
    sp_sleep(30);
    CHECK(write(w->fd[1], "data", 4) == 4);
}

static void close_later(void *arg)
{
    struct watched *w = arg;
    sp_sleep(30);
    CHECK(sp_close(w->fd[0]) == 0);
}

/* Watches w->fd[0] from outside the loop, runs extra(w) beside it, returns stats seen before. */
static void run_watch(struct watched *w, int64_t timeout_ms, sp_fiber_fn *extra)
{
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_watch(iom, w->fd[0], timeout_ms, watch_cb, w), 0);
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    assert_int_equal(st.watches, 1);
    assert_int_equal(st.fibers_live, 0); /* a watch holds no fiber */
    if (extra)
        assert_int_equal(sp_iom_spawn(iom, extra, w), 0);
    w->t0 = now_ms();
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_stats(iom, &st);
    assert_int_equal(st.watches, 0);
    assert_int_equal(st.timers, 0);
    assert_int_equal(st.fibers_live, 0);
    sp_iom_free(iom);
    assert_int_equal(atomic_load(&w->calls), 1);
    assert_true(w->on_fiber);
}

static void test_watch_fires_on_data(void **state)
{
    (void)state;
    struct watched w = {0};
    unix_pair(w.fd);
    run_watch(&w, 5000, write_later);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.cb_fd, w.fd[0]);
    assert_int_equal(w.got, 4);
    assert_memory_equal(w.buf, "data", 4);
    assert_true(w.fired_at - w.t0 >= 30 && w.fired_at - w.t0 < 30 + slack_ms());

    /* Bytes already there when the watch starts count too. */
    struct watched w2 = {0};
    unix_pair(w2.fd);
    assert_int_equal(write(w2.fd[1], "early", 5), 5);
    run_watch(&w2, 5000, NULL);
    assert_int_equal(w2.status, 0);
    assert_int_equal(w2.got, 5);
    assert_true(w2.fired_at - w2.t0 < slack_ms());
    for (int i = 0; i < 2; i++) {
        close(w.fd[i]);
        close(w2.fd[i]);
    }
}

static void test_watch_times_out(void **state)
{
    (void)state;
    struct watched w = {0};
    unix_pair(w.fd);
    run_watch(&w, 40, NULL);
    assert_int_equal(w.status, -ETIMEDOUT);
    assert_true(w.fired_at - w.t0 >= 40 && w.fired_at - w.t0 < 40 + slack_ms());
    close(w.fd[0]);
    close(w.fd[1]);
}

static void test_watch_cancelled_by_close(void **state)
{
    (void)state;
    struct watched w = {0};
    unix_pair(w.fd);
    int fd = w.fd[0];
    run_watch(&w, -1, close_later);
    assert_int_equal(w.status, -ECANCELED);
    assert_int_equal(w.cb_fd, fd);
    assert_true(w.fired_at - w.t0 >= 30 && w.fired_at - w.t0 < 30 + slack_ms());
    close(w.fd[1]);
}

/* Readiness the IOManager saw while nobody waited must wake a watch that starts later. */
static void watch_after_unclaimed_event(void *arg)
{
    struct watched *w = arg;
    char c;
    CHECK(sp_read(w->fd[0], &c, 1, 10) == -ETIMEDOUT); /* registers the fd */
    CHECK(write(w->fd[1], "late", 4) == 4);
    sp_sleep(20); /* the loop sees the event with no waiter */
    w->t0 = now_ms();
    CHECK(sp_iom_watch(sp_iom_current(), w->fd[0], 2000, watch_cb, w) == 0);
}

/* sp_try_read that empties the socket: the watch that follows must not wake for old bytes. */
static void watch_after_try_read(void *arg)
{
    struct watched *w = arg;
    char buf[16];
    CHECK(sp_read(w->fd[0], buf, 1, 10) == -ETIMEDOUT);
    CHECK(write(w->fd[1], "abc", 3) == 3);
    sp_sleep(20);
    CHECK(sp_try_read(w->fd[0], buf, sizeof(buf)) == 3); /* a short read: nothing left */
    w->t0 = now_ms();
    CHECK(sp_iom_watch(sp_iom_current(), w->fd[0], 50, watch_cb, w) == 0);
}

static void test_watch_and_cached_readiness(void **state)
{
    (void)state;
    struct watched w = {0};
    unix_pair(w.fd);
    run_fibers(1, watch_after_unclaimed_event, NULL, &w);
    assert_int_equal(atomic_load(&w.calls), 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.got, 4);
    assert_true(w.fired_at - w.t0 < slack_ms());

    struct watched w2 = {0};
    unix_pair(w2.fd);
    run_fibers(1, watch_after_try_read, NULL, &w2);
    assert_int_equal(atomic_load(&w2.calls), 1);
    assert_int_equal(w2.status, -ETIMEDOUT);
    assert_true(w2.fired_at - w2.t0 >= 50);
    for (int i = 0; i < 2; i++) {
        close(w.fd[i]);
        close(w2.fd[i]);
    }
    char c;
    assert_int_equal(sp_try_read(w.fd[0], &c, 1), -EBADF);
}

/* The peer's data and FIN arrive together while nobody waits; a short
 * sp_try_read takes the data.  The end of stream is still unread: a watch or
 * a read wait that starts now must not wait for an event that already came. */
struct after_fin {
    struct watched w;
    int wait_rc;
    int64_t wait_took;
};

static void watch_after_fin(void *arg)
{
    struct after_fin *a = arg;
    struct watched *w = &a->w;
    char buf[16];
    CHECK(sp_read(w->fd[0], buf, 1, 10) == -ETIMEDOUT); /* registers the fd */
    CHECK(write(w->fd[1], "abc", 3) == 3);
    CHECK(shutdown(w->fd[1], SHUT_WR) == 0);
    sp_sleep(20); /* the loop sees the event with no waiter */
    CHECK(sp_try_read(w->fd[0], buf, sizeof(buf)) == 3); /* short: the caller may watch now */
    int64_t t0 = now_ms();
    a->wait_rc = sp_wait(w->fd[0], SP_IO_READ, 2000);
    a->wait_took = now_ms() - t0;
    w->t0 = now_ms();
    CHECK(sp_iom_watch(sp_iom_current(), w->fd[0], 2000, watch_cb, w) == 0);
}

static void test_watch_after_fin_fires_at_once(void **state)
{
    (void)state;
    for (unsigned threads = 1; threads <= 2; threads++) {
        struct after_fin a = {0};
        unix_pair(a.w.fd);
        run_fibers(threads, watch_after_fin, NULL, &a);
        assert_int_equal(a.wait_rc, 0);
        assert_true(a.wait_took < slack_ms());
        assert_int_equal(atomic_load(&a.w.calls), 1);
        assert_int_equal(a.w.status, 0);
        assert_int_equal(a.w.got, 0); /* end of stream */
        assert_true(a.w.fired_at - a.w.t0 < slack_ms());
        close_pair(a.w.fd);
    }
}

struct busy {
    int a[2], b[2];
    struct watched wa;
    ssize_t reader_rc, watched_read_rc;
};

static void busy_reader(void *arg)
{
    struct busy *b = arg;
    char c;
    b->reader_rc = sp_read(b->b[0], &c, 1, 5000);
}

static void busy_checker(void *arg)
{
    struct busy *b = arg;
    struct sp_iom *iom = sp_iom_current();
    /* A second watch on a watched fd. */
    CHECK(sp_iom_watch(iom, b->a[0], -1, watch_cb, &b->wa) == -EBUSY);
    /* A fiber reading a watched fd. */
    char c;
    b->watched_read_rc = sp_read(b->a[0], &c, 1, 1000);
    /* A watch on an fd a fiber reads. */
    CHECK(sp_iom_watch(iom, b->b[0], -1, watch_cb, &b->wa) == -EBUSY);
    CHECK(sp_iom_watch(iom, -1, -1, watch_cb, &b->wa) == -EBADF);
    sp_close(b->a[0]); /* ends the watch */
    sp_close(b->b[0]); /* ends the reader */
}

static void test_watch_busy(void **state)
{
    (void)state;
    struct busy b = {0};
    unix_pair(b.a);
    unix_pair(b.b);
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_watch(iom, b.a[0], -1, watch_cb, &b.wa), 0);
    assert_int_equal(sp_iom_watch(iom, b.a[0], -1, watch_cb, &b.wa), -EBUSY);
    assert_int_equal(sp_iom_spawn(iom, busy_reader, &b), 0);
    assert_int_equal(sp_iom_spawn(iom, busy_checker, &b), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_int_equal(b.watched_read_rc, -EBUSY);
    assert_int_equal(b.reader_rc, -ECANCELED);
    assert_int_equal(atomic_load(&b.wa.calls), 1);
    assert_int_equal(b.wa.status, -ECANCELED);
    close(b.a[1]);
    close(b.b[1]);
}

#define NWATCH 100

struct many_watches {
    int fd[NWATCH][2];
    struct watched w[NWATCH];
    unsigned live_while_waiting, watches_while_waiting;
};

static void watch_monitor(void *arg)
{
    struct many_watches *m = arg;
    sp_sleep(10);
    struct sp_iom_stats st;
    sp_iom_stats(sp_iom_current(), &st);
    m->live_while_waiting = st.fibers_live;
    m->watches_while_waiting = st.watches;
    for (int i = 0; i < NWATCH; i++)
        CHECK(write(m->fd[i][1], "x", 1) == 1);
}

static void test_watches_hold_no_fiber(void **state)
{
    (void)state;
    static struct many_watches m;
    memset(&m, 0, sizeof(m));
    struct sp_iom *iom = new_iom(1);
    for (int i = 0; i < NWATCH; i++) {
        unix_pair(m.fd[i]);
        m.w[i].fd[0] = m.fd[i][0];
        assert_int_equal(sp_iom_watch(iom, m.fd[i][0], 5000, watch_cb, &m.w[i]), 0);
    }
    assert_int_equal(sp_iom_spawn(iom, watch_monitor, &m), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    sp_iom_free(iom);
    assert_int_equal(m.live_while_waiting, 1); /* the monitor itself */
    assert_int_equal(m.watches_while_waiting, NWATCH);
    assert_int_equal(st.watches, 0);
    for (int i = 0; i < NWATCH; i++) {
        assert_int_equal(atomic_load(&m.w[i].calls), 1);
        assert_int_equal(m.w[i].status, 0);
        assert_int_equal(m.w[i].got, 1);
        close(m.fd[i][0]);
        close(m.fd[i][1]);
    }
}

struct expiring {
    struct watched w[3];
    unsigned affected;
};

static void expirer(void *arg)
{
    struct expiring *e = arg;
    for (int i = 0; i < 3; i++)
        e->w[i].t0 = now_ms();
    e->affected = sp_iom_expire_watches(sp_iom_current(), 50);
}

static void test_expire_watches(void **state)
{
    (void)state;
    struct expiring e = {0};
    int64_t timeouts[3] = {-1, 5000, 10};
    struct sp_iom *iom = new_iom(1);
    for (int i = 0; i < 3; i++) {
        unix_pair(e.w[i].fd);
        assert_int_equal(sp_iom_watch(iom, e.w[i].fd[0], timeouts[i], watch_cb, &e.w[i]), 0);
    }
    assert_int_equal(sp_iom_spawn(iom, expirer, &e), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_int_equal(e.affected, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&e.w[i].calls), 1);
        assert_int_equal(e.w[i].status, -ETIMEDOUT);
        int64_t want = i == 2 ? 10 : 50; /* an earlier deadline is kept */
        int64_t took = e.w[i].fired_at - e.w[i].t0;
        assert_true(took >= want - 1 && took < want + slack_ms());
        close(e.w[i].fd[0]);
        close(e.w[i].fd[1]);
    }
}

/* ---- watches when no stack can be mapped -------------------------------- */

struct starved {
    int data[2], closed[2];
    struct watched on_data, on_close;
    struct rlimit old;
};

/* Address space for small allocations, none for another 16 MiB stack. */
static int starve_address_space(struct rlimit *old)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long vm_kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %ld kB", &vm_kb) == 1)
            break;
    if (f)
        fclose(f);
    if (vm_kb < 0 || getrlimit(RLIMIT_AS, old) != 0)
        return -1;
    struct rlimit low = *old;
    low.rlim_cur = (rlim_t)(vm_kb + 8 * 1024) * 1024;
    return setrlimit(RLIMIT_AS, &low);
}

static void starving_driver(void *arg)
{
    struct starved *st = arg;
    if (starve_address_space(&st->old) != 0)
        _exit(10);
    CHECK(write(st->data[1], "d", 1) == 1);
    CHECK(sp_close(st->closed[0]) == 0);
    sp_sleep(30); /* both callbacks are due, and find no stack */
    if (atomic_load(&st->on_data.calls) || atomic_load(&st->on_close.calls))
        _exit(11); /* they ran although no stack could be mapped? */
    setrlimit(RLIMIT_AS, &st->old);
    sp_sleep(50); /* the retry finds one */
}

/* Runs in a child: 0 when each late callback reported what happened to its fd. */
static int starved_watches_child(void)
{
    static struct starved st;
    struct sp_iom_config cfg = {.pool = {.stack_size = 16 << 20}};
    struct sp_iom *iom = sp_iom_new(&cfg);
    if (!iom || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, st.data) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, st.closed) != 0)
        return 12;
    if (sp_iom_watch(iom, st.data[0], -1, watch_cb, &st.on_data) != 0 ||
        sp_iom_watch(iom, st.closed[0], -1, watch_cb, &st.on_close) != 0 ||
        sp_iom_spawn(iom, starving_driver, &st) != 0 || sp_iom_run(iom) != 0)
        return 13;
    if (atomic_load(&st.on_data.calls) != 1 || st.on_data.status != 0 || st.on_data.got != 1)
        return 14; /* data arrived: status 0, not a timeout */
    if (atomic_load(&st.on_close.calls) != 1 || st.on_close.status != -ECANCELED)
        return 15; /* closed: the fd number must not be touched */
    return atomic_load(&rt_failures) ? 16 : 0;
}

static void test_watch_late_for_want_of_a_stack(void **state)
{
    (void)state;
    if (RUNNING_ON_VALGRIND || SP_TEST_ASAN) {
        SKIP("an address-space limit does not mix with valgrind or ASan");
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(starved_watches_child());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- stop, budget, yield, off-fiber calls ------------------------------- */

struct stopper {
    struct sp_iom *iom;
    atomic_int started;
};

static void forever(void *arg)
{
    struct stopper *s = arg;
    atomic_store(&s->started, 1);
    for (;;)
        sp_sleep(1000);
}

static void *stop_thread(void *arg)
{
    struct stopper *s = arg;
    while (!atomic_load(&s->started))
        usleep(1000);
    usleep(20000);
    sp_iom_stop(s->iom);
    return NULL;
}

static void stop_from_thread(unsigned threads)
{
    struct stopper s = {.iom = new_iom(threads)};
    assert_int_equal(sp_iom_spawn(s.iom, forever, &s), 0);
    for (int round = 0; round < 2; round++) {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, stop_thread, &s), 0);
        int64_t t0 = now_ms();
        assert_int_equal(sp_iom_run(s.iom), 0);
        assert_true(now_ms() - t0 < 500 + slack_ms()); /* long before the 1 s sleep ends */
        pthread_join(th, NULL);
    }
    struct sp_iom_stats st;
    sp_iom_stats(s.iom, &st);
    assert_int_equal(st.fibers_live, 1);
    sp_iom_free(s.iom); /* frees the fiber that never finished */
}

static void test_stop_from_another_thread(void **state)
{
    (void)state;
    stop_from_thread(1);
    stop_from_thread(4);
}

struct budget {
    int fd[2];
    atomic_int done;
    int other_runs, seen_at_100;
};

static void hog(void *arg)
{
    struct budget *b = arg;
    for (int i = 0; i < 2000; i++) {
        char c;
        CHECK(sp_read(b->fd[0], &c, 1, 1000) == 1);
        if (i == 100)
            b->seen_at_100 = b->other_runs;
    }
    atomic_store(&b->done, 1);
}

static void other(void *arg)
{
    struct budget *b = arg;
    while (!atomic_load(&b->done)) {
        b->other_runs++;
        sp_yield();
    }
}

static void test_budget_shares_the_thread(void **state)
{
    (void)state;
    struct budget b = {0};
    unix_pair(b.fd);
    static char data[4096];
    assert_int_equal(write(b.fd[1], data, sizeof(data)), sizeof(data));
    /* The hog never sees EAGAIN, so only its budget (16) lets the other fiber in. */
    struct sp_iom *iom = new_iom(1);
    assert_int_equal(sp_iom_spawn(iom, hog, &b), 0);
    assert_int_equal(sp_iom_spawn(iom, other, &b), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_true(b.seen_at_100 >= 100 / 16 - 1);
    close(b.fd[0]);
    close(b.fd[1]);
}

struct yorder {
    char log[16];
    int n;
};

struct yarg {
    struct yorder *y;
    char id;
};

static void yielder(void *arg)
{
    struct yarg *a = arg;
    CHECK(sp_iom_current() != NULL);
    for (int i = 0; i < 3; i++) {
        a->y->log[a->y->n++] = a->id;
        sp_yield();
    }
}

static void spawner(void *arg)
{
    struct yarg *a = arg;
    for (int i = 0; i < 3; i++)
        CHECK(sp_iom_spawn(sp_iom_current(), yielder, &a[i]) == 0);
}

static void test_spawn_and_yield_order(void **state)
{
    (void)state;
    struct yorder y = {0};
    struct yarg args[3] = {{&y, 'A'}, {&y, 'B'}, {&y, 'C'}};
    run_fibers(1, spawner, NULL, args);
    assert_string_equal(y.log, "ABCABCABC");
}

static void test_calls_off_a_fiber(void **state)
{
    (void)state;
    int sv[2];
    unix_pair(sv);
    char c;
    assert_null(sp_iom_current());
    assert_int_equal(sp_read(sv[0], &c, 1, 10), -EPERM);
    assert_int_equal(sp_sleep(10), -EPERM);
    assert_int_equal(sp_wait(sv[0], SP_IO_READ, 10), -EPERM);
    assert_int_equal(sp_try_read(sv[0], &c, 1), -EAGAIN);
    sp_yield(); /* nothing to yield to: returns */
    assert_int_equal(write(sv[1], "z", 1), 1);
    assert_int_equal(sp_read(sv[0], &c, 1, 10), 1); /* ready: no fiber needed */
    assert_int_equal(sp_close(sv[0]), 0);
    assert_int_equal(sp_close(sv[1]), 0);
    assert_int_equal(sp_close(sv[1]), -EBADF);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        RT_TEST(test_run_returns_when_nothing_is_left),
        RT_TEST(test_reader_parks_until_data),
        RT_TEST(test_tcp_loopback),
        RT_TEST(test_timeouts),
        RT_TEST(test_sleep_order),
        RT_TEST(test_close_wakes_reader_and_writer),
        RT_TEST(test_fd_reuse_after_close),
        RT_TEST(test_close_with_a_dup_alive),
        RT_TEST(test_close_between_runs),
        RT_TEST(test_watch_fires_on_data),
        RT_TEST(test_watch_times_out),
        RT_TEST(test_watch_cancelled_by_close),
        RT_TEST(test_watch_and_cached_readiness),
        RT_TEST(test_watch_after_fin_fires_at_once),
        RT_TEST(test_watch_busy),
        RT_TEST(test_watches_hold_no_fiber),
        RT_TEST(test_expire_watches),
        RT_TEST(test_watch_late_for_want_of_a_stack),
        RT_TEST(test_stop_from_another_thread),
        RT_TEST(test_budget_shares_the_thread),
        RT_TEST(test_spawn_and_yield_order),
        RT_TEST(test_calls_off_a_fiber),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
