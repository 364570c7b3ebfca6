/* Configuration loader: a full file read back field by field, every class of
 * error with its exact "file:line: message", and the value parsers. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "skip.h"

#include "http/http_conf.h"
#include "spindle/config.h"
#include "spindle/net.h"
#include "worker.h"

extern const struct sp_service_def sp_service_http, sp_service_echo;

/* A service section's own struct: the HTTP service's, or a field found
 * through its definition's key table (echo keeps its struct private). */
#define HTTP(s) ((const struct sp_http_conf *)(s)->conf)

static int64_t conf_i64(const struct sp_service_conf *s, const char *key)
{
    for (const struct sp_conf_key *k = s->def->keys; k->name != NULL; k++) {
        if (strcmp(k->name, key) == 0)
            return *(const int64_t *)(const void *)((const char *)s->conf + k->offset);
    }
    fail_msg("no key %s in [%s]", key, s->def->name);
    return -1;
}

static char err[SP_CONFIG_ERR_SIZE];

static struct sp_config *load_ok(const char *text, const char *name)
{
    struct sp_config *cfg = sp_config_from_string(text, name, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("unexpected error: %s", err);
    assert_string_equal(err, "");
    return cfg;
}

static void expect_error(const char *text, const char *want)
{
    struct sp_config *cfg = sp_config_from_string(text, "conf/bad.conf", err, sizeof(err));
    if (cfg != NULL || strcmp(err, want) != 0)
        fail_msg("for config:\n%s\nwant: %s\ngot:  %s", text, want, cfg ? "(loaded)" : err);
}

static const char full[] = "; spindle test configuration\n"                     /* 1 */
                           "[master]\n"                                         /* 2 */
                           "workers = 3            ; three processes\n"         /* 3 */
                           "threads = 2\n"                                      /* 4 */
                           "slots = 8\n"                                        /* 5 */
                           "stack_size = 99k\n"                                 /* 6 */
                           "pid_file = run/spindle.pid\n"                       /* 7 */
                           "control_socket = /tmp/spindle.sock\n"               /* 8 */
                           "error_log = logs/error.log\n"                       /* 9 */
                           "shutdown_timeout = 1m30s\n"                         /* 10 */
                           "\n"                                                 /* 11 */
                           "[http main]\n"                                      /* 12 */
                           "listen = 127.0.0.1:8080\n"                          /* 13 */
                           "listen = [::1]:8080\n"                              /* 14 */
                           "root = www\n"                                       /* 15 */
                           "index = home.html\n"                                /* 16 */
                           "status = /_status\n"                                /* 17 */
                           "return /plaintext = 200 text/plain Hello, World!\n" /* 18 */
                           "return /json = 200 application/json {\"message\":\"Hello, World!\"}\n"
                           "keepalive_timeout = 0\n"                    /* 20 */
                           "header_timeout = 500ms\n"                   /* 21 */
                           "body_timeout = 2m\n"                        /* 22 */
                           "max_header_size = 16k\n"                    /* 23 */
                           "max_body_size = 0\n"                        /* 24 */
                           "access_log = /var/log/spindle/access.log\n" /* 25 */
                           "\n"                                         /* 26 */
                           "# a second http service\n"                  /* 27 */
                           "[http other]\n"                             /* 28 */
                           "listen = *:8081\n"                          /* 29 */
                           "\n"                                         /* 30 */
                           "[echo main]\n"                              /* 31 */
                           "listen = localhost:7000\n"                  /* 32 */
                           "idle_timeout = 1h\n";                       /* 33 */

static void test_full(void **state)
{
    struct sp_config *cfg = load_ok(full, "/etc/spindle/spindle.conf");
    const struct sp_service_conf *s;
    const struct sockaddr_in *sin;
    const struct sockaddr_in6 *sin6;
    (void)state;

    assert_string_equal(cfg->path, "/etc/spindle/spindle.conf");
    assert_string_equal(cfg->dir, "/etc/spindle");
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->threads, 2);
    assert_int_equal(cfg->slots, 8);
    assert_int_equal(cfg->stack_size, 100 * 1024); /* rounded up to 4k */
    assert_string_equal(cfg->pid_file, "/etc/spindle/run/spindle.pid");
    assert_string_equal(cfg->control_socket, "/tmp/spindle.sock");
    assert_string_equal(cfg->error_log, "/etc/spindle/logs/error.log");
    assert_int_equal(cfg->shutdown_timeout_ms, 90000);

    assert_int_equal(cfg->nservices, 3);
    s = &cfg->services[0];
    assert_string_equal(s->def->name, "http");
    assert_string_equal(s->name, "main");
    assert_int_equal(s->line, 12);
    assert_string_equal(HTTP(s)->root, "/etc/spindle/www");
    assert_string_equal(HTTP(s)->index, "home.html");
    assert_string_equal(HTTP(s)->status_path, "/_status");
    assert_int_equal(HTTP(s)->nreturns, 2);
    assert_string_equal(HTTP(s)->returns[0].path, "/plaintext");
    assert_int_equal(HTTP(s)->returns[0].status, 200);
    assert_string_equal(HTTP(s)->returns[0].content_type, "text/plain");
    assert_string_equal(HTTP(s)->returns[0].body, "Hello, World!");
    assert_int_equal(HTTP(s)->returns[0].body_len, 13);
    assert_int_equal(HTTP(s)->returns[0].line, 18);
    assert_string_equal(HTTP(s)->returns[1].path, "/json");
    assert_string_equal(HTTP(s)->returns[1].content_type, "application/json");
    assert_string_equal(HTTP(s)->returns[1].body, "{\"message\":\"Hello, World!\"}");
    assert_int_equal(HTTP(s)->returns[1].line, 19);
    assert_int_equal(HTTP(s)->keepalive_timeout_ms, 0);
    assert_int_equal(HTTP(s)->header_timeout_ms, 500);
    assert_int_equal(HTTP(s)->body_timeout_ms, 120000);
    assert_int_equal(HTTP(s)->max_header_size, 16384);
    assert_int_equal(HTTP(s)->max_body_size, 0);
    assert_string_equal(HTTP(s)->access_log, "/var/log/spindle/access.log");

    s = &cfg->services[1];
    assert_string_equal(s->def->name, "http");
    assert_string_equal(s->name, "other");
    assert_null(HTTP(s)->root);
    assert_null(HTTP(s)->status_path);
    assert_null(HTTP(s)->access_log);
    assert_int_equal(HTTP(s)->nreturns, 0);
    assert_string_equal(HTTP(s)->index, "index.html");
    assert_int_equal(HTTP(s)->keepalive_timeout_ms, 75000);

    s = &cfg->services[2];
    assert_string_equal(s->def->name, "echo");
    assert_string_equal(s->name, "main");
    assert_int_equal(s->line, 31);
    assert_int_equal(conf_i64(s, "idle_timeout"), 3600000);

    assert_int_equal(cfg->nlistens, 4);
    sin = (const struct sockaddr_in *)&cfg->listens[0].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(cfg->listens[0].addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(cfg->listens[0].service, 0);
    assert_int_equal(cfg->listens[0].line, 13);
    assert_string_equal(cfg->listens[0].text, "127.0.0.1:8080");

    sin6 = (const struct sockaddr_in6 *)&cfg->listens[1].addr;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_int_equal(ntohs(sin6->sin6_port), 8080);
    assert_int_equal(cfg->listens[1].addrlen, sizeof(struct sockaddr_in6));
    assert_int_equal(cfg->listens[1].service, 0);
    assert_string_equal(cfg->listens[1].text, "[::1]:8080");

    sin = (const struct sockaddr_in *)&cfg->listens[2].addr;
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_ANY);
    assert_int_equal(cfg->listens[2].service, 1);
    assert_int_equal(cfg->listens[2].line, 29);
    assert_string_equal(cfg->listens[2].text, "*:8081");

    assert_int_equal(cfg->listens[3].service, 2);
    assert_string_equal(cfg->listens[3].text, "127.0.0.1:7000");

    /* Lookups by address, as the master does on reload. */
    struct sockaddr_in probe = {.sin_family = AF_INET, .sin_port = htons(7000)};
    probe.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_ptr_equal(sp_config_find_listen(cfg, (struct sockaddr *)&probe), &cfg->listens[3]);
    probe.sin_port = htons(7001);
    assert_null(sp_config_find_listen(cfg, (struct sockaddr *)&probe));
    probe.sin_port = htons(8081); /* 127.0.0.1:8081 is shadowed by *:8081 */
    assert_null(sp_config_find_listen(cfg, (struct sockaddr *)&probe));
    assert_ptr_equal(sp_config_find_conflict(cfg, (struct sockaddr *)&probe), &cfg->listens[2]);
    probe.sin_addr.s_addr = htonl(INADDR_ANY); /* *:8080 would shadow 127.0.0.1:8080 */
    probe.sin_port = htons(8080);
    assert_ptr_equal(sp_config_find_conflict(cfg, (struct sockaddr *)&probe), &cfg->listens[0]);

    sp_config_free(cfg);
}

/* user and group resolve to ids and the user's group list (root exists on
 * every system this runs on). */
static void test_user(void **state)
{
    struct sp_config *cfg =
        load_ok("[master]\nuser = root\n[echo e]\nlisten = 127.0.0.1:7000\n", "/srv/x.conf");
    (void)state;
    assert_string_equal(cfg->user, "root");
    assert_int_equal(cfg->uid, 0);
    assert_int_equal(cfg->gid, 0);
    assert_true(cfg->ngroups >= 1);
    bool has_gid = false;
    for (unsigned i = 0; i < cfg->ngroups; i++)
        has_gid |= cfg->groups[i] == 0;
    assert_true(has_gid);
    sp_config_free(cfg);
}

/* Two configurations in one folder get different default run-time files,
 * in the run directory, named after the file. */
static void test_run_path(void **state)
{
    char a[PATH_MAX], b[PATH_MAX], want[PATH_MAX];
    (void)state;

    assert_int_equal(sp_config_run_path(a, sizeof(a), "/etc/spindle/site-a.conf", "pid"), 0);
    assert_int_equal(sp_config_run_path(b, sizeof(b), "/etc/spindle/site b.ini", "pid"), 0);
    snprintf(want, sizeof(want), "%s/site-a.pid", sp_config_run_dir());
    assert_string_equal(a, want);
    snprintf(want, sizeof(want), "%s/site_b.ini.pid", sp_config_run_dir());
    assert_string_equal(b, want);
    assert_int_equal(sp_config_run_path(a, 8, "/etc/x.conf", "sock"), -ENAMETOOLONG);
}

/* The log keys take one word: off / stderr in any case, or a path. */
static void test_log_keywords(void **state)
{
    (void)state;
    struct sp_config *cfg = load_ok("[master]\nerror_log = STDERR\n[http h]\n"
                                    "listen = 127.0.0.1:80\naccess_log = OFF\n",
                                    "/etc/spindle/x.conf");
    assert_null(cfg->error_log);
    assert_null(HTTP(&cfg->services[0])->access_log);
    sp_config_free(cfg);
    expect_error("[master]\nerror_log = logs/x.log warn\n[echo e]\nlisten = 127.0.0.1:7\n",
                 "conf/bad.conf:2: invalid error_log 'logs/x.log warn': expected one path or "
                 "stderr (spindle logs every level; there is no level to set)");
    expect_error("[http h]\nlisten = 127.0.0.1:80\naccess_log = a.log combined\n",
                 "conf/bad.conf:3: invalid access_log 'a.log combined': expected one path or off "
                 "(no format or options)");
}

/* A config with only what is required: every default. */
static void test_defaults(void **state)
{
    struct sp_config *cfg = load_ok("[echo e]\nlisten = 127.0.0.1:7000\n", "/srv/x.conf");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    (void)state;

    assert_int_equal(cfg->workers, cpus);
    assert_int_equal(cfg->slots, cpus);
    assert_int_equal(cfg->threads, 1);
    assert_int_equal(cfg->stack_size, 64 * 1024);
    assert_false(cfg->cpu_affinity);
    assert_true(cfg->hooks);
    assert_int_equal(cfg->shutdown_timeout_ms, 10000);
    assert_null(cfg->user);
    assert_null(cfg->group);
    char want[PATH_MAX];
    snprintf(want, sizeof(want), "%s/x.pid", sp_config_run_dir());
    assert_string_equal(cfg->pid_file, want);
    snprintf(want, sizeof(want), "%s/x.sock", sp_config_run_dir());
    assert_string_equal(cfg->control_socket, want);
    assert_null(cfg->error_log);
    assert_int_equal(conf_i64(&cfg->services[0], "idle_timeout"), 300000);
    sp_config_free(cfg);

    cfg = load_ok("[master]\ncpu_affinity = auto\nhooks = off\n[echo e]\nlisten = 127.0.0.1:7000\n",
                  "/srv/x.conf");
    assert_true(cfg->cpu_affinity);
    assert_false(cfg->hooks);
    sp_config_free(cfg);

    cfg = load_ok("[http h]\nlisten = 127.0.0.1:80\n", "/srv/x.conf");
    const struct sp_http_conf *h = HTTP(&cfg->services[0]);
    assert_null(h->root);
    assert_string_equal(h->index, "index.html");
    assert_null(h->status_path);
    assert_int_equal(h->nreturns, 0);
    assert_int_equal(h->keepalive_timeout_ms, 75000);
    assert_int_equal(h->header_timeout_ms, 10000);
    assert_int_equal(h->body_timeout_ms, 30000);
    assert_int_equal(h->send_timeout_ms, 60000);
    assert_int_equal(h->max_header_size, 8192);
    assert_int_equal(h->max_body_size, 1024 * 1024);
    assert_null(h->access_log);
    sp_config_free(cfg);
}

static void test_workers_auto(void **state)
{
    struct sp_config *cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    (void)state;

    cfg = load_ok("[master]\nworkers = auto\nslots = auto\n[echo e]\nlisten = 127.0.0.1:7000\n",
                  "/x.conf");
    assert_int_equal(cfg->workers, cpus);
    assert_int_equal(cfg->slots, cpus);
    sp_config_free(cfg);

    /* slots = auto is never below workers. */
    cfg = load_ok("[master]\nworkers = 256\n[echo e]\nlisten = 127.0.0.1:7000\n", "/x.conf");
    assert_int_equal(cfg->workers, 256);
    assert_int_equal(cfg->slots, 256);
    sp_config_free(cfg);
}

static void test_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        /* sections */
        {"[master]\n\n[htp main]\n", "conf/bad.conf:3: unknown section [htp main]"},
        {"[http]\nlisten = 127.0.0.1:80\n",
         "conf/bad.conf:1: section [http] needs a name, e.g. [http main]"},
        {"[master]\n[master]\n", "conf/bad.conf:2: duplicate section [master] (first at line 1)"},
        {"[master x]\n", "conf/bad.conf:1: section [master] takes no name"},
        {"[echo a]\nlisten = 127.0.0.1:1\n[echo a]\nlisten = 127.0.0.1:2\n",
         "conf/bad.conf:3: duplicate section [echo a] (first at line 1)"},
        {"[echo a b]\n",
         "conf/bad.conf:1: invalid name in [echo a b]: use letters, digits, '_', '-' and '.'"},
        {"[echo a/b]\n",
         "conf/bad.conf:1: invalid name in [echo a/b]: use letters, digits, '_', '-' and '.'"},
        {"[master\n", "conf/bad.conf:1: syntax error: missing ']' in section header"},
        {"[master] x\n", "conf/bad.conf:1: syntax error: unexpected text after ']'"},
        {"[http main]\nroot = /srv\n\n[echo e]\nlisten = 127.0.0.1:7\n",
         "conf/bad.conf:1: [http main] has no listen address"},
        {"[echo e]\n", "conf/bad.conf:1: [echo e] has no listen address"},
        {"",
         "conf/bad.conf: no service defined: add a [cmd NAME], [echo NAME] or [http NAME] section"},
        {"[master]\nworkers = 1\n",
         "conf/bad.conf: no service defined: add a [cmd NAME], [echo NAME] or [http NAME] section"},
        /* keys */
        {"workers = 2\n", "conf/bad.conf:1: key 'workers' outside of any section"},
        {"[master]\nworkers = 2\n\n\n[http main]\nlisten = 127.0.0.1:80\nlistn = 1\n",
         "conf/bad.conf:7: unknown key 'listn' in [http main]"},
        {"[master]\nroot = /x\n", "conf/bad.conf:2: unknown key 'root' in [master]"},
        {"[master]\nworkers = 1\nuser = no-such-user-x\n[echo e]\nlisten = 127.0.0.1:7\n",
         "conf/bad.conf:3: invalid user 'no-such-user-x': no such user"},
        {"[master]\nuser = root\ngroup = no-such-group-x\n[echo e]\nlisten = 127.0.0.1:7\n",
         "conf/bad.conf:3: invalid group 'no-such-group-x': no such group"},
        {"[master]\ngroup = root\n[echo e]\nlisten = 127.0.0.1:7\n",
         "conf/bad.conf:2: group 'root' needs user: set user as well"},
        {"[echo e]\nlisten = 127.0.0.1:7\nroot = /x\n",
         "conf/bad.conf:3: unknown key 'root' in [echo e]"},
        {"[echo e]\nlisten = 127.0.0.1:7\nreturn /x = 200 text/plain x\n",
         "conf/bad.conf:3: unknown key 'return /x' in [echo e]"},
        {"[master]\nthreads = 1\nthreads = 2\n",
         "conf/bad.conf:3: duplicate key 'threads' in [master]"},
        {"[master]\nthreads =\n", "conf/bad.conf:2: missing value for threads"},
        {"[master]\nthreads = ; none\n", "conf/bad.conf:2: missing value for threads"},
        {"[master]\njust words\n", "conf/bad.conf:2: syntax error: missing '=' after 'just'"},
        {"[http h]\nlisten 127.0.0.1:80\n",
         "conf/bad.conf:2: syntax error: missing '=' after 'listen'"},
        {"[master]\n= 3\n", "conf/bad.conf:2: syntax error: expected [section] or key = value"},
        /* values */
        {"[master]\nworkers = many\n",
         "conf/bad.conf:2: invalid workers 'many': expected auto or 1..256"},
        {"[master]\nworkers = 0\n",
         "conf/bad.conf:2: invalid workers '0': expected auto or 1..256"},
        {"[master]\nworkers = 257\n",
         "conf/bad.conf:2: invalid workers '257': expected auto or 1..256"},
        {"[master]\nworkers = -1\n",
         "conf/bad.conf:2: invalid workers '-1': expected auto or 1..256"},
        {"[master]\nthreads = 65\n", "conf/bad.conf:2: invalid threads '65': expected 1..64"},
        {"[master]\ncpu_affinity = yes\n",
         "conf/bad.conf:2: invalid cpu_affinity 'yes': expected off or auto"},
        {"[master]\nhooks = yes\n", "conf/bad.conf:2: invalid hooks 'yes': expected on or off"},
        {"[master]\nslots = lots\n",
         "conf/bad.conf:2: invalid slots 'lots': expected auto or 1..256"},
        {"[master]\nworkers = 4\nslots = 2\n[echo e]\nlisten = 127.0.0.1:7\n",
         "conf/bad.conf:3: slots (2) must be at least workers (4)"},
        {"[master]\nstack_size = 64q\n",
         "conf/bad.conf:2: invalid stack_size '64q': expected a size such as 512, 8k or 1m"},
        {"[master]\nstack_size = 4k\n", "conf/bad.conf:2: stack_size '4k' out of range (16k..16m)"},
        {"[master]\nshutdown_timeout = 10 s\n",
         "conf/bad.conf:2: invalid shutdown_timeout '10 s': expected a duration such as 500ms, "
         "10s, 5m or 1h"},
        {"[master]\nshutdown_timeout = 25h\n",
         "conf/bad.conf:2: shutdown_timeout '25h' out of range (0..24h)"},
        {"[http h]\nlisten = 127.0.0.1:80\nheader_timeout = 0\n",
         "conf/bad.conf:3: header_timeout '0' out of range (1ms..24h)"},
        {"[http h]\nlisten = 127.0.0.1:80\nsend_timeout = 25h\n",
         "conf/bad.conf:3: send_timeout '25h' out of range (1ms..24h)"},
        {"[http h]\nlisten = 127.0.0.1:80\nmax_header_size = 2m\n",
         "conf/bad.conf:3: max_header_size '2m' out of range (1k..1m)"},
        {"[http h]\nlisten = 127.0.0.1:80\nmax_body_size = 99999999999999999999999\n",
         "conf/bad.conf:3: max_body_size '99999999999999999999999' out of range (0..1g)"},
        {"[http h]\nlisten = 127.0.0.1:80\nindex = a/b.html\n",
         "conf/bad.conf:3: invalid index 'a/b.html': expected a file name"},
        {"[http h]\nlisten = 127.0.0.1:80\nstatus = _status\n",
         "conf/bad.conf:3: invalid status '_status': expected a path starting with '/'"},
        /* listen */
        {"[echo e]\nlisten = 127.0.0.1\n",
         "conf/bad.conf:2: invalid listen '127.0.0.1': expected HOST:PORT, [IPV6]:PORT or *:PORT"},
        {"[echo e]\nlisten = :7000\n",
         "conf/bad.conf:2: invalid listen ':7000': expected HOST:PORT, [IPV6]:PORT or *:PORT"},
        {"[echo e]\nlisten = 127.0.0.1:0\n",
         "conf/bad.conf:2: invalid listen '127.0.0.1:0': port 0 out of range (1..65535)"},
        {"[echo e]\nlisten = 127.0.0.1:65536\n",
         "conf/bad.conf:2: invalid listen '127.0.0.1:65536': port 65536 out of range (1..65535)"},
        {"[echo e]\nlisten = example.com:80\n",
         "conf/bad.conf:2: invalid listen 'example.com:80': 'example.com' is not an IP address "
         "(host names are not resolved: use an IPv4 address, [IPV6], localhost or *)"},
        {"[echo e]\nlisten = 256.0.0.1:80\n",
         "conf/bad.conf:2: invalid listen '256.0.0.1:80': '256.0.0.1' is not an IP address "
         "(host names are not resolved: use an IPv4 address, [IPV6], localhost or *)"},
        {"[echo e]\nlisten = ::1:80\n",
         "conf/bad.conf:2: invalid listen '::1:80': expected HOST:PORT, [IPV6]:PORT or *:PORT"},
        {"[echo e]\nlisten = [::1:80\n",
         "conf/bad.conf:2: invalid listen '[::1:80': expected HOST:PORT, [IPV6]:PORT or *:PORT"},
        {"[echo e]\nlisten = [127.0.0.1]:80\n",
         "conf/bad.conf:2: invalid listen '[127.0.0.1]:80': '127.0.0.1' is not an IPv6 address"},
        {"[echo e]\nlisten = 127.0.0.1:7000\nlisten = 127.0.0.1:7000\n",
         "conf/bad.conf:3: duplicate listen 127.0.0.1:7000 (also at line 2)"},
        {"[echo e]\nlisten = [::1]:7000\nlisten = [0:0::1]:7000\n",
         "conf/bad.conf:3: duplicate listen [::1]:7000 (also at line 2)"},
        /* returns */
        {"[http h]\nlisten = 127.0.0.1:80\nreturn = 200 text/plain x\n",
         "conf/bad.conf:3: invalid return: the path must start with '/' and hold no spaces or "
         "control characters"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn=200 text/plain x\n",
         "conf/bad.conf:3: return needs a path: return PATH = STATUS CONTENT-TYPE [BODY]"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn x = 200 text/plain x\n",
         "conf/bad.conf:3: invalid return: the path must start with '/' and hold no spaces or "
         "control characters"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 99 text/plain x\n",
         "conf/bad.conf:3: invalid return: the status must be 200..599"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 2000 text/plain x\n",
         "conf/bad.conf:3: invalid return: the status must be 200..599"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 600 text/plain x\n",
         "conf/bad.conf:3: invalid return: the status must be 200..599"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 200\n",
         "conf/bad.conf:3: invalid return: expected 'return PATH = STATUS CONTENT-TYPE [BODY]'"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 200 plain hello\n",
         "conf/bad.conf:3: invalid return: the content type must be TYPE/SUBTYPE"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 200 text/ hello\n",
         "conf/bad.conf:3: invalid return: the content type must be TYPE/SUBTYPE"},
        {"[http h]\nlisten = 127.0.0.1:80\nreturn /x = 200 text/plain a\nreturn /x = 201 "
         "text/plain b\n",
         "conf/bad.conf:4: duplicate return path '/x' (also at line 3)"},
        {"[http h]\nlisten = 127.0.0.1:80\nstatus = /s\nreturn /s = 200 text/plain a\n",
         "conf/bad.conf:4: return path '/s' is also the status path"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x = m\nhandle /y = nope\n[module m]\npath = "
         "m.so\n",
         "conf/bad.conf:4: handle /y: no [module nope] section"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x\n",
         "conf/bad.conf:3: syntax error: expected [section] or key = value"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle = m\n",
         "conf/bad.conf:3: expected 'handle PREFIX = MODULE'"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x = a b\n",
         "conf/bad.conf:3: expected 'handle PREFIX = MODULE'"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle x = m\n",
         "conf/bad.conf:3: invalid handle prefix 'x': expected a path starting with '/'"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x?y = m\n",
         "conf/bad.conf:3: invalid handle prefix '/x?y': expected a path starting with '/'"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x = m\nhandle /x/ = n\n",
         "conf/bad.conf:4: duplicate prefix '/x' (also at line 3)"},
        /* [upstream NAME] and proxy lines */
        {"[http h]\nlisten = 127.0.0.1:80\nproxy /api = app\n",
         "conf/bad.conf:3: proxy /api: no [upstream app] section"},
        {"[http h]\nlisten = 127.0.0.1:80\nproxy /api\n",
         "conf/bad.conf:3: syntax error: expected [section] or key = value"},
        {"[http h]\nlisten = 127.0.0.1:80\nproxy api = app\n",
         "conf/bad.conf:3: invalid proxy prefix 'api': expected a path starting with '/'"},
        {"[http h]\nlisten = 127.0.0.1:80\nproxy /api = a b\n",
         "conf/bad.conf:3: expected 'proxy PREFIX = UPSTREAM'"},
        {"[http h]\nlisten = 127.0.0.1:80\nhandle /x = m\nproxy /x/ = app\n",
         "conf/bad.conf:4: duplicate prefix '/x' (also at line 3)"},
        {"[upstream app]\nkeepalive = 2\n[echo e]\nlisten = 127.0.0.1:80\n",
         "conf/bad.conf:1: [upstream app] has no server (server = HOST:PORT or unix:PATH)"},
        {"[upstream app]\nserver = example.com:80\n",
         "conf/bad.conf:2: invalid server 'example.com:80': expected IPV4:PORT, [IPV6]:PORT, "
         "localhost:PORT or unix:PATH (host names are not resolved)"},
        {"[upstream app]\nserver = *:80\n",
         "conf/bad.conf:2: invalid server '*:80': expected IPV4:PORT, [IPV6]:PORT, "
         "localhost:PORT or unix:PATH (host names are not resolved)"},
        {"[upstream app]\nserver = 127.0.0.1:70000\n",
         "conf/bad.conf:2: invalid server '127.0.0.1:70000': port out of range (1..65535)"},
        {"[upstream app]\nserver = 127.0.0.1:80 weight=0\n",
         "conf/bad.conf:2: invalid server weight '0': expected 1..1000"},
        {"[upstream app]\nserver = 127.0.0.1:80 max_fails=x\n",
         "conf/bad.conf:2: invalid server max_fails 'x': expected 0..1000"},
        {"[upstream app]\nserver = 127.0.0.1:80 fail_timeout=forever\n",
         "conf/bad.conf:2: invalid server fail_timeout 'forever': expected a duration 1ms..24h"},
        {"[upstream app]\nserver = 127.0.0.1:80 backup\n",
         "conf/bad.conf:2: invalid server parameter 'backup': expected weight=N, max_fails=N or "
         "fail_timeout=DURATION"},
        {"[upstream app]\nserver = 127.0.0.1:80\nserver = 127.0.0.1:80 weight=2\n",
         "conf/bad.conf:3: duplicate server '127.0.0.1:80' (also at line 2)"},
        {"[upstream app]\nserver = unix:\n",
         "conf/bad.conf:2: invalid server 'unix:': expected unix:PATH (at most 107 bytes)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nbalance = random\n",
         "conf/bad.conf:3: invalid balance 'random': expected round_robin, least_conn or hash"},
        {"[upstream app]\nserver = 127.0.0.1:80\nkeepalive = 5000\n",
         "conf/bad.conf:3: invalid keepalive '5000': expected 0..4096 (idle connections)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nkeepalive_burst = 2h\n",
         "conf/bad.conf:3: keepalive_burst '2h' out of range (0..1h)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nread_timeout = 0\n",
         "conf/bad.conf:3: read_timeout '0' out of range (1ms..24h)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nhealth_check = /healthz\n",
         "conf/bad.conf:3: invalid health_check '/healthz': expected PATH INTERVAL (a path "
         "starting with '/', an interval 100ms..24h)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nhealth_check = healthz 2s\n",
         "conf/bad.conf:3: invalid health_check 'healthz 2s': expected PATH INTERVAL (a path "
         "starting with '/', an interval 100ms..24h)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nhealth_check = /h 10ms\n",
         "conf/bad.conf:3: invalid health_check '/h 10ms': expected PATH INTERVAL (a path "
         "starting with '/', an interval 100ms..24h)"},
        {"[upstream app]\nserver = 127.0.0.1:80\nkeepalive = 1\nkeepalive = 2\n",
         "conf/bad.conf:4: duplicate key 'keepalive' in [upstream app]"},
        {"[upstream app]\nserver = 127.0.0.1:80\n[upstream app]\nserver = 127.0.0.1:81\n",
         "conf/bad.conf:3: duplicate section [upstream app] (first at line 1)"},
        {"[upstream]\nserver = 127.0.0.1:80\n",
         "conf/bad.conf:1: section [upstream] needs one name, e.g. [upstream app]"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].want);
}

/* The same address may not appear twice anywhere in the file, and a wildcard
 * may not shadow a specific address of the same family and port. */
static void test_duplicate_across_sections(void **state)
{
    (void)state;
    expect_error("[http a]\n"
                 "listen = 127.0.0.1:8080\n"
                 "[echo b]\n"
                 "listen = 127.0.0.1:7000\n"
                 "[http c]\n"
                 "listen = [::1]:8080\n"
                 "listen = localhost:8080\n",
                 "conf/bad.conf:7: duplicate listen 127.0.0.1:8080 (also at line 2)");
    expect_error("[http a]\nlisten = 127.0.0.1:8080\n[echo b]\nlisten = *:8080\n",
                 "conf/bad.conf:4: listen *:8080 overlaps 127.0.0.1:8080 (line 2)");
    expect_error("[http a]\nlisten = [::]:8080\n[echo b]\nlisten = [::1]:8080\n",
                 "conf/bad.conf:4: listen [::1]:8080 overlaps [::]:8080 (line 2)");

    /* Same port on the other family, or another port, is fine. */
    struct sp_config *cfg = load_ok("[http a]\nlisten = *:8080\nlisten = [::]:8080\n"
                                    "[echo b]\nlisten = 127.0.0.1:8081\n",
                                    "/x.conf");
    assert_int_equal(cfg->nlistens, 3);
    assert_string_equal(cfg->listens[1].text, "[::]:8080");
    sp_config_free(cfg);
}

static void test_ipv6(void **state)
{
    struct sp_config *cfg =
        load_ok("[echo e]\nlisten = [::]:7000\nlisten = [fe80::1:2]:7001\n", "/x.conf");
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&cfg->listens[0].addr;
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&cfg->listens[1].addr;
    struct in6_addr want;
    (void)state;

    assert_int_equal(a->sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr));
    assert_int_equal(ntohs(a->sin6_port), 7000);
    assert_int_equal(inet_pton(AF_INET6, "fe80::1:2", &want), 1);
    assert_memory_equal(&b->sin6_addr, &want, sizeof(want));
    assert_int_equal(ntohs(b->sin6_port), 7001);
    assert_string_equal(cfg->listens[1].text, "[fe80::1:2]:7001");
    sp_config_free(cfg);
}

static void test_paths(void **state)
{
    struct sp_config *cfg;
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    (void)state;

    cfg = load_ok("[master]\npid_file = ../run/./x.pid\nerror_log = stderr\n"
                  "[http h]\nlisten = 127.0.0.1:80\nroot = ./www/../site//\naccess_log = off\n",
                  "/etc/spindle/conf.d/a.conf");
    assert_string_equal(cfg->dir, "/etc/spindle/conf.d");
    assert_string_equal(cfg->pid_file, "/etc/spindle/run/x.pid");
    assert_null(cfg->error_log);
    assert_string_equal(HTTP(&cfg->services[0])->root, "/etc/spindle/conf.d/site");
    assert_null(HTTP(&cfg->services[0])->access_log);
    sp_config_free(cfg);

    /* A relative file name is anchored at the current directory. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    cfg = load_ok("[http h]\nlisten = 127.0.0.1:80\nroot = www\n", "conf/spindle.conf");
    snprintf(want, sizeof(want), "%s/conf/www", strcmp(cwd, "/") == 0 ? "" : cwd);
    assert_string_equal(HTTP(&cfg->services[0])->root, want);
    sp_config_free(cfg);
    cfg = load_ok("[http h]\nlisten = 127.0.0.1:80\nroot = /\n", "spindle.conf");
    assert_string_equal(cfg->dir, cwd);
    assert_string_equal(HTTP(&cfg->services[0])->root, "/");
    sp_config_free(cfg);

    /* The control socket must fit in a sockaddr_un. */
    char text[512];
    snprintf(text, sizeof(text), "[master]\ncontrol_socket = /%0120d\n[echo e]\nlisten = *:7\n", 0);
    cfg = sp_config_from_string(text, "/x.conf", err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "/x.conf:2: control_socket '/000"));
    assert_non_null(strstr(err, "too long for a unix socket (max 107 bytes)"));

    static const struct {
        const char *base, *path, *want;
    } joins[] = {
        {"/a/b", "c", "/a/b/c"},           {"/a/b", "/c", "/c"}, {"/a/b", "../../..", "/"},
        {"/a/b/", "./c/./d/", "/a/b/c/d"}, {"/", ".", "/"},      {"/a//b", "c/../d", "/a/b/d"},
        {"/a", "..x/y", "/a/..x/y"},
    };
    for (size_t i = 0; i < sizeof(joins) / sizeof(joins[0]); i++) {
        char out[64];
        assert_int_equal(sp_config_join_path(out, sizeof(out), joins[i].base, joins[i].path), 0);
        assert_string_equal(out, joins[i].want);
    }
    char small[9]; /* "/abc/def" and its NUL */
    assert_int_equal(sp_config_join_path(small, sizeof(small), "/abc", "defg"), -ENAMETOOLONG);
    assert_int_equal(sp_config_join_path(small, sizeof(small), "/abc", "def"), 0);
    assert_string_equal(small, "/abc/def");
}

/* ';' after a space starts a comment, except on return lines, whose body is
 * the rest of the line; '#' comments only at the start of a line. */
static void test_inline_comments(void **state)
{
    struct sp_config *cfg =
        load_ok("[http h]   ; the section\n"
                "listen = 127.0.0.1:80 ; here\n"
                "index = a;b.html\n"
                "return /a = 200 application/json {\"k\": \"v ; w\", \"x\": 1} ; not a comment\n"
                "return /b:c = 200 text/plain;charset=utf-8 key=value; a=b\n"
                "return /c = 204 text/plain\n"
                "return /d = 200 text/plain    spaced   \r\n"
                "; return /e = 200 text/plain commented out\n"
                "# return /f = 200 text/plain commented out\n",
                "/x.conf");
    const struct sp_http_conf *h = HTTP(&cfg->services[0]);
    (void)state;

    assert_string_equal(cfg->listens[0].text, "127.0.0.1:80");
    assert_string_equal(h->index, "a;b.html");
    assert_int_equal(h->nreturns, 4);
    assert_string_equal(h->returns[0].body, "{\"k\": \"v ; w\", \"x\": 1} ; not a comment");
    assert_string_equal(h->returns[1].path, "/b:c");
    assert_string_equal(h->returns[1].content_type, "text/plain;charset=utf-8");
    assert_string_equal(h->returns[1].body, "key=value; a=b");
    assert_int_equal(h->returns[2].status, 204);
    assert_string_equal(h->returns[2].body, "");
    assert_int_equal(h->returns[2].body_len, 0);
    assert_string_equal(h->returns[3].body, "spaced");
    sp_config_free(cfg);
}

/* handle lines: repeatable, the prefix kept without its trailing '/', a
 * comment after the module's name. */
static void test_http_handle(void **state)
{
    struct sp_config *cfg = load_ok("[http h]\n"
                                    "listen = 127.0.0.1:80\n"
                                    "handle /hello = hello\n"
                                    "handle   /api/v1/  =  api ; the API\n"
                                    "handle / = site\n"
                                    "[module hello]\npath = /m/hello.so\n"
                                    "[module api]\npath = /m/api.so\n"
                                    "[module site]\npath = /m/site.so\n",
                                    "/x.conf");
    const struct sp_http_conf *h = HTTP(&cfg->services[0]);
    (void)state;

    assert_int_equal(h->nhandles, 3);
    assert_string_equal(h->handles[0].prefix, "/hello");
    assert_string_equal(h->handles[0].module, "hello");
    assert_int_equal(h->handles[0].line, 3);
    assert_string_equal(h->handles[1].prefix, "/api/v1");
    assert_string_equal(h->handles[1].module, "api");
    assert_string_equal(h->handles[2].prefix, "/");
    assert_string_equal(h->handles[2].module, "site");
    sp_config_free(cfg);
}

/* [upstream NAME]: servers with their parameters and defaults, the
 * section's keys, and proxy lines naming it before or after it. */
static void test_upstream(void **state)
{
    struct sp_config *cfg = load_ok("[http h]\n"
                                    "listen = 127.0.0.1:80\n"
                                    "proxy /api/ = app ; the API\n"
                                    "handle /api/v2 = m\n"
                                    "[upstream app]\n"
                                    "server = 127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=5s\n"
                                    "server = [::1]:9002\n"
                                    "server = unix:run/app.sock ; relative to the file\n"
                                    "balance = round_robin\n"
                                    "keepalive = 8\n"
                                    "keepalive_timeout = 30s\n"
                                    "keepalive_burst = 0\n"
                                    "connect_timeout = 250ms\n"
                                    "read_timeout = 5s\n"
                                    "send_timeout = 6s\n"
                                    "health_check = /healthz?full=1 2s ; optional\n"
                                    "[upstream other]\n"
                                    "server = localhost:80\n"
                                    "[upstream lc]\nserver = localhost:81\nbalance = least_conn\n"
                                    "[upstream h]\nserver = localhost:82\nbalance = hash\n"
                                    "[module m]\npath = /m/m.so\n",
                                    "/etc/x.conf");
    const struct sp_http_conf *h = HTTP(&cfg->services[0]);
    const struct sp_upstream_conf *u = sp_config_find_upstream(cfg, "app"), *o;
    (void)state;

    assert_int_equal(h->nproxies, 1);
    assert_string_equal(h->proxies[0].prefix, "/api");
    assert_string_equal(h->proxies[0].upstream, "app");
    assert_int_equal(h->proxies[0].line, 3);
    assert_int_equal(h->nhandles, 1);
    assert_int_equal(cfg->nupstreams, 4);
    assert_int_equal(sp_config_find_upstream(cfg, "lc")->balance, SP_BALANCE_LEAST_CONN);
    assert_int_equal(sp_config_find_upstream(cfg, "h")->balance, SP_BALANCE_HASH);
    assert_non_null(u);
    assert_int_equal(u->line, 5);
    assert_int_equal(u->nservers, 3);
    assert_string_equal(u->servers[0].text, "127.0.0.1:9001");
    assert_int_equal(u->servers[0].addr.ss_family, AF_INET);
    assert_int_equal(u->servers[0].weight, 2);
    assert_int_equal(u->servers[0].max_fails, 3);
    assert_int_equal(u->servers[0].fail_timeout_ms, 5000);
    assert_int_equal(u->servers[0].line, 6);
    assert_int_equal(u->servers[1].addr.ss_family, AF_INET6);
    assert_int_equal(u->servers[1].weight, 1);
    assert_int_equal(u->servers[1].max_fails, 1);
    assert_int_equal(u->servers[1].fail_timeout_ms, 10000);
    assert_int_equal(u->servers[2].addr.ss_family, AF_UNIX);
    assert_string_equal(u->servers[2].text, "unix:/etc/run/app.sock");
    assert_int_equal(u->balance, SP_BALANCE_ROUND_ROBIN);
    assert_int_equal(u->keepalive, 8);
    assert_int_equal(u->keepalive_timeout_ms, 30000);
    assert_int_equal(u->keepalive_burst_ms, 0);
    assert_int_equal(u->connect_timeout_ms, 250);
    assert_int_equal(u->read_timeout_ms, 5000);
    assert_int_equal(u->send_timeout_ms, 6000);
    assert_string_equal(u->health_path, "/healthz?full=1");
    assert_int_equal(u->health_interval_ms, 2000);
    o = sp_config_find_upstream(cfg, "other");
    assert_non_null(o);
    assert_string_equal(o->servers[0].text, "localhost:80");
    assert_int_equal(o->keepalive, 32);
    assert_int_equal(o->keepalive_timeout_ms, 60000);
    assert_int_equal(o->keepalive_burst_ms, 100);
    assert_int_equal(o->connect_timeout_ms, 1000);
    assert_int_equal(o->read_timeout_ms, 30000);
    assert_int_equal(o->send_timeout_ms, 30000);
    assert_null(o->health_path);
    assert_null(sp_config_find_upstream(cfg, "nope"));
    sp_config_free(cfg);
}

/* Indentation, CRLF, a BOM and long lines do what a reader expects. */
static void test_layout(void **state)
{
    char *text = malloc(SP_CONFIG_MAX_LINE + 256);
    struct sp_config *cfg;
    (void)state;

    cfg = load_ok("\xEF\xBB\xBF[master]\r\n"
                  "    workers = 2\r\n"
                  "\tthreads = 3\r\n"
                  "[echo e]\r\n"
                  "  listen = 127.0.0.1:7000\r\n",
                  "/x.conf");
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->threads, 3);
    sp_config_free(cfg);

    /* A body far beyond a 200-byte line buffer. */
    int n = snprintf(text, 256, "[http h]\nlisten = 127.0.0.1:80\nreturn /big = 200 text/plain ");
    memset(text + n, 'b', 3000);
    strcpy(text + n + 3000, "\nroot = /srv\n");
    cfg = load_ok(text, "/x.conf");
    assert_int_equal(HTTP(&cfg->services[0])->returns[0].body_len, 3000);
    assert_string_equal(HTTP(&cfg->services[0])->root, "/srv");
    sp_config_free(cfg);

    /* A root path longer than 200 bytes. */
    n = snprintf(text, 256, "[http h]\nlisten = 127.0.0.1:80\nroot = /");
    memset(text + n, 'r', 300);
    strcpy(text + n + 300, "\n");
    cfg = load_ok(text, "/x.conf");
    assert_int_equal(strlen(HTTP(&cfg->services[0])->root), 301);
    sp_config_free(cfg);

    n = snprintf(text, 256, "[echo e]\nlisten = 127.0.0.1:7\n; ");
    memset(text + n, 'c', SP_CONFIG_MAX_LINE);
    strcpy(text + n + SP_CONFIG_MAX_LINE, "\n");
    expect_error(text, "conf/bad.conf:3: line too long (max 4096 bytes)");

    assert_null(sp_config_from_buffer("[echo e]\nlisten = 127.0.0.1:7\n\0\n", 32, "n.conf", err,
                                      sizeof(err)));
    assert_string_equal(err, "n.conf:3: NUL byte in line");
    free(text);
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/spindle-test-config-XXXXXX", path[128], root[256];
    struct sp_config *cfg;
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    assert_null(sp_config_load(path, err, sizeof(err)));
    snprintf(root, sizeof(root), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, root);

    snprintf(path, sizeof(path), "%s/spindle.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[http h]\nlisten = 127.0.0.1:8080\nroot = www\n\n[echo e]\nlisten = 127.0.0.1:8080\n",
          f);
    fclose(f);
    assert_null(sp_config_load(path, err, sizeof(err)));
    snprintf(root, sizeof(root), "%s:6: duplicate listen 127.0.0.1:8080 (also at line 2)", path);
    assert_string_equal(err, root);

    f = fopen(path, "w");
    fputs("[http h]\nlisten = 127.0.0.1:8080\nroot = www\n", f);
    fclose(f);
    cfg = sp_config_load(path, err, sizeof(err));
    assert_non_null(cfg);
    snprintf(root, sizeof(root), "%s/www", dir);
    assert_string_equal(HTTP(&cfg->services[0])->root, root);
    sp_config_free(cfg);

    /* Loading created nothing beside the file: no pid file, no socket. */
    snprintf(root, sizeof(root), "%s/spindle.pid", dir);
    assert_int_equal(access(root, F_OK), -1);
    snprintf(root, sizeof(root), "%s/spindle.sock", dir);
    assert_int_equal(access(root, F_OK), -1);

    assert_null(sp_config_load(dir, err, sizeof(err)));
    snprintf(root, sizeof(root), "%s: cannot read: Is a directory", dir);
    assert_string_equal(err, root);

    unlink(path);
    rmdir(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Expects loading dir/main.conf to fail with want, in which every "@" stands
 * for dir. */
static void expect_load_error(const char *dir, const char *want)
{
    char path[512], full[2048];
    size_t n = 0;

    for (const char *p = want; *p && n < sizeof(full) - 256; p++) {
        if (*p == '@')
            n += (size_t)snprintf(full + n, sizeof(full) - n, "%s", dir);
        else
            full[n++] = *p;
    }
    full[n] = '\0';
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    struct sp_config *cfg = sp_config_load(path, err, sizeof(err));
    if (cfg != NULL || strcmp(err, full) != 0)
        fail_msg("want: %s\ngot:  %s", full, cfg ? "(loaded)" : err);
}

/* include = GLOB: files relative to the including file's directory, in
 * alphabetical order, keys at a file's top in the includer's section,
 * sections ending with the file that opens them, and every error naming the
 * file, its line and the include lines that led to it. */
static void test_include(void **state)
{
    char dir[] = "/tmp/spindle-test-config-XXXXXX", path[512], sub[512], want[1024];
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/conf.d", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    write_file(dir, "main.conf",
               "[master]\n"                   /* 1 */
               "workers = 1\n"                /* 2 */
               "include = master.inc\n"       /* 3 */
               "include = conf.d/*.conf\n"    /* 4 */
               "include = conf.d/*.nothing\n" /* 5: a pattern may match nothing */
               "[echo e]\n"                   /* 6: a section after them is fine */
               "listen = 127.0.0.1:9003\n");  /* 7 */
    write_file(dir, "master.inc", "threads = 3\n");
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9002\nroot = www\n");
    write_file(sub, "a.conf", "; first\n[http a]\nlisten = 127.0.0.1:9001\n");

    struct sp_config *cfg = sp_config_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->threads, 3); /* the included file's key went to [master] */
    assert_int_equal(cfg->nservices, 3);
    assert_string_equal(cfg->services[0].name, "a"); /* alphabetical */
    assert_string_equal(cfg->services[1].name, "b");
    assert_string_equal(cfg->services[2].name, "e");
    /* Paths in any file are relative to the main file's directory. */
    snprintf(want, sizeof(want), "%s/www", dir);
    assert_string_equal(HTTP(&cfg->services[1])->root, want);
    char where[1024];
    snprintf(want, sizeof(want), "%s/conf.d/b.conf:1 (included from %s:4)", dir, path);
    assert_string_equal(sp_config_where(cfg, cfg->services[1].line, where, sizeof(where)), want);
    snprintf(want, sizeof(want), "%s:6", path);
    assert_string_equal(sp_config_where(cfg, cfg->services[2].line, where, sizeof(where)), want);
    sp_config_free(cfg);

    /* An error in an included file, and one two includes deep. */
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9002\nbogus = 1\n");
    expect_load_error(dir, "@/conf.d/b.conf:3: unknown key 'bogus' in [http b] "
                           "(included from @/main.conf:4)");
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9002\ninclude = ../deep.inc\n");
    write_file(dir, "deep.inc", "\n\nworkers = x\n");
    expect_load_error(dir, "@/deep.inc:3: unknown key 'workers' in [http b] "
                           "(included from @/conf.d/b.conf:3) (included from @/main.conf:4)");

    /* A duplicate across files names the other file; the section of a file
     * is checked in its own file. */
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9001\n");
    expect_load_error(dir, "@/conf.d/b.conf:2: duplicate listen 127.0.0.1:9001 (also at "
                           "@/conf.d/a.conf:3) (included from @/main.conf:4)");
    write_file(sub, "b.conf", "[http b]\n");
    expect_load_error(dir, "@/conf.d/b.conf:1: [http b] has no listen address "
                           "(included from @/main.conf:4)");

    /* The sections of an included file end with it. */
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9002\n");
    write_file(dir, "main.conf", "[master]\ninclude = conf.d/*.conf\nworkers = 1\n");
    expect_load_error(dir, "@/main.conf:3: key 'workers' outside of any section: the sections of "
                           "@/conf.d/b.conf ended with that file (start a section here, or move "
                           "the key above the include)");

    /* A directory among the matches. */
    write_file(dir, "main.conf", "[master]\nworkers = 1\ninclude = conf.d/*\n");
    snprintf(want, sizeof(want), "%s/conf.d/sub", dir);
    assert_int_equal(mkdir(want, 0755), 0);
    expect_load_error(dir, "@/main.conf:3: include @/conf.d/sub: not a regular file");
    rmdir(want);

    /* A missing plain file, a cycle, nesting too deep. */
    write_file(dir, "main.conf", "[master]\nworkers = 1\ninclude = missing.conf\n");
    expect_load_error(dir, "@/main.conf:3: include @/missing.conf: cannot open: No such file or "
                           "directory");
    write_file(dir, "main.conf", "include = conf.d/*.conf\n");
    write_file(sub, "b.conf", "[http b]\nlisten = 127.0.0.1:9002\ninclude = ../main.conf\n");
    expect_load_error(dir, "@/conf.d/b.conf:3: include cycle: @/main.conf is already being read "
                           "(included from @/main.conf:1)");
    unlink(strcat(strcpy(path, sub), "/a.conf"));
    unlink(strcat(strcpy(path, sub), "/b.conf"));
    write_file(dir, "main.conf", "include = n1.inc\n[echo e]\nlisten = 127.0.0.1:9003\n");
    for (int i = 1; i <= 9; i++) {
        char name[32], text[64];
        snprintf(name, sizeof(name), "n%d.inc", i);
        snprintf(text, sizeof(text), "include = n%d.inc\n", i + 1);
        write_file(dir, name, i < 9 ? text : "\n");
    }
    assert_null(sp_config_load(strcat(strcpy(path, dir), "/main.conf"), err, sizeof(err)));
    assert_non_null(strstr(err, "/n8.inc:1: include n9.inc: includes nested too deeply (max 8 "
                                "levels) (included from "));
    write_file(dir, "n8.inc", "\n");
    cfg = sp_config_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("8 levels: %s", err);
    sp_config_free(cfg);

    for (int i = 1; i <= 9; i++) {
        snprintf(path, sizeof(path), "%s/n%d.inc", dir, i);
        unlink(path);
    }
    const char *names[] = {"main.conf", "master.inc", "deep.inc"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(sub);
    rmdir(dir);
}

/* The example shipped at the top of the tree loads and says what its
 * comments say. */
static void test_example(void **state)
{
    const char *src = getenv("SPINDLE_SRCDIR");
    char path[PATH_MAX], want[PATH_MAX + 8];
    struct sp_config *cfg;
    (void)state;

    if (src == NULL)
        SKIP("SPINDLE_SRCDIR is not set");
    snprintf(path, sizeof(path), "%s/spindle.conf.example", src);
    cfg = sp_config_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->workers, 2);
    assert_null(cfg->error_log);
    assert_int_equal(cfg->nservices, 3);
    assert_string_equal(cfg->services[0].def->name, "http");
    snprintf(want, sizeof(want), "%s/www", cfg->dir);
    assert_string_equal(HTTP(&cfg->services[0])->root, want);
    assert_string_equal(HTTP(&cfg->services[0])->status_path, "/_status");
    assert_int_equal(HTTP(&cfg->services[0])->nreturns, 2);
    assert_int_equal(HTTP(&cfg->services[0])->send_timeout_ms, 60 * 1000);
    assert_string_equal(HTTP(&cfg->services[0])->returns[1].body,
                        "{\"message\":\"Hello, World!\"}");
    assert_string_equal(cfg->services[1].def->name, "echo");
    assert_string_equal(cfg->services[2].def->name, "cmd");
    assert_int_equal(cfg->nlistens, 3);
    assert_string_equal(cfg->listens[0].text, "127.0.0.1:8080");
    assert_string_equal(cfg->listens[1].text, "127.0.0.1:7000");
    assert_string_equal(cfg->listens[2].text, "127.0.0.1:6380");
    sp_config_free(cfg);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *s;
        int rc;
        size_t want;
    } cases[] = {
        {"0", 0, 0},
        {"512", 0, 512},
        {"8k", 0, 8192},
        {"8K", 0, 8192},
        {"1m", 0, 1048576},
        {"3M", 0, 3145728},
        {"2g", 0, UINT64_C(2147483648)},
        {"", -EINVAL, 0},
        {"k", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"+1", -EINVAL, 0},
        {"1kb", -EINVAL, 0},
        {"1 k", -EINVAL, 0},
        {"1.5k", -EINVAL, 0},
        {" 1", -EINVAL, 0},
        {"1t", -EINVAL, 0},
        {"18446744073709551615", 0, SIZE_MAX},
        {"18446744073709551616", -ERANGE, 0},
        {"17179869184g", -ERANGE, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t v = 12345;
        int rc = sp_parse_size(cases[i].s, &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].want))
            fail_msg("sp_parse_size(\"%s\") = %d, %zu", cases[i].s, rc, v);
    }
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int rc;
        int64_t want;
    } cases[] = {
        {"0", 0, 0},
        {"10", 0, 10000},
        {"10s", 0, 10000},
        {"500ms", 0, 500},
        {"5m", 0, 300000},
        {"2h", 0, 7200000},
        {"1m30s", 0, 90000},
        {"1h1m1s1ms", 0, 3661001},
        {"0ms", 0, 0},
        {"", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {"1d", -EINVAL, 0},
        {"1S", -EINVAL, 0},
        {"1m30", -EINVAL, 0},
        {"1.5s", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"10 s", -EINVAL, 0},
        {"9223372036854775807ms", 0, INT64_MAX},
        {"9223372036854775808ms", -ERANGE, 0},
        {"9223372036854776s", -ERANGE, 0},
        {"9223372036854775807ms1ms", -ERANGE, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = 12345;
        int rc = sp_parse_duration(cases[i].s, &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].want))
            fail_msg("sp_parse_duration(\"%s\") = %d, %lld", cases[i].s, rc, (long long)v);
    }
}

/* A port out of range and a host name get their own errors. */
static void test_parse_listen_faults(void **state)
{
    static const struct {
        const char *s;
        int rc;
    } cases[] = {
        {"127.0.0.1:65536", -ERANGE},
        {"*:0", -ERANGE},
        {"*:99999999999999999999", -ERANGE},
        {"example.com:80", -EADDRNOTAVAIL},
        {"1.2.3:80", -EADDRNOTAVAIL},
        {"[example]:80", -EADDRNOTAVAIL},
        {"::1:80", -EINVAL},
        {"*:80x", -EINVAL},
        {"*:-1", -EINVAL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        int rc = sp_parse_listen(cases[i].s, &ss, &len);
        if (rc != cases[i].rc)
            fail_msg("sp_parse_listen(\"%s\") = %d, want %d", cases[i].s, rc, cases[i].rc);
    }
}

static void test_parse_listen(void **state)
{
    static const struct {
        const char *s, *text;
    } cases[] = {
        {"127.0.0.1:80", "127.0.0.1:80"},
        {"localhost:8080", "127.0.0.1:8080"},
        {"*:1", "*:1"},
        {"0.0.0.0:65535", "*:65535"},
        {"[::1]:80", "[::1]:80"},
        {"[::]:80", "[::]:80"},
        {"[::ffff:1.2.3.4]:9", "[::ffff:1.2.3.4]:9"},
        {"80", NULL},
        {":80", NULL},
        {"*:", NULL},
        {"*:x", NULL},
        {"*:80x", NULL},
        {"[]:80", NULL},
        {"[::1]80", NULL},
        {"1.2.3:80", NULL},
        {"localhost6:80", NULL},
        {"*:-1", NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char text[64];
        int rc = sp_parse_listen(cases[i].s, &ss, &len);
        if (cases[i].text == NULL) {
            if (rc >= 0)
                fail_msg("sp_parse_listen(\"%s\") accepted", cases[i].s);
            continue;
        }
        if (rc != 0)
            fail_msg("sp_parse_listen(\"%s\") = %d", cases[i].s, rc);
        sp_net_format((struct sockaddr *)&ss, text, sizeof(text));
        assert_string_equal(text, cases[i].text);
        assert_int_equal(len, ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                      : sizeof(struct sockaddr_in6));
    }
}

static void test_free_null(void **state)
{
    (void)state;
    sp_config_free(NULL);
}

/* Sections are found among the registered services: one registered twice is
 * refused, and the loader knows only what is registered. */
/* [module NAME] keeps its keys as text; [service NAME] names a module. */
static void test_modules(void **state)
{
    static const char text[] = "[service up]\n"            /* 1 */
                               "listen = 127.0.0.1:7000\n" /* 2 */
                               "module = upper\n"          /* 3 */
                               "[module upper]\n"          /* 4 */
                               "path = mods/upper.so\n"    /* 5 */
                               "greeting = Hi there ; c\n" /* 6 */
                               "max_read = 1k\n"           /* 7 */
                               "[module other]\n"          /* 8 */
                               "path = /abs/other.so\n";   /* 9 */
    (void)state;
    struct sp_config *cfg = load_ok(text, "/etc/sp/x.conf");
    assert_int_equal(cfg->nmodules, 2);
    const struct sp_module_conf *m = &cfg->modules[0];
    assert_string_equal(m->name, "upper");
    assert_int_equal(m->line, 4);
    assert_string_equal(m->path, "/etc/sp/mods/upper.so");
    assert_int_equal(m->nkeys, 2);
    assert_string_equal(m->keys[0].key, "greeting");
    assert_string_equal(m->keys[0].value, "Hi there");
    assert_int_equal(m->keys[0].line, 6);
    assert_string_equal(m->keys[1].key, "max_read");
    assert_string_equal(cfg->modules[1].path, "/abs/other.so");
    assert_ptr_equal(cfg->services[0].def, &sp_module_service_def);
    const struct sp_module_service_conf *sc = sp_config_module_service(cfg, 0);
    assert_non_null(sc);
    assert_string_equal(sc->module, "upper");
    assert_int_equal(sc->index, 0);

    /* A module's key table over the recorded keys: the loader's setters
     * and messages. */
    struct mod_conf {
        const char *greeting;
        size_t max_read;
    } mc = {0};
    static const struct sp_conf_key keys[] = {
        {"greeting", sp_conf_set_string, offsetof(struct mod_conf, greeting), 0, 0, NULL, 0},
        {"max_read", sp_conf_set_size, offsetof(struct mod_conf, max_read), 1, 512, "1..512", 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct sp_config *arena;
    assert_int_equal(
        sp_config_apply_module(cfg, m, keys, NULL, NULL, &mc, &arena, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "/etc/sp/x.conf:7: max_read '1k' out of range (1..512)");
    sp_config_free(arena);
    assert_int_equal(
        sp_config_apply_module(cfg, m, keys + 1, NULL, NULL, &mc, &arena, err, sizeof(err)),
        -EINVAL);
    assert_string_equal(err, "/etc/sp/x.conf:6: unknown key 'greeting' in [module upper]");
    sp_config_free(arena);
    memset(&mc, 0, sizeof(mc));
    assert_int_equal(sp_config_apply_module(cfg, &cfg->modules[1], keys, NULL, NULL, &mc, &arena,
                                            err, sizeof(err)),
                     0);
    sp_config_free(arena);
    sp_config_free(cfg);

    expect_error("[service up]\nlisten = 127.0.0.1:7\nmodule = nope\n",
                 "conf/bad.conf:3: [service up]: no [module nope] section");
    expect_error("[service up]\nlisten = 127.0.0.1:7\n",
                 "conf/bad.conf:1: [service up] needs module = NAME (a [module NAME] section)");
    expect_error("[service up]\nlisten = 127.0.0.1:7\nmodule = m\nroot = /x\n",
                 "conf/bad.conf:4: unknown key 'root' in [service up]");
    expect_error("[module m]\ngreeting = x\n",
                 "conf/bad.conf:1: [module m] has no path (the module's shared object)");
    expect_error("[module m]\npath = a.so\npath = b.so\n",
                 "conf/bad.conf:3: duplicate key 'path' in [module m]");
    expect_error("[module m]\npath = a.so\n[module m]\npath = a.so\n",
                 "conf/bad.conf:3: duplicate section [module m] (first at line 1)");
    expect_error("[module]\npath = a.so\n",
                 "conf/bad.conf:1: section [module] needs one name, e.g. [module hello]");
}

static void test_registry(void **state)
{
    static const struct sp_conf_key no_keys[] = {{NULL, NULL, 0, 0, 0, NULL, 0}};
    static const struct sp_service_def extra = {.name = "extra", .keys = no_keys};
    unsigned n;

    (void)state;
    assert_ptr_equal(sp_service_find("http", 4), &sp_service_http);
    assert_ptr_equal(sp_service_find("echo", 4), &sp_service_echo);
    assert_null(sp_service_find("htt", 3));
    assert_int_equal(sp_service_register(&sp_service_http), -EEXIST);
    expect_error("[extra e]\nlisten = 127.0.0.1:7\n", "conf/bad.conf:1: unknown section [extra e]");
    sp_service_defs(&n);
    assert_int_equal(sp_service_register(&extra), 0);
    struct sp_config *cfg = load_ok("[extra e]\nlisten = 127.0.0.1:7\n", "x.conf");
    assert_ptr_equal(cfg->services[0].def, &extra);
    assert_string_equal(cfg->services[0].name, "e");
    sp_config_free(cfg);
    expect_error("[extra e]\nlisten = 127.0.0.1:7\nroot = /x\n",
                 "conf/bad.conf:3: unknown key 'root' in [extra e]");
}

int main(void)
{
    services_register_builtin();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_run_path),
        cmocka_unit_test(test_log_keywords),
        cmocka_unit_test(test_workers_auto),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_duplicate_across_sections),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_inline_comments),
        cmocka_unit_test(test_http_handle),
        cmocka_unit_test(test_upstream),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_parse_listen_faults),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_modules),
        cmocka_unit_test(test_registry), /* last: it registers one more service */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
