/*
 * The command service's built-in commands, written against
 * spindle/command.h as a module's are (state is the service).
 *
 *   PING [message]        +PONG, or the message
 *   ECHO message
 *   TIME                  [unix seconds, microseconds]
 *   INFO [section]        this worker's counters, in Redis's "key:value" lines
 *   COMMAND [COUNT|INFO name...|DOCS]
 *   CONFIG GET pattern... the parameters a Redis client asks about (save and
 *                         appendonly: redis-benchmark warns without them),
 *                         with what is true of this server; nothing else is
 *                         configured through the protocol: an empty array
 *   QUIT                  +OK, then the connection closes
 */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmd.h"
#include "config.h"
#include "spindle/clock.h"
#include "spindle/config.h"

static bool arg_is(const struct sp_cmd_arg *a, const char *word)
{
    size_t n = strlen(word);
    return a->len == n && strncasecmp(a->p, word, n) == 0;
}

static int cmd_ping(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    (void)state;
    if (argc > 2) {
        sp_reply_error(ctx, "ERR wrong number of arguments for 'ping' command");
        return 0;
    }
    if (argc == 2)
        sp_reply_bulk(ctx, argv[1].p, argv[1].len);
    else
        sp_reply_simple(ctx, "PONG");
    return 0;
}

static int cmd_echo(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    (void)argc;
    (void)state;
    sp_reply_bulk(ctx, argv[1].p, argv[1].len);
    return 0;
}

static int cmd_time(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    struct timeval tv;
    char s[24], us[8];
    (void)argc;
    (void)argv;
    (void)state;
    gettimeofday(&tv, NULL);
    int ns = snprintf(s, sizeof(s), "%lld", (long long)tv.tv_sec);
    int nus = snprintf(us, sizeof(us), "%ld", (long)tv.tv_usec);
    sp_reply_array(ctx, 2);
    sp_reply_bulk(ctx, s, (size_t)ns);
    sp_reply_bulk(ctx, us, (size_t)nus);
    return 0;
}

/* One INFO section: "# Name" then its lines.  Appends to buf[*n..cap). */
__attribute__((format(printf, 4, 5))) static void info_add(char *buf, size_t cap, size_t *n,
                                                           const char *fmt, ...)
{
    va_list ap;
    if (*n >= cap)
        return;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k > 0)
        *n += (size_t)k < cap - *n ? (size_t)k : cap - *n - 1;
}

static int cmd_info(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    struct cmd_svc *cs = state;
    struct worker *w = cs->svc->worker;
    struct worker_counters *wc = cs->wc;
    const struct sp_cmd_arg *sect = argc > 1 ? &argv[1] : NULL;
    bool all =
        !sect || arg_is(sect, "all") || arg_is(sect, "everything") || arg_is(sect, "default");
    char buf[1024];
    size_t n = 0;

    if (all || arg_is(sect, "server"))
        info_add(buf, sizeof(buf), &n,
                 "# Server\r\nspindle_version:%s\r\nprocess_id:%d\r\nworker_index:%u\r\n"
                 "worker_generation:%u\r\nservice:%s\r\nuptime_in_seconds:%llu\r\n",
                 PACKAGE_VERSION, (int)getpid(), worker_index(w), worker_generation(w),
                 cs->svc->section->name,
                 (unsigned long long)((sp_now_ns() - worker_started_ns(w)) / 1000000000u));
    if (all || arg_is(sect, "clients"))
        info_add(buf, sizeof(buf), &n, "%s# Clients\r\nconnected_clients:%lu\r\n", n ? "\r\n" : "",
                 (unsigned long)atomic_load(&wc->connections));
    if (all || arg_is(sect, "stats"))
        info_add(buf, sizeof(buf), &n,
                 "%s# Stats\r\ntotal_connections_received:%llu\r\n"
                 "total_commands_processed:%llu\r\ntotal_net_input_bytes:%llu\r\n"
                 "total_net_output_bytes:%llu\r\n",
                 n ? "\r\n" : "", (unsigned long long)atomic_load(&wc->accepted),
                 (unsigned long long)atomic_load(&wc->requests),
                 (unsigned long long)atomic_load(&wc->bytes_in),
                 (unsigned long long)atomic_load(&wc->bytes_out));
    sp_reply_bulk(ctx, buf, n);
    return 0;
}

/* One command's COMMAND INFO entry: name, arity, flags, first key, last
 * key, step (nothing here declares keys). */
static void command_entry(struct sp_cmd_ctx *ctx, const struct cmd_entry *e)
{
    sp_reply_array(ctx, 6);
    sp_reply_bulk(ctx, e->name, e->name_len);
    sp_reply_int(ctx, e->arity);
    sp_reply_array(ctx, 0);
    sp_reply_int(ctx, 0);
    sp_reply_int(ctx, 0);
    sp_reply_int(ctx, 0);
}

static int cmd_command(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    struct cmd_svc *cs = state;
    if (argc == 1) {
        sp_reply_array(ctx, cs->count);
        for (size_t i = 0; i <= cs->mask; i++) {
            if (cs->table[i].name_len)
                command_entry(ctx, &cs->table[i]);
        }
    } else if (arg_is(&argv[1], "count") && argc == 2) {
        sp_reply_int(ctx, (int64_t)cs->count);
    } else if (arg_is(&argv[1], "info")) {
        sp_reply_array(ctx, (size_t)argc - 2);
        for (int i = 2; i < argc; i++) {
            const struct cmd_entry *e = cmd_find(cs, argv[i].p, argv[i].len);
            if (e)
                command_entry(ctx, e);
            else
                sp_reply_null_array(ctx);
        }
    } else if (arg_is(&argv[1], "docs")) {
        sp_reply_array(ctx, 0); /* no documentation to give clients' hints */
    } else {
        sp_reply_errorf(ctx,
                        "ERR unknown subcommand or wrong number of arguments for '%.*s'. "
                        "Try COMMAND HELP.",
                        (int)(argv[1].len < 64 ? argv[1].len : 64), argv[1].p);
    }
    return 0;
}

/* What CONFIG GET shows: the parameters clients ask about, with what holds
 * here (nothing persists). */
static const struct {
    const char *name, *value;
} config_params[] = {
    {"save", ""},
    {"appendonly", "no"},
};

static bool config_matches(const char *name, int argc, const struct sp_cmd_arg *argv)
{
    for (int i = 2; i < argc; i++) {
        char pat[128];
        if (argv[i].len >= sizeof(pat))
            continue;
        memcpy(pat, argv[i].p, argv[i].len);
        pat[argv[i].len] = '\0';
        if (fnmatch(pat, name, FNM_CASEFOLD) == 0)
            return true;
    }
    return false;
}

static int cmd_config(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    const size_t nparams = sizeof(config_params) / sizeof(config_params[0]);
    size_t n = 0;
    (void)state;
    if (!arg_is(&argv[1], "get") || argc < 3) {
        sp_reply_errorf(ctx, "ERR unknown subcommand or wrong number of arguments for '%.*s'",
                        (int)(argv[1].len < 64 ? argv[1].len : 64), argv[1].p);
        return 0;
    }
    for (size_t i = 0; i < nparams; i++)
        n += config_matches(config_params[i].name, argc, argv);
    sp_reply_array(ctx, 2 * n);
    for (size_t i = 0; i < nparams; i++) {
        if (config_matches(config_params[i].name, argc, argv)) {
            sp_reply_str(ctx, config_params[i].name);
            sp_reply_str(ctx, config_params[i].value);
        }
    }
    return 0;
}

static int cmd_quit(struct sp_cmd_ctx *ctx, int argc, const struct sp_cmd_arg *argv, void *state)
{
    (void)argc;
    (void)argv;
    (void)state;
    sp_reply_simple(ctx, "OK");
    return -1;
}

const struct sp_cmd_def cmd_builtins[] = {
    {"ping", -1, cmd_ping},       {"echo", 2, cmd_echo},
    {"time", 1, cmd_time},        {"info", -1, cmd_info},
    {"command", -1, cmd_command}, {"config", -2, cmd_config},
    {"quit", 1, cmd_quit},        {NULL, 0, NULL},
};
