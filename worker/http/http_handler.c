/*
 * The handler API (spindle/http_handler.h): what a handler sees of the
 * request being answered, and how its response reaches the connection's
 * output.
 *
 * Both handles live on the stack of http_handler_run() for one call of the
 * handler.  The response goes through the same output buffer and head
 * writer as the built-in routes' (http_response.c), so batching, HEAD,
 * keep-alive and the access log's accounting are theirs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "spindle/http_write.h"

/* Header lines up to this size stay in the response; more go to the heap,
 * up to HTTP_RESP_HDRS_MAX. */
#define RESP_HDRS_INLINE   512
#define HTTP_RESP_HDRS_MAX 4096

struct sp_http_req {
    struct http_conn *c;
    struct http_txn *t;
    char *body; /* sp_http_req_body()'s, freed after the handler */
    size_t body_len;
    bool body_read;
    bool peer_known;
    struct sockaddr_storage peer;
    char peer_name[64];
};

enum resp_state {
    RESP_NONE = 0,  /* nothing sent yet */
    RESP_STREAMING, /* the head and some chunks are out */
    RESP_DONE,      /* complete */
};

struct sp_http_resp {
    struct http_conn *c;
    struct http_txn *t;
    unsigned status;
    enum resp_state state;
    char *hdrs; /* header lines, inline or heap */
    size_t hdrs_len;
    char inline_hdrs[RESP_HDRS_INLINE];
};

/* ---- the request ---------------------------------------------------------- */

enum sp_http_method sp_http_req_method(const struct sp_http_req *req)
{
    return req->t->req->method;
}

const char *sp_http_req_method_name(const struct sp_http_req *req, size_t *len)
{
    *len = req->t->req->method_len;
    return req->t->req->method_str;
}

const char *sp_http_req_path(const struct sp_http_req *req, size_t *len)
{
    *len = req->t->path_len;
    return req->t->path;
}

const char *sp_http_req_target(const struct sp_http_req *req, size_t *len)
{
    *len = req->t->req->target_len;
    return req->t->req->target;
}

const char *sp_http_req_query(const struct sp_http_req *req, size_t *len)
{
    *len = req->t->req->query_len;
    return req->t->req->query;
}

const char *sp_http_req_header(const struct sp_http_req *req, const char *name, size_t *len)
{
    const struct sp_http_request *r = req->t->req;
    size_t n = strlen(name);
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct sp_http_header *h = &r->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    *len = 0;
    return NULL;
}

int sp_http_req_header_at(const struct sp_http_req *req, size_t i, const char **name,
                          size_t *name_len, const char **value, size_t *value_len)
{
    const struct sp_http_request *r = req->t->req;
    if (i >= r->num_headers)
        return -ENOENT;
    *name = r->headers[i].name;
    *name_len = r->headers[i].name_len;
    *value = r->headers[i].value;
    *value_len = r->headers[i].value_len;
    return 0;
}

int sp_http_req_version(const struct sp_http_req *req)
{
    return 10 + req->t->req->minor_version;
}

bool sp_http_req_keep_alive(const struct sp_http_req *req)
{
    return sp_http_keep_alive(req->t->req);
}

const struct sockaddr_storage *sp_http_req_peer(struct sp_http_req *req)
{
    if (!req->peer_known) {
        req->peer_known = true;
        if (worker_conn_peer(req->c->hs->svc->worker, req->c->stream->fd, &req->peer) != 0)
            req->peer.ss_family = AF_UNSPEC;
    }
    return req->peer.ss_family == AF_INET || req->peer.ss_family == AF_INET6 ? &req->peer : NULL;
}

const char *sp_http_req_peer_name(struct sp_http_req *req)
{
    const struct sockaddr_storage *ss = sp_http_req_peer(req);
    const void *a = NULL;
    if (ss && ss->ss_family == AF_INET)
        a = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss)
        a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!a || !inet_ntop(ss->ss_family, a, req->peer_name, sizeof(req->peer_name)))
        strcpy(req->peer_name, "-");
    return req->peer_name;
}

bool sp_http_req_has_body(const struct sp_http_req *req)
{
    const struct sp_http_request *r = req->t->req;
    return (r->flags & SP_HTTP_F_TE_CHUNKED) || r->content_length > 0;
}

int sp_http_req_body(struct sp_http_req *req, const char **body, size_t *len)
{
    if (!req->body_read) {
        int rc = http_body_read_all(req->c, &req->body, &req->body_len);
        if (rc != 0) {
            *body = NULL;
            *len = 0;
            return rc;
        }
        req->body_read = true;
    }
    *body = req->body;
    *len = req->body_len;
    return 0;
}

ssize_t sp_http_req_read(struct sp_http_req *req, void *buf, size_t len)
{
    return http_body_read(req->c, buf, len);
}

/* ---- the response ----------------------------------------------------------- */

int sp_http_resp_status(struct sp_http_resp *resp, unsigned status)
{
    if (resp->state != RESP_NONE)
        return -EALREADY;
    if (status < 200 || status > 599)
        return -EINVAL;
    resp->status = status;
    return 0;
}

/* RFC 9110 5.6.2: tchar. */
/* RFC 9110 tchar: the bytes of a header name. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* One of the names spindle writes itself, in any case (told apart by length
 * first: most names added are none of them). */
static bool own_header(const char *name, size_t n)
{
    switch (n) {
    case 4:
        return strncasecmp(name, "Date", 4) == 0;
    case 6:
        return strncasecmp(name, "Server", 6) == 0;
    case 10:
        return strncasecmp(name, "Connection", 10) == 0;
    case 14:
        return strncasecmp(name, "Content-Length", 14) == 0;
    case 17:
        return strncasecmp(name, "Transfer-Encoding", 17) == 0;
    default:
        return false;
    }
}

int sp_http_resp_header(struct sp_http_resp *resp, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);

    if (resp->state != RESP_NONE)
        return -EALREADY;
    if (nl == 0 || own_header(name, nl))
        return -EINVAL;
    for (size_t i = 0; i < nl; i++)
        if (!tchar[(unsigned char)name[i]])
            return -EINVAL;
    /* A CR or LF would let the value end the line and start another (response
     * splitting); other control characters but HTAB are not field content. */
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -EINVAL;
    }
    size_t need = resp->hdrs_len + nl + 2 + vl + 2;
    if (need > HTTP_RESP_HDRS_MAX)
        return -ENOSPC;
    if (need > RESP_HDRS_INLINE && resp->hdrs == resp->inline_hdrs) {
        char *h = malloc(HTTP_RESP_HDRS_MAX);
        if (!h)
            return -ENOMEM;
        memcpy(h, resp->hdrs, resp->hdrs_len);
        resp->hdrs = h;
    }
    char *d = resp->hdrs + resp->hdrs_len;
    memcpy(d, name, nl);
    memcpy(d + nl, ": ", 2);
    memcpy(d + nl + 2, value, vl);
    memcpy(d + nl + 2 + vl, "\r\n", 2);
    resp->hdrs_len = need;
    return 0;
}

/* Sends the head of a body of len bytes (HTTP_LEN_CHUNKED: streamed). */
static int resp_head(struct sp_http_resp *resp, uint64_t len)
{
    struct http_txn *t = resp->t;
    if (len == HTTP_LEN_CHUNKED && t->req->minor_version == 0)
        t->close = true; /* an HTTP/1.0 client reads to the end of the connection */
    resp->state = len == HTTP_LEN_CHUNKED ? RESP_STREAMING : RESP_DONE;
    return http_head(&resp->c->out, t, resp->status, NULL, len, resp->hdrs, resp->hdrs_len);
}

/* Whether body bytes are to be sent after the head (not for HEAD, 204, 304). */
static bool resp_has_body(const struct sp_http_resp *resp)
{
    return !resp->t->head && sp_http_status_has_body(resp->status);
}

int sp_http_resp_body(struct sp_http_resp *resp, const void *body, size_t len)
{
    if (resp->state != RESP_NONE)
        return -EALREADY;
    if (len > 0 && !sp_http_status_has_body(resp->status))
        return -EINVAL;
    int rc = resp_head(resp, len);
    if (rc == 0 && resp_has_body(resp) && len > 0)
        rc = http_out_text(&resp->c->out, body, len);
    return rc;
}

int sp_http_resp_fd(struct sp_http_resp *resp, int fd, off_t offset, uint64_t len)
{
    struct http_out *o = &resp->c->out;

    if (resp->state != RESP_NONE)
        return -EALREADY;
    if (offset < 0 || (len > 0 && !sp_http_status_has_body(resp->status)))
        return -EINVAL;
    int rc = resp_head(resp, len);
    if (rc != 0 || !resp_has_body(resp) || len == 0)
        return rc;
    /* The head goes first, then the kernel copies the file. */
    if ((rc = http_out_flush(o)) != 0)
        return rc;
    off_t off = offset;
    o->queued += len;
    ssize_t n = sp_stream_sendfile(o->stream, fd, &off, (size_t)len, o->send_timeout_ms);
    /* The offset has advanced by what the socket took, even on failure. */
    o->sent += (uint64_t)(off - offset);
    o->written += (uint64_t)(off - offset);
    if (n < 0) /* -EIO: the file ended before len bytes (the head promised them) */
        return o->error = (int)n;
    return 0;
}

int sp_http_resp_file(struct sp_http_resp *resp, const char *path)
{
    struct stat sb;

    if (resp->state != RESP_NONE)
        return -EALREADY;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fstat(fd, &sb) != 0)
        rc = -errno;
    else if (S_ISDIR(sb.st_mode))
        rc = -EISDIR;
    else if (!S_ISREG(sb.st_mode))
        rc = -EINVAL;
    if (rc == 0)
        rc = sp_http_resp_fd(resp, fd, 0, (uint64_t)sb.st_size);
    close(fd);
    return rc;
}

int sp_http_resp_write(struct sp_http_resp *resp, const void *data, size_t len)
{
    struct http_out *o = &resp->c->out;
    struct http_txn *t = resp->t;
    int rc;

    if (resp->state == RESP_DONE)
        return -EALREADY;
    if (resp->state == RESP_NONE && (rc = resp_head(resp, HTTP_LEN_CHUNKED)) != 0)
        return rc;
    if (len == 0 || !resp_has_body(resp))
        return 0;
    if (t->req->minor_version == 0) {
        t->body_len += len;
        return http_out_text(o, data, len);
    }
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    if ((rc = http_out_text(o, size, (size_t)n)) != 0 || (rc = http_out_text(o, data, len)) != 0 ||
        (rc = http_out_text(o, "\r\n", 2)) != 0)
        return rc;
    t->body_len += (uint64_t)n + len + 2;
    return 0;
}

int sp_http_resp_end(struct sp_http_resp *resp)
{
    struct http_txn *t = resp->t;
    int rc = 0;

    if (resp->state == RESP_NONE && (rc = resp_head(resp, HTTP_LEN_CHUNKED)) != 0)
        return rc;
    if (resp->state != RESP_STREAMING)
        return 0;
    resp->state = RESP_DONE;
    if (resp_has_body(resp) && t->req->minor_version >= 1) {
        rc = http_out_text(&resp->c->out, "0\r\n\r\n", 5);
        t->body_len += 5;
    }
    return rc;
}

int sp_http_resp_flush(struct sp_http_resp *resp)
{
    return http_out_flush(&resp->c->out);
}

/* ---- running a handler ---------------------------------------------------------- */

int http_handler_run(struct http_conn *c, struct http_txn *t, const struct http_handler *h)
{
    /* Field by field: an initializer would clear the inline buffers too. */
    struct sp_http_req req;
    struct sp_http_resp resp;
    int rc;

    req.c = c;
    req.t = t;
    req.body = NULL;
    req.body_len = 0;
    req.body_read = false;
    req.peer_known = false;
    resp.c = c;
    resp.t = t;
    resp.status = 200;
    resp.state = RESP_NONE;
    resp.hdrs = resp.inline_hdrs;
    resp.hdrs_len = 0;
    int ret = h->def->handle(&req, &resp, h->state);
    if (req.body) /* free(NULL) is not free in every allocator */
        free(req.body);
    if (ret < 0) {
        rc = -ECONNABORTED;
    } else if (resp.state == RESP_NONE) {
        /* Nothing answered: after a failed body read the caller answers its
         * status; otherwise the handler is at fault. */
        resp.state = RESP_DONE;
        rc = c->body.state == HTTP_BODY_FAILED ? 0 : http_error(&c->out, t, 500, NULL);
    } else if (resp.state == RESP_STREAMING) {
        rc = sp_http_resp_end(&resp);
    } else {
        rc = 0;
    }
    if (resp.hdrs != resp.inline_hdrs)
        free(resp.hdrs);
    if (rc == 0)
        rc = c->out.error;
    return rc;
}

/* ---- ready responses -------------------------------------------------------- */

struct sp_http_ready {
    struct http_prebuilt pb; /* the head, and the body below */
    unsigned status;
    char *content_type;
    char *body;
};

struct sp_http_ready *sp_http_ready_new(unsigned status, const char *content_type, const void *body,
                                        size_t len)
{
    if (status < 200 || status > 599 || !content_type || (!body && len))
        return NULL;
    for (const char *p = content_type; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return NULL;
    struct sp_http_ready *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->status = status;
    r->content_type = strdup(content_type);
    r->body = malloc(len + 1);
    if (!r->content_type || !r->body)
        goto fail;
    if (len)
        memcpy(r->body, body, len);
    r->body[len] = '\0';
    struct sp_http_return ret = {
        .status = status, .content_type = r->content_type, .body = r->body, .body_len = len};
    if (http_prebuilt_init(&r->pb, &ret) != 0)
        goto fail;
    return r;
fail:
    sp_http_ready_free(r);
    return NULL;
}

void sp_http_ready_free(struct sp_http_ready *r)
{
    if (!r)
        return;
    free(r->pb.head);
    free(r->content_type);
    free(r->body);
    free(r);
}

int sp_http_resp_ready(struct sp_http_resp *resp, const struct sp_http_ready *r)
{
    if (resp->state != RESP_NONE)
        return -EALREADY;
    if (resp->hdrs_len > 0) {
        /* Headers of the handler's own: the head is written whole. */
        int rc = sp_http_resp_status(resp, r->status);
        if (rc == 0)
            rc = sp_http_resp_header(resp, "Content-Type", r->content_type);
        return rc < 0 ? rc : sp_http_resp_body(resp, r->pb.body, r->pb.body_len);
    }
    resp->state = RESP_DONE;
    return http_prebuilt_send(&resp->c->out, resp->t, &r->pb);
}
