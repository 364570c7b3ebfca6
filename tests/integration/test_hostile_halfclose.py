#!/usr/bin/env python3
"""Clients that send their data and then shut down their write side: each
gets its whole answer and then the end of stream at once, not after
idle_timeout (never, with idle_timeout = 0), and the server keeps no socket in
CLOSE-WAIT.  The pause between connect and send makes the data and the FIN
reach a connection that already waits, in one event: the case where the
end of stream used to be lost.  Single-thread and multi-thread workers."""
import socket
import time

from harness import Spindle, Tap, check, connect, eq, free_port, wait_for
from httpclient import read_all, run_clients

tap = Tap()
ECHO, HTTP, ECHO_MT, HTTP_MT = (free_port() for _ in range(4))
BODY = "half-close ok"
REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
CLIENTS = 20
BATCH_TOTAL = 1500
BATCH = 100
PROMPT_S = 3.0  # far below idle_timeout (never) and keepalive_timeout (75s)
ST = MT = None

SERVICES = """
[echo echo]
listen = 127.0.0.1:%d
idle_timeout = 0

[http web]
listen = 127.0.0.1:%d
return /a = 200 text/plain %s
"""


def setup():
    global ST, MT
    ST = Spindle(SERVICES % (ECHO, HTTP, BODY))
    ST.start(ports=[ECHO, HTTP])
    MT = Spindle(SERVICES % (ECHO_MT, HTTP_MT, BODY), threads=2)
    MT.start(ports=[ECHO_MT, HTTP_MT])


def close_wait(ports):
    """Sockets in CLOSE-WAIT whose local port is one of ports."""
    hexports = {"%04X" % p for p in ports}
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].rsplit(":", 1)[1] in hexports and fields[3] == "08":
                n += 1
    return n


def pause_send_half_close(port, payload, want):
    """CLIENTS clients at once: connect, wait 20 ms, send, shut down the write
    side; each must read want and then the end of stream within PROMPT_S."""
    def client(i, errors):
        with connect(port) as s:
            time.sleep(0.02)
            t0 = time.monotonic()
            s.sendall(payload(i))
            s.shutdown(socket.SHUT_WR)
            try:
                got = read_all(s, timeout=PROMPT_S)
            except socket.timeout:
                errors.append((i, "no end of stream within %.1fs" % PROMPT_S))
                return
            took = time.monotonic() - t0
            if not want(i, got):
                errors.append((i, got[:200]))
            elif took >= PROMPT_S:
                errors.append((i, "end of stream after %.1fs" % took))
    eq(run_clients(CLIENTS, client), [], "clients without answer or end of stream")


def echo_case(port):
    pause_send_half_close(port, lambda i: b"message %d" % i,
                          lambda i, got: got == b"message %d" % i)


def http_case(port):
    pause_send_half_close(port, lambda i: REQ,
                          lambda i, got: got.startswith(b"HTTP/1.1 200")
                          and got.endswith(BODY.encode()))


@tap.case
def echo_half_close_after_pause_gets_eof_with_idle_timeout_0():
    echo_case(ECHO)


@tap.case
def http_half_close_after_pause_gets_eof():
    http_case(HTTP)


@tap.case
def echo_half_close_after_pause_gets_eof_threads_2():
    echo_case(ECHO_MT)


@tap.case
def http_half_close_after_pause_gets_eof_threads_2():
    http_case(HTTP_MT)


def batch_of_half_closers(port, payload, total):
    """total clients, BATCH at a time: connect, pause, send, shut down the
    write side, read the first bytes of the answer, close."""
    answered = 0
    for start in range(0, total, BATCH):
        socks = [connect(port) for _ in range(min(BATCH, total - start))]
        try:
            time.sleep(0.02)
            for s in socks:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            for s in socks:
                if s.recv(4096):
                    answered += 1
        finally:
            for s in socks:
                s.close()
    eq(answered, total, "clients answered")


@tap.case
def many_request_then_half_close_clients_leave_no_close_wait():
    batch_of_half_closers(HTTP, REQ, BATCH_TOTAL)
    batch_of_half_closers(ECHO, b"ping", BATCH_TOTAL // 3)
    ports = (ECHO, HTTP)
    ok = wait_for(lambda: close_wait(ports) == 0, timeout=5.0, step=0.1)
    check(ok, "%d server sockets still in CLOSE-WAIT" % close_wait(ports))
    # The server still serves.
    with connect(HTTP) as s:
        s.sendall(REQ)
        s.shutdown(socket.SHUT_WR)
        check(read_all(s, timeout=PROMPT_S).endswith(BODY.encode()), "a later client")


setup()
tap.run()
