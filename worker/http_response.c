/*
 * HTTP responses: the per-batch output buffer, the Date cache, response heads,
 * error responses and the prebuilt responses of "return" lines.
 *
 * Every response of a batch is appended to one buffer (and, for bodies that
 * live elsewhere, one iovec list) and written with a single writev, so a
 * batch of pipelined requests costs one system call to answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "spindle/io.h"

static const char conn_close[] = "Connection: close\r\n";
static const char conn_keep_alive[] = "Connection: keep-alive\r\n";

/* ---- output buffer ------------------------------------------------------ */

void http_out_init(struct http_out *o, struct sp_stream *stream, char *buf, size_t cap,
                   int64_t send_timeout_ms)
{
    o->stream = stream;
    o->send_timeout_ms = send_timeout_ms;
    o->buf = buf;
    o->cap = cap;
    o->len = 0;
    o->mark = 0;
    o->niov = 0;
    o->nrefs = 0;
    o->sent = 0;
    o->queued = 0;
    o->written = 0;
    o->error = 0;
}

/* Moves the text appended since the last piece into iov[]. */
static void seal_text(struct http_out *o)
{
    if (o->len > o->mark) {
        o->iov[o->niov].iov_base = o->buf + o->mark;
        o->iov[o->niov].iov_len = o->len - o->mark;
        o->niov++;
        o->mark = o->len;
    }
}

static void release_refs(struct http_out *o)
{
    for (int i = 0; i < o->nrefs; i++)
        http_file_release(o->refs[i]);
    o->nrefs = 0;
}

int http_out_flush(struct http_out *o)
{
    seal_text(o);
    if (o->niov > 0 && o->error == 0) {
        size_t total = 0, left = 0;
        for (int i = 0; i < o->niov; i++)
            total += o->iov[i].iov_len;
        ssize_t n = sp_stream_writev(o->stream, o->iov, o->niov, o->send_timeout_ms);
        if (n < 0) {
            /* The write consumed iov[] as far as the socket took it. */
            for (int i = 0; i < o->niov; i++)
                left += o->iov[i].iov_len;
            o->error = (int)n;
            n = (ssize_t)(total - left);
        }
        o->sent += (uint64_t)n;
        o->written += (uint64_t)n;
    }
    release_refs(o);
    o->niov = 0;
    o->len = 0;
    o->mark = 0;
    return o->error;
}

void http_out_discard(struct http_out *o)
{
    release_refs(o);
    o->niov = 0;
    o->len = 0;
    o->mark = 0;
}

char *http_out_space(struct http_out *o, size_t n)
{
    /* One iov slot stays free for the text sealed at the flush. */
    if (o->cap - o->len < n || o->niov > HTTP_OUT_IOV - 2)
        if (http_out_flush(o) != 0)
            return NULL;
    return o->error ? NULL : o->buf + o->len;
}

int http_out_text(struct http_out *o, const void *p, size_t n)
{
    if (n > o->cap) {
        if (http_out_flush(o) != 0)
            return o->error;
        o->queued += n;
        ssize_t w = sp_stream_write(o->stream, p, n, o->send_timeout_ms);
        if (w < 0)
            return o->error = (int)w;
        o->sent += (uint64_t)w;
        o->written += (uint64_t)w;
        return 0;
    }
    char *d = http_out_space(o, n);
    if (!d)
        return o->error;
    memcpy(d, p, n);
    o->len += n;
    return 0;
}

int http_out_ref(struct http_out *o, const void *p, size_t n, struct http_file *ref)
{
    if (o->niov > HTTP_OUT_IOV - 3 && http_out_flush(o) != 0) {
        if (ref)
            http_file_release(ref);
        return o->error;
    }
    if (o->error) {
        if (ref)
            http_file_release(ref);
        return o->error;
    }
    seal_text(o);
    o->iov[o->niov].iov_base = (void *)p;
    o->iov[o->niov].iov_len = n;
    o->niov++;
    o->queued += n;
    if (ref)
        o->refs[o->nrefs++] = ref;
    return 0;
}

/* ---- dates ----------------------------------------------------------------- */

static const char wday_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void two_digits(char *d, int v)
{
    d[0] = (char)('0' + v / 10);
    d[1] = (char)('0' + v % 10);
}

void http_date_format(time_t t, char *dst)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    memcpy(dst, wday_names[tm.tm_wday], 3);
    dst[3] = ',';
    dst[4] = ' ';
    two_digits(dst + 5, tm.tm_mday);
    dst[7] = ' ';
    memcpy(dst + 8, month_names[tm.tm_mon], 3);
    dst[11] = ' ';
    int y = tm.tm_year + 1900;
    two_digits(dst + 12, (y / 100) % 100);
    two_digits(dst + 14, y % 100);
    dst[16] = ' ';
    two_digits(dst + 17, tm.tm_hour);
    dst[19] = ':';
    two_digits(dst + 20, tm.tm_min);
    dst[22] = ':';
    two_digits(dst + 23, tm.tm_sec);
    memcpy(dst + 25, " GMT", 4);
}

/* The Date string of this thread.  A fiber may resume on another thread in
 * multi-thread mode, so the thread-local is only ever touched inside this
 * function, which the compiler cannot inline into a caller that parks. */
static __thread time_t date_sec;
static __thread char date_str[HTTP_DATE_LEN];

__attribute__((noinline)) void http_date_now(char *dst)
{
    time_t now = time(NULL);
    if (now != date_sec) {
        http_date_format(now, date_str);
        date_sec = now;
    }
    memcpy(dst, date_str, HTTP_DATE_LEN);
}

static int parse_num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)(s[i] - '0') > 9)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int http_date_parse(const char *s, size_t len, time_t *t)
{
    struct tm tm;
    int mon = -1;

    /* IMF-fixdate only; the obsolete forms are ignored (RFC 9110 13.1.3 lets
     * a server ignore a date it cannot read). */
    if (len != HTTP_DATE_LEN || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, month_names[i], 3) == 0)
            mon = i;
    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = parse_num(s + 5, 2);
    tm.tm_year = parse_num(s + 12, 4) - 1900;
    tm.tm_hour = parse_num(s + 17, 2);
    tm.tm_min = parse_num(s + 20, 2);
    tm.tm_sec = parse_num(s + 23, 2);
    if (mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 0 || tm.tm_hour < 0 ||
        tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
        return -1;
    tm.tm_mon = mon;
    *t = timegm(&tm);
    return 0;
}

/* ---- heads ------------------------------------------------------------------- */

/* The reason phrase of status ("Not Found"). */
static const char *http_reason(unsigned status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        break;
    }
    switch (status / 100) {
    case 2:
        return "OK";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    default:
        return "Server Error";
    }
}

/* Decimal digits of v into dst (at least 20 bytes).  Returns the count. */
static size_t http_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

static bool status_has_body(unsigned status)
{
    return status != 204 && status != 304 && status >= 200;
}

/* Writes the Connection line t calls for at d: "close" when the connection
 * ends, "keep-alive" for an HTTP/1.0 request that keeps it, else nothing.
 * Returns the length (at most sizeof(conn_keep_alive) - 1). */
static size_t put_connection(char *d, const struct http_txn *t)
{
    if (t->close) {
        memcpy(d, conn_close, sizeof(conn_close) - 1);
        return sizeof(conn_close) - 1;
    }
    if (t->req->minor_version == 0) {
        memcpy(d, conn_keep_alive, sizeof(conn_keep_alive) - 1);
        return sizeof(conn_keep_alive) - 1;
    }
    return 0;
}

/* Writes "NNN Reason" at d, the reason cut to at most max bytes.  Returns the
 * length. */
static size_t put_status(char *d, unsigned status, size_t max)
{
    const char *reason = http_reason(status);
    size_t rl = strlen(reason);
    if (rl > max)
        rl = max;
    d[0] = (char)('0' + status / 100 % 10);
    d[1] = (char)('0' + status / 10 % 10);
    d[2] = (char)('0' + status % 10);
    d[3] = ' ';
    memcpy(d + 4, reason, rl);
    return 4 + rl;
}

/* Writes "HTTP/1.1 NNN Reason\r\nServer: spindle\r\nDate: " at d.  Returns the length. */
static size_t status_line(char *d, unsigned status)
{
    memcpy(d, "HTTP/1.1 ", 9);
    size_t n = 9 + put_status(d + 9, status, SIZE_MAX);
    memcpy(d + n, "\r\nServer: spindle\r\nDate: ", 25);
    return n + 25;
}

int http_head(struct http_out *o, struct http_txn *t, unsigned status, const char *ctype,
              uint64_t content_length, const char *extra, size_t extra_len)
{
    size_t ctl = ctype ? strlen(ctype) : 0;
    /* status line and fixed headers, ~ 80 + reason; content type; length. */
    size_t max = 128 + HTTP_DATE_LEN + ctl + 16 + 40 + sizeof(conn_keep_alive) + extra_len + 2;
    if (max > o->cap)
        return -E2BIG;
    char *d = http_out_space(o, max);
    if (!d)
        return o->error;
    size_t n = status_line(d, status);
    memcpy(d + n, t->date, HTTP_DATE_LEN);
    n += HTTP_DATE_LEN;
    memcpy(d + n, "\r\n", 2);
    n += 2;
    if (ctype) {
        memcpy(d + n, "Content-Type: ", 14);
        n += 14;
        memcpy(d + n, ctype, ctl);
        n += ctl;
        memcpy(d + n, "\r\n", 2);
        n += 2;
    }
    if (status_has_body(status)) {
        memcpy(d + n, "Content-Length: ", 16);
        n += 16;
        n += http_u64(d + n, content_length);
        memcpy(d + n, "\r\n", 2);
        n += 2;
    }
    n += put_connection(d + n, t);
    if (extra_len) {
        memcpy(d + n, extra, extra_len);
        n += extra_len;
    }
    memcpy(d + n, "\r\n", 2);
    n += 2;
    http_out_commit(o, n);
    t->status = status;
    t->body_len = status_has_body(status) && !t->head ? content_length : 0;
    t->body_at = o->queued;
    return 0;
}

int http_error(struct http_out *o, struct http_txn *t, unsigned status, const char *extra)
{
    char body[64];
    size_t n = put_status(body, status, sizeof(body) - 4 - 1);
    body[n++] = '\n';
    int rc = http_head(o, t, status, "text/plain", n, extra, extra ? strlen(extra) : 0);
    if (rc == 0 && !t->head)
        rc = http_out_text(o, body, n);
    return rc;
}

/* ---- prebuilt responses ------------------------------------------------------ */

/* Bodies up to this size are copied into the output; longer ones are written
 * from the configuration's memory by reference. */
#define PREBUILT_COPY_MAX 2048

int http_prebuilt_init(struct http_prebuilt *pb, const struct sp_http_return *r)
{
    size_t ctl = strlen(r->content_type);
    char *h = malloc(128 + HTTP_DATE_LEN + ctl + 64);
    if (!h)
        return -ENOMEM;
    size_t n = status_line(h, r->status);
    pb->date_off = n;
    memset(h + n, ' ', HTTP_DATE_LEN);
    n += HTTP_DATE_LEN;
    memcpy(h + n, "\r\nContent-Type: ", 16);
    n += 16;
    memcpy(h + n, r->content_type, ctl);
    n += ctl;
    memcpy(h + n, "\r\n", 2);
    n += 2;
    pb->body = r->body;
    pb->body_len = r->body_len;
    if (status_has_body(r->status)) {
        memcpy(h + n, "Content-Length: ", 16);
        n += 16;
        n += http_u64(h + n, r->body_len);
        memcpy(h + n, "\r\n", 2);
        n += 2;
    } else {
        pb->body_len = 0;
    }
    pb->status = r->status;
    pb->head = h;
    pb->head_len = n;
    return 0;
}

int http_prebuilt_send(struct http_out *o, struct http_txn *t, const struct http_prebuilt *pb)
{
    size_t body = t->head ? 0 : pb->body_len;
    size_t copy = body <= PREBUILT_COPY_MAX ? body : 0;
    size_t n = pb->head_len + sizeof(conn_keep_alive) + 2 + copy;
    char *d = http_out_space(o, n);
    if (!d)
        return o->error;
    memcpy(d, pb->head, pb->head_len);
    memcpy(d + pb->date_off, t->date, HTTP_DATE_LEN);
    n = pb->head_len;
    n += put_connection(d + n, t);
    d[n++] = '\r';
    d[n++] = '\n';
    memcpy(d + n, pb->body, copy);
    n += copy;
    http_out_commit(o, n);
    t->status = pb->status;
    t->body_len = body;
    t->body_at = o->queued - copy;
    if (body > copy)
        return http_out_ref(o, pb->body, body, NULL);
    return 0;
}
