"""[master] user and group: a master started as root keeps root (it binds and
opens the log files) while its workers switch to the configured user before
they serve; log files the user could not open are opened, and reopened on
-s reopen, by the master.  These cases need root (and the user nobody);
without them they are skipped."""
import grp
import os
import pwd
import re
import subprocess

from harness import BIN, Spindle, Tap, check, eq, free_port, http_get, skip, wait_for

tap = Tap()

USER = "nobody"
try:
    PW = pwd.getpwnam(USER)
except KeyError:
    PW = None
SKIP = os.geteuid() != 0 or PW is None
OTHER_GROUP = "daemon" if "daemon" in {g.gr_name for g in grp.getgrall()} else None


def need_root():
    if SKIP:
        skip("needs root and a user %s" % USER)


def ids(pid):
    """(Uid, Gid, Groups) lines of /proc/PID/status, as lists of ints."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out["Uid"], out["Gid"], sorted(set(out["Groups"]))


class Setup:
    """A spindle whose directory root can traverse but not list (0711): a
    world-readable www/ beside a root-only logs/ holding both log files."""

    def __init__(self, master="", workers=2, root=None, access_log=True):
        self.port = free_port()
        self.sp = Spindle("", workers=workers)
        os.chmod(self.sp.dir, 0o711)
        self.www = os.path.join(self.sp.dir, "www")
        self.logs = os.path.join(self.sp.dir, "logs")
        os.mkdir(self.www, 0o755)
        os.mkdir(self.logs, 0o700)
        self.error_log = os.path.join(self.logs, "error.log")
        self.access_log = os.path.join(self.logs, "access.log")
        svc = "[http main]\nlisten = 127.0.0.1:%d\nroot = %s\n" % (self.port, root or self.www)
        if access_log:
            svc += "access_log = %s\n" % self.access_log
        self.sp.write_conf(svc, master, workers)
        with open(self.sp.conf) as f:
            text = f.read()
        with open(self.sp.conf, "w") as f:
            f.write(text.replace("error_log = %s" % self.sp.log, "error_log = %s" % self.error_log))
        self.sp.log = self.error_log  # for logs() in failure messages

    def file(self, name, text, mode):
        path = os.path.join(self.www, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def start(self, n):
        self.sp.start([self.port])
        return self.sp.wait_ready(n)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run(args):
    r = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=15)
    return r.returncode, r.stdout, r.stderr


@tap.case
def workers_switch_to_user_master_stays_root():
    need_root()
    s = Setup("user = %s\n" % USER)
    try:
        workers = s.start(2)
        want_groups = sorted(set(os.getgrouplist(USER, PW.pw_gid)))
        for w in workers:
            uid, gid, groups = ids(w)
            eq(uid, [PW.pw_uid] * 4, "worker %d Uid (real, effective, saved, fs)" % w)
            eq(gid, [PW.pw_gid] * 4, "worker %d Gid" % w)
            eq(groups, want_groups, "worker %d Groups" % w)
        uid, gid, groups = ids(s.sp.pid)
        eq(uid, [0] * 4, "master Uid")
        check("without [master] user" not in read(s.error_log), "no root warning with user set")
    finally:
        s.sp.stop()


@tap.case
def group_key_sets_the_workers_group():
    need_root()
    if OTHER_GROUP is None:
        skip("no group daemon to switch to")
    gid = grp.getgrnam(OTHER_GROUP).gr_gid
    s = Setup("user = %s\ngroup = %s\n" % (USER, OTHER_GROUP), workers=1)
    try:
        (w,) = s.start(1)
        uid, wgid, groups = ids(w)
        eq(uid, [PW.pw_uid] * 4, "worker Uid")
        eq(wgid, [gid] * 4, "worker Gid")
        eq(groups, sorted(set(os.getgrouplist(USER, gid))), "worker Groups")
    finally:
        s.sp.stop()


@tap.case
def files_only_root_can_read_are_refused():
    need_root()
    s = Setup("user = %s\n" % USER, workers=1)
    try:
        s.file("public.txt", "for everyone\n", 0o644)
        s.file("secret.txt", "root only\n", 0o600)
        s.start(1)
        st, _, body = http_get(s.port, "/public.txt")
        eq((st, body), (200, b"for everyone\n"), "world-readable file")
        st, _, body = http_get(s.port, "/secret.txt")
        check(st in (403, 404), "root-only file: status %d" % st)
        check(b"root only" not in body, "root-only file's bytes were served")
    finally:
        s.sp.stop()


@tap.case
def master_opens_and_reopens_the_log_files():
    need_root()
    s = Setup("user = %s\n" % USER, workers=2)
    try:
        s.file("a.txt", "a\n", 0o644)
        old_workers = s.start(2)
        eq(http_get(s.port, "/a.txt?before")[0], 200, "before rotation")
        check(wait_for(lambda: "?before" in read(s.access_log), 5),
              "worker wrote the access log in a root-only directory:\n" + s.sp.logs())
        # logrotate's way: rename, then tell the master.
        os.rename(s.access_log, s.access_log + ".1")
        os.rename(s.error_log, s.error_log + ".1")
        rc, out = s.sp.ctl("reopen")
        eq(rc, 0, "-s reopen: " + out)
        check(wait_for(lambda: os.path.exists(s.error_log), 5), "error log recreated")
        for i in range(4):  # reach both workers
            eq(http_get(s.port, "/a.txt?after%d" % i)[0], 200, "after rotation")
        check(wait_for(lambda: "?after" in read(s.access_log), 5),
              "new access log written by the workers:\n%r\n%s" % (read(s.access_log),
                                                                   s.sp.logs()))
        check("?after" not in read(s.access_log + ".1"), "old access log still written")
        # The old workers log their drain: it must land in the new error log.
        rc, out = s.sp.ctl("reload")
        eq(rc, 0, "-s reload: " + out)
        for w in old_workers:
            check(wait_for(lambda: re.search(r"worker \d+ %d: draining" % w, read(s.error_log)), 5),
                  "worker %d wrote its drain to the new error log:\n%s" % (w, read(s.error_log)))
        check("draining" not in read(s.error_log + ".1"), "old error log still written")
    finally:
        s.sp.stop()


@tap.case
def check_config_warns_about_unreadable_root():
    need_root()
    s = Setup("user = %s\n" % USER, workers=1)
    try:
        hidden = os.path.join(s.sp.dir, "hidden")
        os.mkdir(hidden, 0o700)
        rc, out, err = run(["-t", "-c", s.sp.conf])
        eq((rc, out, err), (0, "configuration ok\n", ""), "-t with a readable root")
        s2 = Setup("user = %s\n" % USER, workers=1, root=hidden)
        try:
            rc, out, err = run(["-t", "-c", s2.sp.conf])
            eq((rc, out), (0, "configuration ok\n"), "-t still accepts the file (stderr %r)" % err)
            check("warning" in err and hidden in err and USER in err,
                  "-t warns, naming the root and the user: %r" % err)
        finally:
            s2.sp.stop()
    finally:
        s.sp.stop()


@tap.case
def unknown_user_or_group_is_a_config_error():
    need_root()
    for master, key, name in (("user = no-such-user-x\n", "user", "no-such-user-x"),
                              ("user = %s\ngroup = no-such-group-x\n" % USER, "group",
                               "no-such-group-x")):
        s = Setup(master, workers=1)
        try:
            with open(s.sp.conf) as f:
                line = [i + 1 for i, l in enumerate(f) if l.startswith(key + " ")][0]
            rc, out, err = run(["-t", "-c", s.sp.conf])
            eq(rc, 1, "-t exit status for %s" % master.strip())
            check(("%s:%d:" % (s.sp.conf, line)) in err, "names FILE:LINE: %r" % err)
            check(key in err and name in err, "names the key and the value: %r" % err)
            s.sp.start()
            eq(s.sp.wait_exit(10), 1, "the master refuses to start")
        finally:
            s.sp.stop()


@tap.case
def root_without_user_warns():
    need_root()
    s = Setup("", workers=1)
    try:
        s.start(1)
        check(wait_for(lambda: re.search(r"\[warn\] master \d+: running as root without \[master\] "
                                         r"user", read(s.error_log)), 5),
              "warning in the error log:\n" + read(s.error_log))
    finally:
        s.sp.stop()


tap.run()
