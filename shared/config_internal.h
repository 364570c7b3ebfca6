/*
 * Private to the configuration module (config.c, config_values.c): what the loader
 * and the value parsers share.  Never included outside shared/.
 */
#ifndef SPINDLE_CONFIG_INTERNAL_H
#define SPINDLE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Returns true if the n bytes at s are a request path: a '/' first, then visible
 * ASCII only (no space, no control byte, nothing above 0x7e).  Borrows s; s need
 * not be NUL-terminated.
 */
bool sp__config_valid_url_path(const char *s, size_t n);

#endif
