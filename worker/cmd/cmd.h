/*
 * The command service's internals: the command table, a connection, and
 * what the built-in commands (cmd_builtin.c) need from cmd.c.
 */
#ifndef SPINDLE_WORKER_CMD_H
#define SPINDLE_WORKER_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd_conf.h"
#include "spindle/command.h"
#include "spindle/resp.h"
#include "spindle/worker.h"

/* A command the service offers: a built-in one or a module's. */
struct cmd_entry {
    char name[SP_CMD_NAME_MAX + 1]; /* lower case; "" for a free slot */
    size_t name_len;
    int arity;
    sp_cmd_fn *fn;
    void *state;        /* the module instance's, or the service (built-ins) */
    const char *module; /* NULL for a built-in */
};

struct cmd_svc {
    struct service *svc;
    const struct cmd_conf *conf;
    struct sp_resp_limits limits;
    struct sp_iom *iom;
    struct worker_counters *wc;
    struct cmd_entry *table; /* open addressing, mask + 1 slots */
    size_t mask, count;
    bool bufs_on_stack; /* the fiber stack is deep enough for the buffers */
};

/* One command being answered (spindle/command.h's opaque ctx). */
struct sp_cmd_ctx {
    struct sp_resp_out *out;
    struct cmd_svc *cs;
    /* Replies still owed: 1 at the start, an array of n adds n - 1, every
     * other reply takes one.  Not 0 after the handler: it broke the framing
     * and the connection closes. */
    long owed;
};

/* The command called name (n bytes, any case), or NULL. */
const struct cmd_entry *cmd_find(const struct cmd_svc *cs, const char *name, size_t n);
/* Adds a command.  Returns 0, -EEXIST (a command of that name is there),
 * -ENAMETOOLONG or -ENOSPC. */
int cmd_add(struct cmd_svc *cs, const struct sp_cmd_def *def, void *state, const char *module);

/* The built-in commands (cmd_builtin.c), state = the struct cmd_svc. */
extern const struct sp_cmd_def cmd_builtins[];

#endif
