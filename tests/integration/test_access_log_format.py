#!/usr/bin/env python3
"""access_log_format against the real binary: "json" lines that json.loads
reads whatever bytes the client sent, a template with nginx's variables
(a proxied request's $upstream_response_time among them), an unknown
variable refused at FILE:LINE, rotation (mv, then `spindle -s reopen`)
under a steady trickle of requests losing no line, and the default,
combined, byte for byte what nginx writes for the same requests."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from harness import BIN, Spindle, Tap, check, eq, free_port, skip, wait_for, wait_port
from httpclient import Conn
from upstream import Upstream

tap = Tap()

# A header the client may send: quotes, a backslash, a tab, UTF-8 and a
# byte that is not UTF-8 (obs-text).
AGENT = b'ag "quoted" back\\slash\ttab \xc3\xa9 \xff end'


def conf(port, up_port, fmt):
    return """
[upstream app]
server = 127.0.0.1:%d

[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
proxy /api = app
access_log = access.log
access_log_format = %s
""" % (up_port, port, fmt)


def raw(port, data):
    with Conn(port) as c:
        c.send(data)
        return c.response()


def requests(port):
    """The requests of both format cases: a plain one with odd headers, a
    proxied one, a 404 and a request line with control bytes (400)."""
    r = raw(port, b"GET /a?q=1 HTTP/1.1\r\nHost: h.example:8080\r\nUser-Agent: " + AGENT +
            b"\r\nReferer: http://r/\"x\"\r\nX-Request-Id: id-7\r\n\r\n")
    eq(r.status, 200, "plain request")
    r = raw(port, b"GET /api/up?z=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: px\r\n\r\n")
    eq(r.status, 200, "proxied request")
    eq(raw(port, b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n").status, 404, "404")
    eq(raw(port, b"GET /\x01\x7f\"\\ HTTP/1.1\r\nHost: h\r\n\r\n").status, 400, "400")


def log_lines(s, n):
    """The first n lines of s's access log (bytes), waiting for the flush."""
    path = os.path.join(s.dir, "access.log")

    def lines():
        try:
            with open(path, "rb") as f:
                return f.read().splitlines()
        except OSError:
            return []
    check(wait_for(lambda: len(lines()) >= n, timeout=5), "%d lines in %r" % (n, lines()))
    return lines()


@tap.case
def json_lines_parse_and_carry_the_fields():
    up = Upstream()
    port = free_port()
    s = Spindle(conf(port, up.port, "json"))
    try:
        s.start(ports=[port])
        requests(port)
        docs = []
        for line in log_lines(s, 4):
            docs.append(json.loads(line.decode("utf-8")))  # strict: valid UTF-8 too
        plain, proxied, missing, bad = docs
        eq(plain["remote_addr"], "127.0.0.1", "remote_addr")
        eq(plain["request"], "GET /a?q=1 HTTP/1.1", "request")
        eq((plain["method"], plain["uri"], plain["args"], plain["protocol"]),
           ("GET", "/a", "q=1", "HTTP/1.1"), "request pieces")
        eq((plain["status"], plain["body_bytes_sent"]), (200, 3), "status, body bytes")
        check(plain["bytes_sent"] > 3, "bytes_sent counts the head: %r" % plain["bytes_sent"])
        eq(plain["user_agent"], AGENT.decode("utf-8", "replace").replace("\ufffd", "\xff"),
           "user_agent: valid UTF-8 kept, the odd byte as \\u00ff")
        eq(plain["referer"], 'http://r/"x"', "referer")
        eq(plain["host"], "h.example", "host without its port")
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", plain["time"]),
              "ISO 8601 time: %r" % plain["time"])
        check(isinstance(plain["request_time"], float) and plain["request_time"] < 5,
              "request_time %r" % plain["request_time"])
        eq((plain["upstream_response_time"], plain["upstream_addr"]), (None, None),
           "not proxied: null")
        eq(proxied["request"], "GET /api/up?z=2 HTTP/1.1", "proxied request")
        eq(proxied["upstream_addr"], "127.0.0.1:%d" % up.port, "upstream_addr")
        check(isinstance(proxied["upstream_response_time"], float) and
              0 <= proxied["upstream_response_time"] <= proxied["request_time"] + 0.001,
              "upstream_response_time %r within request_time %r" %
              (proxied["upstream_response_time"], proxied["request_time"]))
        eq(missing["status"], 404, "404 logged")
        eq((bad["status"], bad["request"]), (400, 'GET /\x01\x7f"\\ HTTP/1.1'),
           "control bytes escaped and read back")
    finally:
        s.stop()
        up.stop()


TEMPLATE = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_user_agent" "${http_x_request_id}" $upstream_addr '
            '$upstream_response_time $request_time $request_method')


@tap.case
def template_lines_have_nginx_variables_escaped():
    up = Upstream()
    port = free_port()
    s = Spindle(conf(port, up.port, TEMPLATE))
    try:
        s.start(ports=[port])
        requests(port)
        plain, proxied, missing, bad = [l.decode("ascii") for l in log_lines(s, 4)]
        ts = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]"
        want = (r'^127\.0\.0\.1 - - %s "GET /a\?q=1 HTTP/1\.1" 200 3 '
                r'"ag \\x22quoted\\x22 back\\x5Cslash\\x09tab \\xC3\\xA9 \\xFF end" "id-7" '
                r'- - \d+\.\d{3} GET$' % ts)
        check(re.match(want, plain), "plain line %r" % plain)
        want = (r'^127\.0\.0\.1 - - %s "GET /api/up\?z=2 HTTP/1\.1" 200 \d+ "px" "-" '
                r'127\.0\.0\.1:%d \d+\.\d{3} \d+\.\d{3} GET$' % (ts, up.port))
        check(re.match(want, proxied), "proxied line %r" % proxied)
        check(re.search(r'"GET /missing HTTP/1\.1" 404 \d+ "-" "-" - - ', missing),
              "404 line %r" % missing)
        check('"GET /\\x01\\x7F\\x22\\x5C HTTP/1.1" 400 ' in bad, "400 line %r" % bad)
    finally:
        s.stop()
        up.stop()


@tap.case
def unknown_variable_is_an_error_at_its_line():
    port = free_port()
    s = Spindle(conf(port, free_port(), '$remote_addr "$request" $bogus_var'))
    r = subprocess.run([BIN, "-t", "-c", s.conf], capture_output=True, text=True, timeout=10)
    eq(r.returncode, 1, "-t refuses it (%r)" % r.stdout)
    lineno = open(s.conf).read().splitlines().index(
        'access_log_format = $remote_addr "$request" $bogus_var') + 1
    check(r.stderr.startswith("%s:%d: " % (s.conf, lineno)) and "$bogus_var" in r.stderr,
          "names FILE:LINE and the variable: %r" % r.stderr)


@tap.case
def rotation_under_a_trickle_loses_no_line():
    port = free_port()
    s = Spindle(conf(port, free_port(), "json"))
    s.start(ports=[port])
    stop = threading.Event()
    sent = []
    errors = []

    def trickle():
        n = 0
        while not stop.is_set():
            try:
                with Conn(port) as c:
                    for _ in range(5):
                        if c.request("GET", "/a?seq=%d" % n).status != 200:
                            errors.append(n)
                        sent.append(n)
                        n += 1
                        time.sleep(0.002)
            except OSError as e:
                errors.append(repr(e))
    t = threading.Thread(target=trickle)
    t.start()
    try:
        log = os.path.join(s.dir, "access.log")
        time.sleep(0.5)
        os.rename(log, log + ".1")  # logrotate's move
        time.sleep(0.2)  # lines still go to the moved file until the reopen
        rc, out = s.ctl("reopen")
        eq(rc, 0, "spindle -s reopen: %s" % out)
        time.sleep(0.8)
    finally:
        stop.set()
        t.join()
    eq(errors, [], "failed requests")

    def both():
        return (open(log + ".1", "rb").read().splitlines(),
                open(log, "rb").read().splitlines())
    # Each thread's buffer is written within a second.
    wait_for(lambda: sum(map(len, both())) >= len(sent), timeout=5)
    old, new = both()
    s.stop()
    seqs = [int(json.loads(l)["args"].split("=")[1]) for l in old + new]
    check(len(old) > 0 and len(new) > 0, "lines in both files: %d old, %d new" %
          (len(old), len(new)))
    eq(sorted(seqs), sorted(sent), "every request logged exactly once across the rotation")


NGINX_CONF = """daemon off;
worker_processes 1;
error_log %(d)s/error.log;
pid %(d)s/nginx.pid;
events {}
http {
    access_log %(d)s/access.log combined;
    client_body_temp_path %(d)s; proxy_temp_path %(d)s; fastcgi_temp_path %(d)s;
    uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
    server {
        listen 127.0.0.1:%(port)d;
        location = /a { return 200 "AAA"; }
    }
}
"""


@tap.case
def combined_is_nginx_combined_byte_for_byte():
    """The same requests to spindle (the default format) and to nginx: the
    lines differ in nothing but the time."""
    if not shutil.which("nginx"):
        skip("nginx is not installed")
    reqs = [b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: " + AGENT +
            b"\r\nReferer: http://r/x\r\nConnection: close\r\n\r\n",
            b"GET /a HTTP/1.0\r\nUser-Agent:\r\nReferer:  \r\n\r\n",
            b"HEAD /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            b'GET /a?q="x"&\xc3\xa9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n']
    port, nport = free_port(), free_port()
    s = Spindle(conf(port, free_port(), "combined"))
    d = tempfile.mkdtemp(prefix="spindle-test-nginx-")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF % {"d": d, "port": nport})
    ngx = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s.start(ports=[port])
        check(wait_port(nport), "nginx listens")
        for p in (port, nport):
            for r in reqs:
                with socket.create_connection(("127.0.0.1", p)) as c:
                    c.sendall(r)
                    while c.recv(65536):
                        pass
        ours = log_lines(s, len(reqs))
        check(wait_for(lambda: len(open(os.path.join(d, "access.log"), "rb").readlines()) ==
                       len(reqs), timeout=5), "nginx logged")
        theirs = open(os.path.join(d, "access.log"), "rb").read().splitlines()
        stamp = re.compile(rb"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")
        eq([stamp.sub(b"[T]", l) for l in ours], [stamp.sub(b"[T]", l) for l in theirs],
           "spindle's lines and nginx's")
    finally:
        ngx.terminate()
        ngx.wait(timeout=10)
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


tap.run()
