#!/usr/bin/env python3
"""HTTP/1.x protocol behaviour of the http service against the real binary:
keep-alive, HTTP/1.0, HEAD, Expect, request bodies, pipelining (split at
every byte), idle connections, the status page, the access log, many clients,
and the same in multi-thread mode."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import Spindle, Tap, check, eq, free_port, wait_for
from httpclient import Conn, build, chunked, run_clients, write_file

tap = Tap()
PORT = free_port()
SHORT = free_port()
MT = free_port()
S = None
SMT = None
ROOT = None
ACCESS = None


def services(root, access, port, short_port):
    return """
[http main]
listen = 127.0.0.1:%d
root = %s
status = /status
return /plaintext = 200 text/plain Hello, World!
return /a = 200 text/plain AAA
return /b = 200 text/plain BBBB
return /c = 200 text/plain CCCCC
return /json = 200 application/json {"message":"Hello, World!"}
return /teapot = 418 text/plain short and stout
return /empty = 204 text/plain
access_log = %s

[http short]
listen = 127.0.0.1:%d
return /plaintext = 200 text/plain Hello, World!
keepalive_timeout = 300ms
header_timeout = 300ms
body_timeout = 300ms
""" % (port, root, access, short_port)


def setup():
    global S, SMT, ROOT, ACCESS
    S = Spindle("")
    ROOT = os.path.join(S.dir, "www")
    ACCESS = os.path.join(S.dir, "access.log")
    write_file(os.path.join(ROOT, "index.html"), "<h1>home</h1>\n")
    S.write_conf(services(ROOT, ACCESS, PORT, SHORT))
    S.start(ports=[PORT, SHORT])
    SMT = Spindle(services(ROOT, os.path.join(S.dir, "access-mt.log"), MT, free_port()),
                  threads=4)
    SMT.start(ports=[MT])


def get(c, path, **kw):
    return c.request("GET", path, **kw)


@tap.case
def keep_alive_serves_many_requests_on_one_connection():
    with Conn(PORT) as c:
        for i in range(20):
            r = get(c, "/plaintext")
            eq(r.status, 200, "status")
            eq(r.body, b"Hello, World!", "body")
            eq(r.header("content-length"), "13", "length")
            eq(r.header("content-type"), "text/plain", "type")
            eq(r.header("server"), "spindle", "server")
            check(r.header("connection") is None, "no Connection header on 1.1 keep-alive")
        r = get(c, "/")
        eq(r.body, b"<h1>home</h1>\n", "index on the same connection")


@tap.case
def date_header_is_an_imf_fixdate_of_now():
    with Conn(PORT) as c:
        r = get(c, "/plaintext")
    d = r.header("date")
    check(re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                   r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$", d or ""), "date %r" % d)
    t = time.mktime(time.strptime(d, "%a, %d %b %Y %H:%M:%S GMT")) - time.timezone
    check(abs(t - time.time()) < 5, "date %r is now" % d)


@tap.case
def connection_close_ends_the_connection():
    with Conn(PORT) as c:
        r = get(c, "/plaintext", headers={"Connection": "close"})
        eq(r.status, 200, "status")
        eq(r.header("connection"), "close", "Connection header")
        check(c.closed(), "server closed")
    # Requests pipelined after the closing one are not answered, and the
    # answer to the closing one still arrives whole.
    with Conn(PORT) as c:
        c.send(build("GET", "/a", headers={"Connection": "close"}) + build("GET", "/b") * 50)
        eq(c.response().body, b"AAA", "answer to the closing request")
        check(c.closed(), "nothing more")


@tap.case
def http10_closes_unless_keep_alive_is_asked():
    with Conn(PORT) as c:
        r = get(c, "/plaintext", version="1.0")
        eq(r.status, 200, "status")
        eq(r.body, b"Hello, World!", "body")
        eq(r.header("connection"), "close", "Connection header")
        check(c.closed(), "1.0 connection closed")
    with Conn(PORT) as c:
        for _ in range(3):
            r = get(c, "/a", version="1.0", headers={"Connection": "keep-alive"})
            eq(r.status, 200, "status")
            eq(r.header("connection"), "keep-alive", "keep-alive confirmed")
        r = get(c, "/a", version="1.0")
        eq(r.header("connection"), "close", "last 1.0 request closes")
        check(c.closed(), "closed")


@tap.case
def head_has_the_get_headers_and_no_body():
    with Conn(PORT) as c:
        # HEAD then GET pipelined: a body after the HEAD would corrupt the GET.
        c.send(build("HEAD", "/plaintext") + build("GET", "/b"))
        h = c.response(head_only=True)
        eq(h.status, 200, "HEAD status")
        eq(h.header("content-length"), "13", "HEAD keeps the GET length")
        g = c.response()
        eq(g.body, b"BBBB", "next response intact")
        h = c.request("HEAD", "/")
        eq(h.header("content-length"), "14", "HEAD of a file")
        eq(get(c, "/c").body, b"CCCCC", "still in sync")


@tap.case
def return_answers_get_head_post_and_405_otherwise():
    with Conn(PORT) as c:
        eq(c.request("POST", "/json", body=b"x=1").body, b'{"message":"Hello, World!"}', "POST")
        eq(c.request("POST", "/json").header("content-type"), "application/json", "type")
        r = c.request("DELETE", "/plaintext")
        eq(r.status, 405, "DELETE")
        eq(r.header("allow"), "GET, HEAD, POST", "Allow")
        eq(get(c, "/a").body, b"AAA", "connection kept after 405")
        r = get(c, "/teapot")
        eq((r.status, r.body), (418, b"short and stout"), "configured status")
        r = get(c, "/empty")
        eq(r.status, 204, "204")
        check("content-length" not in r.headers, "204 has no Content-Length")
        eq(get(c, "/a?x=1&y=2").body, b"AAA", "query ignored for routing")
        eq(get(c, "/%61").body, b"AAA", "decoded path routed")
        eq(get(c, "http://localhost/b").body, b"BBBB", "absolute form")


@tap.case
def content_length_body_is_read_and_the_next_request_follows():
    with Conn(PORT) as c:
        body = b"k=" + b"v" * 5000
        c.send(build("POST", "/a", body=body) + build("GET", "/b"))
        eq(c.response().body, b"AAA", "first")
        eq(c.response().body, b"BBBB", "second")
        # A body arriving in several pieces.
        c.send(build("POST", "/c", headers={"Content-Length": "10"}))
        time.sleep(0.05)
        c.send(b"01234")
        time.sleep(0.05)
        c.send(b"56789" + build("GET", "/a"))
        eq(c.response().body, b"CCCCC", "slow body")
        eq(c.response().body, b"AAA", "after slow body")
        # Bodies larger than any buffer, sent in one go with the next request,
        # alone or after other pipelined requests.
        for before in (b"", build("GET", "/c") * 30):
            c.send(before + build("POST", "/a", body=b"q" * 300000) + build("GET", "/b"))
            for _ in range(30 if before else 0):
                eq(c.response().body, b"CCCCC", "pipelined before the large body")
            eq(c.response().body, b"AAA", "large body")
            eq(c.response().body, b"BBBB", "after large body")


@tap.case
def chunked_body_is_read_and_the_next_request_follows():
    with Conn(PORT) as c:
        body = chunked(b"hello world, " * 300)
        c.send(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) + body +
               build("GET", "/b"))
        eq(c.response().body, b"AAA", "first")
        eq(c.response().body, b"BBBB", "second")
        # With a trailer and chunk extensions, in pieces.
        data = (b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
        c.send(build("POST", "/c", headers={"Transfer-Encoding": "chunked"}))
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.005)
        eq(c.response().body, b"CCCCC", "chunked in pieces")
        eq(get(c, "/a").body, b"AAA", "in sync")
        big = chunked(b"z" * 300000, (4096, 10000, 17))
        for before in (b"", build("GET", "/c") * 30):
            c.send(before + build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) + big +
                   build("GET", "/b"))
            for _ in range(30 if before else 0):
                eq(c.response().body, b"CCCCC", "pipelined before the large chunked body")
            eq(c.response().body, b"AAA", "large chunked body")
            eq(c.response().body, b"BBBB", "after large chunked body")


@tap.case
def body_split_at_every_byte_keeps_the_connection_in_sync():
    # Every split point of a chunked and a Content-Length body between two
    # writes, the next request right behind the body.
    chunk_data = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    cases = ((build("POST", "/c", headers={"Transfer-Encoding": "chunked"}), chunk_data),
             (build("POST", "/c", headers={"Content-Length": "11"}), b"hello world"))
    with Conn(PORT) as c:
        for head, data in cases:
            for k in range(len(data) + 1):
                c.send(head + data[:k])
                time.sleep(0.002)
                c.send(data[k:] + build("GET", "/b"))
                eq(c.response().body, b"CCCCC", "body split at %d" % k)
                eq(c.response().body, b"BBBB", "next request after split at %d" % k)
        # Each byte on its own.
        c.send(cases[0][0])
        for i in range(len(chunk_data)):
            c.send(chunk_data[i:i + 1])
            time.sleep(0.001)
        c.send(build("GET", "/a"))
        eq(c.response().body, b"CCCCC", "chunked body a byte at a time")
        eq(c.response().body, b"AAA", "in sync after it")


@tap.case
def expect_100_continue_comes_before_the_body_is_sent():
    with Conn(PORT) as c:
        c.send(build("POST", "/a", headers={"Content-Length": "5", "Expect": "100-continue"}))
        r = c.response()
        eq(r.status, 100, "interim response")
        c.send(b"hello")
        r = c.response()
        eq((r.status, r.body), (200, b"AAA"), "final response")
        # Chunked with Expect.
        c.send(build("POST", "/b", headers={"Transfer-Encoding": "chunked",
                                             "Expect": "100-continue"}))
        eq(c.response().status, 100, "interim for chunked")
        c.send(chunked(b"abc"))
        eq(c.response().body, b"BBBB", "final for chunked")
        # Body sent along with the head: no interim response needed.
        c.send(build("POST", "/c", headers={"Expect": "100-continue"}, body=b"xyz"))
        r = c.response()
        eq(r.status, 200, "no 100 when the body is already there")


@tap.case
def expect_with_a_body_too_large_gets_413_without_100():
    with Conn(PORT) as c:
        c.send(build("POST", "/a", headers={"Content-Length": str(2 << 20),
                                             "Expect": "100-continue"}))
        r = c.response()
        eq(r.status, 413, "413 first, no 100")
        eq(r.header("connection"), "close", "closes")
        check(c.closed(), "closed")


@tap.case
def sixteen_pipelined_requests_in_one_send():
    paths = ["/a", "/b", "/c", "/plaintext"] * 4
    want = {"/a": b"AAA", "/b": b"BBBB", "/c": b"CCCCC", "/plaintext": b"Hello, World!"}
    with Conn(PORT) as c:
        c.send(b"".join(build("GET", p) for p in paths))
        for p in paths:
            eq(c.response().body, want[p], "response to %s in order" % p)
        # The responses of one batch come back in one segment or few.
        c.send(b"".join(build("GET", "/plaintext") for _ in range(64)))
        for _ in range(64):
            eq(c.response().status, 200, "status")


@tap.case
def pipelined_batch_split_at_every_byte_boundary():
    batch = (build("GET", "/a") +
             build("POST", "/b", body=b"0123456789") +
             build("POST", "/c", headers={"Transfer-Encoding": "chunked"}) + chunked(b"xyzzy", (2,)))
    want = [b"AAA", b"BBBB", b"CCCCC"]
    for cut in range(1, len(batch)):
        with Conn(PORT) as c:
            c.send(batch[:cut])
            time.sleep(0.002)
            c.send(batch[cut:])
            for w in want:
                r = c.response()
                eq((r.status, r.body), (200, w), "split at %d" % cut)


@tap.case
def keepalive_timeout_closes_idle_connections_silently():
    with Conn(SHORT) as c:
        eq(get(c, "/plaintext").status, 200, "status")
        t0 = time.monotonic()
        check(c.closed(timeout=3), "idle connection closed")
        took = time.monotonic() - t0
        check(0.2 < took < 2.0, "closed after about 300ms (took %.2fs)" % took)
    # A new connection that never sends is closed too.
    with Conn(SHORT) as c:
        t0 = time.monotonic()
        check(c.closed(timeout=3), "silent new connection closed")
        check(time.monotonic() - t0 < 2.0, "in time")
    # A connection that keeps talking within the timeout stays.
    with Conn(SHORT) as c:
        for _ in range(5):
            time.sleep(0.15)
            eq(get(c, "/plaintext").status, 200, "busy connection kept")


def status(port=PORT):
    with Conn(port) as c:
        r = get(c, "/status")
    eq(r.status, 200, "status page")
    eq(r.header("content-type"), "application/json", "type")
    return json.loads(r.body)


@tap.case
def status_page_reports_the_worker():
    st = status()
    for k in ("pid", "master_pid", "generation", "index", "connections", "requests", "bytes_in",
              "bytes_out", "fibers_live", "fibers_pooled", "uptime"):
        check(k in st, "field %s in %r" % (k, st))
    eq(st["master_pid"], S.pid, "master pid")
    check(st["pid"] in S.workers(), "pid %d is a worker of %r" % (st["pid"], S.workers()))
    eq(st["index"], 0, "index")
    check(st["generation"] >= 1, "generation")
    check(st["connections"] >= 1, "this connection counts")
    check(st["uptime"] > 0, "uptime")
    with Conn(PORT) as c:
        for _ in range(10):
            get(c, "/plaintext")
    st2 = status()
    check(st2["requests"] >= st["requests"] + 11, "requests counted: %r -> %r" %
          (st["requests"], st2["requests"]))
    check(st2["bytes_out"] > st["bytes_out"] + 10 * 13, "bytes_out counted")
    check(st2["bytes_in"] > st["bytes_in"], "bytes_in counted")


@tap.case
def status_page_has_every_workers_counters():
    st = status()
    for k in ("generation", "reloads_ok", "reloads_failed", "respawns", "connections", "accepted",
              "requests", "bytes_in", "bytes_out"):
        check(k in st["totals"], "totals.%s in %r" % (k, st["totals"]))
    eq([w["index"] for w in st["workers"]], [0], "one worker record")
    w = st["workers"][0]
    eq(w["pid"], st["pid"], "its pid")
    eq(w["generation"], st["generation"], "its generation")
    check(w["requests"] >= st["requests"], "the index counts at least this process")
    eq(st["totals"]["requests"], w["requests"], "totals of one worker")
    eq(st["reloads"], [], "no reloads")


@tap.case
def status_page_is_html_for_browsers_only():
    browser = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
               "*/*;q=0.8")
    for accept, html in ((browser, True), ("text/html", True),
                         ("application/json;q=0.5, text/html", True),
                         (None, False), ("*/*", False), ("application/json", False),
                         ("application/json, text/html", False),
                         ("text/html;q=0.5, application/json", False),
                         ("text/html;q=0", False)):
        with Conn(PORT) as c:
            r = get(c, "/status", headers={"Accept": accept} if accept else {})
        eq(r.status, 200, "status for %r" % accept)
        eq(r.header("vary"), "Accept", "Vary for %r" % accept)
        if html:
            eq(r.header("content-type"), "text/html; charset=utf-8", "type for %r" % accept)
            check(r.body.startswith(b"<!DOCTYPE html>") and b"<script>" in r.body and
                  b"http://" not in r.body and b"https://" not in r.body,
                  "the page, self-contained, for %r" % accept)
        else:
            eq(r.header("content-type"), "application/json", "type for %r" % accept)
            check("totals" in json.loads(r.body), "the JSON for %r" % accept)


@tap.case
def idle_keep_alive_connections_hold_no_fiber():
    conns = []
    try:
        for _ in range(300):
            c = Conn(PORT)
            c.send(build("GET", "/plaintext"))
            conns.append(c)
        for c in conns:
            eq(c.response().status, 200, "status")
        st = wait_for(lambda: (lambda s: s if s["idle_connections"] >= 300 else None)(status()))
        check(st, "300 idle connections watched")
        check(st["fibers_live"] < 20, "fibers_live %d with 300 idle connections" %
              st["fibers_live"])
        # They still work afterwards.
        for c in conns[:20]:
            eq(get(c, "/a").body, b"AAA", "idle connection answers")
    finally:
        for c in conns:
            c.close()


@tap.case
def access_log_gets_one_line_per_request_within_a_second():
    with Conn(PORT) as c:
        get(c, "/a?marker=1", headers={"User-Agent": "tap-agent/1.0", "Referer": "http://r/"})
        c.request("POST", "/b", body=b"12345")
        get(c, "/missing-file")
    with Conn(PORT) as c:
        c.send(b"BAD REQUEST LINE\r\n\r\n")
        eq(c.response().status, 400, "400")

    def lines():
        try:
            with open(ACCESS) as f:
                return [l for l in f.read().splitlines()]
        except OSError:
            return []
    got = wait_for(lambda: [l for l in lines() if "marker=1" in l], timeout=3)
    check(got, "line for the request in %r" % lines()[-5:])
    line = got[0]
    check(re.match(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                   r'"GET /a\?marker=1 HTTP/1\.1" 200 3 "http://r/" "tap-agent/1\.0"$', line),
          "line format: %r" % line)
    text = "\n".join(lines())
    check('"POST /b HTTP/1.1" 200 4' in text, "POST logged")
    check('"GET /missing-file HTTP/1.1" 404' in text, "404 logged")
    check('" 400 ' in text, "400 logged")


@tap.case
def access_log_is_reopened_on_usr1():
    rotated = ACCESS + ".1"
    os.rename(ACCESS, rotated)
    S.signal(signal.SIGUSR1)
    check(wait_for(lambda: os.path.exists(ACCESS), 5), "access log reopened")
    with Conn(PORT) as c:
        get(c, "/a?after-rotate=1")
    check(wait_for(lambda: os.path.exists(ACCESS) and "after-rotate" in open(ACCESS).read(), 3),
          "new file gets new lines")
    check("after-rotate" not in open(rotated).read(), "old file does not")


@tap.case
def many_concurrent_clients():
    def client(i, errors):
        with Conn(PORT) as c:
            for k in range(20):
                p = ["/a", "/b", "/c"][(i + k) % 3]
                r = get(c, p)
                if r.body != {"/a": b"AAA", "/b": b"BBBB", "/c": b"CCCCC"}[p]:
                    errors.append((i, k, r))
    eq(run_clients(100, client), [], "errors")


@tap.case
def curl_reuses_one_connection_for_several_urls():
    url = "http://127.0.0.1:%d" % PORT
    r = subprocess.run(["curl", "-sS", "-v", url + "/a", url + "/b", url + "/plaintext"],
                       capture_output=True, timeout=10)
    eq(r.returncode, 0, "curl exit")
    eq(r.stdout, b"AAABBBBHello, World!", "bodies")
    check(b"Re-using existing connection" in r.stderr or
          b"Reusing existing connection" in r.stderr, "connection reused")


@tap.case
def multi_thread_mode_serves_pipelined_and_concurrent_clients():
    with Conn(MT) as c:
        c.send(b"".join(build("GET", p) for p in ["/a", "/b", "/c"] * 10))
        for p in ["/a", "/b", "/c"] * 10:
            eq(c.response().body, {"/a": b"AAA", "/b": b"BBBB", "/c": b"CCCCC"}[p], "order")

    def client(i, errors):
        with Conn(MT) as c:
            for k in range(30):
                r = get(c, "/" if k % 2 else "/plaintext")
                if r.status != 200:
                    errors.append(r)
                if k % 10 == 0:
                    time.sleep(0.01)  # let the connection go idle in between
    eq(run_clients(64, client), [], "errors")
    st = status(MT)
    check(st["requests"] >= 64 * 30, "requests counted in MT mode: %r" % st["requests"])


@tap.case
def access_log_lines_are_not_lost_at_exit():
    log = os.path.join(S.dir, "access-mt.log")
    with Conn(MT) as c:
        for i in range(5):
            get(c, "/a?last=%d" % i)
    SMT.stop()  # SIGTERM: the workers stop at once and flush what they hold
    with open(log) as f:
        text = f.read()
    for i in range(5):
        check("/a?last=%d " % i in text, "line %d written before exit" % i)


@tap.case
def draining_worker_answers_with_close():
    with Conn(PORT) as c:
        eq(get(c, "/a").status, 200, "before")
        S.signal(signal.SIGQUIT)
        check(S.wait_log(r"draining \("), "worker draining")
        r = get(c, "/b")
        eq(r.status, 200, "answered while draining")
        eq(r.header("connection"), "close", "with Connection: close")
        check(c.closed(), "then closed")
    check(S.wait_exit(5) is not None, "master exits after the drain")


setup()
tap.run()
