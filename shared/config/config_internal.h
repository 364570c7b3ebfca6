/*
 * Private to the configuration module (config.c, config_values.c,
 * config_module.c): what the loader, its module sections and the value
 * parsers share.  Never included outside shared/.
 */
#ifndef SPINDLE_CONFIG_INTERNAL_H
#define SPINDLE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spindle/config.h"

#define MAX_SECTION_KEYS SP_SERVICE_MAX_KEYS /* L->seen has a bit for each */

/*
 * One file the loader read: the main file or one brought in by include.  The
 * loader numbers lines across all of them: a file's line N is line base + N
 * of the whole, so every line it records (a section's, a listen's) is one
 * unsigned, and a message translates it back to FILE:LINE with the chain of
 * includes (sp_config_where).  The main file has base 0, so without includes
 * the numbers are the file's own.
 */
struct sp__config_src {
    const char *name; /* as the include line named it, made absolute; arena */
    const char *dir;  /* its directory, which its own includes are relative to */
    unsigned base, nlines;
    unsigned from; /* the line (whole-load numbering) of the include that read it; 0: main */
    dev_t dev;     /* of the file, to refuse an include cycle; 0 with ino when unknown */
    ino_t ino;
};

#define SP__CONFIG_MAX_DEPTH 8    /* include in an included file ..., this deep at most */
#define SP__CONFIG_MAX_FILES 1024 /* files read in one load, the main one included */

/* The loader; setters see it as the opaque struct sp_conf_ctx. */
struct sp_conf_ctx {
    struct sp_config *cfg;
    const char *name;
    const char *text;
    size_t len, pos;
    unsigned lineno;

    char line[SP_CONFIG_MAX_LINE + 1]; /* the current line, normalised */
    char key[SP_CONFIG_MAX_LINE + 1];  /* of the current key line */
    const char *value;                 /* of the current key line, inside line[] */
    bool whole_line;                   /* a SP_CONF_LINE key: value is the rest of the line */

    bool in_section;
    const struct sp_service_def *def; /* of the current section; NULL: [master] */
    unsigned svc;                     /* index of the current service */
    uint64_t seen;                    /* keys set in the current section */
    bool in_module;                   /* the current section is [module NAME] */
    bool in_upstream;                 /* the current section is [upstream NAME] */
    unsigned ups;                     /* index of the current upstream */
    unsigned mod;                     /* index of the current module */
    unsigned master_line;             /* of [master], 0 if none */
    bool slots_auto;
    unsigned master_key_line[MAX_SECTION_KEYS]; /* where each [master] key was set */
    char label[96];                             /* "[TYPE NAME]" of the current section */

    char *err;
    size_t errlen;
    bool failed;
    unsigned errline;

    /* include (config.c) */
    const struct sp_config *map; /* whose srcs translate line numbers; NULL: none */
    unsigned src;                /* the file being read, an index into cfg->srcs */
    unsigned depth;              /* of includes around it */
    unsigned next_base;          /* the first line number the next file gets */
    unsigned headers;            /* section headers read so far */
    int ended_by;                /* a src whose sections ended with it, then nothing; -1 */
};

/*
 * Reads the whole file at path into a new buffer (*buf, the caller frees it),
 * at most SP_CONFIG_MAX_FILE bytes.  Returns 0, -EFBIG for a larger file, or
 * -errno with *what set to "cannot open" or "cannot read".
 */
int sp__config_read(const char *path, char **buf, size_t *len, const char **what);

/* How a message refers to line (whole-load numbering): "line N" when it is
 * in the file being read, "FILE:N" otherwise.  Writes into buf, returns it. */
const char *sp__config_line_ref(const struct sp_conf_ctx *L, unsigned line, char *buf, size_t len);

/* path made absolute against base, in cfg's arena; NULL with an error recorded. */
const char *sp__config_resolve(struct sp_conf_ctx *L, const char *base, const char *path);
/* A section name: letters, digits, '_', '-' and '.', 1..64 bytes. */
bool sp__config_valid_name(const char *s, size_t n);

/* config_module.c: [module NAME] and [service NAME]. */
void sp__config_module_begin(struct sp_conf_ctx *L, const char *name);
void sp__config_module_key(struct sp_conf_ctx *L);
void sp__config_module_end(struct sp_conf_ctx *L);
void sp__config_modules_resolve(struct sp_conf_ctx *L);
void sp__config_modules_free(struct sp_config *cfg);

/* config_upstream.c: [upstream NAME]. */
void sp__config_upstream_begin(struct sp_conf_ctx *L, const char *name);
void sp__config_upstream_key(struct sp_conf_ctx *L);
void sp__config_upstream_end(struct sp_conf_ctx *L);
void sp__config_upstreams_free(struct sp_config *cfg);

/* Runs the "key = value" line e through a key table over conf, as the
 * loader does for a section: unknown, duplicate (L->seen) and empty keys
 * are refused. */
void sp__config_apply_key(struct sp_conf_ctx *L, const struct sp_conf_key *keys,
                          const struct sp_conf_entry *e, void *conf);

/*
 * Account lookups for [master] user and group (getpwnam_r, getgrnam_r,
 * getgrouplist).  Each returns 0, -ENOENT when there is no such name, or
 * -errno when the lookup itself failed.  sp__config_user_groups() fills
 * groups[0..*n) with user's groups and gid, -E2BIG when more than max.
 */
int sp__config_lookup_user(const char *name, uid_t *uid, gid_t *gid);
int sp__config_lookup_group(const char *name, gid_t *gid);
int sp__config_user_groups(const char *user, gid_t gid, gid_t *groups, unsigned max, unsigned *n);

#endif
