/*
 * spindle's command line: start the master (foreground, or -d), check a
 * configuration (-t), or send a command to the running master (-s).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"
#include "spindle/config.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: spindle [-c FILE] [-t] [-s reload|stop|quit|reopen|status] [-d] [-v] [-h]\n"
            "  -c FILE  configuration file (default: spindle.conf)\n"
            "  -t       check the configuration and exit\n"
            "  -s CMD   send CMD to the running master and print its answer:\n"
            "             reload  reload the configuration; waits for the outcome\n"
            "             stop    fast shutdown (SIGTERM)\n"
            "             quit    graceful shutdown: drain, then exit (SIGQUIT)\n"
            "             reopen  reopen the log files (SIGUSR1)\n"
            "             status  the master, its workers and the last reload\n"
            "  -d       run in the background\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n"
            "default pid file: %s/NAME.pid, control socket: %s/NAME.sock\n"
            "  (NAME: the configuration file's name without .conf)\n",
            sp_config_run_dir(), sp_config_run_dir());
}

/* Loads the configuration and checks the files and directories it names.
 * Returns 0, or 1 with the reason on stderr. */
static int check_config(const char *path)
{
    char err[SP_CONFIG_ERR_SIZE + 2 * PATH_MAX];
    struct sp_config *cfg = sp_config_load(path, err, sizeof(err));
    if (!cfg || sp_config_check_files(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        sp_config_free(cfg);
        return 1;
    }
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

int main(int argc, char **argv)
{
    static struct master m;
    const char *conf = "spindle.conf";
    const char *cmd = NULL;
    int test = 0, opt;

    while ((opt = getopt(argc, argv, "c:ts:dvh")) != -1) {
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
        if (check_config(conf) != 0)
            return 1;
        printf("configuration ok\n");
        return 0;
    }
    if (cmd) {
        static const char *const cmds[] = {"reload", "stop", "quit", "reopen", "status"};
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
            if (strcmp(cmd, cmds[i]) == 0)
                return control_client(conf, cmd);
        fprintf(stderr, "spindle: unknown command '%s' for -s\n", cmd);
        usage(stderr);
        return 2;
    }
    /* What -t refuses cannot start: say so before anything is opened. */
    if (check_config(conf) != 0)
        return 1;
    if (absolute(conf, m.conf_path, sizeof(m.conf_path)) < 0) {
        fprintf(stderr, "spindle: configuration path too long: %s\n", conf);
        return 1;
    }
    return master_run(&m);
}
