/*
 * Private to the configuration module (config.c, config_values.c): what the loader
 * and the value parsers share.  Never included outside shared/.
 */
#ifndef SPINDLE_CONFIG_INTERNAL_H
#define SPINDLE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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
