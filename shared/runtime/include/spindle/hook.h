/*
 * System call hooks: blocking client libraries on fibers.
 *
 * The runtime defines read(), write(), connect(), poll(), sleep() and the
 * other calls a blocking client library makes (hook.c lists them), finding
 * libc's own with dlsym(RTLD_NEXT).  A program linked with --export-dynamic
 * (spindle is) hands these definitions to every shared library it loads, so
 * libcurl's easy API or hiredis's blocking context, called on a fiber, park
 * the fiber where they would block the thread: the socket is made
 * non-blocking underneath, the call is tried, and on EAGAIN the fiber waits
 * for the fd (or for SO_RCVTIMEO / SO_SNDTIMEO, or poll's timeout) while the
 * thread runs the other fibers.  Results and errno are those a blocking
 * caller gets from libc; fcntl(F_GETFL) shows the flags the program set.
 *
 * The hooks act only while they are enabled and the thread runs a fiber of
 * an IOManager.  Everywhere else (the master, a scheduler loop, a thread of
 * the program's own), and on an fd the program made non-blocking itself,
 * each call is libc's.  The runtime's own fiber I/O (io.h) calls libc
 * directly and never passes through them.
 *
 * getpid() is defined here too, enabled or not: it asks the kernel once per
 * process (a forked or cloned child asks again; hook.c says how), where
 * glibc asks on every call and OpenSSL calls it three times per handshake.
 *
 * Not hooked (they still block the thread): name resolution (getaddrinfo,
 * gethostbyname), file I/O and pipes, stdio, calls made through syscall(),
 * and the calls libc makes internally.  docs/modules.md says more.
 */
#ifndef SPINDLE_HOOK_H
#define SPINDLE_HOOK_H

#include <stdbool.h>

/*
 * Turns the hooks on or off for the whole process (off until called; a
 * worker turns them on unless [master] hooks = off).  Meant to be called
 * before the IOManager runs; sockets a fiber already made non-blocking
 * underneath keep blocking correctly for their owner afterwards.
 */
void sp_hook_enable(bool on);

/* Whether sp_hook_enable(true) is in force. */
bool sp_hook_enabled(void);

#endif
