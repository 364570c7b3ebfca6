/*
 * [http NAME]'s tls_* keys, and the TLS contexts built from them.
 *
 * The certificate and key files are read when the configuration is loaded:
 * in the master, which runs as root (keys are usually readable by root
 * only), for `spindle -t` and for each reload.  The workers build their
 * contexts from the bytes they inherit across fork.  The load also builds
 * the contexts once and throws them away, so that a missing or mismatched
 * key, an expired certificate or a cipher list OpenSSL rejects fails the
 * load (a failed reload keeps the old generation serving) rather than a
 * worker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http_conf.h"

/* Mozilla's "intermediate" list for TLS 1.2 (TLS 1.3 suites are OpenSSL's
 * defaults, all AEAD). */
#define TLS_DEFAULT_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define TLS_MAX_FILE (1 << 20)

void http_tls_conf_set_file(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                            const char *value)
{
    struct sp_http_conf *h = conf;
    bool is_key = key->offset == offsetof(struct sp_http_conf, tls_keys);
    struct sp_http_tls_file *all = is_key ? h->tls_keys : h->tls_certs;
    unsigned *n = is_key ? &h->ntls_keys : &h->ntls_certs;
    const char *path = NULL;
    struct sp_conf_key k = *key;

    if (*n == SP_HTTP_TLS_MAX_PAIRS) {
        sp_conf_error(ctx, "too many %s lines in one section (max %d)", key->name,
                      SP_HTTP_TLS_MAX_PAIRS);
        return;
    }
    /* The path setter makes it absolute against the file's directory. */
    k.offset = 0;
    sp_conf_set_path(ctx, &k, &path, value);
    if (path == NULL)
        return;
    all[*n] = (struct sp_http_tls_file){.path = path, .line = sp_conf_line(ctx)};
    (*n)++;
}

void http_tls_conf_set_protocols(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                                 const char *value)
{
    unsigned *set = (unsigned *)((char *)conf + key->offset), bits = 0;
    const char *p = value;

    while (*(p += strspn(p, " \t")) != '\0') {
        size_t n = strcspn(p, " \t");
        if (n == 7 && strncasecmp(p, "TLSv1.2", 7) == 0)
            bits |= SP_HTTP_TLS_V12;
        else if (n == 7 && strncasecmp(p, "TLSv1.3", 7) == 0)
            bits |= SP_HTTP_TLS_V13;
        else {
            sp_conf_error(ctx, "invalid tls_protocols '%.*s': expected TLSv1.2 and/or TLSv1.3",
                          (int)n, p);
            return;
        }
        p += n;
    }
    *set = bits;
}

void http_tls_conf_set_onoff(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                             const char *value)
{
    bool *b = (bool *)((char *)conf + key->offset);
    if (strcasecmp(value, "on") == 0)
        *b = true;
    else if (strcasecmp(value, "off") == 0)
        *b = false;
    else
        sp_conf_error(ctx, "invalid %s '%s': expected on or off", key->name, value);
}

void http_tls_conf_set_ktls(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                            const char *value)
{
    unsigned char *k = (unsigned char *)conf + key->offset;
    if (strcasecmp(value, "auto") == 0)
        *k = SP_HTTP_KTLS_AUTO;
    else if (strcasecmp(value, "on") == 0)
        *k = SP_HTTP_KTLS_ON;
    else if (strcasecmp(value, "off") == 0)
        *k = SP_HTTP_KTLS_OFF;
    else
        sp_conf_error(ctx, "invalid %s '%s': expected auto, on or off", key->name, value);
}

void http_tls_conf_defaults(struct sp_conf_ctx *ctx, struct sp_http_conf *h)
{
    h->tls_protocols = SP_HTTP_TLS_V12 | SP_HTTP_TLS_V13;
    h->tls_ciphers = sp_conf_strdup(ctx, TLS_DEFAULT_CIPHERS, strlen(TLS_DEFAULT_CIPHERS));
    h->tls_handshake_timeout_ms = 10 * 1000;
    h->tls_session_tickets = true;
    h->tls_ktls = SP_HTTP_KTLS_AUTO;
    h->tls_ticket_rotation_ms = 12 * 3600 * INT64_C(1000);
}

/* Reads f->path into f->pem.  Returns 0 or -errno. */
static int read_file(struct sp_http_tls_file *f)
{
    FILE *fp = fopen(f->path, "rb");
    if (fp == NULL)
        return -errno;
    char *buf = malloc(TLS_MAX_FILE);
    if (buf == NULL) {
        fclose(fp);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, TLS_MAX_FILE, fp);
    int rc = ferror(fp) ? -EIO : n == TLS_MAX_FILE ? -EFBIG : 0;
    fclose(fp);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    f->pem = buf;
    f->len = n;
    return 0;
}

void http_tls_conf_check(struct sp_conf_ctx *ctx, struct sp_http_conf *h)
{
    char err[512];
    unsigned line = 0;
    void *ctxs[SP_HTTP_TLS_MAX_PAIRS];

    h->tls = sp_conf_section_tls(ctx);
    if (!h->tls)
        return;
    if (h->ntls_certs == 0) {
        sp_conf_error(ctx, "%s has a listen address flagged tls but no tls_certificate",
                      sp_conf_section(ctx));
        return;
    }
    if (h->ntls_keys != h->ntls_certs) {
        sp_conf_error(ctx,
                      "%s has %u tls_certificate and %u tls_certificate_key lines: "
                      "they go in pairs",
                      sp_conf_section(ctx), h->ntls_certs, h->ntls_keys);
        return;
    }
    if (h->tls_protocols == 0) {
        sp_conf_error(ctx, "tls_protocols names no protocol");
        return;
    }
    for (unsigned i = 0; i < 2 * h->ntls_certs; i++) {
        struct sp_http_tls_file *f = i % 2 ? &h->tls_keys[i / 2] : &h->tls_certs[i / 2];
        int rc = read_file(f);
        if (rc < 0) {
            sp_conf_error_at(ctx, f->line, "%s %s: cannot read: %s",
                             i % 2 ? "tls_certificate_key" : "tls_certificate", f->path,
                             strerror(-rc));
            return;
        }
    }
    int n = http_tls_ctxs_new(h, ctxs, true, err, sizeof(err), &line);
    if (n < 0) {
        sp_conf_error_at(ctx, line, "%s", err);
        return;
    }
    for (int i = 0; i < n; i++)
        SSL_CTX_free(ctxs[i]);
}

unsigned http_conf_ticket_rotation(const void *conf)
{
    const struct sp_http_conf *h = conf;
    return h->tls && h->tls_session_tickets ? (unsigned)(h->tls_ticket_rotation_ms / 1000) : 0;
}

void http_tls_conf_free(struct sp_http_conf *h)
{
    for (unsigned i = 0; i < h->ntls_certs; i++)
        free(h->tls_certs[i].pem);
    for (unsigned i = 0; i < h->ntls_keys; i++)
        free(h->tls_keys[i].pem);
}

/* ---- contexts ------------------------------------------------------------ */

/* The first OpenSSL error on this thread's queue as text, the queue emptied. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *o;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&o, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *ctx_new(const struct sp_http_conf *h, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        snprintf(err, errlen, "SSL_CTX_new failed: %s", ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, h->tls_protocols & SP_HTTP_TLS_V12 ? TLS1_2_VERSION
                                                                        : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c, h->tls_protocols & SP_HTTP_TLS_V13 ? TLS1_3_VERSION
                                                                        : TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(c, h->tls_ciphers) != 1) {
        snprintf(err, errlen, "invalid tls_ciphers '%s': %s", h->tls_ciphers,
                 ssl_reason(why, sizeof(why)));
        SSL_CTX_free(c);
        return NULL;
    }
    /* No renegotiation (a client asking for one is closed, http_tls.c);
     * the kernel takes the records over where it can.  Sessions resume by
     * ticket only: a cache inside one worker would miss on the others. */
    uint64_t opts =
        SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_ENABLE_KTLS
    if (h->tls_ktls != SP_HTTP_KTLS_OFF)
        opts |= SSL_OP_ENABLE_KTLS;
#endif
    if (!h->tls_session_tickets)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(c, opts);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    if (!h->tls_session_tickets)
        SSL_CTX_set_num_tickets(c, 0);
    else {
        /* The worker seals tickets with the master's keys (http_tls.c).
         * A session lives no longer than its ticket's key: two periods. */
        long life = (long)(h->tls_ticket_rotation_ms / 1000) * 2;
        if (life < SSL_CTX_get_timeout(c))
            SSL_CTX_set_timeout(c, life);
    }
    /* An idle connection keeps no record buffers. */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One read(2) takes whatever records are there, not a header and then
     * a body each.  The stream still parks an idle connection only after
     * OpenSSL found the socket empty (http_tls.c). */
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    return c;
}

/* Loads the i-th certificate chain and key into c.  Returns 0, or -1 with a
 * message and the line to blame. */
static int load_pair(SSL_CTX *c, const struct sp_http_conf *h, unsigned i, bool check_time,
                     X509 **leaf_out, char *err, size_t errlen, unsigned *line)
{
    const struct sp_http_tls_file *cf = &h->tls_certs[i], *kf = &h->tls_keys[i];
    char why[256];
    BIO *b = BIO_new_mem_buf(cf->pem, (int)cf->len);
    X509 *leaf = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    *line = cf->line;
    if (leaf == NULL) {
        snprintf(err, errlen, "tls_certificate %s: no certificate: %s", cf->path,
                 ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (check_time && X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        snprintf(err, errlen, "tls_certificate %s: the certificate has expired", cf->path);
        goto out;
    }
    if (SSL_CTX_use_certificate(c, leaf) != 1) {
        snprintf(err, errlen, "tls_certificate %s: %s", cf->path, ssl_reason(why, sizeof(why)));
        goto out;
    }
    /* The rest of the file is the chain, leaf first. */
    for (X509 *ca; (ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;) {
        if (SSL_CTX_add1_chain_cert(c, ca) != 1) {
            X509_free(ca);
            snprintf(err, errlen, "tls_certificate %s: %s", cf->path, ssl_reason(why, sizeof(why)));
            goto out;
        }
        X509_free(ca);
    }
    ERR_clear_error(); /* the chain's end reads as "no start line" */
    BIO_free(b);
    *line = kf->line;
    b = BIO_new_mem_buf(kf->pem, (int)kf->len);
    key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    if (key == NULL) {
        snprintf(err, errlen, "tls_certificate_key %s: no private key: %s", kf->path,
                 ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(c, key) != 1 || SSL_CTX_check_private_key(c) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls_certificate_key %s does not match tls_certificate %s (line %u)",
                 kf->path, cf->path, cf->line);
        goto out;
    }
    rc = 0;
    *leaf_out = leaf;
    leaf = NULL;
out:
    EVP_PKEY_free(key);
    X509_free(leaf);
    BIO_free(b);
    return rc;
}

int http_tls_ctxs_new(const struct sp_http_conf *h, void **ctxs, bool check_time, char *err,
                      size_t errlen, unsigned *line)
{
    X509 *leaves[SP_HTTP_TLS_MAX_PAIRS];
    int owner[SP_HTTP_TLS_MAX_PAIRS]; /* the context each pair went into */
    int n = 0;

    for (unsigned i = 0; i < h->ntls_certs; i++) {
        /* A certificate of a subject seen before, with another key type,
         * joins that subject's context (OpenSSL picks by the client's
         * signature algorithms); anything else gets a context of its own. */
        int into = -1;
        if (i > 0) {
            BIO *b = BIO_new_mem_buf(h->tls_certs[i].pem, (int)h->tls_certs[i].len);
            X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
            EVP_PKEY *pk = x ? X509_get0_pubkey(x) : NULL;
            for (unsigned j = 0; pk && j < i && into < 0; j++) {
                EVP_PKEY *pj = X509_get0_pubkey(leaves[j]);
                if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(leaves[j])) ==
                        0 &&
                    EVP_PKEY_get_base_id(pj) != EVP_PKEY_get_base_id(pk))
                    into = owner[j];
            }
            X509_free(x);
            BIO_free(b);
            ERR_clear_error();
        }
        if (into < 0) {
            if ((ctxs[n] = ctx_new(h, err, errlen)) == NULL) {
                *line = 0;
                goto fail;
            }
            into = n++;
        }
        if (load_pair(ctxs[into], h, i, check_time, &leaves[i], err, errlen, line) != 0) {
            for (unsigned j = 0; j < i; j++)
                X509_free(leaves[j]);
            goto fail;
        }
        owner[i] = into;
    }
    for (unsigned i = 0; i < h->ntls_certs; i++) {
        /* Each context keeps its leaves for SNI (http_tls.c): ex_data would
         * do too, but the certificate is already in the context. */
        X509_free(leaves[i]);
    }
    return n;
fail:
    for (int i = 0; i < n; i++)
        SSL_CTX_free(ctxs[i]);
    return -1;
}
