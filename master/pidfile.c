/*
 * The pid file: written whole or not at all (a temporary file renamed over
 * the name), and removed at exit only while it still holds our pid, so that
 * a master started after us keeps its own.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"

int pidfile_write(const char *path)
{
    char tmp[PATH_MAX + 32], line[32];
    int n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (write(fd, line, (size_t)len) != len || fsync(fd) != 0) {
        int err = errno ? errno : EIO;
        close(fd);
        unlink(tmp);
        return -err;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return -err;
    }
    return 0;
}

void pidfile_remove(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (strtol(buf, NULL, 10) == (long)getpid())
        unlink(path);
}
