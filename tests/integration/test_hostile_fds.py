#!/usr/bin/env python3
"""Descriptor exhaustion: a worker started with RLIMIT_NOFILE = 64 and more
clients than that.  accept backs off instead of spinning, the connections
it has keep working, and service resumes once descriptors are free."""
import re
import socket
import time

from harness import Tap, check, eq, fd_count, free_port, wait_for
from hostile import LimitedSpindle, cpu_share, exchange, get_ok, peer_ports

tap = Tap()
PORT = free_port()
NOFILE = 64
HOGS = 100
S = None
WORKER = None
GOOD = None
HOG_SOCKS = []
REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def setup():
    global S, WORKER
    S = LimitedSpindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
""" % PORT, nofile=NOFILE, workers=1, master="slots = 1")
    S.start(ports=[PORT])
    WORKER = S.wait_workers(1)[0]


def ask(sock, timeout=3.0):
    """One keep-alive request on sock; True when answered 200."""
    sock.settimeout(timeout)
    sock.sendall(REQ)
    buf = b""
    try:
        while not buf.endswith(b"AAA"):
            chunk = sock.recv(4096)
            if not chunk:
                return False
            buf += chunk
    except socket.timeout:
        return False
    return buf.startswith(b"HTTP/1.1 200 ")


@tap.case
def a_keepalive_client_connects_first():
    global GOOD
    GOOD = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    check(ask(GOOD), "first request")


@tap.case
def hogs_exhaust_the_workers_descriptors():
    for _ in range(HOGS):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        s.sendall(REQ)
        HOG_SOCKS.append(s)
    # Accepted hogs are answered at once; the rest wait in the accept queue.
    # Wait until the worker is at its limit and every hog it holds has its answer.
    wait_for(lambda: fd_count(WORKER) >= NOFILE - 2, 10)
    hog_ports = {s.getsockname()[1] for s in HOG_SOCKS}
    got = set()

    def all_held_answered():
        for s in HOG_SOCKS:
            if s not in got:
                s.setblocking(False)
                try:
                    if s.recv(4096).startswith(b"HTTP/1.1 200 "):
                        got.add(s)
                except BlockingIOError:
                    pass
                s.setblocking(True)
        return len(got) >= len(peer_ports(WORKER) & hog_ports)
    wait_for(all_held_answered, 10)
    answered = len(got)
    fds = fd_count(WORKER)
    print("# %d of %d hogs answered; worker holds %d fds (limit %d)"
          % (answered, HOGS, fds, NOFILE), flush=True)
    check(0 < answered < HOGS, "some hogs served, some left waiting (%d)" % answered)
    check(fds >= NOFILE - 2, "the worker is at its descriptor limit (%d fds)" % fds)


def accept_warnings():
    return len(re.findall(r"accept4\(\d+\) failed: Too many open files", S.logs()))


@tap.case
def accept_backs_off_without_spinning():
    w0 = accept_warnings()
    share = cpu_share(WORKER, 2.0)
    warnings = accept_warnings() - w0
    print("# worker CPU at the fd limit: %.1f %% of a core; %d accept warnings in 2 s"
          % (share * 100, warnings), flush=True)
    check(share < 0.2, "worker CPU %.1f %% < 20 %%" % (share * 100))
    check(w0 >= 1, "the exhaustion is logged")
    check(warnings <= 3, "at most one warning a second (%d in 2 s)" % warnings)


@tap.case
def existing_connections_keep_working():
    for i in range(10):
        check(ask(GOOD), "request %d on the first connection" % i)


@tap.case
def service_resumes_when_descriptors_free_up():
    for s in HOG_SOCKS:
        s.close()
    t0 = time.monotonic()
    ok = False
    while not ok and time.monotonic() - t0 < 5:
        try:
            ok = get_ok(PORT, timeout=3)
        except OSError:
            time.sleep(0.05)
    took = time.monotonic() - t0
    print("# a new connection was served %.2f s after the hogs closed" % took, flush=True)
    check(ok, "a new request succeeds")
    check(ask(GOOD), "the first connection still works")
    eq(S.workers(), [WORKER], "same worker")


@tap.case
def worker_descriptors_return_to_normal():
    GOOD.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and fd_count(WORKER) > 20:
        time.sleep(0.1)
    fds = fd_count(WORKER)
    check(fds <= 20, "worker fds back down (%d)" % fds)
    st, _, _, s = exchange(PORT, REQ)
    s.close()
    eq(st, 200, "status")


setup()
tap.run()
