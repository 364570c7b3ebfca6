/*
 * [echo NAME]: the echo service's configuration (keys in echo_conf.c).
 */
#ifndef SPINDLE_WORKER_ECHO_CONF_H
#define SPINDLE_WORKER_ECHO_CONF_H

#include <stdint.h>

#include "spindle/service.h"

struct echo_conf {
    int64_t idle_timeout_ms; /* 0: never time out */
};

/* The configuration half of the service's definition (see http_conf.h):
 * echo.c completes it as sp_service_echo; sp_service_echo_conf is the half
 * alone. */
#define ECHO_CONF_DEF                                                                              \
    .name = "echo", .conf_size = sizeof(struct echo_conf), .keys = echo_conf_keys,                 \
    .defaults = echo_conf_defaults

extern const struct sp_conf_key echo_conf_keys[];
void echo_conf_defaults(struct sp_conf_ctx *ctx, void *conf);
extern const struct sp_service_def sp_service_echo_conf;

#endif
