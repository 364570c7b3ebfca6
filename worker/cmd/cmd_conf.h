/*
 * [cmd NAME]: the command service's configuration (keys in cmd_conf.c).
 */
#ifndef SPINDLE_WORKER_CMD_CONF_H
#define SPINDLE_WORKER_CMD_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "spindle/service.h"

#define CMD_MAX_MODULES 16 /* names on the commands line */

struct cmd_conf {
    int64_t idle_timeout_ms;              /* 0: never */
    size_t max_args;                      /* per command */
    size_t max_arg_size;                  /* bytes per argument */
    size_t max_buffer;                    /* bytes of one connection's unparsed input */
    const char *modules[CMD_MAX_MODULES]; /* commands = ... */
    unsigned nmodules;
    unsigned modules_line; /* of the commands key, for messages */
};

/* The configuration half of the definition (see echo_conf.h). */
#define CMD_CONF_DEF                                                                               \
    .name = "cmd", .conf_size = sizeof(struct cmd_conf), .keys = cmd_conf_keys,                    \
    .defaults = cmd_conf_defaults, .check = cmd_conf_check, .resolve = cmd_conf_resolve

extern const struct sp_conf_key cmd_conf_keys[];
void cmd_conf_defaults(struct sp_conf_ctx *ctx, void *conf);
void cmd_conf_check(struct sp_conf_ctx *ctx, void *conf);
void cmd_conf_resolve(struct sp_conf_ctx *ctx, void *conf);
extern const struct sp_service_def sp_service_cmd_conf;

#endif
