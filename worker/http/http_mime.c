/*
 * Content types of static files, by file name extension (case-insensitive).
 *
 * The system's table, /etc/mime.types (Debian's media-types), is read once
 * per worker, on the first lookup; the built-in table below answers for
 * extensions it does not list, or for all of them when it cannot be read.
 * Text types carry "charset=utf-8", as most sites' files are UTF-8, whichever
 * table they come from.  The tables are never freed: the strings returned
 * stay valid for the worker's life.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "spindle/log.h"

#define MIME_TYPES_PATH "/etc/mime.types"
#define EXT_MAX         32  /* longer extensions are unknown */
#define TYPE_MAX        127 /* longer types in the system table are skipped */
#define CHARSET         "; charset=utf-8"

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"bin", "application/octet-stream"},
};

/* The system table: extensions (lower case) sorted for bsearch, each with
 * its type.  Both point into strings allocated once. */
struct sys_entry {
    char *ext;
    const char *type;
    size_t order; /* position in the file */
};

static struct sys_entry *sys_table;
static size_t sys_count;
static char **sys_types; /* every type string, each once, for http_mime_free() */
static size_t sys_ntypes, sys_types_cap;
static pthread_once_t sys_once = PTHREAD_ONCE_INIT;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct sys_entry *)a)->ext, ((const struct sys_entry *)b)->ext);
}

static int cmp_entry_order(const void *a, const void *b)
{
    const struct sys_entry *x = a, *y = b;
    int c = strcmp(x->ext, y->ext);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* A type may go into a header as it is: visible ASCII, one slash. */
static bool type_ok(const char *t, size_t len)
{
    if (len == 0 || len > TYPE_MAX || !memchr(t, '/', len))
        return false;
    for (size_t i = 0; i < len; i++)
        if (t[i] <= ' ' || t[i] >= 0x7f || t[i] == ';' || t[i] == ',')
            return false;
    return true;
}

/* Adds the entries of one line ("type ext ext ..."); returns -ENOMEM or 0. */
static int parse_line(char *line, size_t *cap)
{
    const char *sep = " \t\r\n";
    char *save = NULL;
    char *t = strtok_r(line, sep, &save);
    if (!t || t[0] == '#' || !type_ok(t, strlen(t)))
        return 0;
    char *type = NULL;
    for (char *e = strtok_r(NULL, sep, &save); e; e = strtok_r(NULL, sep, &save)) {
        size_t el = strlen(e);
        if (e[0] == '#')
            break;
        if (el > EXT_MAX)
            continue;
        if (!type) {
            bool text = strncasecmp(t, "text/", 5) == 0;
            size_t tl = strlen(t);
            if (sys_ntypes == sys_types_cap) {
                size_t ncap = sys_types_cap ? sys_types_cap * 2 : 256;
                char **n = realloc(sys_types, ncap * sizeof(*n));
                if (!n)
                    return -ENOMEM;
                sys_types = n;
                sys_types_cap = ncap;
            }
            type = malloc(tl + (text ? sizeof(CHARSET) : 1));
            if (!type)
                return -ENOMEM;
            sys_types[sys_ntypes++] = type;
            memcpy(type, t, tl);
            memcpy(type + tl, text ? CHARSET : "", text ? sizeof(CHARSET) : 1);
        }
        if (sys_count == *cap) {
            size_t ncap = *cap ? *cap * 2 : 1024;
            struct sys_entry *n = realloc(sys_table, ncap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            sys_table = n;
            *cap = ncap;
        }
        char *ext = strdup(e);
        if (!ext)
            return -ENOMEM;
        for (char *p = ext; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        sys_table[sys_count].ext = ext;
        sys_table[sys_count].type = type;
        sys_table[sys_count].order = sys_count;
        sys_count++;
    }
    return 0;
}

/* Reads MIME_TYPES_PATH into sys_table.  A file that is not there leaves the
 * built-in table alone in charge, quietly; another failure is logged. */
static void sys_load(void)
{
    FILE *f = fopen(MIME_TYPES_PATH, "re");
    if (!f) {
        if (errno != ENOENT)
            sp_log_warn("fopen(%s) failed: %s; using the built-in content types", MIME_TYPES_PATH,
                        strerror(errno));
        return;
    }
    char *line = NULL;
    size_t linecap = 0, cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &linecap, f) >= 0)
        rc = parse_line(line, &cap);
    if (rc == 0 && ferror(f))
        rc = -EIO;
    free(line);
    fclose(f);
    if (rc < 0) {
        /* What was read stays in use: its strings are never freed. */
        sp_log_warn("reading %s failed: %s; %zu extensions read", MIME_TYPES_PATH, strerror(-rc),
                    sys_count);
    }
    /* The first line that lists an extension wins. */
    qsort(sys_table, sys_count, sizeof(*sys_table), cmp_entry_order);
    size_t n = 0;
    for (size_t i = 0; i < sys_count; i++) {
        if (n == 0 || strcmp(sys_table[n - 1].ext, sys_table[i].ext) != 0)
            sys_table[n++] = sys_table[i];
        else
            free(sys_table[i].ext);
    }
    sys_count = n;
}

void http_mime_free(void)
{
    for (size_t i = 0; i < sys_count; i++)
        free(sys_table[i].ext);
    for (size_t i = 0; i < sys_ntypes; i++)
        free(sys_types[i]);
    free(sys_table);
    free(sys_types);
    sys_table = NULL;
    sys_types = NULL;
    sys_count = sys_ntypes = sys_types_cap = 0;
}

const char *http_mime_type(const char *name, size_t len)
{
    size_t i = len;
    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/')
        i--;
    if (i == 0 || name[i - 1] != '.')
        return "application/octet-stream";
    const char *ext = name + i;
    size_t el = len - i;
    if (el == 0 || el > EXT_MAX)
        return "application/octet-stream";

    pthread_once(&sys_once, sys_load);
    char key[EXT_MAX + 1];
    for (size_t k = 0; k < el; k++)
        key[k] = (char)tolower((unsigned char)ext[k]);
    key[el] = '\0';
    struct sys_entry probe = {.ext = key};
    const struct sys_entry *hit =
        sys_count ? bsearch(&probe, sys_table, sys_count, sizeof(*sys_table), cmp_entry) : NULL;
    if (hit)
        return hit->type;
    for (size_t k = 0; k < sizeof(mime_types) / sizeof(mime_types[0]); k++)
        if (strlen(mime_types[k].ext) == el && strcasecmp(mime_types[k].ext, key) == 0)
            return mime_types[k].type;
    return "application/octet-stream";
}
