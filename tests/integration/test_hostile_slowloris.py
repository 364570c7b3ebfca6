#!/usr/bin/env python3
"""Slowloris: 1,000 connections trickling a request head at one byte per
second are each answered 408 and closed at header_timeout, while a normal
keep-alive client on the same (single) worker is served at full speed."""
import multiprocessing
import selectors
import socket
import sys
import time

from harness import Spindle, Tap, check, eq, free_port
from hostile import get_ok, percentile, raise_nofile

tap = Tap()
PORT = free_port()
ATTACKERS = 1000
HEADER_TIMEOUT = 2.0
S = None
WORKER = None
RESULT = {}

HEAD = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 64


def attack(port, n, conn, deadline_s):
    """Child process: opens n connections, sends one byte per second on
    each, and records when each gets its answer and its close.  Sends
    (t_first_byte list, status list, t_answer list, closed list) on conn."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    # Wait until every connect completed.
    pending = set(range(n))
    for i in pending:
        sel.register(socks[i], selectors.EVENT_WRITE, i)
    end = time.monotonic() + 10
    while pending and time.monotonic() < end:
        for key, _ in sel.select(0.5):
            pending.discard(key.data)
            sel.unregister(key.fileobj)
    first = [None] * n
    data = [b""] * n
    answered = [None] * n
    closed = [False] * n
    sent = [0] * n
    for i in range(n):
        if i not in pending:
            sel.register(socks[i], selectors.EVENT_READ, i)
    conn.send(("connected", n - len(pending)))
    next_tick = time.monotonic()
    first_round = True
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop and not all(closed):
        now = time.monotonic()
        if now >= next_tick:
            for i in range(n):
                if closed[i] or answered[i] or i in pending or sent[i] >= len(HEAD):
                    continue
                try:
                    socks[i].send(HEAD[sent[i]:sent[i] + 1])
                    sent[i] += 1
                    if first[i] is None:
                        first[i] = time.monotonic()
                except OSError:
                    pass
            if first_round:
                conn.send(("started", time.monotonic()))
                first_round = False
            next_tick += 1.0
        for key, _ in sel.select(max(0.0, min(next_tick, stop) - time.monotonic())):
            i = key.data
            try:
                chunk = socks[i].recv(4096)
            except ConnectionResetError:
                chunk = b""
            except BlockingIOError:
                continue
            if chunk:
                if not data[i]:
                    answered[i] = time.monotonic()
                data[i] += chunk
            else:
                closed[i] = True
                sel.unregister(socks[i])
    status = []
    for d in data:
        status.append(int(d[9:12]) if d.startswith(b"HTTP/1.1 ") else None)
    conn.send(("done", first, status, answered, closed))
    for s in socks:
        s.close()


def normal_client(n=200, pause=0.0):
    """n sequential keep-alive requests, pause seconds apart; returns
    (latencies in s, failures)."""
    lat = []
    fails = 0
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(req)
            buf = b""
            while not buf.endswith(b"AAA"):
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            lat.append(time.perf_counter() - t0)
            if not buf.startswith(b"HTTP/1.1 200 "):
                fails += 1
            if pause:
                time.sleep(pause)
    finally:
        s.close()
    return lat, fails


def setup():
    global S, WORKER
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
header_timeout = 2s
""" % PORT, workers=1)
    S.start(ports=[PORT])
    WORKER = S.wait_workers(1)[0]


@tap.case
def baseline_latency():
    lat, fails = normal_client()
    eq(fails, 0, "failures")
    RESULT["base_p99"] = percentile(lat, 99)
    print("# baseline p50 %.2f ms p99 %.2f ms" % (percentile(lat, 50) * 1e3,
                                                 percentile(lat, 99) * 1e3), flush=True)


@tap.case
def normal_client_is_served_at_full_speed_during_the_attack():
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=attack, args=(PORT, ATTACKERS, child, HEADER_TIMEOUT + 8))
    p.start()
    try:
        msg = parent.recv() if parent.poll(15) else None
        check(msg and msg[0] == "connected", "attack connected: %r" % (msg,))
        eq(msg[1], ATTACKERS, "attack connections established")
        msg = parent.recv() if parent.poll(5) else None
        check(msg and msg[0] == "started", "first bytes sent: %r" % (msg,))
        attack_start = msg[1]
        time.sleep(0.3)  # every attacker has sent its first byte and is waiting
        # Spread over about a second, so that the attackers' next bytes
        # arrive while the normal client is being served.
        t0 = time.monotonic()
        lat, fails = normal_client(pause=0.003)
        t1 = time.monotonic()
        msg = parent.recv() if parent.poll(HEADER_TIMEOUT + 15) else None
        check(msg and msg[0] == "done", "attack finished: %r" % (msg,))
        _, first, status, answered, closed = msg
    finally:
        p.join(5)
        if p.is_alive():
            p.kill()
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print("# under attack: %d requests in %.3f s, p50 %.2f ms p99 %.2f ms max %.2f ms"
          % (len(lat), t1 - t0, p50 * 1e3, p99 * 1e3, max(lat) * 1e3), flush=True)
    eq(fails, 0, "normal client failures")
    eq(len(lat), 200, "normal requests answered")
    check(p99 < 0.050, "p99 %.2f ms < 50 ms" % (p99 * 1e3))
    # The normal client really ran while every attacker was still connected.
    cut = [a for a in answered if a is not None]
    check(cut and t1 < min(cut), "normal client done before the first 408")
    check(t0 > attack_start, "normal client started after the attack")
    RESULT.update(first=first, status=status, answered=answered, closed=closed)


@tap.case
def every_attacker_gets_408_at_header_timeout_and_is_closed():
    check(RESULT.get("status"), "attack results present")
    first, status, answered, closed = (RESULT[k] for k in ("first", "status", "answered",
                                                           "closed"))
    eq(sum(1 for s in status if s == 408), ATTACKERS, "408 answers (others: %r)"
       % sorted({s for s in status if s != 408}, key=str))
    eq(sum(closed), ATTACKERS, "connections closed by the server")
    waits = [a - f for a, f in zip(answered, first)]
    lo, hi = min(waits), max(waits)
    print("# 408 after %.2f .. %.2f s (header_timeout %.1f s)" % (lo, hi, HEADER_TIMEOUT),
          flush=True)
    check(lo >= HEADER_TIMEOUT - 0.1, "no 408 before header_timeout (%.2f s)" % lo)
    check(hi <= HEADER_TIMEOUT + 1.5, "every 408 soon after header_timeout (%.2f s)" % hi)


@tap.case
def worker_survives_and_serves():
    eq(S.workers(), [WORKER], "same worker")
    check(get_ok(PORT), "GET /a")


if raise_nofile(ATTACKERS * 4) < ATTACKERS + 100:
    print("1..0 # SKIP RLIMIT_NOFILE too low for %d connections" % ATTACKERS)
    sys.exit(0)
setup()
tap.run()
