/*
 * HTTPS: a stream (spindle/stream.h) over an OpenSSL session, so that the
 * connection code of http.c runs over TLS unchanged.
 *
 * OpenSSL reads and writes the socket itself through a BIO of our own
 * whose calls never wait: a read or write that would block leaves
 * SSL_ERROR_WANT_READ or WANT_WRITE, and the operation parks the fiber with
 * sp_wait() and tries again.  Kernel TLS needs OpenSSL's own socket BIO
 * instead (it moves the keys into the socket and sends its alerts through
 * it): with tls_ktls = on, or auto where the kernel's tls module is loaded,
 * a connection gets that one, on the same non-blocking socket (its read()
 * and write() pass through the hooks to libc's, the fd being non-blocking
 * already), and once the handshake is over the kernel encrypts what is
 * written and sendfile() sends a file as it is.  A fiber never changes
 * threads, so OpenSSL's per-thread error queue stays the fiber's across a
 * park.
 *
 * The session lives on the heap (struct tls_stream) for the connection's
 * whole life: while the connection is idle its fd sits in a watch with the
 * stream as the argument, holding no fiber.  That is safe only when nothing
 * decrypted waits inside OpenSSL, which try_read guarantees: it returns
 * -EAGAIN, or fewer bytes than asked for, only after OpenSSL found the
 * socket empty (a partial record may stay in OpenSSL's buffer, but its rest
 * must still arrive, and that wakes the watch).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "spindle/clock.h"
#include "spindle/io.h"
#include "spindle/log.h"
#include "spindle/worker.h"
#include "http.h"
#include "http_tls.h"

#define TLS_CHUNK 16384 /* one full record: what writev gathers and sendfile reads */

struct tls_stream {
    struct sp_stream s; /* first: the operations get &s */
    SSL *ssl;
    struct http_svc *hs;
    char *chunk;      /* TLS_CHUNK bytes, made on the first writev or sendfile */
    bool established; /* the handshake is over: a new one is a renegotiation */
    bool renegotiate; /* the peer asked for one: the connection ends */
};

struct http_tls {
    SSL_CTX *ctxs[SP_HTTP_TLS_MAX_PAIRS];
    int nctxs;
    unsigned ticket_rotation_s; /* which of the master's ticket key sets */
    bool socket_bio;            /* OpenSSL's socket BIO, for kernel TLS (tls_ktls) */
};

static BIO_METHOD *sock_method;
atomic_ullong http_tls_handshakes, http_tls_failures, http_tls_renegotiations,
    http_tls_ktls_handshakes;

/* ---- the BIO: the socket, never waiting ------------------------------------ */

static int bio_read(BIO *b, char *buf, int len)
{
    ssize_t n = sp_try_read((int)BIO_get_fd(b, NULL), buf, (size_t)len);
    BIO_clear_retry_flags(b);
    if (n == -EAGAIN) {
        BIO_set_retry_read(b);
        return -1;
    }
    if (n < 0) {
        errno = (int)-n;
        return -1;
    }
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    /* syscall(): no hook and no cancellation point. */
    long n = syscall(SYS_sendto, (int)BIO_get_fd(b, NULL), buf, (size_t)len, MSG_NOSIGNAL, NULL, 0);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        BIO_set_retry_write(b);
        return -1;
    }
    return n < 0 ? -1 : (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_C_SET_FD:
        BIO_set_data(b, (void *)(intptr_t) * (int *)ptr);
        BIO_set_init(b, 1);
        return 1;
    case BIO_C_GET_FD:
        return (long)(intptr_t)BIO_get_data(b);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        (void)num;
        return 0;
    }
}

/* ---- waiting -------------------------------------------------------------- */

/* After an SSL call returned r <= 0: parks the fiber until the socket is
 * ready for what OpenSSL wants, within deadline (ns, 0: none).  Returns 0 to
 * try again, 0 is also what a peer's clean close gives (*eof set), or -errno. */
static int tls_wait(struct tls_stream *t, int r, uint64_t deadline, bool *eof)
{
    int e = SSL_get_error(t->ssl, r);
    int64_t left = -1;

    if (t->renegotiate)
        return -EPROTO;
    if (deadline) {
        uint64_t now = sp_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        left = (int64_t)((deadline - now + 999999u) / 1000000u);
    }
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return sp_wait(t->s.fd, SP_IO_READ, left);
    case SSL_ERROR_WANT_WRITE:
        return sp_wait(t->s.fd, SP_IO_WRITE, left);
    case SSL_ERROR_ZERO_RETURN:
        *eof = true;
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno ? -errno : -ECONNRESET;
    default:
        ERR_clear_error();
        return -EPROTO;
    }
}

static uint64_t deadline_of(int64_t timeout_ms)
{
    return timeout_ms < 0 ? 0 : sp_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* ---- the stream's operations --------------------------------------------------- */

static ssize_t tls_read(struct sp_stream *s, void *buf, size_t len, int64_t timeout_ms)
{
    struct tls_stream *t = (struct tls_stream *)s;
    uint64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        size_t n;
        int r = SSL_read_ex(t->ssl, buf, len, &n);
        if (r == 1 && !t->renegotiate)
            return (ssize_t)n;
        bool eof = false;
        errno = 0;
        int rc = tls_wait(t, r, deadline, &eof);
        if (eof)
            return 0;
        if (rc < 0)
            return rc;
    }
}

/* Reads records until buf is full or OpenSSL finds the socket empty, so
 * that a short count means the socket is drained (stream.h).  After a
 * record that came from a short read, the BIO's sp_try_read answers EAGAIN
 * without a system call (io.h), so learning it costs no read. */
static ssize_t tls_try_read(struct sp_stream *s, void *buf, size_t len)
{
    struct tls_stream *t = (struct tls_stream *)s;
    size_t got = 0;
    while (got < len) {
        size_t n;
        int r = SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n);
        if (t->renegotiate)
            return -EPROTO;
        if (r == 1) {
            got += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return got ? (ssize_t)got : -EAGAIN;
        if (got)
            return (ssize_t)got; /* the error shows again on the next call */
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            /* A key update to answer: let it go out, then read again. */
            int rc = sp_wait(s->fd, SP_IO_WRITE, t->hs->conf->send_timeout_ms);
            if (rc < 0)
                return rc;
            continue;
        }
        ERR_clear_error();
        return e == SSL_ERROR_SYSCALL && errno ? -errno : -ECONNRESET;
    }
    return (ssize_t)got;
}

/* timeout_ms bounds each stretch without progress, as for sp_write. */
static ssize_t tls_write(struct sp_stream *s, const void *buf, size_t len, int64_t timeout_ms)
{
    struct tls_stream *t = (struct tls_stream *)s;
    size_t done = 0;
    while (done < len) {
        size_t n;
        int r = SSL_write_ex(t->ssl, (const char *)buf + done, len - done, &n);
        if (r == 1) {
            done += n;
            continue;
        }
        bool eof = false;
        errno = 0;
        int rc = tls_wait(t, r, deadline_of(timeout_ms), &eof);
        if (eof)
            return -EPIPE;
        if (rc < 0)
            return rc;
    }
    return (ssize_t)len;
}

static int chunk_ready(struct tls_stream *t)
{
    if (t->chunk == NULL && (t->chunk = malloc(TLS_CHUNK)) == NULL)
        return -ENOMEM;
    return 0;
}

/* Gathers small pieces into full records: one SSL_write per piece would
 * make a record (and a MAC, and a header) of each. */
static ssize_t tls_writev(struct sp_stream *s, struct iovec *iov, int iovcnt, int64_t timeout_ms)
{
    struct tls_stream *t = (struct tls_stream *)s;
    size_t total = 0, fill = 0;
    ssize_t rc;

    if (chunk_ready(t) != 0)
        return -ENOMEM;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        total += n;
        while (n > 0) {
            if (fill == 0 && n >= TLS_CHUNK) {
                if ((rc = tls_write(s, p, n, timeout_ms)) < 0)
                    return rc;
                break;
            }
            size_t k = n < TLS_CHUNK - fill ? n : TLS_CHUNK - fill;
            memcpy(t->chunk + fill, p, k);
            fill += k, p += k, n -= k;
            if (fill == TLS_CHUNK) {
                if ((rc = tls_write(s, t->chunk, fill, timeout_ms)) < 0)
                    return rc;
                fill = 0;
            }
        }
        iov[i].iov_len = 0;
    }
    if (fill && (rc = tls_write(s, t->chunk, fill, timeout_ms)) < 0)
        return rc;
    return (ssize_t)total;
}

/* Without kernel TLS the file's pages are read and encrypted here. */
static ssize_t tls_sendfile(struct sp_stream *s, int in_fd, off_t *offset, size_t count,
                            int64_t timeout_ms)
{
    struct tls_stream *t = (struct tls_stream *)s;
    size_t left = count;

    if (BIO_get_ktls_send(SSL_get_wbio(t->ssl)))
        return sp_sendfile(s->fd, in_fd, offset, count, timeout_ms);
    if (chunk_ready(t) != 0)
        return -ENOMEM;
    while (left > 0) {
        ssize_t n = pread(in_fd, t->chunk, left < TLS_CHUNK ? left : TLS_CHUNK, *offset);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file shrank */
        ssize_t w = tls_write(s, t->chunk, (size_t)n, timeout_ms);
        if (w < 0)
            return w;
        *offset += n;
        left -= (size_t)n;
    }
    return (ssize_t)count;
}

static int tls_shutdown(struct sp_stream *s, int how)
{
    struct tls_stream *t = (struct tls_stream *)s;
    if (how != SHUT_RD && t->established && !SSL_in_init(t->ssl)) {
        /* close_notify, without waiting for the peer's */
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    return shutdown(s->fd, how) == 0 ? 0 : -errno;
}

static void tls_free(struct tls_stream *t)
{
    SSL_free(t->ssl);
    free(t->chunk);
    free(t);
}

static int tls_close(struct sp_stream *s)
{
    struct tls_stream *t = (struct tls_stream *)s;
    int fd = s->fd;
    if (t->established && !SSL_in_init(t->ssl) && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(t->ssl);
    ERR_clear_error();
    tls_free(t);
    return sp_close(fd);
}

static const struct sp_stream_ops tls_ops = {
    .read = tls_read,
    .try_read = tls_try_read,
    .write = tls_write,
    .writev = tls_writev,
    .sendfile = tls_sendfile,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* ---- the service's contexts ------------------------------------------------------------ */

/* A ClientHello after the handshake is a renegotiation: refused, and the
 * connection ends (the I/O calls see the flag). */
static void info_cb(const SSL *ssl, int where, int ret)
{
    (void)ret;
    struct tls_stream *t = SSL_get_app_data(ssl);
    if ((where & SSL_CB_HANDSHAKE_START) && t && t->established && !t->renegotiate &&
        SSL_version(ssl) < TLS1_3_VERSION) {
        t->renegotiate = true;
        atomic_fetch_add(&http_tls_renegotiations, 1);
    }
}

/* SNI: the first context with a certificate for the name the client asked
 * for; the default one otherwise. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct http_tls *tl = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)alert;
    if (name == NULL || tl->nctxs < 2)
        return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < tl->nctxs; i++) {
        X509 *x = SSL_CTX_get0_certificate(tl->ctxs[i]);
        if (x && X509_check_host(x, name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, tl->ctxs[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/*
 * OpenSSL's ticket key callback, with the keys the master sent
 * (worker_ticket_key_*): seals with the current period's key, or issues no
 * ticket when there is none; opens with the previous, current or next
 * period's, and asks for a new ticket unless it was the current one.
 */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const struct http_tls *tl = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct worker_ticket_key k;
    int rc;

    if (enc) {
        if (worker_ticket_key_current(tl->ticket_rotation_s, &k) != 0)
            return 0;
        memcpy(key_name, k.name, sizeof(k.name));
        rc = RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1 &&
                     EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1
                 ? 1
                 : -1;
    } else {
        rc = worker_ticket_key_find(tl->ticket_rotation_s, key_name, &k);
        if (rc < 0)
            return 0;
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
            rc = -1;
    }
    if (rc > 0) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

struct http_tls *http_tls_new(const struct sp_http_conf *conf, char *err, size_t errlen)
{
    unsigned line;
    struct http_tls *tl = calloc(1, sizeof(*tl));
    if (tl == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sock_method == NULL) {
        sock_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "spindle socket");
        if (sock_method == NULL || !BIO_meth_set_read(sock_method, bio_read) ||
            !BIO_meth_set_write(sock_method, bio_write) ||
            !BIO_meth_set_ctrl(sock_method, bio_ctrl)) {
            snprintf(err, errlen, "BIO_meth_new failed");
            free(tl);
            return NULL;
        }
    }
    /* Expiry was checked when the configuration was loaded; a certificate
     * that expires while it serves keeps serving until the next reload. */
    int n = http_tls_ctxs_new(conf, (void **)tl->ctxs, false, err, errlen, &line);
    if (n < 0) {
        free(tl);
        return NULL;
    }
    tl->nctxs = n;
    tl->ticket_rotation_s = (unsigned)(conf->tls_ticket_rotation_ms / 1000);
#ifdef SSL_OP_ENABLE_KTLS
    /* auto: where the kernel's tls module is loaded (modprobe tls) when the
     * worker starts; on: always, and the first socket that asks loads it
     * where the kernel can. */
    tl->socket_bio = conf->tls_ktls == SP_HTTP_KTLS_ON ||
                     (conf->tls_ktls == SP_HTTP_KTLS_AUTO && access("/sys/module/tls", F_OK) == 0);
#endif
    for (int i = 0; i < n; i++) {
        SSL_CTX_set_info_callback(tl->ctxs[i], info_cb);
        SSL_CTX_set_tlsext_servername_callback(tl->ctxs[i], sni_cb);
        SSL_CTX_set_tlsext_servername_arg(tl->ctxs[i], tl);
        if (conf->tls_session_tickets) {
            SSL_CTX_set_app_data(tl->ctxs[i], tl);
            SSL_CTX_set_tlsext_ticket_key_evp_cb(tl->ctxs[i], ticket_cb);
        }
    }
    return tl;
}

void http_tls_free(struct http_tls *tl)
{
    if (tl == NULL)
        return;
    for (int i = 0; i < tl->nctxs; i++)
        SSL_CTX_free(tl->ctxs[i]);
    free(tl);
}

struct sp_stream *http_tls_accept(struct http_svc *hs, struct http_tls *tl, int fd)
{
    struct tls_stream *t = calloc(1, sizeof(*t));
    BIO *b = NULL;

    if (t == NULL)
        goto fail;
    t->s.ops = &tls_ops;
    t->s.fd = fd;
    t->hs = hs;
    if ((t->ssl = SSL_new(tl->ctxs[0])) == NULL)
        goto fail;
    if (tl->socket_bio)
        b = BIO_new_socket(fd, BIO_NOCLOSE);
    else if ((b = BIO_new(sock_method)) != NULL)
        BIO_set_fd(b, fd, BIO_NOCLOSE);
    if (b == NULL)
        goto fail;
    SSL_set_bio(t->ssl, b, b);
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);

    uint64_t deadline = deadline_of(hs->conf->tls_handshake_timeout_ms);
    /* The ClientHello seldom arrives before accept() returns: wait for it
     * rather than read EAGAIN first (nginx waits too).  When it is there
     * already, the wait returns at the scheduler's next look. */
    int r = sp_wait(fd, SP_IO_READ, hs->conf->tls_handshake_timeout_ms);
    if (r < 0)
        goto fail;
    while ((r = SSL_do_handshake(t->ssl)) != 1) {
        bool eof = false;
        errno = 0;
        int rc = tls_wait(t, r, deadline, &eof);
        if (rc < 0 || eof)
            goto fail;
    }
    t->established = true;
    atomic_fetch_add(&http_tls_handshakes, 1);
    if (BIO_get_ktls_send(SSL_get_wbio(t->ssl)))
        atomic_fetch_add(&http_tls_ktls_handshakes, 1);
    return &t->s;

fail:
    ERR_clear_error();
    atomic_fetch_add(&http_tls_failures, 1);
    /* What the peer sent and OpenSSL did not read (the rest of a plaintext
     * request, say) would make the close a reset: a failed handshake ends
     * with a FIN after OpenSSL's alert. */
    for (int i = 0; i < 16; i++) {
        char junk[4096];
        if (sp_try_read(fd, junk, sizeof(junk)) <= 0)
            break;
    }
    if (t) {
        SSL_free(t->ssl);
        free(t);
    }
    sp_close(fd);
    return NULL;
}

void http_tls_drop(struct sp_stream *s)
{
    tls_free((struct tls_stream *)s);
}

struct http_svc *http_tls_svc(struct sp_stream *s)
{
    return ((struct tls_stream *)s)->hs;
}

bool http_tls_ktls(struct sp_stream *s)
{
    struct tls_stream *t = (struct tls_stream *)s;
    return s->ops == &tls_ops && BIO_get_ktls_send(SSL_get_wbio(t->ssl));
}
