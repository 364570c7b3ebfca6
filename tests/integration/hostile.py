"""Helpers for the hardening tests: descriptor limits, CPU and memory of a
process read from /proc, which TCP peers a process holds, a raw one-shot
exchange that reports a status or a close, and percentiles.

Everything talks to 127.0.0.x only.
"""
import os
import re
import resource
import socket
import subprocess
import time

import harness
from harness import Spindle


def raise_nofile(want=65536):
    """Raises this process's soft RLIMIT_NOFILE to min(want, hard limit);
    children started from now on inherit it.  Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return max(new, soft)


def nofile_hard():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 30 if hard == resource.RLIM_INFINITY else hard


class LimitedSpindle(Spindle):
    """A Spindle whose master (and so every worker) runs with RLIMIT_NOFILE
    set to nofile (soft and hard).  Stopped by pid like any other."""

    def __init__(self, services, nofile, **kw):
        super().__init__(services, **kw)
        self.nofile = nofile

    def start(self, ports=(), timeout=5.0, args=()):
        n = self.nofile

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

        outf = open(self.out, "ab")
        self.proc = subprocess.Popen([harness.BIN, "-c", self.conf] + list(args), stdout=outf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.dir, preexec_fn=limit)
        outf.close()
        harness._running.append(self)
        for p in ports:
            if not harness.wait_port(p, timeout=timeout):
                raise AssertionError("spindle did not listen on %d; log:\n%s" % (p, self.logs()))
        return self


# ---- /proc ------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_share(pid, seconds=2.0):
    """Share of one core pid used over the next seconds (0.25 = 25 %)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def _socket_inodes(pid):
    out = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for name in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            out.add(m.group(1))
    return out


def peer_ports(pid):
    """Remote ports of the IPv4 TCP connections pid holds: for a server
    process, the local ports of its clients."""
    inodes = _socket_inodes(pid)
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[9] in inodes and parts[3] == "01":  # ESTABLISHED
                ports.add(int(parts[2].split(":")[1], 16))
    return ports


# ---- raw exchanges ---------------------------------------------------------

def parse_status(data):
    """The status code of the first response in data, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return int(m.group(1)) if m else None


def response_end(buf):
    """Length of the first complete response in buf (Content-Length framed),
    or None while incomplete."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    m = re.search(rb"\r\ncontent-length: *(\d+)", buf[:i], re.I)
    n = int(m.group(1)) if m else 0
    return i + 4 + n if len(buf) >= i + 4 + n else None


def exchange(port, raw, timeout=3.0, host="127.0.0.1"):
    """Sends raw on a new connection and reads the first response.

    Returns (status or None, head bytes, closed, sock): closed is True when
    the server ended the connection (EOF or reset) right after the response
    (or without any).  The caller closes sock."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(raw)
    except OSError:
        pass  # the server may answer and close before taking everything
    buf = b""
    closed = False
    deadline = time.monotonic() + timeout
    while response_end(buf) is None and time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
    end = response_end(buf)
    rest = buf[end:] if end is not None else b""
    if not closed and end is not None and not rest:
        # Wait briefly for the close that follows an error response.
        s.settimeout(0.5 if timeout > 0.5 else timeout)
        try:
            more = s.recv(65536)
            closed = not more
            rest = more
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
        s.settimeout(timeout)
    if rest:
        raise AssertionError("bytes after the first response: %r" % rest[:200])
    head = buf[:buf.find(b"\r\n\r\n")] if b"\r\n\r\n" in buf else buf
    return parse_status(buf), head, closed, s


def get_ok(port, path="/a", host="127.0.0.1", timeout=3.0):
    """One GET with Connection: close; True when it gets a 200."""
    req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode()
    st, _, _, s = exchange(port, req, timeout=timeout, host=host)
    s.close()
    return st == 200


def percentile(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]
