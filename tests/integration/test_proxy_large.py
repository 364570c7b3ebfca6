#!/usr/bin/env python3
"""The reverse proxy with real third-party upstreams and large bodies:
Debian's nginx as the upstream (keep-alive, static files, a 1 GB download
checked by hash), a 256 MB upload in each framing to an upstream that
hashes what it receives (a Python upstream is the slow side there), and
the proxy worker's RSS sampled throughout (at most 16 MB of growth).  A
sanitizer build, where this test runs once more, moves 64 MB each way."""
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import Daemon, Spindle, Tap, check, eq, free_port, need, rss_kb, sanitized
from httpclient import Conn, build
from upstream import Upstream

tap = Tap()
MB = 1 << 20
RSS_GROWTH_KB = 16 * 1024


SIZE = (64 if sanitized() else 256) * MB  # uploads
DOWN = (64 if sanitized() else 1024) * MB  # the download


class Nginx(Daemon):
    """Debian's nginx on a free port serving root, in a private prefix."""

    def __init__(self, root):
        super().__init__("nginx")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write("""
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:%(p)d;
        root %(r)s;
        location /api/echo-host { return 200 "host=$host xff=$http_x_forwarded_for\\n"; }
    }
}
""" % {"d": self.dir, "p": self.port, "r": root})

    def start(self):
        return self.spawn(["nginx", "-p", self.dir, "-c", self.conf, "-g",
                           "daemon off; master_process off;"], port=self.port)


def proxy(servers, extra=""):
    port = free_port()
    s = Spindle("""
[upstream app]
%s
[http main]
listen = 127.0.0.1:%d
max_body_size = 1g
proxy /api = app
%s
""" % ("".join("server = %s\n" % x for x in servers), port, extra))
    s.start(ports=[port])
    return s, port


class RssSampler:
    """The peak RSS of pid, sampled every 20 ms while running."""

    def __init__(self, pid):
        self.pid = pid
        self.base = rss_kb(pid)
        self.peak = self.base
        self.stop_ = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def growth(self):
        self.stop_ = True
        self.t.join()
        return self.peak - self.base


def pattern_file(path, size):
    """A file of size bytes that is not all one byte; returns its sha256."""
    block = hashlib.sha256(b"spindle").digest() * (MB // 32)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // MB):
            f.write(block)
            h.update(block)
    return h.hexdigest()


@tap.case
def nginx_upstream_keepalive_and_headers():
    need(shutil.which("nginx"), "nginx is not installed")
    root = tempfile.mkdtemp(prefix="spindle-test-www-")
    os.makedirs(os.path.join(root, "api"))
    with open(os.path.join(root, "api", "small.txt"), "w") as f:
        f.write("small file\n")
    ng = Nginx(root).start()
    s, port = proxy(["127.0.0.1:%d" % ng.port])
    try:
        with Conn(port) as c:
            for i in range(50):
                r = c.request("GET", "/api/small.txt")
                eq((r.status, r.body), (200, b"small file\n"), "through nginx")
            r = c.request("GET", "/api/echo-host", {"Host": "front.example"})
            eq(r.body, b"host=front.example xff=127.0.0.1\n", "Host and X-Forwarded-For at nginx")
            r = c.request("GET", "/api/missing")
            eq(r.status, 404, "nginx's 404")
            r = c.request("HEAD", "/api/small.txt")
            eq((r.status, r.header("content-length")), (200, "11"), "HEAD")
        # nginx saw one connection for all of it: the pool kept it.
        out = subprocess.run(["ss", "-Htn", "state", "established", "dport", "=",
                              ":%d" % ng.port], capture_output=True, text=True).stdout
        eq(len(out.strip().splitlines()), 1, "pooled connections to nginx")
    finally:
        s.stop()
        ng.stop()
        shutil.rmtree(root, ignore_errors=True)


@tap.case
def large_download_from_nginx_bounded_rss():
    need(shutil.which("nginx"), "nginx is not installed")
    root = tempfile.mkdtemp(prefix="spindle-test-www-")
    os.makedirs(os.path.join(root, "api"))
    want = pattern_file(os.path.join(root, "api", "big.bin"), DOWN)
    ng = Nginx(root).start()
    s, port = proxy(["127.0.0.1:%d" % ng.port])
    try:
        worker = s.wait_ready(1)[0]
        # Warm the worker up, so that its first allocations are not counted.
        with Conn(port) as c:
            c.request("GET", "/api/missing")
        rss = RssSampler(worker)
        with Conn(port, timeout=60) as c:
            c.send(build("GET", "/api/big.bin"))
            st, _, h, _ = c.read_head()
            eq((st, h.get("content-length")), (200, str(DOWN)), "head")
            hsh = hashlib.sha256()
            got = len(c.buf)
            hsh.update(c.buf)
            c.buf = b""
            while got < DOWN:
                b = c.sock.recv(1 << 20)
                check(b, "closed at %d bytes" % got)
                hsh.update(b)
                got += len(b)
        grow = rss.growth()
        eq(hsh.hexdigest(), want, "sha256 of %d MB" % (DOWN // MB))
        print("# download %d MB: worker RSS growth %d kB" % (DOWN // MB, grow), flush=True)
        check(grow <= RSS_GROWTH_KB, "RSS grew %d kB" % grow)
    finally:
        s.stop()
        ng.stop()
        shutil.rmtree(root, ignore_errors=True)


def hashing_upstream():
    """An upstream that hashes each request body as it streams in (chunked
    or Content-Length) and answers with the sha256 and the framing seen."""
    def serve(req, n, k, s):
        return b""
    u = Upstream(serve)

    def handle(s, n):
        f = s.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                hd = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    hd[k.strip().lower()] = v.strip()
                hsh = hashlib.sha256()
                if "chunked" in hd.get("transfer-encoding", ""):
                    framing = "chunked"
                    while True:
                        size = int(f.readline().split(b";")[0], 16)
                        if size == 0:
                            f.readline()
                            break
                        while size:
                            b = f.read(min(size, MB))
                            hsh.update(b)
                            size -= len(b)
                        f.readline()
                else:
                    framing = "length"
                    left = int(hd.get("content-length", "0"))
                    while left:
                        b = f.read(min(left, MB))
                        hsh.update(b)
                        left -= len(b)
                body = ("%s %s" % (framing, hsh.hexdigest())).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
        finally:
            s.close()
    u._serve = handle
    return u


def upload(port, chunked_body):
    block = hashlib.sha256(b"upload").digest() * (MB // 32)
    want = hashlib.sha256()
    with Conn(port, timeout=60) as c:
        if chunked_body:
            c.send(build("PUT", "/api/up", {"Transfer-Encoding": "chunked"}))
        else:
            c.send(build("PUT", "/api/up", {"Content-Length": str(SIZE)}))
        for _ in range(SIZE // MB):
            if chunked_body:
                c.send(b"%x\r\n" % len(block) + block + b"\r\n")
            else:
                c.send(block)
            want.update(block)
        if chunked_body:
            c.send(b"0\r\n\r\n")
        r = c.response()
        return r, want.hexdigest()


@tap.case
def large_uploads_reframed_bounded_rss():
    u = hashing_upstream()
    s, port = proxy(["127.0.0.1:%d" % u.port])
    try:
        worker = s.wait_ready(1)[0]
        with Conn(port) as c:
            c.request("GET", "/api/warm")
        rss = RssSampler(worker)
        r, want = upload(port, chunked_body=False)
        eq(r.body.decode(), "length " + want, "Content-Length upload")
        r, want = upload(port, chunked_body=True)
        eq(r.body.decode(), "chunked " + want, "chunked upload")
        grow = rss.growth()
        print("# uploads 2 x %d MB: worker RSS growth %d kB" % (SIZE // MB, grow), flush=True)
        check(grow <= RSS_GROWTH_KB, "RSS grew %d kB" % grow)
    finally:
        s.stop()
        u.stop()


if __name__ == "__main__":
    tap.run()
