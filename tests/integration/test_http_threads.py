#!/usr/bin/env python3
"""The http service with threads = 2 under concurrent load: each scheduler
thread keeps its own small-file cache, root and access-log buffer.  Every
response must be right, the access log must hold exactly one whole line per
request (no two threads' lines interleaved, none lost at a graceful quit),
and a deploy that switches root must reach every thread at once."""
import os
import re
import threading

from harness import Spindle, Tap, check, eq, free_port
from httpclient import Conn, write_file

tap = Tap()

CLIENTS = 8
REQUESTS = 200
RECONNECT = 25  # a new connection every so many requests, so both threads serve each client

LINE = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                  r'"GET (\S+) HTTP/1\.1" (\d{3}) (\d+) "-" "load-(\d+)"$')


def run_clients(n, fn):
    errors = []
    threads = [threading.Thread(target=fn, args=(i, errors)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "clients finished")
    return errors


@tap.case
def threads_2_under_load_answer_right_and_log_one_whole_line_per_request():
    port = free_port()
    sp = Spindle("", threads=2)
    root = os.path.join(sp.dir, "www")
    files = {
        "/small.txt": b"small file\n",
        "/index.html": b"<h1>index</h1>\n",
        "/mid.bin": bytes(range(256)) * 100,  # 25600 bytes: cached
        "/large.bin": bytes(range(251)) * 400,  # 100400 bytes: sent with sendfile
    }
    for name, data in files.items():
        write_file(os.path.join(root, name[1:]), data)
    access = os.path.join(sp.dir, "access.log")
    sp.write_conf("""
[http load]
listen = 127.0.0.1:%d
root = %s
access_log = %s
return /ok = 200 text/plain fine
return /gone = 410 text/plain gone for good
""" % (port, root, access), threads=2)
    want = dict(files)
    want["/"] = files["/index.html"]
    want["/ok"] = b"fine"
    want["/gone"] = b"gone for good"
    paths = sorted(want)
    try:
        sp.start(ports=[port])
        sp.wait_ready(1)

        def client(i, errors):
            c = None
            try:
                for k in range(REQUESTS):
                    if k % RECONNECT == 0:
                        if c:
                            c.close()
                        c = Conn(port, timeout=30)
                    p = paths[(i + k) % len(paths)]
                    r = c.request("GET", "%s?c=%d&k=%d" % (p, i, k),
                                  headers={"User-Agent": "load-%d" % i})
                    status = 410 if p == "/gone" else 200
                    if r.status != status or r.body != want[p]:
                        errors.append((i, k, p, r.status, r.body[:40]))
            except Exception as e:  # noqa: BLE001 - reported as a failure below
                errors.append((i, "exception", repr(e)))
            finally:
                if c:
                    c.close()

        eq(run_clients(CLIENTS, client), [], "wrong responses")
        rc, out = sp.ctl("quit")
        eq(rc, 0, "-s quit: " + out)
        check(sp.wait_exit(15) is not None, "master exits after -s quit")

        with open(access, "rb") as f:
            text = f.read().decode("latin-1")
        check(text.endswith("\n"), "the log ends with a whole line")
        seen = {}
        bad = []
        for line in text.splitlines():
            m = LINE.match(line)
            if not m:
                bad.append(line)
                continue
            target, status, nbytes, agent = m.groups()
            q = re.match(r"^(/[^?]*)\?c=(\d+)&k=(\d+)$", target)
            if not q or q.group(2) != agent:
                bad.append(line)
                continue
            p, i, k = q.group(1), int(q.group(2)), int(q.group(3))
            if (int(status) != (410 if p == "/gone" else 200) or
                    int(nbytes) != len(want.get(p, b"?"))):
                bad.append(line)
            seen[(i, k)] = seen.get((i, k), 0) + 1
        eq(bad[:5], [], "malformed or interleaved lines")
        missing = [(i, k) for i in range(CLIENTS) for k in range(REQUESTS) if (i, k) not in seen]
        eq(missing[:10], [], "requests without a line (%d)" % len(missing))
        eq([ik for ik, n in seen.items() if n != 1], [], "requests with several lines")
        eq(len(text.splitlines()), CLIENTS * REQUESTS, "lines in the access log")
    finally:
        sp.stop()


@tap.case
def threads_2_follow_a_root_switch_on_every_thread():
    """Each thread has its own root and cache: after the symlink switches,
    no connection, on whichever thread, gets the old release's cached file."""
    port = free_port()
    sp = Spindle("", threads=2)
    base = os.path.join(sp.dir, "deploy")
    for rel, text in (("release1", b"one"), ("release2", b"two")):
        write_file(os.path.join(base, rel, "page.html"), text * 10)
    current = os.path.join(base, "current")
    os.symlink("release1", current)
    sp.write_conf("""
[http deploy]
listen = 127.0.0.1:%d
root = %s
""" % (port, current), threads=2)

    def fetch_all(text):
        def client(i, errors):
            for _ in range(5):
                with Conn(port) as c:
                    for _ in range(10):
                        r = c.request("GET", "/page.html")
                        if r.status != 200 or r.body != text * 10:
                            errors.append((i, r.status, r.body[:20]))
        return run_clients(CLIENTS, client)

    try:
        sp.start(ports=[port])
        sp.wait_ready(1)
        eq(fetch_all(b"one"), [], "release1 on every connection")
        os.symlink("release2", current + ".new")
        os.rename(current + ".new", current)
        eq(fetch_all(b"two"), [], "release2 at once on every connection")
    finally:
        sp.stop()


@tap.case
def threads_2_reopen_the_access_log_without_losing_a_line():
    """A rotation (rename, USR1) while both threads hold lines: every line
    lands whole in one of the two files, and the lines of requests made
    after the reopen in the new one."""
    import signal
    import time
    port = free_port()
    sp = Spindle("", threads=2)
    access = os.path.join(sp.dir, "access.log")
    sp.write_conf("""
[http rot]
listen = 127.0.0.1:%d
access_log = %s
return /ok = 200 text/plain fine
""" % (port, access), threads=2)

    def load(tag):
        def client(i, errors):
            for j in range(4):
                with Conn(port) as c:
                    for k in range(10):
                        r = c.request("GET", "/ok?%s-%d-%d-%d" % (tag, i, j, k))
                        if r.status != 200:
                            errors.append((i, j, k, r.status))
        eq(run_clients(CLIENTS, client), [], "%s: failed requests" % tag)

    try:
        sp.start(ports=[port])
        sp.wait_ready(1)
        load("before")
        os.rename(access, access + ".1")
        sp.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not os.path.exists(access) and time.monotonic() < deadline:
            time.sleep(0.02)
        check(os.path.exists(access), "access log reopened")
        # The worker switches when the master's REOPEN message arrives: wait
        # until a probe's line shows in the new file.
        deadline = time.monotonic() + 10
        switched = False
        probe = 0
        while not switched and time.monotonic() < deadline:
            probe += 1
            with Conn(port) as c:
                eq(c.request("GET", "/ok?probe-%d-0-0" % probe).status, 200, "probe")
            time.sleep(0.1)
            with open(access) as f:
                switched = "?probe-" in f.read()
            if not switched:
                time.sleep(1.1)  # the line may sit in its thread's buffer for a second
                with open(access) as f:
                    switched = "?probe-" in f.read()
        check(switched, "the worker writes to the new file")
        load("after")
        rc, out = sp.ctl("quit")
        eq(rc, 0, "-s quit: " + out)
        check(sp.wait_exit(15) is not None, "master exits after -s quit")
        with open(access + ".1") as f:
            old = f.read()
        with open(access) as f:
            new = f.read()
        per_tag = CLIENTS * 4 * 10
        for text in (old, new):
            bad = [ln for ln in text.splitlines()
                   if not re.match(r'^127\.0\.0\.1 - - \[.*\] "GET /ok\?(before|after|probe)-\d+-\d+-\d+ '
                                   r'HTTP/1\.1" 200 4 "-" "-"$', ln)]
            eq(bad[:5], [], "malformed lines")
        eq(old.count("?after-"), 0, "lines of requests after the reopen in the old file")
        eq(new.count("?after-"), per_tag, "lines of requests after the reopen in the new file")
        eq(old.count("?before-") + new.count("?before-"), per_tag, "lines before the reopen")
    finally:
        sp.stop()


tap.run()
