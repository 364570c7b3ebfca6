/*
 * [cmd NAME]: the key table, defaults and checks of the command service.
 * The defaults are Redis's: no idle timeout, 1,048,576 arguments of up to
 * 512 MB (proto-max-bulk-len), 1 GB of unparsed input per connection
 * (client-query-buffer-limit).
 */
#include <stddef.h>
#include <string.h>

#include "cmd_conf.h"

#define C(f) offsetof(struct cmd_conf, f)

/* "commands = a b c" (spaces or commas between): modules whose commands the
 * service offers.  That each names a [module NAME] section is checked once
 * the whole file is read (cmd_conf_resolve). */
static void set_modules(struct sp_conf_ctx *ctx, const struct sp_conf_key *key, void *conf,
                        const char *value)
{
    struct cmd_conf *c = conf;
    const char *p = value;

    (void)key;
    c->nmodules = 0;
    c->modules_line = sp_conf_line(ctx);
    for (;;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n == 0)
            break;
        if (c->nmodules == CMD_MAX_MODULES) {
            sp_conf_error(ctx, "commands: too many modules (max %d)", CMD_MAX_MODULES);
            return;
        }
        for (unsigned i = 0; i < c->nmodules; i++) {
            if (strlen(c->modules[i]) == n && memcmp(c->modules[i], p, n) == 0) {
                sp_conf_error(ctx, "commands: module '%.*s' named twice", (int)n, p);
                return;
            }
        }
        const char *name = sp_conf_strdup(ctx, p, n);
        if (!name)
            return;
        c->modules[c->nmodules++] = name;
        p += n;
    }
}

const struct sp_conf_key cmd_conf_keys[] = {
    {"idle_timeout", sp_conf_set_duration, C(idle_timeout_ms), 0, 24 * 3600 * INT64_C(1000),
     "0..24h", 0},
    {"max_args", sp_conf_set_size, C(max_args), 1, 1024 * 1024, "1..1048576", 0},
    {"max_arg_size", sp_conf_set_size, C(max_arg_size), 1, 512 * 1024 * 1024, "1..512m", 0},
    {"max_buffer", sp_conf_set_size, C(max_buffer), 64 * 1024, INT64_C(4) * 1024 * 1024 * 1024,
     "64k..4g", 0},
    {"commands", set_modules, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void cmd_conf_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct cmd_conf *c = conf;
    (void)ctx;
    c->idle_timeout_ms = 0;
    c->max_args = 1024 * 1024;
    c->max_arg_size = 512 * 1024 * 1024;
    c->max_buffer = 1024 * 1024 * 1024;
}

/* A command of max_arg_size must fit in the buffer: its frame is parsed in
 * place. */
void cmd_conf_check(struct sp_conf_ctx *ctx, void *conf)
{
    const struct cmd_conf *c = conf;
    if (c->max_buffer < c->max_arg_size + 64)
        sp_conf_error(ctx,
                      "max_buffer (%zu) must exceed max_arg_size (%zu): a command is parsed "
                      "in the buffer",
                      c->max_buffer, c->max_arg_size);
}

void cmd_conf_resolve(struct sp_conf_ctx *ctx, void *conf)
{
    const struct cmd_conf *c = conf;
    for (unsigned i = 0; i < c->nmodules; i++) {
        if (!sp_conf_has_module(ctx, c->modules[i])) {
            sp_conf_error_at(ctx, c->modules_line, "commands: no [module %s] section",
                             c->modules[i]);
            return;
        }
    }
}

const struct sp_service_def sp_service_cmd_conf = {CMD_CONF_DEF};
