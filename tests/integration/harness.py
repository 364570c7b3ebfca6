"""Integration test harness: starts the real spindle binary on 127.0.0.1, talks
to it with raw sockets, and always stops it by pid (process group), even when a
test fails.  Tests print TAP, so every case is counted on its own.

Environment: SPINDLE_BIN (the binary; default ./spindle), SPINDLE_SRCDIR.
"""
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BIN = os.environ.get("SPINDLE_BIN") or os.path.abspath("spindle")
SRCDIR = os.environ.get("SPINDLE_SRCDIR") or os.path.abspath(".")


# ---- TAP -------------------------------------------------------------------

class Skip(Exception):
    """Raised by a case that cannot run here: reported as TAP's '# SKIP reason',
    which automake counts as SKIP, never as a pass."""


def skip(why):
    raise Skip(why)


def need(cond, why):
    """Skips the case when an optional dependency is missing (why says which),
    except in CI (SPINDLE_CI=1), which installs them all: there it fails."""
    if cond:
        return
    if os.environ.get("SPINDLE_CI"):
        raise AssertionError(why + " (CI installs it)")
    skip(why)


def sanitized():
    """Whether the spindle under test is built with ASan/UBSan (CI's second
    pass), where long tests shrink or run once, in the plain build."""
    libs = subprocess.run(["ldd", os.environ.get("SPINDLE_BIN") or os.path.abspath("spindle")],
                          capture_output=True, text=True).stdout
    return "libasan" in libs or "libubsan" in libs


class Tap:
    """Minimal TAP producer.  Each case is a function; an exception fails it,
    Skip (skip()) skips it."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        self.cases = []

    def case(self, fn):
        self.cases.append(fn)
        return fn

    def run(self):
        print("1..%d" % len(self.cases), flush=True)
        for fn in self.cases:
            self.n += 1
            name = fn.__name__
            t0 = time.monotonic()
            try:
                fn()
            except Skip as why:
                print("ok %d - %s # SKIP %s" % (self.n, name, why), flush=True)
            except Exception:  # noqa: BLE001 - any failure is a failed case
                self.failed += 1
                print("not ok %d - %s" % (self.n, name), flush=True)
                for line in traceback.format_exc().splitlines():
                    print("# " + line, flush=True)
            else:
                print("ok %d - %s (%.2fs)" % (self.n, name, time.monotonic() - t0), flush=True)
        stop_all()
        sys.exit(1 if self.failed else 0)


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(got, want, what="value"):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


# ---- ports and processes -------------------------------------------------

def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, host="127.0.0.1", timeout=5.0, family=socket.AF_INET):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def wait_for(pred, timeout=5.0, step=0.02):
    """Polls pred every step seconds until it returns something true; returns
    that, or pred's last answer once timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp,
    session, ...), as strings; None when there is no such process."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _live_where(field, value):
    """Sorted pids of the live (not zombie) processes whose stat field is value."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = proc_stat(d)
        if fields is not None and int(fields[field]) == value and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def wait_state(pid, states, timeout=10.0):
    """Waits until process pid is in one of states (letters of /proc/PID/stat,
    e.g. "Tt" for stopped); False if it is not by timeout or is gone."""
    def now_in():
        fields = proc_stat(pid)
        return fields is None or fields[0] in states
    wait_for(now_in, timeout, step=0.001)
    fields = proc_stat(pid)
    return fields is not None and fields[0] in states


def children_of(pid):
    """Pids whose parent is pid, read from /proc."""
    return _live_where(1, pid)


def group_members(pgid):
    """Live processes of process group pgid, read from /proc."""
    return _live_where(2, pgid)


def alive(pid):
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


_running = []


def stop_all():
    for s in list(_running):
        s.stop()


atexit.register(stop_all)


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


class Spindle:
    """One spindle master started on a generated configuration.

    conf is the text of the service sections (and optionally extra [master]
    keys via master=...); pid_file, control_socket and error_log are placed in
    a private temporary directory.  binary: another spindle than BIN (an
    installed one).
    """

    def __init__(self, services, master="", workers=1, threads=1, shutdown_timeout="3s",
                 binary=None):
        self.bin = binary or BIN
        self.dir = tempfile.mkdtemp(prefix="spindle-test-")
        self.conf = os.path.join(self.dir, "spindle.conf")
        self.pid_file = os.path.join(self.dir, "spindle.pid")
        self.sock = os.path.join(self.dir, "spindle.sock")
        self.log = os.path.join(self.dir, "error.log")
        self.out = os.path.join(self.dir, "stdout.log")
        self.write_conf(services, master, workers, threads, shutdown_timeout)
        self.proc = None

    def master_section(self, master, workers, threads, shutdown_timeout):
        return ("[master]\nworkers = %s\nthreads = %s\npid_file = %s\ncontrol_socket = %s\n"
                "error_log = %s\nshutdown_timeout = %s\n%s\n"
                % (workers, threads, self.pid_file, self.sock, self.log, shutdown_timeout,
                   master))

    def write_conf(self, services, master="", workers=1, threads=1, shutdown_timeout="3s"):
        text = self.master_section(master, workers, threads, shutdown_timeout) + services
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)

    def start(self, ports=(), timeout=5.0, args=(), wrap=()):
        """Starts the master; wrap is a command line it runs under (valgrind)."""
        outf = open(self.out, "ab")
        self.proc = subprocess.Popen(list(wrap) + [self.bin, "-c", self.conf] + list(args), stdout=outf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.dir)
        outf.close()
        _running.append(self)
        for p in ports:
            if not wait_port(p, timeout=timeout):
                raise AssertionError("spindle did not listen on %d; log:\n%s" % (p, self.logs()))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        return children_of(self.pid)

    def wait_workers(self, n, timeout=5.0, exclude=()):
        """Waits until the master has exactly n workers, none of them in exclude."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = self.workers()
            if len(w) == n and not set(w) & set(exclude):
                return w
            time.sleep(0.02)
        raise AssertionError("expected %d workers, have %r" % (n, self.workers()))

    def wait_ready(self, n, timeout=5.0):
        """Waits until the master has finished starting: its first generation
        is current and n workers are ready (a listening port only says that the
        master opened its sockets).  Returns the workers' pids."""
        import re
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            rc, out = self.ctl("status")
            if rc == 0 and re.search(r"^master pid=\d+ generation=[1-9]", out, re.M):
                pids = re.findall(r"^worker pid=(\d+) .*state=ready", out, re.M)
                if len(pids) == n:
                    return sorted(int(p) for p in pids)
            time.sleep(0.02)
        raise AssertionError("master not ready with %d workers:\n%s" % (n, out))

    def ctl(self, cmd, timeout=15):
        r = subprocess.run([self.bin, "-c", self.conf, "-s", cmd], capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir)
        return r.returncode, r.stdout + r.stderr

    def connections(self, pid=None):
        """Open connections from `-s status`, of worker pid or of every worker;
        None when a worker did not answer."""
        rc, out = self.ctl("status")
        counts = [n for p, n in re.findall(r"^worker pid=(\d+) .*connections=(\S+)", out, re.M)
                  if pid is None or int(p) == pid]
        if not counts or not all(n.isdigit() for n in counts):
            return None
        return sum(int(n) for n in counts)

    def wait_connections(self, want, timeout=10.0, pid=None):
        """Polls connections() until it is want; returns the last answer."""
        wait_for(lambda: self.connections(pid) == want, timeout, step=0.05)
        return self.connections(pid)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def logs(self):
        text = ""
        for p in (self.log, self.out):
            try:
                with open(p, errors="replace") as f:
                    text += f.read()[-6000:]
            except OSError:
                pass
        return text

    def log_count(self, pattern):
        """How many lines of the error log match the regular expression."""
        try:
            with open(self.log, errors="replace") as f:
                return len(re.findall(pattern, f.read(), re.M))
        except OSError:
            return 0

    def wait_log(self, pattern, count=1, timeout=10.0):
        """Waits until count lines of the error log match pattern; True if they do."""
        return bool(wait_for(lambda: self.log_count(pattern) >= count, timeout))

    def stop(self):
        if self in _running:
            _running.remove(self)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait_exit(5) is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        # Workers left behind by a broken master are killed through the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not os.environ.get("SPINDLE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- HTTP over raw sockets ------------------------------------------------

def connect(port, host="127.0.0.1", timeout=5.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_response(s, head_only=False):
    """Reads one HTTP response from s.  Returns (status, headers dict with
    lower-case names, body bytes).  head_only: the request was HEAD."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before response head (%r)" % buf[:200])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside body")
        rest += chunk
    return status, headers, rest[:n]


def http_get(port, path="/", host="127.0.0.1", headers=None, method="GET"):
    with connect(port, host) as s:
        h = {"Host": "localhost", "Connection": "close"}
        h.update(headers or {})
        req = "%s %s HTTP/1.1\r\n" % (method, path)
        req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        s.sendall(req.encode("latin-1"))
        return recv_response(s, head_only=(method == "HEAD"))


class Daemon:
    """A program a test runs beside spindle (an upstream, a balancer, a
    client), in its own session and folder: stop() ends it and its children
    by process group, TERM then KILL, and removes the folder; it is stopped
    when the test ends, even when it fails."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix="spindle-test-%s-" % prefix)
        self.proc = None

    def spawn(self, argv, port=None, what=None, **popen):
        """Starts argv (output discarded unless popen says otherwise); with
        port, waits until it listens there or raises, naming what."""
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.DEVNULL)
        self.proc = subprocess.Popen(argv, start_new_session=True, **popen)
        _running.append(self)
        if port is not None and not wait_port(port, timeout=10):
            raise AssertionError("%s did not listen on %d" % (what or argv[0], port))
        return self

    def stop(self):
        if self in _running:
            _running.remove(self)
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Daemon):
    """Debian's redis-server on a free 127.0.0.1 port, no persistence, in a
    private directory.  start() returns None where redis-server is not
    installed."""

    def __init__(self):
        super().__init__("redis")
        self.port = free_port()

    def start(self):
        if shutil.which("redis-server") is None:
            return None
        return self.spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", self.dir,
                           "--maxclients", "4000"], port=self.port)
