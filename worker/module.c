/*
 * Modules in a worker: the registry (spindle/module.h), a handful of
 * entries written while the worker starts and read when services and HTTP
 * routes resolve the module they name, and the loader that fills it.
 *
 * A module is opened with RTLD_NOW (a missing symbol fails the open, not a
 * request later) and RTLD_LOCAL (two modules may use the same names).  The
 * same open and checks run in the checker child (modules_check), so a
 * reload refuses a module that cannot load before it forks any worker; init
 * runs only in workers, where a failure fails the worker's start and with it
 * the reload.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spindle/channel.h"
#include "spindle/module.h"
#include "worker.h"

#define MODULE_MAX SP_CONFIG_MAX_MODULES

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

/* ---- opening ---------------------------------------------------------------- */

/* One opened module: what the registry's instance points to. */
struct loaded {
    struct sp_module_instance mi;
    void *handle;           /* dlopen's */
    void *conf;             /* mi.def->conf_size bytes */
    struct sp_config *keys; /* the arena of the strings its setters copied */
    bool inited;
};

static struct loaded loaded[MODULE_MAX];
static unsigned nloaded;

static void module_close(struct loaded *l)
{
    if (l->inited && l->mi.def->fini)
        l->mi.def->fini(l->mi.state);
    free(l->conf);
    sp_config_free(l->keys);
    if (l->handle)
        dlclose(l->handle);
    memset(l, 0, sizeof(*l));
}

/* Opens module i of cfg into l and reads its keys.  Returns 0, or -1 with
 * the reason in err (l is then closed). */
static int module_open(const struct sp_config *cfg, unsigned i, struct loaded *l, char *err,
                       size_t errlen)
{
    const struct sp_module_conf *mc = &cfg->modules[i];
    const struct sp_module *def;

    memset(l, 0, sizeof(*l));
    l->mi.name = mc->name;
    l->handle = dlopen(mc->path, RTLD_NOW | RTLD_LOCAL);
    if (!l->handle) {
        snprintf(err, errlen, "module %s: cannot open %s: %s", mc->name, mc->path, dlerror());
        return -1;
    }
    def = dlsym(l->handle, SP_MODULE_SYMBOL);
    if (!def) {
        snprintf(err, errlen, "module %s: %s has no symbol %s (not a spindle module)", mc->name,
                 mc->path, SP_MODULE_SYMBOL);
        goto fail;
    }
    if (def->api_version != SP_API_VERSION) {
        snprintf(err, errlen,
                 "module %s: %s was built for API version %u, this spindle has version %u "
                 "(rebuild the module)",
                 mc->name, mc->path, (unsigned)def->api_version, (unsigned)SP_API_VERSION);
        goto fail;
    }
    l->mi.def = def;
    l->conf = calloc(1, def->conf_size ? def->conf_size : 1);
    if (!l->conf) {
        snprintf(err, errlen, "module %s: out of memory", mc->name);
        goto fail;
    }
    l->mi.conf = l->conf;
    if (sp_config_apply_module(cfg, mc, def->keys, def->defaults, def->check, l->conf, &l->keys,
                               err, errlen) != 0)
        goto fail;
    return 0;

fail:
    module_close(l);
    return -1;
}

/* Each [service NAME] names a module that provides a service. */
static int check_services(const struct sp_config *cfg, const struct loaded *ls, char *err,
                          size_t errlen)
{
    for (unsigned i = 0; i < cfg->nservices; i++) {
        const struct sp_module_service_conf *sc = sp_config_module_service(cfg, i);
        if (!sc)
            continue;
        const struct sp_service_def *def = ls[sc->index].mi.def->service;
        if (!def || !def->handle) {
            char where[PATH_MAX + SP_CONFIG_ERR_SIZE];
            snprintf(err, errlen, "%s: [service %s]: module %s provides no TCP service",
                     sp_config_where(cfg, sc->module_line, where, sizeof(where)),
                     cfg->services[i].name, sc->module);
            return -1;
        }
    }
    return 0;
}

int modules_check(const struct sp_config *cfg, char *err, size_t errlen)
{
    static struct loaded ls[MODULE_MAX];
    unsigned n = 0;
    int rc = 0;

    for (; n < cfg->nmodules && rc == 0; n++)
        rc = module_open(cfg, n, &ls[n], err, errlen);
    if (rc == 0)
        rc = check_services(cfg, ls, err, errlen);
    while (n > 0)
        module_close(&ls[--n]);
    return rc;
}

/* ---- init, bounded ---------------------------------------------------------- */

/* The module whose init() runs, and where to say that it failed, for the
 * signal handler below. */
static const char *volatile init_module;
#define STRINGIFY(x)      #x
#define SECONDS(x)        STRINGIFY(x) " s"
#define INIT_TIMEOUT_TEXT SECONDS(WORKER_MODULE_INIT_TIMEOUT_S)
static int init_report_fd = -1;

/* SIGALRM: init() did not return in time; a fault: it crashed.  Tells the
 * master (encoding and sendmsg only: async-signal-safe), then ends the
 * process, by the fault's own signal for a crash. */
static void init_failed(int sig)
{
    struct sp_msg m;

    memset(&m, 0, sizeof(m));
    m.type = SP_MSG_EXITING;
    m.exiting.code = 2;
    char *p = m.exiting.reason, *end = p + SP_MSG_REASON_MAX;
    const char *what = sig == SIGALRM   ? "did not return within " INIT_TIMEOUT_TEXT
                       : sig == SIGSEGV ? "crashed (SIGSEGV)"
                       : sig == SIGBUS  ? "crashed (SIGBUS)"
                       : sig == SIGILL  ? "crashed (SIGILL)"
                       : sig == SIGFPE  ? "crashed (SIGFPE)"
                                        : "crashed (SIGABRT)";
    const char *parts[] = {"module ", init_module, ": init ", what};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (const char *s = parts[i]; s && *s && p < end; s++)
            *p++ = *s;
    if (init_report_fd >= 0)
        (void)sp_msg_send(init_report_fd, &m);
    if (sig == SIGALRM)
        _exit(2);
    signal(sig, SIG_DFL); /* the fault happens again on return and ends us */
    if (sig == SIGABRT)
        raise(sig);
}

static const int init_signals[] = {SIGALRM, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define NSIGNALS (sizeof(init_signals) / sizeof(init_signals[0]))
static struct sigaction init_saved[NSIGNALS];

/* Installs the handler above around one init() and restores what was there
 * (default actions, or a sanitizer's) after it. */
static void init_guard(bool on)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = init_failed;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(init_signals[i], on ? &sa : &init_saved[i], on ? &init_saved[i] : NULL);
    alarm(on ? WORKER_MODULE_INIT_TIMEOUT_S : 0);
}

static int module_init(struct loaded *l, char *err, size_t errlen)
{
    char why[SP_MSG_REASON_MAX] = "";

    if (!l->mi.def->init) {
        l->inited = true;
        return 0;
    }
    init_module = l->mi.name;
    init_guard(true);
    int rc = l->mi.def->init(l->conf, &l->mi.state, why, sizeof(why));
    init_guard(false);
    if (rc != 0) {
        snprintf(err, errlen, "module %s: init failed: %s", l->mi.name,
                 why[0] ? why : "(no reason given)");
        return -1;
    }
    l->inited = true;
    return 0;
}

int modules_load(const struct sp_config *cfg, int channel_fd, char *err, size_t errlen)
{
    init_report_fd = channel_fd;
    for (unsigned i = 0; i < cfg->nmodules; i++) {
        struct loaded *l = &loaded[nloaded];
        if (module_open(cfg, i, l, err, errlen) != 0)
            return -1;
        nloaded++;
        if (module_init(l, err, errlen) != 0)
            return -1;
        int rc = sp_module_register(&l->mi);
        if (rc != 0) {
            snprintf(err, errlen, "module %s: cannot register: %s", l->mi.name, strerror(-rc));
            return -1;
        }
    }
    return check_services(cfg, loaded, err, errlen);
}

void modules_unload(void)
{
    sp_module_forget_all();
    while (nloaded > 0)
        module_close(&loaded[--nloaded]);
}
