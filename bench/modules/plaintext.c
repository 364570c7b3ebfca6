/*
 * The plaintext benchmark as a module: answers "Hello, World!" (text/plain)
 * under its prefix, as the built-in route
 * `return /plaintext = 200 text/plain Hello, World!` does, so that
 * bench/instr.sh and bench/run compare a module's handler with spindle's own
 * fastest route:
 *
 *   /mplain            a response made once at init (sp_http_ready), the
 *                      way the built-in route is
 *   /mplain/dynamic    the same response written for each request
 *                      (status, a header, the body)
 *
 *     [module plain]
 *     path = bench/modules/plaintext.so
 *
 *     [http main]
 *     handle /mplain = plain
 */
#include <errno.h>
#include <string.h>

#include <spindle/http_handler.h>
#include <spindle/module.h>

static const char body[] = "Hello, World!";

static int plain_init(const void *conf, void **state, char *err, size_t errlen)
{
    (void)conf;
    (void)err;
    (void)errlen;
    *state = sp_http_ready_new(200, "text/plain", body, sizeof(body) - 1);
    return *state ? 0 : -1;
}

static void plain_fini(void *state)
{
    sp_http_ready_free(state);
}

static int plain_handle(struct sp_http_req *req, struct sp_http_resp *resp, void *state)
{
    size_t n;
    const char *path = sp_http_req_path(req, &n);
    if (n == sizeof("/mplain") - 1)
        return sp_http_resp_ready(resp, state);
    (void)path;
    if (sp_http_resp_header(resp, "Content-Type", "text/plain") < 0)
        return -1;
    return sp_http_resp_body(resp, body, sizeof(body) - 1);
}

static const struct sp_http_handler_def plain_http = {
    .handle = plain_handle,
};

const struct sp_module spindle_module = {
    .api_version = SP_API_VERSION,
    .name = "plaintext",
    .init = plain_init,
    .fini = plain_fini,
    .http = &plain_http,
};
