"""systemd's readiness protocol: with NOTIFY_SOCKET set, the master reports
READY=1 (with its pid) once the workers serve, RELOADING=1 / READY=1 around
each reload (also a failed one), STOPPING=1 on shutdown, and the workers do
not inherit the variable."""
import os
import signal
import socket
import tempfile
import time

from harness import Spindle, Tap, check, eq, free_port, http_get

tap = Tap()


def services(port):
    return ("[http main]\nlisten = 127.0.0.1:%d\n"
            "return /plaintext = 200 text/plain Hello, World!\n" % port)


class Notify:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="spindle-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def recv(self, timeout=5.0):
        """The next datagram as a dict of its KEY=VALUE lines."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError("no notification within %.1fs" % timeout)
        fields = {}
        for line in data.decode().split("\n"):
            k, _, v = line.partition("=")
            fields[k] = v
        return fields

    def expect(self, key, timeout=5.0):
        """Skips datagrams until one carries key; returns it."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            check(left > 0, "no %s within %.1fs; got %r" % (key, timeout, seen))
            msg = self.recv(left)
            if key in msg:
                return msg
            seen.append(msg)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def start(sp, port, notify):
    os.environ["NOTIFY_SOCKET"] = notify.path
    try:
        sp.start(ports=[port])
    finally:
        del os.environ["NOTIFY_SOCKET"]


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


@tap.case
def ready_after_start_with_master_pid():
    port = free_port()
    notify = Notify()
    sp = Spindle(services(port), workers=2)
    try:
        start(sp, port, notify)
        msg = notify.expect("READY")
        eq(msg["READY"], "1", "READY")
        eq(int(msg.get("MAINPID", "0")), sp.pid, "MAINPID")
        eq(msg.get("STATUS"), "2 workers ready", "STATUS")
        # READY means serving.
        eq(http_get(port, "/plaintext")[0], 200, "status after READY")
        workers = sp.wait_ready(2)
        for pid in workers:
            check(b"NOTIFY_SOCKET" not in environ_of(pid),
                  "worker %d inherited NOTIFY_SOCKET" % pid)
    finally:
        sp.stop()
        notify.close()


@tap.case
def reload_reports_reloading_then_ready():
    port = free_port()
    notify = Notify()
    sp = Spindle(services(port), workers=1)
    try:
        start(sp, port, notify)
        notify.expect("READY")
        sp.wait_ready(1)
        before = time.monotonic()
        rc, out = sp.ctl("reload")
        after = time.monotonic()
        eq(rc, 0, "reload exit code (%s)" % out)
        msg = notify.recv()
        eq(msg.get("RELOADING"), "1", "first message of a reload: %r" % msg)
        usec = int(msg["MONOTONIC_USEC"])
        check(before - 0.05 <= usec / 1e6 <= after + 0.05,
              "MONOTONIC_USEC %d outside [%f, %f]" % (usec, before, after))
        msg = notify.recv()
        eq(msg.get("READY"), "1", "after RELOADING: %r" % msg)
        eq(msg.get("STATUS"), "reloaded: generation 2", "STATUS")
        # Workers of the new generation do not see the variable either.
        for pid in sp.wait_ready(1):
            check(b"NOTIFY_SOCKET" not in environ_of(pid),
                  "worker %d inherited NOTIFY_SOCKET" % pid)

        # A broken configuration: the reload fails, and systemd still hears READY.
        with open(sp.conf, "a") as f:
            f.write("this is not a key\n")
        rc, out = sp.ctl("reload")
        eq(rc, 1, "broken reload exit code (%s)" % out)
        msg = notify.recv()
        eq(msg.get("RELOADING"), "1", "failed reload starts with RELOADING: %r" % msg)
        msg = notify.recv()
        eq(msg.get("READY"), "1", "failed reload ends with READY: %r" % msg)
        check("failed" in msg.get("STATUS", ""), "STATUS of a failed reload: %r" % msg)
        eq(http_get(port, "/plaintext")[0], 200, "still serving")
    finally:
        sp.stop()
        notify.close()


@tap.case
def sigquit_reports_stopping():
    port = free_port()
    notify = Notify()
    sp = Spindle(services(port), workers=1)
    try:
        start(sp, port, notify)
        notify.expect("READY")
        sp.wait_ready(1)
        sp.signal(signal.SIGQUIT)
        msg = notify.recv()
        eq(msg.get("STOPPING"), "1", "after SIGQUIT: %r" % msg)
        eq(sp.wait_exit(10), 0, "exit status")
    finally:
        sp.stop()
        notify.close()


@tap.case
def abstract_socket_name():
    """NOTIFY_SOCKET=@name is a socket in the abstract namespace."""
    port = free_port()
    name = "spindle-notify-test-%d-%d" % (os.getpid(), port)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sp = Spindle(services(port), workers=1)
    try:
        os.environ["NOTIFY_SOCKET"] = "@" + name
        try:
            sp.start(ports=[port])
        finally:
            del os.environ["NOTIFY_SOCKET"]
        sock.settimeout(5)
        data = sock.recv(4096).decode()
        check("READY=1" in data.split("\n"), "datagram on @%s: %r" % (name, data))
        check("MAINPID=%d" % sp.pid in data.split("\n"), "MAINPID in %r" % data)
    finally:
        sp.stop()
        sock.close()


if __name__ == "__main__":
    tap.run()
