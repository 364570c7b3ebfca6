#!/usr/bin/env python3
"""Two spindle instances behind Debian's haproxy (send-proxy-v2, health checks
on /healthz): one stopped gracefully (SIGQUIT, drain_delay) and the other
reloaded (SIGHUP) while 64 keep-alive clients keep haproxy busy, with no
failed request; the client's address travels through the PROXY header.

SPINDLE_HAPROXY_DRAIN_DELAY=0 runs the load case without drain_delay, to see
what it prevents (not part of `make check`)."""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import Daemon, Spindle, Tap, check, eq, free_port, need, wait_for, wait_port

tap = Tap()

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
# The clients connect from another loopback address than haproxy's, so that
# the address spindle logs can only have come from the PROXY header.
CLIENT_ADDR = "127.0.0.2"


class Instance:
    def __init__(self, name, drain_delay):
        self.name = name
        self.port = free_port()
        self.sp = Spindle("", workers=2)
        self.access_log = os.path.join(self.sp.dir, "access.log")
        self.sp.write_conf(
            "[http main]\nlisten = 127.0.0.1:%d proxy_protocol\nhealth = /healthz\n"
            "access_log = %s\nreturn / = 200 text/plain %s\n"
            % (self.port, self.access_log, name),
            master="drain_delay = %s" % drain_delay, workers=2)
        self.sp.start(ports=[self.port])
        self.sp.wait_ready(2)

    def addresses(self):
        """{request line: the set of client addresses logged for it}."""
        seen = {}
        try:
            with open(self.access_log) as f:
                for m in re.finditer(r'^(\S+) .*?"([^"]*)"', f.read(), re.M):
                    seen.setdefault(m.group(2), set()).add(m.group(1))
        except OSError:
            pass
        return seen


class Haproxy(Daemon):
    def __init__(self, servers):
        super().__init__("haproxy")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.log = os.path.join(self.dir, "haproxy.out")
        lines = "".join(
            "    server %s 127.0.0.1:%d send-proxy-v2 check inter 100ms fall 1 rise 2\n"
            % (s.name, s.port) for s in servers)
        with open(self.cfg, "w") as f:
            f.write("""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A check answered late under load is no failure; a 503 is seen at once.
    timeout check 2s

frontend fe
    bind 127.0.0.1:%d
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
%s""" % (self.port, lines))
        with open(self.log, "wb") as out:
            self.spawn([HAPROXY, "-f", self.cfg, "-db"], stdout=out, stderr=subprocess.STDOUT)
        if not wait_port(self.port, timeout=5):
            raise AssertionError("haproxy did not start:\n" + self.output())

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-4000:]


class Load:
    """threads keep-alive clients (http.client) in a loop; every answer is
    recorded as (time, body), every failure with its reason."""

    def __init__(self, port, threads=64):
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answers = []
        self.failures = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        c = None
        while not self.stopping.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                   source_address=(CLIENT_ADDR, 0))
                c.request("GET", "/")
                r = c.getresponse()
                body = r.read()
                with self.lock:
                    if r.status == 200:
                        self.answers.append((time.monotonic(), body))
                    else:
                        self.failures.append((time.monotonic(), "status %d %r" % (r.status,
                                                                                 body[:60])))
                if r.will_close:
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append((time.monotonic(), "%s: %s" % (type(e).__name__, e)))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)

    def served(self, body, since=0.0, until=float("inf")):
        with self.lock:
            return sum(1 for t, b in self.answers if b == body and since <= t < until)


def both_up(ha):
    """Both servers pass their checks: each answers through haproxy."""
    seen = set()
    for _ in range(40):
        c = http.client.HTTPConnection("127.0.0.1", ha.port, timeout=5,
                                       source_address=(CLIENT_ADDR, 0))
        c.request("GET", "/")
        r = c.getresponse()
        if r.status == 200:
            seen.add(r.read())
        c.close()
    return seen == {b"A", b"B"}


@tap.case
def drain_one_and_reload_the_other_under_load_without_a_failure():
    need(os.access(HAPROXY, os.X_OK), "haproxy is not installed (Debian package haproxy)")
    delay = os.environ.get("SPINDLE_HAPROXY_DRAIN_DELAY", "1s")
    a, b = Instance("A", delay), Instance("B", "1s")
    ha = None
    load = None
    try:
        ha = Haproxy([a, b])
        check(wait_for(lambda: both_up(ha), 10), "servers not up:\n" + ha.output())
        load = Load(ha.port).start()
        t_start = time.monotonic()
        time.sleep(1.5)
        t_quit = time.monotonic()
        a.sp.signal(signal.SIGQUIT)
        time.sleep(1.0)
        old = b.sp.workers()
        t_hup = time.monotonic()
        b.sp.signal(signal.SIGHUP)
        b.sp.wait_workers(2, timeout=10, exclude=old)
        t_reloaded = time.monotonic()
        check(a.sp.wait_exit(10) is not None, "A did not exit")
        t_a_gone = time.monotonic()
        time.sleep(max(0.0, 6.0 - (t_a_gone - t_quit)))
        load.stop()
        t_end = time.monotonic()

        n = len(load.answers)
        check(n > 1000, "only %d answers" % n)
        check(not load.failures, "failed requests: %d of %d; first: %r; stop at %.2f, reload "
              "at %.2f..%.2f, A gone at %.2f; haproxy says:\n%s"
              % (len(load.failures), n + len(load.failures),
                 [(round(t - t_quit, 3), m) for t, m in load.failures[:5]], 0.0, t_hup - t_quit,
                 t_reloaded - t_quit, t_a_gone - t_quit, ha.output()))
        check(load.served(b"A", until=t_quit) > 50, "A served before its stop")
        check(load.served(b"B", until=t_quit) > 50, "B served before A's stop")
        check(load.served(b"B", since=t_hup, until=t_reloaded) > 0, "B served during its reload")
        check(load.served(b"B", since=t_reloaded) > 50, "B served after its reload")
        eq(load.served(b"A", since=t_a_gone), 0, "A served after it exited")
        # The clients' address, carried by haproxy's PROXY header; haproxy's
        # own checks come as LOCAL: the connection's own address.
        b.sp.signal(signal.SIGTERM)  # its workers flush their access logs as they exit
        check(b.sp.wait_exit(10) is not None, "B did not exit")
        for i in (a, b):
            eq(i.addresses(), {"GET / HTTP/1.1": {CLIENT_ADDR},
                               "GET /healthz HTTP/1.0": {"127.0.0.1"}},
               "addresses in %s's access log" % i.name)
        print("# %d requests in %.1f s, A %d, B %d"
              % (n, t_end - t_start, load.served(b"A"), load.served(b"B")))
    finally:
        if load:
            load.stopping.set()
        if ha:
            ha.stop()
        a.sp.stop()
        b.sp.stop()


if __name__ == "__main__":
    tap.run()
