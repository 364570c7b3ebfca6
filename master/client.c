/*
 * The -s client: `spindle -s CMD` finds the control socket of the master
 * that runs the given configuration, sends it the command (with the
 * configuration's absolute path, see master/control.c), prints the answer
 * and, after stop or quit, waits for that master to exit.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "master.h"

#define CLIENT_WAIT       60 /* seconds the client waits for an answer */
#define CLIENT_EXIT_SLACK 5  /* seconds past shutdown_timeout -s quit/stop waits */

/*
 * Finds control_socket in a file the loader refused, so that `-s reload`
 * still reaches the master, which then reports what is wrong with it.
 * Looks for the key in [master] only; falls back to the default path.
 */
static void scan_socket_path(const char *conf_path, char *out, size_t outlen)
{
    char dir[PATH_MAX], line[4096], value[PATH_MAX] = "", real[PATH_MAX];
    bool in_master = false;

    /* Relative to the file a link leads to, as the loader resolves it. */
    snprintf(dir, sizeof(dir), "%s", realpath(conf_path, real) ? real : conf_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    else if (slash)
        dir[1] = '\0';
    else if (!getcwd(dir, sizeof(dir)))
        snprintf(dir, sizeof(dir), "/");

    FILE *f = fopen(conf_path, "re");
    while (f && fgets(line, sizeof(line), f)) {
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "\r\n")] = '\0';
        if (s[0] == '[') {
            in_master = strncmp(s, "[master]", 8) == 0;
            continue;
        }
        if (!in_master || strncmp(s, "control_socket", 14) != 0)
            continue;
        char *v = s + 14 + strspn(s + 14, " \t");
        if (*v != '=')
            continue;
        v += 1 + strspn(v + 1, " \t");
        char *c = strstr(v, " ;");
        if (!c)
            c = strstr(v, " #");
        if (c)
            *c = '\0';
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
        if (n > 0)
            snprintf(value, sizeof(value), "%s", v);
    }
    if (f)
        fclose(f);
    if (!value[0]) {
        if (sp_config_run_path(out, outlen, conf_path, "sock") < 0)
            snprintf(out, outlen, "%s/spindle.sock", sp_config_run_dir());
    } else if (sp_config_join_path(out, outlen, dir, value) < 0) {
        snprintf(out, outlen, "%s", value);
    }
}

/* Whether process pid has exited: gone, or a zombie its parent has not
 * reaped yet (it has closed every file and released the pid file lock). */
static bool exited(pid_t pid)
{
    char name[64], stat[512];
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    snprintf(name, sizeof(name), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(name, "re");
    if (!f)
        return false;
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

/* After stop or quit: waits until the master named in the answer has
 * exited, for at most its drain deadline and some slack.  Returns the exit
 * status of the client. */
static int wait_exit(const char *answer, int64_t shutdown_timeout_ms)
{
    const char *p = strstr(answer, "master pid ");
    int pid;
    if (!p || sscanf(p, "master pid %d", &pid) != 1 || pid <= 0)
        return 0;
    fflush(stdout);
    int64_t limit_ms = shutdown_timeout_ms + CLIENT_EXIT_SLACK * 1000;
    for (int64_t waited = 0; !exited(pid); waited += 20) {
        if (waited >= limit_ms) {
            fprintf(stderr,
                    "spindle: the master (pid %d) is still running after %.1fs "
                    "(shutdown_timeout %.1fs + %ds); not waiting longer\n",
                    pid, (double)waited / 1e3, (double)shutdown_timeout_ms / 1e3,
                    CLIENT_EXIT_SLACK);
            return 1;
        }
        usleep(20 * 1000);
    }
    printf("master pid %d exited\n", pid);
    return 0;
}

/* The control socket the configuration at conf_path names, and its
 * shutdown_timeout.  A file the loader refuses is scanned for the socket,
 * so that the master can say what is wrong with it.  Returns 0, or -1
 * after printing why. */
static int find_socket(const char *conf_path, char *path, size_t len, int64_t *shutdown_timeout_ms)
{
    char err[SP_CONFIG_ERR_SIZE];

    struct sp_config *cfg = sp_config_load(conf_path, err, sizeof(err));
    if (cfg) {
        *shutdown_timeout_ms = cfg->shutdown_timeout_ms + cfg->drain_delay_ms;
        snprintf(path, len, "%s", cfg->control_socket);
        sp_config_free(cfg);
    } else if (access(conf_path, R_OK) != 0) {
        fprintf(stderr, "spindle: %s\n", err); /* names the file and why it cannot be read */
        return -1;
    } else {
        scan_socket_path(conf_path, path, len);
    }
    return 0;
}

/* Connects to the master on path, with CLIENT_WAIT timeouts on the socket.
 * Returns the fd, or -1 after printing why. */
static int connect_master(const char *path)
{
    struct sockaddr_un sun;

    if (control_fill_addr(&sun, path) < 0) {
        fprintf(stderr, "spindle: control socket path too long: %s\n", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "spindle: socket(AF_UNIX) failed: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        fprintf(stderr, "spindle: cannot reach the master on %s: %s (is it running?)\n", path,
                strerror(errno));
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = CLIENT_WAIT};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends "CMD /absolute/conf/path\n".  Returns 0, or -1 after printing why. */
static int send_command(int fd, const char *path, const char *conf_path, const char *cmd)
{
    /* The master checks that it runs this file (by name or identity). */
    char abs[PATH_MAX], cwd[PATH_MAX], req[PATH_MAX + 64];
    if (!realpath(conf_path, abs) &&
        (!getcwd(cwd, sizeof(cwd)) || sp_config_join_path(abs, sizeof(abs), cwd, conf_path) < 0))
        snprintf(abs, sizeof(abs), "%s", conf_path);
    int n = snprintf(req, sizeof(req), "%s %s\n", cmd, abs);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        fprintf(stderr, "spindle: sending to %s failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads the answer until the master closes the connection, or up to the
 * longest answer.  Returns it, NUL-terminated, in a buffer the caller
 * frees, with its length in *lenp; or NULL (a failure is printed). */
static char *read_answer(int fd, const char *path, size_t *lenp)
{
    size_t cap = CONTROL_STATUS_BYTES + 64, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "spindle: no answer from the master on %s: %s\n", path,
                    errno == EAGAIN ? "timed out" : strerror(errno));
            free(buf);
            return NULL;
        }
        if (r == 0 || len + (size_t)r >= cap - 1) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    *lenp = len;
    return buf;
}

/* Prints the answer: its text on stdout after "ok", on stderr after
 * "error".  Returns the exit status of the client. */
static int print_answer(const char *buf, size_t len, const char *cmd, int64_t shutdown_timeout_ms)
{
    const char *body = strchr(buf, '\n');
    body = body ? body + 1 : buf + len;
    if (strncmp(buf, "ok\n", 3) == 0) {
        fputs(body, stdout);
        if (strcmp(cmd, "stop") == 0 || strcmp(cmd, "quit") == 0)
            return wait_exit(body, shutdown_timeout_ms);
        return 0;
    }
    if (strncmp(buf, "error\n", 6) == 0)
        fprintf(stderr, "spindle: %s", body);
    else
        fprintf(stderr, "spindle: unexpected answer from the master: %.200s\n",
                len ? buf : "(nothing; did it exit?)");
    return 1;
}

int client_run(const char *conf_path, const char *cmd)
{
    char path[PATH_MAX];
    int64_t shutdown_timeout_ms = SP_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS;
    size_t len = 0;

    if (find_socket(conf_path, path, sizeof(path), &shutdown_timeout_ms) < 0)
        return 1;
    int fd = connect_master(path);
    if (fd < 0)
        return 1;
    char *buf = NULL;
    if (send_command(fd, path, conf_path, cmd) == 0)
        buf = read_answer(fd, path, &len);
    close(fd);
    if (!buf)
        return 1;
    int rc = print_answer(buf, len, cmd, shutdown_timeout_ms);
    free(buf);
    return rc;
}
