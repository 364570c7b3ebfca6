/*
 * Modules: code of your own that spindle's workers load (dlopen) and run.
 *
 * A module is a shared object exporting one symbol, SP_MODULE_SYMBOL, a
 * struct sp_module.  It is declared in the configuration
 *
 *     [module hello]
 *     path = modules/hello.so     ; relative to the configuration file
 *     greeting = Hello            ; any other key goes to the module's key table
 *
 * and provides a whole TCP service ([service NAME] with module = hello), HTTP
 * handlers (handle /prefix = hello in an [http NAME] section), commands
 * (commands = hello in a [cmd NAME] section), or any of them together.
 *
 * Modules are opened only in workers and in short-lived checker children,
 * never in the master.  A reload opens the file as it is on disk then: new
 * workers run the new code while the old ones drain.
 *
 * ABI: api_version must equal the SP_API_VERSION the loading spindle was
 * built with, or the module is refused (a failed reload that says why).  The
 * version is bumped whenever a struct or a function of the public headers a
 * module uses changes incompatibly (see docs/modules.md).
 */
#ifndef SPINDLE_MODULE_H
#define SPINDLE_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "spindle/service.h"

#define SP_API_VERSION   2
#define SP_MODULE_SYMBOL "spindle_module"

struct sp_http_handler_def; /* spindle/http_handler.h */
struct sp_cmd_def;          /* spindle/command.h */

struct sp_module {
    uint32_t api_version; /* SP_API_VERSION, as the module was compiled */
    const char *name;     /* for messages: "hello" */

    /* The [module NAME] section's keys other than path: a key table as a
     * service's (spindle/service.h), into a struct of conf_size bytes,
     * zeroed, then defaults(), then the setters, then check().  Any may be
     * 0/NULL. */
    size_t conf_size;
    const struct sp_conf_key *keys;
    void (*defaults)(struct sp_conf_ctx *ctx, void *conf);
    void (*check)(struct sp_conf_ctx *ctx, void *conf);

    /* In each worker, after fork and after privileges are dropped, before the
     * worker reports ready: build the module's state (*state).  Returns 0, or
     * -1 with a message in err (the worker fails to start, a reload fails).
     * May be NULL. */
    int (*init)(const void *conf, void **state, char *err, size_t errlen);
    /* The worker is about to exit: free what init and the requests
     * allocated.  May be NULL. */
    void (*fini)(void *state);

    /* What the module provides; any may be NULL. */
    const struct sp_service_def *service;   /* for [service NAME] module = this */
    const struct sp_http_handler_def *http; /* for handle /prefix = this */
    const struct sp_cmd_def *commands;      /* for commands = this; ends with a NULL name */
};

/* ---- the worker's registry of modules --------------------------------- */

/* A module the worker runs: its definition, its configuration (the
 * [module NAME] section's struct) and the state init() built. */
struct sp_module_instance {
    const char *name; /* NAME of [module NAME] */
    const struct sp_module *def;
    const void *conf;
    void *state;
};

/* Adds a module to the worker's registry (the loader does, after init).
 * Returns 0, -EEXIST for a name registered already, -ENOSPC when full.
 * Borrows mi for the worker's life. */
int sp_module_register(struct sp_module_instance *mi);

/* The module registered as name, or NULL. */
struct sp_module_instance *sp_module_find(const char *name);

/* Empties the registry (the loader, at worker exit, after each fini). */
void sp_module_forget_all(void);

#endif
