#!/usr/bin/env python3
"""The reverse proxy ("proxy PREFIX = UPSTREAM", [upstream NAME]) against real
upstreams started by the test: a small Python upstream that records what it
received (upstream.py), a second spindle, and each failure produced for real
(refused, stalled, garbage, a pooled connection closed as it is reused, an
upstream killed mid-answer, a client gone mid-answer)."""
import json
import socket
import time

from harness import Spindle, Tap, check, eq, free_port, wait_for, wait_port
from httpclient import Conn, build, chunked, read_all
from upstream import Upstream, echo

tap = Tap()


def proxy_conf(port, servers, upstream_extra="", http_extra=""):
    lines = "".join("server = %s\n" % s for s in servers)
    return """
[upstream app]
%s%s
[http main]
listen = 127.0.0.1:%d
return /own = 200 text/plain own
proxy /api = app
%s
""" % (lines, upstream_extra, port, http_extra)


class Setup:
    """A proxy in front of the given upstreams; stopped at the end of the case."""

    def __init__(self, ups, upstream_extra="", http_extra="", servers=None, threads=1):
        self.port = free_port()
        servers = servers or ["127.0.0.1:%d" % u.port for u in ups]
        self.ups = ups
        self.s = Spindle(proxy_conf(self.port, servers, upstream_extra, http_extra),
                         threads=threads)
        self.s.start(ports=[self.port])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.s.stop()
        for u in self.ups:
            u.stop()


def read_chunked(c):
    """The body of a chunked response from Conn c."""
    body = b""
    while True:
        while b"\r\n" not in c.buf:
            c._fill()
        line, _, c.buf = c.buf.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            c.read_exact(2)
            return body
        body += c.read_exact(n)
        eq(c.read_exact(2), b"\r\n", "chunk end")


def seen(resp):
    """What the echo upstream received, from its JSON answer."""
    doc = json.loads(resp.body)
    doc["h"] = {}
    for k, v in doc["headers"]:
        doc["h"].setdefault(k.lower(), []).append(v)
    return doc


@tap.case
def forwards_request_line_and_headers():
    with Setup([Upstream()]) as x, Conn(x.port) as c:
        r = c.request("GET", "/api/x?q=a%20b&r=%2F", {
            "Host": "example.org",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "gone",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Connection": "keep-alive",
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Proto": "https",
            "X-Kept": "yes",
        })
        eq(r.status, 200, "status")
        d = seen(r)
        eq(d["line"], "GET /api/x?q=a%20b&r=%2F HTTP/1.1", "request line")
        eq(d["h"].get("host"), ["example.org"], "Host kept")
        eq(d["h"].get("x-kept"), ["yes"], "end-to-end header")
        for hop in ("connection", "x-hop", "keep-alive", "te", "proxy-connection"):
            check(hop not in d["h"], "hop-by-hop %s forwarded: %r" % (hop, d["h"]))
        eq(d["h"].get("x-forwarded-for"), ["10.0.0.1, 127.0.0.1"], "X-Forwarded-For")
        eq(d["h"].get("x-forwarded-proto"), ["http"], "X-Forwarded-Proto")
        check("via" not in d["h"], "no Via")
        # The client's connection stays open, and so does the upstream's.
        c.send(b"GET /api/again HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n"
               b"X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\r\n")
        r = c.response()
        eq(r.status, 200, "second request")
        eq(seen(r)["h"].get("x-forwarded-for"), ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"],
           "X-Forwarded-For lines joined")
        eq(x.ups[0].conns, 1, "upstream connections (keep-alive pool)")


@tap.case
def routes_on_the_normalised_path():
    with Setup([Upstream()]) as x, Conn(x.port) as c:
        r = c.request("GET", "/api/a/./b/../c%2Fd%20e")
        eq(seen(r)["line"], "GET /api/a/c/d%20e HTTP/1.1", "normalised path forwarded")
        r = c.request("GET", "/api/..%2fown")
        eq((r.status, r.body), (200, b"own"), "/api/..%2fown is /own, not proxied")
        r = c.request("GET", "/apix")
        eq(r.status, 404, "whole segments only")
        r = c.request("GET", "/own")
        eq(r.body, b"own", "exact route")
        eq(len(x.ups[0].requests), 1, "requests that reached the upstream")


@tap.case
def reframes_request_bodies():
    with Setup([Upstream()]) as x, Conn(x.port) as c:
        data = bytes(range(256)) * 300
        r = c.request("POST", "/api/cl", body=data)
        d = seen(r)
        eq(d["body"].encode("latin-1"), data, "Content-Length body")
        eq(d["h"].get("content-length"), [str(len(data))], "Content-Length forwarded")
        r = c.request("PUT", "/api/ch", {"Transfer-Encoding": "chunked"},
                      body=chunked(data, sizes=(1, 7, 4000, 17)))
        d = seen(r)
        eq(d["body"].encode("latin-1"), data, "chunked body")
        eq(d["h"].get("transfer-encoding"), ["chunked"], "chunked re-framed")
        check("content-length" not in d["h"], "no Content-Length with chunked")
        # Expect: 100-continue is answered by spindle, not forwarded.
        c.send(build("POST", "/api/ex", {"Expect": "100-continue", "Content-Length": "5"}))
        r = c.response()
        eq(r.status, 100, "100 Continue from spindle")
        c.send(b"hello")
        d = seen(c.response())
        eq(d["body"], "hello", "body after 100")
        check("expect" not in d["h"], "Expect not forwarded")


def framing_upstream(req, n, k, s):
    path = req[0].split()[1]
    if path == "/api/chunked":
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    if path == "/api/close":
        s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
        return None
    if path == "/api/head":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    if path == "/api/early":
        return (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    if path == "/api/nocontent":
        return b"HTTP/1.1 204 No Content\r\n\r\n"
    return echo(req)


@tap.case
def streams_every_response_framing():
    with Setup([Upstream(framing_upstream)]) as x, Conn(x.port) as c:
        c.send(build("GET", "/api/chunked"))
        st, _, h, _ = c.read_head()
        eq((st, h.get("transfer-encoding"), h.get("x-up")), (200, "chunked", "1"), "chunked head")
        eq(read_chunked(c), b"hello world", "chunked body")
        c.send(build("GET", "/api/close"))
        st, _, h, _ = c.read_head()
        eq(h.get("transfer-encoding"), "chunked", "until-close body re-chunked for HTTP/1.1")
        eq(read_chunked(c), b"until close", "until-close body")
        r = c.request("HEAD", "/api/head")
        eq((r.status, r.header("content-length")), (200, "1234"), "HEAD keeps the length")
        r = c.request("GET", "/api/early")
        eq((r.status, r.header("link")), (103, "</s.css>"), "1xx passed on")
        r = c.response()
        eq((r.status, r.body), (200, b"ok"), "final answer after 1xx")
        r = c.request("GET", "/api/nocontent")
        eq(r.status, 204, "204")
        r = c.request("GET", "/api/last")
        eq(r.status, 200, "the client connection still works")
    # HTTP/1.0 client: a body of unknown length ends with the connection.
    with Setup([Upstream(framing_upstream)]) as x, Conn(x.port) as c:
        c.send(build("GET", "/api/chunked", version="1.0"))
        st, _, h, _ = c.read_head()
        check("transfer-encoding" not in h, "no chunked to HTTP/1.0")
        c.sock.settimeout(5)
        body = c.buf
        while True:
            b = c.sock.recv(65536)
            if not b:
                break
            body += b
        eq(body, b"hello world", "HTTP/1.0 body until close")


def stale_upstream(req, n, k, s):
    """Answers the first request of each connection with keep-alive, then
    closes the connection when the next request arrives, unanswered: what an
    upstream whose idle timeout fires as the connection is reused does."""
    if k == 1:
        return echo(req)
    s.shutdown(socket.SHUT_RDWR)
    return None


@tap.case
def stale_pooled_connection_is_retried_for_idempotent_requests():
    with Setup([Upstream(stale_upstream)]) as x, Conn(x.port) as c:
        for i in range(4):
            r = c.request("GET", "/api/%d" % i)
            eq(r.status, 200, "GET %d" % i)
        check(x.ups[0].conns >= 4, "a fresh connection after each stale one")
        # A POST on a stale pooled connection is not retried: 502.
        r = c.request("POST", "/api/p", body=b"x")
        eq(r.status, 502, "POST on a connection closed as it was reused")


@tap.case
def idle_pooled_connection_closed_by_upstream_is_not_used():
    def closing(req, n, k, s):
        s.sendall(echo(req))
        time.sleep(0.05)
        s.shutdown(socket.SHUT_RDWR)
        return None
    with Setup([Upstream(closing)]) as x, Conn(x.port) as c:
        for i in range(3):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
            time.sleep(0.2)
        eq(c.request("POST", "/api/p", body=b"x").status, 200, "POST after an idle close")
        eq(x.ups[0].conns, 4, "one connection per request")


def bursts(burst, pause):
    """Three bursts of six requests at once through a proxy with keepalive = 3
    (so up to 6 idle within keepalive_burst) and the given keepalive_burst, pause seconds before the third; returns
    the upstream's connection count after each and its open connections at
    the end."""
    def slow(req, n, k, s):
        time.sleep(0.1)  # six requests at once overlap at the upstream
        return echo(req)
    extra = "keepalive = 3\nkeepalive_burst = %s\n" % burst
    with Setup([Upstream(slow)], upstream_extra=extra) as x:
        conns = [Conn(x.port) for _ in range(6)]
        counts = []
        try:
            for pause_before in (0, 0, pause):
                time.sleep(pause_before)
                for c in conns:
                    c.send(b"GET /api/b HTTP/1.1\r\nHost: h\r\n\r\n")
                for c in conns:
                    eq(c.response().status, 200, "burst answer")
                counts.append(x.ups[0].conns)
            wait_for(lambda: len(x.ups[0].open) == counts[-1] - 3, 2)
            return counts, len(x.ups[0].open)
        finally:
            for c in conns:
                c.close()


@tap.case
def a_burst_beyond_keepalive_is_reused_then_trimmed():
    counts, still_open = bursts("3s", 3.5)
    eq(counts[:2], [6, 6], "the next burst within keepalive_burst reuses all six")
    eq(counts[2], 9, "after keepalive_burst only keepalive (3) were kept")
    eq(still_open, 6, "the three trimmed are closed")


@tap.case
def keepalive_burst_0_closes_beyond_keepalive_at_once():
    counts, _ = bursts("0", 0)
    eq(counts, [6, 9, 12], "each burst reconnects all but keepalive (3)")


@tap.case
def refused_server_then_next_then_502():
    dead = free_port()
    u = Upstream()
    with Setup([u], servers=["127.0.0.1:%d" % dead, "127.0.0.1:%d" % u.port],
               upstream_extra="connect_timeout = 500ms\n") as x, Conn(x.port) as c:
        for i in range(6):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET %d past a refused server" % i)
        eq(len(u.requests), 6, "all at the live server")
    with Setup([], servers=["127.0.0.1:%d" % dead]) as x, Conn(x.port) as c:
        eq(c.request("GET", "/api/x").status, 502, "no server left")
        eq(c.request("GET", "/api/y").status, 502, "still none")


@tap.case
def stalled_upstream_504():
    def stall(req, n, k, s):
        time.sleep(2)
        return None
    with Setup([Upstream(stall)], upstream_extra="read_timeout = 300ms\n") as x, \
            Conn(x.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/api/slow")
        eq(r.status, 504, "read timeout")
        check(time.monotonic() - t0 < 1.5, "answered after read_timeout")
        eq(c.request("GET", "/own").status, 200, "client connection kept")


@tap.case
def garbage_502_and_not_reused():
    def garbage(req, n, k, s):
        if n == 1:
            return b"SSH-2.0-OpenSSH\r\n\r\n"
        return echo(req)
    with Setup([Upstream(garbage)]) as x, Conn(x.port) as c:
        eq(c.request("GET", "/api/a").status, 502, "garbage answer")
        eq(c.request("GET", "/api/b").status, 200, "next request")
        eq(x.ups[0].conns, 2, "the garbage connection was not reused")
    # An oversized head is garbage too.
    def big_head(req, n, k, s):
        return b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000 + b"\r\nContent-Length: 0\r\n\r\n"
    with Setup([Upstream(big_head)]) as x, Conn(x.port) as c:
        eq(c.request("GET", "/api/a").status, 502, "head too large")


@tap.case
def upstream_dying_mid_answer_cuts_the_client():
    def lie(req, n, k, s):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.1)
        return None  # closes with 99000 bytes missing
    with Setup([Upstream(lie)]) as x, Conn(x.port) as c:
        c.send(build("GET", "/api/a"))
        st, _, h, _ = c.read_head()
        eq((st, h.get("content-length")), (200, "100000"), "head passed on")
        got = len(c.buf) + len(read_all(c.sock, 5))
        eq(got, 1000, "the client sees the answer cut, then the close")


@tap.case
def client_gone_mid_answer_closes_the_upstream_connection():
    state = {"sent": 0, "cut": False}

    def big(req, n, k, s):
        if req[0].split()[1] != "/api/big":
            return echo(req)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
        try:
            for _ in range(1024):
                s.sendall(b"y" * 65536)
                state["sent"] += 65536
        except OSError:
            state["cut"] = True
        return None
    u = Upstream(big)
    with Setup([u]) as x:
        c = Conn(x.port)
        c.send(build("GET", "/api/big"))
        c.read_head()
        c.read_exact(100000)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        check(wait_for(lambda: state["cut"], 10), "upstream connection closed")
        check(state["sent"] < (64 << 20), "the upstream did not send it all")
        with Conn(x.port) as c2:
            eq(c2.request("GET", "/api/next").status, 200, "next request")
        eq(u.conns, 2, "the cut connection was not pooled")


@tap.case
def passive_health_leaves_a_failing_server_out():
    def bad(req, n, k, s):
        return b"garbage\r\n\r\n"
    b_up, g_up = Upstream(bad), Upstream()
    with Setup([b_up, g_up], servers=["127.0.0.1:%d max_fails=2 fail_timeout=1s" % b_up.port,
                                      "127.0.0.1:%d" % g_up.port]) as x, Conn(x.port) as c:
        statuses = [c.request("GET", "/api/%d" % i).status for i in range(12)]
        eq(statuses.count(502), 2, "502s before the server is marked down")
        eq(len(b_up.requests), 2, "requests to the bad server")
        time.sleep(1.2)
        statuses = [c.request("GET", "/api/%d" % i).status for i in range(4)]
        eq(len(b_up.requests), 3, "tried again after fail_timeout")


@tap.case
def counters_on_the_status_page():
    dead = free_port()
    u = Upstream()
    with Setup([u], servers=["127.0.0.1:%d weight=2" % u.port, "127.0.0.1:%d" % dead],
               http_extra="status = /status\n", threads=2) as x, Conn(x.port) as c:
        for i in range(6):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        d = json.loads(c.request("GET", "/status").body)
        app = d["upstreams"]["app"]
        eq(app["requests"], 6, "requests proxied")
        eq(app["bad_gateway"], 0, "502s")
        eq(app["idle"], 1, "idle pooled connections")
        live, gone = app["servers"]
        eq((live["server"], live["weight"]), ("127.0.0.1:%d" % u.port, 2), "first server")
        eq(live["requests"], 6, "requests to the live server")
        eq(gone["server"], "127.0.0.1:%d" % dead, "second server")
        eq(gone["fails"], 1, "the refused server's failures")
        eq(gone["down_threads"], 1, "left out by the thread that saw it fail")


@tap.case
def active_health_check_leaves_a_sick_server_out():
    state = {"sick": True}

    def app(req, n, k, s):
        if req[0].split()[1] == "/healthz":
            if state["sick"]:
                return b"HTTP/1.1 503 Sick\r\nContent-Length: 0\r\n\r\n"
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        return echo(req)
    a, b = Upstream(app), Upstream()
    with Setup([a, b], upstream_extra="health_check = /healthz 200ms\n",
               http_extra="status = /status\n") as x, Conn(x.port) as c:
        check(wait_for(lambda: any(r[0].startswith("GET /healthz ") for r in a.requests), 5),
              "health check sent")
        time.sleep(0.1)
        n = len([r for r in a.requests if "/healthz" not in r[0]])
        for i in range(6):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        eq(len([r for r in a.requests if "/healthz" not in r[0]]), n, "requests to the sick server")
        srv = json.loads(c.request("GET", "/status").body)["upstreams"]["app"]["servers"]
        eq((srv[0]["healthy"], srv[1]["healthy"]), (False, True), "health on the status page")
        check(srv[0]["checks_failed"] >= 1, "failed checks counted")
        hc = [r for r in a.requests if r[0].startswith("GET /healthz ")][0]
        check(("Host", "127.0.0.1:%d" % a.port) in hc[1], "the check's Host: %r" % hc[1])
        state["sick"] = False
        time.sleep(0.5)
        for i in range(6):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        check(len([r for r in a.requests if "/healthz" not in r[0]]) >= 2, "healthy again")


@tap.case
def weighted_round_robin():
    a, b = Upstream(), Upstream()
    with Setup([a, b], servers=["127.0.0.1:%d weight=3" % a.port, "127.0.0.1:%d" % b.port]) \
            as x, Conn(x.port) as c:
        for i in range(8):
            eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        eq((len(a.requests), len(b.requests)), (6, 2), "3:1")


@tap.case
def least_conn_avoids_the_busy_server():
    import threading

    def slow(req, n, k, s):
        if req[0].split()[1] == "/api/slow":
            time.sleep(1.5)
        return echo(req)
    a, b = Upstream(slow), Upstream(slow)
    with Setup([a, b], upstream_extra="balance = least_conn\n") as x:
        done = []
        t = threading.Thread(target=lambda: done.append(
            Conn(x.port).request("GET", "/api/slow").status))
        t.start()
        check(wait_for(lambda: len(a.requests) + len(b.requests) == 1, 5), "slow request sent")
        busy = a if a.requests else b
        with Conn(x.port) as c:
            for i in range(6):
                eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        eq(len(busy.requests), 1, "requests to the busy server while it was busy")
        t.join()
        eq(done, [200], "the slow request")
        # Idle again: both servers share the load.
        with Conn(x.port) as c:
            for i in range(4):
                c.request("GET", "/api/%d" % i)
        check(len(busy.requests) >= 2, "the busy server gets requests again")


@tap.case
def hash_keeps_a_client_on_its_server():
    a, b, d = Upstream(), Upstream(), Upstream()
    ups = [a, b, d]
    with Setup(ups, upstream_extra="balance = hash\n") as x:
        for i in range(9):
            with Conn(x.port) as c:
                eq(c.request("GET", "/api/%d" % i).status, 200, "GET")
        counts = sorted(len(u.requests) for u in ups)
        eq(counts, [0, 0, 9], "one client address, one server")
    # Its server gone, the client moves to another one, always the same.
    a, b, d = Upstream(), Upstream(), Upstream()
    ups = [a, b, d]
    with Setup(ups, upstream_extra="balance = hash\n") as x:
        with Conn(x.port) as c:
            c.request("GET", "/api/first")
        mine = [u for u in ups if u.requests][0]
        mine.stop()
        with Conn(x.port) as c:
            for i in range(6):
                eq(c.request("GET", "/api/%d" % i).status, 200, "GET past the dead server")
        counts = sorted(len(u.requests) for u in ups if u is not mine)
        eq(counts, [0, 6], "the next server by hash, always the same")


@tap.case
def second_spindle_as_upstream():
    up_port = free_port()
    up = Spindle("[http up]\nlisten = 127.0.0.1:%d\nreturn /api/hi = 200 text/plain hi there\n"
                 % up_port)
    try:
        up.start(ports=[up_port])
        with Setup([], servers=["127.0.0.1:%d" % up_port], threads=2) as x:
            for _ in range(3):
                with Conn(x.port) as c:
                    for i in range(20):
                        r = c.request("GET", "/api/hi")
                        eq((r.status, r.body), (200, b"hi there"), "through spindle")
                    r = c.request("HEAD", "/api/hi")
                    eq((r.status, r.header("content-length")), (200, "8"), "HEAD")
                    r = c.request("GET", "/api/none")
                    eq(r.status, 404, "the upstream's 404")
    finally:
        up.stop()


@tap.case
def reload_changes_upstreams_with_no_failed_request():
    from loadgen import HttpLoad
    pa, pb, port = free_port(), free_port(), free_port()
    a = Spindle("[http a]\nlisten = 127.0.0.1:%d\nreturn /api/x = 200 text/plain A\n" % pa)
    b = Spindle("[http b]\nlisten = 127.0.0.1:%d\nreturn /api/x = 200 text/plain B\n" % pb)
    confs = [["127.0.0.1:%d" % pa],
             ["127.0.0.1:%d weight=1" % pa, "127.0.0.1:%d weight=5" % pb],
             ["127.0.0.1:%d" % pb]]
    extras = ["", "read_timeout = 5s\nkeepalive = 4\n", "connect_timeout = 200ms\n"]
    p = Spindle(proxy_conf(port, confs[0]), workers=2, shutdown_timeout="5s")
    load = None
    try:
        a.start(ports=[pa])
        b.start(ports=[pb])
        p.start(ports=[port])
        load = HttpLoad(port, conns=16, keepalive=True, path="/api/x", body=(b"A", b"B")).start()
        check(load.wait_requests(200), "load never got going: " + load.summary())
        for i in range(1, 7):
            p.write_conf(proxy_conf(port, confs[i % 3], extras[i % 3]), workers=2,
                         shutdown_timeout="5s")
            rc, out = p.ctl("reload")
            eq(rc, 0, "reload %d (%s)" % (i, out))
            check(load.wait_requests(200), "load stalled after reload %d: %s" % (i, load.summary()))
        # The last configuration has B alone.
        p.write_conf(proxy_conf(port, confs[2]), workers=2, shutdown_timeout="5s")
        eq(p.ctl("reload")[0], 0, "last reload")
        time.sleep(0.5)
        for _ in range(5):
            with Conn(port) as c:
                eq(c.request("GET", "/api/x").body, b"B", "only B after the last reload")
        load.stop()
        eq(load.failed, 0, "failed requests: " + load.summary())
        print("# " + load.summary(), flush=True)
    finally:
        if load:
            load.stop()
        p.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    tap.run()
