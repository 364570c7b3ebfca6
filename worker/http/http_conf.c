/*
 * [http NAME]: the key table, defaults and checks of the HTTP service's
 * configuration.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "http_conf.h"

#define HOURS(n) ((n)*3600 * INT64_C(1000))
#define H(f)     offsetof(struct sp_http_conf, f)

int sp_parse_return(char *s, struct sp_http_return *r, const char **why)
{
    char *p = s, *path, *ctype, *slash;
    size_t plen, clen;
    unsigned status = 0;

    *why = "expected 'return PATH = STATUS CONTENT-TYPE [BODY]'";
    p += strspn(p, " \t");
    path = p;
    plen = strcspn(p, " \t=");
    p += plen;
    p += strspn(p, " \t");
    if (*p != '=')
        return -EINVAL;
    path[plen] = '\0';
    p++;
    p += strspn(p, " \t");
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++)
        status = status > 999 ? status : status * 10 + (unsigned)(*p - '0');
    if (*p != ' ' && *p != '\t' && *p != '\0')
        return -EINVAL;
    if (status < 200 || status > 599) {
        *why = "the status must be 200..599";
        return -EINVAL;
    }
    if (*p == '\0')
        return -EINVAL;
    p += strspn(p, " \t");
    ctype = p;
    clen = strcspn(p, " \t");
    p += clen;
    p += strspn(p, " \t");
    ctype[clen] = '\0';

    if (!sp_conf_valid_url_path(path, plen)) {
        *why = "the path must start with '/' and hold no spaces or control characters";
        return -EINVAL;
    }
    if (status < 200 || status > 599) {
        *why = "the status must be 200..599";
        return -EINVAL;
    }
    slash = memchr(ctype, '/', clen);
    if (slash == NULL || slash == ctype ||
        !sp_conf_valid_url_path(slash, (size_t)(ctype + clen - slash)) || slash[1] == '\0') {
        *why = "the content type must be TYPE/SUBTYPE";
        return -EINVAL;
    }
    r->path = path;
    r->status = status;
    r->content_type = ctype;
    r->body = p;
    r->body_len = strlen(p);
    return 0;
}

/* "return PATH = STATUS CONTENT-TYPE [BODY]", parsed from the whole line:
 * the body is the rest of it, ';' and '=' included. */
static void set_return(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                       const char *value)
{
    struct sp_http_conf *h = conf;
    struct sp_http_return ret, *all;
    const char *why;

    (void)key;
    if (value[0] != ' ' && value[0] != '\t') {
        /* "return = ...": the key alone, with no path. */
        sp_conf_error(ctx, "return needs a path: return PATH = STATUS CONTENT-TYPE [BODY]");
        return;
    }
    /* The loader hands over its copy of the line, which is ours to cut. */
    if (sp_parse_return((char *)value, &ret, &why) < 0) {
        sp_conf_error(ctx, "invalid return: %s", why);
        return;
    }
    for (unsigned i = 0; i < h->nreturns; i++) {
        if (strcmp(h->returns[i].path, ret.path) == 0) {
            sp_conf_error(ctx, "duplicate return path '%s' (also at line %u)", ret.path,
                          h->returns[i].line);
            return;
        }
    }
    if (h->nreturns == SP_CONFIG_MAX_RETURNS) {
        sp_conf_error(ctx, "too many return lines in one section (max %d)", SP_CONFIG_MAX_RETURNS);
        return;
    }
    all = realloc(h->returns, (h->nreturns + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error_at(ctx, 0, "out of memory");
        return;
    }
    h->returns = all;
    ret.path = sp_conf_strdup(ctx, ret.path, strlen(ret.path));
    ret.content_type = sp_conf_strdup(ctx, ret.content_type, strlen(ret.content_type));
    ret.body = sp_conf_strdup(ctx, ret.body, ret.body_len);
    ret.line = sp_conf_line(ctx);
    if (ret.path && ret.content_type && ret.body)
        all[h->nreturns++] = ret;
}

/* Whether a handle or proxy line of h already has the prefix p[0..n). */
static bool prefix_taken(struct sp_conf_ctx *ctx, const struct sp_http_conf *h, const char *p,
                         size_t n)
{
    for (unsigned i = 0; i < h->nhandles; i++) {
        if (strlen(h->handles[i].prefix) == n && memcmp(h->handles[i].prefix, p, n) == 0) {
            sp_conf_error(ctx, "duplicate prefix '%.*s' (also at line %u)", (int)n, p,
                          h->handles[i].line);
            return true;
        }
    }
    for (unsigned i = 0; i < h->nproxies; i++) {
        if (strlen(h->proxies[i].prefix) == n && memcmp(h->proxies[i].prefix, p, n) == 0) {
            sp_conf_error(ctx, "duplicate prefix '%.*s' (also at line %u)", (int)n, p,
                          h->proxies[i].line);
            return true;
        }
    }
    return false;
}

/* "WORD PREFIX = NAME [; comment]", the value of a handle or proxy line.
 * The prefix is kept without a trailing '/': routing matches it on whole
 * segments.  Returns 0 with both strings copied, or -1 (error recorded). */
static int parse_prefix_line(struct sp_conf_ctx *ctx, const struct sp_http_conf *h,
                             const char *word, const char *what, const char *value,
                             const char **prefix, const char **name)
{
    const char *p = value + strspn(value, " \t");
    size_t plen = strcspn(p, " \t="), mlen;
    const char *eq = p + plen + strspn(p + plen, " \t"), *mod;

    if (plen == 0 || *eq != '=') {
        sp_conf_error(ctx, "expected '%s PREFIX = %s'", word, what);
        return -1;
    }
    mod = eq + 1 + strspn(eq + 1, " \t");
    mlen = strcspn(mod, " \t");
    char after = mod[mlen + strspn(mod + mlen, " \t")];
    if (mlen == 0 || (after != '\0' && after != ';' && after != '#')) {
        sp_conf_error(ctx, "expected '%s PREFIX = %s'", word, what);
        return -1;
    }
    if (!sp_conf_valid_url_path(p, plen) || memchr(p, '?', plen) || memchr(p, '%', plen)) {
        sp_conf_error(ctx, "invalid %s prefix '%.*s': expected a path starting with '/'", word,
                      (int)plen, p);
        return -1;
    }
    while (plen > 1 && p[plen - 1] == '/')
        plen--;
    if (prefix_taken(ctx, h, p, plen))
        return -1;
    if (h->nhandles + h->nproxies == SP_CONFIG_MAX_HANDLES) {
        sp_conf_error(ctx, "too many handle and proxy lines in one section (max %d)",
                      SP_CONFIG_MAX_HANDLES);
        return -1;
    }
    *prefix = sp_conf_strdup(ctx, p, plen);
    *name = sp_conf_strdup(ctx, mod, mlen);
    return *prefix && *name ? 0 : -1;
}

/* "handle PREFIX = MODULE".  Whether MODULE exists is checked at the end of
 * the file (http_conf_resolve), whether it has a handler when the worker
 * starts the service (http_init). */
static void set_handle(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                       const char *value)
{
    struct sp_http_conf *h = conf;
    struct sp_http_handle hd = {.line = sp_conf_line(ctx)};

    (void)key;
    if (parse_prefix_line(ctx, h, "handle", "MODULE", value, &hd.prefix, &hd.module) != 0)
        return;
    struct sp_http_handle *all = realloc(h->handles, (h->nhandles + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error_at(ctx, 0, "out of memory");
        return;
    }
    h->handles = all;
    all[h->nhandles++] = hd;
}

/* "proxy PREFIX = UPSTREAM": UPSTREAM is an [upstream NAME] section,
 * anywhere in the file (http_conf_resolve). */
static void set_proxy(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                      const char *value)
{
    struct sp_http_conf *h = conf;
    struct sp_http_proxy px = {.line = sp_conf_line(ctx)};

    (void)key;
    if (parse_prefix_line(ctx, h, "proxy", "UPSTREAM", value, &px.prefix, &px.upstream) != 0)
        return;
    struct sp_http_proxy *all = realloc(h->proxies, (h->nproxies + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error_at(ctx, 0, "out of memory");
        return;
    }
    h->proxies = all;
    all[h->nproxies++] = px;
}

static void set_index(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                      const char *v)
{
    if (strchr(v, '/') != NULL || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
        sp_conf_error(ctx, "invalid index '%s': expected a file name", v);
    else
        sp_conf_set_string(ctx, key, conf, v);
}

/* status = PATH, metrics = PATH */
static void set_page(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                     const char *v)
{
    if (!sp_conf_valid_url_path(v, strlen(v)))
        sp_conf_error(ctx, "invalid %s '%s': expected a path starting with '/'", key->name, v);
    else
        sp_conf_set_string(ctx, key, conf, v);
}

/* "combined", "json" or a template, compiled here so that an unknown
 * variable fails the load at its line. */
static void set_log_format(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                           const char *v)
{
    struct sp_http_conf *h = conf;
    char err[160];
    const struct http_logfmt *f = http_logfmt_compile(v, err, sizeof(err));

    (void)key;
    if (!f) {
        sp_conf_error(ctx, "invalid access_log_format: %s", err);
        return;
    }
    http_logfmt_free(h->access_log_format);
    h->access_log_format = f;
}

const struct sp_conf_key http_conf_keys[] = {
    {"root", sp_conf_set_path, H(root), 0, 0, NULL, 0},
    {"index", set_index, H(index), 0, 0, NULL, 0},
    {"status", set_page, H(status_path), 0, 0, NULL, 0},
    {"metrics", set_page, H(metrics_path), 0, 0, NULL, 0},
    {"health", set_page, H(health_path), 0, 0, NULL, 0},
    {"return", set_return, 0, 0, 0, NULL, SP_CONF_LINE | SP_CONF_REPEAT},
    {"handle", set_handle, 0, 0, 0, NULL, SP_CONF_LINE | SP_CONF_REPEAT},
    {"proxy", set_proxy, 0, 0, 0, NULL, SP_CONF_LINE | SP_CONF_REPEAT},
    {"keepalive_timeout", sp_conf_set_duration, H(keepalive_timeout_ms), 0, HOURS(24), "0..24h", 0},
    {"header_timeout", sp_conf_set_duration, H(header_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"body_timeout", sp_conf_set_duration, H(body_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"send_timeout", sp_conf_set_duration, H(send_timeout_ms), 1, HOURS(24), "1ms..24h", 0},
    {"max_header_size", sp_conf_set_size, H(max_header_size), 1 << 10, 1 << 20, "1k..1m", 0},
    {"max_body_size", sp_conf_set_size, H(max_body_size), 0, 1 << 30, "0..1g", 0},
    {"access_log", sp_conf_set_path, H(access_log), 0, 0, "off", 0},
    {"access_log_format", set_log_format, 0, 0, 0, NULL, 0},
    {"tls_certificate", http_tls_conf_set_file, H(tls_certs), 0, 0, NULL, SP_CONF_REPEAT},
    {"tls_certificate_key", http_tls_conf_set_file, H(tls_keys), 0, 0, NULL, SP_CONF_REPEAT},
    {"tls_protocols", http_tls_conf_set_protocols, H(tls_protocols), 0, 0, NULL, 0},
    {"tls_ciphers", sp_conf_set_string, H(tls_ciphers), 0, 0, NULL, 0},
    {"tls_handshake_timeout", sp_conf_set_duration, H(tls_handshake_timeout_ms), 1, HOURS(1),
     "1ms..1h", 0},
    {"tls_session_tickets", http_tls_conf_set_onoff, H(tls_session_tickets), 0, 0, NULL, 0},
    {"tls_ktls", http_tls_conf_set_ktls, H(tls_ktls), 0, 0, NULL, 0},
    {"tls_session_ticket_rotation", sp_conf_set_duration, H(tls_ticket_rotation_ms), 1000,
     HOURS(24 * 7), "1s..7d", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void http_conf_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct sp_http_conf *h = conf;

    h->index = sp_conf_strdup(ctx, "index.html", strlen("index.html"));
    h->keepalive_timeout_ms = 75 * 1000;
    h->header_timeout_ms = 10 * 1000;
    h->body_timeout_ms = 30 * 1000;
    h->send_timeout_ms = 60 * 1000;
    h->max_header_size = 8 * 1024;
    h->max_body_size = 1024 * 1024;
    h->access_log_format = &http_logfmt_combined;
    http_tls_conf_defaults(ctx, h);
}

/* Every handle line names a [module NAME] section of the file, every proxy
 * line an [upstream NAME]. */
void http_conf_resolve(struct sp_conf_ctx *ctx, void *conf)
{
    const struct sp_http_conf *h = conf;
    for (unsigned i = 0; i < h->nhandles; i++)
        if (!sp_conf_has_module(ctx, h->handles[i].module)) {
            sp_conf_error_at(ctx, h->handles[i].line, "handle %s: no [module %s] section",
                             h->handles[i].prefix, h->handles[i].module);
            return;
        }
    for (unsigned i = 0; i < h->nproxies; i++)
        if (!sp_conf_has_upstream(ctx, h->proxies[i].upstream)) {
            sp_conf_error_at(ctx, h->proxies[i].line, "proxy %s: no [upstream %s] section",
                             h->proxies[i].prefix, h->proxies[i].upstream);
            return;
        }
}

void http_conf_check(struct sp_conf_ctx *ctx, void *conf)
{
    struct sp_http_conf *h = conf;

    http_tls_conf_check(ctx, h);
    /* The pages are exact routes: no two on one path, nor on a return's. */
    static const char *const page_names[] = {"status", "metrics", "health"};
    const char *pages[] = {h->status_path, h->metrics_path, h->health_path};
    for (unsigned i = 0; i < 3; i++)
        for (unsigned j = i + 1; j < 3; j++)
            if (pages[i] && pages[j] && strcmp(pages[i], pages[j]) == 0) {
                sp_conf_error(ctx, "the %s and %s pages have one path '%s'", page_names[i],
                              page_names[j], pages[i]);
                return;
            }
    for (unsigned i = 0; i < h->nreturns; i++) {
        const struct sp_http_return *r = &h->returns[i];
        for (unsigned k = 0; k < 3; k++)
            if (pages[k] && strcmp(r->path, pages[k]) == 0) {
                sp_conf_error_at(ctx, r->line, "return path '%s' is also the %s path", r->path,
                                 page_names[k]);
                return;
            }
    }
}

void http_conf_free(void *conf)
{
    struct sp_http_conf *h = conf;
    free(h->returns);
    free(h->handles);
    free(h->proxies);
    http_logfmt_free(h->access_log_format);
    http_tls_conf_free(h);
}

/* root is read by the workers, as [master] user; the access log is opened by
 * the master for them. */
unsigned http_conf_paths(const void *conf, struct sp_service_path *out, unsigned max)
{
    const struct sp_http_conf *h = conf;
    unsigned n = 0;

    if (h->root != NULL && n < max)
        out[n++] = (struct sp_service_path){"root", h->root, SP_PATH_DIR | SP_PATH_READ};
    if (h->access_log != NULL && n < max)
        out[n++] = (struct sp_service_path){"access_log", h->access_log, SP_PATH_LOG};
    return n;
}

const struct sp_service_def sp_service_http_conf = {HTTP_CONF_DEF};
