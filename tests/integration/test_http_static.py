#!/usr/bin/env python3
"""Static files: index and directory redirects, content types, a 10 MB file,
Range, conditional requests, the cache following changes on disk, and path
traversal attempts that must never serve a file outside root."""
import email.utils
import hashlib
import os
import random
import subprocess
import time

from harness import Spindle, Tap, check, connect, eq, free_port
from httpclient import Conn, build, chunked, write_file

tap = Tap()
PORT = free_port()
S = None
ROOT = None
BIG = None
SMALL = b"0123456789abcdefghijklmnopqrstuvwxyz"
MARKER = b"TOPSECRET-%d" % random.randrange(1 << 40)


def setup():
    global S, ROOT, BIG
    S = Spindle("")
    ROOT = os.path.join(S.dir, "www")
    w = lambda name, data: write_file(os.path.join(ROOT, name), data)  # noqa: E731
    w("index.html", "<h1>home</h1>\n")
    w("style.css", "body{}")
    w("app.js", "1;")
    w("data.json", "{}")
    w("img.png", b"\x89PNG\r\n\x1a\n")
    w("noext", "plain")
    w("file.weird", "w")
    w("app.webmanifest", "{}")
    w("letter.odt", b"PK\x03\x04")
    w("page.htm", "<p>old</p>")
    w("small.txt", SMALL)
    w("sub/index.html", "sub index\n")
    w("sub/page.html", "page\n")
    w("with space.txt", "spaced\n")
    os.makedirs(os.path.join(ROOT, "noindex"))
    os.makedirs(os.path.join(ROOT, "sp ce?"))
    BIG = random.Random(7).randbytes(10 * 1024 * 1024)
    w("big.bin", BIG)
    w("medium.bin", BIG[:300000])
    # Outside root.
    write_file(os.path.join(S.dir, "secret.txt"), MARKER)
    write_file(os.path.join(S.dir, "outdir", "secret.txt"), MARKER)
    os.symlink("../secret.txt", os.path.join(ROOT, "escape"))
    os.symlink(os.path.join(S.dir, "secret.txt"), os.path.join(ROOT, "escape_abs"))
    os.symlink("../outdir", os.path.join(ROOT, "escdir"))
    os.symlink("small.txt", os.path.join(ROOT, "inside"))
    os.mkfifo(os.path.join(ROOT, "fifo"))
    S.write_conf("""
[http files]
listen = 127.0.0.1:%d
root = %s
""" % (PORT, ROOT))
    S.start(ports=[PORT])


def get(path, headers=None, method="GET"):
    with Conn(PORT) as c:
        return c.request(method, path, headers=headers)


@tap.case
def index_is_served_for_the_root_and_directories():
    r = get("/")
    eq((r.status, r.body), (200, b"<h1>home</h1>\n"), "root index")
    eq(r.header("content-type"), "text/html; charset=utf-8", "type")
    eq(get("/sub/").body, b"sub index\n", "sub index")
    eq(get("/sub/page.html").body, b"page\n", "file in sub")
    eq(get("/with%20space.txt").body, b"spaced\n", "percent-decoded name")
    eq(get("/sub//page.html").body, b"page\n", "double slash")
    eq(get("/sub/./page.html").body, b"page\n", "dot segment")
    eq(get("/sub/../index.html").body, b"<h1>home</h1>\n", "dot-dot inside root")


@tap.case
def directory_without_slash_is_redirected():
    r = get("/sub")
    eq(r.status, 301, "status")
    eq(r.header("location"), "/sub/", "Location")
    r = get("/sub?x=1")
    eq(r.header("location"), "/sub/?x=1", "query kept")
    r = get("/noindex/")
    eq(r.status, 404, "directory without index: no listing")


@tap.case
def a_redirect_never_leads_to_another_host():
    """The Location of a directory redirect is built from the clean path: a
    raw "//host/..%2fdir" echoed back would send a browser to that host."""
    for path in ("//evil.example/..%2fsub", "//evil.example/../sub", "/\\evil.example/..%2fsub",
                 "//evil.example/%2e%2e/sub", "/./sub", "/x/..//sub"):
        r = get(path)
        eq((r.status, r.header("location")), (301, "/sub/"), "redirect for %s" % path)
    r = get("//evil.example/..%2fsub?a=b")
    eq(r.header("location"), "/sub/?a=b", "query kept")
    eq(get("/sp%20ce%3f").header("location"), "/sp%20ce%3F/", "re-encoded Location")


@tap.case
def content_type_follows_the_extension():
    for path, ctype in [("/style.css", "text/css; charset=utf-8"),
                        ("/app.js", "text/javascript; charset=utf-8"),
                        ("/data.json", "application/json"),
                        ("/img.png", "image/png"),
                        ("/small.txt", "text/plain; charset=utf-8"),
                        ("/noext", "application/octet-stream"),
                        ("/file.weird", "application/octet-stream"),
                        ("/big.bin", "application/octet-stream")]:
        with Conn(PORT) as c:
            r = c.request("HEAD", path)
        eq(r.status, 200, "status of %s" % path)
        eq(r.header("content-type"), ctype, "type of %s" % path)


@tap.case
def content_types_come_from_etc_mime_types():
    """Extensions that only /etc/mime.types (Debian's media-types) knows get its
    type; text types keep their charset."""
    with open("/etc/mime.types") as f:
        check("webmanifest" in f.read(), "/etc/mime.types (package media-types) lists webmanifest")
    for path, ctype in [("/app.webmanifest", "application/manifest+json"),
                        ("/letter.odt", "application/vnd.oasis.opendocument.text"),
                        ("/index.html", "text/html; charset=utf-8"),
                        ("/page.htm", "text/html; charset=utf-8"),
                        ("/style.css", "text/css; charset=utf-8"),
                        ("/app.js", "text/javascript; charset=utf-8"),
                        ("/small.txt", "text/plain; charset=utf-8")]:
        with Conn(PORT) as c:
            r = c.request("GET", path)
        eq(r.status, 200, "status of %s" % path)
        eq(r.header("content-type"), ctype, "type of %s" % path)


@tap.case
def ten_megabyte_file_arrives_whole():
    r = get("/big.bin")
    eq(r.status, 200, "status")
    eq(r.header("content-length"), str(len(BIG)), "length")
    eq(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(BIG).hexdigest(), "sha256")
    out = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/big.bin" % PORT],
                         capture_output=True, timeout=30)
    eq(out.returncode, 0, "curl exit")
    eq(hashlib.sha256(out.stdout).hexdigest(), hashlib.sha256(BIG).hexdigest(), "sha256 (curl)")
    # Twice on one connection, with a small file after it.
    with Conn(PORT) as c:
        c.send(build("GET", "/medium.bin") + build("GET", "/big.bin") + build("GET", "/small.txt"))
        eq(c.response().body, BIG[:300000], "medium")
        eq(len(c.response().body), len(BIG), "big")
        eq(c.response().body, SMALL, "small after big")


@tap.case
def head_of_a_large_file_has_its_length_only():
    with Conn(PORT) as c:
        r = c.request("HEAD", "/big.bin")
        eq(r.header("content-length"), str(len(BIG)), "length")
        eq(c.request("GET", "/small.txt").body, SMALL, "nothing sent after the head")


@tap.case
def single_ranges_get_206():
    for spec, start, end in [("bytes=0-9", 0, 9), ("bytes=10-", 10, len(SMALL) - 1),
                             ("bytes=-5", len(SMALL) - 5, len(SMALL) - 1),
                             ("bytes=30-1000", 30, len(SMALL) - 1),
                             ("bytes=-1000", 0, len(SMALL) - 1)]:
        r = get("/small.txt", {"Range": spec})
        eq(r.status, 206, "status for %s" % spec)
        eq(r.body, SMALL[start:end + 1], "body for %s" % spec)
        eq(r.header("content-range"), "bytes %d-%d/%d" % (start, end, len(SMALL)),
           "Content-Range for %s" % spec)
    r = get("/big.bin", {"Range": "bytes=5000000-5000099"})
    eq((r.status, r.body), (206, BIG[5000000:5000100]), "range of a large file")
    r = get("/big.bin", {"Range": "bytes=-10"})
    eq(r.body, BIG[-10:], "suffix of a large file")


@tap.case
def unsatisfiable_range_gets_416():
    for spec in ["bytes=%d-" % len(SMALL), "bytes=1000-2000", "bytes=-0"]:
        r = get("/small.txt", {"Range": spec})
        eq(r.status, 416, "status for %s" % spec)
        eq(r.header("content-range"), "bytes */%d" % len(SMALL), "Content-Range for %s" % spec)


@tap.case
def other_ranges_get_the_whole_file():
    for spec in ["bytes=0-1,5-6", "items=0-1", "bytes=5-2", "bytes=x-y"]:
        r = get("/small.txt", {"Range": spec})
        eq((r.status, r.body), (200, SMALL), "whole file for %s" % spec)
    etag = get("/small.txt").header("etag")
    r = get("/small.txt", {"Range": "bytes=0-1", "If-Range": '"other"'})
    eq((r.status, r.body), (200, SMALL), "If-Range mismatch")
    r = get("/small.txt", {"Range": "bytes=0-1", "If-Range": etag})
    eq((r.status, r.body), (206, SMALL[:2]), "If-Range match")


@tap.case
def conditional_requests_get_304():
    r = get("/small.txt")
    etag, lm = r.header("etag"), r.header("last-modified")
    st = os.stat(os.path.join(ROOT, "small.txt"))
    eq(etag, '"%x-%x"' % (int(st.st_mtime), st.st_size), "nginx-style ETag")
    eq(lm, email.utils.formatdate(int(st.st_mtime), usegmt=True), "Last-Modified")
    for h in [{"If-None-Match": etag}, {"If-None-Match": '"x", %s' % etag},
              {"If-None-Match": "W/" + etag}, {"If-None-Match": "*"},
              {"If-Modified-Since": lm},
              {"If-Modified-Since": email.utils.formatdate(time.time() + 3600, usegmt=True)}]:
        with Conn(PORT) as c:
            r = c.request("GET", "/small.txt", headers=h)
            eq(r.status, 304, "304 for %r" % h)
            eq(r.header("etag"), etag, "ETag in 304")
            check("content-length" not in r.headers, "no length in 304")
            eq(c.request("GET", "/a-missing-file").status, 404, "no body after the 304")
    for h in [{"If-None-Match": '"nope"'},
              {"If-Modified-Since": email.utils.formatdate(st.st_mtime - 3600, usegmt=True)},
              {"If-None-Match": '"nope"', "If-Modified-Since": lm}]:
        r = get("/small.txt", h)
        eq((r.status, r.body), (200, SMALL), "200 for %r" % h)


@tap.case
def changes_on_disk_are_seen_within_a_second_or_two():
    path = os.path.join(ROOT, "changing.txt")
    write_file(path, "version one")
    eq(get("/changing.txt").body, b"version one", "first")
    write_file(path, "version two, longer")
    time.sleep(1.1)
    eq(get("/changing.txt").body, b"version two, longer", "new size seen")
    write_file(path, "version TWO, longer")  # same size
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    time.sleep(1.1)
    eq(get("/changing.txt").body, b"version TWO, longer", "same size, new mtime seen")
    os.unlink(path)
    time.sleep(1.1)
    eq(get("/changing.txt").status, 404, "deleted file gone")


def never_secret(path, statuses=(400, 404)):
    with Conn(PORT) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode("latin-1"))
        r = c.response()
    check(MARKER not in r.body, "secret served for %r" % path)
    check(r.status in statuses, "status %d for %r" % (r.status, path))
    return r


@tap.case
def traversal_attempts_are_refused():
    for p in ["/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
              "/%2E%2E%2Fsecret.txt", "/sub/..%2f..%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
              "/..", "/%2e%2e", "/small.txt%00.html", "/%00", "/..%5csecret.txt",
              "//secret.txt", "/./../secret.txt", "http://localhost/../secret.txt",
              "/%252e%252e/secret.txt", "/%"]:
        never_secret(p)


@tap.case
def symlinks_out_of_root_are_not_followed():
    for p in ["/escape", "/escape_abs", "/escdir/secret.txt", "/escdir/"]:
        r = never_secret(p)
        eq(r.status, 404, "status for %s" % p)
    eq(get("/inside").body, SMALL, "symlink inside root is fine")


@tap.case
def special_files_are_not_served():
    t0 = time.monotonic()
    eq(get("/fifo").status, 404, "fifo")
    check(time.monotonic() - t0 < 2, "no hang on a fifo")


@tap.case
def only_get_and_head_on_files():
    with Conn(PORT) as c:
        r = c.request("POST", "/small.txt", body=b"x")
        eq(r.status, 405, "POST")
        eq(r.header("allow"), "GET, HEAD", "Allow")
        eq(c.request("GET", "/small.txt").body, SMALL, "connection kept")


@tap.case
def missing_files_get_404():
    eq(get("/nope.html").status, 404, "missing")
    eq(get("/sub/nope/").status, 404, "missing directory")
    eq(get("/small.txt/x").status, 404, "file used as a directory")


@tap.case
def the_smallest_stack_size_serves_every_kind_of_request():
    """stack_size = 16k, the bottom of its documented range: return routes,
    static files (cached, sent with sendfile, 304, Range, redirect), the status
    page, a request body (Content-Length and chunked), access log, echo; the
    worker must survive all of them."""
    port, echo = free_port(), free_port()
    small = Spindle("""
[http small]
listen = 127.0.0.1:%d
root = %s
status = /status
return /r = 200 text/plain RRR
access_log = %s

[echo e]
listen = 127.0.0.1:%d
""" % (port, ROOT, os.path.join(ROOT, "..", "access-16k.log"), echo), master="stack_size = 16k")
    try:
        small.start(ports=[port, echo])
        workers = small.wait_ready(1)
        with Conn(port) as c:
            eq(c.request("GET", "/r").body, b"RRR", "return route")
            eq(c.request("POST", "/r", body=b"x" * 5000).body, b"RRR", "POST with a body")
            eq(c.request("POST", "/r", headers={"Transfer-Encoding": "chunked"},
                         body=chunked(b"y" * 3000)).body, b"RRR", "chunked body")
            eq(c.request("GET", "/small.txt").body, SMALL, "small cached file")
            r = c.request("GET", "/medium.bin")
            eq((r.status, r.body == BIG[:300000]), (200, True), "large file (sendfile)")
            etag = r.header("etag")
            eq(c.request("GET", "/medium.bin", {"If-None-Match": etag}).status, 304, "304")
            r = c.request("GET", "/medium.bin", {"Range": "bytes=100-199"})
            eq((r.status, r.body), (206, BIG[100:200]), "Range")
            eq(c.request("GET", "/sub").status, 301, "directory redirect")
            eq(c.request("GET", "/nothing-here").status, 404, "404")
            eq(c.request("GET", "/sub/..//small.txt").body, SMALL, "path to clean")
            check(b"requests" in c.request("GET", "/status").body, "status page")
        with connect(echo) as e:
            e.sendall(b"ping")
            eq(e.recv(16), b"ping", "echo")
            # A message many batches long comes back whole and in order.
            big = bytes(range(256)) * 400
            e.sendall(big)
            got = b""
            while len(got) < len(big):
                part = e.recv(65536)
                if not part:
                    break
                got += part
            eq(got, big, "a 100 KB echo at stack_size = 16k")
        eq(small.workers(), workers, "the worker survived (log: %s)" % small.logs()[-600:])
    finally:
        small.stop()


@tap.case
def a_root_behind_a_symlink_follows_a_deploy_at_once():
    """The usual deploy: root = .../current, a symlink to the release,
    switched with a rename (mv -T).  The next request is served from the new
    release, cached small files included, and deleting the old one changes
    nothing (nginx resolves root on every request too)."""
    import shutil
    base = os.path.join(S.dir, "deploy")
    for rel, text in (("release1", b"one"), ("release2", b"two")):
        write_file(os.path.join(base, rel, "page.html"), text * 10)
        write_file(os.path.join(base, rel, "index.html"), b"index " + text)
        write_file(os.path.join(base, rel, "big.bin"), text * 100000)
        os.makedirs(os.path.join(base, rel, "dir"))
    current = os.path.join(base, "current")
    os.symlink("release1", current)
    port = free_port()
    dep = Spindle("""
[http deploy]
listen = 127.0.0.1:%d
root = %s
""" % (port, current))
    try:
        dep.start(ports=[port])
        with Conn(port) as c:
            for rel, text in (("release1", b"one"), ("release2", b"two")):
                if rel == "release2":
                    os.symlink("release2", current + ".new")
                    os.rename(current + ".new", current)
                eq(c.request("GET", "/page.html").body, text * 10, "small file of %s" % rel)
                eq(c.request("GET", "/big.bin").body, text * 100000, "large file of %s" % rel)
                eq(c.request("GET", "/").body, b"index " + text, "index of %s" % rel)
                eq(c.request("GET", "/dir").status, 301, "redirect in %s" % rel)
            shutil.rmtree(os.path.join(base, "release1"))
            time.sleep(1.1)  # past the cache's once-a-second check
            eq(c.request("GET", "/page.html").body, b"two" * 10, "after the old release is gone")
            eq(c.request("GET", "/big.bin").body, b"two" * 100000, "large file then")
            os.unlink(current)
            eq(c.request("GET", "/page.html").status, 404, "root gone: 404")
            os.symlink("release2", current)
            eq(c.request("GET", "/page.html").body, b"two" * 10, "root back")
    finally:
        dep.stop()


setup()
tap.run()
