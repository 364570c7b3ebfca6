/*
 * spindle's command line: start the master (foreground, or -d), check a
 * configuration (-t), or send a command to the running master (-s).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../worker/worker.h"
#include "master.h"
#include "spindle/config.h"

/* ---- process title ---------------------------------------------------------
 *
 * As nginx's ngx_setproctitle(): `ps -o args` shows /proc/PID/cmdline, the
 * memory argv points to, so the title is written over it, and over the
 * environment strings that follow it once they are copied elsewhere.  The
 * thread name (ps -o comm, top) is set with prctl(PR_SET_NAME).
 */
extern char **environ;
static char *title_area; /* argv[0] up to the end of the last environment string */
static size_t title_size;
static char title_args[1024]; /* the original command line, spaces between words */

static void title_init(int argc, char **argv)
{
    char *end = argv[0] + strlen(argv[0]) + 1;
    size_t used = 0;

    for (int i = 0; i < argc; i++) {
        int n =
            snprintf(title_args + used, sizeof(title_args) - used, "%s%s", i ? " " : "", argv[i]);
        if (n > 0 && used + (size_t)n < sizeof(title_args))
            used += (size_t)n;
        if (argv[i] == end)
            end = argv[i] + strlen(argv[i]) + 1;
    }
    /* The environment strings that follow argv move to one block of their
     * own, kept for the process's life (held here, so that it stays
     * reachable even after a variable is unset). */
    char *env_end = end;
    int nenv = 0;
    for (; environ[nenv] && environ[nenv] == env_end; nenv++)
        env_end = environ[nenv] + strlen(environ[nenv]) + 1;
    if (nenv > 0) {
        static char *env_copy;
        env_copy = malloc((size_t)(env_end - end));
        if (!env_copy)
            return; /* keep the environment; the title stays unset */
        memcpy(env_copy, end, (size_t)(env_end - end));
        for (int i = 0; i < nenv; i++)
            environ[i] = env_copy + (environ[i] - end);
        end = env_end;
    }
    title_area = argv[0];
    title_size = (size_t)(end - argv[0]);
}

void master_set_title(const char *fmt, ...)
{
    char title[512], comm[16];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(title, sizeof(title), fmt, ap);
    va_end(ap);
    memcpy(comm, title, sizeof(comm) - 1);
    comm[sizeof(comm) - 1] = '\0';
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    if (!title_area || title_size < 2)
        return;
    memset(title_area, 0, title_size);
    snprintf(title_area, title_size - 1, "%s", title);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: spindle [-c FILE] [-t] [-s reload|stop|quit|reopen|status] [-d] [-v] [-h]\n"
            "  -c FILE  configuration file (default: %s)\n"
            "  -t       check the configuration and exit\n"
            "  -s CMD   send CMD to the running master and print its answer:\n"
            "             reload  reload the configuration; waits for the outcome\n"
            "             stop    fast shutdown (SIGTERM)\n"
            "             quit    graceful shutdown: drain, then exit (SIGQUIT)\n"
            "             reopen  reopen the log files (SIGUSR1)\n"
            "             status  the master, its workers and the last reload\n"
            "  -d       run in the background\n"
            "  -v, --version  print the version and exit\n"
            "  -h, --help     print this help and exit\n"
            "default pid file: %s/NAME.pid, control socket: %s/NAME.sock\n"
            "  (NAME: the configuration file's name without .conf)\n",
            SP_CONF_PATH, sp_config_run_dir(), sp_config_run_dir());
}

/* Loads the configuration, checks the files and directories it names and
 * its modules (in a checker child).  Returns 0, or 1 with the reason on
 * stderr, and for a master started by a binary upgrade on the pipe its old
 * master reads (upgrade.c). */
static int check_config(const char *path, bool starting)
{
    char err[SP_CONFIG_ERR_SIZE + 2 * PATH_MAX];
    struct sp_config *cfg = sp_config_load(path, err, sizeof(err));
    if (!cfg || sp_config_check_files(cfg, err, sizeof(err)) < 0 ||
        check_modules_now(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        const char *report = starting ? getenv("SPINDLE_UPGRADE_FD") : NULL;
        if (report && *report >= '0' && *report <= '9') {
            ssize_t n = write(atoi(report), err, strlen(err));
            (void)n;
        }
        sp_config_free(cfg);
        return 1;
    }
    master_check_access(cfg);
    sp_config_free(cfg);
    return 0;
}

/* Stores path made absolute (not resolved) in out: the master reloads from
 * it whatever its working directory has become. */
static int absolute(const char *path, char *out, size_t len)
{
    char cwd[PATH_MAX];
    if (path[0] == '/') {
        if (strlen(path) >= len)
            return -ENAMETOOLONG;
        memcpy(out, path, strlen(path) + 1);
        return 0;
    }
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    return sp_config_join_path(out, len, cwd, path);
}

#ifdef HAVE_JEMALLOC
/* jemalloc reads this before the first allocation; MALLOC_CONF in the
 * environment still has the last word.  No purging of freed pages as they
 * age: each worker returns them every ten seconds instead (worker.c). */
const char *malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
#endif

int main(int argc, char **argv)
{
    static struct master m;
    /* As nginx's --conf-path: chosen when the build is configured. */
    const char *conf = SP_CONF_PATH;
    const char *cmd = NULL;
    int test = 0, opt;

    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    services_register_builtin();
    while ((opt = getopt_long(argc, argv, "c:ts:dvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            cmd = optarg;
            break;
        case 'd':
            m.daemon = true;
            break;
        case 'v':
            printf("spindle %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "spindle: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (test) {
        if (check_config(conf, false) != 0)
            return 1;
        printf("configuration ok\n");
        return 0;
    }
    if (cmd) {
        static const char *const cmds[] = {"reload", "stop", "quit", "reopen", "status"};
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
            if (strcmp(cmd, cmds[i]) == 0)
                return client_run(conf, cmd);
        fprintf(stderr, "spindle: unknown command '%s' for -s\n", cmd);
        usage(stderr);
        return 2;
    }
    /* What -t refuses cannot start: say so before anything is opened. */
    if (check_config(conf, true) != 0)
        return 1;
    upgrade_save_exe(argv[0]);
    if (absolute(conf, m.conf_path, sizeof(m.conf_path)) < 0) {
        fprintf(stderr, "spindle: configuration path too long: %s\n", conf);
        return 1;
    }
    /* Overwrites argv: conf and the other arguments are not used after it. */
    title_init(argc, argv);
    master_set_title("spindle: master process %s", title_args);
    return master_run(&m);
}
