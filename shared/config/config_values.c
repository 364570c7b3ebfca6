/*
 * Value syntax of the configuration file (sizes, durations, listen addresses,
 * return lines, paths), lookups on a loaded configuration, reading the file,
 * and the account lookups of [master] user and group.  The parsers are pure:
 * no allocation, no file system access and no name resolution beyond the
 * literal "localhost".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spindle/net.h"
#include "spindle/config.h"

#include "config_internal.h"

/* Reads a run of decimal digits at *p into *out.  Returns 0, -EINVAL when there
 * is no digit, -ERANGE past max. */
static int parse_digits(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

int sp_parse_size(const char *s, size_t *out)
{
    uint64_t v, mult = 1;
    int rc = parse_digits(&s, UINT64_MAX, &v);

    if (rc < 0)
        return rc;
    switch (*s) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024;
        s++;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        s++;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        s++;
        break;
    default:
        return -EINVAL;
    }
    if (*s != '\0')
        return -EINVAL;
    if (v > SIZE_MAX / mult)
        return -ERANGE;
    *out = (size_t)(v * mult);
    return 0;
}

int sp_parse_duration(const char *s, int64_t *ms)
{
    uint64_t total = 0, v, unit;
    bool first = true;
    int rc;

    do {
        rc = parse_digits(&s, INT64_MAX, &v);
        if (rc < 0)
            return rc;
        if (s[0] == 'm' && s[1] == 's') {
            unit = 1;
            s += 2;
        } else if (s[0] == 's') {
            unit = 1000;
            s++;
        } else if (s[0] == 'm') {
            unit = 60 * 1000;
            s++;
        } else if (s[0] == 'h') {
            unit = 3600 * 1000;
            s++;
        } else if (s[0] == '\0' && first) {
            unit = 1000; /* a bare number is seconds */
        } else {
            return -EINVAL;
        }
        if (v > (uint64_t)INT64_MAX / unit || v * unit > (uint64_t)INT64_MAX - total)
            return -ERANGE;
        total += v * unit;
        first = false;
    } while (*s != '\0');
    *ms = (int64_t)total;
    return 0;
}

int sp_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon, *h = s;
    size_t hlen;
    uint64_t port;
    bool v6 = false;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
        v6 = true;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    s = colon + 1;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    for (const char *d = s; *d != '\0'; d++)
        if (*d < '0' || *d > '9')
            return -EINVAL;
    if (parse_digits(&s, 65535, &port) < 0 || port == 0)
        return -ERANGE;
    if (!v6 && strchr(host, ':') != NULL)
        return -EINVAL; /* an IPv6 address without its brackets */

    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -EADDRNOTAVAIL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (strcmp(host, "localhost") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -EADDRNOTAVAIL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
    }
    return 0;
}

bool sp_conf_valid_url_path(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

int sp_config_join_path(char *out, size_t size, const char *base, const char *path)
{
    size_t o = 0;

    if (size < 2)
        return -ENAMETOOLONG;
    for (int pass = path[0] == '/'; pass < 2; pass++) {
        const char *p = pass == 0 ? base : path;
        while (*p != '\0') {
            size_t n;

            p += strspn(p, "/");
            n = strcspn(p, "/");
            if (n == 0)
                break;
            if (n == 2 && p[0] == '.' && p[1] == '.') {
                while (o > 0 && out[o - 1] != '/')
                    o--;
                if (o > 0)
                    o--; /* and the slash before the dropped name */
            } else if (!(n == 1 && p[0] == '.')) {
                if (o + 1 + n >= size)
                    return -ENAMETOOLONG;
                out[o++] = '/';
                memcpy(out + o, p, n);
                o += n;
            }
            p += n;
        }
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

const struct sp_listen_conf *sp_config_find_listen(const struct sp_config *cfg,
                                                   const struct sockaddr *addr)
{
    for (unsigned i = 0; i < cfg->nlistens; i++) {
        if (sp_net_addr_equal((const struct sockaddr *)&cfg->listens[i].addr, addr))
            return &cfg->listens[i];
    }
    return NULL;
}

static uint16_t addr_port(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_port;
    return ((const struct sockaddr_in6 *)a)->sin6_port;
}

static bool addr_is_any(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

const struct sp_listen_conf *sp_config_find_conflict(const struct sp_config *cfg,
                                                     const struct sockaddr *addr)
{
    const struct sp_listen_conf *eq = sp_config_find_listen(cfg, addr);

    if (eq != NULL || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return eq;
    for (unsigned i = 0; i < cfg->nlistens; i++) {
        const struct sockaddr *o = (const struct sockaddr *)&cfg->listens[i].addr;
        if (o->sa_family == addr->sa_family && addr_port(o) == addr_port(addr) &&
            addr_is_any(o) != addr_is_any(addr))
            return &cfg->listens[i];
    }
    return NULL;
}

/* ---- the services the loader knows ------------------------------------------- */

static const struct sp_service_def *registry[SP_SERVICE_MAX_DEFS];
static unsigned nregistry;

int sp_service_register(const struct sp_service_def *def)
{
    unsigned nkeys = 0;

    while (def->keys != NULL && def->keys[nkeys].name != NULL)
        nkeys++;
    if (nkeys > SP_SERVICE_MAX_KEYS)
        return -E2BIG;
    if (sp_service_find(def->name, strlen(def->name)) != NULL)
        return -EEXIST;
    if (nregistry == SP_SERVICE_MAX_DEFS)
        return -ENOSPC;
    registry[nregistry++] = def;
    return 0;
}

const struct sp_service_def *sp_service_find(const char *name, size_t n)
{
    for (unsigned i = 0; i < nregistry; i++) {
        if (strlen(registry[i]->name) == n && memcmp(registry[i]->name, name, n) == 0)
            return registry[i];
    }
    return NULL;
}

const struct sp_service_def *const *sp_service_defs(unsigned *n)
{
    *n = nregistry;
    return registry;
}

/* Fills out with the paths of service i (see struct sp_service_def.paths). */
static unsigned service_paths(const struct sp_config *cfg, unsigned i, struct sp_service_path *out,
                              unsigned max)
{
    const struct sp_service_conf *s = &cfg->services[i];
    return s->def->paths ? s->def->paths(s->conf, out, max) : 0;
}

const char *sp_service_path(const struct sp_config *cfg, unsigned service, unsigned flags)
{
    struct sp_service_path paths[SP_SERVICE_MAX_PATHS];
    unsigned n = service_paths(cfg, service, paths, SP_SERVICE_MAX_PATHS);

    for (unsigned i = 0; i < n; i++) {
        if ((paths[i].flags & flags) == flags)
            return paths[i].path;
    }
    return NULL;
}

int sp__config_read(const char *path, char **out, size_t *outlen, const char **what)
{
    size_t len = 0, cap = 64 * 1024;
    char *buf = NULL;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *what = "cannot open";
    if (fd < 0)
        return -errno;
    *what = "cannot read";
    buf = malloc(cap);
    if (buf == NULL)
        goto sys_fail;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto sys_fail;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > SP_CONFIG_MAX_FILE) {
            rc = -EFBIG;
            goto out;
        }
        if (len == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                goto sys_fail;
            buf = bigger;
            cap *= 2;
        }
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;

sys_fail:
    rc = -errno;
out:
    close(fd);
    free(buf);
    return rc;
}

/* Reads the whole file first: the loader then parses from memory, and a file
 * changed while it is read cannot mix two versions into one result. */
struct sp_config *sp_config_load(const char *path, char *err, size_t errlen)
{
    struct sp_config *cfg;
    const char *what;
    char *buf;
    size_t len;
    int rc = sp__config_read(path, &buf, &len, &what);

    if (rc == -EFBIG) {
        if (errlen > 0)
            snprintf(err, errlen, "%s: too large (max %d bytes)", path, SP_CONFIG_MAX_FILE);
        return NULL;
    }
    if (rc < 0) {
        if (errlen > 0)
            snprintf(err, errlen, "%s: %s: %s", path, what, strerror(-rc));
        return NULL;
    }
    cfg = sp_config_from_buffer(buf, len, path, err, errlen);
    free(buf);
    return cfg;
}

/* ---- accounts ------------------------------------------------------------ */

/* The size getpwnam_r()/getgrnam_r() buffers start at; they grow on ERANGE. */
#define ACCOUNT_BUF_MIN 1024
#define ACCOUNT_BUF_MAX (1024 * 1024)

int sp__config_lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
    struct passwd pw, *res = NULL;
    size_t size = ACCOUNT_BUF_MIN;
    int rc;

    for (;;) {
        char *buf = malloc(size);
        if (!buf)
            return -ENOMEM;
        rc = getpwnam_r(name, &pw, buf, size, &res);
        if (rc == 0 && res) {
            *uid = pw.pw_uid;
            *gid = pw.pw_gid;
        }
        free(buf);
        if (rc != ERANGE || size >= ACCOUNT_BUF_MAX)
            break;
        size *= 2;
    }
    if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
        return res ? 0 : -ENOENT; /* the errors POSIX allows for "no such name" */
    return -rc;
}

int sp__config_lookup_group(const char *name, gid_t *gid)
{
    struct group gr, *res = NULL;
    size_t size = ACCOUNT_BUF_MIN;
    int rc;

    for (;;) {
        char *buf = malloc(size);
        if (!buf)
            return -ENOMEM;
        rc = getgrnam_r(name, &gr, buf, size, &res);
        if (rc == 0 && res)
            *gid = gr.gr_gid;
        free(buf);
        if (rc != ERANGE || size >= ACCOUNT_BUF_MAX)
            break;
        size *= 2;
    }
    if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
        return res ? 0 : -ENOENT;
    return -rc;
}

int sp__config_user_groups(const char *user, gid_t gid, gid_t *groups, unsigned max, unsigned *n)
{
    int count = (int)max;
    if (getgrouplist(user, gid, groups, &count) < 0)
        return -E2BIG;
    *n = (unsigned)count;
    return 0;
}

/* ---- run-time files and the file system ---------------------------------- */

#define RUN_DIR SP_RUNDIR "/spindle"

const char *sp_config_run_dir(void)
{
    return RUN_DIR;
}

int sp_config_run_path(char *out, size_t size, const char *conf_path, const char *suffix)
{
    char real[PATH_MAX], name[NAME_MAX + 1];
    const char *base = realpath(conf_path, real) ? real : conf_path;
    const char *slash = strrchr(base, '/');
    size_t n;

    base = slash ? slash + 1 : base;
    n = strnlen(base, sizeof(name) - 1);
    memcpy(name, base, n);
    name[n] = '\0';
    if (n > 5 && strcmp(name + n - 5, ".conf") == 0)
        name[n -= 5] = '\0';
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '.' && c != '-' && c != '_')
            name[i] = '_';
    }
    int len = snprintf(out, size, "%s/%s.%s", RUN_DIR, n > 0 ? name : "spindle", suffix);
    return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

/* The run directory need not exist, but the master must be able to create
 * it: its nearest existing ancestor must be writable. */
static int check_run_dir(const struct sp_config *cfg, const char *key, const char *path, char *err,
                         size_t errlen)
{
    char dir[sizeof(RUN_DIR)] = RUN_DIR;
    char *slash;

    while (access(dir, F_OK) != 0 && (slash = strrchr(dir, '/')) != NULL && slash != dir)
        *slash = '\0';
    if (strcmp(dir, RUN_DIR) == 0 || access(dir, W_OK) == 0)
        return 0;
    snprintf(err, errlen,
             "%s: [master] %s %s: cannot create %s: %s (set pid_file and control_socket, or "
             "build with --runstatedir)",
             cfg->path, key, path, RUN_DIR, strerror(errno));
    return -EACCES;
}

/* Checks that path is a directory (want_dir) or that its directory is one.
 * Returns 0 or -errno with the reason in err. */
int sp_config_check_path(const struct sp_config *cfg, const char *section, const char *key,
                         const char *path, bool want_dir, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct stat st;

    if (path == NULL)
        return 0;
    snprintf(dir, sizeof(dir), "%s", path);
    if (!want_dir) {
        char *slash = strrchr(dir, '/');
        if (slash != NULL)
            slash[slash == dir] = '\0';
        if (strcmp(dir, RUN_DIR) == 0)
            return check_run_dir(cfg, key, path, err, errlen);
    }
    int rc = stat(dir, &st) != 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    if (rc < 0 && want_dir)
        snprintf(err, errlen, "%s: %s %s %s: %s", cfg->path, section, key, path, strerror(-rc));
    else if (rc < 0)
        snprintf(err, errlen, "%s: %s %s %s: directory %s: %s", cfg->path, section, key, path, dir,
                 strerror(-rc));
    return rc;
}

int sp_config_check_files(const struct sp_config *cfg, char *err, size_t errlen)
{
    int rc = sp_config_check_path(cfg, "[master]", "pid_file", cfg->pid_file, false, err, errlen);
    if (rc == 0)
        rc = sp_config_check_path(cfg, "[master]", "control_socket", cfg->control_socket, false,
                                  err, errlen);
    if (rc == 0)
        rc = sp_config_check_path(cfg, "[master]", "error_log", cfg->error_log, false, err, errlen);
    for (unsigned i = 0; rc == 0 && i < cfg->nservices; i++) {
        const struct sp_service_conf *s = &cfg->services[i];
        struct sp_service_path paths[SP_SERVICE_MAX_PATHS];
        unsigned n = service_paths(cfg, i, paths, SP_SERVICE_MAX_PATHS);
        char label[96];

        snprintf(label, sizeof(label), "[%s %s]", s->def->name, s->name);
        for (unsigned k = 0; rc == 0 && k < n; k++)
            rc = sp_config_check_path(cfg, label, paths[k].key, paths[k].path,
                                      paths[k].flags & SP_PATH_DIR, err, errlen);
    }
    return rc;
}
