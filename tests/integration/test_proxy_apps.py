#!/usr/bin/env python3
"""The reverse proxy in front of a WSGI application under Debian's gunicorn,
over a unix socket and over TCP: what the application sees (method, path,
query, Host, X-Forwarded-For, the body), chunked answers of unknown length,
and an application killed mid-answer."""
import os
import shutil
import tempfile
import time

from harness import Daemon, Spindle, Tap, check, eq, free_port, need, wait_for, wait_port
from httpclient import Conn, build, read_all

tap = Tap()

APP = r'''
import json, time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/api/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d\n" % i for i in range(5))
    if path == "/api/die":
        start_response("200 OK", [("Content-Length", "1000000")])
        def gen():
            yield b"x" * 1000
            time.sleep(0.3)
            import os
            os._exit(1)
        return gen()
    body = environ["wsgi.input"].read()
    doc = {k: environ.get(k) for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING",
                                       "HTTP_HOST", "HTTP_X_FORWARDED_FOR",
                                       "HTTP_X_FORWARDED_PROTO", "HTTP_CONNECTION")}
    doc["body"] = body.decode("latin-1")
    out = json.dumps(doc).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
'''


class Gunicorn(Daemon):
    """Debian's gunicorn running APP, bound to bind (a unix: path or
    HOST:PORT)."""

    def __init__(self, bind, workers=2):
        super().__init__("gunicorn")
        with open(os.path.join(self.dir, "wsgiapp.py"), "w") as f:
            f.write(APP)
        self.bind = bind
        self.workers = workers

    def start(self):
        return self.spawn(["gunicorn", "--chdir", self.dir, "-w", str(self.workers), "-b",
                           self.bind, "--log-level", "warning", "wsgiapp:app"], cwd=self.dir)


def proxy(server):
    port = free_port()
    s = Spindle("""
[upstream app]
server = %s
[http main]
listen = 127.0.0.1:%d
proxy /api = app
""" % (server, port))
    s.start(ports=[port])
    return s, port


def check_app(port):
    import json
    with Conn(port) as c:
        for i in range(5):
            r = c.request("POST", "/api/echo/%d?a=1&b=%%20" % i, {"Host": "app.example"},
                          body=b"payload %d" % i)
            eq(r.status, 200, "status")
            d = json.loads(r.body)
            eq(d["REQUEST_METHOD"], "POST", "method")
            eq(d["PATH_INFO"], "/api/echo/%d" % i, "path")
            eq(d["QUERY_STRING"], "a=1&b=%20", "query as received")
            eq(d["HTTP_HOST"], "app.example", "Host")
            eq(d["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "X-Forwarded-For")
            eq(d["HTTP_X_FORWARDED_PROTO"], "http", "X-Forwarded-Proto")
            eq(d["body"], "payload %d" % i, "body")
        # An answer of unknown length reaches the client chunked.
        c.send(build("GET", "/api/stream"))
        st, _, h, _ = c.read_head()
        eq((st, h.get("transfer-encoding")), (200, "chunked"), "chunked")
        body = b""
        while True:
            while b"\r\n" not in c.buf:
                c._fill()
            line, _, c.buf = c.buf.partition(b"\r\n")
            n = int(line, 16)
            if n == 0:
                c.read_exact(2)
                break
            body += c.read_exact(n)
            c.read_exact(2)
        eq(body, b"".join(b"part %d\n" % i for i in range(5)), "streamed body")
        r = c.request("GET", "/api/after")
        eq(r.status, 200, "client connection kept")


@tap.case
def gunicorn_over_unix_socket():
    need(shutil.which("gunicorn"), "gunicorn is not installed")
    g = Gunicorn("unix:" + os.path.join(tempfile.gettempdir(),
                                        "spindle-test-gu-%d.sock" % os.getpid()))
    sock = g.bind[5:]
    g.start()
    s = None
    try:
        check(wait_for(lambda: os.path.exists(sock), 10), "gunicorn socket")
        s, port = proxy(g.bind)
        check_app(port)
    finally:
        if s:
            s.stop()
        g.stop()


@tap.case
def gunicorn_over_tcp_killed_mid_answer():
    need(shutil.which("gunicorn"), "gunicorn is not installed")
    gport = free_port()
    g = Gunicorn("127.0.0.1:%d" % gport, workers=1).start()
    s = None
    try:
        check(wait_port(gport, timeout=10), "gunicorn port")
        s, port = proxy("127.0.0.1:%d" % gport)
        check_app(port)
        with Conn(port) as c:
            c.send(build("GET", "/api/die"))
            st, _, h, _ = c.read_head()
            eq((st, h.get("content-length")), (200, "1000000"), "head passed on")
            got = len(c.buf) + len(read_all(c.sock, 10))
            eq(got, 1000, "cut answer, then the close")
        # gunicorn's arbiter starts a new worker: the proxy recovers.
        def ok():
            try:
                with Conn(port) as c:
                    return c.request("GET", "/api/x").status == 200
            except OSError:
                return False
        check(wait_for(ok, 10, step=0.2), "answers again")
    finally:
        if s:
            s.stop()
        g.stop()


if __name__ == "__main__":
    tap.run()
