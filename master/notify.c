/*
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: when
 * NOTIFY_SOCKET names an AF_UNIX datagram socket (a path, or an abstract
 * name written "@name"), the master sends it READY=1 once the first
 * generation serves, RELOADING=1 / READY=1 around every reload
 * (Type=notify-reload) and STOPPING=1 when a shutdown starts.
 *
 * The variable is read and removed at start-up, so the workers (and anything
 * they might execute) never inherit it; the address stays in struct master.
 * Notifications are best effort: the socket is non-blocking, and a failed
 * send is logged once and otherwise ignored.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "master.h"
#include "spindle/log.h"
#include "spindle/timer.h"

extern char **environ;

#define NOTIFY_VAR "NOTIFY_SOCKET="

/*
 * Removes NOTIFY_SOCKET from the environment and blanks its text.  unsetenv()
 * alone only drops the pointer: the workers are forked, not executed, so the
 * text would stay in the start-up block that /proc/PID/environ shows for
 * every one of them, and a tool reading it would believe they talk to
 * systemd.  The entry belongs to nobody once unsetenv() has dropped it.
 */
static void scrub_env(void)
{
    char *entries[8];
    unsigned n = 0;
    for (char **e = environ; e && *e && n < 8; e++)
        if (strncmp(*e, NOTIFY_VAR, strlen(NOTIFY_VAR)) == 0)
            entries[n++] = *e;
    unsetenv("NOTIFY_SOCKET");
    for (unsigned i = 0; i < n; i++)
        memset(entries[i], 0, strlen(entries[i]));
}

void master_notify_init(struct master *m)
{
    const char *env = getenv("NOTIFY_SOCKET");
    struct sockaddr_un *sa = &m->notify_addr;
    size_t len;

    m->notify_fd = -1;
    if (!env)
        return;
    len = strlen(env);
    if ((env[0] != '/' && env[0] != '@') || len < 2 || len >= sizeof(sa->sun_path)) {
        sp_log_warn("NOTIFY_SOCKET=%s is not a socket path or an abstract name; not notifying",
                    env);
        goto out;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, env, len);
    if (env[0] == '@')
        sa->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    m->notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    m->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->notify_fd < 0)
        sp_log_warn("socket(AF_UNIX, SOCK_DGRAM) for NOTIFY_SOCKET failed: %s; not notifying",
                    strerror(errno));
out:
    scrub_env();
}

void master_notify(struct master *m, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (m->notify_fd < 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    ssize_t rc;
    do
        rc = sendto(m->notify_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT,
                    (const struct sockaddr *)&m->notify_addr, m->notify_len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && !m->notify_warned) {
        m->notify_warned = true;
        sp_log_warn("sendto(%d, NOTIFY_SOCKET) failed: %s; systemd may not see the service's "
                    "state (further failures are not logged)",
                    m->notify_fd, strerror(errno));
    }
}

void master_notify_reloading(struct master *m)
{
    /* CLOCK_MONOTONIC, as systemd reads MONOTONIC_USEC. */
    master_notify(m, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(sp_now_ns() / 1000));
}

void master_notify_close(struct master *m)
{
    if (m->notify_fd >= 0)
        close(m->notify_fd);
    m->notify_fd = -1;
}
