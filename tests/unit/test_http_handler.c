/*
 * The handler API (spindle/http_handler.h) and its routing, through the HTTP
 * service's own connection code (worker/http/) over a socketpair: a module
 * registered with sp_module_register() as the loader would, "handle" lines
 * resolved by the service's init, and a client fiber that sends requests and
 * reads every byte until the server closes.
 *
 * The worker around the service is a stub (the functions of worker.h the
 * service calls), so that no process, listener or master is needed.
 */
#include "config.h"

#include <dlfcn.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "runtime_test.h"
#include "http.h"
#include "spindle/http_handler.h"
#include "spindle/module.h"

extern const struct sp_service_def sp_service_http; /* http.c */

/* ---- a stub worker -------------------------------------------------------- */

struct worker {
    struct sp_iom *iom;
    struct worker_counters wc;
    struct sp_config cfg;
    int draining;
};

static struct worker the_worker;

struct sp_iom *worker_iom(struct worker *w)
{
    return w->iom;
}
struct worker_counters *worker_counters(struct worker *w)
{
    return &w->wc;
}
int worker_metrics_proc(struct worker *w)
{
    (void)w;
    return -1;
}
const struct sp_config *worker_config(struct worker *w)
{
    return &w->cfg;
}
unsigned worker_generation(struct worker *w)
{
    (void)w;
    return 1;
}
unsigned worker_index(struct worker *w)
{
    (void)w;
    return 0;
}
uint64_t worker_started_ns(struct worker *w)
{
    (void)w;
    return 0;
}
int worker_draining(struct worker *w)
{
    return w->draining;
}
int worker_drain_soon(struct worker *w)
{
    return w->draining;
}
int worker_conn_peer(struct worker *w, int fd, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof(*ss);
    (void)w;
    return getpeername(fd, (struct sockaddr *)ss, &len) == 0 ? 0 : -errno;
}
const char *worker_conn_peer_name(struct worker *w, int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    const void *a = NULL;
    if (worker_conn_peer(w, fd, &ss) == 0 && ss.ss_family == AF_INET)
        a = &((struct sockaddr_in *)&ss)->sin_addr;
    if (!a || !inet_ntop(AF_INET, a, buf, (socklen_t)size))
        snprintf(buf, size, "-");
    return buf;
}
unsigned long long worker_proxy_refused(struct worker *w)
{
    (void)w;
    return 0;
}
void worker_conn_closed(struct worker *w)
{
    (void)w;
}

/* ---- the module under test ------------------------------------------------ */

static char file_path[64]; /* a file of file_len bytes of 'F' */
static const size_t file_len = 100000;

static bool starts(const char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

/* GET .../json?x: {"query":"x","path":"..."} */
static int h_json(struct sp_http_req *req, struct sp_http_resp *resp)
{
    size_t ql, pl;
    const char *q = sp_http_req_query(req, &ql), *p = sp_http_req_path(req, &pl);
    char body[512];
    int n = snprintf(body, sizeof(body), "{\"query\":\"%.*s\",\"path\":\"%.*s\",\"v\":%d}", (int)ql,
                     q ? q : "", (int)pl, p, sp_http_req_version(req));
    CHECK(sp_http_resp_header(resp, "Content-Type", "application/json") == 0);
    return sp_http_resp_body(resp, body, (size_t)n) == 0 ? 0 : -1;
}

/* Echoes the X-Echo header (looked up in another case) and counts headers. */
static int h_header(struct sp_http_req *req, struct sp_http_resp *resp)
{
    size_t vl, i = 0, nl;
    const char *v = sp_http_req_header(req, "x-ECHO", &vl), *name, *val;
    CHECK(v == sp_http_req_header(req, "X-Echo", &nl));
    char body[256];
    while (sp_http_req_header_at(req, i, &name, &nl, &val, &vl) == 0)
        i++;
    v = sp_http_req_header(req, "X-Echo", &vl);
    if (!v) {
        v = "(none)";
        vl = 6;
    }
    int n = snprintf(body, sizeof(body), "echo=%.*s headers=%zu", (int)vl, v, i);
    CHECK(sp_http_resp_header(resp, "X-Echoed", i == 2 ? "yes" : "no") == 0);
    return sp_http_resp_body(resp, body, (size_t)n) == 0 ? 0 : -1;
}

/* POST: the body back, whole. */
static int h_post(struct sp_http_req *req, struct sp_http_resp *resp)
{
    const char *b;
    size_t n;
    if (sp_http_req_body(req, &b, &n) != 0)
        return 0; /* spindle answers the error */
    sp_http_resp_status(resp, 201);
    return sp_http_resp_body(resp, b, n) == 0 ? 0 : -1;
}

/* POST: the body back, read in small pieces and streamed as chunks. */
static int h_stream_echo(struct sp_http_req *req, struct sp_http_resp *resp)
{
    char buf[7];
    ssize_t n;
    while ((n = sp_http_req_read(req, buf, sizeof(buf))) > 0)
        if (sp_http_resp_write(resp, buf, (size_t)n) != 0)
            return -1;
    return n < 0 ? 0 : sp_http_resp_end(resp);
}

/* Three chunks of unknown length, flushed between, with a park. */
static int h_stream(struct sp_http_req *req, struct sp_http_resp *resp)
{
    (void)req;
    CHECK(sp_http_resp_write(resp, "one,", 4) == 0);
    CHECK(sp_http_resp_flush(resp) == 0);
    sp_sleep(5);
    CHECK(sp_http_resp_write(resp, "two,", 4) == 0);
    CHECK(sp_http_resp_header(resp, "X-Late", "1") == -EALREADY);
    CHECK(sp_http_resp_write(resp, "three", 5) == 0);
    return 0; /* spindle ends the stream */
}

static int h_file(struct sp_http_req *req, struct sp_http_resp *resp)
{
    size_t pl;
    const char *p = sp_http_req_path(req, &pl);
    if (pl > 0 && p[pl - 1] == 'd') { /* .../fd: 10 bytes from offset 5 */
        int fd = open(file_path, O_RDONLY);
        int rc = sp_http_resp_fd(resp, fd, 5, 10);
        close(fd);
        return rc == 0 ? 0 : -1;
    }
    if (sp_http_resp_file(resp, "/nonexistent/file") != -ENOENT)
        return 0;
    return sp_http_resp_file(resp, file_path) == 0 ? 0 : -1;
}

static int h_sleep(struct sp_http_req *req, struct sp_http_resp *resp)
{
    (void)req;
    int64_t t0 = now_ms();
    CHECK(sp_sleep(50) == 0);
    CHECK(now_ms() - t0 >= 50);
    return sp_http_resp_body(resp, "slept", 5);
}

static int h_bad_header(struct sp_http_req *req, struct sp_http_resp *resp)
{
    (void)req;
    int ok = sp_http_resp_header(resp, "X-Split", "a\r\nSet-Cookie: evil=1") == -EINVAL &&
             sp_http_resp_header(resp, "X-Split", "a\nb") == -EINVAL &&
             sp_http_resp_header(resp, "Bad Name", "v") == -EINVAL &&
             sp_http_resp_header(resp, "X\r\nY", "v") == -EINVAL &&
             sp_http_resp_header(resp, "Content-Length", "5") == -EINVAL &&
             sp_http_resp_header(resp, "Connection", "close") == -EINVAL &&
             sp_http_resp_status(resp, 99) == -EINVAL &&
             sp_http_resp_header(resp, "X-Good", "tab\tok") == 0;
    return sp_http_resp_body(resp, ok ? "refused" : "accepted", ok ? 7 : 8);
}

/* A response made once; /ready sends it as it is, /readyhdr with a header
 * of the handler's own (the head is then written whole). */
static struct sp_http_ready *ready;

static int h_ready(struct sp_http_req *req, struct sp_http_resp *resp, bool extra)
{
    (void)req;
    if (extra && sp_http_resp_header(resp, "X-Extra", "1") < 0)
        return -1;
    return sp_http_resp_ready(resp, ready);
}

/* The module's handler: one per path under its prefix. */
static int test_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    size_t pl;
    const char *p = sp_http_req_path(req, &pl);
    CHECK(state == &the_worker);
    const char *sub = memchr(p + 1, '/', pl - 1);
    size_t sl = sub ? pl - (size_t)(sub - p) : 0;
    if (!sub)
        return sp_http_resp_body(resp, "root", 4);
    if (starts(sub, sl, "/json"))
        return h_json(req, resp);
    if (starts(sub, sl, "/header"))
        return h_header(req, resp);
    if (starts(sub, sl, "/post"))
        return h_post(req, resp);
    if (starts(sub, sl, "/streamecho"))
        return h_stream_echo(req, resp);
    if (starts(sub, sl, "/stream"))
        return h_stream(req, resp);
    if (starts(sub, sl, "/file"))
        return h_file(req, resp);
    if (starts(sub, sl, "/sleep"))
        return h_sleep(req, resp);
    if (starts(sub, sl, "/readyhdr"))
        return h_ready(req, resp, true);
    if (starts(sub, sl, "/ready"))
        return h_ready(req, resp, false);
    if (starts(sub, sl, "/badheader"))
        return h_bad_header(req, resp);
    if (starts(sub, sl, "/close"))
        return -1;
    return 0; /* "/noresp": nothing answered */
}

static const struct sp_http_handler_def test_http = {.handle = test_handle};
static const struct sp_module test_def = {
    .api_version = SP_API_VERSION, .name = "t", .http = &test_http};
static struct sp_module_instance test_mi = {.name = "t", .def = &test_def, .state = &the_worker};

/* Modules that answer with their state (a name), for routing. */
static int name_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    (void)req;
    return sp_http_resp_body(resp, state, strlen(state));
}
static const struct sp_http_handler_def name_http = {.handle = name_handle};
static const struct sp_module name_def = {
    .api_version = SP_API_VERSION, .name = "name", .http = &name_http};
static struct sp_module_instance short_mi = {.name = "short", .def = &name_def, .state = "SHORT"};
static struct sp_module_instance long_mi = {.name = "long", .def = &name_def, .state = "LONG"};
static struct sp_module_instance slash_mi = {.name = "slash", .def = &name_def, .state = "SLASH"};
/* A module with no HTTP handler. */
static const struct sp_module bare_def = {.api_version = SP_API_VERSION, .name = "bare"};
static struct sp_module_instance bare_mi = {.name = "bare", .def = &bare_def};

/* ---- the service and a client ------------------------------------------------- */

static struct sp_http_handle handles[] = {
    {"/t", "t", 1},
    {"/hello", "short", 2},
    {"/hello/deep", "long", 3},
};
static struct sp_http_return returns[] = {
    {"/hello/exact", 200, "text/plain", "exact", 5, 4},
};

struct svc_case {
    struct sp_http_conf conf;
    struct service svc;
    int sv[2];
    const char *request;
    size_t request_len;
    char got[300000];
    size_t ngot;
};

static void conf_defaults(struct sp_http_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->keepalive_timeout_ms = 5000;
    conf->header_timeout_ms = 5000;
    conf->body_timeout_ms = 5000;
    conf->send_timeout_ms = 5000;
    conf->max_header_size = 8192;
    conf->max_body_size = 1000;
    conf->status_path = "/status";
    conf->handles = handles;
    conf->nhandles = sizeof(handles) / sizeof(handles[0]);
    conf->returns = returns;
    conf->nreturns = 1;
}

static int svc_init(struct svc_case *k, char *err, size_t errlen)
{
    k->svc = (struct service){.def = &sp_service_http, .conf = &k->conf, .worker = &the_worker};
    return sp_service_http.init(&k->svc, err, errlen);
}

static void server_fiber(void *arg)
{
    struct svc_case *k = arg;
    sp_service_http.handle(&k->svc, k->sv[0]);
}

/* Sends the request bytes, half-closes, reads everything until EOF. */
static void client_fiber(void *arg)
{
    struct svc_case *k = arg;
    CHECK(sp_write(k->sv[1], k->request, k->request_len, 5000) == (ssize_t)k->request_len);
    shutdown(k->sv[1], SHUT_WR);
    ssize_t n;
    while ((n = sp_read(k->sv[1], k->got + k->ngot, sizeof(k->got) - 1 - k->ngot, 5000)) > 0)
        k->ngot += (size_t)n;
    CHECK(n == 0);
    k->got[k->ngot] = '\0';
}

static struct svc_case *exchange_with(const struct sp_http_conf *conf, const char *request,
                                      size_t len)
{
    struct svc_case *k = calloc(1, sizeof(*k));
    char err[256] = "";
    assert_non_null(k);
    k->conf = *conf;
    int rc = svc_init(k, err, sizeof(err));
    if (rc != 0)
        print_error("init: %s\n", err);
    assert_int_equal(rc, 0);
    the_worker.iom = new_iom(1);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, k->sv), 0);
    k->request = request;
    k->request_len = len;
    assert_int_equal(sp_iom_spawn(the_worker.iom, server_fiber, k), 0);
    assert_int_equal(sp_iom_spawn(the_worker.iom, client_fiber, k), 0);
    assert_int_equal(sp_iom_run(the_worker.iom), 0);
    sp_iom_free(the_worker.iom);
    the_worker.iom = NULL;
    close(k->sv[1]);
    sp_service_http.fini(&k->svc);
    return k;
}

static struct svc_case *exchange(const char *request)
{
    struct sp_http_conf conf;
    conf_defaults(&conf);
    return exchange_with(&conf, request, strlen(request));
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#define HAS(k, s)                                                                                  \
    do {                                                                                           \
        if (!strstr((k)->got, (s)))                                                                \
            fail_msg("response lacks \"%s\":\n%s", (s), (k)->got);                                 \
    } while (0)
#define LACKS(k, s)                                                                                \
    do {                                                                                           \
        if (strstr((k)->got, (s)))                                                                 \
            fail_msg("response has \"%s\":\n%s", (s), (k)->got);                                   \
    } while (0)

static void register_modules(void)
{
    sp_module_forget_all();
    assert_int_equal(sp_module_register(&test_mi), 0);
    assert_int_equal(sp_module_register(&short_mi), 0);
    assert_int_equal(sp_module_register(&long_mi), 0);
    assert_int_equal(sp_module_register(&slash_mi), 0);
    assert_int_equal(sp_module_register(&bare_mi), 0);
}

static int setup_modules(void **state)
{
    (void)state;
    register_modules();
    snprintf(file_path, sizeof(file_path), "/tmp/spindle-test-handler-XXXXXX");
    int fd = mkstemp(file_path);
    assert_true(fd >= 0);
    char *data = malloc(file_len);
    memset(data, 'F', file_len);
    memcpy(data, "0123456789abcdefghij", 20);
    assert_int_equal(write(fd, data, file_len), (ssize_t)file_len);
    free(data);
    close(fd);
    return 0;
}

static int teardown_modules(void **state)
{
    (void)state;
    unlink(file_path);
    sp_module_forget_all();
    return 0;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_json_from_query(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/json?name=world HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "HTTP/1.1 200 OK\r\n");
    HAS(k, "Content-Type: application/json\r\n");
    HAS(k, "Server: spindle\r\n");
    HAS(k, "Date: ");
    HAS(k, "{\"query\":\"name=world\",\"path\":\"/t/json\",\"v\":11}");
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n",
             strlen("{\"query\":\"name=world\",\"path\":\"/t/json\",\"v\":11}"));
    HAS(k, cl);
    free(k);
}

static void test_header_echo_and_decoded_path(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/./x/..//header HTTP/1.1\r\nHost: x\r\n"
                                  "X-Echo: hi there\r\n\r\n"
                                  "GET /t/%68eader HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "X-Echoed: yes\r\n");
    HAS(k, "echo=hi there headers=2");
    HAS(k, "echo=(none) headers=1");
    free(k);
}

static void test_post_whole_body(void **state)
{
    (void)state;
    struct svc_case *k =
        exchange("POST /t/post HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
                 "hello world"
                 "POST /t/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                 "GET /t/json HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "HTTP/1.1 201 Created\r\n");
    HAS(k, "Content-Length: 11\r\n\r\nhello world");
    HAS(k, "Content-Length: 5\r\n\r\nabcde");
    /* The request after the bodies is still answered on the connection. */
    HAS(k, "\"path\":\"/t/json\"");
    assert_int_equal(count(k->got, "HTTP/1.1 "), 3);
    free(k);
}

/* A body the handler does not read is dropped: the next request follows. */
static void test_unread_body_dropped(void **state)
{
    (void)state;
    struct svc_case *k =
        exchange("POST /t/json?a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                 "abcde"
                 "POST /t/json?b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n3\r\nabc\r\n0\r\n\r\n"
                 "GET /t/json?c HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "\"query\":\"a\"");
    HAS(k, "\"query\":\"b\"");
    HAS(k, "\"query\":\"c\"");
    assert_int_equal(count(k->got, "HTTP/1.1 200 OK"), 3);
    free(k);
}

static void test_body_too_large(void **state)
{
    (void)state;
    char req[4096];
    char big[1501];
    memset(big, 'b', 1500);
    big[1500] = '\0';
    /* Content-Length over max_body_size: 413 before the handler runs. */
    snprintf(req, sizeof(req), "POST /t/post HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\n\r\n%s",
             big);
    struct svc_case *k = exchange(req);
    HAS(k, "HTTP/1.1 413 ");
    HAS(k, "Connection: close\r\n");
    LACKS(k, "201 Created");
    free(k);
    /* Chunked: the handler's read fails, spindle answers 413. */
    snprintf(req, sizeof(req),
             "POST /t/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5dc\r\n%s\r\n0\r\n\r\n",
             big);
    k = exchange(req);
    HAS(k, "HTTP/1.1 413 ");
    LACKS(k, "201 Created");
    assert_int_equal(count(k->got, "HTTP/1.1 "), 1);
    free(k);
}

static void test_streamed_body_in_and_out(void **state)
{
    (void)state;
    struct svc_case *k =
        exchange("POST /t/streamecho HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
                 "abcdefghijklmnopqrst"
                 "GET /t/json HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "Transfer-Encoding: chunked\r\n");
    LACKS(k, "Content-Length: 20");
    HAS(k, "\r\n\r\n7\r\nabcdefg\r\n7\r\nhijklmn\r\n6\r\nopqrst\r\n0\r\n\r\nHTTP/1.1 200 OK");
    free(k);
}

static void test_stream_chunked(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/stream HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                  "GET /t/json?never HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "Transfer-Encoding: chunked\r\n");
    HAS(k, "\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
    /* HTTP/1.0: no chunks, the body ends with the connection, even when
     * the client asked to keep it. */
    LACKS(k, "never");
    const char *second = strstr(k->got, "0\r\n\r\nHTTP/1.1 200 OK\r\n");
    assert_non_null(second);
    assert_null(strstr(second + 5, "Transfer-Encoding"));
    assert_non_null(strstr(second, "Connection: close\r\n"));
    assert_true(k->ngot >= 13);
    assert_memory_equal(k->got + k->ngot - 13, "one,two,three", 13);
    free(k);
}

/* A handler that ignores a body the client waits to send: no "100 Continue"
 * after its answer, and the connection ends (the body never comes).  One
 * that reads it gets the 100 first. */
static void test_expect_continue(void **state)
{
    (void)state;
    struct svc_case *k = exchange("POST /t/json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                  "Expect: 100-continue\r\n\r\n");
    HAS(k, "HTTP/1.1 200 OK\r\n");
    LACKS(k, "100 Continue");
    free(k);
    k = exchange("POST /t/post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n");
    HAS(k, "HTTP/1.1 100 Continue\r\n\r\n");
    LACKS(k, "201");
    free(k);
}

static void test_file(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/file HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/file/fd HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "Content-Length: 100000\r\n\r\n0123456789abcdefghijFFFF");
    HAS(k, "Content-Length: 10\r\n\r\n56789abcde");
    /* Nothing after the last body: the length was exact. */
    assert_memory_equal(k->got + k->ngot - 10, "56789abcde", 10);
    free(k);
}

static void test_handler_parks(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/sleep HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/json?after HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "Content-Length: 5\r\n\r\nslept");
    HAS(k, "\"query\":\"after\"");
    assert_true(strstr(k->got, "slept") < strstr(k->got, "after"));
    free(k);
}

static void test_no_response_is_500(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/noresp HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/json HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "HTTP/1.1 500 Internal Server Error\r\n");
    /* The connection stays: the next request is answered. */
    HAS(k, "\"path\":\"/t/json\"");
    free(k);
}

static void test_minus_one_closes(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/json HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/close HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/json?never HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(count(k->got, "HTTP/1.1 "), 1);
    LACKS(k, "never");
    free(k);
}

static void test_invalid_header_refused(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/badheader HTTP/1.1\r\nHost: x\r\n\r\n");
    HAS(k, "\r\n\r\nrefused");
    HAS(k, "X-Good: tab\tok\r\n");
    LACKS(k, "Set-Cookie");
    assert_int_equal(count(k->got, "Content-Length"), 1);
    free(k);
}

static void test_keepalive_pipelining_and_head(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /t/json?1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "HEAD /t/json?2 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "HEAD /t/stream HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "HEAD /t/file HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/exact HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /t/json?3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                  "GET /t/json?4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                  "GET /t/json?5 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(count(k->got, "HTTP/1.1 200 OK"), 7);
    HAS(k, "\"query\":\"1\"");
    LACKS(k, "\"query\":\"2\"");
    LACKS(k, "one,");
    LACKS(k, "0123456789");
    HAS(k, "Content-Length: 100000\r\n");
    HAS(k, "\"query\":\"3\"");
    HAS(k, "\"query\":\"4\"");
    LACKS(k, "\"query\":\"5\"");
    assert_int_equal(count(k->got, "Connection: keep-alive\r\n"), 1);
    assert_int_equal(count(k->got, "Connection: close\r\n"), 1);
    /* The HEAD of the JSON has the GET's length, and no body. */
    const char *h = strstr(k->got, "HTTP/1.1 200 OK\r\n");
    h = strstr(h + 1, "HTTP/1.1 200 OK\r\n");
    const char *end = strstr(h, "\r\n\r\n");
    assert_memory_equal(end + 4, "HTTP/1.1 200 OK", 15);
    free(k);
}

/* A ready response goes out as made, for GET and HEAD and beside a header of
 * the handler's own; an invalid one is never made. */
static void test_ready_response(void **state)
{
    (void)state;
    assert_null(sp_http_ready_new(99, "text/plain", "x", 1));
    assert_null(sp_http_ready_new(200, "text/plain\r\nX-Evil: 1", "x", 1));
    ready = sp_http_ready_new(201, "text/plain", "made once", 9);
    assert_non_null(ready);
    struct svc_case *k =
        exchange("GET /t/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                 "HEAD /t/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /t/readyhdr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(count(k->got, "HTTP/1.1 201 Created\r\n"), 3);
    assert_int_equal(count(k->got, "Content-Type: text/plain\r\n"), 3);
    assert_int_equal(count(k->got, "Content-Length: 9\r\n"), 3);
    assert_int_equal(count(k->got, "made once"), 2); /* not after the HEAD */
    assert_int_equal(count(k->got, "X-Extra: 1\r\n"), 1);
    assert_int_equal(count(k->got, "Date: "), 3);
    HAS(k, "Connection: close\r\n");
    free(k);
    sp_http_ready_free(ready);
    ready = NULL;
}

static void test_prefix_routing(void **state)
{
    (void)state;
    struct svc_case *k = exchange("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/x HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /helloworld HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/deep HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/deep/x HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/deeper HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/exact HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/exact/x HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /hello/x/../deep HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    /* In order: the answers' bodies. */
    static const char *const want[] = {"SHORT", "SHORT", "404",   "LONG", "LONG",
                                       "SHORT", "exact", "SHORT", "LONG", "{\"pid\":"};
    const char *p = k->got;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *body = strstr(p, "\r\n\r\n");
        if (!body)
            fail_msg("answer %zu missing:\n%s", i, k->got);
        body += 4;
        if (strncmp(body, want[i], strlen(want[i])) != 0)
            fail_msg("answer %zu: want %s, got:\n%.60s", i, want[i], body);
        p = body;
    }
    free(k);
}

static void test_root_prefix_and_status_page(void **state)
{
    (void)state;
    static struct sp_http_handle slash[] = {{"/", "slash", 1}};
    struct sp_http_conf conf;
    conf_defaults(&conf);
    conf.handles = slash;
    conf.nhandles = 1;
    const char req[] = "GET /anything/at/all HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
                       "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n";
    struct svc_case *k = exchange_with(&conf, req, sizeof(req) - 1);
    HAS(k, "\r\n\r\nSLASH");
    HAS(k, "Content-Type: application/json\r\n");
    HAS(k, "Cache-Control: no-store\r\n");
    HAS(k, "HTTP/1.1 405 Method Not Allowed\r\n");
    HAS(k, "Allow: GET, HEAD\r\n");
    assert_int_equal(count(k->got, "\"pid\":"), 1);
    assert_int_equal(count(k->got, "HTTP/1.1 "), 4);
    free(k);
}

static void test_init_unknown_module(void **state)
{
    (void)state;
    static struct sp_http_handle missing[] = {{"/hello", "hello", 7}};
    static struct sp_http_handle bare[] = {{"/b", "bare", 7}};
    struct svc_case *k = calloc(1, sizeof(*k));
    char err[256] = "";
    conf_defaults(&k->conf);
    k->conf.handles = missing;
    k->conf.nhandles = 1;
    assert_int_equal(svc_init(k, err, sizeof(err)), -1);
    assert_string_equal(err, "handle /hello: no module hello");
    sp_service_http.fini(&k->svc);
    k->conf.handles = bare;
    assert_int_equal(svc_init(k, err, sizeof(err)), -1);
    assert_string_equal(err, "handle /b: module bare has no HTTP handler");
    sp_service_http.fini(&k->svc);
    free(k);
}

/* examples/hello, built by make check, loaded as the loader will: its
 * handler answers JSON from the query string with the greeting of its
 * configuration. */
static void test_example_module(void **state)
{
    (void)state;
    void *so = dlopen(HELLO_SO, RTLD_NOW | RTLD_LOCAL);
    if (!so)
        fail_msg("dlopen %s: %s", HELLO_SO, dlerror());
    const struct sp_module *def = dlsym(so, SP_MODULE_SYMBOL);
    assert_non_null(def);
    assert_int_equal(def->api_version, SP_API_VERSION);
    assert_non_null(def->http);
    assert_string_equal(def->keys[0].name, "greeting");
    /* Its configuration struct begins with the greeting (set by the key). */
    const char **conf = calloc(1, def->conf_size);
    assert_non_null(conf);
    conf[0] = "Hey";
    char err[128];
    struct sp_module_instance mi = {.name = "hello", .def = def, .conf = conf};
    assert_int_equal(def->init(conf, &mi.state, err, sizeof(err)), 0);
    assert_int_equal(sp_module_register(&mi), 0);

    static struct sp_http_handle hello[] = {{"/hello", "hello", 1}};
    struct sp_http_conf hc;
    conf_defaults(&hc);
    hc.handles = hello;
    hc.nhandles = 1;
    const char req[] = "GET /hello?name=world&q=%22a%22&flag HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /hello/x/.. HTTP/1.1\r\nHost: x\r\n\r\n"
                       "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    struct svc_case *k = exchange_with(&hc, req, sizeof(req) - 1);
    HAS(k, "Content-Type: application/json\r\n");
    HAS(k, "{\"greeting\":\"Hey\",\"path\":\"/hello\",\"query\":{\"name\":\"world\","
           "\"q\":\"%22a%22\",\"flag\":\"\"},\"hits\":1}\n");
    HAS(k, "\"path\":\"/hello/\",\"query\":{},\"hits\":2}");
    HAS(k, "HTTP/1.1 405 Method Not Allowed\r\n");
    free(k);

    sp_module_forget_all();
    def->fini(mi.state);
    free(conf);
    dlclose(so);
    register_modules(); /* the registry as the other tests want it */
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        RT_TEST(test_json_from_query),
        RT_TEST(test_header_echo_and_decoded_path),
        RT_TEST(test_post_whole_body),
        RT_TEST(test_unread_body_dropped),
        RT_TEST(test_body_too_large),
        RT_TEST(test_streamed_body_in_and_out),
        RT_TEST(test_stream_chunked),
        RT_TEST(test_expect_continue),
        RT_TEST(test_file),
        RT_TEST(test_handler_parks),
        RT_TEST(test_no_response_is_500),
        RT_TEST(test_minus_one_closes),
        RT_TEST(test_invalid_header_refused),
        RT_TEST(test_keepalive_pipelining_and_head),
        RT_TEST(test_prefix_routing),
        RT_TEST(test_ready_response),
        RT_TEST(test_root_prefix_and_status_page),
        RT_TEST(test_init_unknown_module),
        RT_TEST(test_example_module),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, setup_modules, teardown_modules);
}
