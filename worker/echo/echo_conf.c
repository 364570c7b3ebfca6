/*
 * [echo NAME]: the key table and defaults of the echo service.
 */
#include <stddef.h>

#include "echo_conf.h"

const struct sp_conf_key echo_conf_keys[] = {
    {"idle_timeout", sp_conf_set_duration, offsetof(struct echo_conf, idle_timeout_ms), 0,
     24 * 3600 * INT64_C(1000), "0..24h", 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void echo_conf_defaults(struct sp_conf_ctx *ctx, void *conf)
{
    struct echo_conf *c = conf;
    (void)ctx;
    c->idle_timeout_ms = 5 * 60 * 1000;
}

const struct sp_service_def sp_service_echo_conf = {ECHO_CONF_DEF};
