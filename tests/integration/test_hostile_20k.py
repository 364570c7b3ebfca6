#!/usr/bin/env python3
"""20,000 concurrent keep-alive connections from several 127.0.0.x source
addresses: every one gets its response, all of them stay open together, and
the workers' memory per connection is reported (# rss_per_conn)."""
import multiprocessing
import selectors
import socket
import sys
import time

from harness import Tap, check, eq, free_port, rss_kb
from hostile import LimitedSpindle, nofile_hard, raise_nofile

CONNS = 20000
PROCS = 4  # client processes, each with its own source address
WORKERS = 2
WINDOW = 800  # connects in flight per client process
IP_BIND_ADDRESS_NO_PORT = 24

tap = Tap()
PORT = free_port()
S = None
R = {}


def client(idx, n, port, conn):
    """Child: n connections from 127.0.0.(10 + idx), one request each; they
    stay open until the parent says "close"."""
    src = "127.0.0.%d" % (10 + idx)
    req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    sel = selectors.EpollSelector()
    socks, bufs = [], {}
    ok = failed = started = 0
    inflight = 0
    t_end = time.monotonic() + 40
    while (ok + failed < n) and time.monotonic() < t_end:
        while started < n and inflight < WINDOW:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE, 0)
            started += 1
            inflight += 1
        for key, ev in sel.select(1.0):
            s = key.fileobj
            if key.data == 0:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    failed += 1
                    inflight -= 1
                    sel.unregister(s)
                    continue
                s.send(req)  # fits in an empty send buffer
                bufs[s] = b""
                sel.modify(s, selectors.EVENT_READ, 1)
                continue
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                failed += 1
                inflight -= 1
                sel.unregister(s)
                continue
            bufs[s] += chunk
            if bufs[s].endswith(b"AAA"):
                if bufs[s].startswith(b"HTTP/1.1 200 "):
                    ok += 1
                else:
                    failed += 1
                inflight -= 1
                sel.unregister(s)
    conn.send(("ready", ok, failed))
    conn.recv()  # "close"
    still_open = 0
    for s in socks:
        try:
            s.recv(1)  # b"": the server closed it; bytes: an unexpected answer
        except BlockingIOError:
            still_open += 1  # no EOF: the server kept it open
        except OSError:
            pass
    conn.send(("closed", still_open))
    for s in socks:
        s.close()


def workers_rss():
    return {w: rss_kb(w) for w in S.workers()}



def setup():
    global S
    S = LimitedSpindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
""" % PORT, nofile=min(65536, nofile_hard()), workers=WORKERS, master="slots = %d" % WORKERS)
    S.start(ports=[PORT])
    S.wait_workers(WORKERS)


@tap.case
def twenty_thousand_keepalive_connections_each_get_a_response():
    time.sleep(0.2)
    R["rss0"] = workers_rss()
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    t0 = time.monotonic()
    for i in range(PROCS):
        a, b = ctx.Pipe()
        p = ctx.Process(target=client, args=(i, CONNS // PROCS, PORT, b), daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    R["pipes"], R["procs"] = pipes, procs
    results = []
    for a in pipes:
        results.append(a.recv() if a.poll(60) else ("timeout", 0, 0))
    took = time.monotonic() - t0
    ok = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    print("# %d responses, %d failures in %.1f s" % (ok, failed, took), flush=True)
    eq(ok, CONNS, "responses")
    eq(failed, 0, "failures")


@tap.case
def all_connections_are_open_at_once():
    eq(S.connections(), CONNS, "connections the workers report")
    rss0, rss1 = R["rss0"], workers_rss()
    grew = sum(rss1.values()) - sum(rss0.values())
    per_conn = grew * 1024.0 / CONNS
    print("# worker VmRSS %r kB -> %r kB" % (sorted(rss0.values()), sorted(rss1.values())),
          flush=True)
    print("# rss_per_conn %.0f bytes (%d connections, %d workers)" % (per_conn, CONNS, WORKERS),
          flush=True)
    R["per_conn"] = per_conn
    # An idle connection holds no fiber and no buffer: far below one stack.
    check(per_conn < 8192, "RSS per idle connection %.0f bytes < 8 KiB" % per_conn)
    # Nor a stack mapping: each stack (two VMAs with its guard page) counts
    # against vm.max_map_count, which 10,000 stacks per worker would nearly fill.
    vmas = {}
    for w in S.workers():
        with open("/proc/%d/maps" % w) as f:
            vmas[w] = sum(1 for _ in f)
    print("# worker VMAs %r" % sorted(vmas.values()), flush=True)
    check(max(vmas.values()) < 2000, "VMAs per worker %r < 2000" % sorted(vmas.values()))


@tap.case
def server_kept_every_connection_until_the_clients_closed():
    for a in R["pipes"]:
        a.send("close")
    still = 0
    for a in R["pipes"]:
        r = a.recv() if a.poll(30) else ("timeout", 0)
        still += r[1]
    for p in R["procs"]:
        p.join(10)
    eq(still, CONNS, "connections still open when the clients closed them")
    eq(S.wait_connections(0), 0, "connections after the clients left")


def limits_ok():
    need = CONNS // PROCS + 200
    if raise_nofile(65536) < need:
        return "client RLIMIT_NOFILE below %d" % need
    if nofile_hard() < CONNS // WORKERS + 2000:
        return "RLIMIT_NOFILE hard limit %d too low for %d per worker" % (
            nofile_hard(), CONNS // WORKERS)
    return None


why = limits_ok()
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)
setup()
tap.run()
