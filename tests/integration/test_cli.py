"""What an operator meets at the command line and at start-up: an address or
a configuration someone else already runs on, the control socket file, `-s`
against the right master, waiting for an exit, what `-t` checks, messages."""
import os
import re
import signal
import socket
import subprocess
import time

from harness import (BIN, SRCDIR, Spindle, Tap, alive, check, eq, free_port, http_get, skip,
                     wait_for, wait_port)

tap = Tap()


def services(port, extra=""):
    return ("[http main]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain Hello\n%s"
            % (port, extra))


def run(args, cwd=None, timeout=20):
    r = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def start_expecting_failure(sp, timeout=10):
    """Starts sp and waits for it to exit; returns (status, output).  A master
    that keeps running is a failure of the test (stopped by the harness)."""
    sp.start()
    rc = sp.wait_exit(timeout)
    check(rc is not None, "the master started and kept running; log:\n" + sp.logs())
    return rc, sp.logs()


# ---- an address or a configuration in use ----------------------------------

@tap.case
def second_master_other_config_same_port_refused():
    port = free_port()
    first = Spindle(services(port))
    second = Spindle(services(port))
    first.start(ports=[port])
    try:
        first.wait_ready(1)
        rc, out = start_expecting_failure(second)
        eq(rc, 1, "second master's exit status")
        check("127.0.0.1:%d" % port in out and "in use" in out, "says why: %r" % out)
        eq(http_get(port, "/plaintext")[0], 200, "the first master still serves")
    finally:
        second.stop()
        first.stop()


@tap.case
def reload_onto_a_port_another_process_holds_fails():
    port, taken = free_port(), free_port()
    sp = Spindle(services(port))
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", taken))
    other.listen(16)
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        sp.write_conf(services(port) + "[echo e]\nlisten = 127.0.0.1:%d\n" % taken)
        rc, out = sp.ctl("reload")
        check(rc != 0, "reload onto a held port succeeded: %r" % out)
        check("127.0.0.1:%d" % taken in out, "names the address: %r" % out)
        eq(http_get(port, "/plaintext")[0], 200, "still serves")
    finally:
        other.close()
        sp.stop()


@tap.case
def second_master_same_config_without_socket_file_refused():
    port = free_port()
    sp = Spindle(services(port))
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        os.unlink(sp.sock)
        rc, out, err = run(["-c", sp.conf], cwd=sp.dir, timeout=10)
        eq(rc, 1, "second master's exit status")
        check("already running" in err and sp.pid_file in err, "says why: %r" % err)
        with open(sp.pid_file) as f:
            eq(f.read(), "%d\n" % sp.pid, "the first master's pid file is kept")
        check(alive(sp.pid), "the first master runs on")
    finally:
        sp.stop()


# ---- the control socket file -------------------------------------------------

@tap.case
def control_socket_naming_a_regular_file_keeps_it():
    port = free_port()
    sp = Spindle(services(port))
    with open(sp.sock, "w") as f:
        f.write("precious\n")
    try:
        rc, out = start_expecting_failure(sp)
        eq(rc, 1, "exit status")
        check(sp.sock in out and "not a socket" in out, "says why: %r" % out)
        with open(sp.sock) as f:
            eq(f.read(), "precious\n", "the file is left alone")
        check(not os.path.exists(sp.pid_file), "no pid file left behind")
    finally:
        sp.stop()


# ---- -s reaches the right master -------------------------------------------------

@tap.case
def reload_with_another_config_file_is_refused():
    port = free_port()
    sp = Spindle(services(port))
    other = os.path.join(sp.dir, "other.conf")
    with open(other, "w") as f:
        f.write("[master]\ncontrol_socket = %s\nworkers = many\n" % sp.sock)
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        rc, out, err = run(["-c", other, "-s", "reload"], cwd=sp.dir)
        check(rc != 0, "reload with another file succeeded: %r" % (out + err))
        check(other in err and sp.conf in err, "names both files: %r" % err)
        rc, out = sp.ctl("status")
        check("last_reload: none" in out, "the master did not reload: %r" % out)
        # The same file under another name is the master's configuration.
        link = os.path.join(sp.dir, "link.conf")
        os.symlink(sp.conf, link)
        rc, out, err = run(["-c", link, "-s", "reload"], cwd=sp.dir)
        eq(rc, 0, "reload through a link to the master's file: %r" % (out + err))
    finally:
        sp.stop()


# ---- -s quit and -s stop wait for the exit -------------------------------------

@tap.case
def quit_and_stop_return_once_the_master_has_exited():
    port = free_port()
    sp = Spindle(services(port), shutdown_timeout="3s")
    sp.start(ports=[port])
    daemon = None
    try:
        sp.wait_ready(1)
        # A request in progress keeps the worker draining for a while.
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        rc, out = sp.ctl("quit")
        eq(rc, 0, "-s quit: " + out)
        check(not alive(sp.pid), "-s quit returned while the master runs")
        c.close()
        eq(sp.wait_exit(5), 0, "the master's exit status")
        # What an operator does next: start it again at once.
        rc, out, err = run(["-d", "-c", sp.conf], cwd=sp.dir)
        eq(rc, 0, "a new master right after -s quit: %r" % err)
        with open(sp.pid_file) as f:
            daemon = int(f.read())
        rc, out = sp.ctl("stop")
        eq(rc, 0, "-s stop: " + out)
        check(not alive(daemon), "-s stop returned while the master runs")
        check(not os.path.exists(sp.pid_file) and not os.path.exists(sp.sock),
              "files removed once -s stop returns")
    finally:
        if daemon and alive(daemon):
            os.kill(daemon, signal.SIGKILL)
        sp.stop()


@tap.case
def quit_says_when_the_master_outlives_the_bound():
    port = free_port()
    sp = Spindle(services(port), shutdown_timeout="60s")
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        # The file now says 0s; the running master drains for 60s.
        sp.write_conf(services(port), shutdown_timeout="0s")
        t0 = time.monotonic()
        rc, out = sp.ctl("quit", timeout=30)
        waited = time.monotonic() - t0
        eq(rc, 1, "-s quit past its bound: " + out)
        check("still running" in out and str(sp.pid) in out, "says so: %r" % out)
        check(4 <= waited < 20, "waited %.1fs for a bound of 0s + 5s" % waited)
        check(alive(sp.pid), "the master still drains")
        c.close()
    finally:
        sp.stop()


# ---- what -t checks, paths, defaults -----------------------------------------

def check_file(text, name="check.conf"):
    sp = Spindle("")
    path = os.path.join(sp.dir, name)
    with open(path, "w") as f:
        f.write(text)
    try:
        return run(["-t", "-c", path], cwd=sp.dir) + (path, sp.dir)
    finally:
        sp.stop()


@tap.case
def check_refuses_directories_that_do_not_exist():
    port = free_port()
    missing = "/nonexistent-spindle-dir"
    for master, service, what in (
            ("", "root = %s/www\n" % missing, "root"),
            ("error_log = %s/error.log\n" % missing, "", "error_log"),
            ("", "access_log = %s/access.log\n" % missing, "access_log"),
            ("pid_file = %s/x.pid\n" % missing, "", "pid_file"),
            ("control_socket = %s/x.sock\n" % missing, "", "control_socket")):
        base = "".join("%s = %s\n" % kv for kv in (("pid_file", "p.pid"),
                                                   ("control_socket", "s.sock"))
                       if kv[0] != what)
        rc, out, err, path, _ = check_file("[master]\n%s%s\n%s"
                                           % (base, master, services(port, service)))
        eq(rc, 1, "-t with a missing directory for %s (%r)" % (what, out + err))
        check(err.startswith(path) and what in err and missing in err,
              "names the file, the key and the directory: %r" % err)


@tap.case
def log_values_take_no_extra_words():
    port = free_port()
    rc, out, err, path, _ = check_file("[master]\nerror_log = logs/x.log warn\n" + services(port))
    eq(rc, 1, "-t with 'error_log = logs/x.log warn' (%r)" % out)
    check(err.startswith("%s:2: " % path) and "error_log" in err, "names FILE:LINE, key: %r" % err)
    rc, out, err, path, _ = check_file(services(port, "access_log = logs/a.log combined\n"))
    eq(rc, 1, "-t with an access_log format word (%r)" % out)
    check(err.startswith("%s:4: " % path) and "access_log" in err, "names FILE:LINE, key: %r" % err)

    sp = Spindle(services(port, "access_log = OFF\n"))
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        eq(http_get(port, "/plaintext")[0], 200, "request")
        sp.ctl("reopen")
        time.sleep(1.5)  # the access log is flushed every second
        check(not os.path.exists(os.path.join(sp.dir, "OFF")), "'access_log = OFF' wrote a file")
    finally:
        sp.stop()


@tap.case
def config_through_a_symlink_resolves_against_its_target():
    port = free_port()
    sp = Spindle("")
    real_dir = os.path.join(sp.dir, "real")
    link_dir = os.path.join(sp.dir, "links")
    os.mkdir(real_dir)
    os.mkdir(link_dir)
    real = os.path.join(real_dir, "site.conf")
    link = os.path.join(link_dir, "site.conf")
    with open(real, "w") as f:
        f.write("[master]\nworkers = 1\npid_file = site.pid\ncontrol_socket = site.sock\n"
                "error_log = error.log\n" + services(port))
    os.symlink(real, link)
    sp.conf, sp.log = link, os.path.join(real_dir, "error.log")
    sp.start(ports=[port])
    try:
        check(os.path.exists(os.path.join(real_dir, "site.pid")),
              "relative pid_file beside the file the link points to")
        for conf in (real, link):
            rc, out, err = run(["-c", conf, "-s", "status"], cwd=sp.dir)
            eq(rc, 0, "-s status -c %s: %r" % (conf, out + err))
    finally:
        sp.stop()


def default_rundir():
    rc, out, err = run(["-h"])
    m = re.search(r"default pid file: (\S+)/spindle/NAME\.pid", out)
    check(m, "-h names the default pid file: %r" % out)
    return m.group(1)


@tap.case
def pid_file_and_socket_default_to_rundir_by_config_name():
    port = free_port()
    rundir = default_rundir()
    existing = rundir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(os.path.join(rundir, "spindle") if os.path.isdir(
            os.path.join(rundir, "spindle")) else existing, os.W_OK):
        skip("%s/spindle is not writable here: the default location is not checked" % rundir)
    sp = Spindle("")
    name = "spindle-test-%d" % os.getpid()
    sp.conf = os.path.join(sp.dir, name + ".conf")
    sp.pid_file = os.path.join(rundir, "spindle", name + ".pid")
    sp.sock = os.path.join(rundir, "spindle", name + ".sock")
    with open(sp.conf, "w") as f:
        f.write("[master]\nworkers = 1\nerror_log = error.log\n" + services(port))
    rc, out, err = run(["-t", "-c", sp.conf])
    eq(rc, 0, "-t: %r" % err)
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        check(not os.path.exists(os.path.join(sp.dir, "spindle.pid")), "pid file beside the conf")
        with open(sp.pid_file) as f:
            eq(f.read(), "%d\n" % sp.pid, "pid file in %s" % sp.pid_file)
        check(os.path.exists(sp.sock), "control socket in %s" % sp.sock)
        rc, out = sp.ctl("stop")
        eq(rc, 0, "-s stop: " + out)
        check(not os.path.exists(sp.pid_file) and not os.path.exists(sp.sock), "files removed")
    finally:
        sp.stop()


# ---- messages -----------------------------------------------------------------

@tap.case
def config_messages_name_the_real_fault():
    for service, want in (
            ("[http main]\nlisten 127.0.0.1:80\n", "missing '=' after 'listen'"),
            ("[http main]\nlisten = 127.0.0.1:70000\n", "port 70000 out of range (1..65535)"),
            ("[http main]\nlisten = example.com:80\n", "'example.com' is not an IP address"),
            ("[http main]\nlisten = 127.0.0.1:8080\nreturn /x = 700 text/plain hi\n",
             "the status must be 200..599"),
            ("[http main]\nlisten = 127.0.0.1:8080\nreturn /x = 2000 text/plain hi\n",
             "the status must be 200..599")):
        rc, out, err, path, _ = check_file(service)
        eq(rc, 1, "-t on %r" % service)
        check(want in err, "message for %r: %r, want %r" % (service, err, want))


@tap.case
def s_with_a_missing_file_names_the_file():
    sp = Spindle("")
    try:
        missing = os.path.join(sp.dir, "missing.conf")
        rc, out, err = run(["-c", missing, "-s", "status"], cwd=sp.dir)
        eq(rc, 1, "exit status")
        check(missing in err and "No such file" in err and "cannot reach" not in err,
              "names the file: %r" % err)
    finally:
        sp.stop()


@tap.case
def long_help_and_version():
    rc, out, err = run(["--help"])
    eq(rc, 0, "--help exit status (%r)" % err)
    check(out.startswith("usage: spindle"), "--help prints the usage: %r" % out)
    rc, out, err = run(["--version"])
    eq(rc, 0, "--version exit status (%r)" % err)
    check(re.match(r"spindle \d+\.\d+\.\d+\n$", out), "--version: %r" % out)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")[0].decode(errors="replace").strip()


@tap.case
def ps_names_master_and_workers():
    port = free_port()
    sp = Spindle(services(port), workers=2)
    sp.start(ports=[port])
    try:
        pids = sp.wait_ready(2)
        title = cmdline(sp.pid)
        check(title.startswith("spindle: master process ") and sp.conf in title,
              "master's title: %r" % title)
        for p in pids:
            eq(cmdline(p), "spindle: worker process", "worker's title")
        wait_for(lambda: "running:" in sp.logs())
        check(re.search(r"running: 2 workers,", sp.logs()), "start-up line: " + sp.logs())
        r = subprocess.run(["ps", "-o", "args=", "-p", str(sp.pid)], capture_output=True,
                           text=True)
        check(r.stdout.startswith("spindle: master process"), "ps shows it: %r" % r.stdout)
    finally:
        sp.stop()


@tap.case
def one_worker_is_not_workers():
    port = free_port()
    sp = Spindle(services(port), workers=1)
    sp.start(ports=[port])
    try:
        sp.wait_ready(1)
        wait_for(lambda: "running:" in sp.logs())
        check(re.search(r"running: 1 worker,", sp.logs()), "start-up line: " + sp.logs())
        rc, out = sp.ctl("reload")
        eq(rc, 0, "-s reload: " + out)
        check(re.search(r"1 worker ready in \d+ ms, 1 old worker draining", out),
              "reload answer: " + out)
        check(re.search(r"starting generation 2 \(1 worker\)", sp.logs()), "reload log line")
        check(wait_for(lambda: re.search(r"draining \(master asked\), [01] connections? open",
                                         sp.logs())), "drain log line: " + sp.logs())
        check(not re.search(r"\b1 (workers|connections)\b", sp.logs()),
              "no '1 workers' or '1 connections' in the log: " + sp.logs())
    finally:
        sp.stop()


# ---- the systemd unit ------------------------------------------------------------

def verify_unit(text, where):
    """systemd-analyze verify on text with ExecStart pointing at the binary
    under test; fails on anything systemd reports."""
    sp = Spindle("")
    try:
        unit = os.path.join(sp.dir, "spindle.service")
        with open(unit, "w") as f:
            f.write(re.sub(r"/usr/s?bin/spindle|/usr/local/s?bin/spindle", BIN, text))
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           timeout=60)
        eq((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify of " + where)
    finally:
        sp.stop()


@tap.case
def systemd_unit_loads_on_this_systemd():
    if subprocess.run(["sh", "-c", "command -v systemd-analyze"],
                      capture_output=True).returncode != 0:
        skip("systemd-analyze missing (package systemd): the unit is not checked here")
    path = os.path.join(SRCDIR, "docs", "spindle.service")
    check(os.path.exists(path), "the unit is shipped as docs/spindle.service")
    with open(path) as f:
        shipped = f.read()
    verify_unit(shipped, path)
    with open(os.path.join(SRCDIR, "docs", "operations.md")) as f:
        doc = f.read()
    block = re.search(r"```ini\n(\[Unit\].*?)```", doc, re.S)
    check(block, "docs/operations.md shows the unit")
    eq(block.group(1), shipped, "the unit in docs/operations.md is the shipped one")


if __name__ == "__main__":
    tap.run()
