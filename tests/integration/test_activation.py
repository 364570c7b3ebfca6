"""systemd socket activation: the master adopts the listening sockets passed
as systemd passes them (fd 3 on, LISTEN_FDS, LISTEN_PID naming the process
that runs spindle) instead of opening its own, matched to the configured
addresses by getsockname(); a socket without SO_REUSEPORT stays the one slot
of its address and every worker accepts on it, one with it gets copies up to
`slots`; a passed socket no address wants is closed with a warning; a reload
keeps working.  Then the same through systemd-socket-activate when it is
installed."""
import os
import re
import shutil
import signal
import socket
import subprocess

from harness import (BIN, Spindle, Tap, _running, check, eq, free_port, http_get, need,
                     wait_for, wait_port)

tap = Tap()


def site(port, body="hello"):
    return ("[http main]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain %s\n"
            % (port, body))


def listening_inode(port):
    """The inode of the one socket listening on 127.0.0.1:port."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return fields[9]
    return None


def listener(port, reuseport=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def start_activated(sp, socks, env_extra=None, names=None):
    """Execs spindle the way systemd does: the sockets dup'ed to fd 3, 4, ...
    in the child, LISTEN_FDS their count and LISTEN_PID the child's own pid
    (which exec keeps), then closes the test's copies."""
    fds = [s.fileno() for s in socks]

    def child():
        # Above every fd of the parent first, so that 3.. never overwrite one
        # still to be moved.
        high = [os.dup(fd) for fd in fds]
        moved = [os.dup2(fd, 100 + i) for i, fd in enumerate(high)]
        for i, fd in enumerate(moved):
            os.dup2(fd, 3 + i)  # dup2 clears FD_CLOEXEC on the new number
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(len(fds))
        if names:
            os.environ["LISTEN_FDNAMES"] = ":".join(names)
        for k, v in (env_extra or {}).items():
            os.environ[k] = v
        for fd in range(100, 100 + len(fds)):
            os.close(fd)

    outf = open(sp.out, "ab")
    sp.proc = subprocess.Popen([sp.bin, "-c", sp.conf], stdout=outf, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=sp.dir, preexec_fn=child,
                               close_fds=False)
    outf.close()
    _running.append(sp)
    for s in socks:
        s.close()


@tap.case
def passed_socket_without_reuseport_is_the_one_slot():
    port, spare = free_port(), free_port()
    sp = Spindle(site(port), workers=2, master="slots = 4\n")
    start_activated(sp, [listener(port), listener(spare)], names=["web", "spare"])
    pids = sp.wait_ready(2)
    check(sp.wait_log(r"listening on 127\.0\.0\.1:%d \(1 slot: the socket from systemd" % port),
          "the passed socket is the address's slot:\n" + sp.logs())
    check(sp.wait_log(r"closing the socket for 127\.0\.0\.1:%d from systemd named spare" % spare),
          "the unneeded socket is closed with a warning:\n" + sp.logs())
    # Nobody holds the spare socket any more: connections are refused.
    c = socket.socket()
    check(c.connect_ex(("127.0.0.1", spare)) != 0, "the spare socket is closed")
    c.close()
    rc, out = sp.ctl("status")
    check(re.search(r"^listen 127\.0\.0\.1:%d slots=1$" % port, out, re.M), out)
    # Both workers hold the one socket and accept on it.
    inode = listening_inode(port)
    check(inode, "a socket listens on %d" % port)
    for pid in pids:
        held = [os.readlink("/proc/%d/fd/%s" % (pid, f)) for f in os.listdir("/proc/%d/fd" % pid)]
        check("socket:[%s]" % inode in held, "worker %d holds the passed socket" % pid)
    for _ in range(50):
        eq(http_get(port, "/plaintext", headers={"Connection": "close"})[0], 200, "status")
    check(sp.log_count(r"cannot listen") == 0, sp.logs())
    # A reload cannot add copies of it and does not try.
    rc, out = sp.ctl("reload")
    eq(rc, 0, "reload: " + out)
    eq(http_get(port, "/plaintext")[0], 200, "served after the reload")
    sp.stop()


@tap.case
def passed_reuseport_socket_gets_copies():
    port = free_port()
    sp = Spindle(site(port), workers=2, master="slots = 3\n")
    start_activated(sp, [listener(port, reuseport=True)])
    sp.wait_ready(2)
    check(sp.wait_log(r"listening on 127\.0\.0\.1:%d \(3 slots, 1 of them from systemd\)" % port),
          sp.logs())
    for _ in range(50):
        eq(http_get(port, "/plaintext")[0], 200, "status")
    sp.stop()


@tap.case
def binary_upgrade_keeps_the_passed_socket():
    # The socket from systemd (no SO_REUSEPORT) passes on to the new master
    # of a binary upgrade, which keeps it as the one slot.
    port = free_port()
    sp = Spindle(site(port), workers=2)
    start_activated(sp, [listener(port)])
    sp.wait_ready(2)
    inode = listening_inode(port)
    sp.signal(signal.SIGUSR2)
    check(sp.wait_log(r"the new master \(pid \d+\) is ready", 1, 10), sp.logs())
    check(sp.log_count(r"listening on 127\.0\.0\.1:%d \(1 slot: the socket from the old master"
                       % port) == 1, sp.logs())
    os.kill(sp.pid, signal.SIGQUIT)
    check(sp.wait_exit(10) is not None, "the old master exited")
    eq(listening_inode(port), inode, "the same socket listens")
    eq(http_get(port, "/plaintext")[0], 200, "the new master serves")
    rc, out = sp.ctl("stop")
    eq(rc, 0, out)
    sp.stop()


@tap.case
def listen_pid_of_another_process_is_ignored():
    port = free_port()
    sp = Spindle(site(port))
    start_activated(sp, [listener(free_port())], env_extra={"LISTEN_PID": "1"})
    check(wait_port(port), "spindle opened its own socket")
    check(sp.wait_log(r"LISTEN_FDS=1 ignored: LISTEN_PID=1 is not this process"), sp.logs())
    sp.stop()


@tap.case
def through_systemd_socket_activate():
    tool = shutil.which("systemd-socket-activate")
    need(tool, "systemd-socket-activate is not installed (Debian: systemd)")
    port = free_port()
    sp = Spindle(site(port, "activated"), workers=2)
    # The tool listens, and on the first connection execs spindle with the
    # socket; that connection waits in the queue until a worker takes it.
    sp.start(wrap=[tool, "-l", "127.0.0.1:%d" % port])
    check(wait_port(port), "systemd-socket-activate listens")
    status, headers, body = http_get(port, "/plaintext")
    eq(status, 200, "the first connection is served")
    eq(body, b"activated", "body")
    sp.wait_ready(2)
    check(sp.log_count(r"listening on 127\.0\.0\.1:%d \(1 slot: the socket from systemd" % port)
          == 1, sp.logs())
    sp.stop()


tap.run()
