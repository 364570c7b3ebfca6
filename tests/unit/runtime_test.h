/*
 * Helpers shared by the runtime's unit tests (fibers, IOManager, fiber I/O).
 *
 * cmocka's assertions longjmp to the test runner, which must never happen on
 * a fiber's stack (or on another thread): code that runs on fibers records
 * failures with CHECK(), and the teardown asserts that none were recorded.
 */
#ifndef SPINDLE_RUNTIME_TEST_H
#define SPINDLE_RUNTIME_TEST_H

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "skip.h"

#ifdef HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "spindle/io.h"
#include "spindle/iomanager.h"
#include "spindle/net.h"
#include "spindle/timer.h"

#if defined(__SANITIZE_ADDRESS__)
#define SP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_TEST_ASAN 1
#endif
#endif
#ifndef SP_TEST_ASAN
#define SP_TEST_ASAN 0
#endif

static atomic_int rt_failures;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            atomic_fetch_add(&rt_failures, 1);                                                     \
            print_error("%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                      \
        }                                                                                          \
    } while (0)

/* How late a wake-up may be; valgrind runs everything many times slower. */
static inline int64_t slack_ms(void)
{
    return RUNNING_ON_VALGRIND ? 2000 : 150;
}

static inline int rt_setup(void **state)
{
    (void)state;
    atomic_store(&rt_failures, 0);
    alarm(RUNNING_ON_VALGRIND ? 120 : 20); /* a hung test dies instead of hanging make check */
    return 0;
}

static inline int rt_teardown(void **state)
{
    (void)state;
    alarm(0);
    assert_int_equal(atomic_load(&rt_failures), 0);
    return 0;
}

#define RT_TEST(f) cmocka_unit_test_setup_teardown(f, rt_setup, rt_teardown)

static inline int64_t now_ms(void)
{
    return (int64_t)(sp_now_ns() / 1000000);
}

/* Records a failure unless between want and want + slack_ms() passed since t0. */
#define WITHIN(t0, want)                                                                           \
    do {                                                                                           \
        int64_t took_ = now_ms() - (t0);                                                           \
        CHECK(took_ >= (want));                                                                    \
        CHECK(took_ < (want) + slack_ms());                                                        \
    } while (0)

static inline void unix_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static inline void close_pair(int sv[2])
{
    close(sv[0]);
    close(sv[1]);
}

/* Writes around the IOManager until the socket buffer is full; returns the byte count. */
static inline size_t fill(int fd)
{
    static char junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = write(fd, junk, sizeof(junk));
        if (n <= 0)
            return total;
        total += (size_t)n;
    }
}

/* Reads exactly len bytes on a fiber: len, 0 at end of stream, or -errno (-EIO if cut short). */
static inline ssize_t read_full(int fd, void *buf, size_t len, int64_t timeout_ms)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = sp_read(fd, (char *)buf + got, len - got, timeout_ms);
        if (n <= 0)
            return got ? -EIO : n;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* A listener on 127.0.0.1 with a port the kernel picks; *addr gets its address. */
static inline int loopback_listener(struct sockaddr_in *addr)
{
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = sp_net_listen((struct sockaddr *)addr, sizeof(*addr), 128, 0);
    assert_true(lfd >= 0);
    socklen_t len = sizeof(*addr);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)addr, &len), 0);
    return lfd;
}

/* Connects to lfd with a plain blocking connect: *srv and *cli end up non-blocking. */
static inline void tcp_connect_pair(int lfd, const struct sockaddr_in *addr, int *srv, int *cli)
{
    *cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*cli >= 0);
    assert_int_equal(connect(*cli, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(sp_net_set_nonblock(*cli, 1), 0);
    assert_int_equal(sp_net_set_nodelay(*cli), 0);
    for (int tries = 0; (*srv = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0;
         tries++) {
        assert_true(errno == EAGAIN && tries < 1000);
        usleep(1000);
    }
}

/* A connected loopback TCP pair: sv[0] accepted, sv[1] connecting. */
static inline void tcp_pair(int sv[2])
{
    struct sockaddr_in addr;
    int lfd = loopback_listener(&addr);
    tcp_connect_pair(lfd, &addr, &sv[0], &sv[1]);
    close(lfd);
}

static inline struct sp_iom *new_iom(unsigned threads)
{
    struct sp_iom_config cfg = {.threads = threads};
    struct sp_iom *iom = sp_iom_new(&cfg);
    assert_non_null(iom);
    return iom;
}

/* Runs fibers a and b (may be NULL) on a fresh IOManager until nothing is left,
 * then checks that nothing was left behind. */
static inline void run_fibers(unsigned threads, sp_fiber_fn *a, sp_fiber_fn *b, void *arg)
{
    struct sp_iom *iom = new_iom(threads);
    assert_int_equal(sp_iom_spawn(iom, a, arg), 0);
    if (b)
        assert_int_equal(sp_iom_spawn(iom, b, arg), 0);
    assert_int_equal(sp_iom_run(iom), 0);
    struct sp_iom_stats st;
    sp_iom_stats(iom, &st);
    assert_int_equal(st.fibers_live, 0);
    assert_int_equal(st.watches, 0);
    assert_int_equal(st.timers, 0);
    sp_iom_free(iom);
}

#endif
