/*
 * Socket helpers shared by the master (which opens every listener) and the
 * workers (which accept on them).
 */
#ifndef SPINDLE_NET_H
#define SPINDLE_NET_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Opens a non-blocking, close-on-exec TCP listener bound to addr with
 * SO_REUSEADDR and, when reuseport is set, SO_REUSEPORT.  IPv6 listeners are
 * IPV6_V6ONLY.  Returns the fd or -errno.
 */
int sp_net_listen(const struct sockaddr *addr, socklen_t len, int backlog, int reuseport);

/*
 * Checks that nobody listens on addr yet: binds a socket without SO_REUSEPORT
 * and closes it again.  Such a bind fails while any socket listens on addr,
 * or on the wildcard address of its family and port (or, for the wildcard,
 * on any address of that port), SO_REUSEPORT or not.  It says nothing of
 * later: a process of the same uid may still join a reuseport group opened
 * after the check.  Returns 0, -EADDRINUSE, or another -errno.
 */
int sp_net_probe_free(const struct sockaddr *addr, socklen_t len);

/* Sets or clears O_NONBLOCK.  Returns 0 or -errno. */
int sp_net_set_nonblock(int fd, int on);

/* Sets TCP_NODELAY.  Returns 0 or -errno. */
int sp_net_set_nodelay(int fd);

/* Formats addr as "1.2.3.4:80", "*:80" (any IPv4 address) or "[::1]:80" into
 * buf; 64 bytes always suffice.  Returns buf. */
char *sp_net_format(const struct sockaddr *addr, char *buf, size_t len);

/* Whether a and b name the same socket address as bind() sees it: family,
 * address, port (and IPv6 scope). */
int sp_net_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* Size of the sockaddr for its family. */
socklen_t sp_net_addrlen(const struct sockaddr *addr);

#endif
