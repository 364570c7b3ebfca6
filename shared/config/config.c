/*
 * Configuration loader.
 *
 * libinih drives the parse: it reads line after line through our reader,
 * splits "key = value" and calls our handler.  The reader first normalises
 * every line itself, because inih on its own would get four things wrong for
 * us: an indented line would silently become a continuation of the previous
 * value; " ;" would cut a return body ({"a":"b ;c"}); a section with no keys
 * never reaches the handler, so an unknown or empty section would go unseen;
 * and its line buffer is 200 bytes.  So the reader strips leading space and
 * inline comments (not on return lines, whose body is the rest of the line),
 * handles section headers, keeps the whole line in the loader and gives inih
 * at most "key =".  The handler takes the key from inih and the value from the
 * loader's copy of the line.  The reader counts lines, one per call as inih
 * does, so the handler always knows the line it serves.
 *
 * The first error stops the parse: the reader then reports end of input.
 * Everything the result points to lives in one arena freed by
 * sp_config_free(), so an error part way needs no per-field cleanup.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "spindle/config.h"
#include "spindle/net.h"

#include "config_internal.h"

/* ---- arena ---------------------------------------------------------- */

struct sp__config_mem {
    struct sp__config_mem *next;
    size_t used, cap;
    char data[];
};

static char *mem_strndup(struct sp_config *cfg, const char *s, size_t n)
{
    struct sp__config_mem *m = cfg->mem;

    if (m == NULL || m->cap - m->used < n + 1) {
        size_t cap = n + 1 > 4096 ? n + 1 : 4096;
        m = malloc(sizeof(*m) + cap);
        if (m == NULL)
            return NULL;
        m->next = cfg->mem;
        m->used = 0;
        m->cap = cap;
        cfg->mem = m;
    }
    char *p = m->data + m->used;
    memcpy(p, s, n);
    p[n] = '\0';
    m->used += n + 1;
    return p;
}

void sp_config_free(struct sp_config *cfg)
{
    if (cfg == NULL)
        return;
    for (unsigned i = 0; i < cfg->nservices; i++) {
        if (cfg->services[i].kind == SP_SERVICE_HTTP)
            free(cfg->services[i].http.returns);
    }
    free(cfg->services);
    free(cfg->listens);
    while (cfg->mem != NULL) {
        struct sp__config_mem *next = cfg->mem->next;
        free(cfg->mem);
        cfg->mem = next;
    }
    free(cfg);
}

/* ---- keys ----------------------------------------------------------- */

enum section { SEC_NONE, SEC_MASTER, SEC_HTTP, SEC_ECHO };

enum key {
    K_WORKERS,
    K_THREADS,
    K_SLOTS,
    K_CPU_AFFINITY,
    K_STACK_SIZE,
    K_SHUTDOWN_TIMEOUT,
    K_PID_FILE,
    K_CONTROL_SOCKET,
    K_ERROR_LOG,
    K_USER,
    K_GROUP,
    K_LISTEN,
    K_ROOT,
    K_INDEX,
    K_STATUS,
    K_RETURN,
    K_KEEPALIVE_TIMEOUT,
    K_HEADER_TIMEOUT,
    K_BODY_TIMEOUT,
    K_SEND_TIMEOUT,
    K_MAX_HEADER_SIZE,
    K_MAX_BODY_SIZE,
    K_ACCESS_LOG,
    K_IDLE_TIMEOUT,
    K__COUNT
};

#define IN_MASTER (1u << SEC_MASTER)
#define IN_HTTP   (1u << SEC_HTTP)
#define IN_ECHO   (1u << SEC_ECHO)

/* How a key's value is stored: DURATION (int64_t ms) and SIZE (size_t bytes)
 * within [min, max], described as range; PATH (const char *, absolute) or
 * NULL when the value is the keyword in range; OTHER by hand in set_key(). */
enum vtype { V_OTHER, V_DURATION, V_SIZE, V_PATH };

#define M(f)     offsetof(struct sp_config, f)
#define S(f)     offsetof(struct sp_service_conf, f)
#define HOURS(n) ((n)*3600 * INT64_C(1000))

static const struct key_info {
    const char *name;
    unsigned sections;
    enum vtype type;
    size_t offset; /* in struct sp_config for [master], else in struct sp_service_conf */
    int64_t min, max;
    const char *range;
} keys[K__COUNT] = {
    [K_WORKERS] = {"workers", IN_MASTER, V_OTHER, 0, 0, 0, NULL},
    [K_THREADS] = {"threads", IN_MASTER, V_OTHER, 0, 0, 0, NULL},
    [K_SLOTS] = {"slots", IN_MASTER, V_OTHER, 0, 0, 0, NULL},
    [K_CPU_AFFINITY] = {"cpu_affinity", IN_MASTER, V_OTHER, 0, 0, 0, NULL},
    [K_STACK_SIZE] = {"stack_size", IN_MASTER, V_SIZE, M(stack_size), 16 << 10, 16 << 20,
                      "16k..16m"},
    [K_SHUTDOWN_TIMEOUT] = {"shutdown_timeout", IN_MASTER, V_DURATION, M(shutdown_timeout_ms), 0,
                            HOURS(24), "0..24h"},
    [K_PID_FILE] = {"pid_file", IN_MASTER, V_PATH, M(pid_file), 0, 0, NULL},
    [K_CONTROL_SOCKET] = {"control_socket", IN_MASTER, V_PATH, M(control_socket), 0, 0, NULL},
    [K_ERROR_LOG] = {"error_log", IN_MASTER, V_PATH, M(error_log), 0, 0, "stderr"},
    [K_USER] = {"user", IN_MASTER, V_OTHER, M(user), 0, 0, NULL},
    [K_GROUP] = {"group", IN_MASTER, V_OTHER, M(group), 0, 0, NULL},
    [K_LISTEN] = {"listen", IN_HTTP | IN_ECHO, V_OTHER, 0, 0, 0, NULL},
    [K_ROOT] = {"root", IN_HTTP, V_PATH, S(http.root), 0, 0, NULL},
    [K_INDEX] = {"index", IN_HTTP, V_OTHER, 0, 0, 0, NULL},
    [K_STATUS] = {"status", IN_HTTP, V_OTHER, 0, 0, 0, NULL},
    [K_RETURN] = {"return", IN_HTTP, V_OTHER, 0, 0, 0, NULL},
    [K_KEEPALIVE_TIMEOUT] = {"keepalive_timeout", IN_HTTP, V_DURATION, S(http.keepalive_timeout_ms),
                             0, HOURS(24), "0..24h"},
    [K_HEADER_TIMEOUT] = {"header_timeout", IN_HTTP, V_DURATION, S(http.header_timeout_ms), 1,
                          HOURS(24), "1ms..24h"},
    [K_BODY_TIMEOUT] = {"body_timeout", IN_HTTP, V_DURATION, S(http.body_timeout_ms), 1, HOURS(24),
                        "1ms..24h"},
    [K_SEND_TIMEOUT] = {"send_timeout", IN_HTTP, V_DURATION, S(http.send_timeout_ms), 1, HOURS(24),
                        "1ms..24h"},
    [K_MAX_HEADER_SIZE] = {"max_header_size", IN_HTTP, V_SIZE, S(http.max_header_size), 1 << 10,
                           1 << 20, "1k..1m"},
    [K_MAX_BODY_SIZE] = {"max_body_size", IN_HTTP, V_SIZE, S(http.max_body_size), 0, 1 << 30,
                         "0..1g"},
    [K_ACCESS_LOG] = {"access_log", IN_HTTP, V_PATH, S(http.access_log), 0, 0, "off"},
    [K_IDLE_TIMEOUT] = {"idle_timeout", IN_ECHO, V_DURATION, S(echo.idle_timeout_ms), 0, HOURS(24),
                        "0..24h"},
};

/* ---- loader state and errors ------------------------------------------ */

struct loader {
    struct sp_config *cfg;
    const char *name;
    const char *text;
    size_t len, pos;
    unsigned lineno;

    char line[SP_CONFIG_MAX_LINE + 1]; /* the current line, normalised */
    const char *value;                 /* of the current key line, inside line[] */
    bool is_return;

    enum section section;
    unsigned svc;         /* index of the current service */
    uint32_t seen;        /* keys set in the current section */
    unsigned master_line; /* of [master], 0 if none */
    bool slots_auto;
    unsigned master_key_line[K__COUNT]; /* where each [master] key was set */

    char *err;
    size_t errlen;
    bool failed;
    unsigned errline;
};

/* Records the first error as "NAME:LINE: message" (line 0: "NAME: message"). */
__attribute__((format(printf, 3, 4))) static void fail(struct loader *L, unsigned line,
                                                       const char *fmt, ...)
{
    char msg[SP_CONFIG_ERR_SIZE];
    va_list ap;

    if (L->failed)
        return;
    L->failed = true;
    L->errline = line;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (L->errlen == 0)
        return;
    if (line > 0)
        snprintf(L->err, L->errlen, "%s:%u: %s", L->name, line, msg);
    else
        snprintf(L->err, L->errlen, "%s: %s", L->name, msg);
}

static const char *section_label(struct loader *L, char *buf, size_t size)
{
    if (L->section == SEC_MASTER) {
        snprintf(buf, size, "[master]");
    } else {
        const struct sp_service_conf *s = &L->cfg->services[L->svc];
        snprintf(buf, size, "[%s %s]", sp_config_kind_name(s->kind), s->name);
    }
    return buf;
}

static const char *dup_or_fail(struct loader *L, const char *s, size_t n)
{
    char *p = mem_strndup(L->cfg, s, n);
    if (p == NULL)
        fail(L, 0, "out of memory");
    return p;
}

/* ---- paths -------------------------------------------------------------- */

/* Resolves path against base into an arena string, or records an error. */
static const char *resolve_path(struct loader *L, const char *base, const char *path)
{
    char out[PATH_MAX];

    if (sp_config_join_path(out, sizeof(out), base, path) < 0) {
        fail(L, L->lineno, "path too long: '%s'", path);
        return NULL;
    }
    return dup_or_fail(L, out, strlen(out));
}

/* The absolute directory of the file called name: of the file a symbolic
 * link leads to, so that the master and `-s` agree however they name it.  A
 * name that leads to no file (a string parsed in a test) is taken as it is,
 * relative to the current directory. */
static const char *config_dir(struct loader *L, const char *name)
{
    char cwd[PATH_MAX] = "/", dir[PATH_MAX] = ".", real[PATH_MAX];
    const char *slash;

    if (realpath(name, real) != NULL)
        name = real;
    slash = strrchr(name, '/');
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s/", (int)(slash - name), name);
    if (dir[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL) {
        fail(L, 0, "cannot determine the current directory: %s", strerror(errno));
        return NULL;
    }
    return resolve_path(L, cwd, dir);
}

/* ---- values ------------------------------------------------------------- */

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long v;
    char *end;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || errno != 0 || v < min || v > max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > SP_CONFIG_MAX_WORKERS ? SP_CONFIG_MAX_WORKERS : (unsigned)n;
}

static bool valid_service_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    }
    return true;
}

static void set_duration(struct loader *L, enum key k, const char *v, int64_t *out)
{
    int rc = sp_parse_duration(v, out);

    if (rc == -EINVAL)
        fail(L, L->lineno, "invalid %s '%s': expected a duration such as 500ms, 10s, 5m or 1h",
             keys[k].name, v);
    else if (rc < 0 || *out < keys[k].min || *out > keys[k].max)
        fail(L, L->lineno, "%s '%s' out of range (%s)", keys[k].name, v, keys[k].range);
}

static void set_size(struct loader *L, enum key k, const char *v, size_t *out)
{
    int rc = sp_parse_size(v, out);

    if (rc == -EINVAL)
        fail(L, L->lineno, "invalid %s '%s': expected a size such as 512, 8k or 1m", keys[k].name,
             v);
    else if (rc < 0 || *out < (uint64_t)keys[k].min || *out > (uint64_t)keys[k].max)
        fail(L, L->lineno, "%s '%s' out of range (%s)", keys[k].name, v, keys[k].range);
}

/* A path, or for the log keys the keyword in keys[k].range (any case, as
 * `access_log OFF` means off to whoever writes it).  A log key takes one
 * word: nginx's forms with a level or a format would otherwise become part
 * of the file name. */
static void set_path(struct loader *L, enum key k, const char *v, const char **out)
{
    const char *range = keys[k].range;

    if (range != NULL && strcasecmp(v, range) == 0) {
        *out = NULL;
        return;
    }
    if (range != NULL && strpbrk(v, " \t") != NULL) {
        if (k == K_ERROR_LOG)
            fail(L, L->lineno,
                 "invalid error_log '%s': expected one path or stderr (spindle logs every level; "
                 "there is no level to set)",
                 v);
        else
            fail(L, L->lineno, "invalid %s '%s': expected one path or %s (no format or options)",
                 keys[k].name, v, range);
        return;
    }
    *out = resolve_path(L, L->cfg->dir, v);
}

static void add_listen(struct loader *L, const char *v)
{
    struct sp_config *cfg = L->cfg;
    struct sp_listen_conf *ln, *all;

    if (cfg->nlistens == SP_CONFIG_MAX_LISTENS) {
        fail(L, L->lineno, "too many listen addresses (max %d)", SP_CONFIG_MAX_LISTENS);
        return;
    }
    all = realloc(cfg->listens, (cfg->nlistens + 1) * sizeof(*all));
    if (all == NULL) {
        fail(L, 0, "out of memory");
        return;
    }
    cfg->listens = all;
    ln = &all[cfg->nlistens];
    memset(ln, 0, sizeof(*ln));
    int rc = sp_parse_listen(v, &ln->addr, &ln->addrlen);
    if (rc == -ERANGE) {
        fail(L, L->lineno, "invalid listen '%s': port %s out of range (1..65535)", v,
             strrchr(v, ':') + 1);
        return;
    }
    if (rc == -EADDRNOTAVAIL && v[0] == '[') {
        fail(L, L->lineno, "invalid listen '%s': '%.*s' is not an IPv6 address", v,
             (int)(strchr(v, ']') - v - 1), v + 1);
        return;
    }
    if (rc == -EADDRNOTAVAIL) {
        int n = (int)(strrchr(v, ':') - v);
        fail(L, L->lineno,
             "invalid listen '%s': '%.*s' is not an IP address (host names are not resolved: "
             "use an IPv4 address, [IPV6], localhost or *)",
             v, n, v);
        return;
    }
    if (rc < 0) {
        fail(L, L->lineno, "invalid listen '%s': expected HOST:PORT, [IPV6]:PORT or *:PORT", v);
        return;
    }
    ln->service = L->svc;
    ln->line = L->lineno;
    sp_net_format((struct sockaddr *)&ln->addr, ln->text, sizeof(ln->text));

    const struct sp_listen_conf *o = sp_config_find_conflict(cfg, (struct sockaddr *)&ln->addr);
    if (o != NULL && strcmp(o->text, ln->text) == 0) {
        fail(L, L->lineno, "duplicate listen %s (also at line %u)", ln->text, o->line);
        return;
    }
    if (o != NULL) {
        fail(L, L->lineno, "listen %s overlaps %s (line %u)", ln->text, o->text, o->line);
        return;
    }
    cfg->nlistens++;
}

/* "return PATH = STATUS CONTENT-TYPE [BODY]", parsed from the whole line:
 * the body is the rest of it, ';' and '=' included. */
static void add_return(struct loader *L)
{
    struct sp_http_conf *h = &L->cfg->services[L->svc].http;
    struct sp_http_return ret, *all;
    const char *why;

    if (sp_parse_return(L->line + strlen("return"), &ret, &why) < 0) {
        fail(L, L->lineno, "invalid return: %s", why);
        return;
    }
    for (unsigned i = 0; i < h->nreturns; i++) {
        if (strcmp(h->returns[i].path, ret.path) == 0) {
            fail(L, L->lineno, "duplicate return path '%s' (also at line %u)", ret.path,
                 h->returns[i].line);
            return;
        }
    }
    if (h->nreturns == SP_CONFIG_MAX_RETURNS) {
        fail(L, L->lineno, "too many return lines in one section (max %d)", SP_CONFIG_MAX_RETURNS);
        return;
    }
    all = realloc(h->returns, (h->nreturns + 1) * sizeof(*all));
    if (all == NULL) {
        fail(L, 0, "out of memory");
        return;
    }
    h->returns = all;
    ret.path = dup_or_fail(L, ret.path, strlen(ret.path));
    ret.content_type = dup_or_fail(L, ret.content_type, strlen(ret.content_type));
    ret.body = dup_or_fail(L, ret.body, ret.body_len);
    ret.line = L->lineno;
    if (!L->failed)
        all[h->nreturns++] = ret;
}

/* ---- sections ------------------------------------------------------------ */

/* Checks what can only be checked once a section is complete. */
static void section_end(struct loader *L)
{
    struct sp_config *cfg = L->cfg;
    struct sp_service_conf *s;
    char label[96];
    unsigned n = 0;

    if (L->section != SEC_HTTP && L->section != SEC_ECHO)
        return;
    s = &cfg->services[L->svc];
    for (unsigned i = 0; i < cfg->nlistens; i++)
        n += cfg->listens[i].service == L->svc;
    if (n == 0) {
        fail(L, s->line, "%s has no listen address", section_label(L, label, sizeof(label)));
        return;
    }
    if (s->kind == SP_SERVICE_HTTP && s->http.status_path != NULL) {
        for (unsigned i = 0; i < s->http.nreturns; i++) {
            const struct sp_http_return *r = &s->http.returns[i];
            if (strcmp(r->path, s->http.status_path) == 0) {
                fail(L, r->line, "return path '%s' is also the status path", r->path);
                return;
            }
        }
    }
}

static void add_service(struct loader *L, enum sp_service_kind kind, const char *name, size_t n)
{
    struct sp_config *cfg = L->cfg;
    struct sp_service_conf *s;

    for (unsigned i = 0; i < cfg->nservices; i++) {
        s = &cfg->services[i];
        if (s->kind == kind && strlen(s->name) == n && memcmp(s->name, name, n) == 0) {
            fail(L, L->lineno, "duplicate section [%s %s] (first at line %u)",
                 sp_config_kind_name(kind), s->name, s->line);
            return;
        }
    }
    if (cfg->nservices == SP_CONFIG_MAX_SERVICES) {
        fail(L, L->lineno, "too many services (max %d)", SP_CONFIG_MAX_SERVICES);
        return;
    }
    s = realloc(cfg->services, (cfg->nservices + 1) * sizeof(*s));
    if (s == NULL) {
        fail(L, 0, "out of memory");
        return;
    }
    cfg->services = s;
    s = &s[cfg->nservices];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->line = L->lineno;
    s->name = dup_or_fail(L, name, n);
    if (kind == SP_SERVICE_HTTP) {
        s->http.index = dup_or_fail(L, "index.html", strlen("index.html"));
        s->http.keepalive_timeout_ms = 75 * 1000;
        s->http.header_timeout_ms = 10 * 1000;
        s->http.body_timeout_ms = 30 * 1000;
        s->http.send_timeout_ms = 60 * 1000;
        s->http.max_header_size = 8 * 1024;
        s->http.max_body_size = 1024 * 1024;
    } else {
        s->echo.idle_timeout_ms = 5 * 60 * 1000;
    }
    L->svc = cfg->nservices++;
    L->section = kind == SP_SERVICE_HTTP ? SEC_HTTP : SEC_ECHO;
}

/* L->line is "[...]" with nothing after the bracket but a comment, stripped. */
static void section_begin(struct loader *L)
{
    char *close = strchr(L->line, ']'), type[16] = "", name[72] = "", extra;
    int words;

    section_end(L);
    if (L->failed)
        return;
    L->section = SEC_NONE;
    L->seen = 0;
    if (close == NULL) {
        fail(L, L->lineno, "syntax error: missing ']' in section header");
        return;
    }
    if (close[1] != '\0') {
        fail(L, L->lineno, "syntax error: unexpected text after ']'");
        return;
    }
    *close = '\0';
    words = sscanf(L->line + 1, "%15s %71s %c", type, name, &extra);
    if (strcmp(type, "master") == 0) {
        if (words > 1) {
            fail(L, L->lineno, "section [master] takes no name");
        } else if (L->master_line != 0) {
            fail(L, L->lineno, "duplicate section [master] (first at line %u)", L->master_line);
        } else {
            L->master_line = L->lineno;
            L->section = SEC_MASTER;
        }
        return;
    }
    enum sp_service_kind kind;
    if (strcmp(type, "http") == 0)
        kind = SP_SERVICE_HTTP;
    else if (strcmp(type, "echo") == 0)
        kind = SP_SERVICE_ECHO;
    else {
        fail(L, L->lineno, "unknown section [%s]", L->line + 1);
        return;
    }
    if (words < 2)
        fail(L, L->lineno, "section [%s] needs a name, e.g. [%s main]", type, type);
    else if (words > 2 || !valid_service_name(name, strlen(name)))
        fail(L, L->lineno, "invalid name in [%s]: use letters, digits, '_', '-' and '.'",
             L->line + 1);
    else
        add_service(L, kind, name, strlen(name));
}

/* ---- keys ------------------------------------------------------------------ */

static void set_key(struct loader *L, enum key k, const char *v)
{
    const struct key_info *ki = &keys[k];
    struct sp_config *cfg = L->cfg;
    struct sp_service_conf *s = L->section == SEC_MASTER ? NULL : &cfg->services[L->svc];
    char *field = (s ? (char *)s : (char *)cfg) + ki->offset;

    switch (ki->type) {
    case V_DURATION:
        set_duration(L, k, v, (int64_t *)(void *)field);
        return;
    case V_SIZE:
        set_size(L, k, v, (size_t *)(void *)field);
        return;
    case V_PATH:
        set_path(L, k, v, (const char **)(void *)field);
        return;
    case V_OTHER:
        break;
    }
    switch (k) {
    case K_WORKERS:
        if (strcmp(v, "auto") == 0)
            cfg->workers = online_cpus();
        else if (parse_uint(v, 1, SP_CONFIG_MAX_WORKERS, &cfg->workers) < 0)
            fail(L, L->lineno, "invalid workers '%s': expected auto or 1..%d", v,
                 SP_CONFIG_MAX_WORKERS);
        break;
    case K_THREADS:
        if (parse_uint(v, 1, SP_CONFIG_MAX_THREADS, &cfg->threads) < 0)
            fail(L, L->lineno, "invalid threads '%s': expected 1..%d", v, SP_CONFIG_MAX_THREADS);
        break;
    case K_SLOTS:
        L->slots_auto = strcmp(v, "auto") == 0;
        if (!L->slots_auto && parse_uint(v, 1, SP_CONFIG_MAX_SLOTS, &cfg->slots) < 0)
            fail(L, L->lineno, "invalid slots '%s': expected auto or 1..%d", v,
                 SP_CONFIG_MAX_SLOTS);
        break;
    case K_CPU_AFFINITY:
        if (strcmp(v, "auto") == 0)
            cfg->cpu_affinity = true;
        else if (strcmp(v, "off") == 0)
            cfg->cpu_affinity = false;
        else
            fail(L, L->lineno, "invalid cpu_affinity '%s': expected off or auto", v);
        break;
    case K_USER:
    case K_GROUP:
        *(const char **)(void *)field = dup_or_fail(L, v, strlen(v));
        break;
    case K_LISTEN:
        add_listen(L, v);
        break;
    case K_INDEX:
        if (strchr(v, '/') != NULL || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
            fail(L, L->lineno, "invalid index '%s': expected a file name", v);
        else
            s->http.index = dup_or_fail(L, v, strlen(v));
        break;
    case K_STATUS:
        if (!sp__config_valid_url_path(v, strlen(v)))
            fail(L, L->lineno, "invalid status '%s': expected a path starting with '/'", v);
        else
            s->http.status_path = dup_or_fail(L, v, strlen(v));
        break;
    case K_RETURN:
        fail(L, L->lineno, "return needs a path: return PATH = STATUS CONTENT-TYPE [BODY]");
        break;
    default:
        break;
    }
}

/* inih's callback, once per "key = value" line; section and value are
 * inih's view and unused (see the top of the file).  Returns 0 on error. */
static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *L = user;
    char label[96];
    unsigned k;

    (void)section;
    (void)value;
    if (L->failed)
        return 0;
    if (L->section == SEC_NONE) {
        fail(L, L->lineno, "key '%s' outside of any section", name);
        return 0;
    }
    if (L->is_return && L->section == SEC_HTTP) {
        add_return(L);
        return !L->failed;
    }
    for (k = 0; k < K__COUNT; k++) {
        if (strcmp(keys[k].name, name) == 0 && (keys[k].sections & (1u << L->section)))
            break;
    }
    if (k == K__COUNT) {
        fail(L, L->lineno, "unknown key '%s' in %s", name, section_label(L, label, sizeof(label)));
        return 0;
    }
    if (k != K_LISTEN && (L->seen & (1u << k))) {
        fail(L, L->lineno, "duplicate key '%s' in %s", name,
             section_label(L, label, sizeof(label)));
        return 0;
    }
    L->seen |= 1u << k;
    if (L->section == SEC_MASTER)
        L->master_key_line[k] = L->lineno;
    if (L->value[0] == '\0') {
        fail(L, L->lineno, "missing value for %s", name);
        return 0;
    }
    set_key(L, (enum key)k, L->value);
    return !L->failed;
}

/* ---- reading lines ------------------------------------------------------- */

/* inih's fgets-like source.  Gives inih one line per call: an empty line for
 * comments and section headers (handled here), else "key =" with the value
 * left in L->line for the handler.  Returns NULL at the end or after an error. */
static char *reader(char *str, int num, void *stream)
{
    struct loader *L = stream;
    const char *raw, *nl;
    char *line = L->line, *sep;
    size_t n;

    if (L->failed || L->pos >= L->len)
        return NULL;
    raw = L->text + L->pos;
    nl = memchr(raw, '\n', L->len - L->pos);
    n = nl ? (size_t)(nl - raw) : L->len - L->pos;
    L->pos += n + (nl != NULL);
    L->lineno++;
    if (memchr(raw, '\0', n) != NULL) {
        fail(L, L->lineno, "NUL byte in line");
        return NULL;
    }
    if (n > SP_CONFIG_MAX_LINE) {
        fail(L, L->lineno, "line too long (max %d bytes)", SP_CONFIG_MAX_LINE);
        return NULL;
    }
    if (L->lineno == 1 && n >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) {
        raw += 3;
        n -= 3;
    }
    while (n > 0 && isspace((unsigned char)*raw)) {
        raw++;
        n--;
    }
    memcpy(line, raw, n);
    line[n] = '\0';

    L->is_return = strncmp(line, "return", 6) == 0 && (line[6] == ' ' || line[6] == '\t');
    if (!L->is_return) {
        for (size_t i = 0; i < n; i++) {
            if (line[i] == ';' && (i == 0 || isspace((unsigned char)line[i - 1]))) {
                n = i;
                break;
            }
        }
    }
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        n--;
    line[n] = '\0';

    str[0] = '\n';
    str[1] = '\0';
    if (n == 0 || line[0] == '#' || line[0] == ';')
        return str;
    if (line[0] == '[') {
        section_begin(L);
        return L->failed ? NULL : str;
    }
    sep = strpbrk(line, "=:");
    size_t word = strcspn(line, " \t");
    if (!L->is_return && sep != NULL && sep > line && line[word] != '\0' && line + word < sep &&
        line[word + strspn(line + word, " \t")] != *sep) {
        /* "listen 127.0.0.1:80": a word, a space and more before any '='. */
        fail(L, L->lineno, "syntax error: missing '=' after '%.*s'", (int)word, line);
        return NULL;
    }
    if (!L->is_return && sep == NULL && line[word] != '\0') {
        fail(L, L->lineno, "syntax error: missing '=' after '%.*s'", (int)word, line);
        return NULL;
    }
    if (sep == NULL || sep == line) {
        fail(L, L->lineno, "syntax error: expected [section] or key = value");
        return NULL;
    }
    if (sep - line + 3 > num) {
        fail(L, L->lineno, "key too long");
        return NULL;
    }
    memcpy(str, line, (size_t)(sep - line) + 1);
    memcpy(str + (sep - line) + 1, "\n", 2);
    L->value = sep + 1 + strspn(sep + 1, " \t");
    return str;
}

/* ---- entry points -------------------------------------------------------- */

/* Resolves [master] user and group into ids and the user's group list
 * (account lookups only: nothing changes until a worker switches to them). */
static void resolve_identity(struct loader *L)
{
    struct sp_config *cfg = L->cfg;
    unsigned uline = L->master_key_line[K_USER], gline = L->master_key_line[K_GROUP];
    int rc;

    if (cfg->user == NULL) {
        if (cfg->group != NULL)
            fail(L, gline, "group '%s' needs user: set user as well", cfg->group);
        return;
    }
    rc = sp__config_lookup_user(cfg->user, &cfg->uid, &cfg->gid);
    if (rc < 0) {
        fail(L, uline, "invalid user '%s': %s", cfg->user,
             rc == -ENOENT ? "no such user" : strerror(-rc));
        return;
    }
    if (cfg->group != NULL) {
        rc = sp__config_lookup_group(cfg->group, &cfg->gid);
        if (rc < 0) {
            fail(L, gline, "invalid group '%s': %s", cfg->group,
                 rc == -ENOENT ? "no such group" : strerror(-rc));
            return;
        }
    }
    rc = sp__config_user_groups(cfg->user, cfg->gid, cfg->groups, SP_CONFIG_MAX_GROUPS,
                                &cfg->ngroups);
    if (rc < 0)
        fail(L, uline, "user '%s': cannot list its groups: %s", cfg->user,
             rc == -E2BIG ? "more than 256 groups" : strerror(-rc));
}

/* The default of a run-time file: RUNDIR/spindle/NAME.suffix. */
static const char *run_path(struct loader *L, const char *suffix)
{
    char out[PATH_MAX];

    if (sp_config_run_path(out, sizeof(out), L->name, suffix) < 0) {
        fail(L, 0, "default %s path too long", suffix);
        return NULL;
    }
    return dup_or_fail(L, out, strlen(out));
}

static void finish(struct loader *L)
{
    struct sp_config *cfg = L->cfg;

    section_end(L);
    if (L->failed)
        return;
    if (cfg->nservices == 0) {
        fail(L, 0, "no service defined: add an [http NAME] or [echo NAME] section");
        return;
    }
    cfg->stack_size = (cfg->stack_size + 4095) & ~(size_t)4095;
    if (L->slots_auto) {
        unsigned cpus = online_cpus();
        cfg->slots = cfg->workers > cpus ? cfg->workers : cpus;
    }
    resolve_identity(L);
    if (L->failed)
        return;
    if (cfg->slots < cfg->workers) {
        fail(L, L->master_key_line[K_SLOTS], "slots (%u) must be at least workers (%u)", cfg->slots,
             cfg->workers);
        return;
    }
    L->lineno = 0; /* defaults below have no line to blame */
    if (cfg->pid_file == NULL)
        cfg->pid_file = run_path(L, "pid");
    if (cfg->control_socket == NULL)
        cfg->control_socket = run_path(L, "sock");
    if (L->failed)
        return;
    if (strlen(cfg->control_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        fail(L, L->master_key_line[K_CONTROL_SOCKET],
             "control_socket '%s' too long for a unix socket (max %zu bytes)", cfg->control_socket,
             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
}

/* Parses len bytes of text; name prefixes messages and anchors paths. */
static struct sp_config *parse(const char *text, size_t len, const char *name, char *err,
                               size_t errlen)
{
    struct sp_config *cfg = calloc(1, sizeof(*cfg));
    struct loader *L = calloc(1, sizeof(*L));
    int rc;

    if (errlen > 0)
        err[0] = '\0';
    if (cfg == NULL || L == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    L->cfg = cfg;
    L->name = name;
    L->text = text;
    L->len = len;
    L->err = err;
    L->errlen = errlen;
    L->slots_auto = true;

    cfg->path = dup_or_fail(L, name, strlen(name));
    cfg->dir = config_dir(L, name);
    if (L->failed)
        goto fail;
    cfg->workers = online_cpus();
    cfg->threads = 1;
    cfg->stack_size = 64 * 1024;
    cfg->shutdown_timeout_ms = SP_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS;

    rc = ini_parse_stream(reader, L, handler, L);
    if (rc > 0 && (!L->failed || (L->errline > 0 && (unsigned)rc < L->errline))) {
        /* inih refused a line before any error of ours. */
        L->failed = false;
        fail(L, (unsigned)rc, "syntax error: expected [section] or key = value");
    } else if (rc < 0 && !L->failed) {
        fail(L, 0, "out of memory");
    }
    if (!L->failed)
        finish(L);
    if (L->failed)
        goto fail;
    free(L);
    return cfg;

fail:
    free(L);
    sp_config_free(cfg);
    return NULL;
}

struct sp_config *sp_config_from_buffer(const char *text, size_t len, const char *name, char *err,
                                        size_t errlen)
{
    return parse(text, len, name ? name : "<string>", err, errlen);
}

struct sp_config *sp_config_from_string(const char *text, const char *name, char *err,
                                        size_t errlen)
{
    return parse(text, strlen(text), name ? name : "<string>", err, errlen);
}
