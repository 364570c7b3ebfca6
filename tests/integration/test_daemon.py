"""spindle -d detaches completely: the caller's stdin, stdout, stderr and any
other descriptor it leaked are closed in the daemon and in its workers, so
`spindle -d 2>&1 | cat` and `ssh host spindle -d` return at once."""
import os
import resource
import signal
import subprocess
import time

from harness import BIN, Spindle, Tap, alive, check, children_of, eq, free_port, http_get, wait_for

tap = Tap()

DEVNULL_IDS = os.stat("/dev/null")


def services(port):
    return "[http main]\nlisten = 127.0.0.1:%d\nreturn /x = 200 text/plain daemon\n" % port


def fd_targets(pid):
    """{fd: (st_dev, st_ino, readlink)} for every open fd of pid."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        path = os.path.join(base, name)
        try:
            st = os.stat(path)
            out[int(name)] = (st.st_dev, st.st_ino, os.readlink(path))
        except OSError:
            pass
    return out


def kill_daemon(sp):
    try:
        with open(sp.pid_file) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return
    if alive(pid):
        for w in children_of(pid):
            os.kill(w, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def check_stdio(pid, who, log_ids, leaked_ids):
    fds = fd_targets(pid)
    for fd in (0, 1, 2):
        check(fd in fds, "%s: fd %d open" % (who, fd))
        ids = fds[fd][:2]
        check(ids == (DEVNULL_IDS.st_dev, DEVNULL_IDS.st_ino) or ids in log_ids,
              "%s: fd %d is %s, not /dev/null or the error log" % (who, fd, fds[fd][2]))
    for fd, (dev, ino, link) in fds.items():
        check((dev, ino) not in leaked_ids,
              "%s: fd %d (%s) inherited from the caller" % (who, fd, link))


def run_detached(sp, port, error_log):
    """Starts spindle -d with error_log as given, its stdout and stderr on a
    pipe read by cat, plus a leaked pipe end and file; returns once the
    pipeline has ended (it must, promptly) and the daemon serves."""
    sp.write_conf(services(port), workers=2)
    with open(sp.conf) as f:
        text = f.read()
    with open(sp.conf, "w") as f:
        f.write(text.replace("error_log = %s" % sp.log, "error_log = %s" % error_log))
    leak_r, leak_w = os.pipe()
    leak_file = os.open(os.path.join(sp.dir, "leaked"), os.O_WRONLY | os.O_CREAT, 0o600)
    leaked = {(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (leak_r, leak_w, leak_file)}
    try:
        t0 = time.monotonic()
        p = subprocess.Popen("set -o pipefail; %s -d -c %s 2>&1 | cat" % (BIN, sp.conf),
                             shell=True, executable="/bin/bash",
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             pass_fds=(leak_w, leak_file), cwd=sp.dir)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError("spindle -d ... | cat did not return within 10 s")
        took = time.monotonic() - t0
        eq(p.returncode, 0, "pipeline exit status (output %r)" % out)
        check(took < 10, "returned in %.1f s" % took)
        os.close(leak_w)
        leak_w = -1
        with open(sp.pid_file) as f:
            pid = int(f.read())
        eq(http_get(port, "/x")[2], b"daemon", "daemon serves")
        # Nobody else holds the leaked pipe's write end: the read end sees EOF.
        os.set_blocking(leak_r, False)
        try:
            got = os.read(leak_r, 1)
        except BlockingIOError:
            got = None
        eq(got, b"", "read from the leaked pipe (EOF once every copy is closed)")
        return pid, leaked
    finally:
        for fd in (leak_r, leak_w, leak_file):
            if fd >= 0:
                os.close(fd)


@tap.case
def daemon_with_stderr_log_detaches():
    port = free_port()
    sp = Spindle(services(port))
    try:
        pid, leaked = run_detached(sp, port, "stderr")
        workers = wait_for(lambda: len(children_of(pid)) == 2 and children_of(pid), 5)
        check(workers, "two workers")
        for p, who in [(pid, "master")] + [(w, "worker %d" % w) for w in workers]:
            check_stdio(p, who, set(), leaked)
        rc, out = sp.ctl("stop")
        eq(rc, 0, "-s stop: " + out)
        check(wait_for(lambda: not alive(pid), 10), "daemon exits on -s stop")
    finally:
        kill_daemon(sp)
        sp.stop()


@tap.case
def daemon_with_file_log_detaches():
    port = free_port()
    sp = Spindle(services(port))
    try:
        pid, leaked = run_detached(sp, port, sp.log)
        st = os.stat(sp.log)
        workers = wait_for(lambda: len(children_of(pid)) == 2 and children_of(pid), 5)
        check(workers, "two workers")
        for p, who in [(pid, "master")] + [(w, "worker %d" % w) for w in workers]:
            check_stdio(p, who, {(st.st_dev, st.st_ino)}, leaked)
        # The daemon kept the pid file's lock through its detaching: a second
        # master of the same configuration is refused and changes nothing.
        os.unlink(sp.sock)
        second = subprocess.run([BIN, "-c", sp.conf], cwd=sp.dir, capture_output=True,
                                text=True, timeout=10)
        check(second.returncode != 0, "a second master of the configuration starts")
        check("already running" in second.stderr, "second master says: %r" % second.stderr)
        with open(sp.pid_file) as f:
            eq(f.read().strip(), str(pid), "pid file after the refused second master")
        eq(http_get(port, "/x")[2], b"daemon", "daemon still serves")
        os.kill(pid, signal.SIGTERM)
        check(wait_for(lambda: not alive(pid), 10), "daemon exits on SIGTERM")
    finally:
        kill_daemon(sp)
        sp.stop()


@tap.case
def daemon_closes_thousands_of_leaked_fds():
    """A caller that leaks more descriptors than fit in one listing, some of
    them numbered above its own soft RLIMIT_NOFILE (lowered after they were
    opened, as `ulimit -Sn` in a shell that holds them does), still gets end of
    file on its pipe: the daemon closes every one of them."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 70001:
        hard = 70001
    high = hard - 1
    port = free_port()
    sp = Spindle(services(port))
    sp.write_conf(services(port), workers=2)
    leak_r, leak_w = os.pipe()

    def leak():
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        for fd in range(100, 4400):
            os.dup2(leak_w, fd)
        os.dup2(leak_w, high)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    try:
        p = subprocess.Popen([BIN, "-d", "-c", sp.conf], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             close_fds=False, preexec_fn=leak, cwd=sp.dir)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError("spindle -d did not return within 20 s")
        eq(p.returncode, 0, "spindle -d exit status (stderr %r)" % err)
        os.close(leak_w)
        leak_w = -1
        with open(sp.pid_file) as f:
            pid = int(f.read())
        eq(http_get(port, "/x")[2], b"daemon", "daemon serves")
        workers = wait_for(lambda: len(children_of(pid)) == 2 and children_of(pid), 5)
        check(workers, "two workers")
        for p_, who in [(pid, "master")] + [(w, "worker %d" % w) for w in workers]:
            fds = fd_targets(p_)
            check(high not in fds, "%s: fd %d (%s) inherited from the caller"
                  % (who, high, fds.get(high, ("", "", ""))[2]))
            check(len(fds) < 100, "%s holds %d fds" % (who, len(fds)))
        os.set_blocking(leak_r, False)
        try:
            got = os.read(leak_r, 1)
        except BlockingIOError:
            got = None
        eq(got, b"", "read from the leaked pipe (EOF once every copy is closed)")
        os.kill(pid, signal.SIGTERM)
        check(wait_for(lambda: not alive(pid), 10), "daemon exits on SIGTERM")
    finally:
        for fd in (leak_r, leak_w):
            if fd >= 0:
                os.close(fd)
        kill_daemon(sp)
        sp.stop()


tap.run()
