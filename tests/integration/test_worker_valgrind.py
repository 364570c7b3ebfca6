#!/usr/bin/env python3
"""A whole worker under valgrind memcheck: start, serve every kind of answer
(static files, return routes, the status and metrics pages, echo, the command service),
drain on QUIT and exit.
Every service frees what it allocated at the worker's exit, so memcheck must
report no error and no definitely or indirectly lost byte in the worker.

Valgrind cannot follow jemalloc (nor run a sanitizer build): this runs in a
build configured --without-jemalloc (the CI's `make check-valgrind` stage) and
reports SKIP, with the reason, elsewhere."""
import os
import re
import shutil
import signal
import subprocess

from harness import BIN, SRCDIR, Spindle, Tap, check, connect, eq, free_port, skip
from httpclient import Conn, write_file

tap = Tap()
SLOW = 60.0  # valgrind runs the worker some 20-50 times slower


def why_not():
    """Why valgrind cannot check this binary, or None."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed"
    libs = subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout
    if "jemalloc" in libs:
        return "spindle is linked with jemalloc, which valgrind cannot follow " \
               "(configure --without-jemalloc; make check-valgrind)"
    if "libasan" in libs or "libubsan" in libs:
        return "spindle is built with sanitizers, which do not run under valgrind"
    return None


# spindle's own C files, and those of a service's worker half: what a service
# allocated itself must be freed by its fini even when a pointer to it
# survives somewhere (a fiber that ran, a global table), where memcheck calls
# it "still reachable" rather than lost.  (Its configuration half runs in the
# master, which keeps its configuration.)
OWN_FILES = {f for d in ("shared", "master", "worker") for _, _, fs in os.walk(os.path.join(SRCDIR, d))
             for f in fs if f.endswith(".c")}
SERVICE_FILE = re.compile(r"^(?:http|http_(?!conf)[a-z_]+|echo|cmd|cmd_builtin)\.c$")


def allocated_by_service(record):
    """Whether the first of spindle's frames in a loss record, the code that
    asked for the block, is a service's worker half."""
    for name in re.findall(r"\(([\w.-]+\.c):\d+\)", record):
        if name in OWN_FILES:
            return bool(SERVICE_FILE.match(name))
    return False


def leak_report(path):
    """(errors, definitely lost, indirectly lost, blocks a service left
    reachable, the log) from a valgrind log."""
    with open(path, errors="replace") as f:
        text = f.read()
    m = re.search(r"ERROR SUMMARY: ([\d,]+) errors", text)
    check(m, "no ERROR SUMMARY in %s:\n%s" % (path, text[-3000:]))

    def lost(kind):
        k = re.search(kind + r" lost: ([\d,]+) bytes", text)
        return int(k.group(1).replace(",", "")) if k else 0
    records = re.split(r"^==\d+== $", text, flags=re.M)
    kept = [r.strip() for r in records
            if re.search(r"are (still reachable|possibly lost) in loss record", r)
            and allocated_by_service(r)]
    return int(m.group(1).replace(",", "")), lost("definitely"), lost("indirectly"), kept, text


def serve_and_exit(threads):
    """Runs one worker with threads scheduler threads under valgrind, serves
    every kind of answer (a proxied one too), drains it with QUIT and checks
    its valgrind log."""
    reason = why_not()
    if reason:
        skip(reason)
    http, echo, cmd, back = free_port(), free_port(), free_port(), free_port()
    echo_px = free_port()
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
root = www
status = /_status
metrics = /_metrics
return /plaintext = 200 text/plain Hello, World!
return /json = 200 application/json {"message":"Hello, World!"}
access_log = access.log
proxy /api = back

[upstream back]
server = 127.0.0.1:%d
health_check = /api/health 1s

[http back]
listen = 127.0.0.1:%d
return /api/x = 200 text/plain from back
return /api/health = 200 text/plain ok

[echo e]
listen = 127.0.0.1:%d
listen = 127.0.0.1:%d proxy_protocol

[cmd c]
listen = 127.0.0.1:%d
""" % (http, back, back, echo, echo_px, cmd), workers=1, threads=threads, shutdown_timeout="30s")
    www = os.path.join(S.dir, "www")
    os.mkdir(www)
    write_file(os.path.join(www, "index.html"), b"<h1>hello</h1>\n")
    write_file(os.path.join(www, "big.bin"), os.urandom(300 * 1024))
    write_file(os.path.join(www, "a.css"), b"body{}\n")
    vg = os.path.join(S.dir, "vg.%p")
    S.start(ports=[http, echo, cmd, back], timeout=SLOW,
            wrap=["valgrind", "--leak-check=full",
                  "--show-leak-kinds=all",
                  "--errors-for-leak-kinds=definite,indirect", "--log-file=" + vg])
    worker = S.wait_ready(1, timeout=SLOW)[0]

    with Conn(http, timeout=SLOW) as c:
        r = c.request("GET", "/")
        eq((r.status, r.body), (200, b"<h1>hello</h1>\n"), "index")
        eq(c.request("HEAD", "/a.css").status, 200, "HEAD a small file")
        eq(len(c.request("GET", "/big.bin").body), 300 * 1024, "a large file")
        eq(c.request("GET", "/a.css", headers={"Range": "bytes=0-3"}).status, 206, "a range")
        eq(c.request("GET", "/plaintext").body, b"Hello, World!", "return")
        eq(c.request("POST", "/json", body=b"x" * 100).status, 200, "POST to a return path")
        eq(c.request("GET", "/_status").status, 200, "status page")
        eq(c.request("GET", "/_status", headers={"Accept": "text/html"}).status, 200,
           "HTML status page")
        eq(c.request("GET", "/_metrics").status, 200, "metrics page")
        eq(c.request("GET", "/missing").status, 404, "404")
        eq(c.request("DELETE", "/").status, 405, "405")
        # Through the proxy to the second service: an upstream connection
        # left in the pool, and the health check's fiber.
        eq(c.request("GET", "/api/x").body, b"from back", "proxied")
        eq(c.request("POST", "/api/x", body=b"y" * 30000).body, b"from back", "proxied POST")
    with connect(echo, timeout=SLOW) as s:
        s.sendall(b"ping " * 1000)
        got = b""
        while len(got) < 5000:
            got += s.recv(65536)
        eq(got, b"ping " * 1000, "echo")
    # A PROXY header (the address table the worker allocates for it), and a
    # malformed one.
    with connect(echo_px, timeout=SLOW) as s:
        s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 1234 80\r\nping")
        eq(s.recv(100), b"ping", "echo after a PROXY header")
    with connect(echo_px, timeout=SLOW) as s:
        s.sendall(b"PROXY TCP4 nonsense\r\nping")
        try:
            got = s.recv(100)
        except ConnectionResetError:  # closed with "ping" unread
            got = b""
        eq(got, b"", "a malformed PROXY header closes")
    with connect(cmd, timeout=SLOW) as s:
        # A pipeline, an argument past the stack buffer (input and output
        # move to the heap), then a protocol error that closes.
        big = b"b" * 100000
        s.sendall(b"PING\r\n*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n*x\r\n" % (len(big), big))
        want = b"+PONG\r\n$%d\r\n%s\r\n-ERR Protocol error: invalid multibulk length\r\n" % (
            len(big), big)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        eq(got, want, "command service")
    cmd_idle = connect(cmd, timeout=SLOW)  # an idle client the drain closes
    cmd_idle.sendall(b"*1\r\n$4\r\nPING\r\n")
    eq(cmd_idle.recv(100), b"+PONG\r\n", "command service, kept open")
    idle = Conn(http, timeout=SLOW)  # an idle keep-alive connection the drain closes
    eq(idle.request("GET", "/plaintext").status, 200, "keep-alive")

    S.signal(signal.SIGQUIT)
    rc = S.wait_exit(timeout=2 * SLOW)
    idle.close()
    cmd_idle.close()
    eq(rc, 0, "master exit status after QUIT; log:\n" + S.logs())
    log = os.path.join(S.dir, "vg.%d" % worker)
    check(os.path.exists(log), "no valgrind log of worker %d" % worker)
    errors, definite, indirect, kept, text = leak_report(log)
    eq((errors, definite, indirect), (0, 0, 0),
       "worker %d: errors, definitely and indirectly lost bytes; valgrind:\n%s"
       % (worker, text[-6000:]))
    eq(kept, [], "blocks a service allocated and did not free")


@tap.case
def worker_frees_everything_at_exit():
    serve_and_exit(threads=1)


@tap.case
def worker_with_two_threads_frees_everything_at_exit():
    # Each scheduler thread has its own file cache and access-log buffer.
    serve_and_exit(threads=2)


tap.run()
