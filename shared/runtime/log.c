/* The error log (see log.h). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spindle/clock.h"
#include "spindle/log.h"

static int log_fd = STDERR_FILENO;
static char log_path[4096];
static char log_who[32] = "spindle";

int sp_log_open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int sp_log_open(const char *path, const char *who)
{
    if (who)
        sp_log_set_who(who);
    if (!path || strcmp(path, "stderr") == 0) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        log_path[0] = '\0';
        return 0;
    }
    if (strlen(path) >= sizeof(log_path))
        return -ENAMETOOLONG;
    int fd = sp_log_open_file(path);
    if (fd < 0)
        return fd;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    memmove(log_path, path, strlen(path) + 1);
    return 0;
}

int sp_log_reopen(void)
{
    if (!log_path[0])
        return 0;
    int fd = sp_log_open_file(log_path);
    if (fd < 0)
        return fd;
    /* dup2 keeps the number, so a forked child's copy of it stays valid. */
    if (dup2(fd, log_fd) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    close(fd);
    return 0;
}

int sp_log_adopt(int fd)
{
    if (log_fd == STDERR_FILENO) {
        close(fd);
        return 0;
    }
    int rc = dup2(fd, log_fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void sp_log_set_who(const char *who)
{
    snprintf(log_who, sizeof(log_who), "%s", who);
}

int sp_log_fd(void)
{
    return log_fd;
}

void sp_log(enum sp_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    uint64_t wall = sp_wall_ns();
    time_t sec = (time_t)(wall / 1000000000ull);
    struct tm tm;

    gmtime_r(&sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] %s %d: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(wall / 1000000ull % 1000), names[level], log_who, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* libc's write, past the hooks: the error log may be a socket (stderr
     * under systemd) shared with the master, whose file status flags must
     * never change under it. */
    ssize_t w = sp__libc.write(log_fd, line, len);
    (void)w;
}
