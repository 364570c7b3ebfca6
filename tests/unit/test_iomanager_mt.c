/*
 * IOManager in multi-thread mode (four scheduler threads, each with its own
 * epoll): ping-pong load over many connections with a check that no
 * connection is ever handled by two threads at once and that no fiber
 * changes threads, timers, sleeps and close across threads, fairness between
 * yielding fibers and the poller, listeners shared by the threads, and the
 * owner check that catches an fd used by two threads.
 */
#include "config.h" /* first: it selects the system extensions (accept4) */

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "runtime_test.h"

/* ---- multi-thread mode ------------------------------------------------- */

#define MT_THREADS 4
#define NCONN      200
#define NTCP       50 /* of NCONN */
#define MAGIC      0x5049u
#define MAGIC_BACK 0x504fu

struct msg {
    uint32_t conn, round, magic;
};

struct conn {
    uint32_t id;
    int srv, cli;
    atomic_int srv_busy, cli_busy;
};

struct mt {
    struct conn conns[NCONN];
    uint32_t rounds;
    atomic_int overlaps, served, answered, migrations;
    pthread_mutex_t lock;
    pthread_t threads[16];
    int nthreads;
};

static struct mt *mt;

/* pthread_self() is declared const: a call the compiler cannot merge across a park. */
static __attribute__((noinline)) pthread_t this_thread(void)
{
    pthread_t t = pthread_self();
    __asm__ volatile("" ::: "memory");
    return t;
}

static void note_thread(void)
{
    pthread_t me = this_thread();
    pthread_mutex_lock(&mt->lock);
    int known = 0;
    for (int i = 0; i < mt->nthreads; i++)
        known |= pthread_equal(mt->threads[i], me);
    if (!known && mt->nthreads < 16)
        mt->threads[mt->nthreads++] = me;
    pthread_mutex_unlock(&mt->lock);
}

static void enter(atomic_int *busy)
{
    if (atomic_exchange(busy, 1))
        atomic_fetch_add(&mt->overlaps, 1);
}

static void leave(atomic_int *busy)
{
    atomic_store(busy, 0);
}

/* Answers one message.  1: answered, 0: the client is gone, -1: error. */
static int serve_one(struct conn *c)
{
    struct msg m;
    ssize_t n = read_full(c->srv, &m, sizeof(m), 5000);
    if (n == 0)
        return 0;
    CHECK(n == sizeof(m));
    if (n != sizeof(m))
        return -1;
    note_thread();
    CHECK(m.conn == c->id && m.magic == MAGIC);
    m.round++;
    m.magic = MAGIC_BACK;
    int ok = sp_write(c->srv, &m, sizeof(m), 5000) == sizeof(m);
    CHECK(ok);
    atomic_fetch_add(&mt->served, 1);
    return ok ? 1 : -1;
}

/* Server kind 1: a watch per message; each answer runs on a fresh fiber. */
static void serve_watched(int fd, int status, void *arg)
{
    struct conn *c = arg;
    CHECK(fd == c->srv);
    enter(&c->srv_busy);
    CHECK(status == 0);
    int r = status == 0 ? serve_one(c) : -1;
    leave(&c->srv_busy); /* before the next watch, which may fire on another thread at once */
    if (r == 1)
        CHECK(sp_iom_watch(sp_iom_current(), c->srv, 5000, serve_watched, c) == 0);
    else
        sp_close(c->srv);
}

/* Server kind 2: one fiber for the whole connection. */
static void serve_fiber(void *arg)
{
    struct conn *c = arg;
    for (;;) {
        enter(&c->srv_busy);
        int r = serve_one(c);
        leave(&c->srv_busy);
        if (r != 1)
            break;
    }
    sp_close(c->srv);
}

static void client(void *arg)
{
    struct conn *c = arg;
    for (uint32_t round = 0; round < mt->rounds; round++) {
        enter(&c->cli_busy);
        pthread_t before = this_thread();
        struct msg m = {c->id, round, MAGIC}, r;
        CHECK(sp_write(c->cli, &m, sizeof(m), 5000) == sizeof(m));
        ssize_t n = read_full(c->cli, &r, sizeof(r), 5000);
        CHECK(n == sizeof(r));
        if (n != sizeof(r)) {
            leave(&c->cli_busy);
            break;
        }
        CHECK(r.conn == c->id && r.round == round + 1 && r.magic == MAGIC_BACK);
        if (!pthread_equal(before, this_thread()))
            atomic_fetch_add(&mt->migrations, 1);
        atomic_fetch_add(&mt->answered, 1);
        leave(&c->cli_busy);
    }
    sp_close(c->cli);
}

static void test_mt_ping_pong(void **state)
{
    (void)state;
    static struct mt m;
    memset(&m, 0, sizeof(m));
    mt = &m;
    pthread_mutex_init(&m.lock, NULL);
    m.rounds = RUNNING_ON_VALGRIND ? 10 : 50;
    struct sockaddr_in addr;
    int lfd = loopback_listener(&addr);
    struct sp_iom *iom = new_iom(MT_THREADS);

    for (uint32_t i = 0; i < NCONN; i++) {
        struct conn *c = &m.conns[i];
        c->id = i;
        if (i < NTCP) {
            tcp_connect_pair(lfd, &addr, &c->srv, &c->cli);
        } else {
            int sv[2];
            unix_pair(sv);
            c->srv = sv[0];
            c->cli = sv[1];
        }
        if (i % 2)
            assert_int_equal(sp_iom_watch(iom, c->srv, 5000, serve_watched, c), 0);
        else
            assert_int_equal(sp_iom_spawn(iom, serve_fiber, c), 0);
        assert_int_equal(sp_iom_spawn(iom, client, c), 0);
    }
    close(lfd);
    assert_int_equal(sp_iom_run(iom), 0);
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    sp_iom_free(iom);
    pthread_mutex_destroy(&m.lock);

    print_message("%d threads ran handlers, %d client migrations\n", m.nthreads,
                  atomic_load(&m.migrations));
    assert_int_equal(atomic_load(&m.overlaps), 0);
    assert_int_equal(atomic_load(&m.migrations), 0); /* a fiber never changes threads */
    assert_int_equal(atomic_load(&m.served), NCONN * m.rounds);
    assert_int_equal(atomic_load(&m.answered), NCONN * m.rounds);
    assert_int_equal(st.fibers_live, 0);
    assert_int_equal(st.watches, 0);
    assert_true(m.nthreads >= 2); /* the load really was spread */
}

struct mt_timed {
    int fd[2];
    int ms;
    int rc;
};

static void mt_sleeper(void *arg)
{
    struct mt_timed *t = arg;
    int64_t t0 = now_ms();
    t->rc = sp_sleep(t->ms);
    WITHIN(t0, t->ms);
}

static void mt_timeout_reader(void *arg)
{
    struct mt_timed *t = arg;
    char c;
    int64_t t0 = now_ms();
    t->rc = (int)sp_read(t->fd[0], &c, 1, t->ms);
    WITHIN(t0, t->ms);
}

static atomic_int parked_readers;

static void mt_parked_reader(void *arg)
{
    struct mt_timed *t = arg;
    char c;
    int64_t t0 = now_ms();
    atomic_fetch_add(&parked_readers, 1);
    t->rc = (int)sp_read(t->fd[0], &c, 1, 5000);
    WITHIN(t0, 30);
}

static void mt_closer(void *arg)
{
    struct mt_timed *t = arg;
    /* The readers run on other threads, each in its own order: start the
     * 30 ms once all of them have begun their read. */
    for (int waited = 0; atomic_load(&parked_readers) < 20 && waited < 5000; waited++)
        sp_sleep(1);
    sp_sleep(30);
    for (int i = 0; i < 20; i++)
        CHECK(sp_close(t[i].fd[0]) == 0);
}

static void test_mt_timers_and_close(void **state)
{
    (void)state;
    static struct mt_timed sleeps[200], reads[50], closes[20];
    struct sp_iom *iom = new_iom(MT_THREADS);
    for (int i = 0; i < 200; i++) {
        sleeps[i] = (struct mt_timed){.ms = 1 + i % 50, .rc = 1};
        assert_int_equal(sp_iom_spawn(iom, mt_sleeper, &sleeps[i]), 0);
    }
    for (int i = 0; i < 50; i++) {
        reads[i] = (struct mt_timed){.ms = 1 + (i * 7) % 50, .rc = 1};
        unix_pair(reads[i].fd);
        assert_int_equal(sp_iom_spawn(iom, mt_timeout_reader, &reads[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        closes[i] = (struct mt_timed){.rc = 1};
        unix_pair(closes[i].fd);
        assert_int_equal(sp_iom_spawn(iom, mt_parked_reader, &closes[i]), 0);
    }
    assert_int_equal(sp_iom_spawn(iom, mt_closer, closes), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    for (int i = 0; i < 200; i++)
        assert_int_equal(sleeps[i].rc, 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(reads[i].rc, -ETIMEDOUT);
        close(reads[i].fd[0]);
        close(reads[i].fd[1]);
    }
    for (int i = 0; i < 20; i++) {
        assert_int_equal(closes[i].rc, -ECANCELED);
        close(closes[i].fd[1]);
    }
}

struct foreign {
    int fd[2];
    ssize_t rc;
    int64_t t0, woke_at;
    atomic_int started;
};

static void foreign_reader(void *arg)
{
    struct foreign *f = arg;
    char c;
    f->t0 = now_ms();
    atomic_store(&f->started, 1);
    f->rc = sp_read(f->fd[0], &c, 1, -1);
    f->woke_at = now_ms();
}

static void *foreign_closer(void *arg)
{
    struct foreign *f = arg;
    /* The 30 ms count from the read's start: the threads take a while to
     * start (sanitizers), and the reader's may be the last. */
    for (int waited = 0; !atomic_load(&f->started) && waited < 5000; waited++)
        usleep(1000);
    usleep(30000);
    CHECK(sp_close(f->fd[0]) == 0);
    return NULL;
}

/* A thread outside the IOManager closes an fd a fiber waits on: the fiber is
 * woken even though every scheduler thread sleeps in epoll_wait with no timer. */
static void test_mt_close_from_outside(void **state)
{
    (void)state;
    struct foreign f = {.rc = 1};
    unix_pair(f.fd);
    struct sp_iom *iom = new_iom(MT_THREADS);
    assert_int_equal(sp_iom_spawn(iom, foreign_reader, &f), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, foreign_closer, &f), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    pthread_join(th, NULL);
    sp_iom_free(iom);
    assert_int_equal(f.rc, -ECANCELED);
    assert_true(f.woke_at - f.t0 >= 30 && f.woke_at - f.t0 < 30 + slack_ms());
    close(f.fd[1]);
}

struct spinners {
    atomic_int stop;
    int64_t t0, woke_at;
    int sleep_rc;
};

static void spinner(void *arg)
{
    struct spinners *sp = arg;
    while (!atomic_load(&sp->stop))
        sp_yield();
}

static void spin_sleeper(void *arg)
{
    struct spinners *sp = arg;
    sp->t0 = now_ms();
    sp->sleep_rc = sp_sleep(20);
    sp->woke_at = now_ms();
    atomic_store(&sp->stop, 1);
}

/* Fibers that only ever yield (CPU-bound handlers past their budget) must not
 * keep the scheduler threads from polling: timers and I/O still get their turn.
 * (Two threads, so that the spinning threads do not outnumber the cores: the
 * sleeper's own thread must get the CPU to wake it.) */
static void test_mt_yielders_do_not_starve_timers(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        struct spinners sp = {.sleep_rc = 1};
        struct sp_iom *iom = new_iom(2);
        for (int i = 0; i < 8; i++)
            assert_int_equal(sp_iom_spawn(iom, spinner, &sp), 0);
        assert_int_equal(sp_iom_spawn(iom, spin_sleeper, &sp), 0);
        assert_int_equal(sp_iom_run(iom), 0);
        sp_iom_free(iom);
        assert_int_equal(sp.sleep_rc, 0);
        assert_true(sp.woke_at - sp.t0 < 20 + slack_ms());
    }
}

/* ---- listeners: one thread at a time ------------------------------------ */

extern int sp__iom_unguarded_listeners; /* shared/runtime/internal.h */

struct listen_load {
    atomic_int conns, batches, cancels;
    pthread_t accepted_on[64];
    int nconn;
};

static struct listen_load *ll;

static void accepted_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    pthread_t accepted_on = ll->accepted_on[fd % 64];
    char buf[16];
    /* Every park and wake-up of the connection's fiber happens on the thread
     * that accepted it. */
    while (sp_read(fd, buf, sizeof(buf), 5000) > 0) {
        CHECK(pthread_equal(accepted_on, this_thread()));
        CHECK(sp_write(fd, buf, 1, 5000) == 1);
    }
    CHECK(pthread_equal(accepted_on, this_thread()));
    sp_close(fd);
    if (atomic_fetch_add(&ll->conns, 1) + 1 == ll->nconn)
        sp_iom_stop(sp_iom_current());
}

static void accept_some(int lfd, int status, void *arg)
{
    (void)arg;
    if (status < 0) {
        atomic_fetch_add(&ll->cancels, 1);
        return;
    }
    atomic_fetch_add(&ll->batches, 1);
    int fd;
    while ((fd = sp_try_accept(lfd, NULL, NULL)) >= 0) {
        ll->accepted_on[fd % 64] = this_thread();
        CHECK(sp_iom_spawn(sp_iom_current(), accepted_conn, (void *)(intptr_t)fd) == 0);
    }
    CHECK(fd == -EAGAIN);
}

static void *listen_clients(void *arg)
{
    struct sockaddr_in *addr = arg;
    int fds[32];
    for (int i = 0; i < 32; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(connect(fds[i], (struct sockaddr *)addr, sizeof(*addr)) == 0);
        usleep(1000);
    }
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 32; i++) {
            char c = 'x';
            CHECK(write(fds[i], &c, 1) == 1);
            CHECK(read(fds[i], &c, 1) == 1);
        }
    for (int i = 0; i < 32; i++)
        close(fds[i]);
    return NULL;
}

/* Connections arrive on a listener every thread may be woken for; each is
 * served start to end by the thread whose accept batch took it, and the
 * listener's close ends it with one -ECANCELED call. */
static void test_mt_listener_connections_stay_on_their_thread(void **state)
{
    (void)state;
    static struct listen_load l;
    memset(&l, 0, sizeof(l));
    ll = &l;
    l.nconn = 32;
    struct sockaddr_in addr;
    int lfd = loopback_listener(&addr);
    struct sp_iom *iom = new_iom(MT_THREADS);
    assert_int_equal(sp_iom_listen(iom, lfd, accept_some, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, listen_clients, &addr), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&l.conns), 32);
    assert_true(atomic_load(&l.batches) >= 1);
    assert_int_equal(sp_close(lfd), 0); /* outside the scheduler: the -ECANCELED call is queued */
    assert_int_equal(sp_iom_run(iom), 0);
    assert_int_equal(atomic_load(&l.cancels), 1);
    sp_iom_free(iom);
}

/* An accept batch that holds the listener for a while, then closes it. */
static void slow_batch(int lfd, int status, void *arg)
{
    (void)arg;
    if (status < 0)
        return;
    usleep(300000); /* the whole thread, as a long batch would hold it */
    int fd = sp_try_accept(lfd, NULL, NULL);
    if (fd >= 0)
        sp_close(fd);
    sp_close(lfd); /* the run ends once the -ECANCELED call has run */
}

/* Runs two threads on a listener with a queued connection in a child
 * process; returns its wait status. */
static int run_listener_child(int unguarded)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        sp__iom_unguarded_listeners = unguarded;
        struct sockaddr_in addr;
        int lfd = loopback_listener(&addr);
        int cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(cli, (struct sockaddr *)&addr, sizeof(addr)) != 0)
            _exit(3);
        struct sp_iom *iom = new_iom(2);
        if (sp_iom_listen(iom, lfd, slow_batch, NULL) != 0)
            _exit(4);
        _exit(sp_iom_run(iom) == 0 ? 0 : 5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* The one-shot guard is what keeps a listener on one thread at a time: with
 * it, two threads serve a listener whose batch takes long; without it, the
 * second thread woken for the same listener trips the owner check. */
static void test_mt_owner_check_fires_without_the_listener_guard(void **state)
{
    (void)state;
    int status = run_listener_child(0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    status = run_listener_child(1);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

/* ---- a closed fd is nobody's --------------------------------------------- */

struct reuse {
    int fd[2];
    ssize_t read_rc;
    atomic_int closed;
    int reused;
};

static void reuse_reader(void *arg)
{
    struct reuse *r = arg;
    char c;
    r->read_rc = sp_read(r->fd[0], &c, 1, 5000);
}

/* Wakes the reader, then closes its fd before it runs again. */
static void reuse_closer(void *arg)
{
    struct reuse *r = arg;
    char c = 'x';
    CHECK(write(r->fd[1], &c, 1) == 1);
    sp_yield(); /* the poll in between queues the reader behind us */
    CHECK(sp_close(r->fd[0]) == 0);
    sp_yield(); /* the reader finds its fd closed */
    atomic_store(&r->closed, 1);
}

static void reuse_starter(void *arg)
{
    CHECK(sp_iom_spawn(sp_iom_current(), reuse_reader, arg) == 0);
    CHECK(sp_iom_spawn(sp_iom_current(), reuse_closer, arg) == 0);
}

/* On the other thread: the next socket gets the closed number. */
static void reuse_other_thread(void *arg)
{
    struct reuse *r = arg;
    for (int i = 0; i < 5000 && !atomic_load(&r->closed); i++)
        sp_sleep(1);
    int sv[2];
    unix_pair(sv);
    r->reused = sv[0] == r->fd[0] || sv[1] == r->fd[0];
    CHECK(sp_wait(sv[0], SP_IO_WRITE, 1000) == 0);
    CHECK(sp_wait(sv[1], SP_IO_WRITE, 1000) == 0);
    CHECK(sp_close(sv[0]) == 0);
    CHECK(sp_close(sv[1]) == 0);
}

/* A fiber woken from a read whose fd is closed before it runs again gets
 * -ECANCELED, and leaves the closed number free for the thread that reuses
 * it (taking it would abort that thread's next call on its own socket). */
static void test_mt_closed_fd_is_nobodys(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        static struct reuse r;
        unix_pair(r.fd);
        struct sp_iom *iom = new_iom(2);
        /* Spawned from outside: the threads in turn. */
        if (sp_iom_spawn(iom, reuse_starter, &r) != 0 ||
            sp_iom_spawn(iom, reuse_other_thread, &r) != 0 || sp_iom_run(iom) != 0)
            _exit(3);
        if (r.read_rc != -ECANCELED)
            _exit(4);
        if (!r.reused)
            _exit(5);
        _exit(atomic_load(&rt_failures) ? 6 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- thread index -------------------------------------------------------- */

struct index_seen {
    pthread_mutex_t lock;
    pthread_t thread[MT_THREADS * 4];
    unsigned index[MT_THREADS * 4];
    int n;
    atomic_int changed;
};

static void index_fiber(void *arg)
{
    struct index_seen *s = arg;
    unsigned idx = sp_iom_thread_index();
    for (int i = 0; i < 20; i++) {
        sp_yield();
        if (sp_iom_thread_index() != idx)
            atomic_fetch_add(&s->changed, 1);
    }
    pthread_mutex_lock(&s->lock);
    s->thread[s->n] = this_thread();
    s->index[s->n++] = idx;
    pthread_mutex_unlock(&s->lock);
}

/* Each scheduler thread has its own index, 0 .. threads - 1, the same for
 * all its fibers for their whole life: what per-thread service state is
 * looked up by. */
static void test_mt_thread_index(void **state)
{
    (void)state;
    struct index_seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct sp_iom *iom = new_iom(MT_THREADS);
    assert_int_equal(sp_iom_thread_index(), 0);
    for (int i = 0; i < MT_THREADS * 4; i++)
        assert_int_equal(sp_iom_spawn(iom, index_fiber, &s), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    sp_iom_free(iom);
    assert_int_equal(s.n, MT_THREADS * 4);
    assert_int_equal(atomic_load(&s.changed), 0);
    unsigned seen = 0;
    for (int i = 0; i < s.n; i++) {
        assert_true(s.index[i] < MT_THREADS);
        seen |= 1u << s.index[i];
        for (int j = 0; j < s.n; j++)
            assert_int_equal(pthread_equal(s.thread[i], s.thread[j]) != 0,
                             s.index[i] == s.index[j]);
    }
    assert_int_equal(seen, (1u << MT_THREADS) - 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        RT_TEST(test_mt_ping_pong),
        RT_TEST(test_mt_timers_and_close),
        RT_TEST(test_mt_yielders_do_not_starve_timers),
        RT_TEST(test_mt_close_from_outside),
        RT_TEST(test_mt_listener_connections_stay_on_their_thread),
        RT_TEST(test_mt_owner_check_fires_without_the_listener_guard),
        RT_TEST(test_mt_closed_fd_is_nobodys),
        RT_TEST(test_mt_thread_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
