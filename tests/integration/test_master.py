"""The command line and the master's start-up: -t, -v, -h, -s, -d, the pid
file and control socket, refusing a second master, start-up failures."""
import os
import re
import signal
import socket
import subprocess

from harness import (BIN, Spindle, Tap, alive, check, eq, free_port, http_get, proc_stat,
                     wait_for, wait_port)
from loadgen import listening_on, wait_ready

tap = Tap()


def services(port, extra=""):
    return ("[http main]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain Hello, World!\n%s"
            % (port, extra))


def run(args, cwd=None, timeout=15):
    r = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


@tap.case
def version_and_help():
    rc, out, err = run(["-v"])
    eq(rc, 0, "-v exit status")
    check(re.match(r"spindle \d+\.\d+\.\d+\n$", out), "-v output: %r" % out)
    rc, out, err = run(["-h"])
    eq(rc, 0, "-h exit status")
    for opt in ("-c FILE", "-t", "-s", "reload", "status", "-d"):
        check(opt in out, "-h mentions %s: %r" % (opt, out))
    rc, out, err = run(["-x"])
    eq(rc, 2, "unknown option exit status")
    check("usage" in err, "usage on stderr for a bad option")
    rc, out, err = run(["-s", "explode"])
    eq(rc, 2, "unknown -s command exit status")


@tap.case
def check_config_good_and_bad_binds_nothing():
    port = free_port()
    sp = Spindle(services(port))
    try:
        # A socket on the port without SO_REUSEPORT: any bind by -t would fail.
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", port))
        rc, out, err = run(["-t", "-c", sp.conf])
        blocker.close()
        eq((rc, out), (0, "configuration ok\n"), "-t on a good file (stderr %r)" % err)
        check(not listening_on(port), "-t left a listener")
        check(not os.path.exists(sp.sock) and not os.path.exists(sp.pid_file),
              "-t created files")

        sp.write_conf(services(port, "max_body_size = huge\n"))
        with open(sp.conf) as f:
            line = [i + 1 for i, l in enumerate(f) if l.startswith("max_body_size")][0]
        rc, out, err = run(["-t", "-c", sp.conf])
        eq(rc, 1, "-t on a bad file")
        eq(out, "", "nothing on stdout for a bad file")
        check(err.startswith("%s:%d: " % (sp.conf, line)), "-t error names file and line: %r" % err)

        rc, out, err = run(["-t", "-c", os.path.join(sp.dir, "nope.conf")])
        eq(rc, 1, "-t on a missing file")
        check("nope.conf" in err, "names the missing file: %r" % err)

        # The default file is the one configure chose (SYSCONFDIR/spindle/
        # spindle.conf), not spindle.conf in the working directory.
        sp.write_conf(services(port))
        rc, out, err = run(["-t"], cwd=sp.dir)
        default = re.search(r"default: (\S+)\)", run(["-h"])[1]).group(1)
        if not os.path.exists(default):
            eq((rc, out), (1, ""), "-t with no default file")
            check(err.startswith(default + ": cannot open"), "names %s: %r" % (default, err))
    finally:
        sp.stop()


@tap.case
def status_reports_master_workers_and_reload():
    port = free_port()
    sp = Spindle(services(port), workers=2)
    sp.start(ports=[port])
    try:
        wait_ready(sp, 2)
        for _ in range(10):
            eq(http_get(port, "/plaintext")[0], 200, "request")
        rc, out = sp.ctl("status")
        eq(rc, 0, "status exit status: " + out)
        m = re.search(r"^master pid=(\d+) generation=1 uptime=[\d.]+s", out, re.M)
        check(m and int(m.group(1)) == sp.pid, "master line: " + out)
        workers = re.findall(r"^worker pid=(\d+) generation=1 index=(\d) state=ready "
                             r"connections=(\d+) requests=(\d+) .*uptime=[\d.]+s$", out, re.M)
        eq(sorted(int(w[0]) for w in workers), sp.workers(), "worker pids: " + out)
        eq(sorted(w[1] for w in workers), ["0", "1"], "worker indexes")
        eq(sum(int(w[3]) for w in workers), 10, "requests served: " + out)
        check("last_reload: none" in out, "no reload yet: " + out)
        eq(sp.ctl("reload")[0], 0, "reload")
        rc, out = sp.ctl("status")
        check(re.search(r"^last_reload: ok .*generation 2", out, re.M), "reload result: " + out)
    finally:
        sp.stop()


@tap.case
def pid_file_control_socket_and_second_master():
    port = free_port()
    sp = Spindle(services(port), workers=1)
    # A stale socket file, as a master killed outright leaves it.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sp.sock)
    stale.close()
    sp.start(ports=[port])
    try:
        sp.wait_workers(1)
        with open(sp.pid_file) as f:
            eq(f.read(), "%d\n" % sp.pid, "pid file content")
        rc, out, err = run(["-c", sp.conf], timeout=10)
        eq(rc, 1, "second master exit status")
        check("already running" in err, "second master says why: %r" % err)
        with open(sp.pid_file) as f:
            eq(f.read(), "%d\n" % sp.pid, "pid file kept")
        check(os.path.exists(sp.sock), "control socket kept")
        eq(http_get(port, "/plaintext")[0], 200, "first master still serves")
        rc, out = sp.ctl("reopen")
        eq(rc, 0, "reopen: " + out)
        rc, out = sp.ctl("quit")
        eq(rc, 0, "quit: " + out)
        eq(sp.wait_exit(10), 0, "exit status after -s quit")
        check(not os.path.exists(sp.pid_file), "pid file removed")
        check(not os.path.exists(sp.sock), "control socket removed")
        rc, out = sp.ctl("status")
        check(rc != 0 and "cannot reach" in out, "-s without a master: %r" % out)
    finally:
        sp.stop()


@tap.case
def startup_failures_exit_nonzero():
    port = free_port()
    sp = Spindle(services(port, "root = /nonexistent/spindle-test\n"), workers=2)
    try:
        rc, out, err = run(["-c", sp.conf], timeout=15)
        eq(rc, 1, "exit status when workers cannot start")
        check("/nonexistent/spindle-test" in err, "says why: %r" % err)
        check(not listening_on(port), "listener left behind")
        check(not os.path.exists(sp.pid_file) and not os.path.exists(sp.sock), "files left behind")

        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        sp.write_conf(services(port))
        rc, out, err = run(["-c", sp.conf], timeout=15)
        blocker.close()
        eq(rc, 1, "exit status when the port is taken")
        check("127.0.0.1:%d" % port in err, "names the address: %r" % err)
    finally:
        sp.stop()


@tap.case
def daemon_mode():
    port = free_port()
    sp = Spindle(services(port), workers=1)
    pid = None
    try:
        rc, out, err = run(["-d", "-c", sp.conf], timeout=15)
        eq(rc, 0, "-d exit status (%r)" % err)
        with open(sp.pid_file) as f:
            pid = int(f.read())
        check(alive(pid), "daemon alive")
        check(wait_port(port), "daemon listens")
        eq(http_get(port, "/plaintext")[0], 200, "daemon serves")
        sid = int(proc_stat(pid)[3])
        eq(sid == pid, False, "daemon is not a session leader")
        check(sid != os.getsid(0), "daemon left our session")
        rc, out = sp.ctl("stop")
        eq(rc, 0, "-s stop: " + out)
        check(wait_for(lambda: not alive(pid), 5), "daemon exits on -s stop")
        check(not os.path.exists(sp.pid_file), "pid file removed")

        # A daemon that cannot start says so and exits non-zero.
        sp.write_conf(services(port, "root = /nonexistent/spindle-test\n"), workers=1)
        rc, out, err = run(["-d", "-c", sp.conf], timeout=15)
        eq(rc, 1, "-d exit status for a failed start")
        check("/nonexistent/spindle-test" in err, "says why: %r" % err)
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        sp.stop()


def cpus_allowed(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    return None


@tap.case
def cpu_affinity_pins_each_worker():
    ncpu = len(os.sched_getaffinity(0))
    port = free_port()
    sp = Spindle(services(port), workers=2, master="cpu_affinity = auto")
    sp.start(ports=[port])
    try:
        pids = wait_ready(sp, 2)
        allowed = [cpus_allowed(p) for p in pids]
        for a in allowed:
            check(a is not None and re.match(r"^\d+$", a), "one CPU per worker: %r" % allowed)
        if ncpu >= 2:
            check(allowed[0] != allowed[1], "workers on different CPUs: %r" % allowed)
        check(cpus_allowed(sp.pid) != allowed[0] or ncpu == 1, "the master is not pinned")
        eq(http_get(port, "/plaintext")[0], 200, "a pinned worker serves")
    finally:
        sp.stop()


if __name__ == "__main__":
    tap.run()
