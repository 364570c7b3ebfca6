#!/usr/bin/env python3
"""Reloads under connection churn with threads = 2: each reload drains the
old workers, whose channel fiber closes the listener copies while their
acceptors, on the other scheduler thread, are accepting.  An acceptor must
never wait on a descriptor number that has since been closed and handed to
another file (a connection, a file being served), and a worker must not exit
while an acceptor holds a connection it has just taken and not yet counted
(the client would get a reset): no request fails and the error log shows no
failed accept."""
import time

from harness import Spindle, Tap, check, eq, free_port
from loadgen import HttpLoad

tap = Tap()
PORTS = [free_port() for _ in range(3)]
RELOADS = 25


def services():
    text = "[http main]\n"
    for p in PORTS:
        text += "listen = 127.0.0.1:%d\n" % p
    return text + "return /plaintext = 200 text/plain Hello, World!\n"


@tap.case
def reloads_with_threads_2_under_churn_lose_no_connection():
    sp = Spindle(services(), workers=2, threads=2, shutdown_timeout="5s")
    sp.start(ports=PORTS)
    loads = []
    try:
        sp.wait_ready(2)
        loads = [HttpLoad(p, conns=12, keepalive=False).start() for p in PORTS]
        for load in loads:
            check(load.wait_requests(50), "load never got going: " + load.summary())
        for i in range(RELOADS):
            rc, out = sp.ctl("reload")
            eq(rc, 0, "reload %d exit code (%s)" % (i, out))
            time.sleep(0.1)
        for load in loads:
            check(load.wait_requests(50), "load stalled after the reloads: " + load.summary())
            load.stop()
        logs = sp.logs()
        bad = [line for line in logs.splitlines()
               if "accept4(" in line or "Operation not permitted" in line]
        eq(bad, [], "failed accepts in the error log")
        for load in loads:
            print("# " + load.summary(), flush=True)
            eq(load.failed, 0, "failed requests: " + load.summary())
    finally:
        for load in loads:
            load.stop()
        sp.stop()


tap.run()
