#!/usr/bin/env python3
"""A worker gives the kernel back the memory a burst of connections took:
300 clients each send 60 kB of an unfinished head (max_header_size 64k, so
each connection's input moves to a heap buffer), the worker's RSS grows by
their buffers, and within 15 s of their close most of it is gone
(worker.c, memory_fiber: every 10 s, whatever the allocator holds free)."""
import socket
import sys
import time

from harness import Spindle, Tap, check, eq, free_port, rss_kb, sanitized, wait_for

tap = Tap()
PORT = free_port()
CLIENTS = 300
HEAD = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60000  # no end: the worker waits
S = None
WORKER = None
R = {}


def setup():
    global S, WORKER
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
max_header_size = 64k
header_timeout = 60s
return /a = 200 text/plain ok
""" % PORT, workers=1)
    S.start(ports=[PORT])
    WORKER = S.wait_workers(1)[0]


@tap.case
def a_burst_of_big_heads_grows_the_worker():
    time.sleep(0.2)
    R["idle"] = rss_kb(WORKER)
    socks = []
    for _ in range(CLIENTS):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        s.sendall(HEAD)
        socks.append(s)
    R["socks"] = socks
    eq(S.wait_connections(CLIENTS, pid=WORKER), CLIENTS, "connections open")
    # Every byte sent is in the worker's buffers once the kernel's are empty.
    check(wait_for(lambda: rss_kb(WORKER) - R["idle"] > CLIENTS * 40, 10, step=0.2),
          "worker RSS %d kB -> %d kB, want +%d kB" % (R["idle"], rss_kb(WORKER), CLIENTS * 40))
    R["busy"] = rss_kb(WORKER)


@tap.case
def the_memory_goes_back_after_they_close():
    for s in R["socks"]:
        s.close()
    eq(S.wait_connections(0, pid=WORKER), 0, "connections after the clients left")
    grew = R["busy"] - R["idle"]
    t0 = time.monotonic()
    back = wait_for(lambda: rss_kb(WORKER) - R["idle"] < grew / 2, 15, step=0.5)
    now = rss_kb(WORKER)
    print("# worker VmRSS %d kB idle, %d kB with %d big heads, %d kB %.1f s after they closed"
          % (R["idle"], R["busy"], CLIENTS, now, time.monotonic() - t0), flush=True)
    check(back, "the worker still holds %d of the %d kB the burst took" % (now - R["idle"], grew))
    eq(S.workers(), [WORKER], "same worker")


if sanitized():
    # ASan's allocator keeps what is freed in quarantine, whatever malloc_trim says.
    print("1..0 # SKIP the memory of an ASan build is ASan's")
    sys.exit(0)
setup()
tap.run()
