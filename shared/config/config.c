/*
 * Configuration loader.
 *
 * The loader reads the text line by line itself: it strips leading space and
 * inline comments (" ;" or a line starting with ';' or '#'), handles section
 * headers and splits "key = value" (or "key: value").  A key of the
 * SP_CONF_LINE kind (return) takes the rest of its line as it is, so its
 * value may hold ';' and '=' ({"a":"b ;c"}).
 *
 * [master] is the loader's own; every other section is "[TYPE NAME]" with TYPE
 * the name of a registered service (spindle/service.h), whose key table and
 * setters fill the service's own struct.  "listen" belongs to every service
 * and is kept here, because listen addresses are checked against each other
 * across the whole file.
 *
 * The first error stops the parse.  Everything the result points to lives in
 * one arena freed by sp_config_free() (with each service's free_conf), so an
 * error part way needs no per-field cleanup.
 */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
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
        const struct sp_service_conf *s = &cfg->services[i];
        if (s->conf != NULL && s->def->free_conf != NULL)
            s->def->free_conf(s->conf);
        free(s->conf);
    }
    free(cfg->services);
    free(cfg->listens);
    free(cfg->srcs);
    sp__config_modules_free(cfg);
    sp__config_upstreams_free(cfg);
    while (cfg->mem != NULL) {
        struct sp__config_mem *next = cfg->mem->next;
        free(cfg->mem);
        cfg->mem = next;
    }
    free(cfg);
}

/* ---- loader state and errors ------------------------------------------ */

/* ---- where a line is -------------------------------------------------------- */

/* The file that line (whole-load numbering) is in, or -1 when cfg read none
 * (a configuration built in a test). */
static int src_of(const struct sp_config *cfg, unsigned line)
{
    if (cfg == NULL)
        return -1;
    for (unsigned i = cfg->nsrcs; i-- > 0;) {
        const struct sp__config_src *f = &cfg->srcs[i];
        if (line > f->base && line <= f->base + f->nlines)
            return (int)i;
    }
    return cfg->nsrcs > 0 ? 0 : -1;
}

/* Writes "FILE:LINE" of line into loc and " (included from FILE:LINE)" for
 * each include that led to it into chain.  Returns false when cfg read no
 * file. */
static bool where_parts(const struct sp_config *cfg, unsigned line, char *loc, size_t loclen,
                        char *chain, size_t chainlen)
{
    int i = src_of(cfg, line);
    size_t used = 0;

    chain[0] = '\0';
    if (i < 0)
        return false;
    snprintf(loc, loclen, "%s:%u", cfg->srcs[i].name, line - cfg->srcs[i].base);
    for (unsigned depth = 0; depth < SP__CONFIG_MAX_DEPTH && i > 0 && used < chainlen; depth++) {
        line = cfg->srcs[i].from;
        i = src_of(cfg, line);
        if (i < 0)
            break;
        int n = snprintf(chain + used, chainlen - used, " (included from %s:%u)", cfg->srcs[i].name,
                         line - cfg->srcs[i].base);
        used += n > 0 ? (size_t)n : 0;
    }
    return true;
}

const char *sp_config_where(const struct sp_config *cfg, unsigned line, char *buf, size_t len)
{
    char loc[PATH_MAX + 16], chain[SP_CONFIG_ERR_SIZE];

    if (len == 0)
        return buf;
    if (where_parts(cfg, line, loc, sizeof(loc), chain, sizeof(chain)))
        snprintf(buf, len, "%s%s", loc, chain);
    else
        snprintf(buf, len, "%s:%u", cfg ? cfg->path : "?", line);
    return buf;
}

/* How a message refers to another line: "line N" in the same file as the
 * line being read, "FILE:N" in another. */
const char *sp__config_line_ref(const struct sp_conf_ctx *L, unsigned line, char *buf, size_t len)
{
    int i = src_of(L->map, line);

    if (i < 0 || (unsigned)i == L->src)
        snprintf(buf, len, "line %u", i < 0 ? line : line - L->map->srcs[i].base);
    else
        snprintf(buf, len, "%s:%u", L->map->srcs[i].name, line - L->map->srcs[i].base);
    return buf;
}

/* Records the first error as "NAME:LINE: message" (line 0: "NAME: message"),
 * a line of an included file with the includes that led to it. */
static void vfail(struct sp_conf_ctx *L, unsigned line, const char *fmt, va_list ap)
{
    char msg[SP_CONFIG_ERR_SIZE], where[PATH_MAX + 16], chain[SP_CONFIG_ERR_SIZE];

    if (L->failed)
        return;
    L->failed = true;
    L->errline = line;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (L->errlen == 0)
        return;
    if (line > 0 && where_parts(L->map, line, where, sizeof(where), chain, sizeof(chain))) {
        snprintf(L->err, L->errlen, "%s: %s%s", where, msg, chain);
    } else if (line > 0) {
        snprintf(L->err, L->errlen, "%s:%u: %s", L->name, line, msg);
    } else {
        snprintf(L->err, L->errlen, "%s: %s", L->name, msg);
    }
}

__attribute__((format(printf, 3, 4))) static void fail(struct sp_conf_ctx *L, unsigned line,
                                                       const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(L, line, fmt, ap);
    va_end(ap);
}

void sp_conf_error(struct sp_conf_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(ctx, ctx->lineno, fmt, ap);
    va_end(ap);
}

void sp_conf_error_at(struct sp_conf_ctx *ctx, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(ctx, line ? line : ctx->lineno, fmt, ap);
    va_end(ap);
}

unsigned sp_conf_line(const struct sp_conf_ctx *ctx)
{
    return ctx->lineno;
}

const char *sp_conf_section(const struct sp_conf_ctx *ctx)
{
    return ctx->label;
}

static const char *dup_or_fail(struct sp_conf_ctx *L, const char *s, size_t n)
{
    char *p = mem_strndup(L->cfg, s, n);
    if (p == NULL)
        fail(L, 0, "out of memory");
    return p;
}

const char *sp_conf_strdup(struct sp_conf_ctx *ctx, const char *s, size_t n)
{
    return dup_or_fail(ctx, s, n);
}

/* ---- paths -------------------------------------------------------------- */

/* Resolves path against base into an arena string, or records an error. */
const char *sp__config_resolve(struct sp_conf_ctx *L, const char *base, const char *path)
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
static const char *config_dir(struct sp_conf_ctx *L, const char *name)
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
    return sp__config_resolve(L, cwd, dir);
}

/* ---- generic setters ------------------------------------------------------ */

#define FIELD(conf, key, type) ((type *)(void *)((char *)(conf) + (key)->offset))

void sp_conf_set_duration(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                          const char *v)
{
    int64_t *out = FIELD(conf, k, int64_t);
    int rc = sp_parse_duration(v, out);

    if (rc == -EINVAL)
        fail(L, L->lineno, "invalid %s '%s': expected a duration such as 500ms, 10s, 5m or 1h",
             k->name, v);
    else if (rc < 0 || *out < k->min || *out > k->max)
        fail(L, L->lineno, "%s '%s' out of range (%s)", k->name, v, k->range);
}

void sp_conf_set_size(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf, const char *v)
{
    size_t *out = FIELD(conf, k, size_t);
    int rc = sp_parse_size(v, out);

    if (rc == -EINVAL)
        fail(L, L->lineno, "invalid %s '%s': expected a size such as 512, 8k or 1m", k->name, v);
    else if (rc < 0 || *out < (uint64_t)k->min || *out > (uint64_t)k->max)
        fail(L, L->lineno, "%s '%s' out of range (%s)", k->name, v, k->range);
}

/* A path, or for the log keys the keyword in k->range (any case, as
 * `access_log OFF` means off to whoever writes it).  A log key takes one
 * word: nginx's forms with a level or a format would otherwise become part
 * of the file name. */
void sp_conf_set_path(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf, const char *v)
{
    const char **out = FIELD(conf, k, const char *);
    const char *range = k->range;

    if (range != NULL && strcasecmp(v, range) == 0) {
        *out = NULL;
        return;
    }
    if (range != NULL && strpbrk(v, " \t") != NULL) {
        fail(L, L->lineno, "invalid %s '%s': expected one path or %s (no format or options)",
             k->name, v, range);
        return;
    }
    *out = sp__config_resolve(L, L->cfg->dir, v);
}

void sp_conf_set_string(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                        const char *v)
{
    *FIELD(conf, k, const char *) = dup_or_fail(L, v, strlen(v));
}

/* ---- [master] ------------------------------------------------------------- */

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

static void set_workers(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                        const char *v)
{
    struct sp_config *cfg = conf;

    (void)k;
    if (strcmp(v, "auto") == 0)
        cfg->workers = online_cpus();
    else if (parse_uint(v, 1, SP_CONFIG_MAX_WORKERS, &cfg->workers) < 0)
        fail(L, L->lineno, "invalid workers '%s': expected auto or 1..%d", v,
             SP_CONFIG_MAX_WORKERS);
}

static void set_threads(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                        const char *v)
{
    struct sp_config *cfg = conf;

    (void)k;
    if (parse_uint(v, 1, SP_CONFIG_MAX_THREADS, &cfg->threads) < 0)
        fail(L, L->lineno, "invalid threads '%s': expected 1..%d", v, SP_CONFIG_MAX_THREADS);
}

static void set_slots(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf, const char *v)
{
    struct sp_config *cfg = conf;

    (void)k;
    L->slots_auto = strcmp(v, "auto") == 0;
    if (!L->slots_auto && parse_uint(v, 1, SP_CONFIG_MAX_SLOTS, &cfg->slots) < 0)
        fail(L, L->lineno, "invalid slots '%s': expected auto or 1..%d", v, SP_CONFIG_MAX_SLOTS);
}

static void set_cpu_affinity(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                             const char *v)
{
    struct sp_config *cfg = conf;

    (void)k;
    if (strcmp(v, "auto") == 0)
        cfg->cpu_affinity = true;
    else if (strcmp(v, "off") == 0)
        cfg->cpu_affinity = false;
    else
        fail(L, L->lineno, "invalid cpu_affinity '%s': expected off or auto", v);
}

static void set_hooks(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf, const char *v)
{
    struct sp_config *cfg = conf;

    (void)k;
    if (strcmp(v, "on") == 0)
        cfg->hooks = true;
    else if (strcmp(v, "off") == 0)
        cfg->hooks = false;
    else
        fail(L, L->lineno, "invalid hooks '%s': expected on or off", v);
}

/* error_log takes one word and says why: there is no level to set. */
static void set_error_log(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                          const char *v)
{
    if (strcasecmp(v, k->range) != 0 && strpbrk(v, " \t") != NULL)
        fail(L, L->lineno,
             "invalid error_log '%s': expected one path or stderr (spindle logs every level; "
             "there is no level to set)",
             v);
    else
        sp_conf_set_path(L, k, conf, v);
}

#define M(f)     offsetof(struct sp_config, f)
#define HOURS(n) ((n)*3600 * INT64_C(1000))

enum { K_SLOTS = 2, K_CONTROL_SOCKET = 7, K_USER = 9, K_GROUP = 10 };

static const struct sp_conf_key master_keys[] = {
    {"workers", set_workers, 0, 0, 0, NULL, 0},
    {"threads", set_threads, 0, 0, 0, NULL, 0},
    [K_SLOTS] = {"slots", set_slots, 0, 0, 0, NULL, 0},
    {"cpu_affinity", set_cpu_affinity, 0, 0, 0, NULL, 0},
    {"stack_size", sp_conf_set_size, M(stack_size), 16 << 10, 16 << 20, "16k..16m", 0},
    {"shutdown_timeout", sp_conf_set_duration, M(shutdown_timeout_ms), 0, HOURS(24), "0..24h", 0},
    {"pid_file", sp_conf_set_path, M(pid_file), 0, 0, NULL, 0},
    [K_CONTROL_SOCKET] = {"control_socket", sp_conf_set_path, M(control_socket), 0, 0, NULL, 0},
    {"error_log", set_error_log, M(error_log), 0, 0, "stderr", 0},
    [K_USER] = {"user", sp_conf_set_string, M(user), 0, 0, NULL, 0},
    [K_GROUP] = {"group", sp_conf_set_string, M(group), 0, 0, NULL, 0},
    {"hooks", set_hooks, 0, 0, 0, NULL, 0},
    {"drain_delay", sp_conf_set_duration, M(drain_delay_ms), 0, HOURS(1), "0..1h", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- listen --------------------------------------------------------------- */

/* The flags a listen address may carry after it. */
static const struct {
    const char *name;
    size_t offset; /* of its bool in struct sp_listen_conf */
} listen_flags[] = {
    {"tls", offsetof(struct sp_listen_conf, tls)},
    {"proxy_protocol", offsetof(struct sp_listen_conf, proxy_protocol)},
};

/* Sets the flag flag[0..flen) of the listen line v on ln.  Returns 0, or -1
 * after reporting an unknown flag or tls on a service without TLS. */
static int listen_flag(struct sp_conf_ctx *L, struct sp_listen_conf *ln, const char *v,
                       const char *flag, size_t flen)
{
    for (size_t i = 0; i < sizeof(listen_flags) / sizeof(listen_flags[0]); i++) {
        if (strlen(listen_flags[i].name) != flen || strncasecmp(flag, listen_flags[i].name, flen))
            continue;
        if (listen_flags[i].offset == offsetof(struct sp_listen_conf, tls) &&
            !L->cfg->services[L->svc].def->tls) {
            fail(L, L->lineno, "invalid listen '%s': %s does not speak TLS", v, L->label);
            return -1;
        }
        *(bool *)((char *)ln + listen_flags[i].offset) = true;
        return 0;
    }
    fail(L, L->lineno, "invalid listen '%s': unknown flag '%.*s' (expected: tls, proxy_protocol)",
         v, (int)flen, flag);
    return -1;
}

static void add_listen(struct sp_conf_ctx *L, const char *v)
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
    /* "ADDR [FLAG]...": flags follow the address after white space, in any order. */
    char addr[128];
    size_t alen = strcspn(v, " \t");
    if (alen >= sizeof(addr)) {
        fail(L, L->lineno, "invalid listen '%s': expected HOST:PORT, [IPV6]:PORT or *:PORT", v);
        return;
    }
    memcpy(addr, v, alen);
    addr[alen] = '\0';
    for (const char *flag = v + alen + strspn(v + alen, " \t"); *flag != '\0';) {
        size_t flen = strcspn(flag, " \t");
        if (listen_flag(L, ln, v, flag, flen) != 0)
            return;
        flag += flen + strspn(flag + flen, " \t");
    }
    v = addr;
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
    char ref[PATH_MAX + 16];
    if (o != NULL && strcmp(o->text, ln->text) == 0) {
        fail(L, L->lineno, "duplicate listen %s (also at %s)", ln->text,
             sp__config_line_ref(L, o->line, ref, sizeof(ref)));
        return;
    }
    if (o != NULL) {
        fail(L, L->lineno, "listen %s overlaps %s (%s)", ln->text, o->text,
             sp__config_line_ref(L, o->line, ref, sizeof(ref)));
        return;
    }
    cfg->nlistens++;
}

bool sp_conf_section_tls(const struct sp_conf_ctx *L)
{
    for (unsigned i = 0; i < L->cfg->nlistens; i++)
        if (L->cfg->listens[i].service == L->svc && L->cfg->listens[i].tls)
            return true;
    return false;
}

/* ---- sections ------------------------------------------------------------ */

bool sp__config_valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    }
    return true;
}

/* Checks what can only be checked once a section is complete. */
static void section_end(struct sp_conf_ctx *L)
{
    struct sp_config *cfg = L->cfg;
    struct sp_service_conf *s;
    unsigned n = 0;

    if (L->in_module)
        sp__config_module_end(L);
    if (L->in_upstream)
        sp__config_upstream_end(L);
    if (!L->in_section || L->def == NULL)
        return;
    s = &cfg->services[L->svc];
    for (unsigned i = 0; i < cfg->nlistens; i++)
        n += cfg->listens[i].service == L->svc;
    if (n == 0) {
        fail(L, s->line, "%s has no listen address", L->label);
        return;
    }
    if (s->def->check != NULL)
        s->def->check(L, s->conf);
}

static void add_service(struct sp_conf_ctx *L, const struct sp_service_def *def, const char *name,
                        size_t n)
{
    struct sp_config *cfg = L->cfg;
    struct sp_service_conf *s;

    for (unsigned i = 0; i < cfg->nservices; i++) {
        s = &cfg->services[i];
        if (s->def == def && strlen(s->name) == n && memcmp(s->name, name, n) == 0) {
            char ref[PATH_MAX + 16];
            fail(L, L->lineno, "duplicate section [%s %s] (first at %s)", def->name, s->name,
                 sp__config_line_ref(L, s->line, ref, sizeof(ref)));
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
    s->def = def;
    s->line = L->lineno;
    s->conf = calloc(1, def->conf_size ? def->conf_size : 1);
    if (s->conf == NULL) {
        fail(L, 0, "out of memory");
        return;
    }
    L->svc = cfg->nservices++; /* from here on sp_config_free() frees s->conf */
    s->name = dup_or_fail(L, name, n);
    if (L->failed)
        return;
    L->def = def;
    L->in_section = true;
    snprintf(L->label, sizeof(L->label), "[%s %s]", def->name, s->name);
    if (def->defaults != NULL)
        def->defaults(L, s->conf);
}

/* L->line is "[...]" with nothing after the bracket but a comment, stripped. */
static void section_begin(struct sp_conf_ctx *L)
{
    char *close = strchr(L->line, ']'), type[16] = "", name[72] = "", extra;
    const struct sp_service_def *def;
    int words;

    section_end(L);
    if (L->failed)
        return;
    L->headers++;
    L->ended_by = -1;
    L->in_section = false;
    L->in_module = false;
    L->in_upstream = false;
    L->def = NULL;
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
            char ref[PATH_MAX + 16];
            fail(L, L->lineno, "duplicate section [master] (first at %s)",
                 sp__config_line_ref(L, L->master_line, ref, sizeof(ref)));
        } else {
            L->master_line = L->lineno;
            L->in_section = true;
            snprintf(L->label, sizeof(L->label), "[master]");
        }
        return;
    }
    if (strcmp(type, "module") == 0) {
        if (words != 2)
            fail(L, L->lineno, "section [module] needs one name, e.g. [module hello]");
        else
            sp__config_module_begin(L, name);
        return;
    }
    if (strcmp(type, "upstream") == 0) {
        if (words != 2)
            fail(L, L->lineno, "section [upstream] needs one name, e.g. [upstream app]");
        else
            sp__config_upstream_begin(L, name);
        return;
    }
    def = sp_service_find(type, strlen(type));
    if (def == NULL && strcmp(type, sp_module_service_def.name) == 0)
        def = &sp_module_service_def;
    if (def == NULL)
        fail(L, L->lineno, "unknown section [%s]", L->line + 1);
    else if (words < 2)
        fail(L, L->lineno, "section [%s] needs a name, e.g. [%s main]", type, type);
    else if (words > 2 || !sp__config_valid_name(name, strlen(name)))
        fail(L, L->lineno, "invalid name in [%s]: use letters, digits, '_', '-' and '.'",
             L->line + 1);
    else
        add_service(L, def, name, strlen(name));
}

/* ---- keys ------------------------------------------------------------------ */

/* The key table of the current section. */
static const struct sp_conf_key *section_keys(const struct sp_conf_ctx *L)
{
    return L->def != NULL ? L->def->keys : master_keys;
}

/* Whether word (n bytes) is a SP_CONF_LINE key of any service: such a line
 * keeps its comments and may hold spaces before its '='. */
static bool is_line_key(const char *word, size_t n)
{
    unsigned ndefs;
    const struct sp_service_def *const *defs = sp_service_defs(&ndefs);

    for (unsigned d = 0; d < ndefs; d++) {
        for (const struct sp_conf_key *k = defs[d]->keys; k != NULL && k->name != NULL; k++) {
            if ((k->flags & SP_CONF_LINE) && strlen(k->name) == n && memcmp(k->name, word, n) == 0)
                return true;
        }
    }
    return false;
}

/* One "key = value" line: L->key and L->value are set. */
static void key_line(struct sp_conf_ctx *L)
{
    const struct sp_conf_key *keys = section_keys(L), *k;
    const char *name = L->key;
    size_t word = strcspn(name, " \t");
    unsigned i;

    if (!L->in_section && L->ended_by >= 0) {
        fail(L, L->lineno,
             "key '%s' outside of any section: the sections of %s ended with that file "
             "(start a section here, or move the key above the include)",
             name, L->map->srcs[L->ended_by].name);
        return;
    }
    if (!L->in_section) {
        fail(L, L->lineno, "key '%s' outside of any section", name);
        return;
    }
    if (L->in_module) {
        sp__config_module_key(L);
        return;
    }
    if (L->in_upstream) {
        sp__config_upstream_key(L);
        return;
    }
    if (L->def != NULL && strcmp(name, "listen") == 0) {
        if (L->value[0] == '\0')
            fail(L, L->lineno, "missing value for %s", name);
        else
            add_listen(L, L->value);
        return;
    }
    for (i = 0; keys[i].name != NULL; i++) {
        k = &keys[i];
        if (L->whole_line ? (k->flags & SP_CONF_LINE) && strlen(k->name) == word &&
                                memcmp(k->name, name, word) == 0
                          : strcmp(k->name, name) == 0)
            break;
    }
    if (keys[i].name == NULL) {
        fail(L, L->lineno, "unknown key '%s' in %s", name, L->label);
        return;
    }
    k = &keys[i];
    if (L->whole_line || (k->flags & SP_CONF_LINE)) {
        /* The rest of the line after the key word, whatever it holds. */
        if (!L->whole_line && L->value[0] == '\0')
            fail(L, L->lineno, "missing value for %s", name);
        else
            k->set(L, k, L->cfg->services[L->svc].conf, L->line + strlen(k->name));
        return;
    }
    if (!(k->flags & SP_CONF_REPEAT) && (L->seen & (UINT64_C(1) << i))) {
        fail(L, L->lineno, "duplicate key '%s' in %s", name, L->label);
        return;
    }
    L->seen |= UINT64_C(1) << i;
    if (L->def == NULL)
        L->master_key_line[i] = L->lineno;
    if (L->value[0] == '\0') {
        fail(L, L->lineno, "missing value for %s", name);
        return;
    }
    k->set(L, k, L->def != NULL ? L->cfg->services[L->svc].conf : (void *)L->cfg, L->value);
}

/* ---- include ------------------------------------------------------------ */

/*
 * "include = GLOB" reads the files GLOB matches (relative to the directory of
 * the file the line is in, in alphabetical order) as if their text stood in
 * place of the line, with one exception.  A file's first keys belong to the
 * section the include line is in, so a file may add keys to a section; a
 * section a file opens ends with that file, as nginx's blocks end in the file
 * that opens them: after such a file the reading goes on outside any
 * section, and a key there is refused with a message saying why.  A pattern
 * with a wildcard may match nothing; a plain name must exist.
 */
static bool next_line(struct sp_conf_ctx *L);

/* Whether the file st is one of those being read (an include cycle). */
static bool being_read(const struct sp_conf_ctx *L, const struct stat *st)
{
    const struct sp_config *cfg = L->cfg;
    int i = (int)L->src;

    for (unsigned depth = 0; depth <= SP__CONFIG_MAX_DEPTH && i >= 0; depth++) {
        const struct sp__config_src *f = &cfg->srcs[i];
        if ((f->dev != 0 || f->ino != 0) && f->dev == st->st_dev && f->ino == st->st_ino)
            return true;
        if (i == 0)
            break;
        i = src_of(cfg, f->from);
    }
    return false;
}

static unsigned count_lines(const char *text, size_t len)
{
    unsigned n = 1;
    for (const char *p = text; (p = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p++)
        n++;
    return n;
}

/* Adds a file to cfg->srcs.  Returns its index, or -1 with an error recorded. */
static int add_src(struct sp_conf_ctx *L, const char *name, const char *dir, unsigned nlines,
                   unsigned from, const struct stat *st)
{
    struct sp_config *cfg = L->cfg;
    struct sp__config_src *all = realloc(cfg->srcs, (cfg->nsrcs + 1) * sizeof(*all));

    if (all == NULL) {
        fail(L, 0, "out of memory");
        return -1;
    }
    cfg->srcs = all;
    struct sp__config_src *f = &all[cfg->nsrcs];
    memset(f, 0, sizeof(*f));
    f->name = name;
    f->dir = dir;
    f->base = L->next_base;
    f->nlines = nlines;
    f->from = from;
    if (st != NULL) {
        f->dev = st->st_dev;
        f->ino = st->st_ino;
    }
    L->next_base += nlines;
    return (int)cfg->nsrcs++;
}

/* Reads path, one match of the include at line at, in place of that line. */
static void include_file(struct sp_conf_ctx *L, const char *path, unsigned at)
{
    struct stat st;
    const char *what, *name, *dir;
    char real[PATH_MAX], *slash, *buf;
    size_t len;

    if (L->cfg->nsrcs >= SP__CONFIG_MAX_FILES) {
        fail(L, at, "include: too many files (max %d in one configuration)", SP__CONFIG_MAX_FILES);
        return;
    }
    bool known = stat(path, &st) == 0;
    if (known && being_read(L, &st)) {
        fail(L, at, "include cycle: %s is already being read", path);
        return;
    }
    /* A directory a wildcard matched, or a FIFO or device a read could
     * block on forever. */
    if (known && !S_ISREG(st.st_mode)) {
        fail(L, at, "include %s: not a regular file", path);
        return;
    }
    int rc = sp__config_read(path, &buf, &len, &what);
    if (rc < 0) {
        if (rc == -EFBIG)
            fail(L, at, "include %s: too large (max %d bytes)", path, SP_CONFIG_MAX_FILE);
        else
            fail(L, at, "include %s: %s: %s", path, what, strerror(-rc));
        return;
    }
    /* Its own includes are relative to the directory of the file a symbolic
     * link leads to, as the main file's are. */
    if (realpath(path, real) == NULL)
        snprintf(real, sizeof(real), "%s", path);
    slash = strrchr(real, '/');
    if (slash != NULL)
        *slash = '\0';
    name = dup_or_fail(L, path, strlen(path));
    dir = dup_or_fail(L, real, strlen(real));
    int src = L->failed ? -1 : add_src(L, name, dir, count_lines(buf, len), at, known ? &st : NULL);
    if (src < 0) {
        free(buf);
        return;
    }

    /* Read it, then go on where the include line left off. */
    const char *text = L->text;
    size_t tlen = L->len, pos = L->pos;
    unsigned lineno = L->lineno, from_src = L->src, headers = L->headers;
    L->text = buf;
    L->len = len;
    L->pos = 0;
    L->lineno = L->cfg->srcs[src].base;
    L->src = (unsigned)src;
    L->depth++;
    while (next_line(L))
        ;
    if (!L->failed && L->headers != headers) {
        section_end(L);
        L->in_section = false;
        L->in_module = false;
        L->def = NULL;
        L->ended_by = src;
    }
    L->depth--;
    L->text = text;
    L->len = tlen;
    L->pos = pos;
    L->lineno = lineno;
    L->src = from_src;
    free(buf);
}

static void include(struct sp_conf_ctx *L, const char *value)
{
    char pattern[PATH_MAX];
    unsigned at = L->lineno;
    glob_t g;

    if (value[0] == '\0') {
        fail(L, at, "missing value for include");
        return;
    }
    if (L->depth >= SP__CONFIG_MAX_DEPTH) {
        fail(L, at, "include %s: includes nested too deeply (max %d levels)", value,
             SP__CONFIG_MAX_DEPTH);
        return;
    }
    if (sp_config_join_path(pattern, sizeof(pattern), L->cfg->srcs[L->src].dir, value) < 0) {
        fail(L, at, "include %s: path too long", value);
        return;
    }
    /* value lives in L->line, which the included files overwrite: only
     * pattern is used from here on. */
    int rc = glob(pattern, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        if (strpbrk(pattern, "*?[") == NULL)
            fail(L, at, "include %s: cannot open: %s", pattern, strerror(ENOENT));
        return;
    }
    if (rc != 0) {
        fail(L, at, "include %s: %s", pattern,
             rc == GLOB_NOSPACE ? "out of memory" : "cannot read its directory");
        return;
    }
    for (size_t i = 0; i < g.gl_pathc && !L->failed; i++)
        include_file(L, g.gl_pathv[i], at);
    globfree(&g);
}

/* ---- reading lines ------------------------------------------------------- */

/* Reads the next line into L->line, normalised, and handles it.  Returns
 * false at the end of the text or after an error. */
static bool next_line(struct sp_conf_ctx *L)
{
    const char *raw, *nl;
    char *line = L->line, *sep;
    size_t n, word;

    if (L->failed || L->pos >= L->len)
        return false;
    raw = L->text + L->pos;
    nl = memchr(raw, '\n', L->len - L->pos);
    n = nl ? (size_t)(nl - raw) : L->len - L->pos;
    L->pos += n + (nl != NULL);
    L->lineno++;
    if (memchr(raw, '\0', n) != NULL) {
        fail(L, L->lineno, "NUL byte in line");
        return false;
    }
    if (n > SP_CONFIG_MAX_LINE) {
        fail(L, L->lineno, "line too long (max %d bytes)", SP_CONFIG_MAX_LINE);
        return false;
    }
    if (L->lineno == L->cfg->srcs[L->src].base + 1 && n >= 3 &&
        memcmp(raw, "\xEF\xBB\xBF", 3) == 0) {
        raw += 3;
        n -= 3;
    }
    while (n > 0 && isspace((unsigned char)*raw)) {
        raw++;
        n--;
    }
    memcpy(line, raw, n);
    line[n] = '\0';

    word = strcspn(line, " \t");
    L->whole_line = line[word] != '\0' && is_line_key(line, word);
    if (!L->whole_line) {
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

    if (n == 0 || line[0] == '#' || line[0] == ';')
        return true;
    if (line[0] == '[') {
        section_begin(L);
        return !L->failed;
    }
    sep = strpbrk(line, "=:");
    if (!L->whole_line && sep != NULL && sep > line && line[word] != '\0' && line + word < sep &&
        line[word + strspn(line + word, " \t")] != *sep) {
        /* "listen 127.0.0.1:80": a word, a space and more before any '='. */
        fail(L, L->lineno, "syntax error: missing '=' after '%.*s'", (int)word, line);
        return false;
    }
    if (!L->whole_line && sep == NULL && line[word] != '\0') {
        fail(L, L->lineno, "syntax error: missing '=' after '%.*s'", (int)word, line);
        return false;
    }
    if (sep == NULL || sep == line) {
        fail(L, L->lineno, "syntax error: expected [section] or key = value");
        return false;
    }
    /* The key is what comes before the separator, without its trailing
     * space; it is copied out so that a whole-line value keeps the line. */
    L->value = sep + 1 + strspn(sep + 1, " \t");
    size_t klen = (size_t)(sep - line);
    while (klen > 0 && isspace((unsigned char)line[klen - 1]))
        klen--;
    memcpy(L->key, line, klen);
    L->key[klen] = '\0';
    if (!L->whole_line && strcmp(L->key, "include") == 0)
        include(L, L->value);
    else
        key_line(L);
    return !L->failed;
}

/* ---- entry points -------------------------------------------------------- */

/* Resolves [master] user and group into ids and the user's group list
 * (account lookups only: nothing changes until a worker switches to them). */
static void resolve_identity(struct sp_conf_ctx *L)
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
static const char *run_path(struct sp_conf_ctx *L, const char *suffix)
{
    char out[PATH_MAX];

    if (sp_config_run_path(out, sizeof(out), L->name, suffix) < 0) {
        fail(L, 0, "default %s path too long", suffix);
        return NULL;
    }
    return dup_or_fail(L, out, strlen(out));
}

/* "an [http NAME] or [echo NAME]": the registered services, for messages. */
static const char *service_examples(char *buf, size_t size)
{
    unsigned n;
    const struct sp_service_def *const *defs = sp_service_defs(&n);
    size_t len = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < n && len < size; i++) {
        const char *first = strchr("aeiou", defs[i]->name[0]) ? "an " : "a ";
        const char *sep = i == 0 ? first : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + len, size - len, "%s[%s NAME]", sep, defs[i]->name);
        len += w > 0 ? (size_t)w : 0;
    }
    if (n == 0)
        snprintf(buf, size, "a service");
    return buf;
}

static void finish(struct sp_conf_ctx *L)
{
    struct sp_config *cfg = L->cfg;
    char buf[256];

    section_end(L);
    if (L->failed)
        return;
    sp__config_modules_resolve(L);
    if (L->failed)
        return;
    if (cfg->nservices == 0) {
        fail(L, 0, "no service defined: add %s section", service_examples(buf, sizeof(buf)));
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
    struct sp_conf_ctx *L = calloc(1, sizeof(*L));

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

    L->map = cfg;
    L->ended_by = -1;
    cfg->path = dup_or_fail(L, name, strlen(name));
    cfg->dir = config_dir(L, name);
    if (L->failed)
        goto fail;
    struct stat st;
    if (add_src(L, cfg->path, cfg->dir, count_lines(text, len), 0,
                stat(name, &st) == 0 ? &st : NULL) < 0)
        goto fail;
    cfg->workers = online_cpus();
    cfg->threads = 1;
    cfg->hooks = true;
    cfg->stack_size = 64 * 1024;
    cfg->shutdown_timeout_ms = SP_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS;

    while (next_line(L))
        ;
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
