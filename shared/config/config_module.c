/*
 * [module NAME] and [service NAME] sections.
 *
 * A module is code the master never loads (a crash in it must not take the
 * master down), so the loader cannot know its key table: it checks path and
 * keeps every other key of [module NAME] as text with its line.  The keys are
 * read later by the module's own table, through sp_config_apply_module(),
 * in a short-lived checker child (spindle -t, and a reload before it starts
 * workers) and in each worker, with the loader's setters and messages.
 *
 * [service NAME] is a TCP service that a module provides: a section like a
 * built-in service's, whose definition (sp_module_service_def) is the
 * loader's own and takes only listen and module.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spindle/config.h"

#include "config_internal.h"

/* ---- [module NAME] -------------------------------------------------------- */

void sp__config_module_begin(struct sp_conf_ctx *L, const char *name)
{
    struct sp_config *cfg = L->cfg;
    size_t n = strlen(name);

    if (!sp__config_valid_name(name, n)) {
        sp_conf_error(L, "invalid name in [module %s]: use letters, digits, '_', '-' and '.'",
                      name);
        return;
    }
    for (unsigned i = 0; i < cfg->nmodules; i++) {
        if (strcmp(cfg->modules[i].name, name) == 0) {
            char ref[PATH_MAX + 16];
            sp_conf_error(L, "duplicate section [module %s] (first at %s)", name,
                          sp__config_line_ref(L, cfg->modules[i].line, ref, sizeof(ref)));
            return;
        }
    }
    if (cfg->nmodules == SP_CONFIG_MAX_MODULES) {
        sp_conf_error(L, "too many modules (max %d)", SP_CONFIG_MAX_MODULES);
        return;
    }
    struct sp_module_conf *all = realloc(cfg->modules, (cfg->nmodules + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error(L, "out of memory");
        return;
    }
    cfg->modules = all;
    struct sp_module_conf *m = &all[cfg->nmodules];
    memset(m, 0, sizeof(*m));
    m->line = L->lineno;
    L->mod = cfg->nmodules++; /* from here on sp_config_free() frees m->keys */
    m->name = sp_conf_strdup(L, name, n);
    if (m->name == NULL)
        return;
    L->in_module = true;
    L->in_section = true;
    snprintf(L->label, sizeof(L->label), "[module %s]", m->name);
}

/* One "key = value" line of [module NAME]: path is the loader's, the rest
 * is recorded for the module's key table. */
void sp__config_module_key(struct sp_conf_ctx *L)
{
    struct sp_module_conf *m = &L->cfg->modules[L->mod];

    if (strcmp(L->key, "path") == 0) {
        if (m->path_line != 0)
            sp_conf_error(L, "duplicate key 'path' in %s", L->label);
        else if (L->value[0] == '\0')
            sp_conf_error(L, "missing value for path");
        else {
            m->path = sp__config_resolve(L, L->cfg->dir, L->value);
            m->path_line = L->lineno;
        }
        return;
    }
    struct sp_conf_entry *all = realloc(m->keys, (m->nkeys + 1) * sizeof(*all));
    if (all == NULL) {
        sp_conf_error(L, "out of memory");
        return;
    }
    m->keys = all;
    struct sp_conf_entry *e = &all[m->nkeys];
    e->line = L->lineno;
    e->key = sp_conf_strdup(L, L->key, strlen(L->key));
    e->value = sp_conf_strdup(L, L->value, strlen(L->value));
    if (e->key != NULL && e->value != NULL)
        m->nkeys++;
}

void sp__config_module_end(struct sp_conf_ctx *L)
{
    const struct sp_module_conf *m = &L->cfg->modules[L->mod];

    if (m->path == NULL)
        sp_conf_error_at(L, m->line, "%s has no path (the module's shared object)", L->label);
}

void sp__config_modules_free(struct sp_config *cfg)
{
    for (unsigned i = 0; i < cfg->nmodules; i++)
        free(cfg->modules[i].keys);
    free(cfg->modules);
}

/* ---- [service NAME] ------------------------------------------------------- */

#define SERVICE_CONF(conf) ((struct sp_module_service_conf *)(conf))

static void set_module(struct sp_conf_ctx *L, const struct sp_conf_key *k, void *conf,
                       const char *v)
{
    sp_conf_set_string(L, k, conf, v);
    SERVICE_CONF(conf)->module_line = sp_conf_line(L);
}

static void service_check(struct sp_conf_ctx *L, void *conf)
{
    if (SERVICE_CONF(conf)->module == NULL)
        sp_conf_error_at(L, L->cfg->services[L->svc].line,
                         "%s needs module = NAME (a [module NAME] section)", L->label);
}

static const struct sp_conf_key service_keys[] = {
    {"module", set_module, offsetof(struct sp_module_service_conf, module), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

const struct sp_service_def sp_module_service_def = {
    .name = "service",
    .conf_size = sizeof(struct sp_module_service_conf),
    .keys = service_keys,
    .check = service_check,
};

const struct sp_module_service_conf *sp_config_module_service(const struct sp_config *cfg,
                                                              unsigned i)
{
    const struct sp_service_conf *s = &cfg->services[i];
    return s->def == &sp_module_service_def ? s->conf : NULL;
}

bool sp_conf_has_module(const struct sp_conf_ctx *L, const char *name)
{
    for (unsigned j = 0; j < L->cfg->nmodules; j++)
        if (strcmp(L->cfg->modules[j].name, name) == 0)
            return true;
    return false;
}

/* At the end of the file: each [service NAME] names a [module NAME], which
 * may come after it, and every section's resolve() checks what it names. */
void sp__config_modules_resolve(struct sp_conf_ctx *L)
{
    struct sp_config *cfg = L->cfg;

    for (unsigned i = 0; i < cfg->nservices && !L->failed; i++) {
        const struct sp_service_conf *s = &cfg->services[i];
        if (s->def->resolve)
            s->def->resolve(L, s->conf);
    }

    for (unsigned i = 0; i < cfg->nservices && !L->failed; i++) {
        if (cfg->services[i].def != &sp_module_service_def)
            continue;
        struct sp_module_service_conf *sc = cfg->services[i].conf;
        unsigned j = 0;
        while (j < cfg->nmodules && strcmp(cfg->modules[j].name, sc->module) != 0)
            j++;
        if (j == cfg->nmodules)
            sp_conf_error_at(L, sc->module_line, "[service %s]: no [module %s] section",
                             cfg->services[i].name, sc->module);
        sc->index = j;
    }
}

/* ---- a module's keys ------------------------------------------------------ */

/* Runs one recorded key through keys, as the loader's key_line does. */
void sp__config_apply_key(struct sp_conf_ctx *L, const struct sp_conf_key *keys,
                          const struct sp_conf_entry *e, void *conf)
{
    unsigned i = 0;

    L->lineno = e->line;
    while (keys != NULL && keys[i].name != NULL && strcmp(keys[i].name, e->key) != 0)
        i++;
    if (keys == NULL || keys[i].name == NULL) {
        sp_conf_error(L, "unknown key '%s' in %s", e->key, L->label);
        return;
    }
    if (i < 64 && !(keys[i].flags & SP_CONF_REPEAT)) {
        if (L->seen & (UINT64_C(1) << i)) {
            sp_conf_error(L, "duplicate key '%s' in %s", e->key, L->label);
            return;
        }
        L->seen |= UINT64_C(1) << i;
    }
    if (e->value[0] == '\0') {
        sp_conf_error(L, "missing value for %s", e->key);
        return;
    }
    keys[i].set(L, &keys[i], conf, e->value);
}

int sp_config_apply_module(const struct sp_config *cfg, const struct sp_module_conf *mod,
                           const struct sp_conf_key *keys,
                           void (*defaults)(struct sp_conf_ctx *ctx, void *conf),
                           void (*check)(struct sp_conf_ctx *ctx, void *conf), void *conf,
                           struct sp_config **arena, char *err, size_t errlen)
{
    struct sp_config *a = calloc(1, sizeof(*a));
    struct sp_conf_ctx *L = calloc(1, sizeof(*L));

    *arena = a;
    if (errlen > 0)
        err[0] = '\0';
    if (a == NULL || L == NULL) {
        snprintf(err, errlen, "%s: out of memory", cfg->path);
        free(L);
        return -ENOMEM;
    }
    L->cfg = a;
    L->map = cfg; /* the recorded lines are cfg's */
    L->ended_by = -1;
    L->name = cfg->path;
    L->err = err;
    L->errlen = errlen;
    L->in_section = true;
    L->lineno = mod->line;
    snprintf(L->label, sizeof(L->label), "[module %s]", mod->name);
    /* The arena answers the setters as the file's configuration would. */
    a->path = sp_conf_strdup(L, cfg->path, strlen(cfg->path));
    a->dir = sp_conf_strdup(L, cfg->dir, strlen(cfg->dir));
    if (!L->failed && defaults != NULL)
        defaults(L, conf);
    for (unsigned i = 0; i < mod->nkeys && !L->failed; i++)
        sp__config_apply_key(L, keys, &mod->keys[i], conf);
    L->lineno = mod->line;
    if (!L->failed && check != NULL)
        check(L, conf);
    int rc = L->failed ? -EINVAL : 0;
    free(L);
    return rc;
}
