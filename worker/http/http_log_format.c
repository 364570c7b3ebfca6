/*
 * access_log_format: compiles "json" and templates into parts once, when
 * the configuration is read, and writes lines from them.
 *
 * A template is nginx's log_format syntax: literal text with variables,
 * $name or ${name} (the braces let a name stand right before letters).
 * The names are nginx's (in any case, as there), for the values spindle has at hand; any other is a
 * configuration error, so that a typo shows at load time and not as a
 * column of "-" in the log.  "json" is compiled from a fixed list of the
 * same variables, written in JSON mode: strings quoted and escaped as JSON,
 * numbers bare, an absent value null.
 *
 * Every value from the client (the request line and its pieces, headers)
 * is escaped, so that a line stays one line and its quoted fields stay
 * quoted: in a template as nginx does (\xHH), in JSON as JSON (a byte that
 * is not part of valid UTF-8 as \u00XX, which keeps the line valid JSON).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_log_format.h"

enum var {
    V_NONE, /* a literal alone */
    V_REMOTE_ADDR,
    V_REMOTE_USER,
    V_TIME_LOCAL,
    V_TIME_ISO8601,
    V_MSEC,
    V_REQUEST,
    V_REQUEST_METHOD,
    V_REQUEST_URI,
    V_URI,
    V_ARGS,
    V_SERVER_PROTOCOL,
    V_STATUS,
    V_BODY_BYTES_SENT,
    V_BYTES_SENT,
    V_REQUEST_LENGTH,
    V_REQUEST_TIME,
    V_UPSTREAM_RESPONSE_TIME,
    V_UPSTREAM_ADDR,
    V_HTTP, /* a request header, arg: its slot */
    V_HOST, /* the Host header without its port, arg: its slot */
    V_PID,
    V_SCHEME,
};

struct http_logfmt_part {
    const char *lit; /* written before the variable */
    size_t lit_len;
    unsigned char var; /* enum var */
    unsigned char arg;
};

static const struct {
    const char *name;
    enum var var;
    unsigned need;
} vars[] = {
    {"remote_addr", V_REMOTE_ADDR, 0},
    {"remote_user", V_REMOTE_USER, 0},
    {"time_local", V_TIME_LOCAL, HTTP_LOGFMT_NEED_LOCAL},
    {"time_iso8601", V_TIME_ISO8601, HTTP_LOGFMT_NEED_ISO},
    {"msec", V_MSEC, HTTP_LOGFMT_NEED_MSEC},
    {"request", V_REQUEST, 0},
    {"request_method", V_REQUEST_METHOD, 0},
    {"request_uri", V_REQUEST_URI, 0},
    {"uri", V_URI, 0},
    {"args", V_ARGS, 0},
    {"query_string", V_ARGS, 0},
    {"server_protocol", V_SERVER_PROTOCOL, 0},
    {"status", V_STATUS, 0},
    {"body_bytes_sent", V_BODY_BYTES_SENT, 0},
    {"bytes_sent", V_BYTES_SENT, 0},
    {"request_length", V_REQUEST_LENGTH, 0},
    {"request_time", V_REQUEST_TIME, HTTP_LOGFMT_NEED_TIME},
    {"upstream_response_time", V_UPSTREAM_RESPONSE_TIME, 0},
    {"upstream_addr", V_UPSTREAM_ADDR, 0},
    {"host", V_HOST, 0},
    {"pid", V_PID, HTTP_LOGFMT_NEED_PID},
    {"scheme", V_SCHEME, 0},
};

const struct http_logfmt http_logfmt_combined = {
    .kind = HTTP_LOGFMT_COMBINED,
    .need = HTTP_LOGFMT_NEED_LOCAL,
    .nhdrs = 2,
    .hdrs = {"Referer", "User-Agent"},
    .hdr_lens = {7, 10},
};

/* The template "json" compiles from: the keys are literals, and the values
 * are written in JSON mode (quoted strings, bare numbers, null). */
static const char json_template[] =
    "{\"time\":$time_iso8601,\"remote_addr\":$remote_addr,\"request\":$request,"
    "\"method\":$request_method,\"uri\":$uri,\"args\":$args,\"protocol\":$server_protocol,"
    "\"status\":$status,\"body_bytes_sent\":$body_bytes_sent,\"bytes_sent\":$bytes_sent,"
    "\"request_length\":$request_length,\"request_time\":$request_time,"
    "\"upstream_response_time\":$upstream_response_time,\"upstream_addr\":$upstream_addr,"
    "\"host\":$host,\"referer\":$http_referer,\"user_agent\":$http_user_agent,"
    "\"x_forwarded_for\":$http_x_forwarded_for,\"scheme\":$scheme,\"pid\":$pid}";

/* ---- compiling ---------------------------------------------------------- */

static bool name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

/* Whether header name a equals variable suffix b[0..n) ('_' for '-'). */
static bool same_header(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)(b[i] == '_' ? '-' : b[i])))
            return false;
    return true;
}

/* The slot of header name[0..n) ('_' for '-'), added when new.  Returns
 * the slot, or -1 when f has no slot left. */
static int header_slot(struct http_logfmt *f, char *names, const char *name, size_t n)
{
    for (unsigned i = 0; i < f->nhdrs; i++)
        if (f->hdr_lens[i] == n && same_header(f->hdrs[i], name, n))
            return (int)i;
    if (f->nhdrs == HTTP_LOGFMT_HDRS)
        return -1;
    char *d = names + 32 * f->nhdrs; /* names are at most 31 bytes (see below) */
    for (size_t i = 0; i < n; i++)
        d[i] = name[i] == '_' ? '-' : name[i];
    d[n] = '\0';
    f->hdrs[f->nhdrs] = d;
    f->hdr_lens[f->nhdrs] = n;
    return (int)f->nhdrs++;
}

/* Finds variable name[0..n) and sets p's var and arg.  Returns 0, or -1
 * with a message in err. */
static int lookup(struct http_logfmt *f, char *names, struct http_logfmt_part *p, const char *name,
                  size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        if (strlen(vars[i].name) == n && strncasecmp(vars[i].name, name, n) == 0) {
            p->var = (unsigned char)vars[i].var;
            f->need |= vars[i].need;
            if (vars[i].var == V_HOST) {
                int slot = header_slot(f, names, "host", 4);
                if (slot < 0)
                    goto full;
                p->arg = (unsigned char)slot;
            }
            return 0;
        }
    }
    if (n > 5 && strncasecmp(name, "http_", 5) == 0) {
        if (n - 5 > 31) {
            snprintf(err, errlen, "header name of $%.*s too long (at most 31 bytes)", (int)n, name);
            return -1;
        }
        int slot = header_slot(f, names, name + 5, n - 5);
        if (slot < 0)
            goto full;
        p->var = V_HTTP;
        p->arg = (unsigned char)slot;
        return 0;
    }
    snprintf(err, errlen, "unknown variable $%.*s", (int)n, name);
    return -1;
full:
    snprintf(err, errlen, "more than %d request headers named ($%.*s)", HTTP_LOGFMT_HDRS, (int)n,
             name);
    return -1;
}

/*
 * Builds f's parts from tpl.  One allocation holds the struct, the parts,
 * a copy of the literals and the header names: at most one part per '$'
 * plus one, literals no longer than tpl.
 */
static const struct http_logfmt *compile(const char *tpl, enum http_logfmt_kind kind, char *err,
                                         size_t errlen)
{
    size_t len = strlen(tpl), nmax = 1;
    for (const char *s = tpl; (s = strchr(s, '$')) != NULL; s++)
        nmax++;
    size_t size = sizeof(struct http_logfmt) + nmax * sizeof(struct http_logfmt_part) + len + 1 +
                  32 * HTTP_LOGFMT_HDRS;
    struct http_logfmt *f = calloc(1, size);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct http_logfmt_part *parts = (struct http_logfmt_part *)(f + 1);
    char *text = (char *)(parts + nmax), *names = text + len + 1;
    memcpy(text, tpl, len + 1);
    f->kind = kind;
    f->parts = parts;

    const char *s = text;
    unsigned np = 0;
    while (*s) {
        struct http_logfmt_part *p = &parts[np++];
        const char *dollar = strchr(s, '$');
        p->lit = s;
        p->lit_len = dollar ? (size_t)(dollar - s) : strlen(s);
        p->var = V_NONE;
        if (!dollar)
            break;
        const char *name = dollar + 1, *end;
        if (*name == '{') {
            name++;
            end = strchr(name, '}');
            if (!end) {
                snprintf(err, errlen, "missing '}' after '${%.20s'", name);
                goto fail;
            }
            s = end + 1;
        } else {
            end = name;
            while (name_char(*end))
                end++;
            s = end;
        }
        if (end == name) {
            snprintf(err, errlen, "'$' without a variable name (at \"%.20s\")", dollar);
            goto fail;
        }
        for (const char *c = name; c < end; c++)
            if (!name_char(*c)) {
                snprintf(err, errlen, "invalid variable name ${%.*s}", (int)(end - name), name);
                goto fail;
            }
        if (lookup(f, names, p, name, (size_t)(end - name), err, errlen) != 0)
            goto fail;
    }
    f->nparts = np;
    return f;
fail:
    free(f);
    return NULL;
}

const struct http_logfmt *http_logfmt_compile(const char *spec, char *err, size_t errlen)
{
    if (strcmp(spec, "combined") == 0)
        return &http_logfmt_combined;
    if (strcmp(spec, "json") == 0)
        return compile(json_template, HTTP_LOGFMT_JSON, err, errlen);
    return compile(spec, HTTP_LOGFMT_TEMPLATE, err, errlen);
}

void http_logfmt_free(const struct http_logfmt *f)
{
    if (f != &http_logfmt_combined)
        free((void *)f);
}

/* ---- writing -------------------------------------------------------------- */

/* Output that stops at its end: what does not fit is dropped. */
struct out {
    char *d;
    size_t n, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->n)
        n = o->cap - o->n;
    memcpy(o->d + o->n, s, n);
    o->n += n;
}

static void put_u64(struct out *o, uint64_t v)
{
    char b[24];
    size_t i = sizeof(b);
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, b + i, sizeof(b) - i);
}

/* Seconds with milliseconds, as nginx's $request_time: "0.003". */
static void put_secs(struct out *o, uint64_t ns)
{
    uint64_t ms = ns / 1000000u;
    char frac[4] = {'.', (char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                    (char)('0' + ms % 10)};
    put_u64(o, ms / 1000);
    put(o, frac, 4);
}

static const char hex[] = "0123456789abcdef";

/* The length of the run of bytes at s[0..n) that both escapes leave as
 * they are (printable ASCII but '"' and '\'): most of a value, copied at
 * once. */
static size_t plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] - 0x20u < 0x5fu && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/* Copies the plain run at s[*i..n) to o, up to lim.  Returns false when
 * lim stopped it. */
static bool put_run(struct out *o, const unsigned char *s, size_t *i, size_t n, size_t lim)
{
    size_t run = plain_run(s + *i, n - *i);
    bool all = run <= lim - o->n;
    if (!all)
        run = lim - o->n;
    memcpy(o->d + o->n, s + *i, run);
    o->n += run;
    *i += run;
    return all;
}

/* s[0..n) as nginx escapes a log value, at most max bytes of output, cut
 * at a whole character. */
static void put_nginx(struct out *o, const char *s, size_t n, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t lim = o->n + max < o->cap ? o->n + max : o->cap;
    for (size_t i = 0; i < n; i++) {
        if (!put_run(o, u, &i, n, lim) || i == n || o->n + 4 > lim)
            return;
        o->d[o->n++] = '\\';
        o->d[o->n++] = 'x';
        o->d[o->n++] = "0123456789ABCDEF"[u[i] >> 4];
        o->d[o->n++] = "0123456789ABCDEF"[u[i] & 15];
    }
}

/* The length of the valid UTF-8 sequence (of 2 to 4 bytes) at s[0..n), or
 * 0 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* s[0..n) as a JSON string, quotes included, at most max bytes of output
 * plus the closing quote (which is always written: the caller leaves room
 * for it). */
static void put_json(struct out *o, const char *s, size_t n, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    if (o->cap - o->n < 2)
        return;
    size_t lim = o->n + max < o->cap - 1 ? o->n + max : o->cap - 1;
    o->d[o->n++] = '"';
    for (size_t i = 0; i < n;) {
        if (!put_run(o, u, &i, n, lim) || i == n)
            break;
        unsigned char ch = u[i];
        size_t k;
        if (ch == '"' || ch == '\\') {
            if (o->n + 2 > lim)
                break;
            o->d[o->n++] = '\\';
            o->d[o->n++] = (char)ch;
            i++;
        } else if (ch >= 0x80 && (k = utf8_len(u + i, n - i)) > 0) {
            if (o->n + k > lim)
                break;
            memcpy(o->d + o->n, u + i, k);
            o->n += k;
            i += k;
        } else {
            if (o->n + 6 > lim)
                break;
            memcpy(o->d + o->n, "\\u00", 4);
            o->d[o->n + 4] = hex[ch >> 4];
            o->d[o->n + 5] = hex[ch & 15];
            o->n += 6;
            i++;
        }
    }
    o->d[o->n++] = '"';
}

/* The pieces of the request line "METHOD TARGET PROTOCOL": which 0, 1, 2;
 * 3 is the target's path, 4 its query.  Absent: (NULL, 0). */
static struct http_log_slice line_piece(struct http_log_slice line, int which)
{
    struct http_log_slice w[3] = {{0}};
    const char *p = line.p, *end = line.p + line.n;
    for (int i = 0; i < 3 && p && p < end; i++) {
        const char *sp = i < 2 ? memchr(p, ' ', (size_t)(end - p)) : NULL;
        w[i] = (struct http_log_slice){p, (size_t)((sp ? sp : end) - p)};
        p = sp ? sp + 1 : end;
    }
    if (which < 3)
        return w[which];
    const char *q = w[1].p ? memchr(w[1].p, '?', w[1].n) : NULL;
    if (which == 3)
        return (struct http_log_slice){w[1].p, q ? (size_t)(q - w[1].p) : w[1].n};
    if (!q)
        return (struct http_log_slice){NULL, 0};
    return (struct http_log_slice){q + 1, (size_t)(w[1].p + w[1].n - q - 1)};
}

/* A value that is text, or absent (p NULL): "-" in a template, null in
 * JSON.  An empty one is written empty, as nginx does. */
static void put_text(struct out *o, bool json, const char *p, size_t n, size_t max)
{
    if (!p)
        put(o, json ? "null" : "-", json ? 4 : 1);
    else if (json)
        put_json(o, p, n, max);
    else
        put_nginx(o, p, n, max);
}

static void put_var(struct out *o, bool json, const struct http_logfmt_part *pt,
                    const struct http_log_rec *r)
{
    struct http_log_slice v;
    const size_t field = HTTP_LOGFMT_FIELD_MAX;

    switch ((enum var)pt->var) {
    case V_NONE:
        break;
    case V_REMOTE_ADDR:
        put_text(o, json, r->remote_addr, r->remote_addr ? strlen(r->remote_addr) : 0, field);
        break;
    case V_REMOTE_USER:
        put_text(o, json, NULL, 0, field);
        break;
    case V_TIME_LOCAL:
        put_text(o, json, r->time_local, r->time_local ? 26 : 0, field);
        break;
    case V_TIME_ISO8601:
        put_text(o, json, r->time_iso8601, r->time_iso8601 ? 25 : 0, field);
        break;
    case V_MSEC:
        put_u64(o, r->msec / 1000);
        put(o, ".", 1);
        put(o,
            (char[3]){(char)('0' + r->msec % 1000 / 100), (char)('0' + r->msec % 100 / 10),
                      (char)('0' + r->msec % 10)},
            3);
        break;
    case V_REQUEST:
        put_text(o, json, r->line.p, r->line.n, 2 * field);
        break;
    case V_REQUEST_METHOD:
    case V_SERVER_PROTOCOL:
        v = line_piece(r->line, pt->var == V_REQUEST_METHOD ? 0 : 2);
        put_text(o, json, v.p, v.n, field / 4);
        break;
    case V_REQUEST_URI:
    case V_URI:
        v = line_piece(r->line, pt->var == V_REQUEST_URI ? 1 : 3);
        put_text(o, json, v.p, v.n, 2 * field);
        break;
    case V_ARGS:
        v = line_piece(r->line, 4);
        put_text(o, json, v.p, v.n, field);
        break;
    case V_STATUS:
        put_u64(o, r->status);
        break;
    case V_BODY_BYTES_SENT:
        put_u64(o, r->body_bytes_sent);
        break;
    case V_BYTES_SENT:
        put_u64(o, r->bytes_sent);
        break;
    case V_REQUEST_LENGTH:
        put_u64(o, r->request_length);
        break;
    case V_REQUEST_TIME:
        put_secs(o, r->request_ns);
        break;
    case V_UPSTREAM_RESPONSE_TIME:
        if (!r->upstream_addr)
            put(o, json ? "null" : "-", json ? 4 : 1);
        else
            put_secs(o, r->upstream_ns);
        break;
    case V_UPSTREAM_ADDR:
        put_text(o, json, r->upstream_addr, r->upstream_addr ? strlen(r->upstream_addr) : 0, field);
        break;
    case V_HTTP:
        put_text(o, json, r->hdr[pt->arg].p, r->hdr[pt->arg].n, field);
        break;
    case V_HOST:
        v = r->hdr[pt->arg];
        /* Without its port, as nginx's $host ("[::1]:80" keeps its brackets). */
        for (size_t i = v.n; i > 0; i--) {
            if (v.p[i - 1] == ':') {
                v.n = i - 1;
                break;
            }
            if (v.p[i - 1] == ']')
                break;
        }
        put_text(o, json, v.p, v.n, field);
        break;
    case V_PID:
        put_u64(o, (uint64_t)r->pid);
        break;
    case V_SCHEME:
        put_text(o, json, r->https ? "https" : "http", r->https ? 5 : 4, field);
        break;
    }
}

size_t http_logfmt_write(const struct http_logfmt *f, const struct http_log_rec *r, char *d,
                         size_t cap)
{
    struct out o = {d, 0, cap - 1};
    bool json = f->kind == HTTP_LOGFMT_JSON;

    for (unsigned i = 0; i < f->nparts; i++) {
        const struct http_logfmt_part *pt = &f->parts[i];
        put(&o, pt->lit, pt->lit_len);
        put_var(&o, json, pt, r);
    }
    d[o.n++] = '\n';
    return o.n;
}
