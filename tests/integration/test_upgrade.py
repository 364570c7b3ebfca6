"""Binary upgrade on SIGUSR2, as nginx does it: the old master renames its
pid file and control socket to .oldbin and executes the binary on disk with
the listening sockets; the new master starts its workers on the same
sockets and answers `-s`; QUIT to the old master finishes the upgrade.
Under load, no request fails across it.  A new master that cannot start (a
configuration it rejects, a binary that exits 1) or that exits later hands
the pid file and control socket back to the old master, which serves on and
says why."""
import os
import re
import shutil
import signal
import time

from harness import BIN, Spindle, Tap, check, eq, free_port, http_get, wait_for
from loadgen import HttpLoad

tap = Tap()
BODY = b"Hello, World!"


def services(port, extra=""):
    return ("[http main]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain %s\n%s"
            % (port, BODY.decode(), extra))


def start(port):
    """A master run from a copy of the binary, which a test may replace."""
    sp = Spindle(services(port), workers=2, shutdown_timeout="5s")
    os.mkdir(os.path.join(sp.dir, "bin"))
    sp.bin = os.path.join(sp.dir, "bin", "spindle")
    shutil.copy2(BIN, sp.bin)
    sp.start(ports=[port])
    sp.exe = sp.bin
    sp.bin = BIN  # -s and -t through the build's binary, whatever becomes of the copy
    sp.wait_ready(2)
    return sp


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def status_master(sp):
    rc, out = sp.ctl("status")
    m = re.search(r"^master pid=(\d+)", out, re.M)
    return int(m.group(1)) if rc == 0 and m else None


def upgrade(sp, n_done=1):
    """Sends USR2 to the master and waits until the new one is ready;
    returns its pid."""
    sp.signal(signal.SIGUSR2)
    check(sp.wait_log(r"binary upgrade: the new master \(pid \d+\) is ready", n_done, 10),
          "the new master never became ready:\n" + sp.logs())
    new = int(re.findall(r"the new master \(pid (\d+)\) is ready", open(sp.log).read())[-1])
    eq(read_pid(sp.pid_file), new, "the pid file names the new master")
    eq(read_pid(sp.pid_file + ".oldbin"), sp.pid, "PIDFILE.oldbin names the old master")
    check(os.path.exists(sp.sock + ".oldbin"), "the old control socket is SOCKET.oldbin")
    eq(wait_for(lambda: status_master(sp) == new, 5) and status_master(sp), new,
       "-s status answered by the new master")
    return new


def upgrade_under_load(keepalive):
    port = free_port()
    sp = start(port)
    load = None
    try:
        load = HttpLoad(port, conns=64, keepalive=keepalive).start()
        check(load.wait_requests(500), "load never got going: " + load.summary())
        new = upgrade(sp)
        check(load.wait_requests(500), "load stalled after the upgrade: " + load.summary())
        old = sp.pid
        os.kill(old, signal.SIGQUIT)
        check(sp.wait_exit(10) is not None, "the old master exited on QUIT")
        check(not os.path.exists(sp.pid_file + ".oldbin"), "PIDFILE.oldbin removed")
        check(not os.path.exists(sp.sock + ".oldbin"), "SOCKET.oldbin removed")
        eq(read_pid(sp.pid_file), new, "the pid file still names the new master")
        check(load.wait_requests(500), "load stalled after QUIT: " + load.summary())
        load.stop()
        eq(load.failed, 0, "failed requests: " + load.summary())
        check(load.ok > 1500, "too few requests to mean anything: " + load.summary())
        print("# " + load.summary(), flush=True)
        rc, out = sp.ctl("status")
        eq(len(re.findall(r"^worker pid=\d+ .*state=ready", out, re.M)), 2, out)
        rc, out = sp.ctl("stop")
        eq(rc, 0, "-s stop reaches the new master: " + out)
    finally:
        if load:
            load.stop()
        sp.stop()


@tap.case
def upgrade_keepalive_load_no_failures():
    upgrade_under_load(True)


@tap.case
def upgrade_close_load_no_failures():
    upgrade_under_load(False)


def failed_upgrade(sp, load, pattern):
    """USR2 with a new master that cannot start: the old one says why, takes
    its files back and serves on."""
    before = sp.log_count(r"binary upgrade failed")
    sp.signal(signal.SIGUSR2)
    check(sp.wait_log(r"binary upgrade failed", before + 1, 10), "no failure logged:\n" + sp.logs())
    check(sp.log_count(pattern) == 1, "want %r in:\n%s" % (pattern, sp.logs()))
    eq(read_pid(sp.pid_file), sp.pid, "the pid file names the old master again")
    check(not os.path.exists(sp.pid_file + ".oldbin"), "no PIDFILE.oldbin left")
    check(not os.path.exists(sp.sock + ".oldbin"), "no SOCKET.oldbin left")
    eq(status_master(sp), sp.pid, "-s status answered by the old master")
    check(load.wait_requests(200), "load stalled: " + load.summary())


@tap.case
def failed_upgrades_leave_the_old_master_serving():
    port = free_port()
    sp = start(port)
    load = HttpLoad(port, conns=16, keepalive=True).start()
    try:
        check(load.wait_requests(200), "load never got going: " + load.summary())
        workers = sp.wait_ready(2)
        # A configuration the new binary rejects.
        sp.write_conf(services(port, "bogus = 1\n"), workers=2, shutdown_timeout="5s")
        failed_upgrade(sp, load, r"binary upgrade failed: the new master \(pid \d+\) exited "
                       r"before it was ready: exit status 1: .*spindle\.conf:\d+: unknown key "
                       r"'bogus' in \[http main\]; this master \(pid %d\) serves on" % sp.pid)
        sp.write_conf(services(port), workers=2, shutdown_timeout="5s")
        # A binary that exits 1.
        real = sp.exe + ".real"
        os.rename(sp.exe, real)
        with open(sp.exe, "w") as f:
            f.write("#!/bin/sh\necho 'not this one' >&2\nexit 1\n")
        os.chmod(sp.exe, 0o755)
        failed_upgrade(sp, load, r"binary upgrade failed: the new master \(pid \d+\) exited "
                       r"before it was ready: exit status 1 \(no reason given")
        # No binary at all.
        os.unlink(sp.exe)
        failed_upgrade(sp, load, r"exit status 127: cannot execute %s: No such file"
                       % re.escape(sp.exe))
        eq(sp.wait_ready(2), workers, "the old workers never stopped")
        # The right binary again: the upgrade works, and QUIT to the new
        # master goes back to the old one, which takes its files back.
        os.rename(real, sp.exe)
        new = upgrade(sp)
        os.kill(new, signal.SIGQUIT)
        check(sp.wait_log(r"the new master \(pid %d\) exited: exit status 0; this master \(pid %d\)"
                          r" takes .* back" % (new, sp.pid)), sp.logs())
        eq(read_pid(sp.pid_file), sp.pid, "the pid file names the old master again")
        eq(status_master(sp), sp.pid, "-s status answered by the old master")
        eq(sp.wait_ready(2), workers, "the old workers served throughout")
        check(load.wait_requests(200), "load stalled: " + load.summary())
        load.stop()
        eq(load.failed, 0, "failed requests: " + load.summary())
    finally:
        load.stop()
        sp.stop()


@tap.case
def second_usr2_during_an_upgrade_is_ignored():
    port = free_port()
    sp = start(port)
    try:
        new = upgrade(sp)
        sp.signal(signal.SIGUSR2)
        check(sp.wait_log(r"SIGUSR2 ignored: a binary upgrade is under way \(new master pid %d\)"
                          % new), sp.logs())
        eq(http_get(port, "/plaintext")[2], BODY, "served")
    finally:
        sp.stop()


tap.run()
