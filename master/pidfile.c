/*
 * The pid file, which is also the lock that lets one master at a time run a
 * configuration: the master opens it and takes an exclusive flock() before
 * it touches anything else, holds it until it exits, and writes its pid into
 * it once the pid is final (after -d).  A second master of the same
 * configuration fails on the lock whatever happened to the control socket
 * file.  The lock belongs to the open file, so the daemon inherits it from
 * the process that took it; workers close their copy when forked, which
 * leaves the lock with the master.
 *
 * The file is removed at exit only while the name still refers to the file
 * we lock, so that a master started after us keeps its own.
 *
 * The default pid file and control socket live in RUNDIR/spindle, which the
 * master creates when it is missing (/run is a tmpfs, emptied at boot).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "master.h"
#include "spindle/config.h"

static int pid_fd = -1;

int pidfile_fd(void)
{
    return pid_fd;
}

/* Whether fd is the file path names now. */
static bool same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int pidfile_make_run_dir(const char *path)
{
    const char *dir = sp_config_run_dir();
    size_t n = strlen(dir);
    char buf[PATH_MAX];

    if (strncmp(path, dir, n) != 0 || path[n] != '/' || strchr(path + n + 1, '/'))
        return 0;
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    /* mkdir -p: RUNDIR itself may be missing on a system without it. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            return 0;
    }
}

int pidfile_lock(const char *path, char *err, size_t errlen)
{
    int rc = pidfile_make_run_dir(path);
    if (rc < 0) {
        snprintf(err, errlen,
                 "cannot create %s for pid_file %s: %s (set pid_file and control_socket, or "
                 "build with --runstatedir)",
                 sp_config_run_dir(), path, strerror(-rc));
        return rc;
    }
    /* A master exiting unlinks the file while holding the lock: whoever
     * locks the unlinked file after it must open the name again. */
    for (int tries = 0; tries < 10; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open pid_file %s: %s", path, strerror(errno));
            return -errno;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
            close(fd);
            if (e != EWOULDBLOCK) {
                snprintf(err, errlen, "cannot lock pid_file %s: %s", path, strerror(e));
                return -e;
            }
            buf[n > 0 ? n : 0] = '\0';
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(err, errlen, "already running: pid file %s is locked by pid %s", path,
                     buf[0] ? buf : "(not written yet)");
            return -EEXIST;
        }
        if (same_file(fd, path)) {
            pid_fd = fd;
            return 0;
        }
        close(fd);
    }
    snprintf(err, errlen, "cannot lock pid_file %s: it keeps being replaced", path);
    return -EAGAIN;
}

int pidfile_write(const char *path)
{
    char line[32];
    (void)path;
    if (pid_fd < 0)
        return -EBADF;
    int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (ftruncate(pid_fd, 0) != 0 || pwrite(pid_fd, line, (size_t)len, 0) != len ||
        fsync(pid_fd) != 0)
        return errno ? -errno : -EIO;
    return 0;
}

void pidfile_remove(const char *path)
{
    if (pid_fd < 0)
        return;
    if (same_file(pid_fd, path))
        unlink(path);
    close(pid_fd);
    pid_fd = -1;
}
