/*
 * Static files under root.
 *
 * Lookup never leaves root: the request path arrives decoded and normalised
 * (no "..", no NUL), and the file is opened relative to a descriptor of root
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so that no symlink
 * can lead out either.
 *
 * root is looked up again on every request (one stat of its path): when it
 * names another directory than before, as after the usual deploy that
 * switches a "current" symlink, the new one is opened and the cache emptied,
 * so that the very next request is served from the new tree (as nginx does,
 * which opens every file by its full path).  Requests under way keep the
 * directory they started with (reference counted).  Where openat2 is missing (Linux < 5.6) the
 * opened file's real path is checked against root's instead.  Anything refused is a 404,
 * indistinguishable from a missing file.  "/dir" is redirected (301) to
 * "/dir/", which serves the index file; a directory without one is a 404
 * (there are no listings).
 *
 * Small files (up to CACHE_FILE_MAX) are kept in memory, keyed by path and
 * answered with one writev; an entry is checked against the file system
 * (open + fstat) at most once per second of wall time, and the caches of a
 * worker hold at most CACHE_TOTAL_MAX bytes, least recently used out first.
 * Larger files are sent with sendfile.  Entries are reference counted because
 * a response points into one until it is written, possibly after the entry
 * has been replaced.
 *
 * Each scheduler thread has its own cache and its own current root (a
 * connection never leaves its thread), so nothing here takes a lock: each
 * thread notices a switch of root by itself, on its next request, and
 * empties its own cache; each cache may hold CACHE_TOTAL_MAX / threads
 * bytes.
 *
 * Conditional requests: If-None-Match (weak comparison, "*") takes precedence
 * over If-Modified-Since (IMF-fixdate only); either gives 304.  Range: one
 * "bytes=" range (a-b, a-, -n) gives 206, an unsatisfiable one 416; several
 * ranges, a malformed one, or an If-Range that does not match give the whole
 * file (200), as RFC 9110 allows.  Range applies to GET only.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2 1
#endif
#endif

#include "http.h"
#include "spindle/clock.h"
#include "spindle/http_date.h"
#include "spindle/http_range.h"
#include "spindle/io.h"
#include "spindle/iomanager.h"

#define CACHE_FILE_MAX  (64 * 1024)
#define CACHE_TOTAL_MAX (16 * 1024 * 1024)
#define CACHE_BUCKETS   1024 /* a power of two */
#define META_HDRS_MAX   160
#define REL_STACK       512 /* longer paths relative to root are copied to the heap */

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* What a response needs to know about a file. */
struct file_meta {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    const char *ctype;
    char etag[40]; /* with its quotes */
    size_t etag_len;
    char lastmod[SP_HTTP_DATE_LEN];
    char hdrs[META_HDRS_MAX]; /* Last-Modified, ETag, Accept-Ranges lines */
    size_t hdrs_len;
};

struct http_file {
    struct http_file *hnext;       /* hash chain */
    unsigned gen;                  /* of the root it was read under */
    struct http_file *prev, *next; /* LRU list, most recent first */
    atomic_uint refs;              /* one for the cache while listed, one per user */
    bool listed;
    time_t checked; /* wall-clock second of the last check against the disk */
    size_t hash;
    struct file_meta meta;
    char *data;
    size_t path_len;
    char path[]; /* relative to root, NUL-terminated */
};

/* The directory root named when it was last looked up. */
struct http_root {
    atomic_uint refs; /* one for its thread's cache while current, one per request */
    unsigned gen;     /* counts the directories root has named */
    int fd;
    dev_t dev;
    ino_t ino;
    char *real; /* its real path, for the check without openat2 */
    size_t real_len;
};

/* One scheduler thread's cache, touched only by that thread (and at exit). */
struct http_cache {
    struct http_root *root; /* current for this thread; NULL until its first request */
    struct http_file *buckets[CACHE_BUCKETS];
    struct http_file *lru_head, *lru_tail;
    size_t total, max; /* bytes listed, at most max */
};

struct http_static {
    const struct sp_http_conf *conf;
    const char *index; /* the index file name, borrowed */
    size_t index_len;
    atomic_bool openat2_ok;
    unsigned ncaches;
    struct http_cache **caches; /* one per scheduler thread */
};

/* The calling scheduler thread's cache. */
static struct http_cache *my_cache(struct http_static *st)
{
    unsigned i = sp_iom_thread_index();
    return st->caches[i < st->ncaches ? i : 0];
}

/* ---- cache ----------------------------------------------------------------- */

void http_file_release(struct http_file *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        free(f->data);
        free(f);
    }
}

static void lru_unlink(struct http_cache *ca, struct http_file *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        ca->lru_head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        ca->lru_tail = f->prev;
    f->prev = f->next = NULL;
}

static void lru_push(struct http_cache *ca, struct http_file *f)
{
    f->prev = NULL;
    f->next = ca->lru_head;
    if (ca->lru_head)
        ca->lru_head->prev = f;
    else
        ca->lru_tail = f;
    ca->lru_head = f;
}

/* Takes f out of the cache and drops the cache's reference. */
static void cache_remove(struct http_cache *ca, struct http_file *f)
{
    if (!f->listed)
        return;
    struct http_file **pp = &ca->buckets[f->hash & (CACHE_BUCKETS - 1)];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    lru_unlink(ca, f);
    f->listed = false;
    ca->total -= (size_t)f->meta.size;
    http_file_release(f);
}

/* Returns the entry for path with a reference taken and its last check time,
 * or NULL. */
static struct http_file *cache_get(struct http_cache *ca, const char *path, size_t len, size_t hash,
                                   unsigned gen, time_t *checked)
{
    struct http_file *f = ca->buckets[hash & (CACHE_BUCKETS - 1)];
    while (f && !(f->hash == hash && f->path_len == len && memcmp(f->path, path, len) == 0))
        f = f->hnext;
    if (f && f->gen != gen)
        f = NULL; /* read under another root (a request that began before a switch) */
    if (f) {
        atomic_fetch_add(&f->refs, 1);
        *checked = f->checked;
        if (ca->lru_head != f) {
            lru_unlink(ca, f);
            lru_push(ca, f);
        }
    }
    return f;
}

/* Lists f (the caller keeps its own reference), replacing an entry for the
 * same path and evicting the least recently used ones to make room.  An
 * entry read under a root that is no longer current is not listed. */
static void cache_insert(struct http_cache *ca, struct http_file *f)
{
    if (!ca->root || ca->root->gen != f->gen)
        return;
    struct http_file *old = ca->buckets[f->hash & (CACHE_BUCKETS - 1)];
    while (old && !(old->hash == f->hash && old->path_len == f->path_len &&
                    memcmp(old->path, f->path, f->path_len) == 0))
        old = old->hnext;
    if (old)
        cache_remove(ca, old);
    while (ca->lru_tail && ca->total + (size_t)f->meta.size > ca->max)
        cache_remove(ca, ca->lru_tail);
    f->hnext = ca->buckets[f->hash & (CACHE_BUCKETS - 1)];
    ca->buckets[f->hash & (CACHE_BUCKETS - 1)] = f;
    lru_push(ca, f);
    f->listed = true;
    ca->total += (size_t)f->meta.size;
    atomic_fetch_add(&f->refs, 1);
}

/* ---- root ---------------------------------------------------------------------- */

static void root_release(struct http_root *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        close(r->fd);
        free(r->real);
        free(r);
    }
}

/* Opens the directory path names now.  Returns it (one reference) or NULL
 * with errno set. */
static struct http_root *root_open(const char *path)
{
    struct http_root *r = calloc(1, sizeof(*r));
    char link[64], real[PATH_MAX];
    struct stat sb;
    ssize_t n;

    if (!r)
        return NULL;
    r->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->fd < 0 || fstat(r->fd, &sb) != 0)
        goto fail;
    r->dev = sb.st_dev;
    r->ino = sb.st_ino;
    /* The real path of this very directory, even if path changes meanwhile. */
    snprintf(link, sizeof(link), "/proc/self/fd/%d", r->fd);
    if ((n = readlink(link, real, sizeof(real) - 1)) > 0) {
        real[n] = '\0';
        r->real = strdup(real);
    } else {
        r->real = realpath(path, NULL);
    }
    if (!r->real)
        goto fail;
    r->real_len = strlen(r->real);
    atomic_init(&r->refs, 1);
    return r;
fail:
    if (r->fd >= 0) {
        int err = errno;
        close(r->fd);
        errno = err;
    }
    free(r);
    return NULL;
}

/*
 * The directory root names now, with a reference for the caller; NULL (a
 * 404) when it names none.  Costs one stat(2) of the path when nothing
 * changed; otherwise opens the new directory, makes it current for this
 * thread and empties the thread's cache, whose entries were read under the
 * old one.
 */
static struct http_root *root_get(struct http_cache *ca, const char *path)
{
    struct http_root *r, *old = ca->root;
    struct stat sb;

    if (stat(path, &sb) != 0)
        return NULL;
    if (old && old->dev == sb.st_dev && old->ino == sb.st_ino) {
        atomic_fetch_add(&old->refs, 1);
        return old;
    }
    if (!(r = root_open(path)))
        return NULL;
    r->gen = old ? old->gen + 1 : 0;
    atomic_fetch_add(&r->refs, 1);
    ca->root = r;
    while (ca->lru_tail)
        cache_remove(ca, ca->lru_tail);
    root_release(old);
    return r;
}

/* ---- opening files beneath root ---------------------------------------------- */

/* Without openat2: accept fd only if its real path is root or below it.
 * Not inlined: its PATH_MAX buffer stays off the stack of the usual path. */
static __attribute__((noinline)) int check_beneath(const struct http_root *root, int fd)
{
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    if (n < 0)
        return -EXDEV; /* cannot tell: refuse */
    if ((size_t)n < root->real_len || memcmp(real, root->real, root->real_len) != 0)
        return -EXDEV;
    if ((size_t)n > root->real_len && real[root->real_len] != '/' &&
        !(root->real_len == 1 && root->real[0] == '/'))
        return -EXDEV;
    return 0;
}

/* Opens rel (relative to root, not empty, no leading '/').  Returns the fd or -errno;
 * -EXDEV when it would leave root. */
static int open_beneath(struct http_static *st, const struct http_root *root, const char *rel)
{
#ifdef HAVE_OPENAT2
    if (atomic_load_explicit(&st->openat2_ok, memory_order_relaxed)) {
        struct open_how how = {
            .flags = OPEN_FLAGS,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, root->fd, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
        /* No openat2 here (or a seccomp filter refusing it): use the check. */
        atomic_store(&st->openat2_ok, false);
    }
#endif
    int fd = openat(root->fd, rel, OPEN_FLAGS);
    if (fd < 0)
        return -errno;
    int rc = check_beneath(root, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- metadata ----------------------------------------------------------------- */

static void meta_fill(struct file_meta *m, const struct stat *sb, const char *name, size_t len)
{
    m->dev = sb->st_dev;
    m->ino = sb->st_ino;
    m->size = sb->st_size;
    m->mtime = sb->st_mtim;
    m->ctype = http_mime_type(name, len);
    /* nginx's form: hex seconds of mtime, hex size. */
    m->etag_len =
        (size_t)snprintf(m->etag, sizeof(m->etag), "\"%llx-%llx\"",
                         (unsigned long long)sb->st_mtim.tv_sec, (unsigned long long)sb->st_size);
    sp_http_date_format(sb->st_mtim.tv_sec, m->lastmod);
    m->hdrs_len = (size_t)snprintf(m->hdrs, sizeof(m->hdrs),
                                   "Last-Modified: %.*s\r\nETag: %s\r\nAccept-Ranges: bytes\r\n",
                                   SP_HTTP_DATE_LEN, m->lastmod, m->etag);
}

static bool meta_same(const struct file_meta *m, const struct stat *sb)
{
    return m->dev == sb->st_dev && m->ino == sb->st_ino && m->size == sb->st_size &&
           m->mtime.tv_sec == sb->st_mtim.tv_sec && m->mtime.tv_nsec == sb->st_mtim.tv_nsec;
}

/* Reads the whole (small, regular) file into a new cache entry.  NULL on failure. */
static struct http_file *file_load(int fd, const struct stat *sb, const char *rel, size_t len,
                                   size_t hash)
{
    struct http_file *f = calloc(1, sizeof(*f) + len + 1);
    if (!f)
        return NULL;
    f->data = malloc(sb->st_size ? (size_t)sb->st_size : 1);
    if (!f->data) {
        free(f);
        return NULL;
    }
    size_t got = 0, size = (size_t)sb->st_size;
    while (got < size) {
        ssize_t n = pread(fd, f->data + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != size) { /* changed under us: do not cache a torn copy */
        free(f->data);
        free(f);
        return NULL;
    }
    meta_fill(&f->meta, sb, rel, len);
    atomic_init(&f->refs, 1);
    f->hash = hash;
    f->path_len = len;
    memcpy(f->path, rel, len);
    return f;
}

/* ---- conditionals and ranges --------------------------------------------------- */

static bool not_modified(const struct sp_http_request *req, const struct file_meta *m)
{
    if (req->if_none_match)
        return sp_http_etag_listed(req->if_none_match, req->if_none_match_len, m->etag,
                                   m->etag_len);
    time_t ims;
    if (req->if_modified_since &&
        sp_http_date_parse(req->if_modified_since, req->if_modified_since_len, &ims) == 0)
        return m->mtime.tv_sec <= ims;
    return false;
}

/* If-Range holds our exact ETag or Last-Modified, or is absent. */
static bool if_range_ok(const struct sp_http_request *req, const struct file_meta *m)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct sp_http_header *h = &req->headers[i];
        if (h->name_len == 8 && strncasecmp(h->name, "If-Range", 8) == 0)
            return sp_http_if_range_match(h->value, h->value_len, m->etag, m->etag_len, m->lastmod);
    }
    return true;
}

/* ---- responses -------------------------------------------------------------------- */

/*
 * Answers from a cached entry f (taken over: released here or by the output)
 * or from fd (f NULL; sent with sendfile, not closed here).
 */
static int respond(struct http_conn *c, struct http_txn *t, const struct file_meta *m,
                   struct http_file *f, int fd)
{
    const struct sp_http_request *req = t->req;
    struct http_out *o = &c->out;
    uint64_t size = (uint64_t)m->size, start = 0, count = size;
    char extra[META_HDRS_MAX + 80];
    const char *hdrs = m->hdrs; /* m->hdrs, or extra when a line is added */
    size_t xl = m->hdrs_len;
    unsigned status = 200;
    int rc;

    if (not_modified(req, m)) {
        http_file_release(f);
        return http_head(o, t, 304, NULL, 0, m->hdrs, m->hdrs_len);
    }
    if (req->range && req->method == SP_HTTP_GET && if_range_ok(req, m)) {
        switch (sp_http_range_parse(req->range, req->range_len, size, &start, &count)) {
        case SP_HTTP_RANGE_UNSATISFIABLE:
            http_file_release(f);
            snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n",
                     (unsigned long long)size);
            return http_error(o, t, 416, extra);
        case SP_HTTP_RANGE_ONE:
            status = 206;
            memcpy(extra, m->hdrs, xl);
            hdrs = extra;
            xl += (size_t)snprintf(
                extra + xl, sizeof(extra) - xl, "Content-Range: bytes %llu-%llu/%llu\r\n",
                (unsigned long long)start, (unsigned long long)(start + count - 1),
                (unsigned long long)size);
            break;
        case SP_HTTP_RANGE_NONE:
            break;
        }
    }
    rc = http_head(o, t, status, m->ctype, count, hdrs, xl);
    if (rc != 0 || t->head || count == 0) {
        http_file_release(f);
        return rc;
    }
    if (f)
        return http_out_ref(o, f->data + start, (size_t)count, f);

    /* Large file: the head goes first, then the kernel copies the file. */
    if ((rc = http_out_flush(o)) != 0)
        return rc;
    off_t off = (off_t)start;
    o->queued += count;
    ssize_t n = sp_stream_sendfile(c->stream, fd, &off, (size_t)count, o->send_timeout_ms);
    /* The offset has advanced by what the socket took, even on failure. */
    o->sent += (uint64_t)(off - (off_t)start);
    o->written += (uint64_t)(off - (off_t)start);
    if (n < 0)
        return o->error = (int)n;
    return 0;
}

/* Appends p[0..n) to dst (room for cap bytes) with every byte but unreserved
 * ones, sub-delims, ':', '@' and '/' percent-encoded.  Returns the new length,
 * or cap + 1 when it does not fit. */
static size_t pct_encode(char *dst, size_t len, size_t cap, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || strchr("-._~!$&'()*+,;=:@/", ch) != NULL;
        if (len + 3 > cap)
            return cap + 1;
        if (plain && ch != '\0') {
            dst[len++] = (char)ch;
        } else {
            dst[len++] = '%';
            dst[len++] = hex[ch >> 4];
            dst[len++] = hex[ch & 15];
        }
    }
    return len;
}

/*
 * 301 to the clean path ("/" + rel) with a '/' added, the query kept as sent.  The
 * Location comes from the decoded and normalised path, re-encoded (as nginx
 * does), never from the raw one: "//evil.example/..%2fdir" names "/dir"
 * here, and echoing it back would send a browser to evil.example.  A clean
 * path never starts with "//".
 */
static int redirect_dir(struct http_conn *c, struct http_txn *t, const char *rel, size_t rl)
{
    const struct sp_http_request *req = t->req;
    static const char pre[] = "Location: /";
    char loc[1024];
    size_t n = sizeof(pre) - 1;

    memcpy(loc, pre, n);
    n = pct_encode(loc, n, sizeof(loc) - 4, rel, rl);
    if (n <= sizeof(loc) - 4)
        loc[n++] = '/';
    if (n <= sizeof(loc) - 4 && req->query) {
        int q = snprintf(loc + n, sizeof(loc) - n, "?%.*s", (int)req->query_len, req->query);
        n = q < 0 ? sizeof(loc) : n + (size_t)q;
    }
    if (n > sizeof(loc) - 3)
        return http_error(&c->out, t, 404, NULL);
    memcpy(loc + n, "\r\n", 3);
    return http_error(&c->out, t, 301, loc);
}

static int open_error(struct http_conn *c, struct http_txn *t, int err)
{
    switch (err) {
    case -EACCES:
        return http_error(&c->out, t, 403, NULL);
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return http_error(&c->out, t, 503, NULL);
    default: /* ENOENT, ENOTDIR, ELOOP, EXDEV (would leave root), ENAMETOOLONG, ... */
        return http_error(&c->out, t, 404, NULL);
    }
}

static int serve_rel(struct http_conn *c, struct http_txn *t, const struct http_root *root,
                     const char *rel, size_t rl, bool dir_request);

int http_static_serve(struct http_conn *c, struct http_txn *t, const char *path, size_t len)
{
    struct http_static *st = c->hs->st;
    const char *index = st->index;
    size_t il = st->index_len;
    char stack_rel[REL_STACK], *rel = stack_rel;
    size_t rl = len - 1;
    bool dir_request = path[len - 1] == '/';
    int rc;

    if (rl + il + 1 > PATH_MAX)
        return http_error(&c->out, t, 404, NULL);
    if (rl + il + 1 > sizeof(stack_rel) && !(rel = malloc(rl + il + 1)))
        return http_error(&c->out, t, 503, NULL);
    memcpy(rel, path + 1, rl);
    if (dir_request) {
        memcpy(rel + rl, index, il);
        rl += il;
    }
    rel[rl] = '\0';
    struct http_root *root = root_get(my_cache(st), st->conf->root);
    rc = root ? serve_rel(c, t, root, rel, rl, dir_request) : http_error(&c->out, t, 404, NULL);
    root_release(root);
    if (rel != stack_rel)
        free(rel);
    return rc;
}

/* Answers for rel, the path relative to root (NUL-terminated, not empty). */
static int serve_rel(struct http_conn *c, struct http_txn *t, const struct http_root *root,
                     const char *rel, size_t rl, bool dir_request)
{
    struct http_static *st = c->hs->st;
    struct http_cache *ca = my_cache(st);
    uint64_t h = http_hash(rel, rl);
    size_t hash = (size_t)(h ^ (h >> 32));
    time_t now = sp_wall_sec(), checked = 0;
    struct http_file *f = cache_get(ca, rel, rl, hash, root->gen, &checked);
    if (f && checked == now)
        return respond(c, t, &f->meta, f, -1);

    int fd = open_beneath(st, root, rel);
    if (fd < 0) {
        if (f) {
            cache_remove(ca, f);
            http_file_release(f);
        }
        return open_error(c, t, fd);
    }
    struct stat sb;
    int rc;
    if (fstat(fd, &sb) != 0 || !(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))) {
        rc = http_error(&c->out, t, 404, NULL);
        goto out;
    }
    if (S_ISDIR(sb.st_mode)) {
        /* "/dir" is redirected to "/dir/"; an index that is a directory is refused. */
        rc = dir_request ? http_error(&c->out, t, 403, NULL) : redirect_dir(c, t, rel, rl);
        goto out;
    }
    if (f && meta_same(&f->meta, &sb)) {
        f->checked = now;
        close(fd);
        return respond(c, t, &f->meta, f, -1);
    }
    if (f) {
        cache_remove(ca, f);
        http_file_release(f);
        f = NULL;
    }
    if (sb.st_size <= CACHE_FILE_MAX && (f = file_load(fd, &sb, rel, rl, hash)) != NULL) {
        f->checked = now;
        f->gen = root->gen;
        cache_insert(ca, f);
        close(fd);
        return respond(c, t, &f->meta, f, -1);
    }
    struct file_meta m;
    meta_fill(&m, &sb, rel, rl);
    rc = respond(c, t, &m, NULL, fd);
out:
    if (f)
        http_file_release(f);
    close(fd);
    return rc;
}

/* ---- life ----------------------------------------------------------------------- */

struct http_static *http_static_new(const struct sp_http_conf *conf, unsigned threads, char *err,
                                    size_t errlen)
{
    struct http_static *st = calloc(1, sizeof(*st));
    if (threads == 0)
        threads = 1;
    if (!st || !(st->caches = calloc(threads, sizeof(*st->caches)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    st->ncaches = threads;
    for (unsigned i = 0; i < threads; i++) {
        if (!(st->caches[i] = calloc(1, sizeof(*st->caches[i])))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        st->caches[i]->max = CACHE_TOTAL_MAX / threads;
    }
    st->conf = conf;
    st->index = conf->index ? conf->index : "index.html";
    st->index_len = strlen(st->index);
    atomic_init(&st->openat2_ok, true);
    /* Checked at start so that a wrong root is reported; looked up again
     * on every request (the other threads open it on their first). */
    st->caches[0]->root = root_open(conf->root);
    if (!st->caches[0]->root) {
        snprintf(err, errlen, "root %s: %s", conf->root, strerror(errno));
        goto fail;
    }
    return st;
fail:
    http_static_free(st);
    return NULL;
}

void http_static_free(struct http_static *st)
{
    if (!st)
        return;
    for (unsigned i = 0; st->caches && i < st->ncaches; i++) {
        struct http_cache *ca = st->caches[i];
        if (!ca)
            continue;
        while (ca->lru_tail)
            cache_remove(ca, ca->lru_tail);
        root_release(ca->root);
        free(ca);
    }
    free(st->caches);
    free(st);
}
