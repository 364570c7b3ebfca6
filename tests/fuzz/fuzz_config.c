/*
 * libFuzzer target: any bytes as a configuration file.  The loader must
 * return a config or a one-line "NAME:..." message, never crash, leak or
 * read out of bounds; a loaded config must hold what its header promises.
 */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/http_conf.h"
#include "spindle/config.h"
#include "worker.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SP_CONFIG_ERR_SIZE];
    struct sp_config *cfg;
    static bool registered;

    if (!registered) {
        services_register_conf();
        registered = true;
    }

    cfg = sp_config_from_buffer((const char *)data, size, "/fuzz/spindle.conf", err, sizeof(err));
    if (cfg == NULL) {
        assert(strncmp(err, "/fuzz/spindle.conf:", 19) == 0);
        assert(memchr(err, '\0', sizeof(err)) != NULL);
        return 0;
    }
    assert(cfg->nservices >= 1 && cfg->nlistens >= 1);
    assert(cfg->workers >= 1 && cfg->slots >= cfg->workers);
    for (unsigned i = 0; i < cfg->nlistens; i++) {
        const struct sp_listen_conf *l = &cfg->listens[i];
        assert(l->service < cfg->nservices);
        assert(sp_config_find_listen(cfg, (const struct sockaddr *)&l->addr) == l);
    }
    for (unsigned i = 0; i < cfg->nservices; i++) {
        const struct sp_service_conf *s = &cfg->services[i];
        const struct sp_http_conf *h = s->conf;
        assert(sp_service_find(s->def->name, strlen(s->def->name)) == s->def);
        if (strcmp(s->def->name, "http") != 0)
            continue;
        for (unsigned j = 0; j < h->nreturns; j++) {
            const struct sp_http_return *r = &h->returns[j];
            assert(r->path[0] == '/' && strlen(r->body) == r->body_len);
            assert(r->status >= 200 && r->status <= 599);
        }
        assert(h->root == NULL || h->root[0] == '/');
    }
    sp_config_free(cfg);
    return 0;
}
