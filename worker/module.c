/*
 * The worker's registry of modules (spindle/module.h): a handful of entries,
 * written while the worker starts and read when services and HTTP routes
 * resolve the module they name.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "spindle/module.h"

#define MODULE_MAX 64

static struct sp_module_instance *registry[MODULE_MAX];
static unsigned nregistry;

int sp_module_register(struct sp_module_instance *mi)
{
    if (sp_module_find(mi->name))
        return -EEXIST;
    if (nregistry == MODULE_MAX)
        return -ENOSPC;
    registry[nregistry++] = mi;
    return 0;
}

struct sp_module_instance *sp_module_find(const char *name)
{
    for (unsigned i = 0; i < nregistry; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

void sp_module_forget_all(void)
{
    nregistry = 0;
}
