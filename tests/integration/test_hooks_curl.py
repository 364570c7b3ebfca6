#!/usr/bin/env python3
"""The system call hooks (shared/runtime/hook.c) end to end: a blocking
client library on fibers.

Two spindles, each one worker with one scheduler thread.  The slow one's
handler (tests/modules/slow.so) answers after a plain usleep(200 ms).  The
other's handler (tests/modules/curl_fetch.so) fetches from the slow one
with libcurl's easy API, curl_easy_perform(), which blocks.

With the hooks on (the default), 100 concurrent requests to the curl
spindle are all answered, each with its own answer from the slow one,
within 1 s: the 100 transfers overlap on the one thread.  With
[master] hooks = off every transfer holds the thread for its 200 ms, so
requests are served one after another: the run takes at least
n x 0.2 s, and must take at least 10 s.  It sends 60 requests, not 100 (20 s),
to bound the test's time, in 3 waves of 20 concurrent ones: a worker whose
thread is held for 10 s misses 10 heartbeats and the master kills it
(master.h, MASTER_HEARTBEAT_MISSES_RUNNING), which 100 or even 60 requests
at once would provoke; between waves the worker answers the master.

curl_fetch.so is built only when configure found libcurl; without it the
curl cases report SKIP, except in CI (SPINDLE_CI=1), where they fail."""
import os
import socket
import threading
import time

from harness import Spindle, Tap, check, eq, free_port, need

tap = Tap()
MODULES = os.environ.get("SPINDLE_MODULES") or os.path.abspath("tests/modules")
SLOW_SO = os.path.join(MODULES, "slow.so")
CURL_SO = os.path.join(MODULES, "curl_fetch.so")
DELAY = 0.2


def slow_conf(port):
    return ("[http slow]\nlisten = 127.0.0.1:%d\nhandle /slow = slow\n\n"
            "[module slow]\npath = %s\n" % (port, SLOW_SO))


def curl_conf(port, slow_port):
    return ("[http front]\nlisten = 127.0.0.1:%d\nhandle /fetch = curl_fetch\n\n"
            "[module curl_fetch]\npath = %s\nurl = http://127.0.0.1:%d/slow\n"
            % (port, CURL_SO, slow_port))


def get(port, path, results, i, start, timeout):
    """One request on its own connection, sent once every thread is ready."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(timeout)
        start.wait()
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        results[i] = (data, time.monotonic())
    except Exception as e:  # noqa: BLE001 - reported as that request's failure
        results[i] = (repr(e).encode(), time.monotonic())


def concurrent(port, n, path_of, timeout=30.0):
    """n requests at once; returns (their responses, seconds until the last ended)."""
    results = [None] * n
    start = threading.Barrier(n + 1)
    threads = [threading.Thread(target=get, args=(port, path_of(i), results, i, start, timeout))
               for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(timeout + 5)
    took = max(r[1] for r in results if r) - t0
    return [r[0] if r else b"" for r in results], took


def check_answers(answers, n):
    bad = []
    for i, a in enumerate(answers):
        want = b"slow id=%d\n" % i
        if not a.startswith(b"HTTP/1.1 200 ") or not a.endswith(b"\r\n\r\n" + want):
            bad.append((i, a[-120:]))
    eq(bad, [], "requests answered wrongly (of %d)" % n)


def need_curl():
    need(os.path.exists(CURL_SO),
         "%s was not built: configure did not find libcurl (libcurl4-openssl-dev)" % CURL_SO)


SLOW_PORT = free_port()
SLOW = None


def slow_server():
    global SLOW
    if SLOW is None:
        SLOW = Spindle(slow_conf(SLOW_PORT), workers=1, threads=1)
        SLOW.start(ports=[SLOW_PORT])
        SLOW.wait_ready(1)
    return SLOW


@tap.case
def plain_usleep_parks_the_fiber():
    """100 requests to the slow spindle at once: their sleeps overlap."""
    slow_server()
    answers, took = concurrent(SLOW_PORT, 100, lambda i: "/slow?id=%d" % i)
    check_answers(answers, 100)
    print("# 100 concurrent usleep(200 ms) handlers on one thread: %.3f s" % took)
    check(took < 1.0, "100 sleeping handlers took %.2f s" % took)


@tap.case
def curl_easy_perform_on_100_fibers_within_a_second():
    need_curl()
    slow_server()
    port = free_port()
    s = Spindle(curl_conf(port, SLOW_PORT), workers=1, threads=1, master="stack_size = 256k\n")
    try:
        s.start(ports=[port])
        s.wait_ready(1)
        answers, took = concurrent(port, 100, lambda i: "/fetch?id=%d" % i)
        check_answers(answers, 100)
        print("# 100 concurrent curl_easy_perform, hooks on: %.3f s" % took)
        check(took < 1.0, "100 fetches took %.2f s with the hooks on" % took)
    finally:
        s.stop()


@tap.case
def with_the_hooks_off_the_same_run_serialises():
    need_curl()
    slow_server()
    port = free_port()
    s = Spindle(curl_conf(port, SLOW_PORT), workers=1, threads=1,
                master="stack_size = 256k\nhooks = off\n")
    waves, per_wave = 3, 20
    n = waves * per_wave
    try:
        s.start(ports=[port])
        s.wait_ready(1)
        took = 0.0
        for w in range(waves):
            answers, t = concurrent(port, per_wave, lambda i: "/fetch?id=%d" % i, timeout=60.0)
            check_answers(answers, per_wave)
            print("# wave %d: %d concurrent curl_easy_perform, hooks off: %.3f s"
                  % (w + 1, per_wave, t))
            check(t >= per_wave * DELAY * 0.95,
                  "not serialised: %.2f s for %d x %.1f s" % (t, per_wave, DELAY))
            took += t
        print("# %d requests, hooks off: %.3f s" % (n, took))
        check(took >= 10.0, "%d fetches took only %.2f s with the hooks off" % (n, took))
        eq(s.log_count("heartbeats; killing it"), 0,
           "the front's worker killed for missed heartbeats")
    finally:
        s.stop()


try:
    tap.run()
finally:
    if SLOW is not None:
        SLOW.stop()
