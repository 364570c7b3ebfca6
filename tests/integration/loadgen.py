"""Load for the master's integration tests: many client threads doing HTTP
request/response loops against 127.0.0.1, each failure recorded with its
reason, plus helpers that look at processes through /proc.

A failure is anything a user would notice: a refused or reset connection, a
timeout, an end of stream before a whole response, a status other than 200
or a wrong body.  A response carrying "Connection: close" followed by a new
connection is the server's clean way out, not a failure.
"""
import os
import socket
import threading
import time

from harness import recv_response


class HttpLoad:
    """conns threads, each sending GET path in a loop.

    keepalive=True: one connection per thread, reused until the server says
    "Connection: close" (then a new one).  keepalive=False: a new connection
    for every request, sent with "Connection: close".  body: the body every
    response must carry, a tuple of those allowed, or None for any.
    """

    def __init__(self, port, conns=64, keepalive=True, path="/plaintext", body=b"Hello, World!",
                 host="127.0.0.1", timeout=5.0):
        self.port = port
        self.conns = conns
        self.keepalive = keepalive
        self.path = path
        self.body = body
        self.host = host
        self.timeout = timeout
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.closed_by_server = 0
        # (time, thread, local port or None, message, fresh): fresh is True when
        # the failure hit the first request of a new connection.
        self.errors = []
        self.local_ports = {}  # thread -> current local port
        self.stopping = threading.Event()
        self.threads = []

    def _fail(self, tid, lport, msg, fresh):
        with self.lock:
            self.failed += 1
            if len(self.errors) < 200:
                self.errors.append((time.monotonic(), tid, lport, msg, fresh))

    def _run(self, tid):
        req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
               % (self.path, "" if self.keepalive else "Connection: close\r\n")).encode()
        s = None
        lport = None
        fresh = True
        while not self.stopping.is_set():
            try:
                if s is None:
                    lport = None
                    fresh = True
                    s = socket.create_connection((self.host, self.port), timeout=self.timeout)
                    lport = s.getsockname()[1]
                    self.local_ports[tid] = lport
                s.sendall(req)
                status, headers, body = recv_response(s)
            except (OSError, ConnectionError, ValueError, IndexError) as e:
                self._fail(tid, lport, "%s: %s" % (type(e).__name__, e), fresh)
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.01)
                continue
            allowed = self.body if isinstance(self.body, tuple) else (self.body,)
            if status != 200 or (self.body is not None and body not in allowed):
                self._fail(tid, lport, "status %d body %r" % (status, body[:80]), fresh)
            else:
                with self.lock:
                    self.ok += 1
            fresh = False
            if not self.keepalive or headers.get("connection", "").lower() == "close":
                if self.keepalive:
                    with self.lock:
                        self.closed_by_server += 1
                s.close()
                s = None
        if s is not None:
            s.close()

    def start(self):
        for i in range(self.conns):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 2)
        return self

    def count(self):
        with self.lock:
            return self.ok

    def wait_requests(self, n, timeout=10.0):
        """Waits until n more requests have succeeded; returns True if they did."""
        target = self.count() + n
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= target:
                return True
            time.sleep(0.01)
        return False

    def summary(self):
        return "ok=%d failed=%d closed_by_server=%d errors=%r" % (
            self.ok, self.failed, self.closed_by_server, self.errors[:10])


def wait_ready(sp, n, timeout=5.0):
    """See harness.Spindle.wait_ready."""
    return sp.wait_ready(n, timeout)


# ---- /proc ------------------------------------------------------------------

def socket_inodes(pid):
    """Inodes of the sockets pid holds open."""
    out = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def tcp_table():
    """{inode: (local port, remote port, state)} of the IPv4 TCP sockets."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].split(":")[1], 16)
            rport = int(parts[2].split(":")[1], 16)
            out[int(parts[9])] = (lport, rport, parts[3])
    return out


def peer_ports_of(pid, server_port):
    """Remote (client) ports of the connections pid has accepted on server_port."""
    table = tcp_table()
    ports = set()
    for ino in socket_inodes(pid):
        e = table.get(ino)
        if e and e[0] == server_port and e[1] != 0:
            ports.add(e[1])
    return ports


def listening_on(port):
    """True if some socket listens on 127.0.0.1:port or *:port (IPv4)."""
    for lport, rport, state in tcp_table().values():
        if lport == port and state == "0A":
            return True
    return False


def children(pid):
    """Live children of pid, cheaply (the task's children list), else from harness."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return sorted(int(p) for p in f.read().split())
    except OSError:
        from harness import children_of
        return children_of(pid)


def fd_targets(pid):
    """Sorted list of what pid's fds point to, for leak reports."""
    out = []
    try:
        for n in os.listdir("/proc/%d/fd" % pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (pid, n)))
            except OSError:
                pass
    except OSError:
        pass
    return sorted(out)
