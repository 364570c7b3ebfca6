/*
 * [upstream NAME] sections: the servers a reverse proxy forwards to.
 *
 *   [upstream app]
 *   server = 127.0.0.1:9001 weight=2 max_fails=3 fail_timeout=10s
 *   server = unix:/run/app.sock
 *   keepalive = 32
 *   keepalive_burst = 100ms
 *
 * The section is the loader's own (like [module NAME]): it has no listen
 * address and no worker callbacks; the HTTP service finds it by name
 * (sp_config_find_upstream) for its "proxy PREFIX = NAME" lines, which
 * http_conf_resolve checks against sp_conf_has_upstream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "spindle/config.h"

#include "config_internal.h"

#define U(f)     offsetof(struct sp_upstream_conf, f)
#define HOURS(n) ((n)*3600 * INT64_C(1000))

/* A decimal number lo..hi, whole string.  Returns 0 or -EINVAL. */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned v = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > hi)
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* The address word of a server line: HOST:PORT or unix:PATH (absolute, or
 * relative to the file's directory). */
static int server_addr(struct sp_conf_ctx *L, struct sp_upstream_server *sv, const char *w)
{
    if (strncmp(w, "unix:", 5) == 0) {
        const char *path = sp__config_resolve(L, L->cfg->dir, w + 5);
        struct sockaddr_un *un = (struct sockaddr_un *)&sv->addr;
        if (path == NULL)
            return -1;
        if (w[5] == '\0' || strlen(path) >= sizeof(un->sun_path)) {
            sp_conf_error(L, "invalid server '%s': expected unix:PATH (at most %zu bytes)", w,
                          sizeof(un->sun_path) - 1);
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path) + 1);
        sv->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        snprintf(sv->text, sizeof(sv->text), "unix:%s", path);
        return 0;
    }
    int rc = sp_parse_listen(w, &sv->addr, &sv->addrlen);
    if (rc == 0 && w[0] == '*')
        rc = -EADDRNOTAVAIL;
    if (rc == -ERANGE) {
        sp_conf_error(L, "invalid server '%s': port out of range (1..65535)", w);
        return -1;
    }
    if (rc < 0) {
        sp_conf_error(L,
                      "invalid server '%s': expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or "
                      "unix:PATH (host names are not resolved)",
                      w);
        return -1;
    }
    snprintf(sv->text, sizeof(sv->text), "%s", w);
    return 0;
}

/* One "NAME=VALUE" parameter after the address.  Returns 0 or -1 (error
 * recorded). */
static int server_param(struct sp_conf_ctx *L, struct sp_upstream_server *sv, char *w)
{
    char *eq = strchr(w, '=');
    const char *v = eq ? eq + 1 : "";
    if (eq)
        *eq = '\0';
    if (strcmp(w, "weight") == 0 && eq) {
        if (parse_uint(v, 1, 1000, &sv->weight) == 0)
            return 0;
        sp_conf_error(L, "invalid server weight '%s': expected 1..1000", v);
        return -1;
    }
    if (strcmp(w, "max_fails") == 0 && eq) {
        if (parse_uint(v, 0, 1000, &sv->max_fails) == 0)
            return 0;
        sp_conf_error(L, "invalid server max_fails '%s': expected 0..1000", v);
        return -1;
    }
    if (strcmp(w, "fail_timeout") == 0 && eq) {
        int64_t ms;
        if (sp_parse_duration(v, &ms) == 0 && ms >= 1 && ms <= HOURS(24)) {
            sv->fail_timeout_ms = ms;
            return 0;
        }
        sp_conf_error(L, "invalid server fail_timeout '%s': expected a duration 1ms..24h", v);
        return -1;
    }
    sp_conf_error(L,
                  "invalid server parameter '%s': expected weight=N, max_fails=N or "
                  "fail_timeout=DURATION",
                  w);
    return -1;
}

/* "server = ADDRESS [weight=N] [max_fails=N] [fail_timeout=DURATION]" */
static void set_server(struct sp_conf_ctx *L, const struct sp_conf_key *key, void *conf,
                       const char *value)
{
    struct sp_upstream_conf *u = conf;
    struct sp_upstream_server sv = {.weight = 1, .max_fails = 1, .fail_timeout_ms = 10 * 1000};
    char buf[SP_CONFIG_MAX_LINE + 1], *save = NULL, *w;

    (void)key;
    snprintf(buf, sizeof(buf), "%s", value);
    w = strtok_r(buf, " \t", &save);
    if (w == NULL || server_addr(L, &sv, w) != 0)
        return;
    while ((w = strtok_r(NULL, " \t", &save)) != NULL)
        if (server_param(L, &sv, w) != 0)
            return;
    for (unsigned i = 0; i < u->nservers; i++) {
        if (strcmp(u->servers[i].text, sv.text) == 0) {
            sp_conf_error(L, "duplicate server '%s' (also at line %u)", sv.text,
                          u->servers[i].line);
            return;
        }
    }
    if (u->nservers == SP_UPSTREAM_MAX_SERVERS) {
        sp_conf_error(L, "too many servers in one upstream (max %d)", SP_UPSTREAM_MAX_SERVERS);
        return;
    }
    struct sp_upstream_server *all = realloc(u->servers, (u->nservers + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error_at(L, 0, "out of memory");
        return;
    }
    u->servers = all;
    sv.line = sp_conf_line(L);
    all[u->nservers++] = sv;
}

static void set_balance(struct sp_conf_ctx *L, const struct sp_conf_key *key, void *conf,
                        const char *v)
{
    struct sp_upstream_conf *u = conf;

    (void)key;
    if (strcmp(v, "round_robin") == 0)
        u->balance = SP_BALANCE_ROUND_ROBIN;
    else if (strcmp(v, "least_conn") == 0)
        u->balance = SP_BALANCE_LEAST_CONN;
    else if (strcmp(v, "hash") == 0)
        u->balance = SP_BALANCE_HASH;
    else
        sp_conf_error(L, "invalid balance '%s': expected round_robin, least_conn or hash", v);
}

static void set_keepalive(struct sp_conf_ctx *L, const struct sp_conf_key *key, void *conf,
                          const char *v)
{
    struct sp_upstream_conf *u = conf;

    (void)key;
    if (parse_uint(v, 0, 4096, &u->keepalive) != 0)
        sp_conf_error(L, "invalid keepalive '%s': expected 0..4096 (idle connections)", v);
}

/* "health_check = PATH INTERVAL": a GET of PATH to each server every
 * INTERVAL; an answer other than 2xx or 3xx, or none, leaves it out. */
static void set_health(struct sp_conf_ctx *L, const struct sp_conf_key *key, void *conf,
                       const char *v)
{
    struct sp_upstream_conf *u = conf;
    size_t plen = strcspn(v, " \t");
    const char *iv = v + plen + strspn(v + plen, " \t");
    int64_t ms;

    (void)key;
    if (plen == 0 || !sp_conf_valid_url_path(v, plen) || *iv == '\0' ||
        sp_parse_duration(iv, &ms) != 0 || ms < 100 || ms > HOURS(24)) {
        sp_conf_error(L,
                      "invalid health_check '%s': expected PATH INTERVAL (a path starting "
                      "with '/', an interval 100ms..24h)",
                      v);
        return;
    }
    u->health_path = sp_conf_strdup(L, v, plen);
    u->health_interval_ms = ms;
}

static const struct sp_conf_key upstream_keys[] = {
    {"server", set_server, 0, 0, 0, NULL, SP_CONF_REPEAT},
    {"balance", set_balance, 0, 0, 0, NULL, 0},
    {"keepalive", set_keepalive, 0, 0, 0, NULL, 0},
    {"keepalive_timeout", sp_conf_set_duration, U(keepalive_timeout_ms), 1, HOURS(24), "1ms..24h",
     0},
    {"keepalive_burst", sp_conf_set_duration, U(keepalive_burst_ms), 0, HOURS(1), "0..1h", 0},
    {"connect_timeout", sp_conf_set_duration, U(connect_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"read_timeout", sp_conf_set_duration, U(read_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"send_timeout", sp_conf_set_duration, U(send_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"health_check", set_health, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void sp__config_upstream_begin(struct sp_conf_ctx *L, const char *name)
{
    struct sp_config *cfg = L->cfg;
    size_t n = strlen(name);

    if (!sp__config_valid_name(name, n)) {
        sp_conf_error(L, "invalid name in [upstream %s]: use letters, digits, '_', '-' and '.'",
                      name);
        return;
    }
    for (unsigned i = 0; i < cfg->nupstreams; i++) {
        if (strcmp(cfg->upstreams[i].name, name) == 0) {
            sp_conf_error(L, "duplicate section [upstream %s] (first at line %u)", name,
                          cfg->upstreams[i].line);
            return;
        }
    }
    if (cfg->nupstreams == SP_CONFIG_MAX_UPSTREAMS) {
        sp_conf_error(L, "too many upstreams (max %d)", SP_CONFIG_MAX_UPSTREAMS);
        return;
    }
    struct sp_upstream_conf *all = realloc(cfg->upstreams, (cfg->nupstreams + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error(L, "out of memory");
        return;
    }
    cfg->upstreams = all;
    struct sp_upstream_conf *u = &all[cfg->nupstreams];
    *u = (struct sp_upstream_conf){
        .line = L->lineno,
        .keepalive = 32,
        .keepalive_timeout_ms = 60 * 1000,
        .keepalive_burst_ms = 100,
        .connect_timeout_ms = 1000,
        .read_timeout_ms = 30 * 1000,
        .send_timeout_ms = 30 * 1000,
    };
    L->ups = cfg->nupstreams++; /* from here on sp_config_free() frees u->servers */
    u->name = sp_conf_strdup(L, name, n);
    if (u->name == NULL)
        return;
    L->in_upstream = true;
    L->in_section = true;
    snprintf(L->label, sizeof(L->label), "[upstream %s]", u->name);
}

void sp__config_upstream_key(struct sp_conf_ctx *L)
{
    struct sp_conf_entry e = {.key = L->key, .value = L->value, .line = L->lineno};
    sp__config_apply_key(L, upstream_keys, &e, &L->cfg->upstreams[L->ups]);
}

void sp__config_upstream_end(struct sp_conf_ctx *L)
{
    const struct sp_upstream_conf *u = &L->cfg->upstreams[L->ups];

    if (u->nservers == 0)
        sp_conf_error_at(L, u->line, "%s has no server (server = HOST:PORT or unix:PATH)",
                         L->label);
}

void sp__config_upstreams_free(struct sp_config *cfg)
{
    for (unsigned i = 0; i < cfg->nupstreams; i++)
        free(cfg->upstreams[i].servers);
    free(cfg->upstreams);
}

const struct sp_upstream_conf *sp_config_find_upstream(const struct sp_config *cfg,
                                                       const char *name)
{
    for (unsigned i = 0; i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

bool sp_conf_has_upstream(const struct sp_conf_ctx *L, const char *name)
{
    return sp_config_find_upstream(L->cfg, name) != NULL;
}
