/*
 * Listening sockets a master finds already open at start, instead of opening
 * them itself:
 *
 * - systemd's socket activation (sd_listen_fds(3)): LISTEN_PID names this
 *   process and LISTEN_FDS counts the sockets passed from fd 3 up;
 *   LISTEN_FDNAMES, when set, names them (FileDescriptorName=), for the log.
 * - a binary upgrade (upgrade.c): the old master executes the new binary
 *   with SPINDLE_INHERIT=fd,fd,... naming every slot it holds, as nginx's
 *   NGINX variable does.
 *
 * Each socket is matched to a configured address by getsockname(), so the
 * order and the names do not matter.  listeners_prepare() takes the sockets
 * of an address as its first slots; what no address takes is closed with a
 * warning once the first listeners are open.  A socket without SO_REUSEPORT
 * (a socket unit without ReusePort=yes) cannot be copied: its address keeps
 * that one slot, which every worker accepts on.
 *
 * The variables are removed from the environment (and their text blanked),
 * so that neither a worker nor a binary executed by a later upgrade sees
 * them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "master.h"
#include "spindle/log.h"
#include "spindle/net.h"

extern char **environ;

#define SD_LISTEN_FDS_START 3
#define INHERIT_MAX         4096 /* sockets taken over at most */

/* Removes the variable name from the environment and blanks its text (the
 * workers are forked: /proc/PID/environ would show it for each). */
static void scrub(const char *name)
{
    size_t n = strlen(name);
    char *found[8];
    unsigned nfound = 0;

    for (char **e = environ; e && *e && nfound < 8; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            found[nfound++] = *e;
    unsetenv(name);
    for (unsigned i = 0; i < nfound; i++)
        memset(found[i], 0, strlen(found[i]));
}

/* The i-th name of LISTEN_FDNAMES (colon-separated), or "" without one. */
static void fd_name(const char *names, unsigned i, char *out, size_t len)
{
    out[0] = '\0';
    for (; names && i > 0; i--) {
        names = strchr(names, ':');
        if (names)
            names++;
    }
    if (names)
        snprintf(out, len, "%.*s", (int)strcspn(names, ":"), names);
}

/* Checks fd and records it in m->inherited, or closes it with a warning. */
static void adopt_fd(struct master *m, int fd, const char *from, const char *name)
{
    struct master_inherited *in = &m->inherited[m->ninherited];
    int type = 0, listening = 0, one = 0;
    socklen_t len = sizeof(type);

    memset(in, 0, sizeof(*in));
    in->addrlen = sizeof(in->addr);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &(socklen_t){sizeof(listening)}) !=
            0 ||
        getsockname(fd, (struct sockaddr *)&in->addr, &in->addrlen) != 0) {
        sp_log_warn("fd %d from %s%s%s is not a socket (%s); closing it", fd, from,
                    name[0] ? " named " : "", name, strerror(errno));
        close(fd);
        return;
    }
    if (type != SOCK_STREAM || !listening ||
        (in->addr.ss_family != AF_INET && in->addr.ss_family != AF_INET6)) {
        sp_log_warn("fd %d from %s%s%s is not a listening TCP socket; closing it", fd, from,
                    name[0] ? " named " : "", name);
        close(fd);
        return;
    }
    getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, &(socklen_t){sizeof(one)});
    /* The workers accept until EAGAIN; nothing executed later may keep it. */
    if (sp_net_set_nonblock(fd, 1) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        sp_log_warn("fd %d from %s: cannot make it non-blocking: %s; closing it", fd, from,
                    strerror(errno));
        close(fd);
        return;
    }
    in->fd = fd;
    in->reuseport = one != 0;
    in->from = from;
    snprintf(in->name, sizeof(in->name), "%s", name);
    m->ninherited++;
}

/* Parses a decimal count or fd.  Returns it, or -1. */
static long number(const char *s)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || *end != '\0' || v > INT32_MAX ? -1 : v;
}

void inherit_init(struct master *m)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES"), *up = getenv("SPINDLE_INHERIT");
    long n = 0;

    m->inherited = NULL;
    m->ninherited = 0;
    if (fds && number(pid) == (long)getpid()) {
        n = number(fds);
        if (n < 0 || n > INHERIT_MAX) {
            sp_log_warn("LISTEN_FDS=%s is not a count of sockets; ignoring it", fds);
            n = 0;
        }
    } else if (fds) {
        /* Meant for another process (a wrapper that did not exec us). */
        sp_log_warn("LISTEN_FDS=%s ignored: LISTEN_PID=%s is not this process (%d)", fds,
                    pid ? pid : "(unset)", (int)getpid());
    }
    long nup = 0;
    for (const char *p = up; p && *p; p += strcspn(p, ","), p += *p == ',')
        nup++;
    if (n + nup > 0)
        m->inherited = calloc((size_t)(n + nup), sizeof(*m->inherited));
    if (n + nup > 0 && !m->inherited) {
        sp_log_error("cannot take over %ld inherited sockets: out of memory", n + nup);
        n = nup = 0;
    }
    for (long i = 0; i < n; i++) {
        char name[64];
        fd_name(names, (unsigned)i, name, sizeof(name));
        adopt_fd(m, SD_LISTEN_FDS_START + (int)i, "systemd", name);
    }
    for (const char *p = up; nup > 0 && p && *p; p += strcspn(p, ","), p += *p == ',') {
        char word[16];
        snprintf(word, sizeof(word), "%.*s", (int)strcspn(p, ","), p);
        long fd = number(word);
        if (fd < 0 || fd > INT32_MAX || fcntl((int)fd, F_GETFD) < 0) {
            sp_log_warn("SPINDLE_INHERIT: '%s' is not an open descriptor; ignoring it", word);
            continue;
        }
        adopt_fd(m, (int)fd, "the old master", "");
    }
    scrub("LISTEN_PID");
    scrub("LISTEN_FDS");
    scrub("LISTEN_FDNAMES");
    scrub("SPINDLE_INHERIT");
}

void inherit_report_fd(struct master *m)
{
    long report = number(getenv("SPINDLE_UPGRADE_FD"));
    if (report >= 0 && fcntl((int)report, F_SETFD, FD_CLOEXEC) == 0) {
        m->ready_fd = (int)report;
        m->upgraded = true;
    }
    scrub("SPINDLE_UPGRADE_FD");
}

unsigned inherit_take(struct master *m, const struct sockaddr *addr, int *fds, unsigned max,
                      bool *fixed, const char **from)
{
    unsigned n = 0;

    *fixed = false;
    for (unsigned i = 0; i < m->ninherited && n < max; i++) {
        struct master_inherited *in = &m->inherited[i];
        if (in->fd < 0 || !sp_net_addr_equal((const struct sockaddr *)&in->addr, addr))
            continue;
        /* A socket that cannot be copied is the address's only slot. */
        if (!in->reuseport && n > 0)
            continue;
        fds[n++] = in->fd;
        *from = in->from;
        in->fd = -1;
        if (!in->reuseport) {
            *fixed = true;
            break;
        }
    }
    return n;
}

void inherit_close_unused(struct master *m)
{
    for (unsigned i = 0; i < m->ninherited; i++) {
        struct master_inherited *in = &m->inherited[i];
        char text[64];
        if (in->fd < 0)
            continue;
        sp_log_warn("closing the socket for %s from %s%s%s (fd %d): no listen address of %s "
                    "is that address",
                    sp_net_format((const struct sockaddr *)&in->addr, text, sizeof(text)), in->from,
                    in->name[0] ? " named " : "", in->name, in->fd, m->conf_path);
        close(in->fd);
        in->fd = -1;
    }
    free(m->inherited);
    m->inherited = NULL;
    m->ninherited = 0;
}
