#!/usr/bin/env python3
"""Clients that pipeline a flood of requests and never read the responses:
the worker stops reading from them once their responses back up (its
output per connection is one fixed buffer), so they stall against their own
socket buffers; the worker's memory stays flat, it does not spin, and other
clients are served meanwhile."""
import errno
import socket
import time

from harness import Spindle, Tap, check, eq, free_port, rss_kb
from hostile import cpu_share, get_ok

tap = Tap()
PORT = free_port()
BODY = "b" * 150
FLOODERS = 20
S = None
WORKER = None
FLOOD = []
RSS = {}

REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def setup():
    global S, WORKER
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain %s
""" % (PORT, BODY), workers=1)
    S.start(ports=[PORT])
    WORKER = S.wait_workers(1)[0]



def flood(socks, stall_s=1.0, limit_s=20.0):
    """Sends pipelined requests on every socket until none has taken a byte
    for stall_s.  Returns the bytes each sent."""
    batch = REQ * 2048
    sent = [0] * len(socks)
    last = time.monotonic()
    end = last + limit_s
    while time.monotonic() - last < stall_s and time.monotonic() < end:
        moved = False
        for i, s in enumerate(socks):
            try:
                n = s.send(batch)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise
                continue
            sent[i] += n
            moved = True
        if moved:
            last = time.monotonic()
        else:
            time.sleep(0.01)
    return sent


@tap.case
def flooders_stall_with_bounded_input():
    # Warm up the worker's allocator and fiber pool first.
    for _ in range(50):
        check(get_ok(PORT), "warm-up request")
    time.sleep(0.2)
    RSS["before"] = rss_kb(WORKER)
    for _ in range(FLOODERS):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        s.setblocking(False)
        FLOOD.append(s)
    t0 = time.monotonic()
    sent = flood(FLOOD)
    took = time.monotonic() - t0
    print("# each flooder sent %.1f .. %.1f MB (%.0f k requests) before stalling in %.1f s"
          % (min(sent) / 1e6, max(sent) / 1e6, max(sent) / len(REQ) / 1e3, took), flush=True)
    check(took < 19, "the flood stalled (took %.1f s)" % took)
    # What a flooder can push is its socket buffers and the worker's: a
    # worker that kept reading and queueing answers would take it all.
    check(max(sent) < 64 << 20, "at most 64 MB sent per flooder (%d)" % max(sent))


@tap.case
def worker_memory_stays_flat():
    time.sleep(0.5)
    RSS["after"] = rss_kb(WORKER)
    grew = RSS["after"] - RSS["before"]
    print("# worker VmRSS %d kB -> %d kB (+%d kB for %d stalled flooders)"
          % (RSS["before"], RSS["after"], grew, FLOODERS), flush=True)
    check(grew < 8 * 1024, "worker RSS grew by %d kB (< 8 MB)" % grew)


@tap.case
def worker_does_not_spin_on_stalled_connections():
    share = cpu_share(WORKER, 2.0)
    print("# worker CPU while stalled: %.1f %% of a core" % (share * 100), flush=True)
    check(share < 0.2, "worker CPU %.1f %% < 20 %%" % (share * 100))


@tap.case
def other_clients_are_served_meanwhile():
    for _ in range(20):
        check(get_ok(PORT), "GET /a while flooders are stalled")
    eq(S.connections(WORKER), FLOODERS, "the stalled connections are still open")
    # The flood stays stalled: nothing more is read from a flooder.
    again = flood(FLOOD, stall_s=0.5, limit_s=3)
    check(max(again) < 1 << 20, "a flooder cannot send much more (%d bytes)" % max(again))


@tap.case
def closing_the_flooders_frees_everything():
    for s in FLOOD:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    eq(S.wait_connections(0, pid=WORKER), 0, "connections after the flooders left")
    eq(S.workers(), [WORKER], "same worker")
    check(get_ok(PORT), "GET /a")
    grew = rss_kb(WORKER) - RSS["before"]
    check(grew < 8 * 1024, "worker RSS +%d kB after the flooders left" % grew)


setup()
tap.run()
