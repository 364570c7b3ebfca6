/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput on saved inputs without
 * libFuzzer, so that `make check` replays the seed corpus and every saved
 * regression with a plain compiler.  Prints TAP, one test per file.
 *
 * Usage: replay [FILE|DIR]...  With no argument it reads
 * tests/fuzz/corpus/TARGET and tests/fuzz/regressions/TARGET under
 * $SPINDLE_SRCDIR (or the source tree it was built from).  Files whose name
 * starts with '.' are skipped.  A failed invariant aborts the program, which
 * the TAP driver reports as an error after the "# FILE" line naming the input.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

struct list {
    char **paths;
    size_t len, cap;
};

static void add(struct list *l, const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (l->len == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->paths = realloc(l->paths, l->cap * sizeof(*l->paths));
    }
    if (p == NULL || l->paths == NULL) {
        fprintf(stderr, "replay: out of memory\n");
        exit(2);
    }
    snprintf(p, n, "%s%s%s", dir, *dir ? "/" : "", name);
    l->paths[l->len++] = p;
}

/* Adds a file, or the files of a directory in name order.  Returns 0 or -errno. */
static int add_path(struct list *l, const char *path)
{
    struct dirent **ents;
    struct stat st;
    int n;

    if (stat(path, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode)) {
        add(l, "", path);
        return 0;
    }
    if ((n = scandir(path, &ents, NULL, alphasort)) < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.')
            add(l, path, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    return 0;
}

static int run(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;
    int ok = 0;

    if (f == NULL)
        return 0;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        /* An exact-size heap copy, as libFuzzer gives, so ASan sees overreads. */
        data = malloc(size ? (size_t)size : 1);
        if (data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size) {
            LLVMFuzzerTestOneInput(data, (size_t)size);
            ok = 1;
        }
    }
    free(data);
    fclose(f);
    return ok;
}

int main(int argc, char **argv)
{
    struct list l = {0};
    int failed = 0, rc;

    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if ((rc = add_path(&l, argv[i])) < 0) {
                printf("Bail out! %s: %s\n", argv[i], strerror(-rc));
                return 1;
            }
    } else {
        const char *src = getenv("SPINDLE_SRCDIR");
        char dir[4096];

        if (src == NULL)
            src = SP_FUZZ_SRCDIR;
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", src, SP_FUZZ_TARGET);
        if ((rc = add_path(&l, dir)) < 0) {
            printf("Bail out! %s: %s\n", dir, strerror(-rc));
            return 1;
        }
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/regressions/%s", src, SP_FUZZ_TARGET);
        if ((rc = add_path(&l, dir)) < 0 && rc != -ENOENT) {
            printf("Bail out! %s: %s\n", dir, strerror(-rc));
            return 1;
        }
    }

    printf("1..%zu\n", l.len);
    for (size_t i = 0; i < l.len; i++) {
        printf("# %s\n", l.paths[i]);
        fflush(stdout);
        if (run(l.paths[i])) {
            printf("ok %zu - %s\n", i + 1, l.paths[i]);
        } else {
            printf("not ok %zu - %s: cannot read\n", i + 1, l.paths[i]);
            failed = 1;
        }
        free(l.paths[i]);
    }
    free(l.paths);
    return failed;
}
